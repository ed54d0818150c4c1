"""`functions/predict/main.py`'s Mangum handler answers API Gateway HTTP API (v2) events like HTTP does."""

import json
import logging
import runpy

import pytest
from fastapi.testclient import TestClient

from churnflow.core import schema
from churnflow.settings import REPO_ROOT

pytestmark = pytest.mark.integration


def http_api_event(path, body):
    """An API Gateway HTTP API payload-format-2.0 event for a JSON POST."""
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"content-type": "application/json", "host": "churn.example.com", "user-agent": "pytest"},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "churnapi",
            "domainName": "churn.example.com",
            "domainPrefix": "churn",
            "http": {"method": "POST", "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.9",
                     "userAgent": "pytest"},
            "requestId": "req-1",
            "routeKey": "$default",
            "stage": "$default",
            "time": "22/Nov/2026:07:00:00 +0000",
            "timeEpoch": 1795330800000,
        },
        "body": json.dumps(body),
        "isBase64Encoded": False,
    }  # fmt: skip


@pytest.fixture
def entry_point(stack_env, champion, tmp_path, monkeypatch):
    monkeypatch.setenv("CHURNFLOW_SPOOL_DIR", str(tmp_path / "spool"))
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))  # main.py configures JSON logging on the root
    monkeypatch.setattr(root, "level", root.level)
    return runpy.run_path(str(REPO_ROOT / "functions" / "predict" / "main.py"), run_name="predict_main")


def test_handler_returns_the_same_prediction_as_http(entry_point, champion):
    with TestClient(entry_point["app"]) as client:
        over_http = client.post("/predict", json=schema.EXAMPLE_CUSTOMER).json()
    reply = entry_point["handler"](http_api_event("/predict", schema.EXAMPLE_CUSTOMER), {})
    assert reply["statusCode"] == 200 and reply["headers"]["content-type"] == "application/json"
    via_lambda = json.loads(reply["body"])
    assert via_lambda["model_version"] == over_http["model_version"] == champion.version.version
    assert via_lambda["churn_probability"] == over_http["churn_probability"]
    assert via_lambda["contributions"] == over_http["contributions"]
    assert via_lambda["request_id"] != over_http["request_id"]


def test_handler_keeps_the_error_contract(entry_point):
    reply = entry_point["handler"](http_api_event("/predict", {**schema.EXAMPLE_CUSTOMER, "Contract": "Weekly"}), {})
    assert reply["statusCode"] == 422
    (error,) = json.loads(reply["body"])["detail"]
    assert error["loc"] == ["body", "Contract"] and "Two year" in error["msg"]
