"""Schemathesis fuzzes the live service from its own /openapi.json: no 5xx, responses match the spec.

Both valid (positive) and invalid (negative) requests are generated for every operation.
"""

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.config import SchemathesisConfig
from schemathesis.generation.modes import GenerationMode

from churnflow.serving import create_app
from churnflow.settings import PredictSettings
from conftest import uvicorn_server

pytestmark = pytest.mark.integration

# An over-long batch is refused with 413 (the contract), which schemathesis does not count
# as a rejection of invalid data by default.
REJECTIONS = [400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 428, 429]
CONFIG = SchemathesisConfig.from_dict({"checks": {"negative_data_rejection": {"expected-statuses": REJECTIONS}}})


@pytest.fixture
def predict_api(stack_env, champion, tmp_path):
    app = create_app(PredictSettings(spool_dir=tmp_path / "spool", max_batch=20))
    with uvicorn_server(app) as port:
        yield schemathesis.openapi.from_url(f"http://127.0.0.1:{port}/openapi.json", config=CONFIG)


def test_no_server_errors_and_responses_match_the_spec(predict_api):
    # Each operation runs as a plain Hypothesis test: schemathesis' own pytest fixture loader
    # (`schemathesis.pytest.from_fixture`) does not work with pytest 9.
    operations = [result.ok() for result in predict_api.get_all_operations()]
    assert {(op.method.upper(), op.path) for op in operations} >= {("POST", "/predict"), ("POST", "/predict/batch")}
    runs = [(op, mode) for op in operations for mode in GenerationMode if mode.is_positive or op.method == "post"]
    for operation, mode in runs:

        @given(case=operation.as_strategy(mode))
        @settings(max_examples=50, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
        def check(case):
            case.call_and_validate()

        check()
