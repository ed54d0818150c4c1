"""Shared fixtures: environment isolation for every test, and the real local stack for those that ask."""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from churnflow.local.stack import StackInfo, down, up
from churnflow.settings import CommonSettings, LocalStackSettings

pytest_plugins = ["fixtures_data", "fixtures_demo"]

# GOOGLE_CLOUD_PROJECT too: CommonSettings reads it, and a developer's may name a real project
ISOLATED = ("STORAGE_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST", "MLFLOW_TRACKING_URI", "GOOGLE_CLOUD_PROJECT")
TEST_PROJECT = "churnflow-test"
TEST_BUCKET = "churnflow-test"


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hide the developer's emulator and ChurnFlow variables from every test."""
    if "mlflow" in sys.modules:  # forget the tracking URI an earlier test set globally (it exports the variable too)
        sys.modules["mlflow"].set_tracking_uri(None)
    for name in list(os.environ):
        if name in ISOLATED or name.startswith("CHURNFLOW_"):
            monkeypatch.delenv(name)


def free_ports(count: int) -> list[int]:
    """`count` distinct ports that were free a moment ago (bound together to port 0, then released)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@contextmanager
def uvicorn_server(app: Any) -> Iterator[int]:
    """`app` served by a real uvicorn server on 127.0.0.1 (in a thread) while in the block; yields its port."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        thread.join()


def stack_settings(state_dir: Path) -> tuple[LocalStackSettings, CommonSettings]:
    """Settings for a throwaway stack on free ports; every field given explicitly, none read from env."""
    gcs_port, pubsub_port, mlflow_port = free_ports(3)
    local = LocalStackSettings(
        state_dir=state_dir,
        host="127.0.0.1",
        gcs_port=gcs_port,
        pubsub_port=pubsub_port,
        mlflow_port=mlflow_port,
        startup_timeout_s=90,
    )
    # `project` is read through its alias only (validation_alias without populate_by_name)
    common = CommonSettings(CHURNFLOW_PROJECT=TEST_PROJECT, bucket=TEST_BUCKET, retrain_topic="retrain-requests")
    return local, common


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackInfo]:
    """The real GCS, Pub/Sub and MLflow emulators on free ports, started once per session."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    # a SIGTERM (e.g. from `timeout`) would end pytest without teardown and orphan the servers
    previous = signal.signal(signal.SIGTERM, interrupt)
    local, common = stack_settings(tmp_path_factory.mktemp("local-stack"))
    try:
        yield up(local, common)
    finally:
        down(local)
        signal.signal(signal.SIGTERM, previous)


@pytest.fixture
def private_stack_settings(tmp_path: Path) -> tuple[LocalStackSettings, CommonSettings]:
    """Settings for a test's own stack (state under tmp_path, free ports); the test starts and stops it."""
    return stack_settings(tmp_path / "stack")


@pytest.fixture
def stack_env(local_stack: StackInfo, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The session stack's client variables, set in os.environ for one test."""
    env = local_stack.env()
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env
