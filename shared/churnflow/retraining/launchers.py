"""How a retrain execution is started: the Cloud Run Admin API on GCP, a subprocess locally.

The trigger decides *whether* to run; a launcher only starts one execution with the given
environment overrides, so the same decision code serves both worlds.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Protocol

from google.api_core.exceptions import GoogleAPIError
from google.auth.exceptions import GoogleAuthError

from churnflow.settings import REPO_ROOT, RetrainSettings

if TYPE_CHECKING:
    from google.cloud import run_v2

log = logging.getLogger(__name__)

JOB_ENTRY_POINT = REPO_ROOT / "functions" / "retrain" / "job.py"


class LaunchError(RuntimeError):
    """The execution could not be started; the caller should let Pub/Sub redeliver."""


class JobLauncher(Protocol):
    """Starts one execution of the retrain job and returns an identifier for it."""

    def launch(self, env: Mapping[str, str]) -> str: ...


def run_job_request(project: str, region: str, job: str, env: Mapping[str, str]) -> run_v2.RunJobRequest:
    """The Admin API's `jobs.run` request: one execution of `job` with `env` merged into its container's."""
    from google.cloud import run_v2

    container = run_v2.RunJobRequest.Overrides.ContainerOverride(
        env=[run_v2.EnvVar(name=name, value=value) for name, value in env.items()]
    )
    return run_v2.RunJobRequest(
        name=run_v2.JobsClient.job_path(project, region, job),
        overrides=run_v2.RunJobRequest.Overrides(container_overrides=[container]),
    )


class CloudRunJobLauncher:
    """Runs a Cloud Run Job through the Admin API (`jobs.run`) with container env overrides.

    google-cloud-run is imported on first use (~0.2 s of gRPC and protos): only the trigger's own image
    installs it; the local trigger, which runs in the retrain image, launches subprocesses instead.
    """

    def __init__(self, project: str, region: str, job: str, client: run_v2.JobsClient | None = None):
        self.project, self.region, self.job = project, region, job
        self._client = client

    def launch(self, env: Mapping[str, str]) -> str:
        """Start an execution without waiting for it; returns the long-running operation's name."""
        request = run_job_request(self.project, self.region, self.job, env)
        try:
            if self._client is None:
                from google.cloud import run_v2

                self._client = run_v2.JobsClient()
            operation = self._client.run_job(request=request, timeout=30)
        except (GoogleAPIError, GoogleAuthError) as error:
            raise LaunchError(f"jobs.run failed for {request.name}: {str(error)[:300]}") from error
        return str(operation.operation.name)


class SubprocessLauncher:
    """Runs the job as a local process with the same environment a Cloud Run execution would get.

    Its output goes to `log_dir`/retrain-job.log, or with no log dir to this process's own stdout (in a
    container: the trigger's log, as `docker compose logs` shows it).
    """

    def __init__(self, argv: Sequence[str] | None = None, log_dir: Path | None = None):
        self.argv = list(argv or [sys.executable, str(JOB_ENTRY_POINT)])
        self.log_dir = log_dir

    def launch(self, env: Mapping[str, str]) -> str:
        """Start the job detached (its own session); returns its PID."""
        output: IO[bytes] | None = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            output = (self.log_dir / "retrain-job.log").open("ab")
        try:
            process = subprocess.Popen(
                self.argv, env={**os.environ, **env}, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
            )
        except OSError as error:
            raise LaunchError(f"could not start {self.argv[0]}: {error}") from error
        finally:
            if output is not None:
                output.close()
        threading.Thread(target=process.wait, name=f"reap-{process.pid}", daemon=True).start()
        log.info("retrain job started as pid %s", process.pid)
        return str(process.pid)


def from_settings(settings: RetrainSettings) -> JobLauncher:
    """The launcher the settings ask for: the Cloud Run Admin API, or a local subprocess."""
    if settings.job_launcher == "cloud-run":
        return CloudRunJobLauncher(settings.project, settings.region, settings.job_name)
    return SubprocessLauncher(log_dir=settings.job_log_dir)
