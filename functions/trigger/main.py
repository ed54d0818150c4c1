"""Pub/Sub-triggered Cloud Function: turns a `RetrainRequested` message into one retrain job execution."""

from functools import cache

import functions_framework
from cloudevents.http import CloudEvent

from churnflow.logs import configure_logging
from churnflow.retraining import launchers, pubsub_trigger
from churnflow.settings import RetrainSettings


@cache
def _dependencies() -> tuple[RetrainSettings, launchers.JobLauncher]:
    settings = RetrainSettings()
    configure_logging(project=settings.project)
    return settings, launchers.from_settings(settings)


@functions_framework.cloud_event
def on_retrain_request(cloud_event: CloudEvent) -> None:
    """Start a retrain for a new, valid message; acknowledge malformed or repeated ones.

    A launch failure raises, so the push is answered 5xx and Pub/Sub redelivers the message.
    """
    settings, launcher = _dependencies()
    data = cloud_event.data if isinstance(cloud_event.data, dict) else {}
    pubsub_trigger.handle(data.get("message") or {}, settings, launcher)
