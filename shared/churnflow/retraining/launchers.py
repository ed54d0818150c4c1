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
from typing import IO, Protocol

from churnflow.settings import REPO_ROOT, RetrainSettings

log = logging.getLogger(__name__)

RUN_API = "https://run.googleapis.com/v2"
JOB_ENTRY_POINT = REPO_ROOT / "functions" / "retrain" / "job.py"


class LaunchError(RuntimeError):
    """The execution could not be started; the caller should let Pub/Sub redeliver."""


class JobLauncher(Protocol):
    """Starts one execution of the retrain job and returns an identifier for it."""

    def launch(self, env: Mapping[str, str]) -> str: ...


class CloudRunJobLauncher:
    """Runs a Cloud Run Job through the Admin API (`jobs.run`) with container env overrides."""

    def __init__(self, project: str, region: str, job: str, session: object | None = None):
        self.url = f"{RUN_API}/projects/{project}/locations/{region}/jobs/{job}:run"
        self._session = session

    def _authorized_session(self) -> object:
        if self._session is None:
            import google.auth
            from google.auth.transport.requests import AuthorizedSession

            credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
            self._session = AuthorizedSession(credentials)
        return self._session

    def launch(self, env: Mapping[str, str]) -> str:
        """Start an execution; returns the long-running operation's name."""
        body = {"overrides": {"containerOverrides": [{"env": [{"name": k, "value": v} for k, v in env.items()]}]}}
        response = self._authorized_session().post(self.url, json=body, timeout=30)  # type: ignore[attr-defined]
        if response.status_code >= 300:
            raise LaunchError(f"jobs.run answered HTTP {response.status_code}: {response.text[:300]}")
        return str(response.json().get("name", ""))


class SubprocessLauncher:
    """Runs the job as a local process with the same environment a Cloud Run execution would get."""

    def __init__(self, argv: Sequence[str] | None = None, log_dir: Path | None = None):
        self.argv = list(argv or [sys.executable, str(JOB_ENTRY_POINT)])
        self.log_dir = log_dir

    def launch(self, env: Mapping[str, str]) -> str:
        """Start the job detached (its own session); returns its PID."""
        output: int | IO[bytes] = subprocess.DEVNULL
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
            if not isinstance(output, int):
                output.close()
        threading.Thread(target=process.wait, name=f"reap-{process.pid}", daemon=True).start()
        log.info("retrain job started as pid %s", process.pid)
        return str(process.pid)


def from_settings(settings: RetrainSettings) -> JobLauncher:
    """The launcher the settings ask for: the Cloud Run Admin API, or a local subprocess."""
    if settings.job_launcher == "cloud-run":
        return CloudRunJobLauncher(settings.project, settings.region, settings.job_name)
    return SubprocessLauncher(log_dir=settings.job_log_dir)
