"""The HTTP contract of the predict service, with an in-memory registry and object store."""

import json
import math

import numpy as np
import pandas as pd
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from churnflow.core import schema
from churnflow.core.scorer import CompiledScorer
from churnflow.registry import tags
from churnflow.registry.read import AliasNotFound, ModelVersion, RegistryClient
from churnflow.serving import create_app, guard
from churnflow.serving.contract import BatchRequest, Customer
from churnflow.serving.dependencies import NO_CHAMPION
from churnflow.serving.scoring import RiskPolicy
from churnflow.settings import PredictSettings
from churnflow.storage import request_log
from churnflow.training import compiler, pipeline

EXAMPLE = schema.EXAMPLE_CUSTOMER


class OneVersionRegistry(RegistryClient):
    """A registry whose champion is version 7 with the given artifact, or that has no champion."""

    def __init__(self, artifact):
        super().__init__("http://registry.invalid", timeout_s=0.1)
        self.artifact = artifact

    def version_by_alias(self, name, alias):
        if self.artifact is None:
            raise AliasNotFound(f"{name}@{alias} is not set")
        found = {f"{tags.METRIC_PREFIX}roc_auc": "0.842000", tags.DATA_FINGERPRINT: "abc123"}
        return ModelVersion(name, 7, "run7", "", found, (alias,), 1_700_000_000_000)

    def scorer_artifact(self, version):
        return self.artifact


class Store:
    def __init__(self):
        self.objects = {}

    def __call__(self, name, data, timeout_s=None):
        self.objects[name] = data

    def records(self):
        return [r for data in self.objects.values() for r in request_log.decode_batch(data).records]


@pytest.fixture(scope="module")
def artifact(training_result):
    return json.loads(json.dumps(compiler.compile_pipeline(training_result.model)))


@pytest.fixture(scope="module")
def scorer(artifact):
    return CompiledScorer(artifact)


@pytest.fixture
def store():
    return Store()


@pytest.fixture
def make_client(artifact, store, tmp_path):
    clients = []

    def make(champion=True, **overrides):
        settings = PredictSettings(spool_dir=tmp_path / "spool", poll_interval_s=60, **overrides)
        app = create_app(settings, registry=OneVersionRegistry(artifact if champion else None), uploader=store)
        client = TestClient(app, raise_server_exceptions=False)
        clients.append(client.__enter__())
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client):
    return make_client()


@pytest.fixture(scope="module")
def plain_fastapi():
    """A bare FastAPI endpoint with the same body model: the reference for the 422 contract."""
    app = FastAPI()

    @app.post("/predict")
    async def predict(customer: Customer) -> dict:
        return {}

    @app.post("/predict/batch")
    async def batch(batch: BatchRequest) -> dict:
        return {}

    return TestClient(app)


def stats(client):
    return client.get("/stats").json()


def test_predict_scores_with_the_champion(client, scorer, training_result):
    response = client.post("/predict", json=EXAMPLE)
    assert response.status_code == 200
    body = response.json()
    assert body["model_version"] == 7 and len(body["request_id"]) == 32
    expected = training_result.model.predict_proba(pd.DataFrame([EXAMPLE]))[0, 1]
    assert abs(body["churn_probability"] - expected) < 1e-9
    assert body["churn_probability"] == scorer.probability(EXAMPLE)
    assert body["churn_prediction"] is (body["churn_probability"] >= 0.5)
    assert stats(client)["requests"] == {"hot": 1, "routed": 0, "rows": 1}


def test_contributions_are_the_exact_top_shares_of_the_log_odds(make_client, scorer):
    everything = make_client(top_contributions=19).post("/predict", json=EXAMPLE).json()
    shares = everything["contributions"]
    assert {s["feature"] for s in shares} == set(schema.FEATURE_NAMES)
    assert all(s["value"] == EXAMPLE[s["feature"]] for s in shares)
    assert scorer.intercept + sum(s["log_odds"] for s in shares) == pytest.approx(
        math.log(everything["churn_probability"] / (1 - everything["churn_probability"])), abs=1e-9
    )
    top = make_client().post("/predict", json=EXAMPLE).json()["contributions"]
    assert top == shares[:5]
    assert [abs(s["log_odds"]) for s in shares] == sorted((abs(s["log_odds"]) for s in shares), reverse=True)


