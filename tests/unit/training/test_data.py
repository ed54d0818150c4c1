"""Cleaning turns raw text columns into typed features, or names every bad row and column."""

import pandas as pd
import pytest

from churnflow.core import schema
from churnflow.training import data


def raw_rows(count=3):
    row = {
        schema.ID_COLUMN: "0000-AAAAA",
        **{k: str(v) for k, v in schema.EXAMPLE_CUSTOMER.items()},
        "Churn": "No",
    }
    frame = pd.DataFrame([row] * count)
    frame[schema.ID_COLUMN] = [f"000{i}-AAAAA" for i in range(count)]
    return frame


def test_blank_total_charges_become_zero_and_types_are_set():
    frame = raw_rows()
    frame.loc[1, "TotalCharges"] = " "
    clean = data.clean(frame)
    assert clean.loc[1, "TotalCharges"] == 0.0
    assert clean["tenure"].dtype.kind == "i" and clean["MonthlyCharges"].dtype.kind == "f"
    assert clean["SeniorCitizen"].tolist() == [0, 0, 0]


@pytest.mark.parametrize(
    ("column", "value", "expected"),
    [
        ("Contract", "Weekly", "row 2 (customerID 0001-AAAAA), column 'Contract': unknown category 'Weekly'"),
        (
            "tenure",
            "-3",
            "row 2 (customerID 0001-AAAAA), column 'tenure': '-3' is outside the valid range [0, 120]",
        ),
        ("tenure", "1.5", "column 'tenure': not a int: '1.5'"),
        (
            "MonthlyCharges",
            "abc",
            "row 2 (customerID 0001-AAAAA), column 'MonthlyCharges': not a float: 'abc'",
        ),
        ("SeniorCitizen", "yes", "column 'SeniorCitizen': unknown category 'yes'"),
        ("Churn", "Maybe", "column 'Churn': 'Maybe' is not one of ['No', 'Yes']"),
    ],
)
def test_bad_values_name_row_and_column(column, value, expected):
    frame = raw_rows()
    frame.loc[1, column] = value
    with pytest.raises(data.DataValidationError) as caught:
        data.clean(frame)
    assert len(caught.value.errors) == 1
    assert expected in caught.value.errors[0]


def test_missing_columns_are_listed():
    with pytest.raises(data.DataValidationError, match="missing column\\(s\\): gender, Churn"):
        data.clean(raw_rows().drop(columns=["gender", "Churn"]))


def test_every_error_is_counted_even_when_only_some_are_shown():
    frame = raw_rows(50)
    frame["Contract"] = "Weekly"
    with pytest.raises(data.DataValidationError) as caught:
        data.clean(frame)
    assert str(caught.value).startswith("50 data error(s)")
    assert "... and 30 more" in str(caught.value)


def test_bundled_file_with_wrong_checksum_is_refused(tmp_path, monkeypatch):
    tampered = tmp_path / "telco_churn.csv"
    tampered.write_bytes(data.BUNDLED_DATASET.read_bytes().replace(b"Electronic check", b"Mailed check", 1))
    monkeypatch.setattr(data, "BUNDLED_DATASET", tampered)
    with pytest.raises(data.DataValidationError, match="sha256"):
        data.read_raw()


def test_any_csv_path_loads(tmp_path):
    path = tmp_path / "rows.csv"
    raw_rows(4).to_csv(path, index=False)
    assert len(data.load_dataset(path)) == 4


def test_fingerprint_depends_on_rows_only():
    frame = data.clean(raw_rows())
    same = data.clean(raw_rows())
    same[schema.ID_COLUMN] = "other"
    changed = frame.copy()
    changed.loc[0, "tenure"] = 2
    assert data.fingerprint(frame) == data.fingerprint(same)
    assert data.fingerprint(frame) != data.fingerprint(changed)
