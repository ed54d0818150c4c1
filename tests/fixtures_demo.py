"""Session fixture of the end-to-end tests: the closed loop, run once exactly as `make demo` runs it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from churnflow.local import stack
from churnflow.settings import CommonSettings, LocalStackSettings
from churnflow.sim import demo
from conftest import free_ports

SERVICES = ("gcs", "pubsub", "mlflow", "predict", "monitor", "trigger", "scheduler", "dashboard")


@dataclass(frozen=True)
class DemoRun:
    """The stack the loop ran on (still up) and what it did."""

    local: LocalStackSettings
    common: CommonSettings
    result: demo.LoopResult
    lines: list[str]


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoRun]:
    """The demo's loop on a private stack with every service on free ports; stopped after the session."""
    ports = dict(zip(SERVICES, free_ports(len(SERVICES)), strict=True))
    local = demo.demo_settings().model_copy(
        update={"state_dir": tmp_path_factory.mktemp("demo") / "stack", **{f"{n}_port": p for n, p in ports.items()}}
    )
    common = CommonSettings(bucket="churnflow-e2e", CHURNFLOW_PROJECT="churnflow-e2e")
    lines: list[str] = []
    try:
        yield DemoRun(local, common, demo.run_loop(local, common, demo.Timeline(lines.append)), lines)
    finally:
        stack.down(local)
