"""`make demo`: the whole loop on the local stack, told as a timeline.

The story, on real rows of the IBM data: the first champion is trained on data in which month-to-month
fibre-optic customers are under-represented (5 % of them kept). Production traffic first looks like the
training data; then it shifts towards that segment, and the segment's churn outcomes arrive as labels.
The monitor (called by the local scheduler) sees the drift and publishes a retrain request; the trigger
starts the retrain job; the gate compares challenger and champion on the same rows and promotes; the
predict service, polled all along by a steady trickle of requests, switches to the new version without a
restart. `run_loop` returns what happened, so the end-to-end test asserts on the same run a person watches.

The second story (`churnflow demo --story outcome`): v1 is trained on every customer, the traffic keeps
looking like them, but a segment's churn falls from 55 % to 10 %. No drift rule can see it; once the
labels arrive the performance rule does, and the retrain on recent data is judged on the newest labelled
requests (out of time). Each check line names the drift and performance rules that fired.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from math import nan
from pathlib import Path

import httpx
import pandas as pd

from churnflow.core import schema
from churnflow.local import stack
from churnflow.monitoring import history
from churnflow.monitoring.models import CheckStatus, CheckSummary
from churnflow.outcomes.label_import import LabelImport, import_labels
from churnflow.retraining.job import RetrainOutcome
from churnflow.retraining.request_state import RetrainState, RetrainStatus
from churnflow.retraining.request_store import StateStore
from churnflow.settings import REPO_ROOT, CommonSettings, LocalStackSettings, TrainSettings
from churnflow.sim import scenarios
from churnflow.sim.traffic import Prober, next_check, send, wait_for
from churnflow.storage import gcs, layout
from churnflow.storage.labels import LabelValidationError
from churnflow.training import data
from churnflow.training.register import run_training

SEGMENT_STORY = "segment"
OUTCOME_STORY = "outcome"
SEGMENT = "month-to-month fibre-optic customers"


class Timeline:
    """Prints what happens, stamped with the seconds since the demo started."""

    def __init__(self, out: Callable[[str], None] = print):
        self.started = time.monotonic()
        self.out = out

    def elapsed(self) -> float:
        """Seconds since the start."""
        return time.monotonic() - self.started

    def say(self, message: str) -> None:
        """One line of the timeline."""
        self.out(f"[{self.elapsed():6.1f}s] {message}")


@dataclass
class LoopResult:
    """What the loop did, for the end-to-end test and the closing summary."""

    checks: list[CheckSummary] = field(default_factory=list)
    retrain_status: str = ""
    promoted_version: int | None = None
    job_runs: int = 0
    versions_served: dict[int, int] = field(default_factory=dict)
    failed_requests: list[str] = field(default_factory=list)
    predict_pid_before: int = 0
    predict_pid_after: int = 0
    loop_seconds: float | None = None
    urls: dict[str, str] = field(default_factory=dict)
    retrain: RetrainOutcome | None = None


def _describe(summary: CheckSummary | None) -> str:
    return "the check failed (the scheduler will retry)" if summary is None else summary.headline()


def _gate_lines(outcome: RetrainOutcome) -> list[str]:
    """The gate's comparisons, challenger vs champion, as the timeline shows them."""
    new, old = f"v{outcome.version}", f"v{outcome.champion_version}"
    oot, champion_oot = outcome.challenger_oot or {}, outcome.champion_oot or {}
    base, champion_base = outcome.challenger_base or {}, outcome.champion_base or {}
    cut = datetime.fromtimestamp(outcome.oot_cut_ts, UTC).strftime("%H:%M:%S") if outcome.oot_cut_ts else "n/a"
    checks = ", ".join(f"{name} {'pass' if ok else 'FAIL'}" for name, ok in (outcome.gate_checks or {}).items())
    return [
        f"Retrain job: challenger {new} vs champion {old} on {int(oot.get('rows', 0))} out-of-time rows "
        f"(the newest labelled requests, logged from {cut} UTC on): AUC {champion_oot.get('roc_auc', nan):.4f} -> "
        f"{oot.get('roc_auc', nan):.4f}, Brier {champion_oot.get('brier', nan):.4f} -> {oot.get('brier', nan):.4f}",
        f"  and on {int(base.get('rows', 0))} base check rows: AUC {champion_base.get('roc_auc', nan):.4f} -> "
        f"{base.get('roc_auc', nan):.4f}, Brier {champion_base.get('brier', nan):.4f} -> {base.get('brier', nan):.4f}",
        f"  gate: {checks} -> {outcome.status.upper()} ({outcome.reason[:160]})",
    ]


