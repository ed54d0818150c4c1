"""Scale benchmark of the drift monitor: one whole check vs plain Evidently on the full window.

Usage: `make bench-monitor` or `python bench/monitor.py [--rows 10000,100000,1000000]`.

On a private local stack (GCS, Pub/Sub and MLflow emulators on free ports) it trains a champion, then
for each size writes two windows of real rows to the GCS emulator in the service's real log format
(1000-row gzip JSON-lines batches, as the predict service flushes them): an in-distribution one and
one shifted toward month-to-month fibre-optic customers. For each window, in fresh processes:

  check      `run_check` as the Cloud Function runs it: list + read + sample + Evidently + policy + HTML
             report to GCS + trigger + MLflow (modules imported first, as in a warm instance); run
             `--reps` times, each in a fresh process with the trigger state reset, the median reported
  evidently  plain Evidently (`drift.preset_report`: DataDriftPreset over the features + ValueDrift of the
             prediction, the same methods and thresholds) on the whole window held in memory, its result
             put through the same policy: the decision the sampled check must reproduce

Wall time and peak RSS (VmHWM) of each process are measured. The last line is one JSON object for
the largest size: the window with the worse check/baseline ratio, the larger check peak, and whether
every window got the same decision as plain Evidently on all of its rows. `--scenarios` prints
instead the detection table of the policy vs Evidently's default rule over the `churnflow.sim.scenarios`
windows (no stack needed).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

MODEL = "churn-bench"
WINDOWS = {"no_drift": "in_distribution", "drift": "month_to_month_fibre"}
BATCH_ROWS = 1000
SPAN_S = 3 * 3600
END = datetime(2026, 1, 1, tzinfo=UTC)


def peak_mb() -> float:
    """Peak resident memory of this process since it started its program, in MB.

    VmHWM, not ru_maxrss: on Linux ru_maxrss survives exec, so a child would report its parent's peak.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def settings_for(rows: int, kind: str) -> Any:
    from churnflow.settings import MonitorSettings

    return MonitorSettings(bucket=f"bench-{rows}-{kind.replace('_', '-')}", model_name=MODEL, since_last_check=False)


def window_end(index: int) -> datetime:
    """Each window lives on its own day, so a check reads exactly one."""
    return END + timedelta(days=index)


def write_window(rows: int, kind: str, end: datetime, seed: int) -> float:
    """Write a window of `rows` logged requests spanning SPAN_S before `end`; returns seconds taken."""
    from churnflow.monitoring.champion import load_champion
    from churnflow.sim import scenarios
    from churnflow.storage import gcs, layout
    from churnflow.training import data

    began = time.perf_counter()
    settings = settings_for(rows, kind)
    gcs.ensure_bucket(settings.project, settings.bucket)
    scorer = load_champion(settings).scorer
    frame = scenarios.window(data.load_dataset(), WINDOWS[kind], rows, seed)
    per_second = rows / SPAN_S
    start = end.timestamp() - SPAN_S

    def batch(first: int) -> None:
        chunk = frame.iloc[first : first + BATCH_ROWS]
        records = list(
            scenarios.to_log_records(chunk, scorer, 1, start + first / per_second, per_second, id_prefix=f"b{first}")
        )
        for name, body in scenarios.log_objects(records, BATCH_ROWS, tag=f"b{first}-"):
            gcs.write_bytes(settings.project, layout.gs_uri(settings.bucket, name), body)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(batch, range(0, rows, BATCH_ROWS)))
    return time.perf_counter() - began