@pytest.mark.parametrize(("probability", "level"), [(0.1, "LOW"), (0.3, "MEDIUM"), (0.59, "MEDIUM"), (0.6, "HIGH")])
def test_risk_levels_follow_the_configured_thresholds(make_client, scorer, dataset, probability, level):
    rows = pipeline.features(dataset).to_dict("records")
    row = min(rows, key=lambda r: abs(scorer.probability(r) - probability))
    body = make_client(risk_medium=0.3, risk_high=0.6).post("/predict", json=row).json()
    p = body["churn_probability"]
    assert body["risk_level"] == ("HIGH" if p >= 0.6 else "MEDIUM" if p >= 0.3 else "LOW")


def test_batch_risk_levels_apply_the_single_row_rule_also_at_the_thresholds():
    policy = RiskPolicy(threshold=0.5, risk_medium=0.3, risk_high=0.6, top_contributions=5)
    probabilities = np.array([0.0, 0.2999999, 0.3, 0.45, 0.5999999, 0.6, 0.99, 1.0])
    assert policy.risks(probabilities) == [policy.risk(p) for p in probabilities.tolist()]
    assert policy.risks(probabilities) == ["LOW", "LOW", "MEDIUM", "MEDIUM", "MEDIUM", "HIGH", "HIGH", "HIGH"]


INVALID_BODIES = {
    "unknown category": {**EXAMPLE, "Contract": "Weekly"},
    "missing field": {k: v for k, v in EXAMPLE.items() if k != "tenure"},
    "extra field": {**EXAMPLE, "shoe_size": 44},
    "out of range": {**EXAMPLE, "tenure": 121},
    "negative charge": {**EXAMPLE, "MonthlyCharges": -1},
    "wrong type": {**EXAMPLE, "TotalCharges": "lots"},
    "null": {**EXAMPLE, "gender": None},
    "not an object": [EXAMPLE],
}


@pytest.mark.parametrize("case", INVALID_BODIES)
def test_invalid_customer_gets_fastapis_own_422(client, plain_fastapi, case):
    response = client.post("/predict", json=INVALID_BODIES[case])
    reference = plain_fastapi.post("/predict", json=INVALID_BODIES[case])
    assert response.status_code == reference.status_code == 422
    assert response.json() == reference.json()


@pytest.mark.parametrize("content", [b'{"gender": ', b"", b'{"gender": "Female",}'])
def test_undecodable_bodies_get_fastapis_own_errors(client, plain_fastapi, content):
    response = client.post("/predict", content=content, headers={"content-type": "application/json"})
    reference = plain_fastapi.post("/predict", content=content, headers={"content-type": "application/json"})
    assert response.status_code == reference.status_code == 422
    assert response.json() == reference.json()


def test_unknown_category_names_the_field_and_lists_the_allowed_values(client):
    (error,) = client.post("/predict", json={**EXAMPLE, "PaymentMethod": "Bitcoin"}).json()["detail"]
    assert error["loc"] == ["body", "PaymentMethod"]
    for allowed in ("Bank transfer (automatic)", "Credit card (automatic)", "Electronic check", "Mailed check"):
        assert allowed in error["msg"]


def test_valid_bodies_the_hot_path_does_not_take_are_scored_by_the_fastapi_route(client):
    plain = client.post("/predict", json=EXAMPLE).json()
    routed = client.post("/predict", json=EXAMPLE, headers={"content-type": "application/json; charset=utf-8"}).json()
    assert routed["churn_probability"] == plain["churn_probability"]
    assert routed["contributions"] == plain["contributions"]
    assert stats(client)["requests"] == {"hot": 1, "routed": 1, "rows": 2}


