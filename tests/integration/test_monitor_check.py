"""Whole drift checks against the real emulators: GCS logs and reports, Pub/Sub requests, MLflow metrics.

Each test gets its own bucket (logs, reports, trigger state); the champion is the session's `churn` v1,
whose reference rows live in the session bucket.
"""

import gzip
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from google.cloud import pubsub_v1

from churnflow.core import schema
from churnflow.core.messages import RetrainRequested
from churnflow.monitoring.champion import load_champion
from churnflow.monitoring.check import run_check
from churnflow.monitoring.errors import MonitorUnavailable
from churnflow.monitoring.reports import ReportStore
from churnflow.registry import tags
from churnflow.retraining import request_state
from churnflow.retraining.request_store import StateStore
from churnflow.settings import MonitorSettings
from churnflow.sim import scenarios
from churnflow.storage import gcs, layout, request_log
from factories import retrain_request

pytestmark = pytest.mark.integration
PROJECT = "churnflow-test"


class Monitor:
    """A test's bucket with helpers to fill its request log, run checks and read what they left."""

    def __init__(self, env, dataset):
        self.bucket = f"monitor-{uuid.uuid4().hex[:10]}"
        gcs.ensure_bucket(PROJECT, self.bucket)
        self.dataset = dataset
        self.env = env
        self.settings = MonitorSettings(bucket=self.bucket)
        self.champion = load_champion(self.settings)

    def log(self, scenario, rows, start, seed=0, batch_rows=500):
        """Write `rows` requests of a scenario, 20 a second from `start`, as the predict service would."""
        window = scenarios.window(self.dataset, scenario, rows, seed)
        records = list(
            scenarios.to_log_records(window, self.champion.scorer, self.champion.version, start.timestamp(), 20)
        )
        for name, body in scenarios.log_objects(records, batch_rows, tag=f"s{seed}-"):
            self.put(name, body)

    def put(self, name, body):
        gcs.write_bytes(PROJECT, layout.gs_uri(self.bucket, name), body)

    def check(self, now, publish=None, **overrides):
        settings = self.settings.model_copy(update=overrides) if overrides else self.settings
        return run_check(settings, now=now, publish=publish)

    def state(self):
        return StateStore(PROJECT, self.bucket, self.settings.model_name).read()[0]


@pytest.fixture
def monitor(stack_env, champion, dataset):
    return Monitor(stack_env, dataset)


@pytest.fixture
def requests_seen(stack_env):
    """A fresh subscription on the retrain topic: pull() returns the RetrainRequested published since."""
    subscriber = pubsub_v1.SubscriberClient()
    topic = f"projects/{PROJECT}/topics/retrain-requests"
    name = subscriber.subscription_path(PROJECT, f"monitor-test-{uuid.uuid4().hex[:8]}")
    subscriber.create_subscription(name=name, topic=topic)

    def pull(expect_at_least=0):
        found = []
        for _ in range(10):
            reply = subscriber.pull(subscription=name, max_messages=50, timeout=5, return_immediately=True)
            if reply.received_messages:
                subscriber.acknowledge(subscription=name, ack_ids=[m.ack_id for m in reply.received_messages])
                found += [RetrainRequested.from_bytes(m.message.data) for m in reply.received_messages]
            elif len(found) >= expect_at_least:
                break
        return found

    yield pull
    subscriber.delete_subscription(subscription=name)
    subscriber.close()


NOW = datetime.now(UTC).replace(microsecond=0)


def test_small_window_decides_nothing(monitor):
    monitor.log("month_to_month_fibre", 200, NOW - timedelta(minutes=10))
    summary = monitor.check(NOW)
    assert summary.status == "insufficient_data" and summary.decision is None and summary.report_uri is None
    assert summary.window.valid_rows == 200 and summary.trigger.action == "none"
    assert summary.window.end == NOW - timedelta(seconds=5)  # settle_s: batches still uploading wait
    index = ReportStore(PROJECT, monitor.bucket).read_index()
    assert [e.check_id for e in index.entries] == [summary.check_id]
    assert ReportStore(PROJECT, monitor.bucket).read_latest() is None
    assert monitor.state() is None


