"""`churnflow local up|down|status|env`: the local stack from the command line.

The stack module (and psutil, from the local extra) is imported only when a command runs, so the
`churnflow` parser also builds in the images, which run `churnflow promote` without that extra.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import TYPE_CHECKING

from churnflow.local.services import APPS, PrerequisiteMissing, StackError
from churnflow.settings import CommonSettings, LocalStackSettings

if TYPE_CHECKING:
    from churnflow.local.stack import StackInfo

NOT_RUNNING = "the local stack is not running (`churnflow local up` starts it)"


def register_cli(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `churnflow local up|down|status|env` to the `churnflow` argument parser."""
    local = subparsers.add_parser("local", help="run the local emulator stack (GCS, Pub/Sub, MLflow)")
    commands = local.add_subparsers(dest="local_command", required=True)
    start = commands.add_parser("up", help="start the stack (idempotent)")
    start.add_argument(
        "--with",
        dest="apps",
        default="",
        help=f"also run ChurnFlow's services, comma-separated: {','.join(APPS)} (or 'all')",
    )
    start.set_defaults(handler=_up)
    commands.add_parser("down", help="stop what `up` started").set_defaults(handler=_down)
    commands.add_parser("status", help="show each service's state").set_defaults(handler=_status)
    commands.add_parser("env", help="print `export` lines: eval $(churnflow local env)").set_defaults(handler=_env)


def _up(args: argparse.Namespace) -> int:
    from churnflow.local import stack

    settings = LocalStackSettings()
    apps = APPS if args.apps == "all" else tuple(a for a in args.apps.split(",") if a)
    try:
        info = stack.up(settings, CommonSettings(), apps)
    except PrerequisiteMissing as error:
        print(f"churnflow local up: {error}", file=sys.stderr)
        return 2
    except StackError as error:
        print(f"churnflow local up: {error}", file=sys.stderr)
        return 1
    print(f"{'service':<8} {'url':<24} {'pid':>8}  ready")
    for name, record in info.services.items():
        ready = f"in {record.ready_s:.1f}s" if name in info.started else "already running"
        print(f"{name:<8} {record.url:<24} {record.pid:>8}  {ready}")
    print(f"up in {info.total_s:.1f}s; state and logs in {settings.state_dir}\n")
    _print_env(info)
    return 0


def _down(args: argparse.Namespace) -> int:
    from churnflow.local import stack

    stopped = stack.down(LocalStackSettings())
    print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")
    return 0


def _status(args: argparse.Namespace) -> int:
    from churnflow.local import stack

    services = stack.status(LocalStackSettings())
    if not services:
        print(NOT_RUNNING)
        return 1
    print(f"{'service':<8} {'url':<24} {'pid':>8}  {'running':<8} ready")
    for service in services:
        print(f"{service.name:<8} {service.url:<24} {service.pid:>8}  {service.running!s:<8} {service.ready}")
    return 0 if all(service.ready for service in services) else 1


def _env(args: argparse.Namespace) -> int:
    from churnflow.local import stack

    info = stack.load_info(LocalStackSettings())
    if info is None or not info.has_emulators():
        print(NOT_RUNNING, file=sys.stderr)
        return 1
    _print_env(info)
    return 0


def _print_env(info: StackInfo) -> None:
    for key, value in info.env().items():
        print(f"export {key}={shlex.quote(value)}")
