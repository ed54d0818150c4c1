"""The retrain job and its trigger on the real stack: labels, gate, promotion, idempotency, failure."""

import base64
import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from mlflow import MlflowClient

from churnflow.core.messages import MESSAGE_ID_ENV, REQUEST_ENV, RetrainRequested
from churnflow.core.scorer import CompiledScorer
from churnflow.outcomes.label_import import import_labels
from churnflow.registry import tags as tag_names
from churnflow.registry import write as registry_write
from churnflow.registry.read import RegistryClient
from churnflow.retraining import job, pubsub_trigger, request_state
from churnflow.retraining.job import RetrainOutcome, RetrainResult
from churnflow.retraining.lock import LockHeld, retrain_lock
from churnflow.retraining.pubsub_trigger import DeliveryStatus
from churnflow.retraining.request_state import RetrainStatus, Timing, claim, confirm
from churnflow.retraining.request_store import StateStore, request_retrain
from churnflow.settings import RetrainSettings
from churnflow.sim import scenarios
from churnflow.storage import gcs, layout, request_log
from churnflow.training.register import run_training
from factories import retrain_request

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def story(dataset):
    return scenarios.under_represented_segment(dataset, seed=1)


@pytest.fixture
def loop(stack_env, story, tmp_path):
    """A fresh model name and bucket: v1 trained on the base data, segment traffic logged and labelled."""
    name = f"churn-retrain-{uuid.uuid4().hex[:6]}"
    bucket = f"retrain-{uuid.uuid4().hex[:8]}"
    settings = RetrainSettings(model_name=name, bucket=bucket, CHURNFLOW_PROJECT="test", auc_floor=0.7)
    gcs.ensure_bucket("test", bucket)
    base_uri = layout.gs_uri(bucket, "data/base.csv")
    gcs.write_bytes("test", base_uri, story.base.to_csv(index=False).encode())
    settings = settings.model_copy(update={"data_uri": base_uri})
    v1 = run_training(settings)
    client = RegistryClient(stack_env["MLFLOW_TRACKING_URI"])
    scorer = CompiledScorer(client.scorer_artifact(client.version_by_alias(name, "champion")))
    traffic = story.unseen.sample(frac=1.0, random_state=0).reset_index(drop=True)
    records = list(scenarios.to_log_records(traffic, scorer, 1, time.time(), id_prefix="req"))
    for start in range(0, len(records), 500):
        when = datetime.now(UTC)
        name_ = layout.request_log_object(when, uuid.uuid4().hex[:8])
        gcs.write_bytes("test", layout.gs_uri(bucket, name_), request_log.encode_batch(records[start : start + 500]))
    labels_file = tmp_path / "labels.csv"
    lines = ["request_id,churned,observed_at"] + [
        f"{r['request_id']},{churn},2026-11-20T00:00:00Z" for r, churn in zip(records, traffic["Churn"], strict=True)
    ]
    labels_file.write_text("\n".join(lines) + "\n")
    stored = import_labels(settings, labels_file)
    assert stored.labels == len(traffic) and stored.uri.startswith(f"gs://{bucket}/labels/")
    return settings, v1, client


def refuse_constant(constant):
    raise ValueError(f"{constant} is not JSON")


def request_for(settings, champion_version=1):
    now = datetime.now(UTC)
    return retrain_request(
        model_name=settings.model_name,
        champion_version=champion_version,
        window_start=now,
        window_end=now,
        report_uri=f"gs://{settings.bucket}/reports/r.html",
    )


