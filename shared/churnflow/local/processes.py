"""Starting, identifying and stopping the local stack's processes (POSIX; psutil for process identity).

Each service runs in its own session, so stopping its process group stops its children too (MLflow's
uvicorn worker). A process is ours only if both its pid and its creation time match what was recorded
when we started it, checked just before every signal; nothing is ever looked up or stopped by name.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import psutil

from churnflow.local.services import ServiceSpec, StackError, ready

logger = logging.getLogger(__name__)

_STOP_GRACE_S = 10.0
_KILL_GRACE_S = 5.0
_POLL_S = 0.1
_LOG_TAIL_LINES = 20


@dataclass(frozen=True)
class StartupProgress:
    """What a start-up wait reports on each poll: the services still awaited and the one just ready, if any."""

    waiting: tuple[str, ...]
    elapsed_s: float
    ready: str | None = None


Progress = Callable[[StartupProgress], None]


@dataclass(frozen=True)
class ServiceRecord:
    """A started service: its process identity (pid, process group, creation time) and its spec."""

    name: str
    pid: int
    pgid: int
    create_time: float  # psutil's creation time: with the pid, identifies the process across pid reuse
    port: int
    url: str
    ready_url: str
    ready_body: str | None
    argv: list[str]
    env: dict[str, str]
    log: str
    started_at: str
    ready_s: float | None = None
    ready_status: int = 200


@dataclass(frozen=True)
class Spawned:
    """A process just started, not yet known to be ready."""

    process: subprocess.Popen[bytes]
    record: ServiceRecord
    began: float  # time.monotonic() at spawn


def spawn(state_dir: Path, spec: ServiceSpec) -> Spawned:
    """Start `spec` in a new session, its output in `<state_dir>/<name>.log`, and record its identity."""
    log = state_dir / f"{spec.name}.log"
    began = time.monotonic()
    with log.open("wb") as out:
        process = subprocess.Popen(
            spec.argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **spec.env},
            cwd=state_dir,
            start_new_session=True,
        )
    logger.info("started %s (pid %d), log %s", spec.name, process.pid, log)
    record = ServiceRecord(
        name=spec.name,
        pid=process.pid,
        pgid=os.getpgid(process.pid),
        create_time=psutil.Process(process.pid).create_time(),  # not yet reaped, so readable even if it exited
        port=spec.port,
        url=spec.url,
        ready_url=spec.ready_url,
        ready_body=spec.ready_body,
        ready_status=spec.ready_status,
        argv=spec.argv,
        env=spec.env,
        log=str(log),
        started_at=datetime.now(UTC).isoformat(),
    )
    return Spawned(process, record, began)


def wait_ready(spawned: list[Spawned], timeout_s: float, progress: Progress | None = None) -> list[ServiceRecord]:
    """Wait until every spawned service answers its readiness check; their records with `ready_s` set.

    `progress`, if given, hears of every poll (what is still awaited) and of each service that became ready.
    """
    began = time.monotonic()
    deadline = began + timeout_s
    pending, done = list(spawned), []
    while pending:
        for item in list(pending):
            record = item.record
            if item.process.poll() is not None:
                raise StackError(
                    f"{record.name} exited with code {item.process.returncode} during start-up; {_log_tail(record.log)}"
                )
            if ready(record.ready_url, record.ready_body, record.ready_status):
                elapsed = time.monotonic() - item.began
                logger.info("%s ready in %.2fs at %s (pid %d)", record.name, elapsed, record.url, record.pid)
                done.append(replace(record, ready_s=round(elapsed, 3)))
                pending.remove(item)
                if progress:
                    waiting = tuple(other.record.name for other in pending)
                    progress(StartupProgress(waiting, time.monotonic() - began, ready=record.name))
        if progress and pending:
            progress(StartupProgress(tuple(item.record.name for item in pending), time.monotonic() - began))
        if pending and time.monotonic() > deadline:
            record = pending[0].record
            raise StackError(
                f"{record.name} did not become ready within {timeout_s:g}s ({record.ready_url}); "
                f"{_log_tail(record.log)}"
            )
        if pending:
            time.sleep(_POLL_S)
    return done


def stop(records: list[ServiceRecord]) -> None:
    """Stop the recorded process groups together: SIGTERM, wait, then SIGKILL. Skips reused pids."""
    for record in records:
        _reap(record)
    remaining = records
    for sig, grace in ((signal.SIGTERM, _STOP_GRACE_S), (signal.SIGKILL, _KILL_GRACE_S)):
        remaining = [record for record in remaining if group_exists(record)]  # checked just before signalling
        for record in remaining:
            logger.info("sending %s to %s (process group %d)", sig.name, record.name, record.pgid)
            with suppress(ProcessLookupError):
                os.killpg(record.pgid, sig)
        deadline = time.monotonic() + grace
        while remaining and time.monotonic() < deadline:
            time.sleep(_POLL_S)
            remaining = [record for record in remaining if group_exists(record)]
        if not remaining:
            for record in records:  # a leader that exited after its last check is a zombie until reaped
                _reap(record, _KILL_GRACE_S)
            return
    raise StackError(f"could not stop {', '.join(record.name for record in remaining)}")


def identify(record: ServiceRecord) -> psutil.Process | None:
    """The recorded process if it still exists (a zombie included) with the recorded creation time."""
    try:
        process = psutil.Process(record.pid)
        return process if process.create_time() == record.create_time else None
    except psutil.NoSuchProcess:
        return None


def is_alive(record: ServiceRecord) -> bool:
    """The recorded process itself (same pid and creation time) is still running."""
    _reap(record)
    process = identify(record)
    return process is not None and _running(process)


def group_exists(record: ServiceRecord) -> bool:
    """Live members of the recorded process group remain, and the group leader's pid was not reused."""
    try:
        leader = psutil.Process(record.pid)
        if leader.create_time() != record.create_time:
            return False  # the pid now belongs to someone else, so our group is gone
    except psutil.NoSuchProcess:
        pass  # the leader is gone; members it left behind keep the group
    # scan rather than killpg(pgid, 0): zombies count for the kernel, but not for us
    for pid in psutil.pids():
        with suppress(OSError, psutil.NoSuchProcess):
            if os.getpgid(pid) == record.pgid and _running(psutil.Process(pid)):
                return True
    return False


def _running(process: psutil.Process) -> bool:
    try:
        return process.status() not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    except psutil.NoSuchProcess:
        return False


def _reap(record: ServiceRecord, timeout_s: float = 0.0) -> None:
    """Collect the recorded process if it is our own exited child (the pytest fixture case): no zombie stays.

    A leader shows as a zombie as soon as its main thread exits, but cannot be collected until its
    other threads have (MLflow's server takes a moment): wait up to `timeout_s` for that.
    """
    process = identify(record)
    if process is not None and not _running(process) and process.ppid() == os.getpid():
        with suppress(psutil.TimeoutExpired, psutil.NoSuchProcess):
            process.wait(timeout_s)


def _log_tail(path: str) -> str:
    try:
        lines = Path(path).read_text(errors="replace").splitlines()[-_LOG_TAIL_LINES:]
    except FileNotFoundError:
        return f"no log at {path}"
    return f"last lines of {path}:\n" + "\n".join(lines) if lines else f"its log {path} is empty"