def child_check(rows: int, kind: str, end: datetime) -> dict[str, Any]:
    """One whole check in this (fresh) process."""
    import google.cloud.pubsub_v1  # noqa: F401 - a warm instance has these imported
    import mlflow  # noqa: F401

    from churnflow.monitoring.check import run_check
    from churnflow.retraining.request_store import StateStore
    from churnflow.storage import gcs

    settings = settings_for(rows, kind).model_copy(update={"window_hours": SPAN_S / 3600 + 1})
    store = StateStore(settings.project, settings.bucket, settings.model_name)
    gcs.delete_object(settings.project, settings.bucket, store.name)  # each run may publish, as the first did
    began = time.perf_counter()
    summary = run_check(settings, now=end + timedelta(seconds=settings.settle_s + 1))
    elapsed = time.perf_counter() - began
    return {
        "check_s": round(elapsed, 2),
        "peak_mb": round(peak_mb()),
        "drifted": summary.decision.drifted,
        "rules": list(summary.decision.rules_fired),
        "valid_rows": summary.window.valid_rows,
        "tested_rows": summary.window.tested_rows,
        "error_bound": round(summary.window.sample_error_bound, 4),
        "trigger": summary.trigger.action,
        "scores": {c.column: c.score for c in summary.drift.columns},
    }


def child_evidently(rows: int, kind: str, seed: int) -> dict[str, Any]:
    """Plain Evidently on the whole window in memory (the same rows as written), through the same policy."""
    from churnflow.monitoring import drift, policy
    from churnflow.monitoring.champion import load_champion, load_reference
    from churnflow.sim import scenarios
    from churnflow.training import data

    settings = settings_for(rows, kind)
    champion = load_champion(settings)
    reference = drift.with_prediction(load_reference(settings.project, champion), champion.scorer)
    current = drift.with_prediction(scenarios.window(data.load_dataset(), WINDOWS[kind], rows, seed), champion.scorer)
    began = time.perf_counter()
    snapshot = drift.preset_report(reference, current, drift.DriftConfig.from_settings(settings))
    result = drift.parse_snapshot(snapshot.dict(), len(current), len(reference))
    snapshot.get_html_str(as_iframe=False)
    elapsed = time.perf_counter() - began
    decision = policy.assess_drift(
        result, champion.scorer.feature_importance(), policy.DriftPolicy.from_settings(settings)
    )
    return {
        "evidently_full_s": round(elapsed, 2),
        "peak_mb": round(peak_mb()),
        "drifted": decision.drifted,
        "rules": list(decision.rules_fired),
        "scores": {c.column: c.score for c in result.columns},
    }


