"""Messages on the Pub/Sub topics, and the retrain job's environment contract: shared by the publisher,
the Pub/Sub trigger and the job, so none of them imports another."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# The retrain job reads its request from these variables (Cloud Run `containerOverrides.env`).
REQUEST_ENV = "CHURNFLOW_RETRAIN_REQUEST"
MESSAGE_ID_ENV = "CHURNFLOW_MESSAGE_ID"


def _new_id() -> str:
    return uuid.uuid4().hex


def _now() -> datetime:
    return datetime.now(UTC)


class RetrainRequested(BaseModel):
    """The monitor saw drift on the champion's traffic and asks for a retrain (topic `retrain-requests`)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    kind: Literal["retrain-requested"] = "retrain-requested"
    request_id: str = Field(
        default_factory=_new_id, description="Unique per request; the retrain job's idempotency key."
    )
    created_at: datetime = Field(default_factory=_now)
    model_name: str
    champion_version: int = Field(ge=1, description="The champion whose traffic drifted.")
    reason: str = Field(description="Which policy rules fired, with their numbers.")
    rules: tuple[str, ...]
    drift_share: float = Field(ge=0, le=1, description="Share of feature columns Evidently flags.")
    drifted_columns: tuple[str, ...]
    window_start: datetime
    window_end: datetime
    window_rows: int = Field(ge=0)
    check_id: str
    report_uri: str

    def to_bytes(self) -> bytes:
        """The Pub/Sub message body (JSON)."""
        return self.model_dump_json().encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> RetrainRequested:
        """Parse a Pub/Sub message body; raises pydantic.ValidationError on a bad one."""
        return cls.model_validate_json(data)

    def attributes(self) -> dict[str, str]:
        """Pub/Sub attributes, for filtering subscriptions without parsing the body."""
        return {
            "kind": self.kind,
            "model_name": self.model_name,
            "champion_version": str(self.champion_version),
            "request_id": self.request_id,
        }
