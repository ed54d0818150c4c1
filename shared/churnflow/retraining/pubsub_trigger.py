"""From a Pub/Sub `RetrainRequested` message to exactly one retrain execution.

The decision is the same on GCP and locally; only the launcher differs (Cloud Run Admin API or a
subprocess). A malformed message (an id that is not Pub/Sub's, a body that is not a request for this
model) is acknowledged with a logged rejection, since redelivering it cannot help. A valid message
must pass the loop's rules, through the same state machine the monitor uses (`request_state.admit`):
the monitor's claimed request passes, any other must respect the pending request and the cooldown,
or is acknowledged with a logged refusal, recorded under its message id. A message id seen before
starts nothing (Pub/Sub delivers at least once); a launch failure releases the message record and
raises, so Pub/Sub redelivers.

The rules are checked here rather than in the job: the trigger is the bus's one entrance, so a
refusal costs no job execution and is acknowledged at once instead of being retried by Cloud Run.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import ValidationError

from churnflow.core.messages import MESSAGE_ID_ENV, REQUEST_ENV, RetrainRequested
from churnflow.retraining import request_state
from churnflow.retraining.launchers import JobLauncher, LaunchError
from churnflow.retraining.request_state import Timing
from churnflow.retraining.request_store import StateStore
from churnflow.settings import RetrainSettings
from churnflow.storage import gcs, layout

log = logging.getLogger(__name__)
EVENT = "retrain_message"
"""The `event` of the one log line per delivered message (`delivery`: its DeliveryStatus, or launch_failed)."""
LAUNCH_FAILED = "launch_failed"
_MESSAGE_ID = re.compile(r"\A[0-9]{1,64}\Z")  # Pub/Sub message ids are decimal numbers


class DeliveryStatus(StrEnum):
    """What became of one delivered message."""

    STARTED = "started"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"
    REFUSED = "refused"


@dataclass(frozen=True)
class DeliveryOutcome:
    """What the trigger did with one message."""

    status: DeliveryStatus
    detail: str
    message_id: str = ""
    execution: str = ""


def parse_envelope(message: Mapping[str, Any]) -> tuple[str, bytes]:
    """Message id and decoded data of a Pub/Sub message (`messageId`/`message_id`, base64 `data`)."""
    message_id = str(message.get("messageId") or message.get("message_id") or "")
    if not message_id:
        raise ValueError("message has no messageId")
    if not _MESSAGE_ID.match(message_id):
        raise ValueError(f"messageId {message_id[:80]!r} is not a Pub/Sub message id")
    try:
        return message_id, base64.b64decode(message.get("data") or "", validate=True)
    except (binascii.Error, ValueError, TypeError) as error:
        raise ValueError(f"message {message_id} data is not base64: {error}") from error


def _request(payload: bytes, settings: RetrainSettings) -> RetrainRequested:
    """The request in a message body, if it is for this model and its id is safe in an object name."""
    request = RetrainRequested.model_validate_json(payload)
    if request.model_name != settings.model_name:
        raise ValueError(f"request is for model {request.model_name[:80]!r}, not {settings.model_name!r}")
    layout.run_record(request.request_id)  # the job's record name: raises ValueError on an unsafe id
    return request


def handle(
    message: Mapping[str, Any], settings: RetrainSettings, launcher: JobLauncher, now: datetime | None = None
) -> DeliveryOutcome:
    """Start one retrain for a valid, new message the loop's rules admit; acknowledge anything else."""
    try:
        message_id, payload = parse_envelope(message)
        request = _request(payload, settings)
        record = layout.message_record(message_id)
    except (ValueError, ValidationError) as error:
        given = str(message.get("messageId") or message.get("message_id") or "")[:80]
        log.warning("rejected retrain message: %s", str(error)[:500], extra=_event(DeliveryStatus.REJECTED, given))
        return DeliveryOutcome(DeliveryStatus.REJECTED, str(error)[:500], given)
    now = now or datetime.now(UTC)
    timing = Timing.from_settings(settings)
    store = StateStore(settings.project, settings.bucket, settings.model_name)
    swap = store.update(lambda state: request_state.admit(state, request, now, timing)[1])
    admitted, _, why = request_state.admit(swap.before, request, now, timing)
    received = {
        "received_at": time.time(),
        "request": request.model_dump(mode="json"),
        "admitted": admitted,
        "reason": why,
    }
    try:
        generation = gcs.write_json(settings.project, settings.bucket, record, received, 0)
    except gcs.PreconditionFailed:
        log.info("message %s already handled", message_id, extra=_event(DeliveryStatus.DUPLICATE, message_id))
        return DeliveryOutcome(DeliveryStatus.DUPLICATE, "message already handled", message_id)
    if not admitted:
        log.warning(
            "refused retrain request %s: %s",
            request.request_id,
            why,
            extra={**_event(DeliveryStatus.REFUSED, message_id), "request_id": request.request_id},
        )
        return DeliveryOutcome(DeliveryStatus.REFUSED, why, message_id)
    try:
        execution = launcher.launch({REQUEST_ENV: request.model_dump_json(), MESSAGE_ID_ENV: message_id})
    except LaunchError as error:
        gcs.delete_object(settings.project, settings.bucket, record, generation)
        log.error("retrain not started for message %s: %s", message_id, error, extra=_event(LAUNCH_FAILED, message_id))
        raise
    log.info(
        "retrain started for message %s: %s", message_id, execution, extra=_event(DeliveryStatus.STARTED, message_id)
    )
    return DeliveryOutcome(
        DeliveryStatus.STARTED, f"champion v{request.champion_version}: {request.reason}", message_id, execution
    )


def _event(delivery: str, message_id: str) -> dict[str, str]:
    return {"event": EVENT, "delivery": str(delivery), "message_id": message_id}
