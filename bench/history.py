"""Benchmark of the drift history: what a check adds, and what the dashboard pays to show it.

Usage: `make bench-history` or `python bench/history.py [--runs 100,500,1000]`.

Against a fake-gcs-server started here (free port, memory backend), for each workspace size N it fills
the model's project with N runs of a real drifted check (`history.run_model`), then measures:

  record     what the monitor adds to a check: `History.ensure_project` + `add` + `prune` (median of 5)
  reload     Evidently's own way for a UI over gs:// to see a new run: load the whole workspace again
             (`LocalState.reload`, what a restart or `GET /api/projects/{id}/reload` does)
  refresh    ours (`dashboard.scan` + `apply`): list the runs, read only the new one
  memory     the UI process's RSS growth once the N runs are loaded

The baseline (reload) and ours (refresh) are measured in the same run, on the same workspace; the
table prints their ratio. The last line is one JSON object with the figures of the largest N.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "shared"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def drifted_run():  # noqa: ANN201 - an Evidently SnapshotModel
    """The workspace run of a real drifted check (the model trained as `churnflow train` does)."""
    from datetime import UTC, datetime

    from churnflow.core.scorer import CompiledScorer
    from churnflow.monitoring import drift, history, policy
    from churnflow.monitoring.models import CheckStatus, CheckSummary, WindowStats
    from churnflow.retraining.request_state import RequestOutcome
    from churnflow.settings import MonitorSettings
    from churnflow.sim import scenarios
    from churnflow.training import data, pipeline
    from churnflow.training.compiler import compile_pipeline

    dataset = data.load_dataset()
    trained = pipeline.train(dataset)
    scorer = CompiledScorer(compile_pipeline(trained.model))
    reference = drift.with_prediction(trained.train, scorer)
    current = drift.with_prediction(scenarios.window(dataset, "month_to_month_fibre", 2000, seed=0), scorer)
    result, snapshot = drift.score_columns(reference, current, drift.DriftConfig())
    now = datetime.now(UTC)
    counts = dict.fromkeys(("objects", "objects_read", "lines", "parsed_lines", "valid_rows", "tested_rows"), 2000)
    zeros = dict.fromkeys(("corrupt_objects", "unnamed_objects", "bad_lines", "bad_rows"), 0)
    window = WindowStats(
        start=now, end=now, **counts, **zeros, sampled=False, design_effect=1.0, effective_rows=2000,
        sample_error_bound=0.0, model_versions={1: 2000},
    )  # fmt: skip
    summary = CheckSummary(
        check_id="20261130T120000Z-0123abcd",
        checked_at=now,
        status=CheckStatus.DRIFT,
        model_name="churn",
        champion_version=1,
        data_fingerprint="f" * 16,
        window=window,
        decision=policy.assess_drift(
            result, scorer.feature_importance(), policy.DriftPolicy.from_settings(MonitorSettings())
        ),
        drift=result,
        summary_uri="gs://b/s.json",
        trigger=RequestOutcome(action="published", reason="drift"),
    )
    return history.run_model(summary, snapshot)


def measure(size: int, run, bucket: str) -> dict[str, float]:  # noqa: ANN001
    from evidently.ui.service.storage.local import create_local_project_manager
    from evidently.ui.service.storage.local.base import LocalState

    from churnflow.monitoring import dashboard, history
    from churnflow.storage import gcs, layout

    gcs.ensure_bucket("bench", bucket)
    uri = layout.evidently_workspace_uri(bucket)
    store = history.History(uri)
    pid = store.ensure_project("churn")
    for _ in range(size):
        store.add(pid, run)
    record = []
    for _ in range(5):
        started = time.perf_counter()
        store.add(store.ensure_project("churn"), run)
        store.prune(pid, size)
        record.append(time.perf_counter() - started)

    process = psutil.Process()
    before = process.memory_info().rss
    state = LocalState.load(uri, None)
    manager = create_local_project_manager(uri, False, None, state)
    memory = (process.memory_info().rss - before) / 2**20

    store.add(pid, run)
    started = time.perf_counter()
    state.reload(force=True)
    reload_s = time.perf_counter() - started

    store.add(pid, run)
    started = time.perf_counter()
    dashboard.apply(state, manager.data_storage, dashboard.scan(state))
    refresh_s = time.perf_counter() - started
    assert len(state.snapshots[pid]) == size + 2, "the refresh must see the new run"
    return {
        "runs": size,
        "record_s": round(statistics.median(record), 3),
        "reload_s": round(reload_s, 3),
        "refresh_s": round(refresh_s, 3),
        "reload_over_refresh": round(reload_s / refresh_s, 1),
        "ui_memory_mb": round(memory, 1),
        "run_kb": round(len(run.json()) / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="100,500,1000", help="workspace sizes, comma-separated")
    args = parser.parse_args()
    from churnflow.local.services import fake_gcs_binary

    port = free_port()
    server = subprocess.Popen(
        [str(fake_gcs_binary()), "-scheme", "http", "-host", "127.0.0.1", "-port", str(port), "-backend", "memory"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        os.environ["STORAGE_EMULATOR_HOST"] = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/storage/v1/b", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        run = drifted_run()
        rows = [measure(size, run, f"history-{size}") for size in sorted(int(n) for n in args.runs.split(","))]
    finally:
        server.terminate()
        server.wait(10)
    load = os.getloadavg()
    print(f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {os.cpu_count()} cores (shared machine)")
    print(f"{'runs':>6} {'record s':>9} {'reload s':>9} {'refresh s':>10} {'reload/refresh':>15} {'UI MB':>7}")
    for row in rows:
        print(
            f"{row['runs']:>6} {row['record_s']:>9} {row['reload_s']:>9} {row['refresh_s']:>10} "
            f"{row['reload_over_refresh']:>15} {row['ui_memory_mb']:>7}"
        )
    print(json.dumps(rows[-1]))


if __name__ == "__main__":
    main()
