"""The model holder loads the champion, swaps to valid new versions and refuses broken ones."""

import json
import time

import pytest

from churnflow.core import schema, scorer
from churnflow.registry import tags
from churnflow.registry.read import AliasNotFound, ModelVersion, RegistryClient, RegistryError
from churnflow.serving.holder import ModelHolder
from churnflow.training import compiler


class FakeRegistry(RegistryClient):
    """An in-memory registry: versions with artifacts (or errors), one alias, an on/off switch."""

    def __init__(self):
        super().__init__("http://registry.invalid", timeout_s=0.1)
        self.artifacts = {}
        self.champion = None
        self.down = False
        self.downloads = 0

    def version_by_alias(self, name, alias):
        if self.down:
            raise RegistryError("connection refused")
        if self.champion is None:
            raise AliasNotFound(f"{name}@{alias} is not set")
        found = {f"{tags.METRIC_PREFIX}roc_auc": "0.840000", tags.DATA_FINGERPRINT: f"fp{self.champion}"}
        return ModelVersion(name, self.champion, f"run{self.champion}", "", found, (alias,), 1_700_000_000_000)

    def scorer_artifact(self, version):
        self.downloads += 1
        found = self.artifacts[version.version]
        if isinstance(found, Exception):
            raise found
        return found


@pytest.fixture(scope="module")
def artifact(training_result):
    return json.loads(json.dumps(compiler.compile_pipeline(training_result.model)))


@pytest.fixture
def registry(artifact):
    fake = FakeRegistry()
    fake.artifacts[1] = artifact
    fake.champion = 1
    return fake


def holder_for(registry, poll_interval_s=60.0):
    return ModelHolder(registry, "churn", "champion", poll_interval_s)


def shifted(artifact, delta):
    return {**artifact, "intercept": artifact["intercept"] + delta}


def test_loads_the_champion_with_its_metadata(registry, artifact):
    holder = holder_for(registry)
    loaded = holder.refresh()
    assert loaded is holder.current and loaded.number == 1
    assert loaded.metrics() == {"roc_auc": 0.84}
    assert loaded.data_fingerprint == "fp1"
    expected = scorer.CompiledScorer(artifact).probability(schema.EXAMPLE_CUSTOMER)
    assert loaded.scorer.probability(schema.EXAMPLE_CUSTOMER) == expected


def test_no_champion_yet_then_one_appears(registry):
    registry.champion = None
    holder = holder_for(registry)
    assert holder.refresh() is None and holder.current is None
    registry.champion = 1
    assert holder.refresh().number == 1


def test_swaps_only_when_the_alias_moves(registry, artifact):
    holder = holder_for(registry)
    first = holder.refresh()
    assert holder.refresh() is first and registry.downloads == 1
    registry.artifacts[2] = shifted(artifact, 1.0)
    registry.champion = 2
    second = holder.refresh()
    assert second.number == 2 and holder.current is second
    assert second.scorer.log_odds(schema.EXAMPLE_CUSTOMER) == pytest.approx(
        first.scorer.log_odds(schema.EXAMPLE_CUSTOMER) + 1.0
    )
    assert holder.stats.swaps == 2


@pytest.mark.parametrize(
    "broken",
    [
        {"format": "something-else/v1"},
        "nan-intercept",
        AliasNotFound("artifact compiled/scorer.json does not exist"),
        RegistryError("v2 has no churnflow.scorer_artifact tag"),
    ],
)
def test_broken_versions_are_refused_and_the_current_one_keeps_serving(registry, artifact, broken):
    holder = holder_for(registry)
    holder.refresh()
    registry.artifacts[2] = shifted(artifact, float("nan")) if broken == "nan-intercept" else broken
    registry.champion = 2
    assert holder.refresh().number == 1
    assert holder.stats.refused == 1 and "refused churn v2" in holder.stats.last_error


def test_registry_outage_keeps_the_current_model(registry):
    holder = holder_for(registry)
    holder.refresh()
    registry.down = True
    assert holder.refresh().number == 1
    assert holder.stats.registry_errors == 1


def test_the_last_error_clears_when_the_registry_answers_again_and_stays_while_a_refusal_lasts(registry):
    holder = holder_for(registry)
    registry.down = True
    holder.refresh()
    assert "registry unreachable" in holder.stats.last_error
    registry.down = False
    assert holder.refresh().number == 1
    assert holder.stats.last_error is None
    registry.artifacts[2] = {"broken": True}
    registry.champion = 2
    holder.refresh()
    holder.refresh()
    assert "refused churn v2" in holder.stats.last_error


def test_poller_picks_up_a_new_champion(registry, artifact):
    holder = holder_for(registry, poll_interval_s=0.02)
    holder.start()
    try:
        assert holder.current.number == 1
        registry.artifacts[2] = shifted(artifact, 0.5)
        registry.champion = 2
        deadline = time.monotonic() + 5
        while holder.current.number != 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert holder.current.number == 2
    finally:
        holder.stop()
