"""`churnflow local up|down|status|env`: the local stack from the command line.

The stack module (and psutil, from the local extra) is imported only when a command runs, so the
`churnflow` command also builds in the images, which run `churnflow promote` without that extra.
Tables and the `export` lines go to stdout; progress and problems to stderr.
"""

from __future__ import annotations

import shlex
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from churnflow.local.services import APPS, PrerequisiteMissing, StackError
from churnflow.settings import CommonSettings, LocalStackSettings

if TYPE_CHECKING:
    from churnflow.local.processes import StartupProgress
    from churnflow.local.stack import StackInfo

NOT_RUNNING = "the local stack is not running (`churnflow local up` starts it)"

app = typer.Typer(
    name="local",
    help="Run the local emulator stack (GCS, Pub/Sub, MLflow) and, with --with, ChurnFlow's services.",
    no_args_is_help=True,
)


def _checked_apps(value: str) -> str:
    parse_apps(value)
    return value


def parse_apps(value: str) -> tuple[str, ...]:
    """The services named by `--with` (comma-separated, or 'all'); an unknown name is a usage error."""
    if value.strip() == "all":
        return APPS
    names = tuple(name.strip() for name in value.split(",") if name.strip())
    if unknown := [name for name in names if name not in APPS]:
        raise typer.BadParameter(f"unknown service {', '.join(unknown)}; choose from {','.join(APPS)} or 'all'")
    return names


class _ProgressLine:
    """Reports start-up on stderr: a live line on a terminal, and one line per service that became ready."""

    def __init__(self) -> None:
        from rich.console import Console

        self.console = Console(stderr=True)
        self.live = self.console.status("starting the local stack…")

    def __enter__(self) -> _ProgressLine:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.__exit__(None, None, None)

    def __call__(self, event: StartupProgress) -> None:
        if event.ready:
            self.console.print(f"{event.ready} ready ({event.elapsed_s:.1f}s)", highlight=False)
        if event.waiting:
            self.live.update(f"waiting for {', '.join(event.waiting)}… {event.elapsed_s:.0f}s")


@app.command("up")
def up(
    apps: Annotated[
        str,
        typer.Option(
            "--with",
            help=f"Also run ChurnFlow's services, comma-separated: {','.join(APPS)} (or 'all').",
            callback=_checked_apps,
            metavar="SERVICES",
        ),
    ] = "",
) -> None:
    """Start the stack (idempotent) and print its services and `export` lines."""
    from churnflow.local import stack

    settings = LocalStackSettings()
    chosen = parse_apps(apps)
    try:
        with _ProgressLine() as progress:
            info = stack.up(settings, CommonSettings(), chosen, progress)
    except PrerequisiteMissing as error:
        typer.echo(f"churnflow local up: {error}", err=True)
        raise typer.Exit(2) from None
    except StackError as error:
        typer.echo(f"churnflow local up: {error}", err=True)
        raise typer.Exit(1) from None
    print(f"{'service':<8} {'url':<24} {'pid':>8}  ready")
    for name, record in info.services.items():
        ready = f"in {record.ready_s:.1f}s" if name in info.started else "already running"
        print(f"{name:<8} {record.url:<24} {record.pid:>8}  {ready}")
    print(f"up in {info.total_s:.1f}s; state and logs in {settings.state_dir}\n")
    _print_env(info)


@app.command("down")
def down() -> None:
    """Stop what `up` started (and nothing else)."""
    from churnflow.local import stack

    stopped = stack.down(LocalStackSettings())
    print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


@app.command("status")
def status() -> None:
    """Show each service's state; exit 1 unless all are ready."""
    from churnflow.local import stack

    services = stack.status(LocalStackSettings())
    if not services:
        typer.echo(NOT_RUNNING, err=True)
        raise typer.Exit(1)
    print(f"{'service':<8} {'url':<24} {'pid':>8}  {'running':<8} ready")
    for service in services:
        print(f"{service.name:<8} {service.url:<24} {service.pid:>8}  {service.running!s:<8} {service.ready}")
    if not all(service.ready for service in services):
        raise typer.Exit(1)


@app.command("env")
def env() -> None:
    """Print `export` lines for the stack's clients: eval "$(churnflow local env)"."""
    from churnflow.local import stack

    info = stack.load_info(LocalStackSettings())
    if info is None or not info.has_emulators():
        typer.echo(NOT_RUNNING, err=True)
        raise typer.Exit(1)
    _print_env(info)


def _print_env(info: StackInfo) -> None:
    for key, value in info.env().items():
        print(f"export {key}={shlex.quote(value)}")
    sys.stdout.flush()
