"""Thin adapter over google-cloud-storage; honours STORAGE_EMULATOR_HOST for the local stack.

Small JSON state objects change only under generation preconditions; `compare_and_swap` is the one
read → change → conditional write loop, retried with jittered exponential backoff when another writer wins.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any, Generic, TypeVar

from google.api_core import exceptions, retry
from google.cloud import storage
from pydantic import BaseModel

from churnflow.storage.layout import gs_uri, parse_gs_uri

T = TypeVar("T")
Model = TypeVar("Model", bound=BaseModel)


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


class Contention(RuntimeError):
    """A compare-and-swap kept losing to other writers and gave up; the caller may try again later."""


def read_json(project: str, bucket: str, name: str) -> tuple[Any, int]:
    """A JSON object's value and generation; (None, 0) when it does not exist."""
    handle = client(project).bucket(bucket)
    blob = handle.get_blob(name)
    if blob is None:
        return None, 0
    # downloaded by name through the client's endpoint, not the metadata's mediaLink: an emulator reached
    # under another host name (compose's `gcs`) writes that name into the link
    try:
        data = handle.blob(name).download_as_bytes(if_generation_match=blob.generation)
        return json.loads(data), int(blob.generation)
    except exceptions.PreconditionFailed as error:
        raise PreconditionFailed(f"gs://{bucket}/{name} changed while being read") from error


def write_json(project: str, bucket: str, name: str, value: Any, generation: int) -> int:
    """Write `value` only if the object is still at `generation` (0: only if absent); returns the new generation.

    Exactly one of several concurrent writers from the same generation wins; the others get PreconditionFailed.
    Non-finite floats are refused (ValueError): the object must stay valid JSON.
    """
    return _write_if(project, bucket, name, json.dumps(value, allow_nan=False).encode(), generation)


def read_model(project: str, bucket: str, name: str, model: type[Model]) -> tuple[Model | None, int]:
    """A JSON object validated as `model`, and its generation; (None, 0) when it does not exist."""
    value, generation = read_json(project, bucket, name)
    return (model.model_validate(value) if value is not None else None), generation


def write_model(project: str, bucket: str, name: str, value: BaseModel, generation: int) -> int:
    """`write_json` for a pydantic model (non-finite floats become null)."""
    return _write_if(project, bucket, name, value.model_dump_json().encode(), generation)


def _write_if(project: str, bucket: str, name: str, data: bytes, generation: int) -> int:
    blob = client(project).bucket(bucket).blob(name)
    try:
        blob.upload_from_string(data, content_type="application/json", if_generation_match=generation)
    except exceptions.PreconditionFailed as error:
        raise PreconditionFailed(f"gs://{bucket}/{name} is no longer at generation {generation}") from error
    return int(blob.generation)


@dataclass(frozen=True)
class Backoff:
    """How a lost race is retried: at most `attempts` tries, no new one after `deadline_s`; the n-th wait is
    drawn uniformly from [0, min(initial_s * multiplier**n, maximum_s)] (full jitter, google-api-core)."""

    attempts: int = 8
    initial_s: float = 0.05
    maximum_s: float = 2.0
    multiplier: float = 2.0
    deadline_s: float = 20.0


BACKOFF = Backoff()


def retry_on_conflict(attempt: Callable[[], T], what: str, backoff: Backoff = BACKOFF) -> T:
    """Call `attempt` again while it raises PreconditionFailed, within `backoff`; then raise Contention.

    Any other error propagates at once.
    """
    lost = 0

    def again(error: Exception) -> bool:
        nonlocal lost
        lost += 1
        return isinstance(error, PreconditionFailed) and lost < backoff.attempts

    def give_up(errors: list[Exception], *_: object) -> tuple[Exception, Exception | None]:
        last, cause = errors[-1], errors[-1].__cause__
        if isinstance(last, PreconditionFailed):
            return Contention(f"{what} kept changing: {len(errors)} attempts lost to other writers"), last
        return last, cause if isinstance(cause, Exception) else None

    return retry.retry_target(
        attempt,
        again,
        retry.exponential_sleep_generator(backoff.initial_s, backoff.maximum_s, backoff.multiplier),
        timeout=backoff.deadline_s,
        exception_factory=give_up,
    )


@dataclass(frozen=True)
class Swap(Generic[Model]):
    """What a compare-and-swap saw and did: the value it read, the one it wrote (None: left it) and the
    object's generation afterwards."""

    before: Model | None
    after: Model | None
    generation: int


def compare_and_swap(
    project: str,
    bucket: str,
    name: str,
    model: type[Model],
    change: Callable[[Model | None], Model | None],
    backoff: Backoff = BACKOFF,
) -> Swap[Model]:
    """Read the object as `model`, apply `change` (pure: current value → new value, or None to leave it) and
    write the result only if the object did not change meanwhile; a lost race re-reads and applies `change`
    again (`retry_on_conflict`). Errors raised by `change` propagate unretried.
    """

    def attempt() -> Swap[Model]:
        before, generation = read_model(project, bucket, name, model)
        after = change(before)
        if after is not None:
            generation = write_model(project, bucket, name, after, generation)
        return Swap(before, after, generation)

    return retry_on_conflict(attempt, gs_uri(bucket, name), backoff)


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
    _create(project, uri, lambda blob: blob.upload_from_string(data, content_type=content_type, if_generation_match=0))


def create_file(project: str, uri: str, path: str, content_type: str = "application/octet-stream") -> None:
    """Upload the local file `path` to a gs:// URI only if no object exists there."""
    _create(
        project, uri, lambda blob: blob.upload_from_filename(path, content_type=content_type, if_generation_match=0)
    )


def _create(project: str, uri: str, upload: Callable[[storage.Blob], None]) -> None:
    bucket, name = parse_gs_uri(uri)
    try:
        upload(client(project).bucket(bucket).blob(name))
    except exceptions.PreconditionFailed as error:
        raise PreconditionFailed(f"{uri} already exists") from error


def list_names(project: str, bucket: str, prefix: str) -> list[str]:
    """Names of the objects under `prefix`, in lexical order."""
    return sorted(blob.name for blob in client(project).list_blobs(bucket, prefix=prefix))


def list_sizes(
    project: str, bucket: str, prefix: str, start: str | None = None, end: str | None = None
) -> dict[str, int]:
    """Name → size in bytes of the objects under `prefix` whose names are in [start, end) (lexically)."""
    blobs = client(project).list_blobs(bucket, prefix=prefix, start_offset=start, end_offset=end)
    return {blob.name: int(blob.size or 0) for blob in blobs}


def download_file(project: str, uri: str, path: str) -> None:
    """Download the object at a gs:// URI into the local file `path`."""
    bucket, name = parse_gs_uri(uri)
    client(project).bucket(bucket).blob(name).download_to_filename(path)
