"""`make demo`: the whole loop on the local stack, told as a timeline.

The story, on real rows of the IBM data: the first champion is trained on data in which month-to-month
fibre-optic customers are under-represented (5 % of them kept). Production traffic first looks like the
training data; then it shifts towards that segment, and the segment's churn outcomes arrive as labels.
The monitor (called by the local scheduler) sees the drift and publishes a retrain request; the trigger
starts the retrain job; the gate compares challenger and champion on the same rows and promotes; the
predict service, polled all along by a steady trickle of requests, switches to the new version without a
restart. `run_loop` returns what happened, so the end-to-end test asserts on the same run a person watches.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import httpx
import pandas as pd

from churnflow.core import schema
from churnflow.local import stack
from churnflow.monitoring import history
from churnflow.monitoring.models import CheckStatus, CheckSummary
from churnflow.outcomes.engine import open_engine
from churnflow.outcomes.label_import import import_labels
from churnflow.outcomes.labelled import unknown_request_ids
from churnflow.retraining.job import RetrainOutcome
from churnflow.retraining.request_state import RetrainState, RetrainStatus
from churnflow.retraining.request_store import StateStore
from churnflow.settings import REPO_ROOT, CommonSettings, LocalStackSettings, TrainSettings
from churnflow.sim import scenarios
from churnflow.sim.traffic import Prober, next_check, send, wait_for
from churnflow.storage import gcs, layout
from churnflow.training import data
from churnflow.training.register import run_training


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


def _describe(summary: CheckSummary | None) -> str:
    if summary is None:
        return "the check failed (the scheduler will retry)"
    share = f"drift share {summary.drift.drift_share:.2f}" if summary.drift else "no drift test"
    rules = ", ".join(summary.decision.rules_fired) if summary.decision and summary.decision.rules_fired else "none"
    text = (
        f"{summary.status.value.upper()} on {summary.window.valid_rows} rows of v{summary.champion_version}'s "
        f"traffic ({share}; rules fired: {rules}); trigger: {summary.trigger.action}"
    )
    if (known := summary.performance) is not None:
        auc = f"AUC {known.roc_auc:.3f}, " if known.roc_auc is not None else ""
        text += f"; on {known.rows} labelled requests: {auc}accuracy {known.accuracy:.3f}"
    return text


def run_loop(local: LocalStackSettings, common: CommonSettings, timeline: Timeline) -> LoopResult:
    """Run the closed loop on a stack described by `local`/`common` (started here, stopped by the caller)."""
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
        "drift history": f"{urls['dashboard']}/projects/{history.project_id(common.model_name)}",
    }
    with exported(info.env()):  # the in-process training and GCS reads talk to this stack
        return _loop(local, common, timeline, info, result)


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


def _loop(
    local: LocalStackSettings, common: CommonSettings, timeline: Timeline, info: stack.StackInfo, result: LoopResult
) -> LoopResult:
    say = timeline.say
    urls = {name: record.url for name, record in info.services.items()}
    say(f"Stack ready in {info.total_s:.1f}s; the scheduler calls the monitor every {local.schedule_every_s:g}s")

    story = scenarios.under_represented_segment(data.load_dataset(), seed=0)
    training_uri = layout.gs_uri(common.bucket, layout.TRAINING_DATA)
    gcs.write_bytes(common.project, training_uri, story.base.to_csv(index=False).encode(), "text/csv")
    segment = "month-to-month fibre-optic customers"
    say(f"Training data: {len(story.base)} real customers, only 5% of the {segment} kept ({training_uri})")
    train = TrainSettings(bucket=common.bucket, project=common.project, data_uri=training_uri)
    first = run_training(train)
    say(
        f"Trained and registered {first.version.name} v{first.version.version} -> @champion "
        f"(held-out accuracy {first.metrics['accuracy']:.3f}, ROC-AUC {first.metrics['roc_auc']:.3f})"
    )

    predict = urls["predict"]
    wait_for(lambda: httpx.get(f"{predict}/ready", timeout=2).status_code == 200, 60, "predict to load v1")
    result.predict_pid_before = info.services["predict"].pid
    say(f"predict is serving v{httpx.get(f'{predict}/model', timeout=5).json()['version']} at {predict}")
    prober = Prober(predict, scenarios.window(story.base, "in_distribution", 1000, seed=4).to_dict("records"))
    prober.start()

    scheduler = urls["scheduler"]
    seen = len(httpx.get(scheduler, timeout=5).json()["calls"])
    client = httpx.Client(timeout=30)
    normal = scenarios.window(story.base, "in_distribution", 800, seed=1)
    send(client, predict, normal)
    say(f"Phase 1: {len(normal)} requests from customers like the training data")
    summary = None
    while summary is None or summary.status is CheckStatus.INSUFFICIENT_DATA:
        summary, seen = next_check(scheduler, seen, 4 * local.schedule_every_s + 60)
        say(f"Monitor check: {_describe(summary)}")
        if summary is not None:
            result.checks.append(summary)

    others = scenarios.window(story.base, "in_distribution", 400, seed=2).assign(Churn=None)
    shifted = pd.concat([story.unseen, others]).sample(frac=1.0, random_state=3).reset_index(drop=True)
    ids = send(client, predict, shifted)
    say(f"Phase 2: traffic shifts: {len(shifted)} requests, {len(story.unseen)} of them {segment}")
    # outcomes become known for the new segment's customers (the others' are already in the training data)
    labelled = {i: churn for i, churn in zip(ids, shifted[schema.TARGET], strict=True) if churn is not None}
    settings = CommonSettings(bucket=common.bucket, project=common.project)
    engine = open_engine(settings)
    wait_for(
        lambda: not unknown_request_ids(engine, ids, pd.Timestamp.now(tz="UTC").date()),
        30,
        "the request log to reach GCS",
        every_s=0.5,
    )
    labels_file = local.state_dir / "labels.csv"
    rows = [f"{i},{churn},{pd.Timestamp.now(tz='UTC').isoformat()}" for i, churn in labelled.items()]
    labels_file.write_text("request_id,churned,observed_at\n" + "\n".join(rows) + "\n")
    uri, count = import_labels(settings, labels_file)
    say(f"Labels arrive: {count} churn outcomes imported ({uri})")

    drifted: CheckSummary | None = None
    while drifted is None:
        summary, seen = next_check(scheduler, seen, 4 * local.schedule_every_s + 60)
        say(f"Monitor check: {_describe(summary)}")
        if summary is not None:
            result.checks.append(summary)
            if summary.status is CheckStatus.DRIFT:
                drifted = summary
    drift_seen_at = time.monotonic()
    say(f"Drift report: {result.urls['drift reports']}?check={drifted.check_id}")

    store = StateStore(common.project, common.bucket, common.model_name)

    def finished() -> RetrainState | None:
        state, _ = store.read()
        return (
            state
            if state and state.status in (RetrainStatus.DONE, RetrainStatus.PROMOTED, RetrainStatus.FAILED)
            else None
        )

    def run_record() -> RetrainOutcome | None:
        name = layout.run_record(state.request_id)
        return gcs.read_model(common.project, common.bucket, name, RetrainOutcome)[0]

    state = wait_for(finished, 180, "the retrain job")
    # the job records its run just after it marks the state finished
    outcome = wait_for(run_record, 30, "the retrain run record") if state.status is not RetrainStatus.FAILED else None
    result.retrain_status = state.status.value
    result.promoted_version = state.promoted_version
    result.job_runs = len(gcs.list_names(common.project, common.bucket, layout.RUN_RECORDS_PREFIX))
    if outcome and outcome.challenger_metrics and outcome.champion_metrics:
        challenger, champion = outcome.challenger_metrics, outcome.champion_metrics
        say(
            f"Retrain job: challenger v{outcome.version} AUC {challenger['roc_auc']:.4f} vs champion "
            f"v{outcome.champion_version} {champion['roc_auc']:.4f} on the same {int(challenger['rows'])} rows "
            f"-> {outcome.status.upper()} ({outcome.reason})"
        )
        if outcome.champion_recent and outcome.challenger_recent:
            say(
                f"On held-out rows of the new segment ({int(outcome.challenger_recent['rows'])} customers): "
                f"AUC {outcome.champion_recent['roc_auc']:.4f} (v{outcome.champion_version}) -> "
                f"{outcome.challenger_recent['roc_auc']:.4f} (v{outcome.version})"
            )
    else:
        say(f"Retrain job ended {state.status.value}: {state.detail}")
    if state.promoted_version:
        wait_for(lambda: state.promoted_version in prober.versions, 60, "predict to serve the new champion")
        result.loop_seconds = prober.first_seen[state.promoted_version] - drift_seen_at
        say(
            f"predict now serves v{state.promoted_version} (same process, no restart): drift visible -> new "
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


def main(keep: bool = False) -> int:
    """Entry point of `churnflow demo`: a fresh stack under .churnflow/demo, the loop, a summary."""
    logging.getLogger("mlflow").setLevel(
        logging.WARNING
    )  # the timeline tells the story; MLflow's chatter would bury it
    timeline = Timeline()
    local, common = demo_settings(), CommonSettings()
    stack.down(local)
    shutil.rmtree(local.state_dir, ignore_errors=True)
    try:
        result = run_loop(local, common, timeline)
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
