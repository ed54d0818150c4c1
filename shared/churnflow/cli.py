"""The `churnflow` command line: thin handlers over the library."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence


def _train(args: argparse.Namespace) -> int:
    from churnflow.registry.write import RegistryUnavailable
    from churnflow.settings import TrainSettings
    from churnflow.training.data import DataValidationError
    from churnflow.training.register import run_training

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


def _labels_import(args: argparse.Namespace) -> int:
    from churnflow.outcomes.label_import import import_labels
    from churnflow.settings import CommonSettings
    from churnflow.storage.labels import LabelValidationError

    try:
        stored = import_labels(CommonSettings(), args.file)
    except (LabelValidationError, FileNotFoundError, ValueError) as error:
        print(f"churnflow labels import: {error}", file=sys.stderr)
        print("Nothing was stored.", file=sys.stderr)
        return 2
    print(f"Stored {stored.labels} labels at {stored.uri}")
    skipped = f"; skipped {stored.skipped_objects} unreadable log objects" if stored.skipped_objects else ""
    lines = f"; skipped {stored.unreadable_rows} unreadable log lines" if stored.unreadable_rows else ""
    print(
        f"Labelled examples: {len(stored.examples)} object(s) under labelled/, from {stored.days_scanned} "
        f"day(s) of the request log{skipped}{lines}"
    )
    return 0


def _promote(args: argparse.Namespace) -> int:
    from churnflow.registry import tags
    from churnflow.registry import write as registry_write
    from churnflow.settings import CommonSettings

    settings = CommonSettings()
    registry_write.configure_client(settings)
    previous = registry_write.champion_version(settings)
    registry_write.set_alias(settings, settings.champion_alias, args.version, {tags.PROMOTED_BY: "manual"})
    print(f"{settings.model_name}@{settings.champion_alias}: v{previous} -> v{args.version}")
    return 0


def _retrain(args: argparse.Namespace) -> int:
    from churnflow.retraining.job import main as job_main

    return job_main()


def _demo(args: argparse.Namespace) -> int:
    from churnflow.local import stack
    from churnflow.sim import demo

    if args.down:
        stopped = stack.down(demo.demo_settings())
        print(f"stopped: {', '.join(stopped)}" if stopped else "the demo stack was not running")
        return 0
    return demo.main(keep=args.keep, story=args.story)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    from churnflow.local.cli import register_cli

    parser = argparse.ArgumentParser(prog="churnflow", description=__doc__)
    parser.add_argument("--log-level", default="WARNING", help="logging level (JSON lines on stdout)")
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train, track in MLflow and register the churn model")
    train.add_argument("--data", help="CSV path or gs:// URI (default: the bundled, checksummed dataset)")
    train.set_defaults(handler=_train)
    labels = commands.add_parser("labels", help="ground-truth churn outcomes").add_subparsers(
        dest="labels_command", required=True
    )
    labels_import = labels.add_parser("import", help="validate a labels file (CSV or JSONL) and store it in GCS")
    labels_import.add_argument(
        "file", help="path or gs:// URI; columns: request_id, churned (yes/no), observed_at (ISO 8601)"
    )
    labels_import.set_defaults(handler=_labels_import)
    promote = commands.add_parser("promote", help="point the champion alias at a version (e.g. a rollback)")
    promote.add_argument("--version", type=int, required=True)
    promote.set_defaults(handler=_promote)
    retrain = commands.add_parser("retrain", help="run one retrain now (as the Cloud Run Job does)")
    retrain.set_defaults(handler=_retrain)
    demo = commands.add_parser("demo", help="run the whole loop locally on real emulators, as a timeline")
    demo.add_argument("--keep", action="store_true", help="leave the demo stack running afterwards")
    demo.add_argument("--down", action="store_true", help="stop a demo stack left running with --keep")
    demo.add_argument(
        "--story",
        choices=("segment", "outcome"),
        default="segment",
        help="segment: traffic shifts to a segment v1 barely saw (drift); outcome: a segment's churn changes "
        "with the inputs unchanged (the performance rule)",
    )
    demo.set_defaults(handler=_demo)
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
