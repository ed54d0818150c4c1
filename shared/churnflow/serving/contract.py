"""The HTTP contract of the predict service: pydantic models for FastAPI and their msgspec twins.

Both are generated from `schema.FEATURES`. FastAPI validates with the pydantic models (and documents
them in OpenAPI); the hot path decodes with the msgspec Structs. msgspec is strict (no string → number
coercion, no bool → int), so it accepts a subset of what pydantic accepts, with the same values;
anything it rejects is handed to FastAPI, which answers exactly as it would without the hot path.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Annotated, Any, Literal

import msgspec
from pydantic import BaseModel, ConfigDict, Field, create_model

from churnflow.core import schema

RiskLevel = Literal["LOW", "MEDIUM", "HIGH"]

Customer = schema.customer_model()

BatchRequest: type[BaseModel] = create_model(
    "BatchRequest",
    __config__=ConfigDict(extra="forbid"),
    __doc__="Customers to score in one call (at most the service's max_batch, else 413).",
    customers=(Annotated[list[Customer], Field(min_length=1)], ...),  # type: ignore[valid-type, arg-type]
)


class Contribution(BaseModel):
    """One feature's exact additive share of this prediction's log-odds (weight × encoded value)."""

    feature: str
    value: str | int | float
    log_odds: float


class Prediction(BaseModel):
    """The churn prediction for one customer."""

    request_id: str
    model_version: int
    churn_probability: float = Field(ge=0, le=1)
    churn_prediction: bool
    risk_level: RiskLevel
    contributions: list[Contribution] = Field(description="Largest |log_odds| first.")


class BatchItem(BaseModel):
    """The prediction for one customer of a batch, in request order."""

    churn_probability: float = Field(ge=0, le=1)
    churn_prediction: bool
    risk_level: RiskLevel


class BatchPrediction(BaseModel):
    """The predictions for a batch; logged rows get request ids `<request_id>-<index>`."""

    request_id: str
    model_version: int
    predictions: list[BatchItem]


class ModelInfo(BaseModel):
    """The model version serving now."""

    name: str
    alias: str
    version: int
    run_id: str
    metrics: dict[str, float]
    trained_at: datetime | None
    data_fingerprint: str | None
    loaded_at: datetime


class ProbeStatus(BaseModel):
    """A probe's answer."""

    status: str


class Problem(BaseModel):
    """An error that is not a validation error (401, 413, 503)."""

    detail: str


def _struct_type(feature: schema.Feature) -> Any:
    if isinstance(feature, schema.CategoricalFeature):
        return Literal[feature.categories]
    bounds = msgspec.Meta(ge=feature.dtype(feature.minimum), le=feature.dtype(feature.maximum))
    return Annotated[feature.dtype, bounds]


@cache
def customer_struct() -> type[msgspec.Struct]:
    """The msgspec Struct of one customer, generated from FEATURES (unknown fields rejected)."""
    fields = [(f.name, _struct_type(f)) for f in schema.FEATURES]
    return msgspec.defstruct("Customer", fields, forbid_unknown_fields=True, gc=False)


def as_struct(customer: BaseModel) -> msgspec.Struct:
    """The `customer_struct` of a customer validated by the pydantic model (FastAPI's routes)."""
    return customer_struct()(**customer.model_dump())


@cache
def batch_item_struct() -> type[msgspec.Struct]:
    """The msgspec twin of `BatchItem` (same fields and types), which batch responses are encoded from."""
    fields = [(name, field.annotation) for name, field in BatchItem.model_fields.items()]
    return msgspec.defstruct("BatchItem", fields, gc=False)


@cache
def batch_struct() -> type[msgspec.Struct]:
    """The msgspec Struct of a batch request (`{"customers": [...]}`, at least one)."""
    customers = Annotated[list[customer_struct()], msgspec.Meta(min_length=1)]  # type: ignore[misc, valid-type]
    return msgspec.defstruct("BatchRequest", [("customers", customers)], forbid_unknown_fields=True)