def test_oversize_bodies_get_413(make_client):
    client = make_client(max_body_bytes=2_000)
    padded = json.dumps({**EXAMPLE, "pad": "x" * 3_000})
    for headers in ({"content-type": "application/json"}, {"content-type": "text/plain"}):
        response = client.post("/predict", content=padded, headers=headers)
        assert response.status_code == 413 and response.json() == {"detail": "Content Too Large"}
    chunked = client.post("/predict", content=iter([padded[:1500].encode(), padded[1500:].encode()]))
    assert chunked.status_code == 413


def test_batch_scores_like_single_requests(client, dataset):
    rows = pipeline.features(dataset).head(25).to_dict("records")
    response = client.post("/predict/batch", json={"customers": rows})
    assert response.status_code == 200 and response.headers["server-timing"].startswith("app;dur=")
    body = response.json()
    assert body["model_version"] == 7 and len(body["predictions"]) == 25
    for row, item in zip(rows, body["predictions"], strict=True):
        single = client.post("/predict", json=row).json()
        assert item["churn_probability"] == pytest.approx(single["churn_probability"], abs=1e-12)
        assert item["risk_level"] == single["risk_level"]
        assert item["churn_prediction"] == single["churn_prediction"]


def test_batch_over_the_limit_gets_413_on_both_paths(make_client):
    client = make_client(max_batch=3)
    for content_type in ("application/json", "application/json; charset=utf-8"):  # the second: the FastAPI route
        body = json.dumps({"customers": [EXAMPLE] * 4})
        response = client.post("/predict/batch", content=body, headers={"content-type": content_type})
        assert response.status_code == 413
        assert response.json() == {"detail": "a batch holds at most 3 customers, got 4"}
    assert client.post("/predict/batch", json={"customers": [EXAMPLE] * 3}).status_code == 200


@pytest.mark.parametrize("body", [{"customers": []}, {"customers": [EXAMPLE, {**EXAMPLE, "gender": "X"}]}, {}])
def test_invalid_batches_get_fastapis_own_422(client, plain_fastapi, body):
    response = client.post("/predict/batch", json=body)
    reference = plain_fastapi.post("/predict/batch", json=body)
    assert response.status_code == reference.status_code == 422
    assert response.json() == reference.json()


def test_without_a_champion_the_service_is_alive_but_not_ready(make_client):
    client = make_client(champion=False)
    assert client.get("/health").json() == {"status": "ok"}
    for method, path in (("GET", "/ready"), ("GET", "/model"), ("POST", "/predict"), ("POST", "/predict/batch")):
        kwargs = {"json": {"customers": [EXAMPLE]} if path.endswith("batch") else EXAMPLE} if method == "POST" else {}
        response = client.request(method, path, **kwargs)
        assert response.status_code == 503, path
        assert response.json() == {"detail": NO_CHAMPION}


def test_model_describes_the_serving_version(client):
    assert client.get("/ready").json() == {"status": "ready"}
    info = client.get("/model").json()
    assert info["version"] == 7 and info["alias"] == "champion" and info["run_id"] == "run7"
    assert info["metrics"] == {"roc_auc": 0.842} and info["data_fingerprint"] == "abc123"
    assert info["trained_at"].startswith("2023-11-14T22:13:20")


def test_bearer_token_when_configured(make_client):
    client = make_client(api_token="s3cret")
    for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": "Basic s3cret"}):
        response = client.post("/predict", json=EXAMPLE, headers=headers)
        assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
    good = {"authorization": "Bearer s3cret"}
    assert client.post("/predict", json=EXAMPLE, headers=good).status_code == 200
    assert client.post("/predict/batch", json={"customers": [EXAMPLE]}, headers=good).status_code == 200
    assert client.get("/health").status_code == 200
    assert client.get("/stats", headers=good).json()["requests"]["hot"] == 2


