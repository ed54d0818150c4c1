"""The `churnflow` command: version, usage errors (exit 2, usage on stderr, no traceback), promote's forms."""

from __future__ import annotations

import subprocess
import sys
import tomllib

import pytest

from churnflow import cli
from churnflow.settings import REPO_ROOT


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "churnflow.cli", *args], capture_output=True, text=True, timeout=120, cwd=REPO_ROOT
    )


def test_version_prints_the_package_version_and_commit(capsys):
    assert cli.main(["--version"]) == 0
    out = capsys.readouterr().out
    declared = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert out.startswith(f"churnflow {declared} (commit ")


@pytest.mark.parametrize(
    ("args", "usage", "says"),
    [
        (["--log-level", "foo", "status"], "Usage: churnflow [OPTIONS] COMMAND", "Invalid value for '--log-level'"),
        (["train", "--bogus"], "Usage: churnflow train [OPTIONS]", "No such option: --bogus"),
        (["promote"], "Usage: churnflow promote", "give the version once"),
        (["promote", "3", "--version", "4"], "Usage: churnflow promote", "give the version once"),
        (["promote", "0"], "Usage: churnflow promote", "Input should be greater than or equal to 1"),
        (["promote", "three"], "Usage: churnflow promote", "Input should be a valid integer"),
        (["frobnicate"], "Usage: churnflow [OPTIONS] COMMAND", "No such command 'frobnicate'"),
        (["labels", "import"], "Usage: churnflow labels import [OPTIONS]", "Missing argument 'FILE'"),
    ],
)
def test_usage_errors_exit_2_with_the_usage_on_stderr_and_no_traceback(args, usage, says, capsys):
    assert cli.main(args) == 2
    captured = capsys.readouterr()
    assert usage in captured.err and says in captured.err
    assert captured.out == "" and "Traceback" not in captured.err


def test_a_usage_error_from_the_installed_entry_point_has_no_traceback():
    result = run("--log-level", "foo", "status")
    assert result.returncode == 2
    assert "Invalid value for '--log-level'" in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == ""


def test_log_level_is_case_insensitive(monkeypatch):
    levels = []
    monkeypatch.setattr("churnflow.logs.configure_logging", levels.append)
    assert cli.main(["--log-level", "info", "local", "down", "--help"]) == 0
    assert levels == ["INFO"]
