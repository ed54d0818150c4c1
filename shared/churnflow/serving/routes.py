"""The routes of the predict service.

`POST /predict` and `POST /predict/batch` are normally answered by the hot path (`hotpath.HotPath`)
before FastAPI sees them; these FastAPI routes define their OpenAPI contract and answer whatever the
hot path hands over (anything it does not accept as plainly valid), with the same payloads. Their
bodies are parsed strictly (`guard.GuardedRoute`). `probes` are public; `service` (/model, /stats, /metrics)
and `docs` need the bearer token when one is configured, like `predictions`.
"""

import importlib.util
import time
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse

from churnflow.serving import scoring
from churnflow.serving.contract import (
    BatchPrediction,
    BatchRequest,
    Customer,
    ModelInfo,
    Prediction,
    ProbeStatus,
    Problem,
    ServiceStats,
    as_struct,
)
from churnflow.serving.dependencies import (
    NO_CHAMPION,
    ModelDep,
    RequestIdDep,
    ServicesDep,
    batch_within_limit,
    require_json,
)
from churnflow.serving.guard import GuardedRoute

JSON = "application/json"
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
DOCS_ASSETS = "/docs/assets"
_ASSETS = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "redoc.standalone.js": "text/javascript",
    "favicon.png": "image/png",
}
UNAUTHORIZED: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "Bearer token missing or wrong (only when one is configured)."}
}

probes = APIRouter(tags=["service"])
service = APIRouter(tags=["service"], responses=UNAUTHORIZED)
docs = APIRouter(include_in_schema=False)
predictions = APIRouter(
    tags=["predict"],
    route_class=GuardedRoute,
    dependencies=[Depends(require_json)],
    responses={
        400: {"model": Problem, "description": "Body is not UTF-8 text."},
        **UNAUTHORIZED,
        413: {"model": Problem, "description": "Request body or batch too large."},
        415: {"model": Problem, "description": "Content type is not application/json."},
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


@service.get("/model", response_model=ModelInfo, responses={503: {"model": Problem}})
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


@service.get("/stats", response_model=ServiceStats)
async def stats(services: ServicesDep) -> dict[str, Any]:
    """Counters: the version serving, requests served, rows logged / uploaded / spooled, model swaps and refusals."""
    return services.stats()


@service.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses={200: {"content": {OPENMETRICS: {}}, "description": "Prometheus text, or OpenMetrics when accepted."}},
)
async def metrics(services: ServicesDep, request: Request) -> Response:
    """Prometheus metrics: requests by route, status and model version, latencies, batch sizes, request log, model."""
    body, content_type = services.metrics.exposition(request.headers.get("accept"))
    return Response(body, media_type=content_type)


@predictions.post("/predict", response_model=Prediction)
async def predict(customer: Customer, model: ModelDep, services: ServicesDep, request_id: RequestIdDep) -> Response:
    """Score one customer: probability, prediction, risk level and the top feature contributions."""
    started = time.perf_counter()
    body = services.score_one(model, as_struct(customer), request_id, started, hot=False)
    return Response(body, media_type=JSON)


@predictions.post("/predict/batch", response_model=BatchPrediction, dependencies=[Depends(batch_within_limit)])
async def predict_batch(
    batch: BatchRequest, model: ModelDep, services: ServicesDep, request_id: RequestIdDep
) -> Response:
    """Score many customers in one vectorised call (at most `max_batch`, else 413)."""
    started = time.perf_counter()
    customers = [as_struct(c) for c in batch.customers]  # type: ignore[attr-defined]
    body, latency_ms = services.score_batch(model, customers, request_id, started, hot=False)
    return Response(body, media_type=JSON, headers={"Server-Timing": scoring.server_timing(latency_ms)})


@docs.get("/openapi.json")
async def openapi(request: Request) -> JSONResponse:
    """The OpenAPI spec."""
    return JSONResponse(request.app.openapi())


@docs.get("/docs")
async def swagger(request: Request) -> HTMLResponse:
    """Swagger UI over the spec, its assets served from here (no CDN)."""
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title=f"{request.app.title} - Swagger UI",
        swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
        swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
        swagger_favicon_url=f"{DOCS_ASSETS}/favicon.png",
    )


@docs.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    """ReDoc over the spec, its assets served from here (no CDN, no web fonts)."""
    return get_redoc_html(
        openapi_url="/openapi.json",
        title=f"{request.app.title} - ReDoc",
        redoc_js_url=f"{DOCS_ASSETS}/redoc.standalone.js",
        redoc_favicon_url=f"{DOCS_ASSETS}/favicon.png",
        with_google_fonts=False,
    )


@docs.get(DOCS_ASSETS + "/{name}")
async def docs_asset(name: str) -> FileResponse:
    """One of the pages' assets, by its exact name (any other name is a 404)."""
    media_type = _ASSETS.get(name)
    if media_type is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such asset")
    return FileResponse(_asset_dir() / name, media_type=media_type, headers={"Cache-Control": "max-age=86400"})


@cache
def _asset_dir() -> Path:
    """The Swagger UI and ReDoc files bundled by the fastapi-offline wheel (found without importing it)."""
    spec = importlib.util.find_spec("fastapi_offline")
    if spec is None or spec.origin is None:
        raise RuntimeError("fastapi-offline is not installed (the serve extra)")
    return Path(spec.origin).parent / "static"