def test_in_distribution_window_is_reported_without_drift(monitor):
    from mlflow import MlflowClient

    monitor.log("in_distribution", 2000, NOW - timedelta(minutes=30))
    summary = monitor.check(NOW)
    assert summary.status == "no_drift" and not summary.decision.drifted and summary.trigger.action == "none"
    assert summary.window.valid_rows == summary.window.tested_rows == 2000 and not summary.window.sampled
    assert summary.window.model_versions == {monitor.champion.version: 2000}
    assert summary.champion_version == monitor.champion.version
    assert [c.column for c in summary.drift.columns] == [*schema.FEATURE_NAMES, "churn_probability"]

    store = ReportStore(PROJECT, monitor.bucket)
    html = store.read_report(summary.check_id).decode()
    assert "churn_probability" in html and "tenure" in html
    stored = gcs.read_bytes(PROJECT, summary.summary_uri)
    assert type(summary).model_validate_json(stored) == summary
    assert store.read_latest().check_id == summary.check_id

    run = MlflowClient(monitor.env["MLFLOW_TRACKING_URI"]).get_run(summary.mlflow_run_id)
    assert run.data.tags[tags.CHECK_STATUS] == "no_drift"
    assert run.data.metrics["drift_share"] == pytest.approx(summary.drift.drift_share)
    assert run.data.metrics["window.valid_rows"] == 2000
    assert run.data.metrics["score.MonthlyCharges"] == pytest.approx(summary.drift.column("MonthlyCharges").score)


def test_drift_publishes_one_request_and_holds_while_it_is_pending(monitor, requests_seen):
    monitor.log("month_to_month_fibre", 2000, NOW - timedelta(minutes=30))
    first = monitor.check(NOW)
    assert first.status == "drift" and first.trigger.action == "published"
    assert set(first.decision.rules_fired) >= {"importance", "prediction"}

    [message] = requests_seen(expect_at_least=1)
    assert message.request_id == first.trigger.request_id and message.check_id == first.check_id
    assert message.champion_version == monitor.champion.version and message.report_uri == first.report_uri
    assert message.reason == f"drift: {first.decision.reason}" and "Contract" in message.drifted_columns
    assert message.rules == first.retrain_rules
    assert (message.window_start, message.window_end, message.window_rows) == (
        first.window.start,
        first.window.end,
        2000,
    )
    state = monitor.state()
    assert (state.status, state.request_id) == ("pending", message.request_id)

    # More drifted traffic after the first check: a new window, drift again, but no second request.
    monitor.log("month_to_month_fibre", 2000, NOW + timedelta(minutes=1), seed=1)
    second = monitor.check(NOW + timedelta(minutes=5))
    assert second.window.start == first.window.end and second.window.valid_rows == 2000
    assert second.status == "drift" and second.trigger.action == "suppressed"
    assert "is pending" in second.trigger.reason
    assert requests_seen() == []


def test_concurrent_checks_publish_exactly_one_request(monitor, requests_seen):
    monitor.log("new_customers", 2000, NOW - timedelta(minutes=30))
    with ThreadPoolExecutor(4) as pool:
        summaries = list(pool.map(lambda _: monitor.check(NOW), range(4)))
    assert [s.status for s in summaries] == ["drift"] * 4
    actions = sorted(s.trigger.action for s in summaries)
    assert actions == ["published", "suppressed", "suppressed", "suppressed"]
    [message] = requests_seen(expect_at_least=1)
    assert message.request_id == monitor.state().request_id
    assert len(ReportStore(PROJECT, monitor.bucket).read_index().entries) == 4


def test_publish_failure_fails_the_check_and_withdraws_the_claim(monitor, requests_seen):
    def broken(message):
        raise RuntimeError("pubsub down")

    monitor.log("month_to_month_fibre", 1000, NOW - timedelta(minutes=30))
    with pytest.raises(MonitorUnavailable, match="pubsub down"):
        monitor.check(NOW, publish=broken)
    state = monitor.state()
    assert state.status == "failed" and "publish failed" in state.detail
    assert ReportStore(PROJECT, monitor.bucket).read_index().entries == ()  # nothing recorded as done

    retry = monitor.check(NOW + timedelta(seconds=30))
    assert retry.trigger.action == "published" and monitor.state().status == "pending"
    assert [m.request_id for m in requests_seen(expect_at_least=1)] == [retry.trigger.request_id]


