"""Launchers start one job execution with the message passed as environment overrides."""

import sys

import pytest

from churnflow.retraining.launchers import CloudRunJobLauncher, LaunchError, SubprocessLauncher


class FakeResponse:
    def __init__(self, status_code, body):
        self.status_code, self._body, self.text = status_code, body, str(body)

    def json(self):
        return self._body


class FakeSession:
    def __init__(self, response):
        self.response, self.calls = response, []

    def post(self, url, json, timeout):
        self.calls.append((url, json))
        return self.response


def test_cloud_run_launcher_calls_jobs_run_with_env_overrides():
    session = FakeSession(FakeResponse(200, {"name": "projects/p/locations/r/operations/op-1"}))
    launcher = CloudRunJobLauncher("p", "europe-west1", "churnflow-retrain", session=session)
    assert launcher.launch({"A": "1", "B": "two"}) == "projects/p/locations/r/operations/op-1"
    ((url, body),) = session.calls
    assert url == "https://run.googleapis.com/v2/projects/p/locations/europe-west1/jobs/churnflow-retrain:run"
    assert body == {
        "overrides": {"containerOverrides": [{"env": [{"name": "A", "value": "1"}, {"name": "B", "value": "two"}]}]}
    }


def test_cloud_run_launcher_raises_on_refusal():
    launcher = CloudRunJobLauncher("p", "r", "j", session=FakeSession(FakeResponse(403, {"error": "denied"})))
    with pytest.raises(LaunchError, match="HTTP 403"):
        launcher.launch({})


def test_subprocess_launcher_passes_the_environment(tmp_path):
    out = tmp_path / "env.txt"
    argv = [sys.executable, "-c", f"import os; open({str(out)!r}, 'w').write(os.environ['CHURNFLOW_X'])"]
    pid = SubprocessLauncher(argv, log_dir=tmp_path).launch({"CHURNFLOW_X": "hello"})
    assert pid.isdigit()
    import time

    for _ in range(100):
        if out.exists() and out.read_text():
            break
        time.sleep(0.05)
    assert out.read_text() == "hello"


def test_subprocess_launcher_reports_a_missing_program(tmp_path):
    with pytest.raises(LaunchError, match="could not start"):
        SubprocessLauncher(["/nonexistent/program"]).launch({})
