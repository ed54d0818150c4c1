"""The HTTP contract of the predict service: pydantic models for FastAPI and their msgspec twins.

Both are generated from `schema.FEATURES`. FastAPI validates with the pydantic models (and documents
them in OpenAPI); the hot path decodes with the msgspec Structs. Both are strict and accept the same
bodies with the same values, so a request gets the same answer on either path; anything the hot path
rejects is handed to FastAPI, which answers with its 422.

Numbers are strict: a string (`"12"`) or a boolean is never a number. An integer field (`tenure`,
`SeniorCitizen`) takes what JSON Schema calls an integer, the OpenAPI spec's `type: integer`: any
number with a zero fraction, so `25.0` is 25 and `25.5` is refused (422). The hot path's msgspec
types take `25` only; `25.0` goes to FastAPI's route, which scores it the same. A float field takes
integers (`30` is `30.0`).

Bounded for hostile input: an object with more than MAX_FIELDS keys is refused before its keys are
looked at (one error naming the first unknown ones), and a batch reports only its first invalid item.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Annotated, Any, Literal

import msgspec
from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator, model_validator
from pydantic_core import PydanticCustomError

from churnflow.core import schema

RiskLevel = Literal["LOW", "MEDIUM", "HIGH"]

MAX_FIELDS = 64
"""Most keys of a request object that are validated one by one (each model has fewer fields)."""


def _few_fields(data: Any) -> Any:
    """Refuse an object with more than MAX_FIELDS keys before validating any of them."""
    if isinstance(data, dict) and len(data) > MAX_FIELDS:
        unknown = ", ".join(repr(key[:32]) for key, _ in zip(data, range(3), strict=False))
        raise PydanticCustomError(
            "too_many_fields",
            "Object has {count} fields, at most {limit} are read (first keys: {unknown})",
            {"count": len(data), "limit": MAX_FIELDS, "unknown": unknown},
        )
    return data


INTEGER_FIELDS = tuple(
    f.name
    for f in schema.FEATURES
    if isinstance(f, schema.CategoricalFeature)
    and isinstance(f.categories[0], int)
    or isinstance(f, schema.NumericFeature)
    and f.dtype is int
)


class Customer(schema.customer_model()):  # type: ignore[misc]
    """One customer's 19 features, as in the IBM Telco churn data (numbers strict: no strings or booleans)."""

    model_config = ConfigDict(strict=True)
    few_fields = model_validator(mode="before")(_few_fields)

    @field_validator(*INTEGER_FIELDS, mode="before")
    @classmethod
    def _json_schema_integer(cls, value: Any) -> Any:
        """A JSON Schema integer: `25.0` is 25; `true` is not 1 (pydantic's Literal takes it even when strict)."""
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise PydanticCustomError("int_type", "Input should be a valid integer")
        return int(value) if isinstance(value, float) else value


BatchRequest: type[BaseModel] = create_model(
    "BatchRequest",
    __config__=ConfigDict(extra="forbid", strict=True),
    __doc__="Customers to score in one call (at most the service's max_batch, else 413).",
    __validators__={"few_fields": model_validator(mode="before")(_few_fields)},  # type: ignore[dict-item]
    customers=(Annotated[list[Customer], Field(min_length=1, fail_fast=True)], ...),
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


class RequestCounts(BaseModel):
    """Successful scoring requests since start, by the path that served them, and rows scored."""

    hot: int = Field(description="Answered by the hot path (in front of FastAPI).")
    routed: int = Field(description="Answered by FastAPI's routes.")
    rows: int = Field(description="Customers scored.")


class RequestLogCounts(BaseModel):
    """The request log's rows since start (GET /metrics has them as `churnflow_request_log_*`)."""

    accepted: int = Field(description="Rows queued for the log.")
    recovered: int = Field(description="Rows recovered from a dead process's segments.")
    uploaded: int = Field(description="Rows stored in GCS.")
    spooled: int = Field(description="Rows waiting in the spool for GCS to answer.")
    spool_bytes: int
    dropped: int = Field(description="Rows dropped because the spool was full.")
    lost: int = Field(description="Rows that could not be encoded or spooled.")
    failed_uploads: int
    pending: int = Field(description="Rows accepted, not yet handed to an upload.")


class HolderCounts(BaseModel):
    """What the model holder has done since start."""

    refreshes: int = Field(description="Polls of the champion alias.")
    swaps: int = Field(description="Versions swapped in, the first load included.")
    refused: int = Field(description="New versions refused (invalid or unloadable artifact).")
    registry_errors: int
    last_error: str | None = Field(description="The latest refresh's failure; null once the registry answers again.")


class ServiceStats(BaseModel):
    """Counters of this instance since it started."""

    model_version: int | None = Field(description="The registry version serving; null before the first champion.")
    requests: RequestCounts
    request_log: RequestLogCounts | None = Field(description="Null when request logging is off.")
    model_holder: HolderCounts


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


@cache
def batch_outline_struct() -> type[msgspec.Struct]:
    """A batch request with its customers left undecoded (`msgspec.Raw`): counts them without validating any."""
    customers = list[msgspec.Raw]
    return msgspec.defstruct("BatchOutline", [("customers", customers)], forbid_unknown_fields=True)
