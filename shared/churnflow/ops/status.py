"""`churnflow status`: what an operator checks first, gathered from the registry, the bucket and predict.

Each source is read on its own with a bounded cost (one alias lookup per alias, two small JSON objects,
one listing of the last hour's request-log partitions, one `/stats` call) and a bounded wait; its
failure is recorded in `problems` instead of raised, so the rest still shows when one service is down.
"""

from __future__ import annotations

import contextlib
import json
import threading
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from pydantic import BaseModel, ConfigDict

from churnflow.monitoring.reports import IndexEntry, ReportStore
from churnflow.registry import tags as tag_names
from churnflow.registry.read import AliasNotFound, ModelVersion, RegistryClient
from churnflow.retraining.request_state import RetrainState, RetrainStatus
from churnflow.retraining.request_store import StateStore
from churnflow.settings import RetrainSettings
from churnflow.storage import layout
from churnflow.storage.request_log import Window
from churnflow.storage.request_log_reader import RequestLogReader

REQUEST_LOG_LOOKBACK = timedelta(hours=1)
SOURCE_TIMEOUT_S = 20.0
T = TypeVar("T")
OPEN_RETRAIN = (RetrainStatus.CLAIMED, RetrainStatus.PENDING, RetrainStatus.RUNNING)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class VersionStatus(_Frozen):
    """A version an alias points at, with its held-out metrics and, for a retrained one, the gate's verdict."""

    alias: str
    version: int
    run_id: str
    created_at: datetime
    metrics: dict[str, float]
    gate_decision: str | None = None
    gate_reason: str | None = None


class RequestLogHealth(_Frozen):
    """The request log's last hour in GCS and, when predict answers, its logger's counters since start."""

    lookback_s: float
    batches: int
    bytes: int
    newest_batch_at: datetime | None
    predict_url: str | None = None
    predict_logger: dict[str, int] | None = None


class Status(_Frozen):
    """Everything `churnflow status` shows (its --json output)."""

    model_name: str
    checked_at: datetime
    champion: VersionStatus | None
    challenger: VersionStatus | None
    last_check: IndexEntry | None
    retrain: RetrainState | None
    retrain_pending: bool
    request_log: RequestLogHealth | None
    problems: tuple[str, ...]
    unreadable: tuple[str, ...]  # of "registry", "bucket", "predict": what `problems` is about


def version_status(alias: str, version: ModelVersion) -> VersionStatus:
    """The status of one aliased version, from its registry tags."""
    metrics = {
        key.removeprefix(tag_names.METRIC_PREFIX): float(value)
        for key, value in version.tags.items()
        if key.startswith(tag_names.METRIC_PREFIX)
    }
    return VersionStatus(
        alias=alias,
        version=version.version,
        run_id=version.run_id,
        created_at=datetime.fromtimestamp(version.created_at_ms / 1000, UTC),
        metrics=metrics,
        gate_decision=version.tags.get(tag_names.GATE_DECISION),
        gate_reason=version.tags.get(tag_names.GATE_REASON),
    )


def _predict_logger(url: str, timeout_s: float) -> dict[str, int]:
    with urllib.request.urlopen(f"{url.rstrip('/')}/stats", timeout=timeout_s) as response:
        stats = json.loads(response.read())
    return {
        key: int(value) for key, value in (stats.get("request_log") or {}).items() if isinstance(value, int | float)
    }


def _problem(what: str, error: Exception) -> str:
    return f"{what}: {type(error).__name__}: {error}"[:300]


def _bucket_part(
    settings: RetrainSettings, now: datetime
) -> tuple[IndexEntry | None, RetrainState | None, RequestLogHealth]:
    last_check = ReportStore(settings.project, settings.bucket).read_latest()
    retrain, _ = StateStore(settings.project, settings.bucket, settings.model_name).read()
    listing = RequestLogReader(settings.project, settings.bucket).list_objects(
        Window(now - REQUEST_LOG_LOOKBACK, now + timedelta(seconds=1))
    )
    newest = listing.objects[-1].name if listing.objects else None
    health = RequestLogHealth(
        lookback_s=REQUEST_LOG_LOOKBACK.total_seconds(),
        batches=len(listing.objects),
        bytes=sum(item.size for item in listing.objects),
        newest_batch_at=layout.request_log_time(newest) if newest else None,
    )
    return last_check, retrain, health


def within(seconds: float, call: Callable[[], T]) -> T:
    """`call()` in a daemon thread, so a GCS client retrying an unreachable endpoint cannot hold the command."""
    outcome: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            outcome.append(call())
        except BaseException as error:  # noqa: BLE001 - handed to the caller
            failure.append(error)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    if failure:
        raise failure[0]
    if not outcome:
        raise TimeoutError(f"no answer within {seconds:g}s")
    return outcome[0]


def gather(settings: RetrainSettings, predict_url: str | None = None, now: datetime | None = None) -> Status:
    """Read every source once; a source that fails is named in `problems` and its part left empty."""
    now = now or datetime.now(UTC)
    problems: list[str] = []
    unreadable: list[str] = []
    registry = RegistryClient(settings.mlflow_tracking_uri, settings.registry_timeout_s)
    aliased: dict[str, VersionStatus | None] = dict.fromkeys((settings.champion_alias, settings.challenger_alias))
    try:
        for alias in aliased:
            with contextlib.suppress(AliasNotFound):  # no such alias (yet): shown as none
                aliased[alias] = version_status(alias, registry.version_by_alias(settings.model_name, alias))
    except Exception as error:  # noqa: BLE001 - a source that fails is reported; the others are still shown
        problems.append(_problem(f"registry ({settings.mlflow_tracking_uri})", error))
        unreadable.append("registry")
    last_check = retrain = request_log = None
    try:
        last_check, retrain, request_log = within(SOURCE_TIMEOUT_S, lambda: _bucket_part(settings, now))
    except Exception as error:  # noqa: BLE001
        problems.append(_problem(f"bucket gs://{settings.bucket}", error))
        unreadable.append("bucket")
    if predict_url and request_log is not None:
        try:
            counters = _predict_logger(predict_url, settings.registry_timeout_s)
            request_log = request_log.model_copy(update={"predict_url": predict_url, "predict_logger": counters})
        except Exception as error:  # noqa: BLE001
            problems.append(_problem(f"predict ({predict_url})", error))
            unreadable.append("predict")
    return Status(
        model_name=settings.model_name,
        checked_at=now,
        champion=aliased[settings.champion_alias],
        challenger=aliased[settings.challenger_alias],
        last_check=last_check,
        retrain=retrain,
        retrain_pending=retrain is not None and retrain.status in OPEN_RETRAIN,
        request_log=request_log,
        problems=tuple(problems),
        unreadable=tuple(unreadable),
    )
