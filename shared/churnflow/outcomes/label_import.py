"""`churnflow labels import`: validate a labels file against the logged requests, then store it whole."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import fsspec

from churnflow.outcomes.engine import filesystem, open_engine
from churnflow.outcomes.labelled import unknown_request_ids
from churnflow.settings import CommonSettings
from churnflow.storage import labels


def import_labels(settings: CommonSettings, source: str | Path, now: datetime | None = None) -> tuple[str, int]:
    """Validate a labels file (a local path or gs:// URI) and store it as one new labels object.

    The file is read as a stream; its unknown request ids are found by one anti-join in the query
    engine over the request log up to today. Raises LabelValidationError before anything is written.
    """
    now = now or datetime.now(UTC)
    engine = open_engine(settings)
    name = str(source)
    files = filesystem(settings) if name.startswith("gs://") else fsspec.filesystem("file")
    unknown = partial(unknown_request_ids, engine, until=now.date())
    with files.open(name, "rb") as stream:
        parsed = labels.validate(labels.read_rows(stream, name), unknown)
    return labels.store(settings, parsed, now), len(parsed)