def test_retrain_on_labelled_segment_traffic_is_promoted_and_better_on_the_segment(loop):
    settings, v1, client = loop
    request = request_for(settings)
    store = StateStore(settings.project, settings.bucket, settings.model_name)
    store.write(confirm(claim(request, datetime.now(UTC)), datetime.now(UTC)), 0)

    outcome = job.run(settings, request, "msg-1")

    assert outcome.status is RetrainResult.PROMOTED and outcome.version == 2
    assert client.version_by_alias(settings.model_name, "champion").version == 2
    record, _ = gcs.read_model("test", settings.bucket, layout.run_record(request.request_id), RetrainOutcome)
    assert record == outcome.model_copy(update={"finished_at": record.finished_at}) and record.finished_at
    stored = gcs.read_bytes("test", layout.gs_uri(settings.bucket, layout.run_record(request.request_id)))
    assert json.loads(stored, parse_constant=refuse_constant)["status"] == "promoted"  # strict JSON: no NaN
    tags = MlflowClient().get_model_version(settings.model_name, "2").tags
    assert tags[tag_names.TRIGGER_MESSAGE_ID] == "msg-1"
    assert tags[tag_names.DRIFT_REPORT_URI] == request.report_uri
    assert tags[tag_names.GATE_DECISION] == "promote"
    assert len(tags[tag_names.DATA_FINGERPRINT]) == 64 and tags[tag_names.DATA_FINGERPRINT] != v1.data_fingerprint
    assert int(tags[tag_names.RECENT_TRAIN_ROWS]) > 1000 and int(tags[tag_names.OOT_ROWS]) > 400
    # out of time: every evaluation row was logged after the newest row trained on, and the cut is recorded
    assert float(tags[tag_names.TRAIN_RECENT_LAST_TS]) < float(tags[tag_names.OOT_CUT_TS])
    assert float(tags[tag_names.OOT_CUT_TS]) <= float(tags[tag_names.OOT_LAST_TS])
    assert outcome.oot_cut_ts == pytest.approx(float(tags[tag_names.OOT_CUT_TS]))
    assert tags[tag_names.GATE_CHECKS] == "oot_auc=pass,oot_brier=pass,base=pass,gain=pass"
    brier_gain = float(tags[f"{tag_names.CHAMPION_OOT_PREFIX}brier"]) - float(
        tags[f"{tag_names.CHALLENGER_OOT_PREFIX}brier"]
    )
    assert brier_gain > 0.005  # better calibrated on the newest requests of the shifted segment
    assert 0 < float(tags[tag_names.BASE_WEIGHT]) < 1
    state, _ = store.read()
    assert state.status is RetrainStatus.PROMOTED and state.promoted_version == 2

    again = job.run(settings, request, "msg-1")
    assert again.status is RetrainResult.SKIPPED and again.reason == "already done: promoted"
    stale = job.run(settings, request_for(settings, champion_version=1), "msg-2")
    assert (
        stale.status is RetrainResult.SKIPPED
        and stale.reason == "request was for v1, which is not the champion (v2): skipped"
    )
    never = job.run(settings, request_for(settings, champion_version=9999), "msg-3")
    assert never.reason == "request was for v9999, which is not the champion (v2): skipped"
    assert "moved" not in never.reason and never.champion_version == 2
    assert [v.version for v in MlflowClient().search_model_versions(f"name='{settings.model_name}'")] == ["2", "1"]


def test_too_few_recent_labels_keep_the_champion_and_say_so(loop):
    settings, _, client = loop
    strict = settings.model_copy(update={"min_oot_rows": 100_000})

    outcome = job.run(strict, None, "manual-few")

    assert outcome.status is RetrainResult.REJECTED
    assert outcome.reason.startswith("too few recent labels to judge:") and "the champion stays" in outcome.reason
    assert client.version_by_alias(settings.model_name, "champion").version == 1
    assert client.version_by_alias(settings.model_name, "challenger").version == 2
    tags = MlflowClient().get_model_version(settings.model_name, "2").tags
    assert tags[tag_names.GATE_DECISION] == "reject" and tags[tag_names.GATE_CHECKS] == "enough_recent_labels=fail"


def test_a_later_retrain_never_evaluates_on_rows_an_earlier_version_trained_on(loop):
    settings, _, client = loop
    first = job.run(settings, None, "manual-first")
    second = job.run(settings, None, "manual-second")  # the same labelled traffic, nothing newer: v2 vs v3

    assert first.status is RetrainResult.PROMOTED and first.oot_cut_ts is not None
    tags = MlflowClient().get_model_version(settings.model_name, str(first.version)).tags
    trained_until = float(tags[tag_names.TRAIN_RECENT_LAST_TS])
    assert second.challenger_oot is not None
    assert second.oot_cut_ts is not None and second.oot_cut_ts > trained_until
    # the rows v2 was judged on were never trained on, so they may judge v3; the retrain learnt nothing new
    assert second.challenger_oot["rows"] == first.challenger_oot["rows"]
    assert second.status is RetrainResult.REJECTED and second.reason.startswith("a tie keeps the champion")


