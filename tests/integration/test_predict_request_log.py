"""Lossless request logging of a real uvicorn process under load: a 10 s GCS outage, SIGTERM, kill -9."""

import contextlib
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


class Server:
    """One `uvicorn main:app` process of the predict service on 127.0.0.1."""

    def __init__(self, env, log_path):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        argv = [sys.executable, "-m", "uvicorn", "main:app", "--app-dir", str(REPO_ROOT / "functions" / "predict")]
        argv += ["--host", "127.0.0.1", "--port", str(self.port), "--no-access-log"]
        self.log_path = log_path
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
        assert wait_for(lambda: answers(f"{self.base}/ready")), log_path.read_text()

    def stats(self):
        return httpx.get(f"{self.base}/stats").json()["request_log"]

    def terminate(self):
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=30)


def server_env(fake_gcs, spool, **extra):
    return {
        **os.environ,
        "STORAGE_EMULATOR_HOST": fake_gcs.url,
        "CHURNFLOW_PROJECT": PROJECT,
        "CHURNFLOW_BUCKET": BUCKET,
        "CHURNFLOW_SPOOL_DIR": str(spool),
        **extra,
    }


def load(base, answered, stop, failed=None):
    """Post single rows until `stop` or the server goes away; keep the ids of the rows answered 200
    (and, given `failed`, the status of every other answer)."""
    with httpx.Client(base_url=base, timeout=10) as http:
        while not stop.is_set():
            try:
                response = http.post("/predict", json=schema.EXAMPLE_CUSTOMER)
            except httpx.HTTPError:
                return
            if response.status_code == 200:
                answered.append(response.json()["request_id"])
            elif failed is not None:
                failed.append(response.status_code)


def stored_request_ids(fake_gcs):
    bucket = bootstrap.storage_client(fake_gcs.url, PROJECT).bucket(BUCKET)
    return [
        record["request_id"]
        for blob in bucket.list_blobs(prefix=layout.REQUEST_LOG_PREFIX)
        for record in request_log.decode_batch(blob.download_as_bytes()).records
    ]


def test_kill_9_under_load_loses_no_row_answered_200(stack_env, champion, fake_gcs, tmp_path):
    spool = tmp_path / "spool"
    env = server_env(fake_gcs, spool, CHURNFLOW_LOG_FLUSH_ROWS="700", CHURNFLOW_LOG_FLUSH_AGE_S="5")
    victim = Server(env, tmp_path / "victim.log")
    answered = [[] for _ in range(4)]
    stop = threading.Event()
    workers = [threading.Thread(target=load, args=(victim.base, ids, stop)) for ids in answered]
    for worker in workers:
        worker.start()
    time.sleep(4)
    before = victim.stats()
    victim.process.kill()  # SIGKILL: no lifespan shutdown, no flush
    victim.process.wait(timeout=10)
    stop.set()
    for worker in workers:
        worker.join()
    served = [request_id for ids in answered for request_id in ids]
    assert before["uploaded"] > 0 and len(served) > before["uploaded"]  # some rows were still waiting

    successor = Server(env, tmp_path / "successor.log")  # same spool directory
    try:
        assert wait_for(lambda: successor.stats()["pending"] == 0 and successor.stats()["spooled"] == 0)
        recovered = successor.stats().get("recovered")
    finally:
        successor.terminate()
    logged = stored_request_ids(fake_gcs)
    print(f"answered 200: {len(served)}, stored: {len(logged)}, recovered from the WAL: {recovered}")
    assert len(logged) == len(set(logged))  # nothing duplicated
    assert set(served) <= set(logged)  # nothing answered 200 is lost
    assert len(set(logged) - set(served)) <= len(workers)  # at most the requests in flight at the kill
    assert not list(spool.iterdir())


