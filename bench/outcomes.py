"""Benchmark of the outcomes engine against the code path before it (issue 12), side by side in one run.

Usage: `make bench-outcomes` or `python bench/outcomes.py [--rows 100000,1000000] [--engine-only 3000000]
[--old-cap-gib 16]`.

On a private local stack (bench/monitor.py's `private_stack`: emulators on free 127.0.0.1 ports, a
trained champion) it writes, for each size, N logged requests in the service's log format and batch
size (5000-row gzip JSON-lines objects under requests/dt=…/hour=…/, spread over DAYS days, 128-bit hex
request ids, real customers scored by the champion) into a bucket of its own, and a labels CSV for a
random 20 % of them (churned drawn from the logged probability, observed a day later). Then, each in a
fresh process, for the old path (a temporary `git worktree` of --old-ref, its commands run with its
`shared/` on PYTHONPATH) and for the engine (this tree):

  import      `python -m churnflow.cli labels import FILE`, wall time of the whole command and its peak
              RSS (/usr/bin/time -f %M); the old path's labels object is deleted afterwards, so both
              paths then read the one object the engine's import stored (the same layout, labels/dt=…/;
              the engine reads the labelled examples its import stored under labelled/)
  check       `run_check` as the Cloud Function runs it (modules imported first), labelled performance
              over `label_lookback_days`; time of the call and peak RSS (VmHWM)
  check_nolab the same check with labelled performance switched off (the ≤ 2× target)
  retrain     the retrain's data step: `recent_data.labelled_traffic(settings)` on both sides

The old path runs under an address-space cap (`--old-cap-gib`, `prlimit --as`): at 10M rows it needs more
memory than the machine has, and a step that runs out is recorded as such, with its time until then.

The floor of any import that must read the log as written, measured in the same run (fresh processes):
the interpreter and the import's modules, downloading every request-log object (as many workers as the
engine), and decompressing them into lines (DuckDB, both cores: the first step of the engine's scan),
against a fifth of the old path's import (the 5× target).

The labelled AUC of the engine's check is compared with sklearn's roc_auc_score on the joined rows the
bench wrote. A table is printed, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from monitor import peak_mb, private_stack

MODEL = "churn-outcomes-bench"
BATCH_ROWS = 5000
LABELLED_SHARE = 0.2
DAYS = 5
ROOT = Path(__file__).resolve().parent.parent
STEPS = ("import", "check", "check_nolab", "retrain")
IMPORT_MODULES = "import churnflow.cli, churnflow.outcomes.label_import, duckdb, pyarrow, google.cloud.storage"


class OutOfMemory(Exception):
    """A step of the old path that ran out of its address-space cap: how it ended, its seconds until then
    and its peak RSS. Python raises MemoryError; a C extension whose allocation fails may crash instead."""

    def __init__(self, how: str, seconds: float, peak_mb: int):
        super().__init__(f"{how} after {seconds:.1f} s")
        self.how, self.seconds, self.peak_mb = how, seconds, peak_mb


def bucket_for(rows: int) -> str:
    return f"outcomes-bench-{rows}"


def data_end() -> datetime:
    """The log ends at the start of today (UTC): a labels import validates against days up to today."""
    return datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def write_log(rows: int, end: datetime, labels_csv: Path, seed: int) -> tuple[float, list[tuple[float, int]]]:
    """Write `rows` logged requests over DAYS days before `end` and a labels CSV for 20 % of them.

    Returns the seconds taken and the (logged probability, churned) pairs of the labelled requests.
    """
    import numpy as np

    from churnflow.monitoring.champion import load_champion
    from churnflow.settings import MonitorSettings
    from churnflow.sim import scenarios
    from churnflow.storage import gcs, layout, request_log
    from churnflow.training import data

    began = time.perf_counter()
    settings = MonitorSettings(bucket=bucket_for(rows), model_name=MODEL)
    gcs.ensure_bucket(settings.project, settings.bucket)
    champion = load_champion(settings)
    frame = data.load_dataset()
    per_second = rows / (DAYS * 86400)
    start = end.timestamp() - DAYS * 86400

    def batch(first: int) -> list[tuple[str, float, int, float]]:
        rng = np.random.default_rng([seed, first])
        chunk = scenarios.window(frame, "in_distribution", min(BATCH_ROWS, rows - first), seed * 1_000_003 + first)
        start_ts = start + first / per_second
        records = list(
            scenarios.to_log_records(chunk, champion.scorer, champion.version, start_ts, per_second, id_prefix="b")
        )
        ids = rng.bytes(16 * len(records)).hex()
        labelled = []
        for i, record in enumerate(records):
            record[request_log.REQUEST_ID] = ids[32 * i : 32 * i + 32]
            record[request_log.INSTANCE] = f"bench-{first // 50_000}"
            if rng.random() < LABELLED_SHARE:
                probability = float(record[request_log.PROBABILITY])  # type: ignore[arg-type]
                churned = int(rng.random() < probability)
                labelled.append((ids[32 * i : 32 * i + 32], probability, churned, float(record[request_log.TIMESTAMP])))  # type: ignore[arg-type]
        for name, body in scenarios.log_objects(records, BATCH_ROWS, tag=f"b{first}-"):
            gcs.write_bytes(settings.project, layout.gs_uri(settings.bucket, name), body)
        return labelled

    with ThreadPoolExecutor(2) as pool:
        labelled = [row for part in pool.map(batch, range(0, rows, BATCH_ROWS)) for row in part]
    with labels_csv.open("w") as out:
        out.write("request_id,churned,observed_at\n")
        for request_id, _, churned, ts in labelled:
            observed = datetime.fromtimestamp(min(ts + 86400, end.timestamp()), UTC).isoformat()
            out.write(f"{request_id},{'yes' if churned else 'no'},{observed}\n")
    return time.perf_counter() - began, [(p, c) for _, p, c, _ in labelled]


def child(step: str, rows: int, now: str) -> dict[str, Any]:
    """One measured step in this (fresh) process, with whichever churnflow PYTHONPATH provides."""
    import google.cloud.pubsub_v1  # noqa: F401 - a warm instance has these imported
    import mlflow  # noqa: F401

    from churnflow.monitoring import check
    from churnflow.retraining import recent_data
    from churnflow.retraining.request_store import StateStore
    from churnflow.settings import MonitorSettings, RetrainSettings
    from churnflow.storage import gcs

    out: dict[str, Any] = {}
    if step == "floor":
        return floor(rows)
    if step == "retrain":
        settings = RetrainSettings(bucket=bucket_for(rows), model_name=MODEL)
        began = time.perf_counter()
        frame = recent_data.labelled_traffic(settings)
        out["rows_out"] = len(frame)
    else:
        if step == "check_nolab":
            check.labelled_performance = lambda *args, **kwargs: None  # type: ignore[assignment]
        settings = MonitorSettings(bucket=bucket_for(rows), model_name=MODEL, since_last_check=False)
        store = StateStore(settings.project, settings.bucket, settings.model_name)
        gcs.delete_object(settings.project, settings.bucket, store.name)  # each run may publish, as the first did
        began = time.perf_counter()
        summary = check.run_check(settings, now=datetime.fromisoformat(now))
        if summary.performance is not None:
            out["labelled_rows"] = summary.performance.rows
            out["roc_auc"] = summary.performance.roc_auc
    out["s"] = round(time.perf_counter() - began, 2)
    out["peak_mb"] = round(peak_mb())
    return out


def floor(rows: int) -> dict[str, Any]:
    """Seconds to download every request-log object of the bucket and to decompress them into lines."""
    import duckdb

    from churnflow.outcomes import tables
    from churnflow.settings import CommonSettings
    from churnflow.storage import gcs, layout

    settings = CommonSettings(bucket=bucket_for(rows))
    names = gcs.list_names(settings.project, settings.bucket, tables.REQUEST_LOG.prefix)
    with tempfile.TemporaryDirectory(prefix="outcomes-floor-") as tmp:
        paths = {name: str(Path(tmp) / f"{index}.json.gz") for index, name in enumerate(names)}
        began = time.perf_counter()
        with ThreadPoolExecutor(settings.outcomes_read_workers) as pool:
            uris = [layout.gs_uri(settings.bucket, name) for name in names]
            list(pool.map(gcs.download_file, [settings.project] * len(names), uris, list(paths.values())))
        downloaded = time.perf_counter() - began
        files = "[" + ", ".join(f"'{path}'" for path in paths.values()) + "]"
        began = time.perf_counter()
        [(lines,)] = duckdb.sql(
            f"SELECT count(*) FROM read_csv({files}, columns = {{'line': 'VARCHAR'}}, delim = '\x01', quote = '', "
            "escape = '', header = false, auto_detect = false)"
        ).fetchall()
        decompressed = time.perf_counter() - began
    return {
        "objects": len(names),
        "lines": lines,
        "download_s": round(downloaded, 2),
        "decompress_s": round(decompressed, 2),
    }


def run_python(env: dict[str, str], shared: Path, *args: str, cap_bytes: int | None = None) -> tuple[float, int, str]:
    """Run `python ARGS` in a fresh process with `shared` on PYTHONPATH: wall seconds, peak RSS (MB), stdout.

    With `cap_bytes`, under that address-space limit: running out raises OutOfMemory."""
    env = {**env, "PYTHONPATH": str(shared)}
    capped = ["prlimit", f"--as={cap_bytes}", "--"] if cap_bytes else []
    began = time.perf_counter()
    done = subprocess.run(
        ["/usr/bin/time", "-f", "%M", *capped, sys.executable, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    elapsed = time.perf_counter() - began
    peak = round(int(done.stderr.strip().splitlines()[-1]) / 1024) if done.stderr.strip() else 0
    if done.returncode != 0 and cap_bytes:
        for sign, how in (("MemoryError", "MemoryError"), ("bad_alloc", "std::bad_alloc"), ("by signal", "crashed")):
            if sign in done.stderr:
                signal = re.search(r"terminated by signal (\d+)", done.stderr)
                raise OutOfMemory(f"{how} (signal {signal[1]})" if signal else how, elapsed, peak)
    if done.returncode != 0:
        raise RuntimeError(f"{args} failed:\n{done.stderr[-3000:]}")
    return elapsed, peak, done.stdout


def labels_objects(rows: int) -> set[str]:
    from churnflow.settings import CommonSettings
    from churnflow.storage import gcs, layout

    settings = CommonSettings()
    return set(gcs.list_names(settings.project, bucket_for(rows), layout.LABELS_PREFIX))


def measure(
    env: dict[str, str], path: str, shared: Path, rows: int, labels_csv: Path, now: datetime, cap_bytes: int | None
) -> dict[str, Any]:
    """Every step of one path (old or engine) on the log of `rows` rows (under `cap_bytes` of address space)."""
    from churnflow.settings import CommonSettings
    from churnflow.storage import gcs

    env = {**env, "CHURNFLOW_BUCKET": bucket_for(rows)}
    result: dict[str, Any] = {}
    before = labels_objects(rows)
    try:
        seconds, peak, _ = run_python(
            env, shared, "-m", "churnflow.cli", "labels", "import", str(labels_csv), cap_bytes=cap_bytes
        )
        result["import"] = {"s": round(seconds, 2), "peak_mb": peak}
    except OutOfMemory as out:
        result["import"] = {"s": round(out.seconds, 2), "peak_mb": out.peak_mb, "out_of_memory": out.how}
    if path == "old":  # both paths then read the one labels object the engine's import stores
        for name in labels_objects(rows) - before:
            gcs.delete_object(CommonSettings().project, bucket_for(rows), name)
    for step in STEPS[1:]:
        try:
            _, peak, stdout = run_python(
                env, shared, __file__, "--child", step, str(rows), now.isoformat(), cap_bytes=cap_bytes
            )
            result[step] = json.loads(stdout.strip().splitlines()[-1]) | {"process_peak_mb": peak}
        except OutOfMemory as out:
            result[step] = {"s": round(out.seconds, 2), "peak_mb": out.peak_mb, "out_of_memory": out.how}
    return result


def measure_floor(env: dict[str, str], shared: Path, rows: int) -> dict[str, Any]:
    """The floor of an import that reads the log as written: startup and imports, download, decompression."""
    startup, _, _ = run_python(env, shared, "-c", IMPORT_MODULES)
    _, _, stdout = run_python(env, shared, __file__, "--child", "floor", str(rows), "-")
    parts = json.loads(stdout.strip().splitlines()[-1])
    parts["startup_s"] = round(startup, 2)
    parts["floor_s"] = round(startup + parts["download_s"] + parts["decompress_s"], 2)
    return parts


@contextmanager
def worktree(ref: str | None) -> Iterator[Path]:
    """The `shared/` of a temporary `git worktree` of `ref` (removed on exit); this tree's when ref is None."""
    if ref is None:
        yield ROOT / "shared"
        return
    root = Path(tempfile.mkdtemp(prefix="churnflow-ref-"))
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(root), ref], check=True)
    try:
        yield root / "shared"
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(root)], check=False)