def run_child(env: dict[str, str], *args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", *args], env=env, capture_output=True, text=True, timeout=1800
    )
    if done.returncode != 0:
        raise RuntimeError(f"child {args} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


@contextmanager
def private_stack(model: str) -> Iterator[dict[str, str]]:
    """A local stack (GCS, Pub/Sub, MLflow emulators) on free 127.0.0.1 ports with a trained champion of
    `model`; yields the environment its clients need (also put in os.environ). Stopped on exit."""
    from churnflow.local.stack import down, up
    from churnflow.settings import CommonSettings, LocalStackSettings, TrainSettings
    from churnflow.training import data
    from churnflow.training.register import run_training

    gcs_port, pubsub_port, mlflow_port = free_ports(3)
    with tempfile.TemporaryDirectory(prefix="churnflow-bench-") as state:
        local = LocalStackSettings(
            state_dir=Path(state), gcs_port=gcs_port, pubsub_port=pubsub_port, mlflow_port=mlflow_port
        )
        common = CommonSettings(CHURNFLOW_PROJECT="churnflow-bench", bucket="churnflow-bench")
        info = up(local, common)
        try:
            env = {**os.environ, **info.env(), "CHURNFLOW_MODEL_NAME": model}
            os.environ.update(env)
            run_training(TrainSettings(), frame=data.load_dataset())
            yield env
        finally:
            down(local)


def bench(sizes: list[int], reps: int) -> dict[str, Any]:
    with private_stack(MODEL) as env:
        results = []
        for index, rows in enumerate(sizes):
            for offset, kind in enumerate(WINDOWS):
                end = window_end(2 * index + offset)
                written_s = write_window(rows, kind, end, seed=index)
                runs = [run_child(env, "check", str(rows), kind, end.isoformat()) for _ in range(reps)]
                check = sorted(runs, key=lambda run: run["check_s"])[len(runs) // 2]  # the median run
                full = run_child(env, "evidently", str(rows), kind, str(index))
                error = max(abs(check["scores"][c] - s) for c, s in full["scores"].items())
                line = {
                    "rows": rows,
                    "window": kind,
                    "write_s": round(written_s, 1),
                    **{k: v for k, v in check.items() if k != "scores"},
                    "check_runs_s": [run["check_s"] for run in runs],
                    "peak_mb": max(run["peak_mb"] for run in runs),
                    "evidently_full_s": full["evidently_full_s"],
                    "evidently_peak_mb": full["peak_mb"],
                    "ratio": round(check["check_s"] / full["evidently_full_s"], 3),
                    "full_drifted": full["drifted"],
                    "full_rules": full["rules"],
                    "same_decision": check["drifted"] == full["drifted"] and check["rules"] == full["rules"],
                    "max_score_error": round(error, 4),
                }
                print(json.dumps(line), flush=True)
                results.append(line)
    worst = max((r for r in results if r["rows"] == max(sizes)), key=lambda r: r["ratio"])
    return {
        "rows": worst["rows"],
        "check_s": worst["check_s"],
        "evidently_full_s": worst["evidently_full_s"],
        "ratio": worst["ratio"],
        "peak_mb": max(r["peak_mb"] for r in results if r["rows"] == max(sizes)),
        "same_decision": all(r["same_decision"] for r in results),
    }


def scenario_table(sizes: list[int], seeds: int) -> None:
    """How often the policy and Evidently's default rule fire on each scenario (real rows, per seed)."""
    from churnflow.core.scorer import CompiledScorer
    from churnflow.monitoring import drift, policy
    from churnflow.settings import MonitorSettings
    from churnflow.sim import scenarios
    from churnflow.training import data, pipeline
    from churnflow.training.compiler import compile_pipeline

    frame = data.load_dataset()
    result = pipeline.train(frame)
    scorer = CompiledScorer(compile_pipeline(result.model))
    reference = drift.with_prediction(result.train, scorer)
    rules = policy.DriftPolicy.from_settings(MonitorSettings())
    for name in scenarios.SCENARIOS:
        for rows in sizes:
            default = fired = 0
            by_rule: dict[str, int] = {}
            for seed in range(seeds):
                current = drift.with_prediction(scenarios.window(frame, name, rows, seed), scorer)
                measured, _ = drift.score_columns(reference, current, drift.DriftConfig())
                decision = policy.assess_drift(measured, scorer.feature_importance(), rules)
                default += measured.drift_share >= rules.drift_share
                fired += decision.drifted
                for rule in decision.rules_fired:
                    by_rule[rule] = by_rule.get(rule, 0) + 1
            line = {"scenario": name, "rows": rows, "seeds": seeds, "default_rule": default, "policy": fired}
            print(json.dumps(line | {"by_rule": by_rule}), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="10000,100000,1000000", help="comma-separated window sizes")
    parser.add_argument("--reps", type=int, default=3, help="check runs per window (the median is reported)")
    parser.add_argument("--scenarios", action="store_true", help="print the scenario detection table instead")
    parser.add_argument("--seeds", type=int, default=20, help="windows per scenario and size (--scenarios)")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, rows, kind, extra = args.child
        if mode == "check":
            out = child_check(int(rows), kind, datetime.fromisoformat(extra))
        else:
            out = child_evidently(int(rows), kind, int(extra))
        print(json.dumps(out))
        return 0
    sizes = [int(size) for size in args.rows.split(",")]
    if args.scenarios:
        scenario_table(sizes, args.seeds)
        return 0
    print(json.dumps(bench(sizes, args.reps)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
