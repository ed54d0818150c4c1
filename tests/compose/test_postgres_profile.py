"""The Postgres profile exactly as the compose file's header (and the README) document it: MLflow keeps its
registry in the postgres service."""

from __future__ import annotations

import re

import pytest
from compose_project import COMPOSE_FILE, engine, new_project, project_factory  # noqa: F401
from mlflow import MlflowClient

from churnflow.settings import REPO_ROOT

pytestmark = pytest.mark.timeout(1200)


def documented_uri(path) -> str:
    [uri] = set(re.findall(r"MLFLOW_BACKEND_STORE_URI=(\S+)", path.read_text()))
    return uri


def test_the_readme_and_the_compose_file_document_the_same_uri():
    assert documented_uri(REPO_ROOT / "README.md") == documented_uri(COMPOSE_FILE)


def test_mlflow_keeps_its_registry_in_postgres(project_factory):  # noqa: F811 (the imported fixture)
    project = new_project(
        profiles=("postgres",),
        extra_env={"MLFLOW_BACKEND_STORE_URI": documented_uri(COMPOSE_FILE)},
    )
    project_factory.append(project)
    project.check("up", "--build", "--wait", "--wait-timeout", "300", "mlflow")
    assert {c["Service"] for c in project.containers()} == {"gcs", "postgres", "mlflow"}

    MlflowClient(project.url("mlflow")).create_registered_model("compose-postgres-probe")
    rows = project.check(
        "exec",
        "-T",
        "postgres",
        "psql",
        "-U",
        "mlflow",
        "-d",
        "mlflow",
        "-tAc",
        "SELECT name FROM registered_models",
        timeout=60,
    )
    assert "compose-postgres-probe" in rows.split()

    project.check("down", "--volumes", "--remove-orphans", timeout=300)
    assert project.leftovers() == {"containers": [], "networks": [], "volumes": []}
