"""The hot path: the ASGI layer in front of FastAPI that answers plainly valid `POST /predict(/batch)`.

FastAPI's per-request machinery (its telemetry check, Starlette's middleware stack, routing,
dependencies) costs several times the work of a prediction. The app's entry point
(`app.PredictApp.__call__`) hands every request to `HotPath` first, which serves the common case
without any of it: read the body (413 over the limit) → msgspec-decode into the schema-generated
Struct → compiled score → orjson → queue the request-log record. Anything else (another route, a
wrong or missing content type, a bad token, no model yet, any decoding or validation failure) goes
to FastAPI, with the body replayed, so errors keep FastAPI's exact contract (e.g. the 422 body) and
the OpenAPI spec describes both paths. A decoding failure costs no more than a valid body: msgspec
stops at the first error and never recurses deeper than the schema (unknown fields are errors).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from churnflow.serving import scoring
from churnflow.serving.contract import MAX_FIELDS, batch_outline_struct, batch_struct, customer_struct
from churnflow.serving.holder import LoadedModel
from churnflow.serving.services import Services

log = logging.getLogger(__name__)

JSON = b"application/json"
TOO_LARGE = orjson.dumps({"detail": "Content Too Large"})

Handler = Callable[[Scope, Receive, Send], Awaitable[bytes | None]]
UNDECODABLE = (msgspec.MsgspecError, ValueError, RecursionError)
"""What decoding a hostile body raises besides msgspec's errors: invalid UTF-8, nesting beyond recursion."""


class HotPath:
    """Serves valid prediction requests directly; hands every other request to `app` (FastAPI's own entry)."""

    def __init__(self, app: ASGIApp, services: Services):
        self.app = app
        self.services = services
        self.max_body = services.settings.max_body_bytes
        self.max_batch = services.settings.max_batch
        # a `:` follows each key and nothing else in a valid body (no category holds one); a body with more
        # than a full batch of objects at the contract's field limit would be refused anyway, after parsing
        self.max_keys = MAX_FIELDS * (self.max_batch + 1)
        self.too_many_keys = orjson.dumps({"detail": f"a body holds at most {self.max_keys} keys"})
        self.one: msgspec.json.Decoder[Any] = msgspec.json.Decoder(customer_struct())
        self.many: msgspec.json.Decoder[Any] = msgspec.json.Decoder(batch_struct())
        self.outline: msgspec.json.Decoder[Any] = msgspec.json.Decoder(batch_outline_struct())
        self.routes: dict[str, Handler] = {"/predict": self.predict, "/predict/batch": self.predict_batch}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            route = self.routes.get(scope["path"])
            if route is not None:
                try:
                    body = await route(scope, receive, send)
                except Exception:  # as FastAPI's ServerErrorMiddleware: log it, answer a bare 500
                    log.exception("unhandled error on the hot path", extra={"path": scope["path"]})
                    await _send(send, 500, b"Internal Server Error", b"text/plain; charset=utf-8")
                    return
                if body is None:
                    return
                if body.count(b":") > self.max_keys:  # 100k keys take FastAPI's parser ~50 ms
                    await _send(send, 413, self.too_many_keys)
                    return
                await self._forward(scope, receive, send, body)  # outside the try: FastAPI re-raises its errors
                return
        await self.app(scope, receive, send)

    async def predict(self, scope: Scope, receive: Receive, send: Send) -> bytes | None:
        """`POST /predict` for one customer; returns the body if FastAPI is to answer."""
        model, body, started = await self._accept(scope, receive, send)
        if model is None or body is None:
            return body
        try:
            customer = self.one.decode(body)
        except UNDECODABLE:
            return body
        request_id = scope[scoring.REQUEST_ID]
        await _send(send, 200, self.services.score_one(model, customer, request_id, started, hot=True))
        return None

    async def predict_batch(self, scope: Scope, receive: Receive, send: Send) -> bytes | None:
        """`POST /predict/batch`: up to `max_batch` customers scored in one vectorised call.

        The customers are counted before any is validated: a body with no more `{` than a full batch
        has cannot hold too many (cheap), otherwise they are counted undecoded (`msgspec.Raw`).
        """
        model, body, started = await self._accept(scope, receive, send)
        if model is None or body is None:
            return body
        if body.count(b"{") > self.max_batch + 1:
            try:
                rows = len(self.outline.decode(body).customers)
            except UNDECODABLE:
                return body
            if rows > self.max_batch:
                detail = scoring.batch_too_large(rows, self.services.settings)
                await _send(send, 413, orjson.dumps({"detail": detail}))
                return None
        try:
            customers = self.many.decode(body).customers
        except UNDECODABLE:
            return body
        body, latency_ms = self.services.score_batch(model, customers, scope[scoring.REQUEST_ID], started, hot=True)
        await _send(send, 200, body, headers=[(b"server-timing", scoring.server_timing(latency_ms).encode())])
        return None

    async def _accept(
        self, scope: Scope, receive: Receive, send: Send
    ) -> tuple[LoadedModel | None, bytes | None, float]:
        """The model if the hot path may serve the request, its body, and when the body had arrived.

        No body: the request was answered here (413) or the client left. No model: FastAPI answers.
        Latencies count from the end of the body: waiting for the client's bytes is not server time.
        """
        content_type = authorization = None
        length = 0
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value
            elif name == b"authorization":
                authorization = value
            elif name == b"content-length" and value.isdigit():
                length = int(value)
        if length > self.max_body:
            await _send(send, 413, TOO_LARGE)
            return None, None, 0.0
        body = await self._read(receive, send)
        started = time.perf_counter()
        model = self.services.holder.current
        if model is not None and not self._eligible(content_type, authorization):
            model = None
        return model, body, started

    def _eligible(self, content_type: bytes | None, authorization: bytes | None) -> bool:
        """JSON content type and, when one is configured, the right bearer token."""
        if content_type is None or content_type.lower() != JSON:
            return False
        if not self.services.auth_required:
            return True
        scheme, _, token = (authorization or b"").partition(b" ")
        return scheme.lower() == b"bearer" and self.services.token_ok(token.decode("latin-1"))

    async def _read(self, receive: Receive, send: Send) -> bytes | None:
        """The whole request body; None after answering 413 or when the client disconnected."""
        message = await receive()
        body: bytes = message.get("body", b"")
        if message["type"] != "http.request":
            return None
        if len(body) > self.max_body:
            await _send(send, 413, TOO_LARGE)
            return None
        if not message.get("more_body", False):
            return body
        chunks = [body]
        size = len(body)
        while message.get("more_body", False):
            message = await receive()
            if message["type"] != "http.request":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                await _send(send, 413, TOO_LARGE)
                return None
            chunks.append(chunk)
        return b"".join(chunks)

    async def _forward(self, scope: Scope, receive: Receive, send: Send, body: bytes) -> None:
        """Hand the request to FastAPI, replaying the body already read."""
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


async def _send(
    send: Send, status: int, body: bytes, content_type: bytes = JSON, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    start = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": start + (headers or [])})
    await send({"type": "http.response.body", "body": body})
