"""Pub/Sub adapter: publish a RetrainRequested and wait for the server's acknowledgement."""

from __future__ import annotations

from collections.abc import Callable

from churnflow.core.messages import RetrainRequested

Publisher = Callable[[RetrainRequested], str]


def pubsub_publisher(project: str, topic: str, timeout_s: float) -> Publisher:
    """A function that publishes one message to `topic` and returns its message id.

    Retries stop at `timeout_s`, so when it raises the message is not still on its way.
    """

    def publish(message: RetrainRequested) -> str:
        import google.cloud.pubsub_v1 as pubsub_v1
        from google.api_core.retry import Retry

        client = pubsub_v1.PublisherClient()
        try:
            future = client.publish(
                client.topic_path(project, topic),
                message.to_bytes(),
                retry=Retry(timeout=timeout_s),
                timeout=timeout_s,
                **message.attributes(),
            )
            return str(future.result(timeout=timeout_s * 2))
        finally:
            client.stop()

    return publish