def test_no_request_within_the_cooldown_after_a_promotion(monitor, requests_seen):
    earlier = retrain_request(
        champion_version=monitor.champion.version,
        window_start=NOW - timedelta(hours=3),
        window_end=NOW - timedelta(hours=2),
    )
    store = StateStore(PROJECT, monitor.bucket, "churn")
    state = request_state.start(
        request_state.claim(earlier, NOW - timedelta(hours=2)), earlier.request_id, NOW - timedelta(hours=2)
    )
    promoted = request_state.finish(state, earlier.request_id, NOW - timedelta(minutes=20), promoted_version=7)
    store.write(promoted, 0)

    monitor.log("month_to_month_fibre", 1000, NOW - timedelta(minutes=10))
    summary = monitor.check(NOW)
    assert summary.status == "drift" and summary.trigger.action == "suppressed"
    assert summary.trigger.reason.startswith("cooldown: last retrain promoted 1200 s ago")
    after = monitor.check(NOW + timedelta(hours=7), since_last_check=False, window_hours=8)
    assert after.trigger.action == "published"
    assert len(requests_seen(expect_at_least=1)) == 1


def test_damaged_objects_and_rows_are_skipped_and_counted(monitor):
    start = NOW - timedelta(minutes=20)
    monitor.log("in_distribution", 1000, start)
    good = request_log.encode_batch(
        scenarios.to_log_records(
            scenarios.window(monitor.dataset, "in_distribution", 100, 9), monitor.champion.scorer, 1, 0
        )
    )
    monitor.put(layout.request_log_object(start + timedelta(minutes=2), "truncated"), good[: len(good) // 2])
    lines = [orjson.dumps({**schema.EXAMPLE_CUSTOMER, "model_version": 1})] * 3
    lines += [b"{oops", orjson.dumps({**schema.EXAMPLE_CUSTOMER, "model_version": 1, "Contract": "Weekly"})]
    monitor.put(layout.request_log_object(start + timedelta(minutes=3), "mixed"), gzip.compress(b"\n".join(lines)))
    monitor.put(layout.request_log_partition(start) + "README.txt", b"not a batch")

    summary = monitor.check(NOW)
    window = summary.window
    assert (window.corrupt_objects, window.unnamed_objects, window.bad_lines, window.bad_rows) == (1, 1, 1, 1)
    assert window.valid_rows == 1003 and window.lines == 1005
    assert summary.status == "no_drift"


def test_unreadable_bucket_makes_the_check_unavailable(monitor):
    with pytest.raises(MonitorUnavailable, match="NotFound"):
        monitor.check(NOW, bucket=f"missing-{uuid.uuid4().hex[:8]}")


def test_every_check_becomes_a_run_of_the_models_evidently_project(monitor):
    from evidently.ui.storage.local.base import LocalState

    from churnflow.monitoring import history

    monitor.log("month_to_month_fibre", 200, NOW - timedelta(hours=2))
    small = monitor.check(NOW - timedelta(hours=1))
    monitor.log("in_distribution", 2000, NOW - timedelta(minutes=30))
    calm = monitor.check(NOW)
    monitor.log("month_to_month_fibre", 2000, NOW + timedelta(minutes=1), seed=1)
    drifted = monitor.check(NOW + timedelta(minutes=5), history_size=2)  # the oldest run goes

    workspace = LocalState(layout.evidently_workspace_uri(monitor.bucket))  # as Evidently's UI reads it
    pid = history.project_id("churn")
    assert workspace.list_projects() == [pid] and workspace.read_dashboard(pid).panels
    runs = [workspace.read_snapshot(pid, run) for run in sorted(str(r) for r in workspace.list_snapshots(pid))]
    assert [run.name for run in runs] == [calm.check_id, drifted.check_id] and small.check_id
    assert [run.tags[0] for run in runs] == ["no_drift", "drift"]
    for run, summary in zip(runs, (calm, drifted), strict=True):
        found = {
            r.metric_value_location.metric.params.get("name"): r.value
            for r in run.metric_results.values()
            if r.metric_value_location.metric.params["type"] == history.CHECK_VALUE
        }
        assert found["drift_share"] == pytest.approx(summary.drift.drift_share)
        assert found["predicted_churn_rate"] == pytest.approx(summary.drift.predicted_churn_rate)
        assert found["window.valid_rows"] == summary.window.valid_rows
    assert runs[1].widgets  # the drift table, shown on the run's page
