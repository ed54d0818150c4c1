"""The infra scripts, run for real.

- Pub/Sub and Cloud Storage: the real `gcloud` against the local emulators (API endpoint overrides,
  a throwaway config dir, a dummy access token), twice: the second run must converge, not fail.
- The whole of `infra/up.sh` (Cloud Run, IAM, Cloud SQL, Secret Manager, Scheduler have no emulator):
  `gcloud` and `docker` replaced by a recorder, once for an empty project and once for a set-up one.
  Every recorded gcloud command line is then checked against the real gcloud's command tree (the
  static completion table shipped with the Cloud SDK): command, flags, and enum values; every bq
  command line against the real bq's help (`bq help COMMAND`, `bq --help`). `bq mkdef`, which calls
  no API, runs for real, so the BigQuery table definitions checked here are bq's own output.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from churnflow.local import bootstrap
from churnflow.local.services import gcloud_sdk_root
from churnflow.local.stack import StackInfo
from churnflow.outcomes import tables
from churnflow.settings import REPO_ROOT
from churnflow.storage import layout

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

INFRA = REPO_ROOT / "infra"
FAKE_CLI = Path(__file__).with_name("fake_cli.py")
TAG = "abc1234"
PROJECT = "proj-x"
PROJECT_NUMBER = "123456789012"
LABELS_QUERY = "SELECT customer_request AS request_id, churned, closed_at AS observed_at FROM billing.outcomes"


def run_script(script: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(INFRA / script), *args], env=env, capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL
    )
    assert result.returncode == 0, f"{script} failed:\n{result.stderr[-4000:]}"
    return result


@pytest.fixture
def gcloud_env(tmp_path: Path) -> dict[str, str]:
    """The real gcloud, isolated: its own config dir, no prompts, a dummy token, a fresh project id."""
    token = tmp_path / "token"
    token.write_text("emulator-needs-no-real-token\n")
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "CLOUDSDK_CONFIG": str(tmp_path / "gcloud"),
        "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
        "CLOUDSDK_AUTH_ACCESS_TOKEN_FILE": str(token),
        "PROJECT_ID": f"infra-{uuid.uuid4().hex[:8]}",
    }


class PushHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.server.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


class Capture(ThreadingHTTPServer):
    """A push endpoint on 127.0.0.1 that keeps the JSON bodies posted to it."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), PushHandler)
        self.bodies: list[dict] = []
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def push_endpoint() -> Iterator[Capture]:
    server = Capture()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


# --- Pub/Sub and Cloud Storage with the real gcloud against the emulators ---------------------------


def test_pubsub_script_creates_then_converges_on_the_emulator(local_stack: StackInfo, gcloud_env, push_endpoint):
    pubsub_host = local_stack.env()["PUBSUB_EMULATOR_HOST"]
    project = gcloud_env["PROJECT_ID"]
    env = gcloud_env | {
        "CLOUDSDK_API_ENDPOINT_OVERRIDES_PUBSUB": f"http://{pubsub_host}/",
        "TRIGGER_URL": push_endpoint.url,
    }
    first = run_script("pubsub.sh", env)
    second = run_script("pubsub.sh", env)
    two_of_each = ["topic", "topic", "subscription", "subscription"]
    assert re.findall(r"Created (topic|subscription)", first.stderr) == two_of_each
    assert "Created" not in second.stderr
    assert re.findall(r"Updated (topic|subscription)", second.stderr) == two_of_each

    names = f"projects/{project}"
    subscriber = bootstrap.subscriber_client(pubsub_host)
    publisher = bootstrap.publisher_client(pubsub_host)
    try:
        push = subscriber.get_subscription(subscription=f"{names}/subscriptions/retrain-requests-trigger")
        dead = subscriber.get_subscription(subscription=f"{names}/subscriptions/retrain-requests-dead-letter")
        topic = publisher.get_topic(topic=f"{names}/topics/retrain-requests")
        publisher.publish(topic.name, b'{"probe": 1}', origin="test").result(timeout=10)
    finally:
        subscriber.close()
        publisher.transport.close()

    assert push.topic == f"{names}/topics/retrain-requests"
    assert push.push_config.push_endpoint == f"{push_endpoint.url}/"
    assert (
        push.push_config.oidc_token.service_account_email == f"churnflow-pubsub-push@{project}.iam.gserviceaccount.com"
    )
    assert push.push_config.oidc_token.audience == push_endpoint.url
    assert push.ack_deadline_seconds == 60
    assert push.dead_letter_policy.dead_letter_topic == f"{names}/topics/retrain-requests-dead-letter"
    assert push.dead_letter_policy.max_delivery_attempts == 5
    assert push.retry_policy.minimum_backoff.total_seconds() == 10
    assert push.retry_policy.maximum_backoff.total_seconds() == 600
    assert "expiration_policy" in push and push.expiration_policy.ttl.total_seconds() == 0  # set: never expires
    assert dead.topic == f"{names}/topics/retrain-requests-dead-letter"
    assert topic.message_retention_duration.total_seconds() == 7 * 24 * 3600

    deadline = time.monotonic() + 15
    while not push_endpoint.bodies and time.monotonic() < deadline:
        time.sleep(0.05)
    [envelope] = push_endpoint.bodies
    assert envelope["subscription"] == f"{names}/subscriptions/retrain-requests-trigger"
    assert base64.b64decode(envelope["message"]["data"]) == b'{"probe": 1}'
    assert envelope["message"]["attributes"] == {"origin": "test"}


def logged_requests(stderr: str) -> list[tuple[str, str, str]]:
    """(method, uri, body) of each request `gcloud --log-http` printed."""
    pattern = r"uri: (\S+)\nmethod: (\S+)\n.*?== body start ==\n(.*?)\n== body end =="
    return [(method, uri, body) for uri, method, body in re.findall(pattern, stderr, flags=re.DOTALL)]


