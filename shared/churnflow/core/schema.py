"""The 19 churn features, defined once.

Everything that touches a customer record derives from this module: the pydantic request model of
`/predict`, the column lists of the training pipeline, the data checks on frames and the column
mapping of the drift monitor. It imports nothing heavier than pydantic, so the serving path can use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

ID_COLUMN = "customerID"
TARGET = "Churn"
TARGET_CLASSES = ("No", "Yes")
TARGET_POSITIVE = "Yes"


@dataclass(frozen=True, slots=True)
class CategoricalFeature:
    """A feature whose value must be one of a closed set of categories."""

    name: str
    categories: tuple[str | int, ...]
    description: str


@dataclass(frozen=True, slots=True)
class NumericFeature:
    """A numeric feature with a type and an inclusive valid range."""

    name: str
    dtype: type[int] | type[float]
    minimum: float
    maximum: float
    description: str


Feature = CategoricalFeature | NumericFeature

_YES_NO = ("No", "Yes")
_PHONE_ADDON = ("No", "No phone service", "Yes")
_INTERNET_ADDON = ("No", "No internet service", "Yes")

FEATURES: tuple[Feature, ...] = (
    CategoricalFeature("gender", ("Female", "Male"), "Customer gender."),
    CategoricalFeature("SeniorCitizen", (0, 1), "1 if the customer is 65 or older."),
    CategoricalFeature("Partner", _YES_NO, "Has a partner."),
    CategoricalFeature("Dependents", _YES_NO, "Has dependents."),
    NumericFeature("tenure", int, 0, 120, "Months with the company."),
    CategoricalFeature("PhoneService", _YES_NO, "Has a phone line."),
    CategoricalFeature("MultipleLines", _PHONE_ADDON, "Has several phone lines."),
    CategoricalFeature("InternetService", ("DSL", "Fiber optic", "No"), "Internet connection type."),
    CategoricalFeature("OnlineSecurity", _INTERNET_ADDON, "Online security add-on."),
    CategoricalFeature("OnlineBackup", _INTERNET_ADDON, "Online backup add-on."),
    CategoricalFeature("DeviceProtection", _INTERNET_ADDON, "Device protection add-on."),
    CategoricalFeature("TechSupport", _INTERNET_ADDON, "Tech support add-on."),
    CategoricalFeature("StreamingTV", _INTERNET_ADDON, "Streaming TV add-on."),
    CategoricalFeature("StreamingMovies", _INTERNET_ADDON, "Streaming movies add-on."),
    CategoricalFeature("Contract", ("Month-to-month", "One year", "Two year"), "Contract term."),
    CategoricalFeature("PaperlessBilling", _YES_NO, "Receives paperless bills."),
    CategoricalFeature(
        "PaymentMethod",
        ("Bank transfer (automatic)", "Credit card (automatic)", "Electronic check", "Mailed check"),
        "How the customer pays.",
    ),
    NumericFeature("MonthlyCharges", float, 0.0, 1_000.0, "Current monthly charge in USD."),
    NumericFeature("TotalCharges", float, 0.0, 100_000.0, "Charges to date in USD (0 for new customers)."),
)

FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
CATEGORICAL: tuple[CategoricalFeature, ...] = tuple(f for f in FEATURES if isinstance(f, CategoricalFeature))
NUMERIC: tuple[NumericFeature, ...] = tuple(f for f in FEATURES if isinstance(f, NumericFeature))
CATEGORICAL_NAMES: tuple[str, ...] = tuple(f.name for f in CATEGORICAL)
NUMERIC_NAMES: tuple[str, ...] = tuple(f.name for f in NUMERIC)


def _field_type(feature: Feature) -> object:
    if isinstance(feature, CategoricalFeature):
        return Annotated[Literal[feature.categories], Field(description=feature.description)]
    return Annotated[feature.dtype, Field(ge=feature.minimum, le=feature.maximum, description=feature.description)]


def _example() -> dict[str, str | int | float]:
    return {
        "gender": "Female",
        "SeniorCitizen": 0,
        "Partner": "Yes",
        "Dependents": "No",
        "tenure": 1,
        "PhoneService": "No",
        "MultipleLines": "No phone service",
        "InternetService": "DSL",
        "OnlineSecurity": "No",
        "OnlineBackup": "Yes",
        "DeviceProtection": "No",
        "TechSupport": "No",
        "StreamingTV": "No",
        "StreamingMovies": "No",
        "Contract": "Month-to-month",
        "PaperlessBilling": "Yes",
        "PaymentMethod": "Electronic check",
        "MonthlyCharges": 29.85,
        "TotalCharges": 29.85,
    }


EXAMPLE_CUSTOMER: dict[str, str | int | float] = _example()


@cache
def customer_model() -> type[BaseModel]:
    """The pydantic model of one customer record, generated from FEATURES (strict on unknown fields)."""
    fields = {f.name: (_field_type(f), ...) for f in FEATURES}
    return create_model(  # type: ignore[call-overload, no-any-return]
        "Customer",
        __config__=ConfigDict(extra="forbid", frozen=True, json_schema_extra={"examples": [{**EXAMPLE_CUSTOMER}]}),
        __doc__="One customer's 19 features, as in the IBM Telco churn data.",
        **fields,
    )
