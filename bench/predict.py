"""Benchmark of the predict service against `mlflow models serve`, a FastAPI no-op and a bare ASGI no-op.

Usage: `make bench-predict` or `python bench/predict.py [--duration 10 --reps 3 ...]`.

All servers serve the same registered model (`churn@champion` on the local stack, trained here if
missing) and run as one uvicorn worker pinned with `taskset` to one core; `wrk` runs pinned to the
other core and sends single-row POSTs at fixed concurrency for a fixed duration. The variants are
measured round-robin (a, b, c, d, a, ...) so drift on a shared machine hits them alike:

  (a) service        this service (`functions/predict`), request logging on (to the GCS emulator)
  (a') service_nolog the same with CHURNFLOW_LOG_REQUESTS=false (for the logging ratio)
  (a'') service_nowal the same with CHURNFLOW_LOG_WRITE_AHEAD=false (rows wait in memory: the cost of the WAL)
  (b) mlflow         `mlflow models serve -m models:/churn@champion --env-manager local`
  (c) fastapi_noop   a FastAPI endpoint that validates the same pydantic body and returns a constant
  (d) asgi_noop      a bare ASGI app that reads the body and returns a constant with orjson

Also: cold start (process spawn → first successful prediction) of (a), (a') and (b); timing of a
1000-row `/predict/batch`; and the request-log count under load. The last line printed is one JSON
object with every figure. This module doubles as the uvicorn factory of (c) and (d).
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
UVICORN_FLAGS = ["--host", "127.0.0.1", "--workers", "1", "--http", "httptools", "--loop", "uvloop", "--no-access-log"]


# --- reference apps (uvicorn --factory predict:fastapi_noop | predict:asgi_noop) --------------------


def fastapi_noop() -> Any:
    """(c) FastAPI's ceiling: validate the 19-field pydantic body, return a constant."""
    from fastapi import FastAPI

    from churnflow.serving.contract import Customer

    app = FastAPI()

    @app.post("/predict")
    async def predict(customer: Customer) -> dict[str, bool]:  # type: ignore[valid-type]
        return {"ok": True}

    return app


def asgi_noop() -> Any:
    """(d) The Python HTTP ceiling: read the body, answer a constant serialised by orjson."""
    import orjson

    async def app(scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] == "lifespan":
            for phase in ("startup", "shutdown"):
                await receive()
                await send({"type": f"lifespan.{phase}.complete"})
            return
        more = True
        while more:
            more = (await receive()).get("more_body", False)
        body = orjson.dumps({"ok": True})
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


# --- processes -------------------------------------------------------------------------------------


