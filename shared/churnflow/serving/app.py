"""The FastAPI app factory of the predict service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.types import Receive, Scope, Send

from churnflow import __version__
from churnflow.registry.read import RegistryClient
from churnflow.serving.dependencies import require_token
from churnflow.serving.guard import validation_errors
from churnflow.serving.hotpath import HotPath
from churnflow.serving.request_logger import Uploader
from churnflow.serving.routes import docs, predictions, probes, service
from churnflow.serving.services import Services
from churnflow.settings import PredictSettings


class PredictApp(FastAPI):
    """The FastAPI app with the hot path (`HotPath`) in front of FastAPI's own request handling."""

    def __init__(self, services: Services, **kwargs: Any):
        super().__init__(**kwargs)
        self.state.services = services
        self.hot_path = HotPath(super().__call__, services)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.hot_path(scope, receive, send)

    def openapi(self) -> dict[str, Any]:
        """The OpenAPI spec, stating the configured batch limit as `maxItems` (enforced with 413)."""
        if self.openapi_schema is None:
            spec = super().openapi()
            customers = spec["components"]["schemas"]["BatchRequest"]["properties"]["customers"]
            customers["maxItems"] = self.state.services.settings.max_batch
        return self.openapi_schema  # type: ignore[return-value]


def create_app(
    settings: PredictSettings | None = None,
    *,
    registry: RegistryClient | None = None,
    uploader: Uploader | None = None,
) -> FastAPI:
    """Build the service: routes, the hot path, and a lifespan that loads the champion and flushes logs.

    Nothing is loaded or started until the lifespan runs (uvicorn start, Mangum invocation, TestClient).
    """
    settings = settings or PredictSettings()
    services = Services.build(settings, registry=registry, uploader=uploader)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await services.start()
        try:
            yield
        finally:
            await services.stop()

    app = PredictApp(
        services,
        title="ChurnFlow predict",
        version=__version__,
        description="Churn risk of telecom customers, scored by the registry's champion model.",
        lifespan=lifespan,
        openapi_url=None,  # served by `routes.docs`, behind the token when one is set
        docs_url=None,
        redoc_url=None,
        exception_handlers={RequestValidationError: validation_errors},
    )
    app.include_router(probes)
    token = [Depends(require_token)] if services.auth_required else []
    for router in (service, docs, predictions):
        app.include_router(router, dependencies=token)
    return app