def test_shutdown_with_gcs_hanging_is_bounded_and_spools_for_the_next_process(stack_env, champion, fake_gcs, tmp_path):
    spool = tmp_path / "spool"
    env = server_env(fake_gcs, spool, CHURNFLOW_LOG_FLUSH_AGE_S="0.5")
    server = Server(env, tmp_path / "server.log")
    answered = []
    with httpx.Client(base_url=server.base, timeout=10) as http:
        for _ in range(50):
            answered.append(http.post("/predict", json=schema.EXAMPLE_CUSTOMER).json()["request_id"])
        fake_gcs.process.send_signal(signal.SIGSTOP)  # GCS accepts connections and never answers
        try:
            for _ in range(50):
                answered.append(http.post("/predict", json=schema.EXAMPLE_CUSTOMER).json()["request_id"])
            time.sleep(1)  # an upload is under way, hanging
            began = time.monotonic()
            server.terminate()
            print(f"shutdown with GCS hanging took {time.monotonic() - began:.2f} s")
        finally:
            fake_gcs.process.send_signal(signal.SIGCONT)
    log = server.log_path.read_text()
    assert "(bound 5.0 s);" in log and "Application shutdown complete" in log  # the logger's own bound
    assert list(spool.iterdir())  # what GCS did not take was spooled

    successor = Server(env, tmp_path / "successor.log")
    try:
        assert wait_for(lambda: successor.stats()["spooled"] == 0)
    finally:
        successor.terminate()
    logged = stored_request_ids(fake_gcs)
    assert sorted(logged) == sorted(answered)  # nothing lost, nothing duplicated
    assert not list(spool.iterdir())


class Outage:
    """A TCP relay to a real server on 127.0.0.1 that can be cut: while cut, every connection is reset."""

    def __init__(self, upstream_url):
        self.upstream = httpx.URL(upstream_url)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.cut = threading.Event()
        self.closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.cut.is_set():
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                client.close()  # RST: the registry is down
                continue
            upstream = socket.create_connection((self.upstream.host, self.upstream.port))
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, target), daemon=True).start()

    def _pipe(self, source, target):
        with source, target, contextlib.suppress(OSError):  # the other direction may close both first
            while not self.cut.is_set() and (data := source.recv(65536)):
                target.sendall(data)

    def close(self):
        self.closed.set()
        self.listener.close()


def test_mlflow_down_under_load_loses_nothing_and_serving_goes_on(stack_env, champion, fake_gcs, tmp_path):
    registry = Outage(stack_env["MLFLOW_TRACKING_URI"])
    env = server_env(
        fake_gcs, tmp_path / "spool", MLFLOW_TRACKING_URI=registry.url,
        CHURNFLOW_POLL_INTERVAL_S="0.2", CHURNFLOW_REGISTRY_TIMEOUT_S="0.5", CHURNFLOW_LOG_FLUSH_AGE_S="0.3",
    )  # fmt: skip
    server = Server(env, tmp_path / "server.log")
    answered = [[] for _ in range(3)]
    failed = []
    stop = threading.Event()
    workers = [threading.Thread(target=load, args=(server.base, ids, stop, failed)) for ids in answered]
    try:
        for worker in workers:
            worker.start()
        time.sleep(2)
        registry.cut.set()
        time.sleep(5)
        during = httpx.get(f"{server.base}/stats").json()["model_holder"]
        registry.cut.clear()
        time.sleep(2)
        after = httpx.get(f"{server.base}/stats").json()["model_holder"]
        stop.set()
        for worker in workers:
            worker.join()
        assert wait_for(lambda: server.stats()["pending"] == 0)
    finally:
        stop.set()
        server.terminate()
        registry.close()
    served = [request_id for ids in answered for request_id in ids]
    assert during["registry_errors"] > 0 and during["last_error"]  # the outage was felt
    assert after["last_error"] is None  # and is over once MLflow answers again
    assert len(served) > 300 and failed == []  # serving never stopped
    logged = stored_request_ids(fake_gcs)
    assert sorted(logged) == sorted(served)  # every row answered 200 is stored once, MLflow down or not
