"""The predict service's metrics, request ids and trace context, after known traffic (in-memory registry and store)."""

import json
import logging

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from churnflow.core import schema
from churnflow.logs import TRACE, CloudJsonFormatter
from churnflow.serving import create_app
from churnflow.serving.metrics import LoopHistogram
from churnflow.settings import PredictSettings
from churnflow.training import compiler
from unit.serving.test_app import OneVersionRegistry, Store

EXAMPLE = schema.EXAMPLE_CUSTOMER
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of a Prometheus text exposition, by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(found: dict, name: str, **labels: str) -> float:
    return found[(name, frozenset(labels.items()))]


@pytest.fixture(scope="module")
def artifact(training_result):
    return json.loads(json.dumps(compiler.compile_pipeline(training_result.model)))


@pytest.fixture
def client(artifact, tmp_path):
    def make(uploader=None, **overrides):
        settings = PredictSettings(spool_dir=tmp_path / "spool", poll_interval_s=60, **overrides)
        app = create_app(settings, registry=OneVersionRegistry(artifact), uploader=uploader or Store())
        return TestClient(app, raise_server_exceptions=False)

    return make


def known_traffic(http: TestClient) -> None:
    """3 single predictions (hot path), batches of 4 and 1, a bad body (422), a text body (415), 2 unknown paths."""
    for _ in range(3):
        assert http.post("/predict", json=EXAMPLE).status_code == 200
    assert http.post("/predict/batch", json={"customers": [EXAMPLE] * 4}).status_code == 200
    assert http.post("/predict/batch", json={"customers": [EXAMPLE]}).status_code == 200
    assert http.post("/predict", json={**EXAMPLE, "tenure": "12"}).status_code == 422
    assert http.post("/predict", content=b"{}", headers={"content-type": "text/plain"}).status_code == 415
    assert http.get("/no/such/path").status_code == 404
    assert http.get("/another-unknown").status_code == 404


def test_each_metric_family_counts_the_known_traffic(client):
    with client() as http:
        known_traffic(http)
        found = samples(http.get("/metrics").text)

    requests = "churnflow_predict_requests_total"
    assert value(found, requests, route="/predict", status="200", model_version="7") == 3
    assert value(found, requests, route="/predict/batch", status="200", model_version="7") == 2
    assert value(found, requests, route="/predict", status="422", model_version="7") == 1
    assert value(found, requests, route="/predict", status="415", model_version="7") == 1
    assert value(found, requests, route="other", status="404", model_version="7") == 2  # paths are never labels
    assert value(found, "churnflow_predict_request_duration_seconds_count", route="/predict") == 5
    assert value(found, "churnflow_predict_request_duration_seconds_count", route="/predict/batch") == 2
    assert value(found, "churnflow_predict_request_duration_seconds_bucket", route="/predict", le="+Inf") == 5
    assert value(found, "churnflow_predict_scoring_seconds_count", kind="one") == 3
    assert value(found, "churnflow_predict_scoring_seconds_count", kind="batch") == 2
    assert value(found, "churnflow_predict_batch_size_count") == 2
    assert value(found, "churnflow_predict_batch_size_sum") == 5
    assert value(found, "churnflow_predict_batch_size_bucket", le="1.0") == 1
    assert value(found, "churnflow_predict_batch_size_bucket", le="5.0") == 2
    assert value(found, "churnflow_request_log_rows_total", state="accepted") == 8
    assert value(found, "churnflow_request_log_rows_pending") == 8  # flushed every 5 s: none uploaded yet
    assert value(found, "churnflow_model_info", model_name="churn", alias="champion", model_version="7") == 1
    assert value(found, "churnflow_model_swaps_total") == 1
    assert value(found, "churnflow_model_registry_polls_total") == 1
    assert value(found, "churnflow_model_refused_total") == 0
    assert not [name for name, _ in found if name.endswith("_created")]


@pytest.mark.parametrize(("cap", "spooled", "dropped"), [(64 << 20, 6, 0), (1, 0, 6)])
def test_rows_that_gcs_does_not_take_are_counted_spooled_or_dropped_at_the_cap(client, cap, spooled, dropped):
    def unreachable(name, data, timeout_s=None):
        raise ConnectionError("GCS is down")

    with client(uploader=unreachable, spool_max_bytes=cap) as http:
        for _ in range(2):
            assert http.post("/predict/batch", json={"customers": [EXAMPLE] * 3}).status_code == 200
            http.portal.call(http.app.state.services.logger.flush)
        found = samples(http.get("/metrics").text)

    assert value(found, "churnflow_request_log_rows_spooled") == spooled
    assert value(found, "churnflow_request_log_rows_total", state="dropped") == dropped
    assert value(found, "churnflow_request_log_rows_total", state="uploaded") == 0
    assert value(found, "churnflow_request_log_rows_pending") == 0
    assert value(found, "churnflow_request_log_failed_uploads_total") >= 2
    assert (value(found, "churnflow_request_log_spool_bytes") > 0) == (spooled > 0)