def run_loop(
    local: LocalStackSettings, common: CommonSettings, timeline: Timeline, story: str = SEGMENT_STORY
) -> LoopResult:
    """Run the closed loop on a stack described by `local`/`common` (started here, stopped by the caller).

    `story`: SEGMENT_STORY (traffic shifts to a segment v1 barely saw; drift and labels) or OUTCOME_STORY
    (the same customers, a segment's churn changes: only the performance rule can see it).
    """
    say = timeline.say
    result = LoopResult()
    say(
        "Starting the local stack: GCS emulator, Pub/Sub emulator, MLflow, predict, monitor, trigger, scheduler, "
        "dashboard"
    )
    info = stack.up(local, common, stack.APPS)
    urls = {name: record.url for name, record in info.services.items()}
    result.urls = {
        "API docs": f"{urls['predict']}/docs",
        "MLflow UI": urls["mlflow"],
        "drift reports": f"{urls['monitor']}/view_report",
        "predict metrics": f"{urls['predict']}/metrics",
        "monitor metrics": f"{urls['monitor']}/metrics",
        "drift history": f"{urls['dashboard']}/projects/{history.project_id(common.model_name)}",
    }
    with exported(info.env()):  # the in-process training and GCS reads talk to this stack
        return _loop(local, common, timeline, info, result, story)


