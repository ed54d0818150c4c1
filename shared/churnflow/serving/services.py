"""What one predict-service instance runs: settings, model holder, request logger, counters and metrics.

`create_app` builds one `Services` per app (no module-level state); the lifespan starts and stops it;
routes reach it through dependencies and the hot path through its constructor.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import msgspec
import orjson

from churnflow.registry.read import RegistryClient
from churnflow.serving import scoring
from churnflow.serving.holder import LoadedModel, ModelHolder
from churnflow.serving.metrics import PredictMetrics
from churnflow.serving.request_logger import RequestLogger, Uploader
from churnflow.serving.scoring import RiskPolicy
from churnflow.settings import PredictSettings
from churnflow.storage import request_log
from churnflow.storage.upload import MediaUploader


@dataclass
class RequestStats:
    """Successful scoring requests by path, and rows scored (each counted once its response is sent)."""

    hot: int = 0
    routed: int = 0
    rows: int = 0


class Services:
    """The running parts of one service instance."""

    def __init__(self, settings: PredictSettings, holder: ModelHolder, logger: RequestLogger | None):
        self.settings = settings
        self.policy = RiskPolicy.from_settings(settings)
        self.holder = holder
        self.logger = logger
        self.requests = RequestStats()
        self.metrics = PredictMetrics(holder, logger)
        self._token = settings.api_token.get_secret_value() if settings.api_token else None

    @classmethod
    def build(
        cls, settings: PredictSettings, registry: RegistryClient | None = None, uploader: Uploader | None = None
    ) -> Services:
        """Wire the parts from settings; `registry` and `uploader` can be replaced (tests, other stores)."""
        registry = registry or RegistryClient(settings.mlflow_tracking_uri, settings.registry_timeout_s)
        holder = ModelHolder(registry, settings.model_name, settings.champion_alias, settings.poll_interval_s)
        logger = None
        if settings.log_requests:
            uploader = uploader or MediaUploader(
                settings.bucket, request_log.CONTENT_TYPE, settings.log_upload_timeout_s
            )
            logger = RequestLogger(
                uploader,
                settings.spool_dir,
                settings.log_flush_rows,
                settings.log_flush_age_s,
                upload_timeout_s=settings.log_upload_timeout_s,
                shutdown_s=settings.log_shutdown_s,
                spool_max_bytes=settings.spool_max_bytes,
                write_ahead=settings.log_write_ahead,
            )
        return cls(settings, holder, logger)

    async def start(self) -> None:
        """Load the champion and start polling (in a thread: blocking registry I/O), start the request log."""
        await asyncio.to_thread(self.holder.start)
        if self.logger is not None:
            self.logger.start()

    async def stop(self) -> None:
        """Stop polling and flush the request log."""
        await asyncio.to_thread(self.holder.stop)
        if self.logger is not None:
            await self.logger.stop()

    @property
    def auth_required(self) -> bool:
        """Whether /predict* need a bearer token."""
        return self._token is not None

    def token_ok(self, token: str | None) -> bool:
        """Whether a presented bearer token grants access (always, when no token is configured)."""
        if self._token is None:
            return True
        return token is not None and hmac.compare_digest(token.encode(), self._token.encode())

    def score_one(
        self, model: LoadedModel, customer: msgspec.Struct, request_id: str, started: float, hot: bool
    ) -> bytes:
        """Score one validated customer (a `contract.customer_struct`), count it and queue its log record.

        Returns the JSON response body. `started` is when the request's body had arrived
        (perf_counter), so the logged latency is server time.
        """
        ts = time.time()
        payload = scoring.predict_one(model, msgspec.structs.asdict(customer), request_id, self.policy)
        body = orjson.dumps(payload)
        latency = time.perf_counter() - started
        latency_ms = latency * 1000.0
        self._count(1, hot)
        self.metrics.scored_one(latency)
        if self.logger is not None:
            probability, prediction = payload["churn_probability"], payload["churn_prediction"]
            self.logger.log_one(request_id, ts, model.number, customer, probability, prediction, latency_ms)
        return body

    def score_batch(
        self, model: LoadedModel, customers: Sequence[msgspec.Struct], request_id: str, started: float, hot: bool
    ) -> tuple[bytes, float]:
        """Score validated customers in one vectorised call, count them and queue their log records.

        Returns the JSON response body and the server time in ms (from `started`, as for `score_one`).
        """
        ts = time.time()
        payload, probabilities, predicted = scoring.predict_batch(model, customers, request_id, self.policy)
        body = msgspec.json.encode(payload)
        latency = time.perf_counter() - started
        latency_ms = latency * 1000.0
        self._count(len(customers), hot)
        self.metrics.scored_batch(latency)
        self.metrics.batch_size(len(customers))
        if self.logger is not None:
            self.logger.log_batch(request_id, ts, model.number, customers, probabilities, predicted, latency_ms)
        return body, latency_ms

    def _count(self, rows: int, hot: bool) -> None:
        if hot:
            self.requests.hot += 1
        else:
            self.requests.routed += 1
        self.requests.rows += rows

    def stats(self) -> dict[str, Any]:
        """Counters of requests, the request log and the model holder."""
        current = self.holder.current
        log = {**asdict(self.logger.stats), "pending": self.logger.pending} if self.logger else None
        return {
            "model_version": current.number if current else None,
            "requests": asdict(self.requests),
            "request_log": log,
            "model_holder": asdict(self.holder.stats),
        }
