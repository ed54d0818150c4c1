"""Whole-object uploads over the GCS JSON API with the standard library's HTTP client.

The predict service uploads a request-log object every few seconds from the core that serves
requests. Through google-cloud-storage an upload costs ~1.6 ms of CPU (requests and google-auth
sessions, retries, checksums) and its imports ~0.2 s; the same single-request multipart upload on a
kept-alive `http.client` connection costs a fraction of that. Honours STORAGE_EMULATOR_HOST
like `churnflow.storage.gcs`; elsewhere it authenticates with Application Default Credentials.
"""

from __future__ import annotations

import http.client
import json
import os
import urllib.parse
from typing import Any

ENDPOINT = "https://storage.googleapis.com"
SCOPE = "https://www.googleapis.com/auth/devstorage.read_write"


class UploadFailed(RuntimeError):
    """GCS answered an upload with an error status."""


class ObjectExists(UploadFailed):
    """The object is already stored (412 on a create-only upload): an earlier attempt landed."""


class MediaUploader:
    """Creates whole objects in one bucket, one at a time, on one kept-alive connection (not thread-safe).

    Uploads are create-only (`ifGenerationMatch=0`): an existing object is never replaced, which is
    what a writer with `roles/storage.objectCreator` may do, and a retried upload whose first attempt
    did land raises ObjectExists instead of failing forever.
    """

    def __init__(
        self,
        bucket: str,
        content_type: str,
        timeout_s: float,
        endpoint: str | None = None,
        credentials: Any = None,
    ):
        emulator = os.environ.get("STORAGE_EMULATOR_HOST")
        endpoint = endpoint or emulator or ENDPOINT
        url = urllib.parse.urlsplit(endpoint if "://" in endpoint else f"http://{endpoint}")
        self.content_type = content_type
        self.timeout_s = timeout_s
        self._timeout_s = timeout_s
        self._secure = url.scheme == "https"
        self._host = url.netloc
        self._path = f"{url.path.rstrip('/')}/upload/storage/v1/b/{urllib.parse.quote(bucket, safe='')}/o"
        self._anonymous = credentials is None and endpoint == emulator  # the emulator takes no credentials
        self._credentials = credentials
        self._connection: http.client.HTTPConnection | None = None

    def __call__(self, name: str, data: bytes, timeout_s: float | None = None) -> None:
        """Create object `name` holding `data` (socket timeout `timeout_s`, else the default); raises
        ObjectExists, UploadFailed or OSError."""
        self._set_timeout(self.timeout_s if timeout_s is None else timeout_s)
        target = f"{self._path}?uploadType=multipart&ifGenerationMatch=0"
        boundary = os.urandom(16).hex()  # random: cannot occur in the data by accident
        metadata = json.dumps({"name": name, "contentType": self.content_type})
        body = b"".join(
            (
                f"--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{metadata}\r\n".encode(),
                f"--{boundary}\r\nContent-Type: {self.content_type}\r\n\r\n".encode(),
                data,
                f"\r\n--{boundary}--\r\n".encode(),
            )
        )
        headers = {"Content-Type": f'multipart/related; boundary="{boundary}"', **self._authorization()}
        reused = self._connection is not None
        try:
            status, reply = self._post(target, body, headers)
        except ConnectionError:  # includes http.client.RemoteDisconnected
            if not reused:
                raise
            # The server closed the idle kept-alive connection: one retry on a new one.
            status, reply = self._post(target, body, headers)
        if status == 412:
            raise ObjectExists(f"{name} exists already")
        if status != 200:
            raise UploadFailed(f"upload of {name} answered {status}: {reply[:300].decode(errors='replace')}")

    def close(self) -> None:
        """Drop the connection (the next upload opens a new one)."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _set_timeout(self, timeout_s: float) -> None:
        if self._connection is not None:
            self._connection.timeout = timeout_s
            if self._connection.sock is not None:
                self._connection.sock.settimeout(timeout_s)
        self._timeout_s = timeout_s

    def _post(self, target: str, data: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        if self._connection is None:
            connection_class = http.client.HTTPSConnection if self._secure else http.client.HTTPConnection
            self._connection = connection_class(self._host, timeout=self._timeout_s)
        try:
            self._connection.request("POST", target, body=data, headers=headers)
            response = self._connection.getresponse()
            reply = response.read()
        except (OSError, http.client.HTTPException):
            self.close()
            raise
        if response.will_close:
            self.close()
        return response.status, reply

    def _authorization(self) -> dict[str, str]:
        """The bearer header from Application Default Credentials, refreshed when expired (none for the emulator)."""
        if self._anonymous:
            return {}
        if self._credentials is None:
            import google.auth

            self._credentials, _ = google.auth.default(scopes=[SCOPE])
        if not self._credentials.valid:
            from google.auth.transport.requests import Request

            self._credentials.refresh(Request())
        return {"Authorization": f"Bearer {self._credentials.token}"}
