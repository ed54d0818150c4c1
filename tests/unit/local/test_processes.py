"""Process supervision on real child processes: only a process whose pid and creation time match is ours."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import psutil
import pytest

from churnflow.local import processes
from churnflow.local.services import ServiceSpec, StackError

pytestmark = pytest.mark.timeout(60)

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]
# the leader starts a member of its process group, tells us its pid, and exits
LEAVES_A_MEMBER = [
    sys.executable,
    "-c",
    "import subprocess, sys, time; "
    "member = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); "
    "print(member.pid, flush=True)",
]


def spec(argv: list[str], name: str = "sleeper") -> ServiceSpec:
    return ServiceSpec(name, argv, port=0, ready_url="http://127.0.0.1:9/", url="http://127.0.0.1:9")


@pytest.fixture
def started(tmp_path: Path) -> Iterator[list[processes.Spawned]]:
    """Processes a test spawns; whatever is left of their groups is killed afterwards (checked by identity)."""
    spawned: list[processes.Spawned] = []
    yield spawned
    processes.stop([item.record for item in spawned])


def test_spawn_records_pid_group_and_creation_time(tmp_path, started):
    started.append(item := processes.spawn(tmp_path, spec(SLEEPER)))
    record = item.record
    assert record.pgid == record.pid == item.process.pid  # a session of its own: leader of its group
    assert record.create_time == psutil.Process(record.pid).create_time()
    assert processes.is_alive(record) and processes.group_exists(record)
    assert record.log == str(tmp_path / "sleeper.log")


def test_a_pid_whose_creation_time_differs_is_not_ours_and_is_not_stopped(tmp_path, started):
    started.append(item := processes.spawn(tmp_path, spec(SLEEPER)))
    stranger = replace(item.record, create_time=item.record.create_time - 1.0)  # as if the pid had been reused
    assert processes.identify(stranger) is None
    assert not processes.is_alive(stranger)
    assert not processes.group_exists(stranger)
    processes.stop([stranger])
    assert item.process.poll() is None  # still running: not signalled

    processes.stop([item.record])
    assert processes.identify(item.record) is None  # stopped and reaped: no zombie left either


def test_stop_ends_group_members_the_leader_left_behind(tmp_path, started):
    started.append(item := processes.spawn(tmp_path, spec(LEAVES_A_MEMBER, "leaver")))
    item.process.wait(timeout=30)
    member = psutil.Process(int(Path(item.record.log).read_text().split()[0]))
    assert os.getpgid(member.pid) == item.record.pgid
    assert not processes.is_alive(item.record)
    assert processes.group_exists(item.record)  # the leader is gone, its group is not

    processes.stop([item.record])
    assert not processes.group_exists(item.record)
    assert not member.is_running() or member.status() == psutil.STATUS_ZOMBIE


def test_wait_ready_reports_an_early_exit_with_the_log(tmp_path, started):
    argv = [sys.executable, "-c", "import sys; print('no config'); sys.exit(3)"]
    started.append(item := processes.spawn(tmp_path, spec(argv, "broken")))
    with pytest.raises(StackError, match=r"broken exited with code 3 during start-up; last lines of .*\n.*no config"):
        processes.wait_ready([item], timeout_s=30)


def test_wait_ready_gives_up_after_the_timeout(tmp_path, started):
    started.append(item := processes.spawn(tmp_path, spec(SLEEPER)))
    with pytest.raises(StackError, match=r"sleeper did not become ready within 0.3s \(http://127.0.0.1:9/\); its log"):
        processes.wait_ready([item], timeout_s=0.3)


def test_wait_ready_reports_progress_until_each_service_is_ready(tmp_path, started):
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # the server starts listening only after a delay, so the wait is reported while it lasts
    argv = [
        sys.executable,
        "-c",
        f"import time, http.server; time.sleep(0.5); "
        f"http.server.HTTPServer(('127.0.0.1', {port}), http.server.SimpleHTTPRequestHandler).serve_forever()",
    ]
    web = ServiceSpec("web", argv, port=port, ready_url=f"http://127.0.0.1:{port}/", url=f"http://127.0.0.1:{port}")
    started.append(item := processes.spawn(tmp_path, web))
    events: list[processes.StartupProgress] = []
    [record] = processes.wait_ready([item], timeout_s=30, progress=events.append)
    assert record.name == "web" and record.ready_s is not None
    waiting, last = events[:-1], events[-1]
    assert waiting and all(event.waiting == ("web",) and event.ready is None for event in waiting)
    assert last.ready == "web" and last.waiting == ()
    assert [event.elapsed_s for event in events] == sorted(event.elapsed_s for event in events)
