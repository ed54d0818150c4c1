"""The routes of the predict service.

`POST /predict` and `POST /predict/batch` are normally answered by the hot path (`hotpath.HotPath`)
before FastAPI sees them; these FastAPI routes define their OpenAPI contract and answer whatever the
hot path hands over (anything it does not accept as plainly valid), with the same payloads.
"""

import time
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Response, status
from fastapi.responses import JSONResponse

from churnflow.serving import scoring
from churnflow.serving.contract import (
    BatchPrediction,
    BatchRequest,
    Customer,
    ModelInfo,
    Prediction,
    ProbeStatus,
    Problem,
    as_struct,
)
from churnflow.serving.dependencies import NO_CHAMPION, ModelDep, ServicesDep

JSON = "application/json"

probes = APIRouter(tags=["service"])
predictions = APIRouter(
    tags=["predict"],
    responses={
        400: {"model": Problem, "description": "Body is not text (e.g. invalid UTF-8)."},
        401: {"model": Problem, "description": "Bearer token missing or wrong (only when one is configured)."},
        413: {"model": Problem, "description": "Request body or batch too large."},
        503: {"model": Problem, "description": "No champion model loaded yet."},
    },
)


@probes.get("/health", response_model=ProbeStatus)
async def health() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@probes.get("/ready", response_model=ProbeStatus, responses={503: {"model": Problem}})
async def ready(services: ServicesDep) -> Any:
    """Readiness: 200 once a champion model is loaded, 503 before."""
    if services.holder.current is None:
        return JSONResponse({"detail": NO_CHAMPION}, status.HTTP_503_SERVICE_UNAVAILABLE)
    return {"status": "ready"}


@probes.get("/model", response_model=ModelInfo, responses={503: {"model": Problem}})
async def model_info(model: ModelDep) -> dict[str, Any]:
    """The version serving now: alias, metrics, training time, data fingerprint."""
    version = model.version
    return {
        "name": version.name,
        "alias": model.alias,
        "version": version.version,
        "run_id": version.run_id,
        "metrics": model.metrics(),
        "trained_at": datetime.fromtimestamp(version.created_at_ms / 1000, UTC) if version.created_at_ms else None,
        "data_fingerprint": model.data_fingerprint,
        "loaded_at": datetime.fromtimestamp(model.loaded_at, UTC),
    }


@probes.get("/stats")
async def stats(services: ServicesDep) -> dict[str, Any]:
    """Counters: requests served, rows logged / uploaded / spooled, model swaps and refusals."""
    return services.stats()


@predictions.post("/predict", response_model=Prediction)
async def predict(customer: Customer, model: ModelDep, services: ServicesDep) -> Response:  # type: ignore[valid-type]
    """Score one customer: probability, prediction, risk level and the top feature contributions."""
    started = time.perf_counter()
    body = services.score_one(model, as_struct(customer), started, hot=False)
    return Response(body, media_type=JSON)


@predictions.post("/predict/batch", response_model=BatchPrediction)
async def predict_batch(batch: BatchRequest, model: ModelDep, services: ServicesDep) -> Response:
    """Score many customers in one vectorised call (at most `max_batch`, else 413)."""
    started = time.perf_counter()
    customers = batch.customers  # type: ignore[attr-defined]
    if len(customers) > services.settings.max_batch:
        detail = scoring.batch_too_large(len(customers), services.settings)
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, detail)
    body, latency_ms = services.score_batch(model, [as_struct(c) for c in customers], started, hot=False)
    return Response(body, media_type=JSON, headers={"Server-Timing": scoring.server_timing(latency_ms)})
