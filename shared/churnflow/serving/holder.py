"""The model holder: resolves `<model>@<alias>` in the registry, polls it, swaps scorers atomically.

Requests read `holder.current` once and use that object to the end, so a swap never mixes two
versions in one response and never fails a request in flight. A new version is served only after
its artifact has been downloaded, compiled and smoke-scored; otherwise it is refused and the current
one keeps serving. Registry outages are logged and counted, never raised to requests.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field

from churnflow.core import schema
from churnflow.core.scorer import CompiledScorer, InvalidScorerArtifact
from churnflow.registry import tags
from churnflow.registry.read import AliasNotFound, ModelVersion, RegistryClient, RegistryError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LoadedModel:
    """One served model version and its compiled scorer."""

    version: ModelVersion
    alias: str
    scorer: CompiledScorer
    loaded_at: float

    @property
    def number(self) -> int:
        """The registry version number, named in every response."""
        return self.version.version

    @property
    def data_fingerprint(self) -> str | None:
        """The fingerprint of the data the version was trained on."""
        return self.version.tags.get(tags.DATA_FINGERPRINT)

    def metrics(self) -> dict[str, float]:
        """The evaluation metrics the training run tagged on the version (`metric.<name>`)."""
        found: dict[str, float] = {}
        for key, value in self.version.tags.items():
            if key.startswith(tags.METRIC_PREFIX):
                try:
                    found[key[len(tags.METRIC_PREFIX) :]] = float(value)
                except ValueError:
                    log.warning("ignoring non-numeric metric tag %s=%r", key, value)
        return found


@dataclass
class HolderStats:
    """What the holder has done since start (read by /stats and the tests)."""

    refreshes: int = 0
    swaps: int = 0
    refused: int = 0
    registry_errors: int = 0
    last_error: str | None = field(default=None)
    """The latest failure of the latest refresh; None once the registry answers again."""


class ModelHolder:
    """Keeps the current champion and replaces it when the alias moves to a valid new version."""

    def __init__(self, registry: RegistryClient, model_name: str, alias: str, poll_interval_s: float):
        self.registry = registry
        self.model_name = model_name
        self.alias = alias
        self.poll_interval_s = poll_interval_s
        self.stats = HolderStats()
        self._current: LoadedModel | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def current(self) -> LoadedModel | None:
        """The model serving now, or None before the first champion was loaded."""
        return self._current

    def refresh(self) -> LoadedModel | None:
        """Resolve the alias once; load and swap to its version if it is new and valid."""
        self.stats.refreshes += 1
        current = self._current
        try:
            version = self.registry.version_by_alias(self.model_name, self.alias)
        except AliasNotFound:
            self.stats.last_error = None
            log.warning("no model %s@%s in the registry yet", self.model_name, self.alias)
            return current
        except RegistryError as error:
            self._failed(f"registry unreachable: {error}")
            self.stats.registry_errors += 1
            return current
        if current is not None and current.number == version.version:
            self.stats.last_error = None  # the registry answers and the version serves: earlier errors are over
            return current
        try:
            loaded = self._load(version)
        except (InvalidScorerArtifact, RegistryError) as error:
            self.stats.refused += 1
            self._failed(f"refused {version.name} v{version.version}: {error}")
            return current
        self._current = loaded
        self.stats.last_error = None
        self.stats.swaps += 1
        log.info(
            "serving %s v%s (was %s)",
            version.name,
            version.version,
            current.number if current else None,
            extra={"model_version": version.version, "run_id": version.run_id},
        )
        return loaded

    def _load(self, version: ModelVersion) -> LoadedModel:
        scorer = CompiledScorer(self.registry.scorer_artifact(version))
        probability = scorer.probability(schema.EXAMPLE_CUSTOMER)
        if not (math.isfinite(probability) and 0.0 <= probability <= 1.0):
            raise InvalidScorerArtifact(f"scores the example customer as {probability!r}")
        return LoadedModel(version, self.alias, scorer, time.time())

    def _failed(self, message: str) -> None:
        self.stats.last_error = message
        log.error(message, extra={"model_name": self.model_name, "alias": self.alias})

    def start(self) -> None:
        """Load the champion now (if there is one) and keep polling in a daemon thread."""
        self.refresh()
        self._stop.clear()
        self._thread = threading.Thread(target=self._poll, name="champion-poller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop polling; the current model stays loaded."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.registry.timeout_s * 3 + 1)
            self._thread = None

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_interval_s):
            self.refresh()
