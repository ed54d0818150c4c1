"""The predict service as deployed (`uvicorn main:app`, a process of its own) on the local stack: its
metrics after known traffic, with the request log really uploaded to the GCS emulator, and its log
lines, uvicorn's own included, all JSON."""

import json
import os
import subprocess
import sys
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from churnflow.core import schema
from churnflow.settings import REPO_ROOT
from conftest import free_ports

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

EXAMPLE = schema.EXAMPLE_CUSTOMER


def metric_values(text: str) -> dict[tuple[str, frozenset], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value for f in text_string_to_metric_families(text) for s in f.samples
    }


@pytest.fixture
def predict_process(stack_env, champion, tmp_path):
    [port] = free_ports(1)
    env = {
        **os.environ,
        **stack_env,
        "CHURNFLOW_SPOOL_DIR": str(tmp_path / "spool"),
        "CHURNFLOW_LOG_FLUSH_AGE_S": "0.2",
        "PYTHONPATH": str(REPO_ROOT / "shared"),
    }
    command = [sys.executable, "-m", "uvicorn", "main:app", "--app-dir", str(REPO_ROOT / "functions" / "predict")]
    out = (tmp_path / "stdout").open("w+")
    process = subprocess.Popen(
        [*command, "--host", "127.0.0.1", "--port", str(port), "--no-access-log"],
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.1)
    try:
        yield url, tmp_path / "stdout"
    finally:
        process.terminate()
        process.wait(timeout=30)
        out.close()


def test_metrics_after_known_traffic_and_every_log_line_is_json(predict_process):
    url, stdout = predict_process
    with httpx.Client(base_url=url, timeout=10) as http:
        version = str(http.get("/model").json()["version"])
        for _ in range(4):
            assert http.post("/predict", json=EXAMPLE).status_code == 200
        assert http.post("/predict/batch", json={"customers": [EXAMPLE] * 6}).status_code == 200
        assert http.post("/predict", json={**EXAMPLE, "Contract": "Weekly"}).status_code == 422
        deadline = time.monotonic() + 30
        while http.get("/stats").json()["request_log"]["uploaded"] < 10 and time.monotonic() < deadline:
            time.sleep(0.1)
        found = metric_values(http.get("/metrics").text)

    def value(name: str, **labels: str) -> float:
        return found[(name, frozenset(labels.items()))]

    assert value("churnflow_predict_requests_total", route="/predict", status="200", model_version=version) == 4
    assert value("churnflow_predict_requests_total", route="/predict/batch", status="200", model_version=version) == 1
    assert value("churnflow_predict_requests_total", route="/predict", status="422", model_version=version) == 1
    assert value("churnflow_predict_requests_total", route="/model", status="200", model_version=version) == 1
    assert value("churnflow_predict_request_duration_seconds_count", route="/predict") == 5
    assert value("churnflow_predict_scoring_seconds_count", kind="one") == 4
    assert value("churnflow_predict_batch_size_sum") == 6
    assert value("churnflow_request_log_rows_total", state="accepted") == 10
    assert value("churnflow_request_log_rows_total", state="uploaded") == 10  # in the GCS emulator
    assert value("churnflow_request_log_rows_spooled") == 0
    assert value("churnflow_request_log_rows_pending") == 0
    assert value("churnflow_model_info", model_name="churn", alias="champion", model_version=version) == 1
    assert value("churnflow_model_swaps_total") == 1

    lines = stdout.read_text().splitlines()
    parsed = [json.loads(line) for line in lines]  # no plain-text line, uvicorn's included
    started = [p for p in parsed if p["logger"] == "uvicorn.error" and "startup complete" in p["message"]]
    assert started and started[0]["severity"] == "INFO"
    assert any(p["logger"] == "churnflow.serving.holder" and p["message"].startswith("serving churn") for p in parsed)
    assert not [p for p in parsed if p["logger"] == "uvicorn.access"]  # --no-access-log stays in force
