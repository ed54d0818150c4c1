"""Hostile input on the FastAPI routes: strict JSON parsing and bounded 422 bodies.

FastAPI parses a body with `json.loads`, which accepts `NaN` and `Infinity` (and then fails to
render its own 422: a 500), reads `1e309` as infinity and recurses into any nesting; its 422 lists
every error with its whole input. The predict routes are `GuardedRoute`s instead:

- the body is RFC 8259 JSON (msgspec); a number JSON does not have (`NaN`, `Infinity`, `1e309`,
  integers of hundreds of digits) becomes a `NonFinite` that fails validation where it stands, so
  the 422 names its field; invalid UTF-8 gets a 400 naming the byte;
- nesting deeper than Python's recursion allows gets one 422 naming the field it starts in;
- `validation_errors` answers at most MAX_ERRORS errors, echoing at most ECHO_CHARS of each input.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Coroutine
from functools import cache
from typing import Any

import msgspec
from fastapi import HTTPException, Request, Response, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

from churnflow.core import schema

MAX_ERRORS = 20
ECHO_CHARS = 500
"""Characters of input echoed per error (strings, keys; 8 per other value)."""
LOCATE_DEPTH = 8
"""Nesting under which the field of a too deeply nested value is looked for."""
MAX_INT_DIGITS = 300
"""Longer integers exceed every float (the largest has 309 digits) and are refused like 1e309."""

_decoder = msgspec.json.Decoder()


class NonFinite(str):
    """The text of a number JSON does not have; no field accepts it (numbers are strict)."""

    __slots__ = ()


def _float(text: str) -> float | NonFinite:
    value = float(text)
    return value if math.isfinite(value) else NonFinite(text)


def _int(text: str) -> int | NonFinite:
    return int(text) if len(text) <= MAX_INT_DIGITS else NonFinite(text)


def loads(body: bytes) -> Any:
    """The JSON value of a request body; raises HTTPException (400, 422) or json.JSONDecodeError (FastAPI's 422)."""
    try:
        return _decoder.decode(body)  # strict RFC 8259 and fast; anything odd is re-read below for its error
    except RecursionError:
        raise _too_deep(body) from None
    except (msgspec.MsgspecError, ValueError):
        pass
    try:
        text = body.decode()
    except UnicodeDecodeError as error:
        byte = error.object[error.start]
        detail = f"the body is not valid UTF-8: byte 0x{byte:02x} at position {error.start}"
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail) from None
    try:
        return json.loads(text, parse_constant=NonFinite, parse_float=_float, parse_int=_int)
    except RecursionError:
        raise _too_deep(body) from None


def _json_value(depth: int) -> Any:
    """Any JSON value nested at most `depth` containers deep."""
    value: Any = str | int | float | bool | None
    for _ in range(depth):
        value = str | int | float | bool | None | list[value] | dict[str, value]
    return value


@cache
def _locator() -> msgspec.json.Decoder[Any]:
    """A decoder of either request body with every field's value any JSON: its errors name fields.

    Built on first use (~0.3 s: deep union types), not at import: it only serves too-deep bodies.
    """
    fields = [(name, _json_value(LOCATE_DEPTH), None) for name in schema.FEATURE_NAMES]
    customer = msgspec.defstruct("Customer", fields, forbid_unknown_fields=True)
    body = msgspec.defstruct("Body", [*fields, ("customers", list[customer], None)], forbid_unknown_fields=True)  # type: ignore[valid-type]
    return msgspec.json.Decoder(body)


_PATH_PART = re.compile(r"\.(\w+)|\[(\d+)\]")


def _too_deep(body: bytes) -> HTTPException:
    """422 naming the field where the body nests too deeply (found by a decoder that stops at a bounded depth)."""
    loc: list[str | int] = ["body"]
    try:
        _locator().decode(body)
    except msgspec.ValidationError as error:
        message, _, path = str(error).rpartition(" - at `")
        for key, index in _PATH_PART.findall(path.partition("[...]")[0]):
            loc.append(key or int(index))
        if unknown := re.search(r"unknown field `(.*)`", message):
            loc.append(unknown.group(1)[:64])
    except (msgspec.MsgspecError, ValueError, RecursionError):
        pass
    problem = {"type": "json_too_deep", "loc": loc, "msg": "JSON nested too deeply", "input": None}
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, [problem])


class StrictJSONRequest(Request):
    """A request whose JSON body is read by `loads`."""

    async def json(self) -> Any:
        """The body's JSON value (parsed once)."""
        if not hasattr(self, "_json"):
            self._json = loads(await self.body())
        return self._json


class GuardedRoute(APIRoute):
    """An APIRoute that parses JSON bodies with `loads` (route_class of the predict router)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            return await handle(StrictJSONRequest(request.scope, request.receive))

        return guarded


async def validation_errors(request: Request, exc: Exception) -> Response:
    """FastAPI's 422 with at most MAX_ERRORS errors and their inputs clipped; `NonFinite` inputs named."""
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    detail = [_error(error) for error in errors[:MAX_ERRORS]]
    if len(errors) > MAX_ERRORS:
        more = f"{len(errors)} errors in all, the first {MAX_ERRORS} shown"
        detail.append({"type": "too_many_errors", "loc": ["body"], "msg": more, "input": None})
    # ASCII-escaped: a lone surrogate from a `\ud800` escape in the input must not fail the response
    body = json.dumps({"detail": jsonable_encoder(detail)}, separators=(",", ":")).encode()
    return Response(body, status.HTTP_422_UNPROCESSABLE_CONTENT, media_type="application/json")


def _error(error: dict[str, Any]) -> dict[str, Any]:
    value = error.get("input")
    if isinstance(value, NonFinite):
        msg = "Input should be a finite number (JSON has no NaN or Infinity; this one overflows a float)"
        return {"type": "finite_number", "loc": error["loc"], "msg": msg, "input": str(value)[:64]}
    if "input" not in error:
        return error
    return {**error, "input": _clip(value, [ECHO_CHARS])}


def _clip(value: Any, budget: list[int]) -> Any:
    """`value` while `budget` (characters, spent in place) lasts; the rest cut and marked '…'."""
    if isinstance(value, str):
        budget[0] -= len(value)
        return value if budget[0] >= 0 else value[: max(0, len(value) + budget[0])] + "…"
    if isinstance(value, dict):
        clipped = {}
        for key, item in value.items():
            if budget[0] <= 0:
                clipped["…"] = "…"
                break
            clipped[_clip(key, budget)] = _clip(item, budget)
        return clipped
    if isinstance(value, list | tuple):
        items = []
        for item in value:
            if budget[0] <= 0:
                items.append("…")
                break
            items.append(_clip(item, budget))
        return items
    budget[0] -= 8
    return value
