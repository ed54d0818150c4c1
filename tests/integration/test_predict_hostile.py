"""Hostile input against a real uvicorn server: a 4xx on both paths, and the keep-alive connection serves on."""

import http.client
import json

import pytest

from churnflow.core import schema
from churnflow.serving import create_app
from churnflow.settings import PredictSettings
from conftest import uvicorn_server

pytestmark = pytest.mark.integration

GOOD = json.dumps(schema.EXAMPLE_CUSTOMER).encode()
CHARGES = b'"MonthlyCharges": 29.85'
HOSTILE = {
    "NaN": (422, GOOD.replace(CHARGES, b'"MonthlyCharges": NaN')),
    "Infinity": (422, GOOD.replace(CHARGES, b'"MonthlyCharges": Infinity')),
    "-Infinity": (422, GOOD.replace(CHARGES, b'"MonthlyCharges": -Infinity')),
    "1e309": (422, GOOD.replace(CHARGES, b'"MonthlyCharges": 1e309')),
    "invalid UTF-8": (400, GOOD.replace(b'"Female"', b'"Fem\xffale"')),
    "deep nesting": (422, GOOD.replace(b'"tenure": 1', b'"tenure": ' + b"[" * 50_000 + b"]" * 50_000)),
}
PATHS = {"hot": "application/json", "routed": "application/json; charset=utf-8"}


@pytest.fixture(scope="module")
def port(local_stack, champion, tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        for name, value in local_stack.env().items():
            patch.setenv(name, value)
        app = create_app(PredictSettings(spool_dir=tmp_path_factory.mktemp("spool"), log_requests=False))
        with uvicorn_server(app) as port:
            yield port


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("case", HOSTILE)
def test_a_hostile_request_gets_its_4xx_and_the_same_connection_then_serves_a_good_one(port, path, case):
    status, body = HOSTILE[case]
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("POST", "/predict", body, {"content-type": PATHS[path]})
        response = connection.getresponse()
        assert response.status == status
        detail = json.loads(response.read())["detail"]
        if status == 422:
            assert detail[0]["loc"][:2] == ["body", "tenure" if case == "deep nesting" else "MonthlyCharges"]
        assert response.getheader("connection") != "close"
        socket = connection.sock
        connection.request("POST", "/predict", GOOD, {"content-type": PATHS[path]})
        response = connection.getresponse()
        assert response.status == 200 and "churn_probability" in json.loads(response.read())
        assert connection.sock is socket  # the same connection, not a new one
    finally:
        connection.close()