def test_storage_script_creates_then_converges_on_the_emulator(local_stack: StackInfo, gcloud_env):
    gcs_url = local_stack.env()["STORAGE_EMULATOR_HOST"]
    bucket = gcloud_env["PROJECT_ID"]
    env = gcloud_env | {
        "CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE": f"{gcs_url}/",
        "BUCKET": bucket,
        "CLOUDSDK_CORE_LOG_HTTP": "true",  # the emulator ignores bucket settings: check what gcloud sends
    }
    first = run_script("storage.sh", env)
    blob = bootstrap.storage_client(gcs_url, bucket).bucket(bucket).get_blob(layout.TRAINING_DATA)
    second = run_script("storage.sh", env)
    again = bootstrap.storage_client(gcs_url, bucket).bucket(bucket).get_blob(layout.TRAINING_DATA)

    bucket_creations = [r for r in logged_requests(first.stderr + second.stderr) if r[0] == "POST" and "/b?" in r[1]]
    assert len(bucket_creations) == 1
    assert json.loads(bucket_creations[0][2])["name"] == bucket
    for run in (first, second):
        [(_, _, patch)] = [r for r in logged_requests(run.stderr) if r[0] == "PATCH"]
        assert json.loads(patch) == {
            "name": bucket,
            "iamConfiguration": {"uniformBucketLevelAccess": {"enabled": True}, "publicAccessPrevention": "enforced"},
            "lifecycle": {
                "rule": [{"action": {"type": "Delete"}, "condition": {"age": 90, "matchesPrefix": ["requests/"]}}]
            },
        }
    assert blob.size == (REPO_ROOT / "data" / "telco_churn.csv").stat().st_size
    assert again.generation == blob.generation  # the second run uploaded nothing
    assert "Skipping existing destination item (no-clobber)" in second.stderr


# --- the whole of up.sh against a recorder, checked against gcloud's command tree -------------------


