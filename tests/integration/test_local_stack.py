"""The local emulator stack on real servers: GCS, Pub/Sub and MLflow, started and stopped by the launcher."""

from __future__ import annotations

import os
import socket
import time
import uuid

import httpx
import psutil
import pytest

from churnflow.local import bootstrap, services, stack
from churnflow.settings import REPO_ROOT, LocalStackSettings
from churnflow.storage import gcs, layout

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

TRAINING_DATA_BYTES = 977501


def processes_mentioning(text: str) -> list[int]:
    """Pids of live processes whose command line contains `text` (read only: this never signals anything)."""
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        if process.info["status"] != psutil.STATUS_ZOMBIE and text in " ".join(process.info["cmdline"] or ()):
            found.append(process.pid)
    return found


def test_all_three_services_are_running_and_ready(local_stack):
    services = stack.status(LocalStackSettings(state_dir=local_stack.state_dir))
    assert {(s.name, s.port, s.running, s.ready) for s in services} == {
        (name, record.port, True, True) for name, record in local_stack.services.items()
    }
    assert sorted(local_stack.services) == ["gcs", "mlflow", "pubsub"]
    assert local_stack.env() == {
        "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{local_stack.services['gcs'].port}",
        "PUBSUB_EMULATOR_HOST": f"127.0.0.1:{local_stack.services['pubsub'].port}",
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{local_stack.services['mlflow'].port}",
        "CHURNFLOW_BUCKET": "churnflow-test",
        "CHURNFLOW_PROJECT": "churnflow-test",
        "GOOGLE_CLOUD_PROJECT": "churnflow-test",
    }


def test_bucket_holds_the_bundled_training_data(stack_env):
    bucket = gcs.client(stack_env["CHURNFLOW_PROJECT"]).lookup_bucket(stack_env["CHURNFLOW_BUCKET"])
    assert bucket is not None
    blob = bucket.get_blob(layout.TRAINING_DATA)
    assert blob.size == TRAINING_DATA_BYTES
    assert blob.download_as_bytes() == (REPO_ROOT / "data" / "telco_churn.csv").read_bytes()


def test_object_written_through_google_cloud_storage_reads_back(stack_env):
    project, uri = stack_env["CHURNFLOW_PROJECT"], layout.gs_uri(stack_env["CHURNFLOW_BUCKET"], "tests/roundtrip.bin")
    payload = os.urandom(4096)
    gcs.write_bytes(project, uri, payload)
    assert gcs.read_bytes(project, uri) == payload


def test_topics_and_audit_subscription_exist(local_stack):
    project, host = local_stack.project, local_stack.env()["PUBSUB_EMULATOR_HOST"]
    publisher, subscriber = bootstrap.publisher_client(host), bootstrap.subscriber_client(host)
    try:
        topics = {t.name for t in publisher.list_topics(project=f"projects/{project}", timeout=10)}
        subscriptions = {
            s.name: s.topic for s in subscriber.list_subscriptions(project=f"projects/{project}", timeout=10)
        }
    finally:
        publisher.transport.close()
        subscriber.close()
    assert {
        f"projects/{project}/topics/retrain-requests",
        f"projects/{project}/topics/retrain-requests-dead-letter",
    } <= topics
    audit = f"projects/{project}/subscriptions/retrain-requests-audit"
    assert subscriptions[audit] == f"projects/{project}/topics/retrain-requests"


def test_published_message_is_pulled_from_the_audit_subscription(stack_env):
    from google.cloud import pubsub_v1

    # plain clients: they find the emulator through PUBSUB_EMULATOR_HOST, as the application's do
    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    project = stack_env["CHURNFLOW_PROJECT"]
    data = f'{{"reason": "test", "id": "{uuid.uuid4()}"}}'.encode()
    try:
        publisher.publish(publisher.topic_path(project, "retrain-requests"), data, origin="test").result(timeout=10)
        subscription = subscriber.subscription_path(project, bootstrap.audit_subscription("retrain-requests"))
        deadline, received = time.monotonic() + 20, []
        while time.monotonic() < deadline and not any(m.message.data == data for m in received):
            response = subscriber.pull(subscription=subscription, max_messages=10, timeout=10)
            if response.received_messages:
                subscriber.acknowledge(
                    subscription=subscription, ack_ids=[m.ack_id for m in response.received_messages]
                )
            received += response.received_messages
    finally:
        publisher.transport.close()
        subscriber.close()
    (match,) = [m.message for m in received if m.message.data == data]
    assert match.attributes["origin"] == "test"


