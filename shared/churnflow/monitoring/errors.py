"""The one error a check reports upwards: something it depends on failed, so it must be retried."""


class MonitorUnavailable(RuntimeError):
    """GCS, the registry or Pub/Sub failed; nothing was half done and the check may be retried.

    The message names the failing call (URLs, buckets): for the log, never for a response body.
    """
