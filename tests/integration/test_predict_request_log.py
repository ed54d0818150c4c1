"""Lossless request logging of a real uvicorn process under load, across a 10 s GCS outage and SIGTERM."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter

import httpx
import pytest

from churnflow.core import schema
from churnflow.local import bootstrap, services
from churnflow.settings import REPO_ROOT
from churnflow.storage import gcs, layout, request_log

pytestmark = pytest.mark.integration

PROJECT = "churnflow-gcs-outage"
BUCKET = "churnflow-gcs-outage"


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class FakeGcs:
    """This test's own fake-gcs-server, persisted on disk so it can be stopped and started again."""

    def __init__(self, root):
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = None

    def start(self):
        argv = [str(services.fake_gcs_binary()), "-scheme", "http", "-host", "127.0.0.1", "-port", str(self.port)]
        argv += ["-backend", "filesystem", "-filesystem-root", str(self.root), "-external-url", self.url]
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert wait_for(lambda: answers(f"{self.url}/storage/v1/b"))

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=10)


def answers(url):
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def wait_for(condition, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    return condition()


@pytest.fixture
def fake_gcs(tmp_path):
    server = FakeGcs(tmp_path / "gcs")
    server.start()
    gcs.ensure_bucket(PROJECT, BUCKET, using=bootstrap.storage_client(server.url, PROJECT))
    yield server
    if server.process.poll() is None:
        server.stop()


def test_gcs_down_for_10s_under_load_loses_nothing(stack_env, champion, fake_gcs, tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "STORAGE_EMULATOR_HOST": fake_gcs.url,
        "CHURNFLOW_PROJECT": PROJECT,
        "CHURNFLOW_BUCKET": BUCKET,
        "CHURNFLOW_SPOOL_DIR": str(tmp_path / "spool"),
        "CHURNFLOW_LOG_FLUSH_ROWS": "200",
        "CHURNFLOW_LOG_FLUSH_AGE_S": "0.3",
        "CHURNFLOW_LOG_UPLOAD_TIMEOUT_S": "2",
    }
    argv = [sys.executable, "-m", "uvicorn", "main:app", "--app-dir", str(REPO_ROOT / "functions" / "predict")]
    argv += ["--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
    with (tmp_path / "server.log").open("wb") as log:
        server = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        assert wait_for(lambda: answers(f"{base}/ready")), (tmp_path / "server.log").read_text()

        stop = threading.Event()
        outcomes = [[] for _ in range(3)]

        def load(results):
            with httpx.Client(base_url=base, timeout=10) as http:
                while not stop.is_set():
                    response = http.post("/predict", json=schema.EXAMPLE_CUSTOMER)
                    results.append((response.status_code, response.json().get("request_id")))

        workers = [threading.Thread(target=load, args=(results,)) for results in outcomes]
        for worker in workers:
            worker.start()
        time.sleep(2)
        fake_gcs.stop()
        time.sleep(10)
        during = httpx.get(f"{base}/stats").json()["request_log"]
        fake_gcs.start()
        time.sleep(2)
        stop.set()
        for worker in workers:
            worker.join()
        assert wait_for(lambda: httpx.get(f"{base}/stats").json()["request_log"]["spooled"] == 0)
    finally:
        server.send_signal(signal.SIGTERM)  # lifespan shutdown flushes what is still queued
        server.wait(timeout=20)
    assert "Application shutdown complete" in (tmp_path / "server.log").read_text()  # uvicorn then re-raises SIGTERM

    every = [outcome for results in outcomes for outcome in results]
    assert Counter(status for status, _ in every) == {200: len(every)}  # all succeeded, GCS up or down
    served = {request_id for _, request_id in every}
    assert len(every) > 300 and len(served) == len(every)
    assert during["spooled"] > 0 and during["failed_uploads"] > 0  # the outage was felt, and spooled

    bucket = bootstrap.storage_client(fake_gcs.url, PROJECT).bucket(BUCKET)
    logged = [
        record["request_id"]
        for blob in bucket.list_blobs(prefix=layout.REQUEST_LOG_PREFIX)
        for record in request_log.decode_batch(blob.download_as_bytes()).records
    ]
    assert len(logged) == len(served)  # nothing lost, nothing duplicated
    assert set(logged) == served
    assert not list((tmp_path / "spool").iterdir())
