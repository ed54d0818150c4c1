"""What the predict service's metrics, request ids and trace context cost: before/after in one run.

Usage: `make bench-observability` or `python bench/observability.py [--baseline-ref REF --duration 10 --reps 5]`.

Two builds of `functions/predict` serve the same champion with request logging on, each one uvicorn
worker pinned to the same core, `wrk` pinned to the other, single-row POSTs, measured round-robin:

  before         the code at `--baseline-ref` (default: the merge base with `main`), checked out
                 into a temporary git worktree: no metrics, no request id header, no trace context
  after          this tree: every request counted and timed, X-Request-ID echoed
  after_traced   this tree, every request carrying a `traceparent` header, as Cloud Run sends one
                 (the trace context is parsed and bound to the request's log lines)

Also the time of one scrape of `/metrics` after the load, and the same A/B without sockets or
wrk: each build's ASGI app driven in-process (`--asgi-requests` single-row POSTs per round, the
fastest of `--asgi-rounds` rounds, each build in its own process pinned to the server core, the
builds alternating), timed in CPU time of the serving thread (`time.thread_time`): the CPU cost per
request in microseconds, which other processes on a busy, shared machine disturb far less than
req/s (time the thread waits for the core is not counted). The last line printed is one JSON object.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from predict import LUA, REPO, UVICORN_FLAGS, Variant, prepare_stack, spawn, stop, wait_ready, wrk

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def baseline_tree(ref: str, work: Path) -> Path:
    """A detached git worktree of `ref` under `work` (removed by `remove_tree`)."""
    tree = work / "baseline"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), ref], check=True)
    return tree


def remove_tree(tree: Path) -> None:
    subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], check=False)


ASGI_DRIVER = """
import asyncio, json, sys, time
from churnflow.core import schema
from churnflow.serving import create_app

