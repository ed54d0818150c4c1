"""The one-shot `init` service of docker-compose.local.yml: the resources `churnflow local up` creates
(bucket and training data, topics, audit and push subscriptions), then a first model.

Runs in the retrain image, with the emulators' addresses in the standard variables. Idempotent: a
rerun creates nothing twice and trains only while the registry has no champion.

    python infra/local/init.py --trigger-url http://trigger:8082/
"""

from __future__ import annotations

import argparse
import logging
import os

from churnflow.local import bootstrap
from churnflow.logs import configure_logging
from churnflow.registry import write as registry_write
from churnflow.settings import TrainSettings
from churnflow.training.register import run_training

log = logging.getLogger("churnflow.local.init")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trigger-url", required=True, help="where the push subscription delivers")
    args = parser.parse_args(argv)
    configure_logging()
    settings = TrainSettings()
    pubsub = os.environ["PUBSUB_EMULATOR_HOST"]
    bootstrap.bootstrap_storage(os.environ["STORAGE_EMULATOR_HOST"], settings.project, settings.bucket)
    bootstrap.bootstrap_pubsub(pubsub, settings.project, settings.retrain_topic)
    bootstrap.ensure_push_subscription(pubsub, settings.project, settings.retrain_topic, args.trigger_url)
    registry_write.configure_client(settings)
    champion = registry_write.champion_version(settings)
    if champion is None:
        champion = run_training(settings).version.version
        log.info("trained the first model: %s v%s is the champion", settings.model_name, champion)
    else:
        log.info("%s@%s is v%s already: no training", settings.model_name, settings.champion_alias, champion)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