def test_every_scored_row_is_logged_with_its_response(make_client, store):
    client = make_client()
    singles = [client.post("/predict", json={**EXAMPLE, "tenure": t}).json() for t in range(5)]
    batch = client.post("/predict/batch", json={"customers": [EXAMPLE] * 3}).json()
    client.__exit__(None, None, None)  # lifespan shutdown flushes the log
    records = {r["request_id"]: r for r in store.records()}
    assert len(records) == 8
    for t, response in enumerate(singles):
        record = records[response["request_id"]]
        assert record["churn_probability"] == response["churn_probability"] and record["tenure"] == t
        assert record["model_version"] == 7 and record["latency_ms"] > 0
    assert {f"{batch['request_id']}-{i}" for i in range(3)} <= set(records)


def test_log_requests_off_logs_nothing(make_client, store):
    client = make_client(log_requests=False)
    assert client.post("/predict", json=EXAMPLE).status_code == 200
    client.__exit__(None, None, None)
    assert store.objects == {} and stats(client)["request_log"] is None


def test_internal_errors_never_show_a_stack_trace(client, monkeypatch):
    services = client.app.state.services

    def broken(*args):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(services.holder.current.scorer.__class__, "explain", broken)
    response = client.post("/predict", json=EXAMPLE)
    assert response.status_code == 500
    assert response.text == "Internal Server Error"


def test_openapi_documents_the_predict_contract(client):
    spec = client.get("/openapi.json").json()
    predict = spec["paths"]["/predict"]["post"]
    assert predict["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/Customer")
    assert predict["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/Prediction")
    assert {"200", "401", "413", "422", "503"} <= set(predict["responses"])
    customer = spec["components"]["schemas"]["Customer"]
    assert set(customer["properties"]) == set(schema.FEATURE_NAMES)
    assert customer["properties"]["Contract"]["enum"] == ["Month-to-month", "One year", "Two year"]
    assert {"/health", "/ready", "/model", "/predict/batch"} <= set(spec["paths"])
    assert client.get("/docs").status_code == 200


def test_docs_pages_load_their_assets_from_the_service_itself(client):
    for page, assets in (("/docs", ("swagger-ui-bundle.js", "swagger-ui.css")), ("/redoc", ("redoc.standalone.js",))):
        html = client.get(page).text
        assert "cdn." not in html and "fonts.googleapis" not in html, page
        for name in assets:
            assert f"/docs/assets/{name}" in html
            served = client.get(f"/docs/assets/{name}")
            assert served.status_code == 200 and len(served.content) > 100_000, name
    assert client.get("/docs/assets/favicon.png").headers["content-type"] == "image/png"
    for name in ("core.py", "..%2F__init__.py", "%2e%2e%2fcore.py", "../consts.py"):
        assert client.get(f"/docs/assets/{name}").status_code == 404, name


def test_openapi_states_the_configured_batch_limit(make_client):
    spec = make_client(max_batch=50).get("/openapi.json").json()
    assert spec["components"]["schemas"]["BatchRequest"]["properties"]["customers"]["maxItems"] == 50


# --- hostile input: each case on both paths --------------------------------------------------------

HOT = {"content-type": "application/json"}
ROUTED = {"content-type": "application/json; charset=utf-8"}  # not the hot path's exact type: FastAPI answers
BOTH_PATHS = pytest.mark.parametrize("headers", [HOT, ROUTED], ids=["hot", "routed"])


def with_raw(body, field, raw):
    """`body` as JSON text with the last value of `field` replaced by the raw JSON text `raw`."""
    before, key, after = json.dumps(body).rpartition(f'"{field}": ')
    _, end = json.JSONDecoder().raw_decode(after)
    return before + key + raw + after[end:]


@BOTH_PATHS
def test_a_60kb_batch_of_empty_objects_gets_a_short_413_before_any_item_is_validated(client, headers):
    response = client.post("/predict/batch", content=json.dumps({"customers": [{}] * 20_000}), headers=headers)
    assert response.status_code == 413
    assert response.json() == {"detail": "a batch holds at most 1000 customers, got 20000"}


@BOTH_PATHS
def test_a_body_with_100k_keys_gets_a_short_413_before_it_is_parsed(client, headers):
    body = json.dumps({f"k{i}": 0 for i in range(100_000)})
    response = client.post("/predict", content=body, headers=headers)
    assert response.status_code == 413
    assert response.json() == {"detail": "a body holds at most 64064 keys"}