def bench(
    sizes: list[int], engine_only: list[int], old_ref: str, engine_ref: str | None, old_cap_bytes: int
) -> dict[str, Any]:
    from sklearn.metrics import roc_auc_score

    from churnflow.settings import MonitorSettings

    lines: list[dict[str, Any]] = []
    with (
        worktree(old_ref) as old_shared,
        worktree(engine_ref) as engine_shared,
        private_stack(MODEL) as env,
        tempfile.TemporaryDirectory(prefix="outcomes-bench-") as tmp,
    ):
        end = data_end()
        now = end + timedelta(seconds=MonitorSettings().settle_s + 1)
        for rows in sorted(set(sizes) | set(engine_only)):
            labels_csv = Path(tmp) / f"labels-{rows}.csv"
            written_s, pairs = write_log(rows, end, labels_csv, seed=rows)
            print(f"# wrote {rows} rows in {written_s:.0f} s ({rows / written_s:,.0f} rows/s)", flush=True)
            paths = {"engine": engine_shared}
            if rows in sizes:
                paths["old"] = old_shared
            # the engine's import first: it stores the labels object both paths then read
            results = {
                path: measure(env, path, shared, rows, labels_csv, now, old_cap_bytes if path == "old" else None)
                for path, shared in paths.items()
            }
            floor_parts = measure_floor(env, engine_shared, rows)
            old_import = results.get("old", {}).get("import")
            churned = [c for _, c in pairs]
            sk_auc = float(roc_auc_score(churned, [p for p, _ in pairs]))
            engine_auc = results["engine"]["check"].get("roc_auc")
            for step in STEPS:
                old = results.get("old", {}).get(step)
                new = results["engine"][step]
                line = {
                    "rows": rows,
                    "step": step,
                    "old_s": old and old["s"],
                    "old_peak_mb": old and max(old["peak_mb"], old.get("process_peak_mb", 0)),
                    "engine_s": new["s"],
                    "engine_peak_mb": max(new["peak_mb"], new.get("process_peak_mb", 0)),
                    "old_out_of_memory": old and old.get("out_of_memory"),
                    "speedup": old and not old.get("out_of_memory") and round(old["s"] / new["s"], 2) or None,
                }
                lines.append(line)
                print(json.dumps(line), flush=True)
            auc = {
                "rows": rows,
                "write_s": round(written_s, 1),
                "labelled": len(pairs),
                "engine_labelled_rows": results["engine"]["check"].get("labelled_rows"),
                "engine_auc": engine_auc,
                "sklearn_auc": sk_auc,
                "old_auc": results.get("old", {}).get("check", {}).get("roc_auc"),
                "auc_error": None if engine_auc is None else abs(engine_auc - sk_auc),
                "check_vs_nolabels": round(results["engine"]["check"]["s"] / results["engine"]["check_nolab"]["s"], 2),
                "retrain_rows": {p: r["retrain"].get("rows_out") for p, r in results.items()},
                "import_floor": floor_parts,
                "five_x_import_budget_s": old_import
                and not old_import.get("out_of_memory")
                and round(old_import["s"] / 5, 2)
                or None,
                "load_average": [round(x, 1) for x in os.getloadavg()],
            }
            lines.append(auc)
            print(json.dumps(auc), flush=True)
    return table(lines)


