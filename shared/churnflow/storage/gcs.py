"""Thin adapter over google-cloud-storage; honours STORAGE_EMULATOR_HOST for the local stack."""

from __future__ import annotations

import json
import os
from functools import cache
from typing import Any

from google.api_core import exceptions
from google.cloud import storage

from churnflow.storage.layout import parse_gs_uri


def client(project: str) -> storage.Client:
    """A storage client (one per project and endpoint); against the emulator it uses anonymous credentials."""
    return _client(project, os.environ.get("STORAGE_EMULATOR_HOST"))


@cache
def _client(project: str, emulator_host: str | None) -> storage.Client:
    if emulator_host:
        from google.auth.credentials import AnonymousCredentials

        return storage.Client(project=project, credentials=AnonymousCredentials())
    return storage.Client(project=project)


def ensure_bucket(project: str, bucket: str, using: storage.Client | None = None) -> storage.Bucket:
    """Return `bucket`, creating it if it does not exist (idempotent); `using` picks a client explicitly."""
    gcs = using or client(project)
    existing = gcs.lookup_bucket(bucket)
    return existing if existing is not None else gcs.create_bucket(bucket)


def read_bytes(project: str, uri: str) -> bytes:
    """Download the object at a gs:// URI."""
    bucket, name = parse_gs_uri(uri)
    return client(project).bucket(bucket).blob(name).download_as_bytes()


def write_bytes(project: str, uri: str, data: bytes, content_type: str = "application/octet-stream") -> None:
    """Upload `data` to a gs:// URI, replacing any existing object."""
    bucket, name = parse_gs_uri(uri)
    client(project).bucket(bucket).blob(name).upload_from_string(data, content_type=content_type)


class PreconditionFailed(RuntimeError):
    """A conditional write lost: the object changed (or appeared) since it was read."""


def read_json(project: str, bucket: str, name: str) -> tuple[Any, int]:
    """A JSON object's value and generation; (None, 0) when it does not exist."""
    blob = client(project).bucket(bucket).get_blob(name)
    if blob is None:
        return None, 0
    try:
        return json.loads(blob.download_as_bytes(if_generation_match=blob.generation)), int(blob.generation)
    except exceptions.PreconditionFailed as error:
        raise PreconditionFailed(f"gs://{bucket}/{name} changed while being read") from error


def write_json(project: str, bucket: str, name: str, value: Any, generation: int) -> int:
    """Write `value` only if the object is still at `generation` (0: only if absent); returns the new generation.

    Exactly one of several concurrent writers from the same generation wins; the others get PreconditionFailed.
    """
    blob = client(project).bucket(bucket).blob(name)
    try:
        blob.upload_from_string(json.dumps(value), content_type="application/json", if_generation_match=generation)
    except exceptions.PreconditionFailed as error:
        raise PreconditionFailed(f"gs://{bucket}/{name} is no longer at generation {generation}") from error
    return int(blob.generation)


def delete_object(project: str, bucket: str, name: str, generation: int | None = None) -> None:
    """Delete an object (only at `generation` when given); a missing object is not an error."""
    try:
        client(project).bucket(bucket).blob(name).delete(if_generation_match=generation)
    except exceptions.NotFound:
        pass
    except exceptions.PreconditionFailed as error:
        raise PreconditionFailed(f"gs://{bucket}/{name} is no longer at generation {generation}") from error


def create_bytes(project: str, uri: str, data: bytes, content_type: str = "application/octet-stream") -> None:
    """Upload `data` to a gs:// URI only if no object exists there (written whole, once, or not at all)."""
    bucket, name = parse_gs_uri(uri)
    try:
        client(project).bucket(bucket).blob(name).upload_from_string(
            data, content_type=content_type, if_generation_match=0
        )
    except exceptions.PreconditionFailed as error:
        raise PreconditionFailed(f"{uri} already exists") from error


def list_names(project: str, bucket: str, prefix: str) -> list[str]:
    """Names of the objects under `prefix`, in lexical order."""
    return sorted(blob.name for blob in client(project).list_blobs(bucket, prefix=prefix))
