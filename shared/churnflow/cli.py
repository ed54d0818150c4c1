"""The `churnflow` command line (Typer): thin handlers over the library.

Machine output (tables, JSON with --json, `export` lines) goes to stdout; progress, diagnostics and
usage errors to stderr. A usage error (unknown option, bad value) exits 2 with the usage and no
traceback; a failed operation exits 1 (2 for bad input data), success 0. Heavy packages (MLflow,
pandas, sklearn, Evidently, the local stack) are imported by the command that needs them only.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

from churnflow.local.cli import app as local_app

if TYPE_CHECKING:
    from churnflow.ops.status import Status

app = typer.Typer(
    name="churnflow",
    help="ChurnFlow: train, serve, monitor and retrain the churn model; operate it and the local stack.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode=None,
)
labels_app = typer.Typer(help="Ground-truth churn outcomes.", no_args_is_help=True)
monitor_app = typer.Typer(help="The drift monitor.", no_args_is_help=True)
app.add_typer(labels_app, name="labels")
app.add_typer(monitor_app, name="monitor")
app.add_typer(local_app, name="local")

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout instead of text.")]


class LogLevel(StrEnum):
    """The levels `--log-level` accepts."""

    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"
    CRITICAL = "CRITICAL"


class DemoStory(StrEnum):
    """The stories `demo --story` tells (sim.demo)."""

    SEGMENT = "segment"
    OUTCOME = "outcome"


def _fail(command: str, error: object, code: int = 1, then: str | None = None) -> typer.Exit:
    typer.echo(f"churnflow {command}: {error}", err=True)
    if then:
        typer.echo(then, err=True)
    return typer.Exit(code)


def version_text() -> str:
    """`churnflow --version`: the package version and the commit it runs from."""
    from importlib.metadata import PackageNotFoundError, version

    from churnflow.registry.write import code_version

    try:
        package = version("churnflow")
    except PackageNotFoundError:
        package = "unknown"
    return f"churnflow {package} (commit {code_version()[:12]})"


def _show_version(value: bool) -> None:
    if value:
        print(version_text())
        raise typer.Exit()


@app.callback()
def root(
    log_level: Annotated[
        LogLevel, typer.Option(case_sensitive=False, help="Logging level (JSON lines on stdout).")
    ] = LogLevel.WARNING,
    show_version: Annotated[
        bool,
        typer.Option("--version", callback=_show_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """ChurnFlow: train, serve, monitor and retrain the churn model; operate it and the local stack."""
    from churnflow.logs import configure_logging

    configure_logging(log_level.value)


@app.command()
def train(
    data: Annotated[
        str | None, typer.Option(help="CSV path or gs:// URI (default: the bundled, checksummed dataset).")
    ] = None,
) -> None:
    """Train, track in MLflow (metrics, evaluation plots, datasets) and register the churn model."""
    from churnflow.registry.write import RegistryUnavailable
    from churnflow.settings import TrainSettings
    from churnflow.training.data import DataValidationError
    from churnflow.training.register import run_training

    settings = TrainSettings(data_uri=data) if data else TrainSettings()
    try:
        outcome = run_training(settings)
    except (DataValidationError, RegistryUnavailable, FileNotFoundError) as error:
        raise _fail("train", error, 2, "Nothing was registered.") from None
    version = outcome.version
    aliases = f" (aliases: {', '.join(version.aliases)})" if version.aliases else ""
    print(f"Registered {version.name} version {version.version}{aliases}, run {version.run_id}")
    print(json.dumps({k: round(v, 4) for k, v in outcome.metrics.items()}))


@labels_app.command("import")
def labels_import(
    file: Annotated[
        str,
        typer.Argument(
            metavar="FILE", help="Path or gs:// URI; columns: request_id, churned (yes/no), observed_at (ISO 8601)."
        ),
    ],
) -> None:
    """Validate a labels file (CSV or JSONL) and store it in GCS."""
    from churnflow.outcomes.label_import import import_labels
    from churnflow.settings import CommonSettings
    from churnflow.storage.labels import LabelValidationError

    try:
        stored = import_labels(CommonSettings(), file)
    except (LabelValidationError, FileNotFoundError, ValueError) as error:
        raise _fail("labels import", error, 2, "Nothing was stored.") from None
    print(f"Stored {stored.labels} labels at {stored.uri}")
    skipped = f"; skipped {stored.skipped_objects} unreadable log objects" if stored.skipped_objects else ""
    lines = f"; skipped {stored.unreadable_rows} unreadable log lines" if stored.unreadable_rows else ""
    print(
        f"Labelled examples: {len(stored.examples)} object(s) under labelled/, from {stored.days_scanned} "
        f"day(s) of the request log{skipped}{lines}"
    )


@app.command()
def promote(
    version: Annotated[
        int | None, typer.Argument(min=1, metavar="VERSION", help="The version to point the champion alias at.")
    ] = None,
    version_option: Annotated[
        int | None,
        typer.Option("--version", min=1, metavar="VERSION", help="The same, as an option (older scripts)."),
    ] = None,
) -> None:
    """Point the champion alias at VERSION (e.g. a rollback); predict follows within its poll interval."""
    from churnflow.registry import tags
    from churnflow.registry import write as registry_write
    from churnflow.settings import CommonSettings

    if (version is None) == (version_option is None):
        raise typer.BadParameter("give the version once: `promote 3` (or `promote --version 3`)")
    chosen = version if version is not None else version_option
    assert chosen is not None
    settings = CommonSettings()
    try:
        registry_write.configure_client(settings)
        previous = registry_write.champion_version(settings)
        registry_write.set_alias(settings, settings.champion_alias, chosen, {tags.PROMOTED_BY: "manual"})
    except Exception as error:  # noqa: BLE001 - MLflow's errors (no such version, unreachable) become one line
        raise _fail("promote", getattr(error, "message", error), then="The champion alias did not move.") from None
    print(f"{settings.model_name}@{settings.champion_alias}: v{previous} -> v{chosen}")


@app.command()
def retrain() -> None:
    """Run one retrain now, as the Cloud Run Job does (gated promotion)."""
    from churnflow.retraining.job import main as job_main

    raise typer.Exit(job_main())


@app.command()
def demo(
    keep: Annotated[bool, typer.Option("--keep", help="Leave the demo stack running afterwards.")] = False,
    down: Annotated[bool, typer.Option("--down", help="Stop a demo stack left running with --keep.")] = False,
    story: Annotated[
        DemoStory,
        typer.Option(
            help="segment: traffic shifts to a segment v1 barely saw (drift); outcome: a segment's churn changes "
            "with the inputs unchanged (the performance rule).",
        ),
    ] = DemoStory.SEGMENT,
) -> None:
    """Run the whole loop locally on real emulators, as a timeline."""
    from churnflow.local import stack
    from churnflow.sim import demo as demo_loop

    if down:
        stopped = stack.down(demo_loop.demo_settings())
        print(f"stopped: {', '.join(stopped)}" if stopped else "the demo stack was not running")
        return
    raise typer.Exit(demo_loop.main(keep=keep, story=story.value))


@monitor_app.command("check")
def monitor_check(as_json: JsonOption = False) -> None:
    """Run one drift check now, as the scheduler does (it may request a retrain), and print its summary."""
    from churnflow.monitoring.check import run_check
    from churnflow.monitoring.errors import MonitorUnavailable
    from churnflow.settings import MonitorSettings

    try:
        summary = run_check(MonitorSettings())
    except MonitorUnavailable as error:
        raise _fail("monitor check", error) from None
    if as_json:
        print(summary.model_dump_json(indent=2))
        return
    print(f"check {summary.check_id}: {summary.headline()}")
    print(f"window {summary.window.start:%Y-%m-%d %H:%M:%S}Z .. {summary.window.end:%H:%M:%S}Z")
    if summary.report_uri:
        print(f"report {summary.report_uri}")
    print(f"trigger {summary.trigger.action}: {summary.trigger.reason}")


def _local_predict_url() -> str | None:
    """The predict URL of a running local stack, if there is one (and the local extra is installed)."""
    try:
        from churnflow.local import stack
        from churnflow.settings import LocalStackSettings
    except ImportError:
        return None
    info = stack.load_info(LocalStackSettings())
    record = info.services.get("predict") if info else None
    return record.url if record else None


@app.command()
def status(
    as_json: JsonOption = False,
    predict_url: Annotated[
        str | None,
        typer.Option(help="Predict service to ask for its request-log counters (default: the local stack's)."),
    ] = None,
) -> None:
    """Champion and challenger with their metrics, the last check, pending retrain, request-log health.

    Exits 1 when a source (registry, bucket, predict) could not be read; what could be read is shown.
    """
    from churnflow.ops.status import gather
    from churnflow.settings import RetrainSettings

    found = gather(RetrainSettings(), predict_url or _local_predict_url())
    if as_json:
        print(found.model_dump_json(indent=2))
    else:
        _print_status(found)
    for problem in found.problems:
        typer.echo(f"churnflow status: {problem}", err=True)
    if found.problems:
        raise typer.Exit(1)


def _print_status(found: Status) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 160, highlight=False)
    console.print(f"Model {found.model_name} at {found.checked_at:%Y-%m-%d %H:%M:%S}Z")
    table = Table("alias", "version", "registered", "roc_auc", "accuracy", "brier", "gate", box=None)
    for alias, version in (("champion", found.champion), ("challenger", found.challenger)):
        if version is None:
            table.add_row(alias, "unknown" if "registry" in found.unreadable else "none", "", "", "", "", "")
            continue
        metric = {
            name: f"{version.metrics[name]:.4f}" if name in version.metrics else "–"
            for name in ("roc_auc", "accuracy", "brier")
        }
        gate = f"{version.gate_decision}: {version.gate_reason}" if version.gate_decision else "first version / manual"
        table.add_row(
            alias,
            f"v{version.version}",
            f"{version.created_at:%Y-%m-%d %H:%M}Z",
            metric["roc_auc"],
            metric["accuracy"],
            metric["brier"],
            gate,
        )
    console.print(table)
    bucket_read = "bucket" not in found.unreadable
    check = found.last_check
    if check is None:
        console.print("Last check:  none yet" if bucket_read else "Last check:  unknown (bucket not readable)")
    else:
        share = f"{check.drift_share:.2f}" if check.drift_share is not None else "–"
        console.print(
            f"Last check:  {check.status.value.upper()} at {check.checked_at:%Y-%m-%d %H:%M:%S}Z on {check.valid_rows}"
            f" rows of v{check.champion_version} (drift share {share}; rules fired: "
            f"{', '.join(check.rules_fired) or 'none'}); {check.check_id}"
        )
    state = found.retrain
    if state is None:
        console.print(
            "Retrain:     none requested yet" if bucket_read else "Retrain:     unknown (bucket not readable)"
        )
    else:
        when = f"{state.updated_at:%Y-%m-%d %H:%M:%S}Z"
        pending = "PENDING " if found.retrain_pending else ""
        promoted = f", promoted v{state.promoted_version}" if state.promoted_version else ""
        detail = f" ({state.detail})" if state.detail else ""
        console.print(
            f"Retrain:     {pending}{state.status.value} since {when} for v{state.champion_version}{promoted}"
            f"{detail}; request {state.request_id} from check {state.check_id}"
        )
    log = found.request_log
    if log is not None:
        newest = (
            f"newest {(found.checked_at - log.newest_batch_at).total_seconds():.0f}s ago"
            if log.newest_batch_at
            else "no batch"
        )
        hours = log.lookback_s / 3600
        line = f"Request log: {log.batches} batches ({log.bytes / 1e6:.2f} MB) in the last {hours:g}h, {newest}"
        if log.predict_logger:
            counters = ", ".join(f"{key} {value}" for key, value in log.predict_logger.items())
            line += f"; predict logger since start: {counters}"
        console.print(line)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `churnflow` command: the exit status (2 for a usage error, with the usage on stderr)."""
    try:
        app(args=list(argv) if argv is not None else None, prog_name="churnflow")
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