@dataclass
class Variant:
    """One server under test: how to start it and what to post to it."""

    name: str
    argv: list[str]
    path: str
    body: bytes
    env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def post(url: str, body: bytes, timeout: float = 30.0) -> tuple[int, bytes, dict[str, str]]:
    request = urllib.request.Request(url, body, {"content-type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, error.read(), dict(error.headers)


def spawn(variant: Variant, core: int, log_dir: Path) -> subprocess.Popen[bytes]:
    """Start a variant pinned to `core` in its own process group, on a fresh port."""
    variant.port = free_port()
    argv = [part.replace("{port}", str(variant.port)) for part in variant.argv]
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"  # mlflow execs `uvicorn`
    with (log_dir / f"{variant.name}.log").open("ab") as log:
        return subprocess.Popen(
            ["taskset", "-c", str(core), *argv],
            env={**os.environ, "PATH": path, **variant.env},
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_ready(variant: Variant, process: subprocess.Popen[bytes], timeout_s: float = 180.0) -> float:
    """Seconds until the first 200 to a prediction request (polling every 5 ms)."""
    began = time.perf_counter()
    while time.perf_counter() - began < timeout_s:
        if process.poll() is not None:
            raise RuntimeError(f"{variant.name} exited with {process.returncode}; see its log")
        try:
            if post(variant.url, variant.body, timeout=10)[0] == 200:
                return time.perf_counter() - began
        except OSError:
            pass
        time.sleep(0.005)
    raise RuntimeError(f"{variant.name} not ready within {timeout_s}s")


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group (mlflow leaves a child otherwise), SIGKILL after 15 s."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass


def cold_start(variant: Variant, core: int, log_dir: Path) -> float:
    """Process spawn → first successful prediction, in seconds."""
    began = time.perf_counter()
    process = spawn(variant, core, log_dir)
    try:
        wait_ready(variant, process)
        return time.perf_counter() - began
    finally:
        stop(process)


# --- wrk -------------------------------------------------------------------------------------------

LUA = """wrk.method = "POST"
wrk.body = {body}
wrk.headers["Content-Type"] = "application/json"
"""
UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk(variant: Variant, core: int, seconds: float, connections: int, script: Path) -> dict[str, float]:
    """One wrk run; req/s, p50/p99 latency (ms) and errors (non-2xx + socket errors)."""
    command = ["taskset", "-c", str(core), "wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s"]
    output = subprocess.run(
        [*command, "--latency", "-s", str(script), variant.url], capture_output=True, text=True, check=True
    ).stdout

    def latency(percentile: str) -> float:
        found = re.search(rf"^\s+{percentile}%\s+([\d.]+)(us|ms|s)\s*$", output, re.M)
        return float(found.group(1)) * UNITS[found.group(2)] if found else float("nan")

    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = sum(map(int, socket_errors.groups())) if socket_errors else 0
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    return {
        "rps": float(rps.group(1)) if rps else 0.0,
        "p50_ms": latency("50"),
        "p99_ms": latency("99"),
        "errors": errors + (int(non_2xx.group(1)) if non_2xx else 0),
    }


# --- the benchmark ---------------------------------------------------------------------------------


def prepare_stack(use_env: bool) -> bool:
    """Point this process at a local stack with a champion; True if this call started the stack."""
    from churnflow.local import stack
    from churnflow.registry.read import AliasNotFound, RegistryClient
    from churnflow.settings import CommonSettings, LocalStackSettings, TrainSettings

    started = False
    if not use_env:
        info = stack.up(LocalStackSettings(), CommonSettings())
        os.environ.update(info.env())
        started = bool(info.started)
    common = CommonSettings()
    try:
        RegistryClient(common.mlflow_tracking_uri).version_by_alias(common.model_name, common.champion_alias)
    except AliasNotFound:
        from churnflow.training.register import run_training

        print(f"no {common.model_name}@{common.champion_alias} yet: training one", file=sys.stderr)
        run_training(TrainSettings())
    return started


def variants(example: dict[str, Any], spool_dir: Path) -> list[Variant]:
    python = sys.executable
    one = json.dumps(example).encode()
    service = [python, "-m", "uvicorn", "main:app", "--app-dir", "functions/predict", "--port", "{port}"]
    service_env = {"CHURNFLOW_SPOOL_DIR": str(spool_dir)}
    bench = [python, "-m", "uvicorn", "--factory", "--app-dir", "bench", "--port", "{port}"]
    mlflow = [python, "-m", "mlflow", "models", "serve", "-m", "models:/churn@champion", "--env-manager", "local"]
    nolog_env = {**service_env, "CHURNFLOW_LOG_REQUESTS": "false"}
    nowal_env = {"CHURNFLOW_SPOOL_DIR": f"{spool_dir}-nowal", "CHURNFLOW_LOG_WRITE_AHEAD": "false"}
    return [
        Variant("service", [*service, *UVICORN_FLAGS], "/predict", one, service_env),
        Variant("service_nolog", [*service, *UVICORN_FLAGS], "/predict", one, nolog_env),
        Variant("service_nowal", [*service, *UVICORN_FLAGS], "/predict", one, nowal_env),
        Variant("mlflow", [*mlflow, "-h", "127.0.0.1", "-p", "{port}", "-w", "1"], "/invocations",
                json.dumps({"dataframe_records": [example]}).encode(), {"MLFLOW_DISABLE_TELEMETRY": "true"}),
        Variant("fastapi_noop", [*bench, "predict:fastapi_noop", *UVICORN_FLAGS], "/predict", one),
        Variant("asgi_noop", [*bench, "predict:asgi_noop", *UVICORN_FLAGS], "/predict", one),
    ]  # fmt: skip


def batch_timing(url: str, rows: list[dict[str, Any]], repeats: int) -> dict[str, float]:
    """Client round trip and server handling time (Server-Timing) of a 1000-row batch, medians in ms."""
    body = json.dumps({"customers": rows}).encode()
    client, server = [], []
    for i in range(repeats + 5):
        began = time.perf_counter()
        status, _, headers = post(url, body)
        elapsed = (time.perf_counter() - began) * 1000
        if status != 200:
            raise RuntimeError(f"batch request failed with {status}")
        if i >= 5:
            client.append(elapsed)
            server.append(float(headers["server-timing"].split("dur=")[1]))
    return {"client_ms": statistics.median(client), "server_ms": statistics.median(server)}


def scoring_timing(rows: list[dict[str, Any]], repeats: int) -> float:
    """Median ms of the vectorised scorer alone on the batch (the champion's artifact)."""
    from churnflow.core.schema import FEATURE_NAMES
    from churnflow.core.scorer import CompiledScorer
    from churnflow.registry.read import RegistryClient
    from churnflow.settings import CommonSettings

    common = CommonSettings()
    registry = RegistryClient(common.mlflow_tracking_uri)
    scorer = CompiledScorer(
        registry.scorer_artifact(registry.version_by_alias(common.model_name, common.champion_alias))
    )
    columns = {name: [row[name] for row in rows] for name in FEATURE_NAMES}
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        scorer.batch_probabilities(columns)
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measured wrk run")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of wrk warm-up per server")
    parser.add_argument("--reps", type=int, default=3, help="measured runs per server (round-robin)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--cold-starts", type=int, default=3, help="cold starts of the service (MLflow: 2)")
    parser.add_argument("--server-core", type=int, default=0)
    parser.add_argument("--load-core", type=int, default=1)
    parser.add_argument("--use-env", action="store_true", help="use the stack in the environment, start none")
    args = parser.parse_args(argv)
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            parser.error(f"`{tool}` is missing (`make bench-predict` installs wrk: apt-get install -y wrk)")

    from churnflow.core import schema
    from churnflow.local import stack
    from churnflow.settings import LocalStackSettings
    from churnflow.training import data, pipeline

    started_stack = prepare_stack(args.use_env)
    work = Path(tempfile.mkdtemp(prefix="bench-predict-"))
    every = variants(dict(schema.EXAMPLE_CUSTOMER), work / "spool")
    by_name = {v.name: v for v in every}
    report: dict[str, Any] = {}
    try:
        print("cold starts ...", file=sys.stderr)
        cold = {
            name: [cold_start(by_name[name], args.server_core, work) for _ in range(count)]
            for name, count in (("service", args.cold_starts), ("service_nolog", args.cold_starts), ("mlflow", 2))
        }
        for variant in every:
            variant.process = spawn(variant, args.server_core, work)
        for variant in every:
            wait_ready(variant, variant.process)
        scripts = {}
        for variant in every:
            scripts[variant.name] = work / f"{variant.name}.lua"
            scripts[variant.name].write_text(LUA.format(body=json.dumps(variant.body.decode())))
            print(f"warm-up {variant.name} ...", file=sys.stderr)
            wrk(variant, args.load_core, args.warmup, args.connections, scripts[variant.name])
        runs: dict[str, list[dict[str, float]]] = {v.name: [] for v in every}
        for rep in range(args.reps):
            for variant in every:
                result = wrk(variant, args.load_core, args.duration, args.connections, scripts[variant.name])
                runs[variant.name].append(result)
                print(f"rep {rep + 1} {variant.name:<14} {result}", file=sys.stderr)

        service = by_name["service"]
        rows = pipeline.features(data.load_dataset()).head(1000).to_dict("records")
        batch = batch_timing(service.url + "/batch", rows, repeats=30)
        batch["score_ms"] = scoring_timing(rows, repeats=50)
        _, mlflow_reply, _ = post(by_name["mlflow"].url, by_name["mlflow"].body)
        _, service_reply, _ = post(service.url, service.body)
        log = settle_request_log(service)
    finally:
        for variant in every:
            if variant.process is not None:
                stop(variant.process)
        if started_stack:
            stack.down(LocalStackSettings())

    def median(name: str, key: str) -> float:
        return statistics.median(run[key] for run in runs[name])

    rps = {name: median(name, "rps") for name in runs}
    print("\nserver          req/s      p50 ms   p99 ms   errors", file=sys.stderr)
    for name in runs:
        errors = sum(run["errors"] for run in runs[name])
        print(
            f"{name:<14} {rps[name]:>8.0f} {median(name, 'p50_ms'):>10.2f} {median(name, 'p99_ms'):>8.2f} {errors:>8}",
            file=sys.stderr,
        )
    report = {
        "rps_service": round(rps["service"], 1),
        "rps_service_nolog": round(rps["service_nolog"], 1),
        "rps_service_nowal": round(rps["service_nowal"], 1),
        "rps_mlflow": round(rps["mlflow"], 1),
        "rps_fastapi_noop": round(rps["fastapi_noop"], 1),
        "rps_asgi_noop": round(rps["asgi_noop"], 1),
        "ratio_vs_mlflow": round(rps["service"] / rps["mlflow"], 1),
        "ratio_vs_fastapi_noop": round(rps["service"] / rps["fastapi_noop"], 2),
        "ratio_vs_asgi_noop": round(rps["service"] / rps["asgi_noop"], 2),
        "p50_ms": round(median("service", "p50_ms"), 2),
        "p99_ms": round(median("service", "p99_ms"), 2),
        "p99_ms_by_server": {name: round(median(name, "p99_ms"), 2) for name in runs},
        "cold_start_s": round(statistics.median(cold["service"]), 3),
        "cold_start_nolog_s": round(statistics.median(cold["service_nolog"]), 3),
        "cold_start_mlflow_s": round(statistics.median(cold["mlflow"]), 3),
        "cold_start_ratio": round(statistics.median(cold["mlflow"]) / statistics.median(cold["service"]), 1),
        "logging_ratio": round(rps["service"] / rps["service_nolog"], 3),
        "logging_ratio_nowal": round(rps["service_nowal"] / rps["service_nolog"], 3),
        "logging_ratio_by_round": [
            round(a["rps"] / b["rps"], 3) for a, b in zip(runs["service"], runs["service_nolog"], strict=True)
        ],
        "wal_ratio": round(rps["service"] / rps["service_nowal"], 3),
        "errors": int(sum(run["errors"] for run in runs["service"])),
        "errors_by_server": {name: int(sum(run["errors"] for run in runs[name])) for name in runs},
        "batch_1000_client_ms": round(batch["client_ms"], 2),
        "batch_1000_server_ms": round(batch["server_ms"], 2),
        "batch_1000_score_ms": round(batch["score_ms"], 3),
        "same_probability_as_mlflow": abs(
            json.loads(service_reply)["churn_probability"] - json.loads(mlflow_reply)["predictions"][0][1]
        ) < 1e-9,
        **log,
        "setup": {"duration_s": args.duration, "reps": args.reps, "connections": args.connections,
                  "warmup_s": args.warmup, "cores": os.cpu_count()},
    }  # fmt: skip
    print(json.dumps(report))
    return 0


def settle_request_log(service: Variant) -> dict[str, int]:
    """Rows the service scored vs rows its request log stored, once the last batch is flushed."""
    stats_url = f"http://127.0.0.1:{service.port}/stats"
    deadline = time.monotonic() + 30
    while True:
        with urllib.request.urlopen(stats_url, timeout=10) as response:
            stats = json.loads(response.read())
        log = stats["request_log"]
        if log["pending"] == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    return {
        "log_rows_scored": stats["requests"]["rows"],
        "log_rows_stored": log["uploaded"] + log["spooled"],
        "log_rows_spooled": log["spooled"],
    }


if __name__ == "__main__":
    sys.exit(main())
