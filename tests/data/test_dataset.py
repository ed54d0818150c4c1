"""Data tests on the bundled IBM Telco file: schema, labels, balance, uniqueness, no leakage."""

from churnflow.core import schema
from churnflow.training import data


def test_bundled_file_matches_the_published_checksum():
    raw = data.read_raw()
    assert raw.shape == (7043, 21)


def test_every_row_passes_the_schema(dataset):
    assert list(dataset.columns) == [schema.ID_COLUMN, *schema.FEATURE_NAMES, schema.TARGET]
    assert len(dataset) == 7043


def test_label_set_and_churn_rate(dataset):
    assert set(dataset[schema.TARGET]) == {"No", "Yes"}
    assert abs(data.target(dataset).mean() - 0.2654) < 0.0005


def test_no_duplicate_customers(dataset):
    assert dataset[schema.ID_COLUMN].is_unique


def test_blank_total_charges_are_exactly_the_new_customers(dataset):
    raw = data.read_raw()
    blank = raw["TotalCharges"].str.strip() == ""
    assert blank.sum() == 11
    assert (raw.loc[blank, "tenure"] == "0").all()
    assert (dataset.loc[blank, "TotalCharges"] == 0).all()


def test_no_feature_leaks_the_target(dataset):
    assert schema.TARGET not in schema.FEATURE_NAMES
    churn = data.target(dataset)
    for name in schema.CATEGORICAL_NAMES:
        purity = dataset.groupby(name)[schema.TARGET].apply(lambda s: (s == "Yes").mean())
        assert purity.max() < 0.95, name  # no category all but decides the outcome
    assert abs(dataset["tenure"].corr(churn)) < 0.9