def test_mlflow_artifacts_are_stored_in_the_gcs_bucket(stack_env, local_stack):
    import mlflow

    health = httpx.get(f"{stack_env['MLFLOW_TRACKING_URI']}/health", timeout=5, trust_env=False)
    assert (health.status_code, health.text) == (200, "OK")
    text = f"hello from {uuid.uuid4()}"
    with mlflow.start_run() as run:
        mlflow.log_text(text, "notes/hello.txt")
    assert mlflow.get_tracking_uri() == stack_env["MLFLOW_TRACKING_URI"]

    bucket = gcs.client(stack_env["CHURNFLOW_PROJECT"]).bucket(stack_env["CHURNFLOW_BUCKET"])
    (blob,) = [
        b
        for b in bucket.list_blobs(prefix=f"{layout.MLFLOW_ARTIFACTS_PREFIX}/")
        if run.info.run_id in b.name and b.name.endswith("/artifacts/notes/hello.txt")
    ]
    assert blob.download_as_text() == text
    assert not (local_stack.state_dir / "mlartifacts").exists()  # nothing proxied to local disk


def test_up_is_idempotent_down_stops_everything_and_data_survives(private_stack_settings):
    local, common = private_stack_settings
    try:
        first = stack.up(local, common)
        assert first.started == ("gcs", "pubsub", "mlflow")
        second = stack.up(local, common)
        assert second.started == ()
        assert {n: r.pid for n, r in second.services.items()} == {n: r.pid for n, r in first.services.items()}
        assert all(s.running and s.ready for s in stack.status(local))

        storage = bootstrap.storage_client(first.env()["STORAGE_EMULATOR_HOST"], common.project)
        storage.bucket(common.bucket).blob("tests/survives-restart.txt").upload_from_string(b"still here")
        java_port = f"--port={local.pubsub_port}"
        assert processes_mentioning(java_port) == [first.services["pubsub"].pid]

        assert stack.down(local) == ["gcs", "pubsub", "mlflow"]
        for record in first.services.values():
            assert not psutil.pid_exists(record.pid), record.name
            with pytest.raises(ProcessLookupError):
                os.killpg(record.pgid, 0)  # no child (MLflow's uvicorn worker) survives either
        assert processes_mentioning(java_port) == []
        assert processes_mentioning(str(local.state_dir)) == []
        assert stack.status(local) == []

        third = stack.up(local, common)
        assert third.started == ("gcs", "pubsub", "mlflow")
        bucket = bootstrap.storage_client(third.env()["STORAGE_EMULATOR_HOST"], common.project).bucket(common.bucket)
        assert bucket.blob("tests/survives-restart.txt").download_as_bytes() == b"still here"
        assert bucket.get_blob(layout.TRAINING_DATA).size == TRAINING_DATA_BYTES
    finally:
        stack.down(local)
    assert processes_mentioning(str(local.state_dir)) == []


def test_start_up_timeout_stops_what_was_started_and_shows_the_log(private_stack_settings):
    local, common = private_stack_settings
    impatient = local.model_copy(update={"startup_timeout_s": 0.5})
    with pytest.raises(stack.StackError, match=r"did not become ready within 0.5s .*(last lines of|log) .*\.log"):
        stack.up(impatient, common)
    assert stack.status(local) == []
    assert processes_mentioning(str(local.state_dir)) == []
    assert processes_mentioning(f"--port={local.pubsub_port}") == []


def test_port_held_by_a_stranger_is_reported_before_anything_starts(private_stack_settings):
    local, common = private_stack_settings
    with socket.socket() as stranger:
        stranger.bind(("127.0.0.1", local.mlflow_port))
        stranger.listen()
        with pytest.raises(stack.StackError, match=f"port {local.mlflow_port} for mlflow .* already in use"):
            stack.up(local, common)
    assert stack.status(local) == []
    assert processes_mentioning(str(local.state_dir)) == []


def test_missing_pubsub_emulator_is_explained(private_stack_settings, monkeypatch, tmp_path):
    local, common = private_stack_settings
    monkeypatch.setattr(services, "gcloud_sdk_root", lambda: tmp_path)
    with pytest.raises(stack.PrerequisiteMissing) as missing:
        stack.up(local, common)
    message = str(missing.value)
    assert str(tmp_path) in message
    assert "gcloud components install pubsub-emulator" in message
    assert "apt-get install google-cloud-cli-pubsub-emulator" in message
    assert stack.status(local) == []


def test_missing_java_and_gcloud_are_explained(monkeypatch):
    monkeypatch.setattr(services.shutil, "which", lambda name: None)
    with pytest.raises(stack.PrerequisiteMissing, match="default-jre-headless"):
        services.pubsub_spec(LocalStackSettings())
    with pytest.raises(stack.PrerequisiteMissing, match=r"`gcloud`\) is not on PATH"):
        services.gcloud_sdk_root()
