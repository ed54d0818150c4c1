"""`churnflow local up|status|env|down` as a user runs them: a real stack on free ports, from the command line."""

import os
import subprocess
import sys

import pytest

from churnflow.local import stack
from churnflow.settings import LocalStackSettings
from conftest import free_ports

pytestmark = pytest.mark.integration


def churnflow(env, *args):
    return subprocess.run(
        [sys.executable, "-m", "churnflow.cli", *args], env=env, capture_output=True, text=True, timeout=300
    )


def test_local_up_reports_its_waits_on_stderr_and_its_services_on_stdout(tmp_path):
    gcs, pubsub, mlflow = free_ports(3)
    env = {
        **os.environ,
        "CHURNFLOW_LOCAL_STATE_DIR": str(tmp_path / "state"),
        "CHURNFLOW_LOCAL_GCS_PORT": str(gcs),
        "CHURNFLOW_LOCAL_PUBSUB_PORT": str(pubsub),
        "CHURNFLOW_LOCAL_MLFLOW_PORT": str(mlflow),
        "CHURNFLOW_LOCAL_STARTUP_TIMEOUT_S": "120",
    }
    try:
        started = churnflow(env, "local", "up")
        assert started.returncode == 0, started.stderr
        for name in ("gcs", "pubsub", "mlflow"):
            assert f"{name} ready (" in started.stderr  # the progress lines: one per service
        assert "Traceback" not in started.stderr
        assert f"export MLFLOW_TRACKING_URI=http://127.0.0.1:{mlflow}" in started.stdout
        assert f"export STORAGE_EMULATOR_HOST=http://127.0.0.1:{gcs}" in started.stdout
        table = started.stdout.split("up in ")[0]
        assert all(f"http://127.0.0.1:{port}" in table for port in (gcs, pubsub, mlflow))

        status = churnflow(env, "local", "status")
        assert status.returncode == 0 and status.stdout.count("True") == 6  # running and ready, 3 services
        exports = churnflow(env, "local", "env")
        assert exports.returncode == 0 and exports.stdout == started.stdout.split("\n\n", 1)[1]
    finally:
        stopped = churnflow(env, "local", "down")
    assert stopped.returncode == 0 and stopped.stdout.startswith("stopped: gcs, pubsub, mlflow")
    assert stack.status(LocalStackSettings(state_dir=tmp_path / "state")) == []
