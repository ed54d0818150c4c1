"""The JSON log lines: the golden shape Cloud Logging reads, trace headers, and the servers' loggers."""

import io
import json
import logging

import pytest

from churnflow import logs
from churnflow.logs import CloudJsonFormatter, RequestContext, TraceContext, parse_cloud_trace, parse_traceparent

TRACE_ID = "105445aa7843bc8bf206b12000100000"


def record(message: str, level: int = logging.WARNING, **extra: object) -> logging.LogRecord:
    entry = logging.LogRecord("churnflow.serving.hotpath", level, "hotpath.py", 1, message, None, None)
    entry.created = 1_796_036_400.25  # 2026-11-30T11:00:00.250000+00:00
    entry.__dict__.update(extra)
    return entry


def test_golden_line_with_the_trace_fields_cloud_logging_correlates():
    context = RequestContext("9f2c", cloud_trace=f"{TRACE_ID}/1234;o=1".encode())
    token = logs.bind_request(context)
    try:
        line = CloudJsonFormatter(project="proj-x").format(record("upload failed", rows=3))
    finally:
        logs.unbind_request(token)

    assert line == (
        '{"severity":"WARNING","message":"upload failed","logger":"churnflow.serving.hotpath","rows":3,'
        '"time":"2026-11-30T11:00:00.250000+00:00","request_id":"9f2c",'
        f'"logging.googleapis.com/trace":"projects/proj-x/traces/{TRACE_ID}",'
        '"logging.googleapis.com/spanId":"00000000000004d2","logging.googleapis.com/trace_sampled":true}'
    )


def test_a_line_outside_a_request_has_no_request_fields_and_the_exception_in_the_same_line():
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        entry = record("retrain failed", logging.ERROR, error="ValueError")
        entry.exc_info = sys.exc_info()
    parsed = json.loads(CloudJsonFormatter(project="p").format(entry))

    assert parsed["severity"] == "ERROR" and parsed["error"] == "ValueError"
    assert parsed["exception"].startswith("Traceback") and parsed["exception"].endswith("ValueError: boom")
    assert not {"request_id", logs.TRACE, logs.SPAN_ID} & set(parsed)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (f"{TRACE_ID}/1;o=1", TraceContext(TRACE_ID, "0000000000000001", True)),
        (f"{TRACE_ID.upper()}/18446744073709551615;o=0", TraceContext(TRACE_ID, "ffffffffffffffff", False)),
        (TRACE_ID, TraceContext(TRACE_ID, None, False)),
        (f"{TRACE_ID}/0", TraceContext(TRACE_ID, None, False)),  # span 0 is no span
        (f"{TRACE_ID}/18446744073709551616", TraceContext(TRACE_ID, None, False)),  # beyond 64 bits
        ("0" * 32 + "/1;o=1", None),
        (f"{TRACE_ID[:-1]}/1", None),
        (f"{TRACE_ID}/1;o=1\n{{}}", None),
        ('"><script>', None),
    ],
)
def test_x_cloud_trace_context_is_parsed_or_ignored_never_reflected(header, expected):
    assert parse_cloud_trace(header) == expected


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (f"00-{TRACE_ID}-b7ad6b7169203331-01", TraceContext(TRACE_ID, "b7ad6b7169203331", True)),
        (f"00-{TRACE_ID}-b7ad6b7169203331-00", TraceContext(TRACE_ID, "b7ad6b7169203331", False)),
        (f"00-{'0' * 32}-b7ad6b7169203331-01", None),
        (f"00-{TRACE_ID}-{'0' * 16}-01", None),
        (f"00-{TRACE_ID}-b7ad6b71692033-01", None),
        ("garbage", None),
    ],
)
def test_traceparent_is_parsed_or_ignored(header, expected):
    assert parse_traceparent(header) == expected


def test_traceparent_wins_over_x_cloud_trace_context_unless_it_is_malformed():
    parent = f"00-{TRACE_ID}-b7ad6b7169203331-01".encode()
    other = b"0af7651916cd43dd8448eb211c80319c/1;o=0"
    assert RequestContext("r", parent, other).trace() == TraceContext(TRACE_ID, "b7ad6b7169203331", True)
    assert RequestContext("r", b"00-bad", other).trace() == TraceContext(
        "0af7651916cd43dd8448eb211c80319c", "0000000000000001", False
    )
    assert RequestContext("r", b"00-bad", b"\xff\xfe").trace() is None
    assert RequestContext("r").trace() is None


def test_without_a_project_the_trace_is_the_bare_id():
    token = logs.bind_request(RequestContext("r1", cloud_trace=TRACE_ID.encode()))
    try:
        parsed = json.loads(CloudJsonFormatter().format(record("x")))
    finally:
        logs.unbind_request(token)
    assert parsed[logs.TRACE] == TRACE_ID and logs.SPAN_ID not in parsed


def test_uvicorn_and_the_functions_framework_loggers_go_through_the_json_handler(monkeypatch):
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    uvicorn = logging.getLogger("uvicorn.error")
    uvicorn.addHandler(logging.StreamHandler(out))  # as uvicorn's own dictConfig leaves it
    uvicorn.propagate = False
    try:
        logs.configure_logging("INFO", project="p")
        uvicorn.error("boom")
        logging.getLogger("werkzeug").info("GET /view_report 200")
    finally:
        root.handlers[:], _ = saved[0], root.setLevel(saved[1])
    lines = out.getvalue().splitlines()

    assert [json.loads(line)["message"] for line in lines] == ["boom", "GET /view_report 200"]
    assert json.loads(lines[0])["severity"] == "ERROR" and json.loads(lines[0])["logger"] == "uvicorn.error"


def test_a_server_logger_switched_off_stays_off(monkeypatch):
    """uvicorn --no-access-log: `uvicorn.access` has no handler and does not propagate; uvicorn then writes
    no access line (it asks `hasHandlers()`), which must stay so after configure_logging."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    access = logging.getLogger("uvicorn.access")
    monkeypatch.setattr(access, "handlers", [])
    monkeypatch.setattr(access, "propagate", False)
    try:
        logs.configure_logging("INFO")
        assert not access.hasHandlers()
    finally:
        root.handlers[:], _ = saved[0], root.setLevel(saved[1])
