"""Service specs of the local stack: one client environment, the fake-gcs-server binary for this platform."""

from __future__ import annotations

import os
import platform
import socket
from pathlib import Path

import pytest

from churnflow.local import services
from churnflow.settings import CommonSettings, LocalStackSettings

LOCAL = LocalStackSettings(state_dir=Path("/tmp/state"), gcs_port=1001, pubsub_port=1002, mlflow_port=1003)
COMMON = CommonSettings(CHURNFLOW_PROJECT="p", bucket="b", model_name="m", retrain_topic="t")
CLIENT_ENV = {
    "STORAGE_EMULATOR_HOST": "http://127.0.0.1:1001",
    "PUBSUB_EMULATOR_HOST": "127.0.0.1:1002",
    "MLFLOW_TRACKING_URI": "http://127.0.0.1:1003",
    "CHURNFLOW_BUCKET": "b",
    "CHURNFLOW_PROJECT": "p",
    "GOOGLE_CLOUD_PROJECT": "p",
}


def test_client_env_points_at_each_emulator():
    assert services.stack_env(LOCAL, COMMON) == CLIENT_ENV
    ports = {"gcs": 1001, "pubsub": 1002, "mlflow": 1003}
    assert services.client_env("127.0.0.1", ports, "p", "b") == CLIENT_ENV


def test_every_app_gets_the_client_env_plus_its_own():
    specs = {spec.name: spec for spec in services.app_specs(LOCAL, COMMON, services.APPS)}
    assert list(specs) == list(services.APPS)
    common = CLIENT_ENV | {"CHURNFLOW_MODEL_NAME": "m", "CHURNFLOW_RETRAIN_TOPIC": "t", "PYTHONUNBUFFERED": "1"}
    assert specs["monitor"].env == specs["scheduler"].env == common
    assert specs["predict"].env == common | {
        "CHURNFLOW_POLL_INTERVAL_S": "5.0",
        "CHURNFLOW_SPOOL_DIR": "/tmp/state/predict-spool",
    }
    assert specs["trigger"].env == common | {
        "CHURNFLOW_JOB_LAUNCHER": "subprocess",
        "CHURNFLOW_JOB_LOG_DIR": "/tmp/state",
    }
    assert specs["trigger"].ready_status == 405
    assert specs["dashboard"].env == common | {"CHURNFLOW_DASHBOARD_REFRESH_S": "5"}
    assert specs["dashboard"].argv[1:3] == ["-m", "churnflow.monitoring.dashboard"]


def test_mlflow_server_reaches_the_gcs_emulator_and_runs_no_jobs():
    env = services.mlflow_spec(LOCAL, COMMON).env
    assert env["STORAGE_EMULATOR_HOST"] == CLIENT_ENV["STORAGE_EMULATOR_HOST"]
    assert env["GOOGLE_CLOUD_PROJECT"] == "p"
    assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert "MLFLOW_TRACKING_URI" not in env


def test_only_known_apps_are_accepted():
    assert services.app_specs(LOCAL, COMMON, ()) == []
    with pytest.raises(services.StackError, match=r"unknown service\(s\) \['web'\]; choose from predict"):
        services.app_specs(LOCAL, COMMON, ("predict", "web"))


@pytest.mark.parametrize(
    ("system", "machine", "name"),
    [
        ("Linux", "x86_64", "fake-gcs-server-linux-amd64"),
        ("Linux", "aarch64", "fake-gcs-server-linux-arm64"),
        ("Darwin", "arm64", "fake-gcs-server-darwin-arm64"),
    ],
)
def test_fake_gcs_binary_is_named_by_os_and_go_arch(system, machine, name):
    assert services.fake_gcs_binary_name(system, machine) == name


def test_an_unsupported_architecture_is_a_missing_prerequisite():
    with pytest.raises(services.PrerequisiteMissing, match=r"not built for this machine's architecture \(riscv64\)"):
        services.fake_gcs_binary_name("Linux", "riscv64")


def test_the_bundled_binary_for_this_platform_is_executable():
    binary = services.fake_gcs_binary()
    assert binary.name == services.fake_gcs_binary_name(platform.system(), platform.machine())
    assert os.access(binary, os.X_OK)


def test_a_wheel_for_another_platform_is_a_missing_prerequisite(monkeypatch):
    monkeypatch.setattr(services.platform, "system", lambda: "Plan9")
    with pytest.raises(services.PrerequisiteMissing, match=r"no fake-gcs-server-plan9-\w+ in .* \(bundled: fake-gcs"):
        services.fake_gcs_binary()


def test_a_port_in_use_is_reported_with_the_variable_that_moves_it():
    with socket.socket() as stranger:
        stranger.bind(("127.0.0.1", 0))
        stranger.listen()
        port = stranger.getsockname()[1]
        spec = services.ServiceSpec("mlflow", [], port, f"http://127.0.0.1:{port}/health", f"http://127.0.0.1:{port}")
        with pytest.raises(services.StackError, match=f"port {port} for mlflow .* CHURNFLOW_LOCAL_MLFLOW_PORT"):
            services.check_ports([spec])
    services.check_ports([spec])  # released: free again


def test_nothing_listening_is_not_ready():
    assert not services.ready("http://127.0.0.1:9/", None)