@BOTH_PATHS
def test_an_object_with_too_many_keys_gets_one_error_naming_the_first(client, headers):
    response = client.post("/predict", content=json.dumps({f"k{i}": 0 for i in range(10_000)}), headers=headers)
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["type"] == "too_many_fields" and "'k0', 'k1', 'k2'" in error["msg"]


@BOTH_PATHS
def test_error_lists_are_capped_and_echoed_inputs_truncated(client, headers):
    body = {**EXAMPLE, "gender": "x" * 1_000_000, **{f"extra{i}": ["y" * 1_000] * 20 for i in range(30)}}
    response = client.post("/predict", content=json.dumps(body), headers=headers)
    assert response.status_code == 422 and len(response.content) < guard.MAX_ERRORS * (guard.ECHO_CHARS + 200)
    errors = response.json()["detail"]
    assert errors[0]["loc"] == ["body", "gender"] and errors[0]["type"] == "literal_error"
    assert errors[1]["loc"] == ["body", "extra0"] and errors[1]["type"] == "extra_forbidden"
    assert errors[-1]["type"] == "too_many_errors" and "31" in errors[-1]["msg"]


@BOTH_PATHS
def test_a_batch_of_invalid_items_reports_the_first_bad_item_only(client, headers):
    body = {"customers": [EXAMPLE, *[{**EXAMPLE, "tenure": -1}] * 999]}
    response = client.post("/predict/batch", content=json.dumps(body), headers=headers)
    assert response.status_code == 422
    assert [e["loc"] for e in response.json()["detail"]] == [["body", "customers", 1, "tenure"]]


@BOTH_PATHS
@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e309", "-1e309"])
@pytest.mark.parametrize("field", ["tenure", "MonthlyCharges", "SeniorCitizen"])
def test_non_finite_numbers_get_422_naming_the_field(client, headers, field, literal):
    response = client.post("/predict", content=with_raw(EXAMPLE, field, literal), headers=headers)
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", field] and error["type"] == "finite_number" and error["input"] == literal
    batch = with_raw({"customers": [EXAMPLE, EXAMPLE]}, field, literal)
    (error,) = client.post("/predict/batch", content=batch, headers=headers).json()["detail"]
    assert error["loc"] == ["body", "customers", 1, field]
    assert client.post("/predict", json=EXAMPLE).status_code == 200


@BOTH_PATHS
@pytest.mark.parametrize("path", ["/predict", "/predict/batch"])
def test_invalid_utf8_in_a_string_gets_400_naming_the_problem(client, headers, path):
    body = json.dumps({"customers": [EXAMPLE]} if path.endswith("batch") else EXAMPLE).encode()
    response = client.post(path, content=body.replace(b'"Female"', b'"Fem\xffale"'), headers=headers)
    assert response.status_code == 400
    assert "UTF-8" in response.json()["detail"] and "byte" in response.json()["detail"]


@BOTH_PATHS
@pytest.mark.parametrize("path", ["/predict", "/predict/batch"])
def test_deeply_nested_json_gets_422_naming_the_field(client, headers, path):
    deep = "[" * 100_000 + "]" * 100_000
    body, prefix = with_raw(EXAMPLE, "tenure", deep), ["body", "tenure"]
    if path.endswith("batch"):
        body, prefix = with_raw({"customers": [EXAMPLE, EXAMPLE]}, "tenure", deep), ["body", "customers", 1, "tenure"]
    response = client.post(path, content=body, headers=headers)
    assert response.status_code == 422 and len(response.content) < 2_000
    (error,) = response.json()["detail"]
    assert error["loc"][: len(prefix)] == prefix and error["type"] == "json_too_deep"


STRICT_CASES = [
    ("tenure", "12"), ("tenure", True), ("tenure", 25.5), ("MonthlyCharges", "29.85"),
    ("MonthlyCharges", False), ("SeniorCitizen", True), ("SeniorCitizen", "1"), ("SeniorCitizen", 0.5),
]  # fmt: skip


