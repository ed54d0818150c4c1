"""The lock files (`make lock`, infra/lock.py): resolved from what pyproject.toml declares now, every
declared requirement pinned inside its range with hashes, and the images free of the MLflow server's
packages. Checked without a network: each lock carries a digest of the requirement lines it came from."""

from __future__ import annotations

import copy
import importlib.util
import re
import sys
import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from churnflow.settings import REPO_ROOT


def load_lock_module():
    spec = importlib.util.spec_from_file_location("lock", REPO_ROOT / "infra" / "lock.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


lock = load_lock_module()
PROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$")


def pins(path) -> dict[str, list[tuple[str, str | None, int]]]:
    """name -> [(version, marker, number of hashes)] of one lock file (a universal lock may pin a name twice)."""
    found: dict[str, list[tuple[str, str | None, int]]] = {}
    lines = path.read_text().splitlines()
    for number, line in enumerate(lines):
        match = PIN.match(line)
        if match:
            hashes = 0
            for following in lines[number + 1 :]:
                if not following.startswith("    --hash="):
                    break
                hashes += 1
            name, version, marker = match.groups()
            found.setdefault(canonicalize_name(name), []).append((version, marker, hashes))
    return found


LOCKS = sorted(lock.inputs(PROJECT))


def test_there_is_a_lock_for_the_dev_environment_and_each_image():
    assert sorted(["requirements-dev.lock"] + [lock.lock_path(path) for path in lock.gen.DEPLOYABLES]) == LOCKS
    assert all((REPO_ROOT / path).exists() for path in LOCKS)


def test_every_lock_was_resolved_from_what_pyproject_declares_now():
    assert lock.stale(PROJECT) == [], "run `make lock`"
    assert lock.main(["--check"]) == 0


def test_a_changed_declaration_makes_the_locks_stale():
    bumped = copy.deepcopy(PROJECT)
    bumped["dependencies"] = [*bumped["dependencies"], "six>=1.16,<2"]
    assert sorted(lock.stale(bumped)) == sorted(path for path in LOCKS if path != "infra/mlflow/requirements.lock")
    narrowed = copy.deepcopy(PROJECT)
    narrowed["optional-dependencies"]["mlflow-server"][0] = "mlflow>=3.2,<4"
    assert lock.stale(narrowed) == ["infra/mlflow/requirements.lock"]


@pytest.mark.parametrize("path", LOCKS)
def test_every_declared_requirement_is_pinned_inside_its_range_with_hashes(path):
    pinned = pins(REPO_ROOT / path)
    assert pinned, path
    assert all(hashes >= 1 for entries in pinned.values() for _, _, hashes in entries), path
    environment = {"python_version": "3.11", "sys_platform": "linux", "platform_system": "Linux"}
    for line in lock.inputs(PROJECT)[path]:
        requirement = Requirement(line)
        if requirement.marker and not requirement.marker.evaluate(environment):
            continue
        versions = [version for version, _, _ in pinned.get(canonicalize_name(requirement.name), [])]
        assert versions, f"{path}: {requirement.name} is not pinned"
        assert all(requirement.specifier.contains(v, prereleases=True) for v in versions), (path, line, versions)


@pytest.mark.parametrize("path", ["functions/monitor/requirements.lock", "functions/retrain/requirements.lock"])
def test_the_monitor_and_retrain_images_get_mlflows_client_not_its_server(path):
    pinned = set(pins(REPO_ROOT / path))
    assert "mlflow-skinny" in pinned
    # (matplotlib is in the retrain image on purpose: it draws every run's evaluation plots)
    assert pinned & {"mlflow", "alembic", "sqlalchemy", "graphene", "docker"} == set()


def test_the_images_are_pinned_to_the_versions_the_dev_environment_tests():
    dev = {name: {version for version, _, _ in entries} for name, entries in pins(REPO_ROOT / lock.DEV_LOCK).items()}
    for path in LOCKS:
        for name, entries in pins(REPO_ROOT / path).items():
            if name in dev:
                assert {version for version, _, _ in entries} <= dev[name], (path, name)
