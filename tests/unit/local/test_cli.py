"""`churnflow local ...`: the parser builds without the local extra; commands on a stack that is not running."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from churnflow.cli import main

# the images run `python -m churnflow.cli promote` without the local extra (no psutil)
PROBE = """
import json, sys
from churnflow.cli import build_parser
build_parser().parse_args(["local", "up", "--with", "all"])
print(json.dumps(sorted(name for name in sys.modules if name in ("psutil", "churnflow.local.stack"))))
"""


def test_the_parser_builds_without_loading_the_stack_or_psutil():
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


@pytest.fixture
def no_stack(tmp_path, monkeypatch):
    monkeypatch.setenv("CHURNFLOW_LOCAL_STATE_DIR", str(tmp_path / "state"))


def test_status_and_env_say_the_stack_is_not_running(no_stack, capsys):
    assert main(["local", "status"]) == 1
    assert "the local stack is not running" in capsys.readouterr().out
    assert main(["local", "env"]) == 1
    assert "the local stack is not running" in capsys.readouterr().err


def test_down_with_nothing_running(no_stack, capsys):
    assert main(["local", "down"]) == 0
    assert capsys.readouterr().out == "nothing was running\n"
