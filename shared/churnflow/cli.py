"""The `churnflow` command line: thin handlers over the library."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence


def _train(args: argparse.Namespace) -> int:
    from churnflow.data import DataValidationError
    from churnflow.registry import RegistryUnavailable
    from churnflow.settings import TrainSettings
    from churnflow.train_flow import run_training

    overrides = {"data_uri": args.data} if args.data else {}
    settings = TrainSettings(**overrides)
    try:
        outcome = run_training(settings)
    except (DataValidationError, RegistryUnavailable, FileNotFoundError) as error:
        print(f"churnflow train: {error}", file=sys.stderr)
        print("Nothing was registered.", file=sys.stderr)
        return 2
    version = outcome.version
    aliases = f" (aliases: {', '.join(version.aliases)})" if version.aliases else ""
    print(f"Registered {version.name} version {version.version}{aliases}, run {version.run_id}")
    print(json.dumps({k: round(v, 4) for k, v in outcome.metrics.items()}))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    from churnflow.local.stack import register_cli

    parser = argparse.ArgumentParser(prog="churnflow", description=__doc__)
    parser.add_argument("--log-level", default="WARNING", help="logging level (JSON lines on stdout)")
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train, track in MLflow and register the churn model")
    train.add_argument("--data", help="CSV path or gs:// URI (default: the bundled, checksummed dataset)")
    train.set_defaults(handler=_train)
    register_cli(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `churnflow` command."""
    from churnflow.logs import configure_logging

    args = build_parser().parse_args(argv)
    configure_logging(args.log_level.upper())
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
