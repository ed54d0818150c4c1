"""Label batches are validated whole: every bad row is named and nothing partial is accepted."""

import pytest

from churnflow.storage import labels

KNOWN = {"r1", "r2", "r3"}


def unknown(ids):
    return set(ids) - KNOWN


def test_valid_rows_in_any_spelling():
    rows = [
        {"request_id": "r1", "churned": "Yes", "observed_at": "2026-11-20T10:00:00Z"},
        {"request_id": "r2", "churned": "0", "observed_at": "2026-11-20"},
        {"request_id": "r3", "churned": True, "observed_at": "2026-11-20T10:00:00+02:00"},
    ]
    parsed = labels.validate(rows, unknown)
    assert [(x.request_id, x.churned) for x in parsed] == [("r1", True), ("r2", False), ("r3", True)]
    assert all(x.observed_at.tzinfo is not None for x in parsed)
    assert parsed[0].to_record() == {"request_id": "r1", "churned": True, "observed_at": "2026-11-20T10:00:00+00:00"}


def test_every_problem_is_reported_with_its_row():
    rows = [
        {"request_id": "r1", "churned": "maybe", "observed_at": "yesterday"},
        {"request_id": "nope", "churned": "no", "observed_at": "2026-11-20"},
        {"request_id": "r2", "churned": "no"},
        {"request_id": "r1", "churned": "no", "observed_at": "2026-11-20"},
    ]
    with pytest.raises(labels.LabelValidationError) as caught:
        labels.validate(rows, unknown)
    assert caught.value.errors == [
        "row 1, column 'churned': 'maybe' is not yes/no, true/false or 1/0",
        "row 1, column 'observed_at': 'yesterday' is not an ISO 8601 time",
        "row 2, column 'request_id': unknown request id 'nope'",
        "row 3: missing observed_at",
        "row 4, column 'request_id': duplicate request id 'r1'",
    ]


def test_empty_batch_is_refused():
    with pytest.raises(labels.LabelValidationError, match="no labels"):
        labels.validate([], unknown)


def test_csv_and_jsonl_files_read_alike(tmp_path):
    csv_file = tmp_path / "l.csv"
    csv_file.write_text("request_id,churned,observed_at\nr1,yes,2026-11-20\n")
    jsonl_file = tmp_path / "l.jsonl"
    jsonl_file.write_text('{"request_id": "r1", "churned": "yes", "observed_at": "2026-11-20"}\n')
    rows = [list(labels.read_rows(path.open("rb"), path.name)) for path in (csv_file, jsonl_file)]
    assert rows[0] == rows[1] == [{"request_id": "r1", "churned": "yes", "observed_at": "2026-11-20"}]
