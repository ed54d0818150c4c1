"""The FastAPI app factory of the predict service, and its ASGI entry (ids, trace context, metrics)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.types import Message, Receive, Scope, Send

from churnflow import __version__
from churnflow.logs import RequestContext, bind_request, unbind_request
from churnflow.registry.read import RegistryClient
from churnflow.serving.dependencies import require_token
from churnflow.serving.guard import validation_errors
from churnflow.serving.hotpath import HotPath
from churnflow.serving.request_logger import Uploader
from churnflow.serving.routes import docs, predictions, probes, service
from churnflow.serving.scoring import REQUEST_ID, new_request_id
from churnflow.serving.services import Services
from churnflow.settings import PredictSettings


class PredictApp(FastAPI):
    """The FastAPI app with the hot path (`HotPath`) in front of FastAPI's own request handling.

    Its entry sees every HTTP request, whichever path answers it: it gives the request an id (in
    the scope for the scoring code, echoed as `X-Request-ID`), binds the id and the trace context to
    the request's log lines, and counts and times the answer in the Prometheus metrics.
    """

    def __init__(self, services: Services, **kwargs: Any):
        super().__init__(**kwargs)
        self.state.services = services
        self.metrics = services.metrics
        self.hot_path = HotPath(super().__call__, services)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.hot_path(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = new_request_id()
        scope[REQUEST_ID] = request_id
        echoed = (b"x-request-id", request_id.encode())
        status = 0

        async def answer(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), echoed]
            await send(message)

        token = bind_request(_context(request_id, scope["headers"]))
        try:
            await self.hot_path(scope, receive, answer)
        except BaseException:
            status = status or 500
            raise
        finally:
            # 499: the client left before an answer was started (nginx's convention)
            self.metrics.observe(scope["path"], status or 499, time.perf_counter() - started)
            unbind_request(token)

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
    routers = (probes, service, docs, predictions)
    services.metrics.serve_routes({route.path for r in routers for route in r.routes if isinstance(route, APIRoute)})
    return app


def _context(request_id: str, headers: Iterable[tuple[bytes, bytes]]) -> RequestContext:
    """The request's log context: its id and its trace headers as received (parsed only if a line is logged)."""
    traceparent = cloud_trace = None
    for name, value in headers:
        if name == b"traceparent":
            traceparent = value
        elif name == b"x-cloud-trace-context":
            cloud_trace = value
    return RequestContext(request_id, traceparent, cloud_trace)