@BOTH_PATHS
@pytest.mark.parametrize(("field", "value"), STRICT_CASES)
def test_numbers_are_strict_on_both_paths(client, headers, field, value):
    response = client.post("/predict", content=json.dumps({**EXAMPLE, field: value}), headers=headers)
    assert response.status_code == 422
    assert [e["loc"] for e in response.json()["detail"]] == [["body", field]]


@BOTH_PATHS
@pytest.mark.parametrize(("field", "whole", "fraction"), [("tenure", 25, 25.0), ("SeniorCitizen", 1, 1.0)])
def test_integer_fields_take_json_schema_integers(client, headers, field, whole, fraction):
    plain = client.post("/predict", content=json.dumps({**EXAMPLE, field: whole}), headers=headers)
    written = client.post("/predict", content=json.dumps({**EXAMPLE, field: fraction}), headers=headers)
    assert plain.status_code == written.status_code == 200
    assert plain.json()["churn_probability"] == written.json()["churn_probability"]


@BOTH_PATHS
def test_float_fields_accept_json_integers(client, headers):
    whole = client.post("/predict", content=json.dumps({**EXAMPLE, "MonthlyCharges": 30}), headers=headers)
    fraction = client.post("/predict", content=json.dumps({**EXAMPLE, "MonthlyCharges": 30.0}), headers=headers)
    assert whole.status_code == fraction.status_code == 200
    assert whole.json()["churn_probability"] == fraction.json()["churn_probability"]


@pytest.mark.parametrize("path", ["/predict", "/predict/batch"])
@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded", "application/jsonx"])
def test_a_wrong_or_missing_content_type_gets_415(client, path, content_type):
    body = json.dumps({"customers": [EXAMPLE]} if path.endswith("batch") else EXAMPLE)
    response = client.post(path, content=body, headers={"content-type": content_type} if content_type else {})
    assert response.status_code == 415
    assert response.json() == {"detail": "the body must be JSON (content-type: application/json)"}


def test_with_a_token_only_the_probes_are_public(make_client):
    client = make_client(api_token="s3cret")
    for path in ("/model", "/stats", "/docs", "/redoc", "/openapi.json"):
        assert client.get(path).status_code == 401, path
        assert client.get(path, headers={"authorization": "Bearer s3cret"}).status_code == 200, path
    for path in ("/health", "/ready"):
        assert client.get(path).status_code == 200, path


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
RAW_VALUES = st.sampled_from(
    ["NaN", "Infinity", "-Infinity", "1e309", "-0", "1" * 400, '"\\ud800"', "[" * 3_000, "true", '"12"', "25.0", "1e2"]
) | JSON_VALUES.map(json.dumps)


@st.composite
def request_bodies(draw, batch):
    """Arbitrary bytes, arbitrary JSON, or a valid body with one value replaced by raw JSON text or a stray byte."""
    kind = draw(st.sampled_from(["bytes", "json", "value", "byte"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "json":
        return json.dumps(draw(JSON_VALUES)).encode()
    body = {"customers": [EXAMPLE] * draw(st.integers(1, 3))} if batch else EXAMPLE
    if kind == "value":
        return with_raw(body, draw(st.sampled_from(schema.FEATURE_NAMES)), draw(RAW_VALUES)).encode()
    text = json.dumps(body).encode()
    at = draw(st.integers(0, len(text)))
    return text[:at] + bytes([draw(st.integers(0, 255))]) + text[at:]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_body_gets_the_same_answer_on_both_paths_and_never_a_5xx(client, data):
    path = data.draw(st.sampled_from(["/predict", "/predict/batch"]))
    body = data.draw(request_bodies(path.endswith("batch")))
    hot = client.post(path, content=body, headers=HOT)
    routed = client.post(path, content=body, headers=ROUTED)
    assert hot.status_code < 500 and hot.status_code == routed.status_code
    if hot.status_code == 200:
        assert hot.json().get("churn_probability") == routed.json().get("churn_probability")
    else:
        assert hot.content == routed.content