@contextmanager
def exported(env: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the duration of the block, then restore what was there."""
    previous = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _label(local: LocalStackSettings, common: CommonSettings, ids: list[str], churn: list[str | None]) -> str:
    """Import the known outcomes of logged requests `ids` once their log has reached GCS; says what arrived."""
    labelled = {i: outcome for i, outcome in zip(ids, churn, strict=True) if outcome is not None}
    settings = CommonSettings(bucket=common.bucket, project=common.project)
    labels_file = local.state_dir / "labels.csv"
    rows = [f"{i},{outcome},{pd.Timestamp.now(tz='UTC').isoformat()}" for i, outcome in labelled.items()]
    labels_file.write_text("request_id,churned,observed_at\n" + "\n".join(rows) + "\n")
    stored = wait_for(lambda: _import_once_logged(settings, labels_file), 30, "the request log to reach GCS", 0.5)
    return f"Labels arrive: {stored.labels} churn outcomes imported ({stored.uri})"


def _checks_until(
    until: Callable[[CheckSummary], bool],
    scheduler: str,
    seen: int,
    local: LocalStackSettings,
    timeline: Timeline,
    result: LoopResult,
) -> tuple[CheckSummary, int]:
    """Follow the scheduler's monitor checks, telling each, until one satisfies `until`."""
    while True:
        summary, seen = next_check(scheduler, seen, 4 * local.schedule_every_s + 60)
        timeline.say(f"Monitor check: {_describe(summary)}")
        if summary is not None:
            result.checks.append(summary)
            if until(summary):
                return summary, seen


def _retrain(common: CommonSettings, timeline: Timeline, result: LoopResult) -> RetrainState:
    """Wait for the triggered retrain to finish and tell the gate's comparisons."""
    store = StateStore(common.project, common.bucket, common.model_name)

    def finished() -> RetrainState | None:
        state, _ = store.read()
        done = (RetrainStatus.DONE, RetrainStatus.PROMOTED, RetrainStatus.FAILED)
        return state if state and state.status in done else None

    def run_record() -> RetrainOutcome | None:
        name = layout.run_record(state.request_id)
        return gcs.read_model(common.project, common.bucket, name, RetrainOutcome)[0]

    state = wait_for(finished, 180, "the retrain job")
    # the job records its run just after it marks the state finished
    outcome = wait_for(run_record, 30, "the retrain run record") if state.status is not RetrainStatus.FAILED else None
    result.retrain_status = state.status.value
    result.promoted_version = state.promoted_version
    result.retrain = outcome
    result.job_runs = len(gcs.list_names(common.project, common.bucket, layout.RUN_RECORDS_PREFIX))
    if outcome and outcome.challenger_oot and outcome.champion_oot and outcome.challenger_base:
        for line in _gate_lines(outcome):
            timeline.say(line)
    else:
        timeline.say(f"Retrain job ended {state.status.value}: {state.detail}")
    return state


def _first_champion(common: CommonSettings, story: str, timeline: Timeline) -> pd.DataFrame:
    """Train and register v1 as the story needs; returns the customers its traffic is drawn from."""
    training_uri = layout.gs_uri(common.bucket, layout.TRAINING_DATA)
    train = TrainSettings(bucket=common.bucket, project=common.project, data_uri=training_uri)
    if story == SEGMENT_STORY:
        rows = scenarios.under_represented_segment(data.load_dataset(), seed=0).base
        told = f"only 5% of the {SEGMENT} kept"
    else:
        rows = data.load_dataset()
        told = "the whole dataset"
    gcs.write_bytes(common.project, training_uri, rows.to_csv(index=False).encode(), "text/csv")
    timeline.say(f"Training data: {len(rows)} real customers, {told} ({training_uri})")
    first = run_training(train)
    timeline.say(
        f"Trained and registered {first.version.name} v{first.version.version} -> @champion "
        f"(held-out accuracy {first.metrics['accuracy']:.3f}, ROC-AUC {first.metrics['roc_auc']:.3f}, "
        f"Brier {first.metrics['brier']:.3f})"
    )
    return rows


def _loop(
    local: LocalStackSettings,
    common: CommonSettings,
    timeline: Timeline,
    info: stack.StackInfo,
    result: LoopResult,
    story: str,
) -> LoopResult:
    say = timeline.say
    urls = {name: record.url for name, record in info.services.items()}
    say(f"Stack ready in {info.total_s:.1f}s; the scheduler calls the monitor every {local.schedule_every_s:g}s")
    customers = _first_champion(common, story, timeline)

    predict = urls["predict"]
    wait_for(lambda: httpx.get(f"{predict}/ready", timeout=2).status_code == 200, 60, "predict to load v1")
    result.predict_pid_before = info.services["predict"].pid
    say(f"predict is serving v{httpx.get(f'{predict}/model', timeout=5).json()['version']} at {predict}")
    prober = Prober(predict, scenarios.window(customers, "in_distribution", 1000, seed=4).to_dict("records"))
    prober.start()

    scheduler = urls["scheduler"]
    seen = len(httpx.get(scheduler, timeout=5).json()["calls"])
    client = httpx.Client(timeout=30)
    normal = scenarios.window(customers, "in_distribution", 800, seed=1)
    send(client, predict, normal)
    say(f"Phase 1: {len(normal)} requests from customers like the training data")
    _, seen = _checks_until(
        lambda s: s.status is not CheckStatus.INSUFFICIENT_DATA, scheduler, seen, local, timeline, result
    )

    if story == SEGMENT_STORY:
        unseen = scenarios.under_represented_segment(data.load_dataset(), seed=0).unseen
        others = scenarios.window(customers, "in_distribution", 400, seed=2).assign(Churn=None)
        traffic = pd.concat([unseen, others]).sample(frac=1.0, random_state=3).reset_index(drop=True)
        told = f"traffic shifts: {len(traffic)} requests, {len(unseen)} of them {SEGMENT}"
    else:
        traffic = scenarios.labelled_window(customers, "in_distribution", 2400, seed=2, outcome="fibre_churn_falls")
        told = (
            f"{len(traffic)} requests from the same kind of customers, but {SEGMENT} now churn at 10% "
            "(55% before): the inputs do not move, the outcomes do"
        )
    ids = send(client, predict, traffic)
    say(f"Phase 2: {told}")
    # outcomes become known (in the segment story, for the new segment's customers only)
    say(_label(local, common, ids, traffic[schema.TARGET].tolist()))
    triggered, seen = _checks_until(lambda s: s.trigger.action == "published", scheduler, seen, local, timeline, result)
    seen_at = time.monotonic()
    say(
        f"Retrain requested by rules {', '.join(triggered.retrain_rules)}; report: "
        f"{result.urls['drift reports']}?check={triggered.check_id}"
    )
    state = _retrain(common, timeline, result)
    if state.promoted_version:
        wait_for(lambda: state.promoted_version in prober.versions, 60, "predict to serve the new champion")
        result.loop_seconds = prober.first_seen[state.promoted_version] - seen_at
        say(
            f"predict now serves v{state.promoted_version} (same process, no restart): retrain requested -> new "
            f"champion serving in {result.loop_seconds:.1f}s"
        )
    time.sleep(1.0)
    prober.stop()
    client.close()
    result.versions_served = dict(prober.versions)
    result.failed_requests = list(prober.failures)
    after = stack.load_info(local)
    result.predict_pid_after = after.services["predict"].pid if after else 0
    result.urls["champion run"] = champion_run_url(urls["mlflow"], common.model_name, common.champion_alias)
    say(f"Drift and performance history of the {len(result.checks)} checks: {result.urls['drift history']}")
    say(
        f"Steady probe during the whole run: {sum(prober.versions.values())} requests, "
        f"{len(prober.failures)} failed, versions served {dict(sorted(prober.versions.items()))}"
    )
    return result


def _import_once_logged(settings: CommonSettings, labels_file: Path) -> LabelImport | None:
    """Import the labels file, or None while some of the requests it names are not in the request log yet."""
    try:
        return import_labels(settings, labels_file)
    except LabelValidationError as error:
        if all("unknown request id" in text for text in error.errors):
            return None
        raise


def champion_run_url(mlflow_url: str, model_name: str, alias: str) -> str:
    """The MLflow UI page of the training run of the model version the alias points at."""
    from mlflow import MlflowClient

    client = MlflowClient(mlflow_url)
    run = client.get_run(str(client.get_model_version_by_alias(model_name, alias).run_id))
    return f"{mlflow_url}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"


def demo_settings() -> LocalStackSettings:
    """The demo's stack: its own state dir (a fresh registry each run), a fast scheduler and alias poll."""
    return LocalStackSettings(
        state_dir=REPO_ROOT / ".churnflow" / "demo", schedule_every_s=10.0, predict_poll_interval_s=1.0
    )


def main(keep: bool = False, story: str = SEGMENT_STORY) -> int:
    """Entry point of `churnflow demo`: a fresh stack under .churnflow/demo, the loop, a summary."""
    logging.getLogger("mlflow").setLevel(
        logging.WARNING
    )  # the timeline tells the story; MLflow's chatter would bury it
    timeline = Timeline()
    local, common = demo_settings(), CommonSettings()
    stack.down(local)
    shutil.rmtree(local.state_dir, ignore_errors=True)
    try:
        result = run_loop(local, common, timeline, story)
    except stack.PrerequisiteMissing as error:
        print(f"churnflow demo: a prerequisite is missing: {error}")
        return 2
    except (stack.StackError, TimeoutError) as error:
        print(f"churnflow demo failed: {error}\nLogs: {local.state_dir}")
        stack.down(local)
        return 1
    print()
    for name, url in result.urls.items():
        print(f"  {name:<14} {url}")
    if keep:
        print(f"\nThe stack keeps running (logs in {local.state_dir}); stop it with `churnflow demo --down`.")
    else:
        stack.down(local)
        timeline.say("Stack stopped (run `churnflow demo --keep` to leave it running).")
    ok = result.retrain_status == "promoted" and not result.failed_requests
    return 0 if ok else 1
