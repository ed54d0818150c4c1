"""Labels files are read as a stream of raw text batches with their row numbers, within a row cap."""

import io

import pytest

from churnflow.storage import labels


def read(text, name="labels.csv", max_rows=100):
    data = text.encode()
    return [row for batch in labels.read_batches(lambda: io.BytesIO(data), name, max_rows) for row in batch.to_pylist()]


def test_csv_and_jsonl_files_read_alike_with_row_numbers():
    csv_rows = read("request_id,churned,observed_at\nr1,yes,2026-11-20\nr2,,2026-11-21\n")
    jsonl_rows = read(
        '{"request_id": "r1", "churned": "yes", "observed_at": "2026-11-20"}\n\n'
        '{"request_id": "r2", "observed_at": "2026-11-21"}\n',
        "labels.jsonl",
    )
    assert (
        csv_rows
        == jsonl_rows
        == [
            {"row": 1, "request_id": "r1", "churned": "yes", "observed_at": "2026-11-20"},
            {"row": 2, "request_id": "r2", "churned": None, "observed_at": "2026-11-21"},  # blank is absent
        ]
    )


def test_a_missing_column_reads_as_absent_and_json_values_as_text():
    assert read("request_id,churned\nr1,no\n") == [{"row": 1, "request_id": "r1", "churned": "no", "observed_at": None}]
    [row] = read('{"request_id": 7, "churned": true, "observed_at": "2026-11-20"}\n', "l.jsonl")
    assert (row["request_id"], row["churned"]) == ("7", "True")


def test_rows_with_the_wrong_number_of_fields_are_named():
    with pytest.raises(labels.LabelValidationError) as caught:
        read("request_id,churned,observed_at\nr1,yes,2026\nr2,no\nr3,yes,x,extra\n")
    assert caught.value.errors == ["row 2: 2 fields, the header has 3", "row 3: 4 fields, the header has 3"]


def test_a_line_that_is_not_a_json_object_is_named():
    with pytest.raises(labels.LabelValidationError, match="row 2: not a JSON object"):
        read('{"request_id": "r1"}\n[1, 2]\n', "l.jsonl")


def test_a_file_above_the_row_cap_is_refused():
    with pytest.raises(labels.LabelValidationError, match="more than 2 labels"):
        read("request_id,churned,observed_at\nr1,yes,x\nr2,yes,x\nr3,yes,x\n", max_rows=2)


def test_an_error_lists_the_first_rows_and_counts_all():
    error = labels.LabelValidationError([f"row {i}: bad" for i in range(1, 26)], total=5000)
    assert str(error).startswith("5000 label error(s):\n  row 1: bad") and str(error).endswith("... and 4980 more")
