"""The trigger's event line for a message it rejects before touching any store (the rest: integration tests)."""

import base64
import logging

import pytest

from churnflow.retraining import pubsub_trigger
from churnflow.retraining.pubsub_trigger import DeliveryStatus
from churnflow.settings import RetrainSettings


@pytest.mark.parametrize(
    "message",
    [
        {"messageId": "not-a-number", "data": base64.b64encode(b"{}").decode()},
        {"messageId": "17", "data": base64.b64encode(b'{"model_name": "churn"}').decode()},
        {"messageId": "18", "data": "%%%"},
    ],
)
def test_a_malformed_message_is_acknowledged_with_one_rejected_event_line(message, caplog):
    caplog.set_level(logging.INFO, logger="churnflow.retraining.pubsub_trigger")
    outcome = pubsub_trigger.handle(message, RetrainSettings(), launcher=None)

    assert outcome.status is DeliveryStatus.REJECTED
    [record] = caplog.records
    assert (record.levelname, record.event, record.delivery) == ("WARNING", "retrain_message", "rejected")
    assert record.message_id == message["messageId"]
