"""`churnflow local ...`: the command builds without the local extra; commands on a stack that is not running."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from churnflow.cli import main
from churnflow.local.cli import parse_apps
from churnflow.local.services import APPS

# the images run `python -m churnflow.cli promote` without the local extra (no psutil)
PROBE = """
import json, sys
from churnflow.cli import main
assert main(["local", "up", "--with", "all", "--help"]) == 0
print(json.dumps(sorted(name for name in sys.modules if name in ("psutil", "churnflow.local.stack"))))
"""


def test_the_command_builds_without_loading_the_stack_or_psutil():
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


@pytest.fixture
def no_stack(tmp_path, monkeypatch):
    monkeypatch.setenv("CHURNFLOW_LOCAL_STATE_DIR", str(tmp_path / "state"))


def test_status_and_env_say_the_stack_is_not_running_on_stderr(no_stack, capsys):
    assert main(["local", "status"]) == 1
    captured = capsys.readouterr()
    assert "the local stack is not running" in captured.err and captured.out == ""
    assert main(["local", "env"]) == 1
    captured = capsys.readouterr()
    assert "the local stack is not running" in captured.err and captured.out == ""


def test_down_with_nothing_running(no_stack, capsys):
    assert main(["local", "down"]) == 0
    assert capsys.readouterr().out == "nothing was running\n"


def test_with_takes_service_names_or_all():
    assert parse_apps("all") == APPS
    assert parse_apps("predict, monitor") == ("predict", "monitor")
    assert parse_apps("") == ()


def test_an_unknown_service_is_a_usage_error_naming_it(no_stack, capsys):
    assert main(["local", "up", "--with", "predict,bogus"]) == 2
    captured = capsys.readouterr()
    assert "Usage: churnflow local up" in captured.err
    assert f"unknown service bogus; choose from {','.join(APPS)} or 'all'" in captured.err
    assert "Traceback" not in captured.err and captured.out == ""
