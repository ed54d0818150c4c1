"""Thin adapter over google-cloud-storage; honours STORAGE_EMULATOR_HOST for the local stack."""

from __future__ import annotations

import os
from functools import cache

from google.cloud import storage

from churnflow.layout import parse_gs_uri


@cache
def client(project: str) -> storage.Client:
    """A storage client; against the emulator it uses anonymous credentials."""
    if os.environ.get("STORAGE_EMULATOR_HOST"):
        from google.auth.credentials import AnonymousCredentials

        return storage.Client(project=project, credentials=AnonymousCredentials())
    return storage.Client(project=project)


def ensure_bucket(project: str, bucket: str) -> storage.Bucket:
    """Return `bucket`, creating it if it does not exist (idempotent)."""
    gcs = client(project)
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