def record(tmp_path: Path, script: str, *args: str, existing: bool, **extra_env: str) -> list[dict]:
    """Run an infra script with gcloud, bq and docker recorded; return the calls."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in ("gcloud", "bq", "docker"):
        wrapper = bin_dir / tool
        wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -S -E "{FAKE_CLI}" {tool} "$@"\n')
        wrapper.chmod(0o755)
    log = tmp_path / f"{script}-{'existing' if existing else 'empty'}.jsonl"
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "PROJECT_ID": PROJECT,
        "GITHUB_REPOSITORY": "acme/churnflow",
        "PREDICT_INVOKERS": "group:churn-apps@example.com",
        "ALERT_EMAIL": "oncall@example.com",
        "DASHBOARD_VIEWERS": "group:ml-oncall@example.com",
        "FAKE_CLI_LOG": str(log),
        "FAKE_CLI_REAL_BQ": shutil.which("bq"),
        "CHURNFLOW_PYTHON": sys.executable,  # bigquery.sh reads the table schemas from churnflow.outcomes
        **({"FAKE_CLI_EXISTING": "1"} if existing else {}),
        **extra_env,
    }
    run_script(script, env, *args)
    return [json.loads(line) for line in log.read_text().splitlines()]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> dict[str, list[dict]]:
    tmp = tmp_path_factory.mktemp("recorded")
    return {
        "empty": record(tmp, "up.sh", TAG, existing=False),
        "existing": record(tmp, "up.sh", TAG, existing=True, LABELS_SOURCE=LABELS_QUERY),
        "promote": record(tmp, "promote.sh", "3", existing=True),
    }


def gcloud_calls(calls: list[dict]) -> list[list[str]]:
    return [call["args"] for call in calls if call["tool"] == "gcloud"]


def bq_calls(calls: list[dict]) -> list[list[str]]:
    return [call["args"] for call in calls if call["tool"] == "bq"]


def words(args: list[str]) -> str:
    """The command and its positional arguments, flags left out."""
    return " ".join(arg for arg in args if not arg.startswith("-"))


def flag(args: list[str], name: str) -> str:
    [value] = [arg.split("=", 1)[1] for arg in args if arg.startswith(f"{name}=")]
    return value


def creations(calls: list[dict]) -> list[str]:
    return [words(args) for args in gcloud_calls(calls) if any(re.fullmatch(r"create(-\w+)?", arg) for arg in args)]


def deploys(calls: list[dict]) -> dict[str, list[str]]:
    """The arguments of each `run deploy` / `run jobs deploy`, by service or job name."""
    found = {}
    for args in gcloud_calls(calls):
        command = words(args).split()
        if command[:2] == ["run", "deploy"]:
            found[command[2]] = args
        elif command[:3] == ["run", "jobs", "deploy"]:
            found[command[3]] = args
    return found


def sa(name: str) -> str:
    return f"{name}@{PROJECT}.iam.gserviceaccount.com"


ACCOUNTS = ["predict", "monitor", "trigger", "retrain", "mlflow", "dashboard", "scheduler", "pubsub-push", "deployer"]


def test_an_empty_project_gets_every_resource_created_once(recorded):
    assert creations(recorded["empty"]) == [
        "artifacts repositories create churnflow",
        f"storage buckets create gs://{PROJECT}-churnflow",
        *(f"iam service-accounts create churnflow-{name}" for name in ACCOUNTS),
        "iam workload-identity-pools create github",
        "iam workload-identity-pools providers create-oidc github",
        "sql instances create churnflow-mlflow",
        "sql databases create mlflow",
        "sql users create mlflow",
        "secrets create churnflow-mlflow-db-uri",
        "pubsub topics create retrain-requests",
        "pubsub topics create retrain-requests-dead-letter",
        "pubsub subscriptions create retrain-requests-dead-letter",
        "pubsub subscriptions create retrain-requests-trigger",
        "scheduler jobs create http churnflow-monitor-schedule",
        *(f"logging metrics create {name}" for name in LOG_METRICS),
        "beta monitoring channels create",
        *(["alpha monitoring policies create"] * len(POLICIES)),
    ]


def test_a_set_up_project_is_updated_in_place(recorded):
    calls = gcloud_calls(recorded["existing"])
    assert creations(recorded["existing"]) == []
    updated = [words(args) for args in calls if "update" in args or "set-cleanup-policies" in args]
    assert updated == [
        "artifacts repositories set-cleanup-policies churnflow",
        f"storage buckets update gs://{PROJECT}-churnflow",
        "compute networks subnets update default",
        "pubsub topics update retrain-requests",
        "pubsub topics update retrain-requests-dead-letter",
        "pubsub subscriptions update retrain-requests-dead-letter",
        "pubsub subscriptions update retrain-requests-trigger",
        "scheduler jobs update http churnflow-monitor-schedule",
        *(f"logging metrics update {name}" for name in LOG_METRICS),
        f"beta monitoring channels update projects/{PROJECT}/notificationChannels/123",
        *([f"alpha monitoring policies update projects/{PROJECT}/alertPolicies/123"] * len(POLICIES)),
    ]


def test_services_are_created_private_and_later_deploys_leave_access_alone(recorded):
    every_arg = [arg for run in recorded.values() for args in gcloud_calls(run) for arg in args]
    assert "--allow-unauthenticated" not in every_arg
    first, later = deploys(recorded["empty"]), deploys(recorded["existing"])
    for service in ("churnflow-predict", "churnflow-monitor", "churnflow-trigger", "churnflow-dashboard"):
        assert "--no-allow-unauthenticated" in first[service]
        assert "--no-allow-unauthenticated" not in later[service]
    assert flag(first["churnflow-predict"], "--ingress") == "all"
    assert flag(first["churnflow-trigger"], "--ingress") == "internal"  # only Pub/Sub pushes to it
    mlflow = first["churnflow-mlflow"]
    assert (flag(mlflow, "--ingress"), "--no-invoker-iam-check" in mlflow) == ("internal", True)


def test_every_deploy_runs_the_commit_image_as_its_own_account(recorded):
    prefix = f"europe-west1-docker.pkg.dev/{PROJECT}/churnflow"
    expected = {
        "churnflow-mlflow": ("mlflow", "mlflow"),
        "churnflow-predict": ("predict", "predict"),
        "churnflow-monitor": ("monitor", "monitor"),
        "churnflow-retrain": ("retrain", "retrain"),
        "churnflow-trigger": ("trigger", "trigger"),
        "churnflow-dashboard": ("monitor", "dashboard"),  # Evidently's UI, in the monitor's image
    }
    found = deploys(recorded["empty"])
    assert sorted(found) == sorted(expected)
    for name, (image, account) in expected.items():
        assert flags(found[name], "--image")[0] == f"{prefix}/{image}:{TAG}"
        assert flag(found[name], "--service-account") == sa(f"churnflow-{account}")


def test_predict_runs_with_the_managed_prometheus_sidecar_scraping_its_metrics(recorded):
    predict = deploys(recorded["empty"])["churnflow-predict"]
    sidecar = "us-docker.pkg.dev/cloud-ops-agents-artifacts/cloud-run-gmp-sidecar/cloud-run-gmp-sidecar:1.2.0"
    assert flags(predict, "--container") == ["predict", "metrics-collector"]
    assert flags(predict, "--image") == [f"europe-west1-docker.pkg.dev/{PROJECT}/churnflow/predict:{TAG}", sidecar]
    # each container's flags follow its --container; the sidecar's default scrape is :8080/metrics
    containers = " ".join(predict).split("--container=")
    assert "--port=8080" in containers[1] and "--set-env-vars=" in containers[1]
    assert "--depends-on=predict" in containers[2] and "--set-env-vars" not in containers[2]
    assert "--service-account" in containers[0] and "--max-instances" in containers[0]


def flags(args: list[str], name: str) -> list[str]:
    return [arg.split("=", 1)[1] for arg in args if arg.startswith(f"{name}=")]


def test_services_get_the_settings_they_read(recorded):
    found = deploys(recorded["empty"])
    mlflow_url = f"https://churnflow-mlflow-{PROJECT_NUMBER}.europe-west1.run.app"
    common = {
        "CHURNFLOW_PROJECT": PROJECT,
        "GOOGLE_CLOUD_PROJECT": PROJECT,
        "CHURNFLOW_BUCKET": f"{PROJECT}-churnflow",
        "CHURNFLOW_RETRAIN_TOPIC": "retrain-requests",
        "MLFLOW_TRACKING_URI": mlflow_url,
    }

    outcomes = {
        "CHURNFLOW_OUTCOMES_ENGINE": "bigquery",
        "CHURNFLOW_BIGQUERY_DATASET": "churnflow",
        "CHURNFLOW_BIGQUERY_LOCATION": "EU",
    }

    def env(name: str) -> dict[str, str]:
        return env_vars(flag(found[name], "--set-env-vars"))

    assert env("churnflow-predict") == common | {
        "CHURNFLOW_SPOOL_DIR": "/spool",
        "CHURNFLOW_SPOOL_MAX_BYTES": str(64 << 20),
    }
    assert env("churnflow-monitor") == common | outcomes
    assert env("churnflow-retrain") == common | outcomes | {
        "CHURNFLOW_DATA_URI": f"gs://{PROJECT}-churnflow/{layout.TRAINING_DATA}"
    }
    assert env("churnflow-trigger") == common | {
        "CHURNFLOW_JOB_LAUNCHER": "cloud-run",
        "CHURNFLOW_REGION": "europe-west1",
        "CHURNFLOW_JOB_NAME": "churnflow-retrain",
    }
    assert env("churnflow-mlflow") == {
        "MLFLOW_ARTIFACTS_DESTINATION": f"gs://{PROJECT}-churnflow/mlflow",
        "MLFLOW_SERVER_ALLOWED_HOSTS": "churnflow-mlflow-*.run.app",
    }
    trigger = found["churnflow-trigger"]
    assert (flag(trigger, "--command"), flag(trigger, "--args")) == ("", "")  # the image's CMD, no override
    assert env("churnflow-dashboard") == {k: common[k] for k in ("CHURNFLOW_PROJECT", "GOOGLE_CLOUD_PROJECT")} | {
        "CHURNFLOW_BUCKET": f"{PROJECT}-churnflow"
    }
    dashboard = found["churnflow-dashboard"]
    assert (flag(dashboard, "--command"), flag(dashboard, "--args")) == (
        "python",
        "-m,churnflow.monitoring.dashboard,--host,0.0.0.0",
    )


def env_vars(value: str) -> dict[str, str]:
    """A --set-env-vars value as gcloud reads it: pairs split on `,`, or on DELIM after a `^DELIM^` prefix."""
    delimiter = ","
    if match := re.match(r"\^([^^]+)\^", value):
        delimiter, value = match.group(1), value[match.end() :]
    return dict(pair.split("=", 1) for pair in value.split(delimiter))


def test_a_labels_query_reaches_the_monitor_and_the_job_whole(recorded):
    found = deploys(recorded["existing"])  # deployed with LABELS_SOURCE=LABELS_QUERY, which holds commas
    for name in ("churnflow-monitor", "churnflow-retrain"):
        value = flag(found[name], "--set-env-vars")
        assert value.startswith("^|;|^")
        assert env_vars(value)["CHURNFLOW_LABELS_SOURCE"] == LABELS_QUERY
        assert env_vars(value)["CHURNFLOW_OUTCOMES_ENGINE"] == "bigquery"
    for name in ("churnflow-predict", "churnflow-trigger"):
        assert "CHURNFLOW_LABELS_SOURCE" not in env_vars(flag(found[name], "--set-env-vars"))
    empty = deploys(recorded["empty"])
    assert "CHURNFLOW_LABELS_SOURCE" not in env_vars(flag(empty["churnflow-monitor"], "--set-env-vars"))


def test_the_database_password_is_generated_once_and_kept_only_in_the_secret(recorded):
    calls = recorded["empty"]
    [user] = [c["args"] for c in calls if c["tool"] == "gcloud" and words(c["args"]) == "sql users create mlflow"]
    [secret] = [
        c for c in calls if c["tool"] == "gcloud" and words(c["args"]) == "secrets create churnflow-mlflow-db-uri"
    ]
    password = flag(user, "--password")
    assert re.fullmatch(r"[0-9a-f]{48}", password)
    assert secret["stdin"] == (
        f"postgresql+psycopg2://mlflow:{password}@/mlflow?host=/cloudsql/{PROJECT}:europe-west1:churnflow-mlflow"
    )
    assert flag(deploys(calls)["churnflow-mlflow"], "--set-secrets") == (
        "MLFLOW_BACKEND_STORE_URI=churnflow-mlflow-db-uri:latest"
    )
    later = [words(c["args"]) for c in recorded["existing"] if c["tool"] == "gcloud"]
    assert not [w for w in later if w.startswith(("sql users", "secrets create"))]


def grants(calls: list[dict]) -> set[tuple[str, str, str]]:
    """(resource, member, role) of every IAM binding added, by gcloud or by bq."""
    found = {
        (words(args).replace(" add-iam-policy-binding", ""), flag(args, "--member"), flag(args, "--role"))
        for args in gcloud_calls(calls)
        if "add-iam-policy-binding" in args
    }
    for args in bq_calls(calls):
        if "add-iam-policy-binding" in args:
            assert "--dataset" in args
            found.add((f"bigquery dataset {args[-1]}", flag(args, "--member"), flag(args, "--role")))
    return found


def test_each_account_gets_only_its_roles_on_single_resources_where_possible(recorded):
    def member(name: str) -> str:
        return f"serviceAccount:{sa(f'churnflow-{name}')}"

    agent = f"serviceAccount:service-{PROJECT_NUMBER}@gcp-sa-pubsub.iam.gserviceaccount.com"
    pool = f"projects/{PROJECT_NUMBER}/locations/global/workloadIdentityPools/github"
    bucket = f"storage buckets gs://{PROJECT}-churnflow"
    expected = {
        (f"projects {PROJECT}", member("mlflow"), "roles/cloudsql.client"),
        (f"projects {PROJECT}", member("predict"), "roles/monitoring.metricWriter"),
        (f"projects {PROJECT}", member("deployer"), "roles/run.developer"),
        (f"projects {PROJECT}", member("deployer"), "roles/logging.logWriter"),
        (f"projects {PROJECT}", member("monitor"), "roles/bigquery.jobUser"),
        (f"projects {PROJECT}", member("retrain"), "roles/bigquery.jobUser"),
        (f"bigquery dataset {PROJECT}:churnflow", member("monitor"), "roles/bigquery.dataViewer"),
        (f"bigquery dataset {PROJECT}:churnflow", member("retrain"), "roles/bigquery.dataViewer"),
        *(
            (f"iam service-accounts {sa(f'churnflow-{n}')}", member("deployer"), "roles/iam.serviceAccountUser")
            for n in ("predict", "monitor", "trigger", "retrain", "dashboard")
        ),
        ("artifacts repositories churnflow", member("deployer"), "roles/artifactregistry.writer"),
        (
            f"iam service-accounts {sa('churnflow-deployer')}",
            f"principalSet://iam.googleapis.com/{pool}/attribute.repository/acme/churnflow",
            "roles/iam.workloadIdentityUser",
        ),
        ("secrets churnflow-mlflow-db-uri", member("mlflow"), "roles/secretmanager.secretAccessor"),
        (bucket, member("predict"), "roles/storage.objectCreator"),
        *((bucket, member(n), "roles/storage.objectUser") for n in ("monitor", "trigger", "retrain", "mlflow")),
        (bucket, member("dashboard"), "roles/storage.objectViewer"),
        (bucket, member("dashboard"), "roles/storage.legacyBucketReader"),
        ("pubsub topics retrain-requests", member("monitor"), "roles/pubsub.publisher"),
        ("pubsub topics retrain-requests-dead-letter", agent, "roles/pubsub.publisher"),
        ("pubsub subscriptions retrain-requests-trigger", agent, "roles/pubsub.subscriber"),
        (f"iam service-accounts {sa('churnflow-pubsub-push')}", agent, "roles/iam.serviceAccountTokenCreator"),
        ("run services churnflow-monitor", member("scheduler"), "roles/run.invoker"),
        ("run services churnflow-trigger", member("pubsub-push"), "roles/run.invoker"),
        ("run services churnflow-predict", "group:churn-apps@example.com", "roles/run.invoker"),
        ("run services churnflow-dashboard", "group:ml-oncall@example.com", "roles/run.invoker"),
        ("run jobs churnflow-retrain", member("trigger"), "roles/run.jobsExecutorWithOverrides"),
    }
    assert grants(recorded["empty"]) == expected
    assert grants(recorded["existing"]) == expected


def test_github_federation_is_limited_to_the_repository_main_branch(recorded):
    [provider] = [a for a in gcloud_calls(recorded["empty"]) if "create-oidc" in a]
    assert flag(provider, "--issuer-uri") == "https://token.actions.githubusercontent.com"
    assert flag(provider, "--attribute-condition") == (
        "assertion.repository == 'acme/churnflow' && assertion.ref == 'refs/heads/main'"
    )


def test_the_scheduler_and_pubsub_call_with_oidc_tokens_of_their_own_accounts(recorded):
    calls = gcloud_calls(recorded["empty"])
    [schedule] = [args for args in calls if words(args).startswith("scheduler jobs create http")]
    monitor_url = f"https://churnflow-monitor-{PROJECT_NUMBER}.europe-west1.run.app"
    assert flag(schedule, "--uri") == f"{monitor_url}/"
    assert flag(schedule, "--oidc-service-account-email") == sa("churnflow-scheduler")
    assert flag(schedule, "--oidc-token-audience") == monitor_url
    assert flag(schedule, "--http-method") == "post"
    [push] = [args for args in calls if words(args) == "pubsub subscriptions create retrain-requests-trigger"]
    trigger_url = f"https://churnflow-trigger-{PROJECT_NUMBER}.europe-west1.run.app"
    assert flag(push, "--push-endpoint") == f"{trigger_url}/"
    assert flag(push, "--push-auth-service-account") == sa("churnflow-pubsub-push")
    assert flag(push, "--push-auth-token-audience") == trigger_url


def test_steps_run_in_dependency_order(recorded):
    sequence = [
        words(call["args"]) if call["tool"] == "gcloud" else f"bq {words(call['args'])}"
        for call in recorded["empty"]
        if call["tool"] in ("gcloud", "bq")
    ]

    def first(prefix: str) -> int:
        return next(i for i, command in enumerate(sequence) if command.startswith(prefix))

    assert first("services enable") == 0
    assert first("iam service-accounts create") < first("run deploy churnflow-mlflow")
    assert first("secrets add-iam-policy-binding") < first("run deploy churnflow-mlflow")
    assert first("run deploy churnflow-mlflow") < first("run deploy churnflow-predict")
    assert first("run deploy churnflow-trigger") < first("pubsub subscriptions create retrain-requests-trigger")
    assert first("pubsub subscriptions create") < first("pubsub subscriptions add-iam-policy-binding")
    assert first("run jobs add-iam-policy-binding") < first("scheduler jobs create")
    assert first("iam service-accounts create") < first("bq add-iam-policy-binding")
    assert first("bq mk") < first("run deploy churnflow-monitor")  # the tables exist at the first check
    assert first("run jobs deploy churnflow-retrain") < first("logging metrics create")


def test_images_are_built_from_their_dockerfiles_and_pushed_with_the_commit_tag(recorded):
    docker = [call["args"] for call in recorded["empty"] if call["tool"] == "docker"]
    prefix = f"europe-west1-docker.pkg.dev/{PROJECT}/churnflow"
    builds = {
        args[args.index("--tag") + 1]: (args[args.index("--file") + 1], args[args.index("--build-arg") + 1], args[-1])
        for args in docker
        if args[0] == "build"
    }
    assert builds == {
        f"{prefix}/{name}:{TAG}": (str(REPO_ROOT / dockerfile), f"CODE_VERSION={TAG}", str(REPO_ROOT))
        for name, dockerfile in {
            "predict": "functions/predict/Dockerfile",
            "monitor": "functions/monitor/Dockerfile",
            "retrain": "functions/retrain/Dockerfile",
            "trigger": "functions/trigger/Dockerfile",
            "mlflow": "infra/mlflow/Dockerfile",
        }.items()
    }
    assert sorted(args[1] for args in docker if args[0] == "push") == sorted(builds)
    assert ["auth", "configure-docker", "europe-west1-docker.pkg.dev", "--quiet"] in gcloud_calls(recorded["empty"])


def test_model_rollback_runs_churnflow_promote_as_a_job_execution(recorded):
    assert gcloud_calls(recorded["promote"]) == [
        [
            "run",
            "jobs",
            "execute",
            "churnflow-retrain",
            "--region=europe-west1",
            "--wait",
            "--args=python,-m,churnflow.cli,promote,--version,3",
        ]
    ]


# --- alerting: log-based metrics, the notification channel, the alert policies ---------------------

MONITORING = INFRA / "monitoring"
LOG_METRICS = sorted(path.stem for path in (MONITORING / "log-metrics").glob("*.yaml"))
POLICIES = sorted((MONITORING / "policies").glob("*.json"))
CHANNEL = f"projects/{PROJECT}/notificationChannels/555"


def policies_sent(calls: list[dict]) -> dict[str, dict]:
    """The policies alerts.sh created or updated, by display name, as gcloud was given them."""
    sent = {}
    for call in calls:
        if call["tool"] == "gcloud" and any(arg.startswith("--policy-from-file=") for arg in call["args"]):
            policy = json.loads(call["files"][flag(call["args"], "--policy-from-file")])
            sent[policy["displayName"]] = policy
    return sent


def test_alerting_sets_up_the_log_metrics_the_channel_and_every_policy_notifying_it(recorded):
    calls = recorded["empty"]
    metric_files = {
        words(c["args"]).split()[-1]: c["files"][flag(c["args"], "--config-from-file")]
        for c in calls
        if c["tool"] == "gcloud" and words(c["args"]).startswith("logging metrics create")
    }
    assert metric_files == {name: (MONITORING / "log-metrics" / f"{name}.yaml").read_text() for name in LOG_METRICS}
    [channel] = [c["args"] for c in calls if words(c["args"]) == "beta monitoring channels create"]
    assert (flag(channel, "--type"), flag(channel, "--channel-labels")) == ("email", "email_address=oncall@example.com")

    sent = policies_sent(calls)
    assert len(sent) == len(POLICIES) == 8
    runbook = (REPO_ROOT / "docs" / "runbook.md").read_text()
    anchors = {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-") for h in re.findall(r"^## (.+)$", runbook, re.M)}
    for name, policy in sent.items():
        assert policy["notificationChannels"] == [CHANNEL], name
        assert "@" not in json.dumps(policy).replace("oncall@example.com", ""), name  # every placeholder filled
        [anchor] = re.findall(r"docs/runbook.md#([a-z0-9-]+)", policy["documentation"]["content"])
        assert anchor in anchors, f"{name}: the runbook has no section #{anchor}"
    absent = sent["ChurnFlow: drift check failed or not run"]["conditions"][1]["conditionAbsent"]
    assert absent["duration"] == "3600s"  # two schedule intervals of 30 min
    five_xx = sent["ChurnFlow: predict 5xx rate"]["conditions"][0]["conditionPrometheusQueryLanguage"]
    assert five_xx["query"].endswith("> 0.01") and five_xx["duration"] == "300s"
    job = sent["ChurnFlow: retrain job failed"]["conditions"][1]["conditionThreshold"]
    assert 'resource.labels.job_name="churnflow-retrain"' in job["filter"]


def test_without_an_alert_email_the_policies_notify_no_channel(tmp_path):
    calls = record(tmp_path, "alerts.sh", existing=False, ALERT_EMAIL="")
    assert not [c for c in calls if "channels" in c["args"]]
    sent = policies_sent(calls)
    assert len(sent) == 8 and all(policy["notificationChannels"] == [] for policy in sent.values())


def test_the_alerts_read_the_metrics_and_event_fields_the_code_writes(tmp_path):
    from churnflow.monitoring import metrics as monitor_metrics
    from churnflow.retraining import job, pubsub_trigger
    from churnflow.serving.holder import ModelHolder
    from churnflow.serving.metrics import PredictMetrics
    from churnflow.serving.request_logger import RequestLogger

    holder = ModelHolder(None, "churn", "champion", 60)
    registry = PredictMetrics(holder, RequestLogger(None, tmp_path, 10, 1.0)).registry
    exported = {family.name for family in registry.collect()}
    exported |= {f"{name}_total" for name in exported} | {f"{name}_bucket" for name in exported}
    queried = set()
    for path in POLICIES:
        for condition in json.loads(path.read_text())["conditions"]:
            if "conditionPrometheusQueryLanguage" in condition:
                queried |= set(re.findall(r"churnflow_\w+", condition["conditionPrometheusQueryLanguage"]["query"]))
    assert queried and queried <= exported, queried - exported

    events = {
        monitor_metrics.CHECK_EVENT: {"status", "drift_share", "labelled_roc_auc"},
        monitor_metrics.RULE_EVENT: {"rule"},
        pubsub_trigger.EVENT: {"delivery"},
        job.EVENT: {"status"},
    }
    for name in LOG_METRICS:
        text = (MONITORING / "log-metrics" / f"{name}.yaml").read_text()
        [event] = re.findall(r'jsonPayload.event="(\w+)"', text)
        fields = set(re.findall(r"EXTRACT\(jsonPayload\.(\w+)\)", text))
        assert event in events and fields and fields <= events[event], name


# --- BigQuery: the dataset, the external tables over the bucket, read access ------------------------

DATASET = f"{PROJECT}:churnflow"


def table_definition(calls: list[dict], table: str) -> dict:
    """The external table definition bq was given to create or update `table` (bq mkdef's output)."""
    [call] = [
        c
        for c in calls
        if c["tool"] == "bq" and words(c["args"]) in (f"mk {DATASET}.{table}", f"update {DATASET}.{table}")
    ]
    return json.loads(call["files"][flag(call["args"], "--external_table_definition")])


def test_an_empty_project_gets_a_private_dataset_and_three_external_tables(recorded):
    calls = bq_calls(recorded["empty"])
    assert [words(args) for args in calls if "mk" in args] == [
        f"mk {DATASET}",
        f"mk {DATASET}.request_log",
        f"mk {DATASET}.labels",
        f"mk {DATASET}.labelled",
    ]
    [dataset] = [args for args in calls if words(args) == f"mk {DATASET}"]
    assert "--dataset" in dataset and flag(dataset, "--location") == "EU"
    assert not [arg for arg in dataset if "expiration" in arg]
    [update] = [args for args in calls if words(args) == f"update {DATASET}"]
    assert flag(update, "--default_table_expiration") == "0"  # none, even if someone set one since
    every_arg = " ".join(arg for args in calls for arg in args)
    assert "allUsers" not in every_arg and "allAuthenticatedUsers" not in every_arg


@pytest.mark.parametrize("run", ["empty", "existing"])
def test_the_external_tables_read_their_objects_by_hive_partition(recorded, run):
    bucket = f"gs://{PROJECT}-churnflow"
    request_log, labels = (table_definition(recorded[run], table) for table in ("request_log", "labels"))
    common = {
        "sourceFormat": "NEWLINE_DELIMITED_JSON",
        "compression": "GZIP",
        "jsonOptions": {"encoding": "UTF-8"},
        "ignoreUnknownValues": True,  # a field added to the records later does not break the queries
        "maxBadRecords": 1000,
    }
    assert request_log == common | {
        "sourceUris": [f"{bucket}/{layout.REQUEST_LOG_PREFIX}*"],
        "hivePartitioningOptions": {
            "mode": "CUSTOM",
            "sourceUriPrefix": f"{bucket}/requests/{{dt:DATE}}/{{hour:INTEGER}}",
            "requirePartitionFilter": True,
        },
        "schema": {"fields": tables.bigquery_schema("request_log")},
    }
    assert labels == common | {
        "sourceUris": [f"{bucket}/{layout.LABELS_PREFIX}*"],
        "hivePartitioningOptions": {"mode": "CUSTOM", "sourceUriPrefix": f"{bucket}/labels/{{dt:DATE}}"},
        "schema": {"fields": tables.bigquery_schema("labels")},
    }
    labelled = table_definition(recorded[run], "labelled")
    assert labelled == {
        "sourceFormat": "PARQUET",
        "parquetOptions": {"enableListInference": False, "enumAsString": False, "mapTargetType": None},
        "sourceUris": [f"{bucket}/{layout.LABELLED_PREFIX}*"],
        "hivePartitioningOptions": {
            "mode": "CUSTOM",
            "sourceUriPrefix": f"{bucket}/labelled/{{dt:DATE}}",
            "requirePartitionFilter": True,
        },
        "schema": {"fields": tables.bigquery_schema("labelled")},
    }
    # the one definition of the tables, and the object names the writers use, agree with this layout
    for table, definition in (("request_log", request_log), ("labels", labels), ("labelled", labelled)):
        prefix = definition["hivePartitioningOptions"]["sourceUriPrefix"]
        assert prefix.endswith(tables.hive_partition_spec(table))
    written = layout.request_log_object(datetime(2026, 11, 30, 7, 5, tzinfo=UTC), "b1")
    assert written.startswith("requests/dt=2026-11-30/hour=07/")
    assert layout.labels_object(datetime(2026, 11, 30, tzinfo=UTC), "i1").startswith("labels/dt=2026-11-30/")
    key = layout.import_key(datetime(2026, 11, 30, tzinfo=UTC), "i1")
    assert layout.labelled_object(date(2026, 11, 2), key).startswith("labelled/dt=2026-11-02/")


def test_a_set_up_project_gets_its_dataset_and_tables_updated_in_place(recorded):
    calls = bq_calls(recorded["existing"])
    assert not [args for args in calls if "mk" in args]
    assert [words(args) for args in calls if "update" in args] == [
        f"update {DATASET}",
        f"update {DATASET}.request_log",
        f"update {DATASET}.labels",
        f"update {DATASET}.labelled",
    ]
    for table in ("request_log", "labels", "labelled"):
        assert table_definition(recorded["existing"], table) == table_definition(recorded["empty"], table)


# gcloud's command tree, as shipped in the Cloud SDK for shell completion


@pytest.fixture(scope="module")
def command_tree() -> dict:
    path = gcloud_sdk_root() / "data" / "cli" / "gcloud_completions.py"
    spec = importlib.util.spec_from_file_location("gcloud_completions", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.STATIC_COMPLETION_CLI_TREE


def problems(tree: dict, args: list[str]) -> list[str]:
    """What the real gcloud would reject in `args`: unknown command, unknown flag, bad enum value."""
    node, flags, path = tree, dict(tree["flags"]), []
    for arg in args:
        if arg.startswith("-") or arg not in node["commands"]:
            break
        node, path = node["commands"][arg], [*path, arg]
        flags.update(node["flags"])
    found = [] if not node["commands"] else [f"`gcloud {' '.join(path)}` is a group, not a command"]
    for arg in (arg for arg in args if arg.startswith("--")):
        name, has_value, value = arg.partition("=")
        kind = flags.get(name)
        if kind is None and name.startswith("--no-") and flags.get(f"--{name[5:]}") == "bool":
            kind = "negated"
        found += flag_problems(name, kind, has_value, value)
    return found


def flag_problems(name: str, kind: str | list[str] | None, has_value: str, value: str, scope: str = "") -> list[str]:
    """What is wrong with `name[=value]`, a flag of `kind` ("bool", "negated", an enum, another kind, None:
    no such flag)."""
    if kind is None:
        return [f"unknown {scope}flag {name}"]
    if kind in ("bool", "negated") and has_value:
        return [f"{name} takes no value"]
    if kind not in ("bool", "negated") and not has_value:
        return [f"{name} needs =VALUE (the scripts always join flag and value)"]
    if isinstance(kind, list) and value not in kind:
        return [f"{name}={value}: not one of {kind}"]
    return []


def test_every_gcloud_command_of_the_scripts_exists_with_these_flags(recorded, command_tree):
    commands = {tuple(args) for run in recorded.values() for args in gcloud_calls(run)}
    assert len(commands) > 80
    rejected = {" ".join(args): problems(command_tree, list(args)) for args in commands}
    assert {command: found for command, found in rejected.items() if found} == {}


def test_the_command_tree_check_rejects_what_gcloud_rejects(command_tree):
    assert problems(command_tree, ["run", "deploy", "x", "--vpc-egress=sometimes"]) == [
        "--vpc-egress=sometimes: not one of ['all', 'all-traffic', 'private-ranges-only']"
    ]
    assert problems(command_tree, ["run", "deploy", "x", "--no-such-flag"]) == ["unknown flag --no-such-flag"]
    assert problems(command_tree, ["scheduler", "jobs", "update", "http", "j", "--headers=a=b"]) == [
        "unknown flag --headers"
    ]
    assert problems(command_tree, ["pubsub", "topics"]) == ["`gcloud pubsub topics` is a group, not a command"]


# bq's commands and flags, as its own help lists them

FLAG_LINE = r"^ {%d}(?:-\w,)?--(\[no\])?(\w+):(.*)$"


def bq_flags(text: str, indent: int) -> dict[str, str | list[str]]:
    """Flag name -> "bool", "value" or its enum values, from `bq help COMMAND` (or `bq --help`) text."""
    flags: dict[str, str | list[str]] = {}
    matches = list(re.finditer(FLAG_LINE % indent, text, flags=re.MULTILINE))
    for match, following in zip(matches, [*matches[1:], None], strict=True):
        negatable, name, rest = match.groups()
        rest = (rest + text[match.end() : following.start() if following else len(text)]).lstrip()
        if negatable:
            flags[name] = "bool"
        elif rest.startswith("<"):  # an enum, wrapped across lines: <CSV|NEWLINE_DELIM\n   ITED_JSON|...>
            flags[name] = re.sub(r"\s+", "", rest[1 : rest.index(">")]).split("|")
        else:
            flags[name] = "value"
    return flags


@pytest.fixture(scope="module")
def bq_help(tmp_path_factory) -> Callable[[str | None], dict | None]:
    """The flags of a bq command (None: the global flags), or None for a command bq does not have."""
    tmp = tmp_path_factory.mktemp("bq-help")
    (tmp / "token").write_text("help-sends-no-request\n")
    env = os.environ | {"CLOUDSDK_CONFIG": str(tmp / "config"), "CLOUDSDK_AUTH_ACCESS_TOKEN_FILE": str(tmp / "token")}
    cache: dict[str | None, dict | None] = {}

    def flags(command: str | None) -> dict | None:
        if command not in cache:
            args = ["help", command] if command else ["--help"]
            result = subprocess.run([shutil.which("bq"), *args], env=env, capture_output=True, text=True, timeout=60)
            # bq help exits 1 either way; for a command it does not have it lists them all instead
            listed = "Any of the following commands" in result.stdout
            known = command is None or (not listed and re.search(rf"^{command}\s", result.stdout, re.MULTILINE))
            cache[command] = bq_flags(result.stdout, 2 if command is None else 31) if known else None
        return cache[command]

    return flags


def bq_problems(help: Callable[[str | None], dict | None], args: list[str]) -> list[str]:
    """What the real bq would reject in `args`: unknown command, unknown flag, bad enum value. Global
    flags go before the command, the command's own after it."""
    position = next(i for i, arg in enumerate(args) if not arg.startswith("-"))
    command = args[position]
    if help(command) is None:
        return [f"unknown command {command}"]
    found = []
    for scope, where, flags in (("global ", args[:position], help(None)), ("", args[position + 1 :], help(command))):
        for arg in (arg for arg in where if arg.startswith("--")):
            name, has_value, value = arg[2:].partition("=")
            kind = flags.get(name)
            if kind is None and name.startswith("no") and flags.get(name[2:]) == "bool":
                kind = "negated"
            found += flag_problems(f"--{name}", kind, has_value, value, scope)
    return found


def test_every_bq_command_of_the_scripts_exists_with_these_flags(recorded, bq_help):
    commands = {tuple(args) for run in recorded.values() for args in bq_calls(run)}
    assert {args[next(i for i, a in enumerate(args) if not a.startswith("-"))] for args in commands} == {
        "show",
        "mk",
        "update",
        "mkdef",
        "add-iam-policy-binding",
    }
    rejected = {" ".join(args): bq_problems(bq_help, list(args)) for args in commands}
    assert {command: found for command, found in rejected.items() if found} == {}


def test_the_bq_check_rejects_what_bq_rejects(bq_help):
    assert bq_problems(bq_help, ["mkdef", "--source_format=JSONL", "gs://b/x"]) == [
        "--source_format=JSONL: not one of ['CSV', 'GOOGLE_SHEETS', 'NEWLINE_DELIMITED_JSON', 'DATASTORE_BACKUP', "
        "'DELTA_LAKE', 'ORC', 'PARQUET', 'AVRO', 'ICEBERG']"
    ]
    assert bq_problems(bq_help, ["mk", "--compression=GZIP", "d.t"]) == ["unknown flag --compression"]
    assert bq_problems(bq_help, ["mk", "--dataset=yes", "d"]) == ["--dataset takes no value"]
    assert bq_problems(bq_help, ["mk", "--nodataset", "--location=EU", "d"]) == ["unknown flag --location"]
    assert bq_problems(bq_help, ["--no_such_global", "show", "d"]) == ["unknown global flag --no_such_global"]
    assert bq_problems(bq_help, ["mkdataset", "d"]) == ["unknown command mkdataset"]