def test_a_job_dying_before_the_alias_moves_changes_nothing_and_the_rerun_succeeds(loop, monkeypatch):
    settings, _, client = loop
    request = request_for(settings)

    def crash(*args, **kwargs):
        raise RuntimeError("killed half-way")

    with monkeypatch.context() as patch:
        patch.setattr(registry_write, "set_alias", crash)
        with pytest.raises(RuntimeError, match="killed half-way"):
            job.run(settings, request, "msg-crash")
    assert client.version_by_alias(settings.model_name, "champion").version == 1
    assert gcs.read_json("test", settings.bucket, layout.run_record(request.request_id)) == (None, 0)

    outcome = job.run(settings, request, "msg-crash")
    assert outcome.status is RetrainResult.PROMOTED and outcome.version == 3
    assert client.version_by_alias(settings.model_name, "champion").version == 3


class RecordingLauncher:
    def __init__(self):
        self.launched = []

    def launch(self, env):
        self.launched.append(dict(env))
        return f"exec-{len(self.launched)}"


def envelope(data: bytes, message_id: str) -> dict:
    return {"messageId": message_id, "data": base64.b64encode(data).decode(), "attributes": {}}


def new_message_id():
    return str(uuid.uuid4().int % 10**16)  # Pub/Sub message ids are decimal numbers


@pytest.fixture
def bus(stack_env):
    """Trigger settings on a fresh bucket and model name (the trigger needs no trained model)."""
    bucket = f"bus-{uuid.uuid4().hex[:8]}"
    gcs.ensure_bucket("test", bucket)
    settings = RetrainSettings(bucket=bucket, model_name=f"churn-bus-{uuid.uuid4().hex[:6]}", CHURNFLOW_PROJECT="test")
    return settings, StateStore("test", bucket, settings.model_name)


def test_trigger_starts_one_execution_per_message_and_rejects_bad_ones(bus):
    settings, store = bus
    launcher = RecordingLauncher()
    request = request_for(settings)
    message_id = new_message_id()

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(
            pool.map(
                lambda _: pubsub_trigger.handle(envelope(request.to_bytes(), message_id), settings, launcher), range(8)
            )
        )
    assert sorted(o.status for o in outcomes) == [DeliveryStatus.DUPLICATE] * 7 + [DeliveryStatus.STARTED]
    (env,) = launcher.launched
    assert env[MESSAGE_ID_ENV] == message_id
    assert RetrainRequested.model_validate_json(env[REQUEST_ENV]) == request

    bad = [
        {"messageId": "11", "data": "%%% not base64"},
        envelope(b"{not json", "12"),
        envelope(b'{"kind": "retrain-requested"}', "13"),
        envelope(b'{"kind": "something-else"}', "14"),
        {"data": base64.b64encode(request.to_bytes()).decode()},
        envelope(request.to_bytes(), "../escape"),
        envelope(request.to_bytes(), "../retrain-lock"),
        envelope(request.to_bytes(), f"{message_id}\n"),  # `$` would let a trailing newline pass
        envelope(request.to_bytes(), "m-not-a-pubsub-id"),
        envelope(request.model_copy(update={"model_name": "someone-else"}).to_bytes(), "15"),
        envelope(request.model_copy(update={"request_id": "../retrain-lock"}).to_bytes(), "16"),
    ]
    results = [pubsub_trigger.handle(message, settings, launcher) for message in bad]
    assert [r.status for r in results] == [DeliveryStatus.REJECTED] * len(bad)
    assert "champion_version" in results[2].detail and "no messageId" in results[4].detail
    assert all("is not a Pub/Sub message id" in r.detail for r in results[5:9])
    assert "not 'churn-bus-" in results[9].detail and "not a safe object-name token" in results[10].detail
    assert len(launcher.launched) == 1
    names = gcs.list_names("test", settings.bucket, "")
    assert layout.RETRAIN_LOCK not in names and all(n.startswith(layout.STATE_PREFIX) for n in names)


