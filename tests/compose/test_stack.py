"""The whole stack of docker-compose.local.yml on a real engine: built, up with --wait, used from the host
as a user would (predict, MLflow, the monitor, the trigger starting a retrain job), stopped and taken down.

The tests run in file order on one project: the last two stop it and take it down.
"""

from __future__ import annotations

import os
import re
import time
from datetime import UTC, datetime

import httpx
import pytest
from compose_project import (  # noqa: F401
    SERVICES_WITH_PORTS,
    ComposeProject,
    dangling_images,
    engine,
    new_project,
    project_factory,
)
from google.cloud import pubsub_v1
from mlflow import MlflowClient

from churnflow.core.schema import EXAMPLE_CUSTOMER
from churnflow.storage import gcs, layout
from factories import retrain_request

pytestmark = pytest.mark.timeout(1800)

PROJECT = BUCKET = "churnflow-local"  # docker-compose.local.yml's CHURNFLOW_PROJECT and CHURNFLOW_BUCKET
IMAGES = ("churnflow/predict:local", "churnflow/monitor:local", "churnflow/retrain:local", "churnflow/mlflow:local")


@pytest.fixture(scope="module")
def stack(project_factory) -> dict:  # noqa: F811 (the imported fixture)
    """The project built and up (every service healthy, `init` done), with what the build printed."""
    project = new_project()
    project_factory.append(project)
    started = datetime.now(UTC)
    build = project.check("--progress", "plain", "build")
    project.check("up", "--wait", "--wait-timeout", "600")
    return {"project": project, "build": build, "started": started}


@pytest.fixture(scope="module")
def project(stack) -> ComposeProject:
    return stack["project"]


@pytest.fixture
def host_gcs(project, monkeypatch):
    """google-cloud-storage on the host pointed at the compose GCS emulator."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", project.url("gcs"))


def test_each_image_is_built_once_and_leaves_no_dangling_image(stack):
    named = re.findall(r"naming to (?:docker\.io/)?(churnflow/[a-z]+:local)", stack["build"])
    assert sorted(named) == sorted(IMAGES)
    assert dangling_images(since=stack["started"]) == set()


def test_every_service_is_up_and_healthy(project):
    states = {c["Service"]: (c["State"], c.get("Health", "")) for c in project.containers()}
    assert states.pop("init")[0] == "exited"
    assert states == {name: ("running", "healthy") for name in SERVICES_WITH_PORTS}


def test_ports_are_published_on_the_loopback_interface_only(project):
    published = {
        (c["Service"], p["URL"], p["PublishedPort"])
        for c in project.containers()
        for p in c.get("Publishers") or []
        if p["PublishedPort"]
    }
    assert published == {(service, "127.0.0.1", port) for service, port in project.ports.items()}


def test_predict_is_ready_and_scores_with_the_first_champion(project):
    with httpx.Client(base_url=project.url("predict"), timeout=10) as client:
        assert client.get("/ready").status_code == 200
        answer = client.post("/predict", json=EXAMPLE_CUSTOMER)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["model_version"] == 1 and 0 <= body["churn_probability"] <= 1


def test_mlflow_holds_the_registered_champion(project):
    client = MlflowClient(project.url("mlflow"))
    assert client.get_model_version_by_alias("churn", "champion").version == "1"
    assert [v.version for v in client.search_model_versions("name='churn'")] == ["1"]


def test_the_mlflow_ui_answers_the_hosts_a_local_browser_sends_and_no_other(project):
    port = project.ports["mlflow"]
    with httpx.Client(base_url=project.url("mlflow"), timeout=10) as client:
        for host in (f"localhost:{port}", f"127.0.0.1:{port}"):
            assert client.get("/", headers={"Host": host}).status_code == 200, host
        assert client.get("/", headers={"Host": "rebinding.example:5000"}).status_code == 403


def test_a_monitor_check_runs(project):
    answer = httpx.post(project.url("monitor") + "/", timeout=120)
    assert answer.status_code == 200, answer.text
    check = answer.json()
    assert check["champion_version"] == 1 and check["status"] in {"insufficient_data", "no_drift", "drift"}


def test_a_published_request_starts_a_job_whose_output_reaches_compose_logs(project, host_gcs):
    now = datetime.now(UTC)
    request = retrain_request(
        champion_version=1,
        window_start=now,
        window_end=now,
        check_id="compose-test",
        report_uri=layout.gs_uri(BUCKET, layout.report_object("compose-test")),
    )
    os.environ["PUBSUB_EMULATOR_HOST"] = f"127.0.0.1:{project.ports['pubsub']}"
    try:
        publisher = pubsub_v1.PublisherClient()
        message_id = publisher.publish(publisher.topic_path(PROJECT, "retrain-requests"), request.to_bytes()).result(60)
    finally:
        del os.environ["PUBSUB_EMULATOR_HOST"]
    finished = re.compile(r"retrain (promoted|rejected|skipped)")
    deadline = time.monotonic() + 600
    while not finished.search(logs := project.logs("trigger")) and time.monotonic() < deadline:
        time.sleep(5)
    assert f"retrain started for message {message_id}" in logs
    assert finished.search(logs), logs[-3000:]
    # the trigger's record of the message, read from the host (its mediaLink names host `gcs`)
    record, generation = gcs.read_json(PROJECT, BUCKET, layout.message_record(message_id))
    assert record is not None and generation > 0


def test_no_service_prints_gitpythons_missing_git_warning(project):
    logs = project.logs()
    assert "git executable" not in logs.lower() and "GIT_PYTHON_REFRESH" not in logs


def test_every_service_stops_on_sigterm_without_being_killed(project):
    project.check("stop", timeout=300)  # each service's own grace period, as `down` uses
    killed = [
        (c["Service"], c["ExitCode"]) for c in project.containers() if c["ExitCode"] == 137 or c["State"] != "exited"
    ]
    assert killed == []


def test_down_leaves_nothing_behind(stack, project):
    project.check("down", "--volumes", "--remove-orphans", timeout=300)
    assert project.leftovers() == {"containers": [], "networks": [], "volumes": []}
    assert dangling_images(since=stack["started"]) == set()
