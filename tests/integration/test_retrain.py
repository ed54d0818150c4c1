"""The retrain job and its trigger on the real stack: labels, gate, promotion, idempotency, failure."""

import base64
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
from mlflow import MlflowClient

from churnflow.core.messages import MESSAGE_ID_ENV, REQUEST_ENV, RetrainRequested
from churnflow.core.scorer import CompiledScorer
from churnflow.registry import tags as tag_names
from churnflow.registry import write as registry_write
from churnflow.registry.read import RegistryClient
from churnflow.retraining import job, pubsub_trigger
from churnflow.retraining.job import RetrainOutcome, RetrainResult
from churnflow.retraining.pubsub_trigger import DeliveryStatus
from churnflow.retraining.request_state import RetrainStatus, claim, confirm
from churnflow.retraining.request_store import StateStore
from churnflow.settings import RetrainSettings
from churnflow.sim import scenarios
from churnflow.storage import gcs, labels, layout, request_log
from churnflow.training.register import run_training

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
    uri, count = labels.import_labels(settings, labels_file)
    assert count == len(traffic) and uri.startswith(f"gs://{bucket}/labels/")
    return settings, v1, client


def request_for(settings, champion_version=1):
    now = datetime.now(UTC)
    return RetrainRequested(
        model_name=settings.model_name,
        champion_version=champion_version,
        reason="test drift",
        rules=("share",),
        drift_share=0.6,
        drifted_columns=("Contract",),
        window_start=now,
        window_end=now,
        window_rows=500,
        check_id="check-1",
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
    tags = MlflowClient().get_model_version(settings.model_name, "2").tags
    assert tags[tag_names.TRIGGER_MESSAGE_ID] == "msg-1"
    assert tags[tag_names.DRIFT_REPORT_URI] == request.report_uri
    assert tags[tag_names.GATE_DECISION] == "promote"
    assert len(tags[tag_names.DATA_FINGERPRINT]) == 64 and tags[tag_names.DATA_FINGERPRINT] != v1.data_fingerprint
    assert int(tags[tag_names.RECENT_TRAIN_ROWS]) > 1000
    recent_gain = float(tags[f"{tag_names.CHALLENGER_RECENT_PREFIX}roc_auc"]) - float(
        tags[f"{tag_names.CHAMPION_RECENT_PREFIX}roc_auc"]
    )
    assert recent_gain > 0.005  # better on held-out rows of the shifted segment
    state, _ = store.read()
    assert state.status is RetrainStatus.PROMOTED and state.promoted_version == 2

    again = job.run(settings, request, "msg-1")
    assert again.status is RetrainResult.SKIPPED and again.reason == "already done: promoted"
    stale = job.run(settings, request_for(settings, champion_version=1), "msg-2")
    assert stale.status is RetrainResult.SKIPPED and "champion moved from v1 to v2" in stale.reason
    assert [v.version for v in MlflowClient().search_model_versions(f"name='{settings.model_name}'")] == ["2", "1"]


def test_a_challenger_trained_on_shuffled_labels_is_refused(loop, story):
    settings, _, client = loop
    shuffled = story.base.copy()
    shuffled["Churn"] = shuffled["Churn"].sample(frac=1.0, random_state=3).to_numpy()
    bad_uri = layout.gs_uri(settings.bucket, "data/shuffled.csv")
    gcs.write_bytes("test", bad_uri, shuffled.to_csv(index=False).encode())
    bad_settings = settings.model_copy(update={"data_uri": bad_uri})

    outcome = job.run(bad_settings, None, "manual-bad")

    assert outcome.status is RetrainResult.REJECTED
    assert "below the floor" in outcome.reason or "< champion AUC" in outcome.reason
    assert client.version_by_alias(settings.model_name, "champion").version == 1
    assert client.version_by_alias(settings.model_name, "challenger").version == 2
    assert MlflowClient().get_model_version(settings.model_name, "2").tags[tag_names.GATE_DECISION] == "reject"


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


def test_trigger_starts_one_execution_per_message_and_rejects_bad_ones(stack_env):
    settings = RetrainSettings(bucket=stack_env["CHURNFLOW_BUCKET"], CHURNFLOW_PROJECT="test")
    launcher = RecordingLauncher()
    request = request_for(settings)
    message_id = f"m-{uuid.uuid4().hex[:8]}"

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
        {"messageId": "b1", "data": "%%% not base64"},
        envelope(b"{not json", "b2"),
        envelope(b'{"kind": "retrain-requested"}', "b3"),
        envelope(b'{"kind": "something-else"}', "b4"),
        {"data": base64.b64encode(request.to_bytes()).decode()},
        envelope(request.to_bytes(), "../escape"),
    ]
    results = [pubsub_trigger.handle(message, settings, launcher) for message in bad]
    assert [r.status for r in results] == [DeliveryStatus.REJECTED] * 6
    assert "champion_version" in results[2].detail and "no messageId" in results[4].detail
    assert "not a safe object-name token" in results[5].detail
    assert len(launcher.launched) == 1


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
