"""Hostile-input benchmark of the predict service: what each hostile request costs, and /health under a flood.

Usage: `make bench-hostile` or `python bench/hostile.py [--flood 10 --senders 4 ...]`.

The service (`functions/predict`) runs as in `bench/predict.py` (one uvicorn worker pinned to one core,
the champion of the local stack); this client is pinned to the other core. Each hostile request is
sent `--repeats` times on both paths (the hot path's `application/json`, and a content type that only
FastAPI takes) and reported with its status, the server time (the client's round trip on loopback,
the smallest of the repeats: an upper bound of it) and the response size. Then /health is timed
alone (baseline) and while `--senders` connections send the hostile set in a loop (flood), in the same
run. The last line printed is one JSON object with every figure.
"""

import argparse
import http.client
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from predict import UVICORN_FLAGS, Variant, prepare_stack, spawn, stop, wait_ready

PATHS = {"hot": "application/json", "routed": "application/json; charset=utf-8"}


def hostile_set(example: dict[str, Any]) -> list[tuple[str, str, bytes, str | None]]:
    """(name, path, body, content type or None for both paths) of every hostile request."""
    good = json.dumps(example)

    def charges(raw: str) -> bytes:
        return good.replace('"MonthlyCharges": 29.85', f'"MonthlyCharges": {raw}').encode()

    deep = "[" * 100_000 + "]" * 100_000
    return [
        ("batch_20k_empty_objects_60kb", "/predict/batch", json.dumps({"customers": [{}] * 20_000}).encode(), None),
        ("body_100k_keys_1_9mb", "/predict", json.dumps({f"{i:012d}": 0 for i in range(100_000)}).encode(), None),
        ("batch_1000_invalid_items", "/predict/batch",
         json.dumps({"customers": [{**example, "tenure": -1}] * 1000}).encode(), None),
        ("nan", "/predict", charges("NaN"), None),
        ("infinity", "/predict", charges("Infinity"), None),
        ("minus_infinity", "/predict", charges("-Infinity"), None),
        ("1e309", "/predict", charges("1e309"), None),
        ("integer_400_digits", "/predict", charges("9" * 400), None),
        ("invalid_utf8", "/predict", good.encode().replace(b'"Female"', b'"Fem\xffale"'), None),
        ("deep_nesting_100k", "/predict", good.replace('"tenure": 1', f'"tenure": {deep}').encode(), None),
        ("deep_nesting_in_batch", "/predict/batch",
         json.dumps({"customers": [example]}).replace('"tenure": 1', f'"tenure": {deep}').encode(), None),
        ("huge_string_1_9mb", "/predict", json.dumps({**example, "gender": "x" * 1_900_000}).encode(), None),
        ("string_numbers", "/predict", json.dumps({**example, "tenure": "12", "MonthlyCharges": True}).encode(), None),
        ("body_over_limit_2_5mb", "/predict", json.dumps({**example, "gender": "x" * 2_500_000}).encode(), None),
        ("content_type_text", "/predict", good.encode(), "text/plain"),
        ("content_type_missing", "/predict", good.encode(), ""),
        ("content_type_form", "/predict", good.encode(), "application/x-www-form-urlencoded"),
    ]  # fmt: skip


def request(
    port: int, method: str, path: str, body: bytes | None, content_type: str, connection: Any = None
) -> tuple[int, int, float]:
    """Status, response size and round trip (ms) of one request (on a new connection unless one is given).

    Hostile requests get a connection each: a 413 is answered before its body is read, which may end it.
    """
    own = connection is None
    connection = connection or http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"content-type": content_type} if content_type else {}
    began = time.perf_counter()
    try:
        connection.request(method, path, body, headers)
        response = connection.getresponse()
        size = len(response.read())
    finally:
        if own:
            connection.close()
    return response.status, size, (time.perf_counter() - began) * 1000


def measure_set(port: int, cases: list[tuple[str, str, bytes, str | None]], repeats: int) -> list[dict[str, Any]]:
    rows = []
    for name, path, body, content_type in cases:
        for label, declared in PATHS.items() if content_type is None else [("-", content_type)]:
            runs = [request(port, "POST", path, body, declared) for _ in range(repeats)]
            status, size, _ = runs[-1]
            row = {"case": name, "path": label, "status": status, "request_bytes": len(body),
                   "response_bytes": size, "ms": round(min(r[2] for r in runs), 2)}  # fmt: skip
            rows.append(row)
            print(f"{name:<30} {label:<7} {status:>4} {len(body):>9} B -> {size:>6} B {row['ms']:>9.2f} ms",
                  file=sys.stderr)  # fmt: skip
    return rows


