"""The schema is the one definition of the 19 features; everything else derives from it."""

import pydantic
import pytest

from churnflow.core import schema


def test_nineteen_features_split_into_categorical_and_numeric():
    assert len(schema.FEATURE_NAMES) == 19
    assert set(schema.NUMERIC_NAMES) == {"tenure", "MonthlyCharges", "TotalCharges"}
    assert set(schema.CATEGORICAL_NAMES) | set(schema.NUMERIC_NAMES) == set(schema.FEATURE_NAMES)
    assert schema.ID_COLUMN not in schema.FEATURE_NAMES and schema.TARGET not in schema.FEATURE_NAMES


def test_request_model_fields_follow_the_schema():
    model = schema.customer_model()
    assert list(model.model_fields) == list(schema.FEATURE_NAMES)
    properties = model.model_json_schema()["properties"]
    assert properties["Contract"]["enum"] == ["Month-to-month", "One year", "Two year"]
    assert properties["tenure"]["minimum"] == 0 and properties["tenure"]["maximum"] == 120


def test_example_customer_is_valid():
    customer = schema.customer_model()(**schema.EXAMPLE_CUSTOMER)
    assert customer.model_dump() == schema.EXAMPLE_CUSTOMER


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("Contract", "Weekly", "'Month-to-month', 'One year' or 'Two year'"),
        ("tenure", -1, "greater than or equal to 0"),
        ("MonthlyCharges", "lots", "valid number"),
        ("SeniorCitizen", 2, "0 or 1"),
    ],
)
def test_bad_values_are_rejected_naming_field_and_allowed_values(field, value, message):
    with pytest.raises(pydantic.ValidationError) as caught:
        schema.customer_model()(**{**schema.EXAMPLE_CUSTOMER, field: value})
    (error,) = caught.value.errors()
    assert error["loc"] == (field,)
    assert message in error["msg"]


def test_missing_and_unknown_fields_are_rejected():
    body = {k: v for k, v in schema.EXAMPLE_CUSTOMER.items() if k != "gender"} | {"colour": "red"}
    with pytest.raises(pydantic.ValidationError) as caught:
        schema.customer_model()(**body)
    problems = {(e["loc"][0], e["type"]) for e in caught.value.errors()}
    assert problems == {("gender", "missing"), ("colour", "extra_forbidden")}
