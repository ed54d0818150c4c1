"""The scenario table of the outcome-aware loop, on real rows, in process (no servers): `make bench-scenarios`.

Per seed the IBM rows are split at random into disjoint pools: base (55 %, what the champion is trained
on, 80/20 split with that seed, so each seed has its own champion and its own fit), older recent (17.5 %),
newest recent (7.5 %) and future (20 %). No customer of the traffic was a training row of the champion;
the out-of-time rows (the newest recent requests) are customers the challenger never trained on; the
future traffic, on which the promoted model is scored, was never a training row of any model.

Drift cells: windows of the recent+newest pools, shifted as the cell says, through the monitor's drift
check (`drift.score_columns` + `policy.assess_drift`); `alarm_1st` is the first window's decision,
`alarm_2nd` the decision on a second, independent window of the same cell with the first window's
over-the-bar rules as the persistence state (what the monitor reads from its index).

Labelled cells: 3000 labelled requests, one every 60 s, the older 70 % from the older pool and the
newest 30 % from the newest pool, outcomes as the cell says (a reverting cell: the newest 30 % have their
real outcomes back). The monitor reads the newest 2000
(`labels` in the look-back): drift on their inputs, the performance rule on the champion's answers. The
retrain runs as the job does (`evaluation.assemble`: out-of-time = newest 30 %, base rows weighted to
`base_weight_share` of the recent rows; `gate.judge_challenger` with the job's defaults), whether or
not the monitor asked, so the gate is shown on every cell. Then on 2000 newest requests (the newest pool,
the newest outcomes; "future" below): AUC and Brier of the champion, of the promoted model (the challenger if promoted,
else the champion) and of a model trained on the recent training rows alone. `--weights` adds the
comparison of base-row weightings that chose `base_weight_share`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from churnflow.core import schema
from churnflow.core.scorer import CompiledScorer
from churnflow.monitoring import drift, performance, policy
from churnflow.monitoring.models import ExpectedQuality, Rule
from churnflow.monitoring.performance_rule import PerformancePolicy, assess_performance, counts_of
from churnflow.retraining import evaluation, gate
from churnflow.settings import MonitorSettings, RetrainSettings
from churnflow.sim import scenarios
from churnflow.training import data, pipeline
from churnflow.training.compiler import compile_pipeline

RECENT_ROWS = 3000
LABELS = 2000
NEWEST_ROWS = 2000
WEIGHT_SHARES = (0.0, 0.1, 0.25, 0.5, 1.0)
"""0: the recent rows alone; 1: base rows weigh as much as the recent ones; `full` below: every base row weighs 1."""


def price(factor: float) -> scenarios.Scenario:
    return scenarios.Scenario(
        f"price_x{factor:g}", f"both charges ×{factor:g}", True, transform=scenarios.price_change(factor)
    )


def cohort(share: float) -> scenarios.Scenario:
    base = scenarios.SCENARIOS["month_to_month_fibre"]
    return scenarios.Scenario(f"mtm_fibre_{share:.0%}", "", True, segment=base.segment, share=share)


DRIFT_CELLS: list[tuple[str, scenarios.Scenario, int]] = [
    ("in-distribution", scenarios.SCENARIOS["in_distribution"], 300),
    ("in-distribution", scenarios.SCENARIOS["in_distribution"], 1000),
    ("in-distribution", scenarios.SCENARIOS["in_distribution"], 5000),
    ("gender mix (harmless)", scenarios.SCENARIOS["gender_mix"], 1000),
    ("cohort mix: 45% mtm fibre", cohort(0.45), 1000),
    ("cohort mix: 45% tenure ≤ 12", scenarios.SCENARIOS["new_customers"], 1000),
    ("price ×1.15", price(1.15), 300),
    ("price ×1.15", price(1.15), 1000),
    ("price ×1.3", price(1.3), 1000),
    ("price ×1.5", price(1.5), 1000),
]


@dataclass(frozen=True)
class LabelledCell:
    name: str
    scenario: scenarios.Scenario
    outcome: str
    reverts: bool = False


IN_DISTRIBUTION = scenarios.SCENARIOS["in_distribution"]
LABELLED_CELLS = [
    LabelledCell("in-distribution, real outcomes", IN_DISTRIBUTION, "unchanged"),
    LabelledCell("mtm fibre churn → 10%", IN_DISTRIBUTION, "fibre_churn_falls"),
    LabelledCell("e-check churn → 20%", IN_DISTRIBUTION, "echeck_churn_falls"),
    LabelledCell("seniors churn → 60%", IN_DISTRIBUTION, "seniors_churn_rises"),
    LabelledCell("tenure ≥ 48 churn → 25%", IN_DISTRIBUTION, "long_tenure_churn_rises"),
    LabelledCell("mtm fibre churn → 10%, then back", IN_DISTRIBUTION, "fibre_churn_falls", reverts=True),
    LabelledCell("label noise 5%", IN_DISTRIBUTION, "label_noise_5"),
    LabelledCell("label noise 15%", IN_DISTRIBUTION, "label_noise_15"),
    LabelledCell("price ×1.3, real outcomes", price(1.3), "unchanged"),
    LabelledCell("cohort 45% mtm fibre, real outcomes", cohort(0.45), "unchanged"),
    LabelledCell("one-year contract churn → 30%", IN_DISTRIBUTION, "one_year_churn_rises"),
    LabelledCell("no internet churn → 20%", IN_DISTRIBUTION, "no_internet_churn_rises"),
    LabelledCell("partners churn → 10%", IN_DISTRIBUTION, "partners_churn_falls"),
    LabelledCell("no phone service churn → 55%", IN_DISTRIBUTION, "no_phone_churn_rises"),
    LabelledCell("label noise 25% in fibre only", IN_DISTRIBUTION, "fibre_label_noise_25"),
]


@dataclass(frozen=True)
class World:
    """One seed: the three pools and the champion trained on the base pool."""

    base: pd.DataFrame
    older: pd.DataFrame
    newer: pd.DataFrame
    future: pd.DataFrame
    traffic: pd.DataFrame
    scorer: CompiledScorer
    reference: pd.DataFrame
    importance: dict[str, float]
    expected: ExpectedQuality


def make_world(frame: pd.DataFrame, seed: int) -> World:
    order = np.random.default_rng(seed).permutation(len(frame))
    cuts = [int(share * len(frame)) for share in (0.55, 0.725, 0.80)]
    base, older, newer, future = (frame.iloc[part].reset_index(drop=True) for part in np.split(order, cuts))
    trained = pipeline.train(base, random_state=seed)
    scorer = CompiledScorer(compile_pipeline(trained.model))
    metrics = trained.metrics
    expected = ExpectedQuality(
        roc_auc=metrics["roc_auc"],
        brier=metrics["brier"],
        rows=int(metrics["rows"]),
        churn_rate=metrics["churn_rate"],
        brier_se=metrics["brier_se"],
    )
    traffic = pd.concat([older, newer, future], ignore_index=True)
    reference = drift.with_prediction(trained.train, scorer)
    return World(base, older, newer, future, traffic, scorer, reference, scorer.feature_importance(), expected)


def decide_drift(
    world: World, rows: pd.DataFrame, rules: policy.DriftPolicy, previous: frozenset[Rule] = frozenset()
) -> Any:
    current = drift.with_prediction(rows, world.scorer)
    result, _ = drift.score_columns(world.reference, current, drift.DriftConfig())
    return policy.assess_drift(result, world.importance, rules, previous)


def drift_cell(worlds: list[World], scenario: scenarios.Scenario, rows: int, rules: policy.DriftPolicy) -> dict:
    first = second = 0
    fired: dict[str, int] = {}
    for seed, world in enumerate(worlds):
        one = decide_drift(world, scenarios.window(world.traffic, scenario, rows, seed), rules)
        first += one.drifted
        if one.drifted:
            second += 1
        else:  # the second check, with the first one's over-the-bar rules as the persistence state
            window = scenarios.window(world.traffic, scenario, rows, seed + 50_000)
            second += decide_drift(world, window, rules, frozenset(one.rules_over_bar)).drifted
        for rule in one.rules_fired:
            fired[rule] = fired.get(rule, 0) + 1
    return {"alarm_1st": first, "alarm_2nd": second, "by_rule": fired}


def with_times(rows: pd.DataFrame) -> pd.DataFrame:
    return rows.assign(
        **{schema.ID_COLUMN: [f"req-{i:05d}" for i in range(len(rows))], "ts": 1.8e9 + 60.0 * np.arange(len(rows))}
    )


def recent_traffic(world: World, cell: LabelledCell, seed: int, oot_fraction: float) -> pd.DataFrame:
    newest = math.ceil(oot_fraction * RECENT_ROWS)
    older = scenarios.labelled_window(world.older, cell.scenario, RECENT_ROWS - newest, seed, cell.outcome)
    outcome = "unchanged" if cell.reverts else cell.outcome
    newer = scenarios.labelled_window(world.newer, cell.scenario, newest, seed + 7, outcome)
    return with_times(pd.concat([older, newer], ignore_index=True))


def fit_scorer(train: pd.DataFrame, weights: np.ndarray | None, seed: int) -> CompiledScorer:
    return CompiledScorer(compile_pipeline(pipeline.fit(train, random_state=seed, sample_weight=weights)))


def labelled_cell(
    worlds: list[World],
    cell: LabelledCell,
    monitor: MonitorSettings,
    retrain: RetrainSettings,
    compare_weights: bool,
) -> dict[str, Any]:
    rules = policy.DriftPolicy.from_settings(monitor)
    performance_policy = PerformancePolicy.from_settings(monitor)
    gate_policy = gate.GatePolicy.from_settings(retrain)
    rows: list[dict[str, Any]] = []
    for seed, world in enumerate(worlds):
        recent = recent_traffic(world, cell, seed, retrain.oot_fraction)
        looked_back = recent.iloc[-LABELS:]
        known = performance.labelled_metrics(
            counts_of(
                data.target(looked_back).to_numpy(), evaluation.probabilities(world.scorer, looked_back), looked_back
            ),
            1,
            30,
        )
        assert known is not None
        verdict = assess_performance(known, world.expected, performance_policy)
        drifted = decide_drift(world, looked_back, rules).drifted
        parts = evaluation.assemble(
            world.base, recent, retrain.oot_fraction, None, retrain.base_weight_share, retrain.test_size, seed
        )
        challenger = fit_scorer(parts.train, parts.weights, seed)
        recent_only = fit_scorer(parts.recent_train, None, seed)
        judged = {
            name: (evaluation.scorer_metrics(s, parts.out_of_time), evaluation.scorer_metrics(s, parts.base_check))
            for name, s in (("challenger", challenger), ("champion", world.scorer))
        }
        (challenger_oot, challenger_base), (champion_oot, champion_base) = judged["challenger"], judged["champion"]
        gain_se = evaluation.paired_brier_se(
            data.target(parts.out_of_time).to_numpy(),
            evaluation.probabilities(challenger, parts.out_of_time),
            evaluation.probabilities(world.scorer, parts.out_of_time),
        )
        decision = gate.judge_challenger(
            challenger_oot, champion_oot, challenger_base, champion_base, gate_policy, gain_se
        )
        newest_outcome = "unchanged" if cell.reverts else cell.outcome
        newest = scenarios.labelled_window(world.future, cell.scenario, NEWEST_ROWS, seed + 10_000, newest_outcome)
        promoted = challenger if decision.promote else world.scorer
        on_newest = {
            name: evaluation.scorer_metrics(s, newest)
            for name, s in (("champion", world.scorer), ("promoted", promoted), ("recent_only", recent_only))
        }
        row = {
            "perf_fired": verdict.degraded,
            "perf_rules": ",".join(rule.removeprefix("labelled_") for rule in verdict.rules_fired),
            "drift_fired": drifted,
            "labelled_auc": known.roc_auc,
            "auc_drop": world.expected.roc_auc - known.roc_auc if known.roc_auc is not None else math.nan,
            "promoted": decision.promote,
            "tie": decision.reason.startswith("a tie"),
            "failed": ",".join(name for name, ok in decision.checks.items() if not ok),
            # the gate's promise: never a challenger worse out of time by more than its tolerance
            "gate_violation": decision.promote
            and (
                challenger_oot["roc_auc"] < champion_oot["roc_auc"] - gate_policy.auc_tolerance
                or challenger_oot["brier"] > champion_oot["brier"]
            ),
            **{f"{name}_{metric}": m[metric] for name, m in on_newest.items() for metric in ("roc_auc", "brier")},
        }
        if compare_weights:
            recent_rows = len(parts.recent_train)
            for share in (*WEIGHT_SHARES, "full"):
                if share == 0.0:
                    variant = recent_only
                else:
                    weight = (
                        1.0
                        if share == "full"
                        else evaluation.base_row_weight(parts.base_train_rows, recent_rows, float(share))
                    )
                    weights = np.concatenate([np.full(parts.base_train_rows, weight), np.ones(recent_rows)])
                    variant = fit_scorer(parts.train, weights, seed)
                scored = evaluation.scorer_metrics(variant, newest)
                row[f"w{share}_brier"] = scored["brier"]
                row[f"w{share}_auc"] = scored["roc_auc"]
        rows.append(row)
    table = pd.DataFrame(rows)
    summary: dict[str, Any] = {
        "seeds": len(rows),
        "perf_alarm": int(table["perf_fired"].sum()),
        # the detection target: windows whose labelled AUC fell ≥ 0.05 below the expected
        "dropped_0.05": int((table["auc_drop"] >= 0.05).sum()),
        "perf_alarm_when_dropped_0.05": int(table.loc[table["auc_drop"] >= 0.05, "perf_fired"].sum()),
        "drift_alarm": int(table["drift_fired"].sum()),
        "perf_by_rule": table["perf_rules"].str.split(",").explode().loc[lambda r: r != ""].value_counts().to_dict(),
        "labelled_auc": round(float(table["labelled_auc"].mean()), 3),
        "auc_drop": round(float(table["auc_drop"].mean()), 3),
        "promoted": int(table["promoted"].sum()),
        "ties": int(table["tie"].sum()),
        "gate_violations": int(table["gate_violation"].sum()),
        "refused_by": table.loc[~table["promoted"] & ~table["tie"], "failed"].value_counts().to_dict(),
    }
    for name in ("champion", "promoted", "recent_only"):
        summary[f"{name}_auc"] = round(float(table[f"{name}_roc_auc"].mean()), 4)
        summary[f"{name}_brier"] = round(float(table[f"{name}_brier"].mean()), 4)
    ratio = table["promoted_brier"] / table["recent_only_brier"]
    summary["promoted_vs_recent_brier_max"] = round(float(ratio.max()), 3)
    summary["promoted_worse_than_champion"] = int((table["promoted_brier"] > table["champion_brier"] + 1e-12).sum())
    if compare_weights:
        for share in (*WEIGHT_SHARES, "full"):
            summary[f"w{share}_brier"] = round(float(table[f"w{share}_brier"].mean()), 4)
    return summary


def markdown(drift_rows: list[dict], labelled_rows: list[dict], seeds: int, weights: bool) -> str:
    lines = [
        f"**Drift cells** ({seeds} seeds a cell; alarms out of {seeds}):",
        "",
        "| window | rows | alarm, 1st window | alarm by the 2nd window (persistence) | rules fired (1st) |",
        "|---|---:|---:|---:|---|",
    ]
    for row in drift_rows:
        rules = ", ".join(f"{k} {v}" for k, v in row["by_rule"].items()) or "none"
        lines.append(f"| {row['cell']} | {row['rows']} | {row['alarm_1st']} | {row['alarm_2nd']} | {rules} |")
    lines += [
        "",
        f"**Labelled cells** ({seeds} seeds a cell; {RECENT_ROWS} labelled requests, the newest {LABELS} in the "
        f"monitor's look-back; scored on {NEWEST_ROWS} newest requests):",
        "",
        "| cell | labelled AUC (drop) | performance alarm (when drop ≥ 0.05) | performance rules fired | "
        "drift alarm | promoted / ties | "
        "gate violations | AUC champion → promoted (recent-only) | Brier champion → promoted (recent-only) | "
        "worst promoted/recent-only Brier | promoted worse than champion |",
        "|---|---:|---:|---|---:|---:|---:|---|---|---:|---:|",
    ]
    for row in labelled_rows:
        lines.append(
            f"| {row['cell']} | {row['labelled_auc']:.3f} ({row['auc_drop']:+.3f}) | {row['perf_alarm']} "
            f"({row['perf_alarm_when_dropped_0.05']}/{row['dropped_0.05']}) | "
            f"{', '.join(f'{k} {v}' for k, v in row['perf_by_rule'].items()) or 'none'} | "
            f"{row['drift_alarm']} | {row['promoted']} / {row['ties']} | {row['gate_violations']} | "
            f"{row['champion_auc']:.3f} → {row['promoted_auc']:.3f} ({row['recent_only_auc']:.3f}) | "
            f"{row['champion_brier']:.4f} → {row['promoted_brier']:.4f} ({row['recent_only_brier']:.4f}) | "
            f"{row['promoted_vs_recent_brier_max']:.3f} | {row['promoted_worse_than_champion']} |"
        )
    if weights:
        shares = [*WEIGHT_SHARES, "full"]
        lines += [
            "",
            "**Base-row weighting** (mean Brier on the newest traffic of a model trained on the recent rows plus "
            "base rows weighing this share of them; 0 = recent rows alone, full = every base row weighs 1):",
            "",
            "| cell | " + " | ".join(str(s) for s in shares) + " |",
            "|---|" + "---:|" * len(shares),
        ]
        for row in labelled_rows:
            lines.append(f"| {row['cell']} | " + " | ".join(f"{row[f'w{s}_brier']:.4f}" for s in shares) + " |")
    return "\n".join(lines)


def run(seeds: int, weights: bool, only: Callable[[str], bool]) -> None:
    warnings.filterwarnings("ignore")
    began = time.perf_counter()
    frame = data.load_dataset()
    worlds = [make_world(frame, seed) for seed in range(seeds)]
    monitor, retrain = MonitorSettings(), RetrainSettings()
    rules = policy.DriftPolicy.from_settings(monitor)
    drift_rows, labelled_rows = [], []
    for name, scenario, rows in DRIFT_CELLS:
        if only(name):
            line = {"cell": name, "rows": rows, **drift_cell(worlds, scenario, rows, rules)}
            print(json.dumps(line), flush=True)
            drift_rows.append(line)
    for cell in LABELLED_CELLS:
        if only(cell.name):
            line = {"cell": cell.name, **labelled_cell(worlds, cell, monitor, retrain, weights)}
            print(json.dumps(line), flush=True)
            labelled_rows.append(line)
    print(markdown(drift_rows, labelled_rows, seeds, weights))
    load = os.getloadavg()
    print(f"\n{time.perf_counter() - began:.0f} s; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--weights", action="store_true", help="also compare base-row weightings (slower)")
    parser.add_argument("--only", default="", help="run only the cells whose name contains one of these (a,b,…)")
    args = parser.parse_args()
    wanted = args.only.split(",")
    run(args.seeds, args.weights, lambda name: any(text in name for text in wanted))
    return 0


if __name__ == "__main__":
    sys.exit(main())