def test_the_bus_obeys_the_monitors_pending_request_and_cooldown(bus):
    """Messages published straight to the topic meet the same state machine as the monitor's own."""
    settings, store = bus
    launcher = RecordingLauncher()
    now = datetime.now(UTC)
    deliveries = []

    def deliver(request):  # Pub/Sub pushes within ~0.1 s: the monitor's claim is not confirmed yet
        deliveries.append(pubsub_trigger.handle(envelope(request.to_bytes(), new_message_id()), settings, launcher))
        return deliveries[-1].message_id

    monitors = request_for(settings)
    outcome = request_retrain(store, deliver, monitors, now, Timing.from_settings(settings))
    assert outcome.action == "published" and deliveries[0].status is DeliveryStatus.STARTED
    assert store.read()[0].status is RetrainStatus.PENDING

    direct = [request_for(settings) for _ in range(3)]
    refused = [pubsub_trigger.handle(envelope(r.to_bytes(), new_message_id()), settings, launcher) for r in direct]
    assert [r.status for r in refused] == [DeliveryStatus.REFUSED] * 3
    assert all(f"retrain {monitors.request_id} for v1 is pending" in r.detail for r in refused)
    assert len(launcher.launched) == 1
    record, _ = gcs.read_json("test", settings.bucket, layout.message_record(refused[0].message_id))
    assert record["admitted"] is False and "is pending" in record["reason"]
    assert record["request"]["request_id"] == direct[0].request_id
    again = pubsub_trigger.handle(envelope(direct[0].to_bytes(), refused[0].message_id), settings, launcher)
    assert again.status is DeliveryStatus.DUPLICATE

    store.update(lambda s: request_state.start(s, monitors.request_id, datetime.now(UTC)))
    store.update(lambda s: request_state.finish(s, monitors.request_id, datetime.now(UTC), promoted_version=2))
    late = pubsub_trigger.handle(envelope(request_for(settings, 2).to_bytes(), new_message_id()), settings, launcher)
    assert late.status is DeliveryStatus.REFUSED and late.detail.startswith("cooldown: last retrain promoted")
    replay = pubsub_trigger.handle(envelope(monitors.to_bytes(), new_message_id()), settings, launcher)
    assert replay.status is DeliveryStatus.REFUSED and "is already promoted" in replay.detail
    assert len(launcher.launched) == 1

    after = datetime.now(UTC) + timedelta(seconds=settings.cooldown_s + 1)
    unclaimed = request_for(settings, 2)
    started = pubsub_trigger.handle(envelope(unclaimed.to_bytes(), new_message_id()), settings, launcher, after)
    assert started.status is DeliveryStatus.STARTED and len(launcher.launched) == 2
    state, _ = store.read()
    assert (state.status, state.request_id, state.champion_version) == ("pending", unclaimed.request_id, 2)


def test_the_lock_is_waited_for_and_a_retried_execution_takes_over_its_own(stack_env):
    bucket = f"lock-{uuid.uuid4().hex[:8]}"
    gcs.ensure_bucket("test", bucket)
    gcs.write_json("test", bucket, layout.RETRAIN_LOCK, {"owner": "other", "acquired_at": time.time()}, 0)
    with pytest.raises(LockHeld, match="held by 'other'"), retrain_lock("test", bucket, "mine", 3600, wait_s=1.0):
        pass
    with retrain_lock("test", bucket, "other", 3600):  # the same owner: a retry after its predecessor died
        assert gcs.read_json("test", bucket, layout.RETRAIN_LOCK)[0]["owner"] == "other"
    assert gcs.read_json("test", bucket, layout.RETRAIN_LOCK) == (None, 0)

    gcs.write_json("test", bucket, layout.RETRAIN_LOCK, {"owner": "other", "acquired_at": time.time()}, 0)
    release = threading.Timer(1.5, gcs.delete_object, ("test", bucket, layout.RETRAIN_LOCK))
    release.start()
    with retrain_lock("test", bucket, "mine", 3600, wait_s=60):  # held for an hour: only the release frees it
        assert gcs.read_json("test", bucket, layout.RETRAIN_LOCK)[0]["owner"] == "mine"
    release.join()


