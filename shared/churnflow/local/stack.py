"""The local emulator stack: `up`, `down`, `status`, and the state file that ties them together.

What was started is recorded in `<state_dir>/stack.json` (pid, process group, creation time, argv,
env); `down` stops exactly those processes and nothing else. Service definitions live in
`services`, process supervision in `processes`.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

from churnflow.local import processes, services
from churnflow.local.processes import ServiceRecord
from churnflow.local.services import APPS, PrerequisiteMissing, ServiceSpec, StackError
from churnflow.settings import CommonSettings, LocalStackSettings

__all__ = [
    "APPS",
    "PrerequisiteMissing",
    "ServiceStatus",
    "StackError",
    "StackInfo",
    "down",
    "load_info",
    "status",
    "up",
]

logger = logging.getLogger(__name__)

STATE_FILE = "stack.json"


@dataclass(frozen=True)
class ServiceStatus:
    """What `status` reports about one recorded service."""

    name: str
    pid: int
    port: int
    url: str
    running: bool
    ready: bool


@dataclass(frozen=True)
class StackInfo:
    """Where the running stack is, and how long its services took to become ready."""

    state_dir: Path
    host: str
    project: str
    bucket: str
    services: dict[str, ServiceRecord]
    started: tuple[str, ...] = ()  # services started by this call (the others were already running)
    total_s: float = 0.0

    def has_emulators(self) -> bool:
        """GCS, Pub/Sub and MLflow are all recorded, so `env` can be given."""
        return set(services.EMULATORS) <= self.services.keys()

    def env(self) -> dict[str, str]:
        """The environment variables a client needs to use this stack."""
        ports = {name: record.port for name, record in self.services.items()}
        return services.client_env(self.host, ports, self.project, self.bucket)


def up(
    settings: LocalStackSettings,
    common: CommonSettings,
    apps: tuple[str, ...] = (),
    progress: processes.Progress | None = None,
) -> StackInfo:
    """Start whatever is not already running and healthy, bootstrap resources; idempotent.

    `apps` adds ChurnFlow's own services (see APPS) on top of the emulators; services running but
    not asked for are stopped, so the stack is what the last `up` described. `progress` hears of the
    waits for services to become ready (see processes.wait_ready).
    """
    from churnflow.local import bootstrap  # cloud clients and gRPC: loaded only when a stack starts

    began = time.monotonic()
    settings = _resolved(settings)
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    with _locked(settings.state_dir):
        records = _load(settings.state_dir)
        gcs = services.gcs_spec(settings)
        later = [services.pubsub_spec(settings), services.mlflow_spec(settings, common)]
        apps_specs = services.app_specs(settings, common, apps)
        every = (gcs, *later, *apps_specs)
        keep = {spec.name for spec in every if _healthy_and_current(records.get(spec.name), spec)}
        processes.stop([records.pop(name) for name in list(records) if name not in keep])
        _save(settings, common, records)
        services.check_ports([spec for spec in every if spec.name not in keep])

        env = services.stack_env(settings, common)
        started: list[str] = []
        try:
            _start(settings, common, [gcs], keep, records, started, progress)
            bootstrap.bootstrap_storage(env["STORAGE_EMULATOR_HOST"], common.project, common.bucket)
            _start(settings, common, later, keep, records, started, progress)
            bootstrap.bootstrap_pubsub(env["PUBSUB_EMULATOR_HOST"], common.project, common.retrain_topic)
            if "trigger" in apps:
                endpoint = f"http://{settings.host}:{settings.trigger_port}/"
                bootstrap.ensure_push_subscription(
                    env["PUBSUB_EMULATOR_HOST"], common.project, common.retrain_topic, endpoint
                )
            _start(settings, common, apps_specs, keep, records, started, progress)
        except BaseException:
            processes.stop([records.pop(name) for name in started])
            _save(settings, common, records)
            raise
    elapsed = time.monotonic() - began
    info = StackInfo(settings.state_dir, settings.host, common.project, common.bucket, records, tuple(started), elapsed)
    logger.info("local stack up in %.2fs (started: %s)", info.total_s, ", ".join(started) or "nothing")
    return info


def down(settings: LocalStackSettings) -> list[str]:
    """Stop every service recorded in stack.json (process group: SIGTERM, then SIGKILL); return their names."""
    settings = _resolved(settings)
    if not settings.state_dir.is_dir():
        return []
    with _locked(settings.state_dir):
        records = _load(settings.state_dir)
        processes.stop(list(records.values()))
        (settings.state_dir / STATE_FILE).unlink(missing_ok=True)
    return list(records)


def status(settings: LocalStackSettings) -> list[ServiceStatus]:
    """Per recorded service: is its process alive, and does it answer its readiness check."""
    result = []
    for record in _load(settings.state_dir).values():
        running = processes.is_alive(record)
        ready = running and services.ready(record.ready_url, record.ready_body, record.ready_status)
        result.append(ServiceStatus(record.name, record.pid, record.port, record.url, running, ready))
    return result


def load_info(settings: LocalStackSettings) -> StackInfo | None:
    """The stack recorded in stack.json, or None when nothing is recorded."""
    path = settings.state_dir / STATE_FILE
    if not path.exists():
        return None
    raw = json.loads(path.read_text())
    return StackInfo(settings.state_dir, raw["host"], raw["project"], raw["bucket"], _load(settings.state_dir))


def _start(
    settings: LocalStackSettings,
    common: CommonSettings,
    specs: list[ServiceSpec],
    keep: set[str],
    records: dict[str, ServiceRecord],
    started: list[str],
    progress: processes.Progress | None = None,
) -> None:
    """Spawn the specs not kept, record them at once (so `down` finds them), then wait for all to be ready."""
    spawned = [processes.spawn(settings.state_dir, spec) for spec in specs if spec.name not in keep]
    for item in spawned:
        records[item.record.name] = item.record
        started.append(item.record.name)
    _save(settings, common, records)
    for record in processes.wait_ready(spawned, settings.startup_timeout_s, progress):
        records[record.name] = record
    _save(settings, common, records)


def _healthy_and_current(record: ServiceRecord | None, spec: ServiceSpec) -> bool:
    """A recorded service may be kept: alive, started with the same command, and ready."""
    return (
        record is not None
        and record.argv == spec.argv
        and record.env == spec.env
        and processes.is_alive(record)
        and services.ready(record.ready_url, record.ready_body, record.ready_status)
    )


# --- state file ----------------------------------------------------------------------------------


def _resolved(settings: LocalStackSettings) -> LocalStackSettings:
    """Settings with an absolute state dir: services run with it as working directory."""
    return settings.model_copy(update={"state_dir": settings.state_dir.resolve()})


@contextmanager
def _locked(state_dir: Path) -> Iterator[None]:
    """Serialise `up`/`down` on one state dir (e.g. two terminals running `make up`)."""
    with (state_dir / "stack.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _load(state_dir: Path) -> dict[str, ServiceRecord]:
    path = state_dir / STATE_FILE
    if not path.exists():
        return {}
    return {name: _record(raw) for name, raw in json.loads(path.read_text())["services"].items()}


def _record(raw: dict[str, Any]) -> ServiceRecord:
    """A record from stack.json; one written before psutil holds the kernel's start ticks instead."""
    if "start_ticks" in raw:  # psutil's creation time is exactly this sum, so the process stays identified
        raw["create_time"] = raw.pop("start_ticks") / os.sysconf("SC_CLK_TCK") + psutil.boot_time()
    return ServiceRecord(**raw)


def _save(settings: LocalStackSettings, common: CommonSettings, records: dict[str, ServiceRecord]) -> None:
    info = StackInfo(settings.state_dir, settings.host, common.project, common.bucket, records)
    state = {
        "host": settings.host,
        "project": common.project,
        "bucket": common.bucket,
        "env": info.env() if info.has_emulators() else {},
        "services": {name: asdict(record) for name, record in records.items()},
    }
    tmp = settings.state_dir / f"{STATE_FILE}.tmp"
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(settings.state_dir / STATE_FILE)