requests, rounds, traced = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"
body = json.dumps(dict(schema.EXAMPLE_CUSTOMER)).encode()
headers = [(b"host", b"bench"), (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
if traced:
    headers.append((b"traceparent", b"TRACEPARENT_VALUE"))
scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
         "path": "/predict", "raw_path": b"/predict", "query_string": b"", "root_path": "", "headers": headers,
         "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8080)}
message = {"type": "http.request", "body": body, "more_body": False}
statuses = []

async def receive():
    return message

async def send(sent):
    if sent["type"] == "http.response.start":
        statuses.append(sent["status"])

async def main():
    app = create_app()
    async with app.router.lifespan_context(app):
        best = float("inf")
        for _ in range(rounds):
            began = time.thread_time()
            for _ in range(requests):
                await app(dict(scope), receive, send)
            best = min(best, (time.thread_time() - began) / requests)
    assert set(statuses) == {200}, set(statuses)
    print(best * 1e6)

asyncio.run(main())
"""


def asgi_cost_us(root: Path, core: int, requests: int, rounds: int, traced: bool, spool: Path) -> float:
    """Microseconds per single-row POST /predict of the build under `root`, driven in-process (best round)."""
    env = {**os.environ, "PYTHONPATH": str(root / "shared"), "CHURNFLOW_SPOOL_DIR": str(spool)}
    command = ["taskset", "-c", str(core), sys.executable, "-c", ASGI_DRIVER.replace("TRACEPARENT_VALUE", TRACEPARENT)]
    result = subprocess.run(
        [*command, str(requests), str(rounds), "1" if traced else "0"], env=env, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise RuntimeError(f"ASGI driver failed under {root}:\n{result.stderr[-3000:]}")
    return float(result.stdout.strip().splitlines()[-1])


def scrape_ms(port: int, repeats: int = 20) -> float:
    """Median time of one GET /metrics, in ms."""
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            response.read()
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline-ref", default=None, help="git ref of the 'before' build (default: merge base)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measured wrk run")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--reps", type=int, default=5, help="measured runs per variant (round-robin)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--server-core", type=int, default=0)
    parser.add_argument("--load-core", type=int, default=1)
    parser.add_argument("--use-env", action="store_true", help="use the stack in the environment, start none")
    parser.add_argument("--asgi-requests", type=int, default=5000, help="in-process requests per round")
    parser.add_argument("--asgi-rounds", type=int, default=10, help="in-process rounds per process (best kept)")
    parser.add_argument("--asgi-processes", type=int, default=4, help="in-process runs per build, alternating")
    parser.add_argument("--skip-wrk", action="store_true", help="only the in-process A/B")
    args = parser.parse_args(argv)
    for tool in ("wrk", "taskset", "git"):
        if shutil.which(tool) is None:
            parser.error(f"`{tool}` is missing")
    ref = (
        args.baseline_ref
        or subprocess.run(
            ["git", "-C", str(REPO), "merge-base", "HEAD", "main"], capture_output=True, text=True, check=True
        ).stdout.strip()
    )

    from churnflow.core import schema
    from churnflow.local import stack
    from churnflow.settings import LocalStackSettings

    started_stack = prepare_stack(args.use_env)
    work = Path(tempfile.mkdtemp(prefix="bench-observability-"))
    tree = baseline_tree(ref, work)
    body = json.dumps(dict(schema.EXAMPLE_CUSTOMER)).encode()
    python = sys.executable

    def service(root: Path, name: str) -> list[str]:
        return [python, "-m", "uvicorn", "main:app", "--app-dir", str(root / "functions" / "predict"), "--port",
                "{port}", *UVICORN_FLAGS]  # fmt: skip

    def env(root: Path, name: str) -> dict[str, str]:
        return {"PYTHONPATH": str(root / "shared"), "CHURNFLOW_SPOOL_DIR": str(work / f"spool-{name}")}

    before = Variant("before", service(tree, "before"), "/predict", body, env(tree, "before"))
    after = Variant("after", service(REPO, "after"), "/predict", body, env(REPO, "after"))
    plain = LUA.format(body=json.dumps(body.decode()))
    scripts = {"before": work / "plain.lua", "after": work / "plain.lua", "after_traced": work / "traced.lua"}
    scripts["before"].write_text(plain)
    scripts["after_traced"].write_text(plain + f'wrk.headers["traceparent"] = "{TRACEPARENT}"\n')
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in scripts}
    asgi: dict[str, list[float]] = {"before": [], "after": [], "after_traced": []}
    scrape = float("nan")
    try:
        builds = {"before": (tree, False), "after": (REPO, False), "after_traced": (REPO, True)}
        for run in range(args.asgi_processes):
            for name, (root, traced) in builds.items():
                cost = asgi_cost_us(root, args.server_core, args.asgi_requests, args.asgi_rounds, traced,
                                    work / f"asgi-spool-{name}")  # fmt: skip
                asgi[name].append(cost)
                print(f"in-process {run + 1} {name:<13} {cost:.2f} us/request", file=sys.stderr)
        if args.skip_wrk:
            return _report(ref, runs, asgi, scrape, args)
        for variant in (before, after):
            variant.process = spawn(variant, args.server_core, work)
        for variant in (before, after):
            wait_ready(variant, variant.process)
        target = {"before": before, "after": after, "after_traced": after}
        for name, script in scripts.items():
            wrk(target[name], args.load_core, args.warmup, args.connections, script)
        for rep in range(args.reps):
            for name, script in scripts.items():
                result = wrk(target[name], args.load_core, args.duration, args.connections, script)
                runs[name].append(result)
                print(f"rep {rep + 1} {name:<13} {result}", file=sys.stderr)
        scrape = scrape_ms(after.port)
    finally:
        for variant in (before, after):
            if variant.process is not None:
                stop(variant.process)
        remove_tree(tree)
        if started_stack:
            stack.down(LocalStackSettings())
    return _report(ref, runs, asgi, scrape, args)


def _report(
    ref: str,
    runs: dict[str, list[dict[str, float]]],
    asgi: dict[str, list[float]],
    scrape: float,
    args: argparse.Namespace,
) -> int:
    best = {name: min(costs) for name, costs in asgi.items()}
    print(f"\nin-process, best of {args.asgi_processes} x {args.asgi_rounds} rounds of {args.asgi_requests}:",
          file=sys.stderr)  # fmt: skip
    for name, cost in best.items():
        print(f"{name:<14} {cost:>8.2f} us/request  {cost - best['before']:+.2f} us", file=sys.stderr)
    asgi_report = {
        **{f"asgi_us_{name}": round(cost, 2) for name, cost in best.items()},
        "asgi_added_us": round(best["after"] - best["before"], 2),
        "asgi_added_us_traced": round(best["after_traced"] - best["before"], 2),
        "asgi_ratio": round(best["before"] / best["after"], 3),
        "asgi_runs_us": {name: [round(c, 2) for c in costs] for name, costs in asgi.items()},
    }
    if not runs["before"]:
        print(json.dumps({"baseline_ref": ref, **asgi_report, "load_1min": round(os.getloadavg()[0], 2)}))
        return 0

    def median(name: str, key: str) -> float:
        return statistics.median(run[key] for run in runs[name])

    rps = {name: median(name, "rps") for name in runs}
    print(f"\nbaseline {ref[:10]}; load {os.getloadavg()[0]:.2f} (1-min) at the end", file=sys.stderr)
    print("variant         req/s      p50 ms   p99 ms   ratio", file=sys.stderr)
    for name in runs:
        print(f"{name:<14} {rps[name]:>8.0f} {median(name, 'p50_ms'):>10.2f} {median(name, 'p99_ms'):>8.2f}"
              f" {rps[name] / rps['before']:>7.3f}", file=sys.stderr)  # fmt: skip
    report: dict[str, Any] = {
        "baseline_ref": ref,
        **{f"rps_{name}": round(value, 1) for name, value in rps.items()},
        **{f"p99_ms_{name}": round(median(name, "p99_ms"), 2) for name in runs},
        "ratio_after": round(rps["after"] / rps["before"], 3),
        "ratio_after_traced": round(rps["after_traced"] / rps["before"], 3),
        "ratio_after_by_round": [
            round(a["rps"] / b["rps"], 3) for a, b in zip(runs["after"], runs["before"], strict=True)
        ],
        "errors": {name: int(sum(run["errors"] for run in runs[name])) for name in runs},
        "scrape_ms": round(scrape, 2),
        **asgi_report,
        "load_1min": round(os.getloadavg()[0], 2),
        "setup": {"duration_s": args.duration, "reps": args.reps, "connections": args.connections},
    }
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
