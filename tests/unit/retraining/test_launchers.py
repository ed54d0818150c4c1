"""Launchers start one job execution with the message passed as environment overrides."""

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from google.api_core.exceptions import Forbidden
from google.auth.credentials import AnonymousCredentials
from google.cloud import run_v2
from google.cloud.run_v2.services.jobs.transports.rest import JobsRestTransport

from churnflow.core.messages import MESSAGE_ID_ENV, REQUEST_ENV
from churnflow.retraining.launchers import CloudRunJobLauncher, LaunchError, SubprocessLauncher, run_job_request

JOB = "projects/p/locations/europe-west1/jobs/churnflow-retrain"


def test_run_job_request_names_the_job_and_overrides_the_job_env_contract():
    request = run_job_request(
        "p", "europe-west1", "churnflow-retrain", {REQUEST_ENV: '{"a": 1}', MESSAGE_ID_ENV: "m-1"}
    )
    assert request.name == JOB
    [container] = request.overrides.container_overrides
    assert [(var.name, var.value) for var in container.env] == [(REQUEST_ENV, '{"a": 1}'), (MESSAGE_ID_ENV, "m-1")]
    assert (container.name, list(container.args), request.overrides.task_count) == ("", [], 0)  # nothing else changed


class FakeAdminApi(BaseHTTPRequestHandler):
    """Cloud Run Admin API stand-in on 127.0.0.1: records each call, answers `status` with `body`."""

    calls: list[tuple[str, dict]] = []
    status, body = 200, {"name": "projects/p/locations/europe-west1/operations/op-1"}

    def do_POST(self) -> None:
        type(self).calls.append((self.path, json.loads(self.rfile.read(int(self.headers["Content-Length"])))))
        payload = json.dumps(self.body).encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def admin_api() -> Iterator[tuple[type[FakeAdminApi], run_v2.JobsClient]]:
    """The fake endpoint and a real JobsClient (REST transport, anonymous) pointed at it."""
    handler = type("Api", (FakeAdminApi,), {"calls": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    transport = JobsRestTransport(
        host=f"127.0.0.1:{server.server_port}", credentials=AnonymousCredentials(), url_scheme="http"
    )
    yield handler, run_v2.JobsClient(transport=transport)
    server.shutdown()
    server.server_close()


def test_cloud_run_launcher_calls_jobs_run_with_env_overrides(admin_api):
    api, client = admin_api
    launcher = CloudRunJobLauncher("p", "europe-west1", "churnflow-retrain", client=client)
    assert launcher.launch({"A": "1", "B": "two"}) == "projects/p/locations/europe-west1/operations/op-1"
    [(path, body)] = api.calls
    assert path.partition("?")[0] == f"/v2/{JOB}:run"
    assert body == {
        "overrides": {"containerOverrides": [{"env": [{"name": "A", "value": "1"}, {"name": "B", "value": "two"}]}]}
    }


def test_cloud_run_launcher_raises_on_refusal(admin_api):
    api, client = admin_api
    api.status, api.body = 403, {"error": {"code": 403, "message": "denied", "status": "PERMISSION_DENIED"}}
    with pytest.raises(LaunchError, match="jobs.run failed.*denied") as raised:
        CloudRunJobLauncher("p", "r", "j", client=client).launch({})
    assert isinstance(raised.value.__cause__, Forbidden)


def test_subprocess_launcher_passes_the_environment(tmp_path):
    out = tmp_path / "env.txt"
    argv = [sys.executable, "-c", f"import os; open({str(out)!r}, 'w').write(os.environ['CHURNFLOW_X'])"]
    pid = SubprocessLauncher(argv, log_dir=tmp_path).launch({"CHURNFLOW_X": "hello"})
    assert pid.isdigit()
    for _ in range(100):
        if out.exists() and out.read_text():
            break
        time.sleep(0.05)
    assert out.read_text() == "hello"


def test_subprocess_launcher_without_a_log_dir_writes_to_the_triggers_own_output():
    # the compose trigger: the job's lines must reach the container's log, not a file inside it
    job = [sys.executable, "-c", "print('job line')"]
    trigger = f"from churnflow.retraining.launchers import SubprocessLauncher; SubprocessLauncher({job!r}).launch({{}})"
    result = subprocess.run([sys.executable, "-c", trigger], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "job line" in result.stdout


def test_subprocess_launcher_reports_a_missing_program(tmp_path):
    with pytest.raises(LaunchError, match="could not start"):
        SubprocessLauncher(["/nonexistent/program"]).launch({})
