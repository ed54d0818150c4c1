"""The retrain job's typed run record and its log lines (the job itself runs on the real stack in
integration/test_retrain.py)."""

import json
import logging
import math
from datetime import UTC, datetime

import pytest

from churnflow.retraining import job
from churnflow.retraining.job import RetrainOutcome, RetrainResult
from churnflow.retraining.lock import LockHeld


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


@pytest.fixture
def job_logs(monkeypatch, capsys):
    """The job's stdout lines as JSON, with logging configured as the job's entry point does it."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    monkeypatch.setattr(job, "RetrainSettings", lambda: None)
    yield lambda: [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


def test_a_failed_execution_writes_one_json_error_line_through_logging_and_exits_1(monkeypatch, job_logs):
    def fail(settings, request, message_id):
        raise ValueError("training data unreadable")

    monkeypatch.setattr(job, "run", fail)
    assert job.main() == 1
    [line] = job_logs()
    assert {k: line[k] for k in ("severity", "message", "event", "status", "error")} == {
        "severity": "ERROR",
        "message": "retrain failed: training data unreadable",
        "event": "retrain_execution",
        "status": "failed",
        "error": "ValueError",
    }
    assert line["exception"].endswith("ValueError: training data unreadable")


def test_a_held_lock_is_a_warning_and_exit_75_and_a_decision_an_info_line(monkeypatch, job_logs):
    def held(settings, request, message_id):
        raise LockHeld("retrain lock held by '99'")

    monkeypatch.setattr(job, "run", held)
    assert job.main() == 75
    rejected = RetrainOutcome(
        status=RetrainResult.REJECTED, reason="AUC 0.80 <= champion 0.82", message_id="42", version=3,
        champion_version=2, challenger_oot={"roc_auc": 0.80}, champion_oot={"roc_auc": 0.82},
    )  # fmt: skip
    monkeypatch.setattr(job, "run", lambda settings, request, message_id: rejected)
    assert job.main() == 0
    deferred, decided = job_logs()
    assert (deferred["severity"], deferred["event"], deferred["status"]) == ("WARNING", "retrain_execution", "deferred")
    assert {k: decided[k] for k in ("severity", "status", "version", "challenger_roc_auc", "champion_roc_auc")} == {
        "severity": "INFO",
        "status": "rejected",
        "version": 3,
        "challenger_roc_auc": 0.80,
        "champion_roc_auc": 0.82,
    }
