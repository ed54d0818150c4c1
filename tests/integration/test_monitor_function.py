"""The monitor Cloud Function served by functions-framework, as Cloud Scheduler and a browser reach it."""

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from churnflow.monitoring.champion import load_champion
from churnflow.settings import REPO_ROOT, MonitorSettings
from churnflow.sim import scenarios
from churnflow.storage import gcs, layout

pytestmark = pytest.mark.integration
PROJECT = "churnflow-test"


def free_port():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serving(env, log_path):
    """functions-framework serving functions/monitor on a free port with `env`; yields its URL."""
    port = free_port()
    log = log_path.open("wb")
    process = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("functions-framework")),
            "--target=monitor",
            f"--source={REPO_ROOT / 'functions' / 'monitor' / 'main.py'}",
            "--host=127.0.0.1",
            f"--port={port}",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                httpx.get(f"{url}/", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:  # gunicorn waits for idle keep-alive workers
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)
        log.close()


@pytest.fixture
def function(stack_env, champion, tmp_path):
    """The monitor function on the session stack, its bucket not created yet."""
    bucket = f"monitor-fn-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, **stack_env, "CHURNFLOW_BUCKET": bucket, "CHURNFLOW_SINCE_LAST_CHECK": "false"}
    with serving(env, tmp_path / "function.log") as url:
        yield url, bucket


def test_the_503_names_no_internal_address_and_the_log_has_the_details(stack_env, tmp_path):
    bucket = f"monitor-fn-{uuid.uuid4().hex[:8]}"
    gcs.ensure_bucket(PROJECT, bucket)
    registry = f"http://127.0.0.1:{free_port()}"  # nothing listens: the registry is down
    env = {**os.environ, **stack_env, "CHURNFLOW_BUCKET": bucket, "MLFLOW_TRACKING_URI": registry}
    with serving(env, tmp_path / "function.log") as url:
        reply = httpx.post(f"{url}/", timeout=60)
    assert reply.status_code == 503 and reply.json() == {
        "error": "a service the check depends on is unavailable; retry later"
    }
    for secret in (registry, registry.split("//")[1], bucket, "gs://", stack_env["STORAGE_EMULATOR_HOST"]):
        assert secret not in reply.text
    assert registry.split("//")[1] in (tmp_path / "function.log").read_text()


def test_scheduler_call_and_report_viewer(function, dataset):
    url, bucket = function
    with httpx.Client(base_url=url, timeout=60) as client:
        check_and_view(client, bucket, dataset)
        metrics = client.get("/metrics").text
    for line in (
        'churnflow_monitor_checks_total{status="unavailable"} 1.0',  # the first check, before the bucket existed
        'churnflow_monitor_checks_total{status="no_drift"} 1.0',
        'churnflow_monitor_retrain_requests_total{action="none"} 1.0',
        "churnflow_monitor_window_rows 1000.0",
        "churnflow_monitor_check_duration_seconds_count 1.0",
    ):
        assert line in metrics, line


def check_and_view(client, bucket, dataset):

    failed = client.post("/")  # the bucket does not exist yet: GCS cannot be read
    assert failed.status_code == 503 and "retry later" in failed.json()["error"] and bucket not in failed.text

    gcs.ensure_bucket(PROJECT, bucket)
    champion = load_champion(MonitorSettings())
    start = datetime.now(UTC) - timedelta(minutes=20)
    window = scenarios.window(dataset, "in_distribution", 1000, seed=5)
    records = list(scenarios.to_log_records(window, champion.scorer, champion.version, start.timestamp(), 10))
    for name, body in scenarios.log_objects(records, 250):
        gcs.write_bytes(PROJECT, layout.gs_uri(bucket, name), body)

    reply = client.post("/")
    assert reply.status_code == 200, reply.text
    summary = reply.json()
    assert summary["status"] == "no_drift" and summary["window"]["valid_rows"] == 1000
    assert summary["report_uri"] == f"gs://{bucket}/reports/checks/{summary['check_id']}/report.html"

    assert client.get("/").status_code == 405
    page = client.get("/view_report")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert f'href="view_report?check={summary["check_id"]}"' in page.text and "no_drift" in page.text
    frame = re.search(r'<iframe src="([^"]+)"', page.text).group(1).replace("&amp;", "&")
    report = client.get(f"/{frame}")
    assert report.status_code == 200 and "churn_probability" in report.text and len(report.text) > 100_000
    assert client.get("/view_report", params={"check": "nope", "raw": "1"}).status_code == 404
    trailing = client.get("/view_report", params={"check": f"{summary['check_id']}\n", "raw": "1"})
    assert trailing.status_code == 404  # the check-id check is anchored at the very end: no trailing newline