def table(lines: list[dict[str, Any]]) -> dict[str, Any]:
    steps = [line for line in lines if "step" in line]
    print("\n| rows | step | old s | old peak MB | engine s | engine peak MB | speed-up |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: |")
    for line in steps:
        old_s = "—" if line["old_s"] is None else f"{line['old_s']:.2f}"
        if line["old_out_of_memory"]:
            old_s = f"{line['old_out_of_memory']} after {line['old_s']:.1f}"
        old_mb = "—" if line["old_peak_mb"] is None else f"{line['old_peak_mb']:,}"
        speed = "—" if line["speedup"] is None else f"{line['speedup']:.1f}×"
        print(
            f"| {line['rows']:,} | {line['step']} | {old_s} | {old_mb} | {line['engine_s']:.2f} "
            f"| {line['engine_peak_mb']:,} | {speed} |"
        )
    checks = [line for line in lines if "auc_error" in line]
    print(
        "\n| rows | import: startup + imports s | download s | decompress s | floor s | a fifth of the old import s |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for check in checks:
        f, budget = check["import_floor"], check["five_x_import_budget_s"]
        print(
            f"| {check['rows']:,} | {f['startup_s']:.2f} | {f['download_s']:.2f} | {f['decompress_s']:.2f} "
            f"| {f['floor_s']:.2f} | {'—' if budget is None else f'{budget:.2f}'} |"
        )
    return {
        "steps": steps,
        "auc": checks,
        "max_auc_error": max((c["auc_error"] for c in checks if c["auc_error"] is not None), default=None),
        "max_engine_peak_mb": max(line["engine_peak_mb"] for line in steps),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="100000,1000000", help="sizes run on both paths (comma-separated)")
    parser.add_argument("--engine-only", default="", help="sizes run on the engine alone (comma-separated)")
    parser.add_argument("--old-ref", default="f88c2bc", help="the commit of the code path before the engine")
    parser.add_argument("--engine-ref", help="measure the engine of this commit instead of this tree's")
    parser.add_argument("--old-cap-gib", type=float, default=16, help="address-space cap of the old path's processes")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        step, rows, now = args.child
        print(json.dumps(child(step, int(rows), now)))
        return 0
    sizes = [int(size) for size in args.rows.split(",") if size]
    engine_only = [int(size) for size in args.engine_only.split(",") if size]
    cap = int(args.old_cap_gib * 2**30)
    print(json.dumps(bench(sizes, engine_only, args.old_ref, args.engine_ref, cap)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
