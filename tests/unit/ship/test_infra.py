"""infra/: one config file whose names agree with the code, and scripts that are strict and idempotent
by construction. (They run for real in tests/integration/test_infra_scripts.py; shellcheck: make lint.)"""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from churnflow.local import bootstrap
from churnflow.outcomes import tables
from churnflow.settings import REPO_ROOT, CommonSettings, RetrainSettings
from churnflow.storage import layout

INFRA = REPO_ROOT / "infra"
SCRIPTS = sorted(INFRA.glob("*.sh"))
EXECUTABLES = [script for script in SCRIPTS if script.name != "lib.sh"]


def config(**overrides: str) -> dict[str, str]:
    """The variables infra/config.env defines, as bash sees them after sourcing it."""
    env = {"PATH": os.environ["PATH"], "PROJECT_ID": "proj-x", **overrides}
    result = subprocess.run(
        ["bash", "-c", 'set -a; source "$0"; env -0', str(INFRA / "config.env")],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return dict(item.split("=", 1) for item in result.stdout.split("\0") if "=" in item)


def test_config_names_agree_with_the_code():
    values = config()
    topic = CommonSettings().retrain_topic
    assert values["RETRAIN_TOPIC"] == topic
    assert values["DEAD_LETTER_TOPIC"] == bootstrap.dead_letter_topic(topic)
    assert values["TRIGGER_SUBSCRIPTION"] == bootstrap.push_subscription(topic)
    assert values["TRAINING_DATA_OBJECT"] == layout.TRAINING_DATA
    assert values["REQUEST_LOG_PREFIX"] == layout.REQUEST_LOG_PREFIX
    assert values["LABELS_PREFIX"] == layout.LABELS_PREFIX
    assert values["LABELLED_PREFIX"] == layout.LABELLED_PREFIX
    assert values["MLFLOW_ARTIFACTS_PREFIX"] == layout.MLFLOW_ARTIFACTS_PREFIX
    assert values["RETRAIN_JOB"] == RetrainSettings().job_name
    assert values["REGION"] == RetrainSettings().region


def test_config_derives_names_from_the_project_and_region():
    values = config(REGION="us-central1")
    assert values["BUCKET"] == "proj-x-churnflow"
    assert values["PREDICT_IMAGE"] == "us-central1-docker.pkg.dev/proj-x/churnflow/predict"
    assert values["MLFLOW_IMAGE"] == "us-central1-docker.pkg.dev/proj-x/churnflow/mlflow"
    assert values["TRIGGER_IMAGE"] == "us-central1-docker.pkg.dev/proj-x/churnflow/trigger"


def test_service_account_ids_are_valid_and_distinct():
    values = config()
    accounts = [value for name, value in values.items() if name.endswith("_SA")]
    assert len(accounts) == len(set(accounts)) == 9
    assert all(re.fullmatch(r"[a-z][a-z0-9-]{4,28}[a-z0-9]", account) for account in accounts)


@pytest.mark.parametrize("script", EXECUTABLES, ids=lambda path: path.name)
def test_scripts_are_strict_executable_and_read_the_one_config(script):
    lines = [line for line in script.read_text().splitlines() if line and not line.startswith("#")]
    assert lines[0] == "set -euo pipefail"
    assert os.access(script, os.X_OK)
    assert 'source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"' in lines or script.name == "up.sh"


def test_up_runs_every_setup_script():
    steps = re.findall(r'"\$\{here\}/([a-z]+\.sh)"', (INFRA / "up.sh").read_text())
    operations = {"up.sh", "promote.sh"}  # the whole setup itself, and the model rollback
    assert sorted(set(steps)) == sorted(script.name for script in EXECUTABLES if script.name not in operations)


def test_no_literal_resource_names_outside_the_config():
    names = {value for name, value in config().items() if name.endswith(("_SERVICE", "_JOB", "_TOPIC", "_SA"))}
    for script in EXECUTABLES:
        text = script.read_text()
        assert not [name for name in names if name in text], script.name


def test_bigquery_tables_are_those_of_the_shared_definition_and_their_columns_are_not_repeated():
    script = (INFRA / "bigquery.sh").read_text()
    assert sorted(re.findall(r"^external_table (\w+) ", script, flags=re.MULTILINE)) == sorted(tables.TABLES)
    columns = {name for table in tables.TABLES.values() for name, _ in (*table.columns, *table.partitions)}
    generic = {"dt", "hour", "ts", "seq", "instance", "tenure"}  # words that occur in prose too
    for path in INFRA.rglob("*"):
        if path.is_file() and path.suffix in (".sh", ".env", ".json"):
            text = path.read_text()
            assert not [c for c in columns - generic if re.search(rf"\b{c}\b", text)], path.name


SECRET_PATTERNS = re.compile(
    r"BEGIN [A-Z ]*PRIVATE KEY|AIza[0-9A-Za-z_-]{30}|\"private_key\"|credentials_json|password=[^$\"\s]"
)


def test_no_secret_in_any_shipped_file():
    shipped = [
        *INFRA.rglob("*"),
        *(REPO_ROOT / ".github").rglob("*"),
        REPO_ROOT / "cloudbuild.yaml",
        REPO_ROOT / "docker-compose.local.yml",
        *REPO_ROOT.glob("functions/*/Dockerfile"),
    ]
    for path in shipped:
        if path.is_file() and "__pycache__" not in path.parts:
            assert not SECRET_PATTERNS.search(path.read_text()), path
