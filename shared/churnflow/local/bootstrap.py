"""Idempotent creation of the local stack's resources: bucket, training data, topics, subscriptions.

Every client here is pointed explicitly at an emulator address, never at the environment, so a
bootstrap can never create resources in real Google Cloud by accident.
"""

from __future__ import annotations

import logging
from pathlib import Path

import google.cloud.pubsub_v1 as pubsub_v1
import grpc
from google.api_core.exceptions import AlreadyExists
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport
from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport

from churnflow.settings import REPO_ROOT
from churnflow.storage import gcs, layout

logger = logging.getLogger(__name__)

TRAINING_DATA_FILE = REPO_ROOT / "data" / "telco_churn.csv"
_TIMEOUT_S = 10.0


def dead_letter_topic(topic: str) -> str:
    """The dead-letter topic paired with `topic`."""
    return f"{topic}-dead-letter"


def audit_subscription(topic: str) -> str:
    """The pull subscription on `topic` that lets tests and operators observe published messages."""
    return f"{topic}-audit"


def push_subscription(topic: str) -> str:
    """The push subscription that delivers `topic` to the retrain trigger."""
    return f"{topic}-trigger"


def storage_client(gcs_url: str, project: str) -> storage.Client:
    """An anonymous storage client bound to the GCS emulator at `gcs_url`."""
    return storage.Client(project=project, credentials=AnonymousCredentials(), client_options={"api_endpoint": gcs_url})


def publisher_client(pubsub_host: str) -> pubsub_v1.PublisherClient:
    """A publisher bound to the Pub/Sub emulator at `host:port` (plain-text gRPC)."""
    return pubsub_v1.PublisherClient(transport=PublisherGrpcTransport(channel=grpc.insecure_channel(pubsub_host)))


def subscriber_client(pubsub_host: str) -> pubsub_v1.SubscriberClient:
    """A subscriber bound to the Pub/Sub emulator at `host:port` (plain-text gRPC)."""
    return pubsub_v1.SubscriberClient(transport=SubscriberGrpcTransport(channel=grpc.insecure_channel(pubsub_host)))


def ensure_training_data(bucket: storage.Bucket, source: Path = TRAINING_DATA_FILE) -> storage.Blob:
    """Upload the bundled training CSV to `layout.TRAINING_DATA` unless an object is already there."""
    blob = bucket.get_blob(layout.TRAINING_DATA)
    if blob is not None:
        return blob
    logger.info("uploading %s to gs://%s/%s", source, bucket.name, layout.TRAINING_DATA)
    blob = bucket.blob(layout.TRAINING_DATA)
    blob.upload_from_filename(str(source), content_type="text/csv")
    return blob


def bootstrap_storage(gcs_url: str, project: str, bucket: str) -> None:
    """Create the bucket and seed the training data on the GCS emulator."""
    ensure_training_data(gcs.ensure_bucket(project, bucket, using=storage_client(gcs_url, project)))


def bootstrap_pubsub(pubsub_host: str, project: str, topic: str) -> None:
    """Create the retrain topic, its dead-letter topic and the audit pull subscription."""
    publisher = publisher_client(pubsub_host)
    subscriber = subscriber_client(pubsub_host)
    try:
        for name in (topic, dead_letter_topic(topic)):
            try:
                publisher.create_topic(name=publisher.topic_path(project, name), timeout=_TIMEOUT_S)
                logger.info("created topic %s", name)
            except AlreadyExists:
                pass
        try:
            subscriber.create_subscription(
                name=subscriber.subscription_path(project, audit_subscription(topic)),
                topic=publisher.topic_path(project, topic),
                timeout=_TIMEOUT_S,
            )
            logger.info("created subscription %s", audit_subscription(topic))
        except AlreadyExists:
            pass
    finally:
        publisher.transport.close()
        subscriber.close()


def ensure_push_subscription(pubsub_host: str, project: str, topic: str, endpoint: str) -> None:
    """Create (or re-point) the push subscription delivering `topic` to `endpoint`, with the dead-letter topic."""
    publisher = publisher_client(pubsub_host)
    subscriber = subscriber_client(pubsub_host)
    name = subscriber.subscription_path(project, push_subscription(topic))
    push_config = pubsub_v1.types.PushConfig(push_endpoint=endpoint)
    try:
        try:
            subscriber.create_subscription(
                request={
                    "name": name,
                    "topic": publisher.topic_path(project, topic),
                    "push_config": push_config,
                    "ack_deadline_seconds": 60,
                    "dead_letter_policy": {
                        "dead_letter_topic": publisher.topic_path(project, dead_letter_topic(topic)),
                        "max_delivery_attempts": 5,
                    },
                },
                timeout=_TIMEOUT_S,
            )
            logger.info("created push subscription %s -> %s", push_subscription(topic), endpoint)
        except AlreadyExists:
            subscriber.modify_push_config(subscription=name, push_config=push_config, timeout=_TIMEOUT_S)
    finally:
        publisher.transport.close()
        subscriber.close()
