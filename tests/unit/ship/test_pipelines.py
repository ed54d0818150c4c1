"""CI/CD files: GitHub Actions and Cloud Build run Makefile targets (no command of their own), with
least permissions, timeouts, concurrency, Workload Identity Federation and image tags from the commit.
actionlint checks the workflows themselves in `make lint`."""

from __future__ import annotations

import os
import re
import subprocess

import pytest
import yaml

from churnflow.settings import REPO_ROOT

WORKFLOWS = REPO_ROOT / ".github" / "workflows"
MAKE_COMMAND = re.compile(r"make(?: [a-z][a-z0-9-]*)+")


def load(path) -> dict:
    # PyYAML reads the key `on` as True (YAML 1.1): map it back
    return {("on" if key is True else key): value for key, value in yaml.safe_load(path.read_text()).items()}


def make(*args: str) -> str:
    """What `make ARGS` prints, as a top-level make (not as a child of the `make test` running us)."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    result = subprocess.run(
        ["make", "--no-print-directory", *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    return result.stdout


def make_targets() -> set[str]:
    """The targets `make` knows, as printed by make itself (its database, no recipe run)."""
    database = make("--print-data-base", "--question", "--no-builtin-rules")
    return set(re.findall(r"^([a-z][a-z0-9-]*):", database, flags=re.MULTILINE))


TARGETS = make_targets()
CI = load(WORKFLOWS / "ci.yml")
DEPLOY = load(WORKFLOWS / "deploy.yml")
CLOUDBUILD = yaml.safe_load((REPO_ROOT / "cloudbuild.yaml").read_text())


def run_steps(workflow: dict) -> list[str]:
    return [step["run"] for job in workflow["jobs"].values() for step in job["steps"] if "run" in step]


def test_the_makefile_defines_the_shipping_vocabulary():
    assert {"setup", "test", "test-unit", "lint", "requirements", "images", "push", "deploy", "infra"} <= TARGETS


@pytest.mark.parametrize("workflow", [CI, DEPLOY], ids=["ci", "deploy"])
def test_workflow_steps_only_call_existing_make_targets(workflow):
    commands = run_steps(workflow)
    assert commands
    for command in commands:
        assert MAKE_COMMAND.fullmatch(command), f"not a plain make call: {command!r}"
        assert set(command.split()[1:]) <= TARGETS, command


def test_ci_runs_lint_and_the_full_suite_on_pushes_and_pull_requests():
    assert set(CI["on"]) == {"push", "pull_request"}
    assert sorted(run_steps(CI)) == ["make lint", "make test", "make test-compose"]


def test_the_ci_script_runs_the_compose_test_after_the_suite():
    steps = [line.split()[:2] for line in (REPO_ROOT / ".ci/run").read_text().splitlines() if line.startswith("make ")]
    assert steps == [["make", "test"], ["make", "test-compose"], ["make", "lint"]]


def test_dependabot_watches_the_declared_ranges_every_dockerfile_and_the_workflows():
    updates = yaml.safe_load((REPO_ROOT / ".github/dependabot.yml").read_text())["updates"]
    by_ecosystem = {update["package-ecosystem"]: update for update in updates}
    assert set(by_ecosystem) == {"pip", "docker", "github-actions"}
    assert by_ecosystem["pip"]["directory"] == "/"  # pyproject.toml: the ranges the locks come from
    dockerfiles = {"/" + str(path.parent.relative_to(REPO_ROOT)) for path in REPO_ROOT.glob("*/*/Dockerfile")}
    assert set(by_ecosystem["docker"]["directories"]) == dockerfiles


def test_ci_installs_the_pubsub_emulator_it_tests_against():
    steps = CI["jobs"]["test"]["steps"]
    gcloud = next(step for step in steps if step.get("uses", "").startswith("google-github-actions/setup-gcloud@"))
    assert set(gcloud["with"]["install_components"].split(",")) == {"beta", "pubsub-emulator"}
    assert any(step.get("uses", "").startswith("actions/setup-java@") for step in steps)


@pytest.mark.parametrize("workflow", [CI, DEPLOY], ids=["ci", "deploy"])
def test_every_job_has_a_timeout(workflow):
    assert all(0 < job["timeout-minutes"] <= 60 for job in workflow["jobs"].values())


def test_ci_reads_the_repository_and_nothing_else_and_cancels_superseded_runs():
    assert CI["permissions"] == {"contents": "read"}
    assert CI["concurrency"]["cancel-in-progress"] is True
    assert "${{ github.ref }}" in CI["concurrency"]["group"]


def test_deploy_runs_after_ci_passed_on_main_and_never_cancels_a_rollout():
    assert DEPLOY["on"]["workflow_run"] == {"workflows": ["CI"], "types": ["completed"], "branches": ["main"]}
    condition = DEPLOY["jobs"]["deploy"]["if"]
    assert "github.event.workflow_run.conclusion == 'success'" in condition
    assert "github.event.workflow_run.event == 'push'" in condition
    assert DEPLOY["concurrency"] == {"group": "deploy-production", "cancel-in-progress": False}


def test_deploy_gets_google_credentials_through_workload_identity_federation_only():
    assert DEPLOY["permissions"] == {"contents": "read", "id-token": "write"}
    steps = DEPLOY["jobs"]["deploy"]["steps"]
    auth = next(step for step in steps if step.get("uses", "").startswith("google-github-actions/auth@"))
    assert set(auth["with"]) == {"workload_identity_provider", "service_account"}
    assert all(value.startswith("${{ vars.") for value in auth["with"].values())  # ids, not secrets
    text = (WORKFLOWS / "deploy.yml").read_text()
    assert "credentials_json" not in text and "secrets." not in text


def test_deploy_builds_pushes_and_rolls_out_the_checked_out_commit():
    steps = DEPLOY["jobs"]["deploy"]["steps"]
    checkout = next(step for step in steps if step.get("uses", "").startswith("actions/checkout@"))
    assert checkout["with"]["ref"] == "${{ github.event.workflow_run.head_sha || github.sha }}"
    assert run_steps(DEPLOY) == ["make images push deploy"]  # TAG defaults to that commit in the Makefile


def test_makefile_tags_images_with_the_commit():
    head = subprocess.run(["git", "rev-parse", "--short=7", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True)
    if head.returncode != 0:
        pytest.skip("not a git checkout (e.g. a Cloud Build source upload, which passes TAG itself)")
    assert make("--dry-run", "images").strip() == f"infra/images.sh build {head.stdout.strip()}"


def test_cloudbuild_is_test_build_push_deploy_in_that_order():
    assert [step["id"] for step in CLOUDBUILD["steps"]] == ["test", "build", "push", "deploy"]
    assert all(step["entrypoint"] == "make" for step in CLOUDBUILD["steps"])
    assert [step["args"][0] for step in CLOUDBUILD["steps"]] == ["test-unit", "images", "push", "deploy"]
    assert {step["args"][0] for step in CLOUDBUILD["steps"]} <= TARGETS


def test_cloudbuild_tags_images_with_the_commit_in_the_project_it_builds_in():
    for step in CLOUDBUILD["steps"][1:]:
        assert step["args"][1:] == ["TAG=$SHORT_SHA", "PROJECT_ID=$PROJECT_ID"], step["id"]


def test_cloudbuild_substitutions_are_defined_and_documented():
    text = (REPO_ROOT / "cloudbuild.yaml").read_text()
    header = text[: text.index("substitutions:")]
    used = set(re.findall(r"\$\{?([A-Z_]+)\}?", yaml.safe_dump(CLOUDBUILD["steps"])))
    builtin = {"PROJECT_ID", "SHORT_SHA"}
    assert used == builtin | set(CLOUDBUILD["substitutions"])
    for name in used:
        assert re.search(rf"^#\s+\$?{name}\s", header, flags=re.MULTILINE), f"{name} is not documented"


def test_cloudbuild_logs_only_to_cloud_logging():
    assert CLOUDBUILD["options"]["logging"] == "CLOUD_LOGGING_ONLY"


def test_make_help_is_the_default_and_lists_every_phony_target_with_its_comment():
    makefile = (REPO_ROOT / "Makefile").read_text()
    phony = {name for line in re.findall(r"^\.PHONY: (.+)$", makefile, re.M) for name in line.split()}
    listed = dict(line.split(None, 1) for line in make().splitlines() if line.startswith("  "))
    assert set(listed) == phony - {"bench"}  # `bench` is declared phony but has no rule
    assert listed["help"] == "List the targets with what they do"
    assert listed["test"] == "Run the full test suite (starts the local stack itself)"