def health_latency(port: int, seconds: float) -> list[float]:
    """Round trips (ms) of back-to-back GET /health on one connection for `seconds`."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    times = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        status, _, ms = request(port, "GET", "/health", None, "", connection)
        assert status == 200
        times.append(ms)
        time.sleep(0.005)
    connection.close()
    return times


def flood(
    port: int, cases: list[tuple[str, str, bytes, str | None]], stop_flag: threading.Event, sent: list[int]
) -> None:
    """Send the hostile set in a loop until `stop_flag`."""
    while not stop_flag.is_set():
        for _, path, body, content_type in cases:
            request(port, "POST", path, body, PATHS["hot"] if content_type is None else content_type)
            sent.append(1)
            if stop_flag.is_set():
                break


def summary(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    return {"n": len(ordered), "p50_ms": round(statistics.median(ordered), 2),
            "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 2),
            "max_ms": round(ordered[-1], 2)}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="sends of each hostile request per path")
    parser.add_argument("--baseline", type=float, default=5.0, help="seconds of /health alone")
    parser.add_argument("--flood", type=float, default=10.0, help="seconds of /health under the flood")
    parser.add_argument("--senders", type=int, default=4, help="connections sending the hostile set")
    parser.add_argument("--server-core", type=int, default=0)
    parser.add_argument("--load-core", type=int, default=1)
    parser.add_argument("--use-env", action="store_true", help="use the stack in the environment, start none")
    args = parser.parse_args(argv)

    from churnflow.core import schema
    from churnflow.local import stack
    from churnflow.settings import LocalStackSettings

    example = dict(schema.EXAMPLE_CUSTOMER)
    cases = hostile_set(example)
    started_stack = prepare_stack(args.use_env)
    work = Path(tempfile.mkdtemp(prefix="bench-hostile-"))
    argv_service = [sys.executable, "-m", "uvicorn", "main:app", "--app-dir", "functions/predict", "--port", "{port}"]
    service = Variant("service", [*argv_service, *UVICORN_FLAGS], "/predict", json.dumps(example).encode(),
                      {"CHURNFLOW_SPOOL_DIR": str(work / "spool")})  # fmt: skip
    os.sched_setaffinity(0, {args.load_core})
    process = spawn(service, args.server_core, work)
    try:
        wait_ready(service, process)
        rows = measure_set(service.port, cases, args.repeats)
        print(f"/health alone for {args.baseline:g} s ...", file=sys.stderr)
        baseline = health_latency(service.port, args.baseline)
        print(f"/health under a flood of {args.senders} hostile senders for {args.flood:g} s ...", file=sys.stderr)
        stop_flag, sent = threading.Event(), []
        senders = [
            threading.Thread(target=flood, args=(service.port, cases, stop_flag, sent)) for _ in range(args.senders)
        ]
        for sender in senders:
            sender.start()
        flooded = health_latency(service.port, args.flood)
        stop_flag.set()
        for sender in senders:
            sender.join()
        alive = request(service.port, "POST", "/predict", service.body, PATHS["hot"])[0]
    finally:
        stop(process)
        if started_stack:
            stack.down(LocalStackSettings())

    slowest = max(rows, key=lambda row: row["ms"])
    largest = max(rows, key=lambda row: row["response_bytes"])
    report = {
        "largest_server_ms": slowest["ms"], "largest_server_ms_case": f"{slowest['case']} ({slowest['path']})",
        "largest_response_bytes": largest["response_bytes"],
        "largest_response_case": f"{largest['case']} ({largest['path']})",
        "statuses_5xx": sum(row["status"] >= 500 for row in rows),
        "health_baseline": summary(baseline), "health_under_flood": summary(flooded),
        "flood_hostile_requests": len(sent), "flood_hostile_rps": round(len(sent) / args.flood, 1),
        "predict_after_flood": alive,
        "cases": {f"{row['case']}:{row['path']}": [row["status"], row["ms"], row["response_bytes"]] for row in rows},
        "setup": {"repeats": args.repeats, "senders": args.senders, "flood_s": args.flood, "cores": os.cpu_count()},
    }  # fmt: skip
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