def test_metrics_are_private_when_a_token_is_set_and_openmetrics_on_request(client):
    with client(api_token="s3cret") as http:
        refused = http.get("/metrics")
        plain = http.get("/metrics", headers={"authorization": "Bearer s3cret"})
        openmetrics = http.get(
            "/metrics", headers={"authorization": "Bearer s3cret", "accept": "application/openmetrics-text"}
        )
    assert refused.status_code == 401
    assert plain.status_code == 200 and plain.headers["content-type"].startswith("text/plain; version=")
    assert openmetrics.headers["content-type"].startswith("application/openmetrics-text; version=1.0.0")
    assert openmetrics.text.endswith("# EOF\n")
    assert 'churnflow_predict_requests_total{model_version="7",route="/metrics",status="401"} 1.0' in plain.text


def test_every_answer_echoes_the_request_id_the_body_and_the_log_name(client):
    store = Store()
    with client(uploader=store) as http:
        hot = http.post("/predict", json=EXAMPLE, headers={"x-request-id": "client-chosen"})
        routed = http.post("/predict", json={**EXAMPLE, "tenure": 12.0})  # FastAPI's route
        batch = http.post("/predict/batch", json={"customers": [EXAMPLE] * 2})
        health = http.get("/health")
        refused = http.post("/predict", json={})
    ids = [r.headers["x-request-id"] for r in (hot, routed, batch, health, refused)]

    assert [hot.json()["request_id"], routed.json()["request_id"], batch.json()["request_id"]] == ids[:3]
    assert "client-chosen" not in ids  # the id keys the request log and the labels: always the server's own
    assert len(set(ids)) == 5 and all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    logged = sorted(record["request_id"] for record in store.records())
    assert logged == sorted([ids[0], ids[1], f"{ids[2]}-0", f"{ids[2]}-1"])


def test_a_log_line_written_while_serving_carries_the_request_id_and_the_trace(client, monkeypatch):
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, entry: logging.LogRecord) -> None:
            lines.append(self.format(entry))

    handler = Collect()
    handler.setFormatter(CloudJsonFormatter(project="proj-x"))
    logger = logging.getLogger("churnflow.serving.hotpath")
    logger.addHandler(handler)
    try:
        with client() as http:
            services = http.app.state.services

            def broken(*args, **kwargs):
                raise RuntimeError("scorer exploded")

            monkeypatch.setattr(services, "score_one", broken)
            answer = http.post("/predict", json=EXAMPLE, headers={"traceparent": TRACEPARENT})
            found = samples(http.get("/metrics").text)
    finally:
        logger.removeHandler(handler)

    [line] = [json.loads(line) for line in lines]
    assert answer.status_code == 500 and answer.text == "Internal Server Error"
    assert line["severity"] == "ERROR" and line["message"] == "unhandled error on the hot path"
    assert line["request_id"] == answer.headers["x-request-id"]
    assert line[TRACE] == "projects/proj-x/traces/0af7651916cd43dd8448eb211c80319c"
    assert line["logging.googleapis.com/spanId"] == "b7ad6b7169203331"
    assert "RuntimeError: scorer exploded" in line["exception"]
    assert value(found, "churnflow_predict_requests_total", route="/predict", status="500", model_version="7") == 1


def test_stats_has_a_schema_in_openapi_with_the_model_version(client):
    with client() as http:
        spec = http.get("/openapi.json").json()
        stats = http.get("/stats").json()
    schema_ref = spec["paths"]["/stats"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    stats_schema = spec["components"]["schemas"][schema_ref["$ref"].rsplit("/", 1)[1]]
    assert set(stats_schema["properties"]) == {"model_version", "requests", "request_log", "model_holder"}
    assert "/metrics" in spec["paths"]
    assert stats["model_version"] == 7 and stats["requests"]["hot"] == 0


def test_the_loop_histogram_buckets_as_prometheus_le_does():
    histogram = LoopHistogram((0.001, 0.01))
    for seconds in (0.0005, 0.001, 0.002, 0.01, 3.0):
        histogram.observe(seconds)
    assert histogram.buckets() == [("0.001", 2), ("0.01", 4), ("+Inf", 5)]  # a value equal to a bound is in it
    assert histogram.sum == 0.0005 + 0.001 + 0.002 + 0.01 + 3.0
