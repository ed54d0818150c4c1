"""The stack's state file, read and acted on without emulators (a real child process stands in for a service)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from churnflow.local import processes, stack
from churnflow.settings import LocalStackSettings

pytestmark = pytest.mark.timeout(60)


def record(name: str, port: int, **identity) -> processes.ServiceRecord:
    fields = {"pid": 1, "pgid": 1, "create_time": 0.0} | identity
    url = f"http://127.0.0.1:{port}"
    return processes.ServiceRecord(
        name,
        **fields,
        port=port,
        url=url,
        ready_url=f"{url}/",
        ready_body=None,
        argv=["x"],
        env={},
        log="x.log",
        started_at="2026-01-01T00:00:00+00:00",
    )


def test_env_needs_all_three_emulators():
    records = {name: record(name, port) for name, port in (("gcs", 1), ("pubsub", 2), ("mlflow", 3))}
    info = stack.StackInfo(Path("/s"), "127.0.0.1", "p", "b", records)
    assert info.has_emulators()
    assert info.env()["PUBSUB_EMULATOR_HOST"] == "127.0.0.1:2"
    del records["pubsub"]
    assert not info.has_emulators()


def test_nothing_recorded(tmp_path):
    settings = LocalStackSettings(state_dir=tmp_path / "never-started")
    assert stack.down(settings) == []
    assert stack.status(settings) == []
    assert stack.load_info(settings) is None


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="the old state file recorded Linux /proc ticks")
def test_a_state_file_from_before_psutil_still_identifies_and_stops_its_processes(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
    try:
        stat = Path(f"/proc/{child.pid}/stat").read_text()
        ticks = int(stat[stat.rindex(")") + 2 :].split()[19])
        old = record("gcs", 9, pid=child.pid, pgid=child.pid).__dict__ | {"start_ticks": ticks}
        del old["create_time"]
        state = {"host": "127.0.0.1", "project": "p", "bucket": "b", "env": {}, "services": {"gcs": old}}
        (tmp_path / stack.STATE_FILE).write_text(json.dumps(state))
        settings = LocalStackSettings(state_dir=tmp_path)

        assert [(s.name, s.pid, s.running) for s in stack.status(settings)] == [("gcs", child.pid, True)]
        assert stack.down(settings) == ["gcs"]
        assert not psutil.pid_exists(child.pid)  # stopped (and reaped) within down
        assert not (tmp_path / stack.STATE_FILE).exists()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
