"""From a Pub/Sub `RetrainRequested` message to exactly one retrain execution.

The decision is the same on GCP and locally; only the launcher differs (Cloud Run Admin API or a
subprocess). A malformed message is acknowledged with a logged rejection, since redelivering it
cannot help; a message id seen before starts nothing (Pub/Sub delivers at least once); a launch
failure releases the message record and raises, so Pub/Sub redelivers.
"""

from __future__ import annotations

import base64
import binascii
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import ValidationError

from churnflow.core.messages import MESSAGE_ID_ENV, REQUEST_ENV, RetrainRequested
from churnflow.retraining.launchers import JobLauncher, LaunchError
from churnflow.settings import CommonSettings
from churnflow.storage import gcs, layout

log = logging.getLogger(__name__)


class DeliveryStatus(StrEnum):
    """What became of one delivered message."""

    STARTED = "started"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"


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
    try:
        return message_id, base64.b64decode(message.get("data") or "", validate=True)
    except (binascii.Error, ValueError, TypeError) as error:
        raise ValueError(f"message {message_id} data is not base64: {error}") from error


def handle(message: Mapping[str, Any], settings: CommonSettings, launcher: JobLauncher) -> DeliveryOutcome:
    """Start one retrain for a valid, new message; acknowledge (reject) anything else."""
    try:
        message_id, payload = parse_envelope(message)
        request = RetrainRequested.model_validate_json(payload)
        record = layout.message_record(message_id)
    except (ValueError, ValidationError) as error:
        log.warning("rejected retrain message: %s", str(error)[:500], extra={"message_id": message.get("messageId")})
        return DeliveryOutcome(DeliveryStatus.REJECTED, str(error)[:500], str(message.get("messageId") or ""))
    try:
        generation = gcs.write_json(
            settings.project,
            settings.bucket,
            record,
            {"received_at": time.time(), "request": request.model_dump(mode="json")},
            0,
        )
    except gcs.PreconditionFailed:
        log.info("message %s already handled", message_id)
        return DeliveryOutcome(DeliveryStatus.DUPLICATE, "message already handled", message_id)
    try:
        execution = launcher.launch({REQUEST_ENV: request.model_dump_json(), MESSAGE_ID_ENV: message_id})
    except LaunchError:
        gcs.delete_object(settings.project, settings.bucket, record, generation)
        raise
    log.info("retrain started for message %s: %s", message_id, execution)
    return DeliveryOutcome(
        DeliveryStatus.STARTED, f"champion v{request.champion_version}: {request.reason}", message_id, execution
    )
