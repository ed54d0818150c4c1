"""The retrain job's typed run record (the job itself runs on the real stack in integration/test_retrain.py)."""

import json
import math
from datetime import UTC, datetime

from churnflow.retraining.job import RetrainOutcome, RetrainResult


def refuse(constant):
    raise ValueError(f"{constant} is not JSON")


def test_the_run_record_is_valid_json_and_reads_back_as_the_same_type():
    outcome = RetrainOutcome(
        status=RetrainResult.REJECTED,
        reason="challenger AUC 0.61 < champion AUC 0.83 - 0.005",
        message_id="123",
        version=4,
        champion_version=3,
        challenger_base={"roc_auc": 0.61, "rows": 900.0},
        challenger_oot={"roc_auc": math.nan, "rows": 12.0},  # one class only: AUC undefined
        finished_at=datetime(2026, 11, 5, 12, tzinfo=UTC),
    )
    stored = outcome.model_dump_json()
    raw = json.loads(stored, parse_constant=refuse)
    assert raw["status"] == "rejected" and raw["challenger_oot"]["roc_auc"] is None
    back = RetrainOutcome.model_validate_json(stored)
    assert back.status is RetrainResult.REJECTED and math.isnan(back.challenger_oot["roc_auc"])
    assert back.model_copy(update={"challenger_oot": None}) == outcome.model_copy(update={"challenger_oot": None})