def test_a_request_that_loses_the_lock_race_is_recorded_and_retried(loop, monkeypatch):
    settings, _, client = loop
    request = request_for(settings)
    store = StateStore(settings.project, settings.bucket, settings.model_name)
    store.write(confirm(claim(request, datetime.now(UTC)), datetime.now(UTC)), 0)
    gcs.write_json("test", settings.bucket, layout.RETRAIN_LOCK, {"owner": "99", "acquired_at": time.time()}, 0)

    for name, value in {
        "CHURNFLOW_PROJECT": "test",
        "CHURNFLOW_BUCKET": settings.bucket,
        "CHURNFLOW_MODEL_NAME": settings.model_name,
        "CHURNFLOW_DATA_URI": settings.data_uri,
        "CHURNFLOW_LOCK_WAIT_S": "1",
        REQUEST_ENV: request.model_dump_json(),
        MESSAGE_ID_ENV: "42",
    }.items():
        monkeypatch.setenv(name, value)
    assert job.main() == 75  # non-zero: Cloud Run retries the execution
    state, _ = store.read()
    assert state.status is RetrainStatus.PENDING and state.detail.startswith("waiting: retrain lock held by '99'")
    assert gcs.read_json("test", settings.bucket, layout.run_record(request.request_id)) == (None, 0)

    retry = settings.model_copy(update={"lock_wait_s": 120.0})
    release = threading.Timer(2.0, gcs.delete_object, ("test", settings.bucket, layout.RETRAIN_LOCK))
    release.start()
    outcome = job.run(retry, request, "42")  # the retried execution waits for the lock, then retrains
    release.join()
    assert (
        outcome.status is RetrainResult.PROMOTED
        and client.version_by_alias(settings.model_name, "champion").version == 2
    )
    assert store.read()[0].status is RetrainStatus.PROMOTED


def test_promote_by_hand_rolls_the_champion_back(loop, stack_env):
    import os
    import subprocess
    import sys

    settings, _, client = loop
    assert job.run(settings, request_for(settings), "msg-rollback").status is RetrainResult.PROMOTED
    assert client.version_by_alias(settings.model_name, "champion").version == 2
    env = {**os.environ, "CHURNFLOW_MODEL_NAME": settings.model_name, "CHURNFLOW_BUCKET": settings.bucket}
    result = subprocess.run(
        [sys.executable, "-m", "churnflow.cli", "promote", "--version", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert f"{settings.model_name}@champion: v2 -> v1" in result.stdout
    assert client.version_by_alias(settings.model_name, "champion").version == 1
    assert MlflowClient().get_model_version(settings.model_name, "1").tags[tag_names.PROMOTED_BY] == "manual"


def test_a_retrain_run_logs_its_evaluation_artifacts_and_input_datasets(loop):
    from churnflow.training import evaluation_plots

    settings, _, _ = loop
    outcome = job.run(settings, None, "manual-artifacts")
    client = MlflowClient()
    version = client.get_model_version(settings.model_name, str(outcome.version))
    run = client.get_run(version.run_id)
    listed = {item.path for item in client.list_artifacts(run.info.run_id, evaluation_plots.ARTIFACT_DIR)}
    assert {evaluation_plots.ROC_PLOT, evaluation_plots.CONFUSION_JSON, evaluation_plots.CALIBRATION_PLOT} <= listed
    local = Path(client.download_artifacts(run.info.run_id, evaluation_plots.CONFUSION_JSON))
    counts = json.loads(local.read_text())
    cells = ("true_negative", "false_positive", "false_negative", "true_positive")
    # the plots are of the rows the version's expected metrics come from: the out-of-time rows here
    assert run.data.params["metrics_on"] == "out_of_time"
    assert sum(counts[cell] for cell in cells) == int(run.data.params["evaluation_rows"])
    assert int(run.data.params["evaluation_rows"]) == int(run.data.params["oot_rows"]) > 0
    inputs = {item.dataset.name: item.dataset for item in run.inputs.dataset_inputs}
    assert inputs["training"].digest == version.tags[tag_names.DATA_FINGERPRINT][:36]
    # MLflow keeps one dataset per (experiment, name, digest): an earlier test's run of the same rows in
    # another bucket may own the record, so the object name is compared (within one bucket it is the same URI)
    reference = layout.parse_gs_uri(version.tags[tag_names.REFERENCE_URI])[1]
    assert layout.parse_gs_uri(json.loads(inputs["training"].source)["uri"])[1] == reference
    assert json.loads(inputs["evaluation"].source)["uri"].endswith("/data/base.csv")
