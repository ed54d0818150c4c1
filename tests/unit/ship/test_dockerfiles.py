"""The Dockerfiles follow the conventions (slim base, dependencies before code, non-root user, unbuffered
output, the server on $PORT) and copy only what the build context sends.

No Docker engine runs here: the files are parsed and checked instruction by instruction (and linted
by hadolint in `make lint`).
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

from churnflow.settings import REPO_ROOT

DOCKERFILES = {
    "predict": REPO_ROOT / "functions/predict/Dockerfile",
    "monitor": REPO_ROOT / "functions/monitor/Dockerfile",
    "retrain": REPO_ROOT / "functions/retrain/Dockerfile",
    "trigger": REPO_ROOT / "functions/trigger/Dockerfile",
    "mlflow": REPO_ROOT / "infra/mlflow/Dockerfile",
}
SERVERS = ("predict", "monitor", "trigger", "mlflow")  # the retrain image's default command is the job (no port)


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str


def parse(path: Path) -> list[Instruction]:
    """The instructions of a Dockerfile: comments dropped, continuation lines joined."""
    text = re.sub(r"\\\n", " ", "\n".join(line for line in path.read_text().splitlines() if not line.startswith("#")))
    return [
        Instruction(keyword.upper(), rest.strip())
        for keyword, _, rest in (line.strip().partition(" ") for line in text.splitlines() if line.strip())
    ]


def env_of(instructions: list[Instruction]) -> dict[str, str]:
    found = {}
    for instruction in instructions:
        if instruction.keyword == "ENV":
            found.update(pair.split("=", 1) for pair in shlex.split(instruction.arguments))
    return found


def copies(instructions: list[Instruction]) -> list[tuple[list[str], str]]:
    """(sources, destination) of every COPY."""
    result = []
    for instruction in instructions:
        if instruction.keyword == "COPY":
            *sources, destination = shlex.split(instruction.arguments)
            result.append((sources, destination))
    return result


def index_of(instructions: list[Instruction], predicate) -> int:
    return next(i for i, instruction in enumerate(instructions) if predicate(instruction))


@pytest.fixture(params=sorted(DOCKERFILES))
def image(request) -> tuple[str, list[Instruction]]:
    return request.param, parse(DOCKERFILES[request.param])


def test_base_is_one_slim_python_for_all_images():
    bases = {name: parse(path)[0] for name, path in DOCKERFILES.items()}
    assert {base.keyword for base in bases.values()} == {"FROM"}
    assert {base.arguments for base in bases.values()} == {"python:3.11-slim-bookworm"}


def test_runs_as_a_numeric_non_root_user(image):
    name, instructions = image
    users = [instruction.arguments for instruction in instructions if instruction.keyword == "USER"]
    assert users == ["10001:10001"], name
    assert index_of(instructions, lambda i: i.keyword == "USER") < index_of(instructions, lambda i: i.keyword == "CMD")


def test_python_output_is_unbuffered_and_the_port_is_declared(image):
    name, instructions = image
    env = env_of(instructions)
    assert env["PYTHONUNBUFFERED"] == "1"
    exposed = [instruction.arguments for instruction in instructions if instruction.keyword == "EXPOSE"]
    assert exposed == [env["PORT"]], name


@pytest.mark.parametrize("name", SERVERS)
def test_servers_bind_the_port_cloud_run_passes(name):
    instructions = parse(DOCKERFILES[name])
    command = json.loads(next(i.arguments for i in instructions if i.keyword == "CMD"))
    assert command[:2] == ["sh", "-c"]
    assert command[2].startswith("exec ")  # the server replaces the shell and receives SIGTERM itself
    assert '--port "$PORT"' in command[2]


def test_retrain_image_runs_the_job_by_default():
    instructions = parse(DOCKERFILES["retrain"])
    assert json.loads(next(i.arguments for i in instructions if i.keyword == "CMD")) == [
        "python",
        "functions/retrain/job.py",
    ]


def test_dependencies_are_installed_before_the_code_is_copied(image):
    name, instructions = image
    first_copy = index_of(instructions, lambda i: i.keyword == "COPY")
    install = index_of(instructions, lambda i: i.keyword == "RUN" and "pip install" in i.arguments)
    assert copies(instructions)[0][0] == [str(DOCKERFILES[name].parent.relative_to(REPO_ROOT) / "requirements.lock")]
    assert first_copy < install
    later_copies = [i for i in instructions[install:] if i.keyword == "COPY"]
    assert all("requirements." not in i.arguments for i in later_copies)


def test_pip_installs_nothing_but_the_locked_requirements_checked_by_hash(image):
    name, instructions = image
    installs = [" ".join(i.arguments.split()) for i in instructions if i.keyword == "RUN" and "pip" in i.arguments]
    target = copies(instructions)[0][1]
    assert target.endswith("requirements.lock"), name
    [install] = installs
    assert install.startswith(f"pip install --require-hashes --no-deps --requirement {target} && "), name


def test_the_dependency_layer_drops_only_the_libraries_test_suites(image):
    # evidently ships a runtime module named `tests` (evidently.legacy.tests): only named libraries are pruned
    name, instructions = image
    [install] = [
        " ".join(i.arguments.split()) for i in instructions if i.keyword == "RUN" and "pip install" in i.arguments
    ]
    prune = install.split(" && ", 1)[1]
    assert 'rglob("tests")' in prune and "evidently" not in prune
    assert '("numpy", "pandas", "pyarrow", "scipy", "sklearn", "statsmodels")' in prune, name


@pytest.mark.parametrize("name", ["monitor", "retrain", "mlflow"])
def test_images_importing_mlflow_silence_gitpythons_missing_git_warning(name):
    # no git in the images: GitPython, an MLflow dependency, prints a 20-line warning at every import
    assert env_of(parse(DOCKERFILES[name]))["GIT_PYTHON_REFRESH"] == "quiet"


def test_no_image_trusts_anything_but_the_base_images_certificates(image):
    # the offline stand-in base images trust this machine's proxy CA (infra/local/standins); the
    # project's own images add no certificate or pip index setting of their own
    name, instructions = image
    text = " ".join(i.arguments for i in instructions).lower()
    for word in ("cert", "ca-certificates", "trusted-host", "index-url", "pip.conf", "standin"):
        assert word not in text, (name, word)


@pytest.mark.parametrize("name", ["predict", "trigger"])
def test_lean_images_copy_no_training_or_job_code_or_data(name):
    sources = [source for sources, _ in copies(parse(DOCKERFILES[name])) for source in sources]
    assert sources == [f"functions/{name}/requirements.lock", "shared/churnflow", f"functions/{name}/main.py"]


def test_retrain_image_holds_the_trigger_entry_point_for_the_local_compose_stack():
    sources = [source for sources, _ in copies(parse(DOCKERFILES["retrain"])) for source in sources]
    assert {"functions/retrain/job.py", "functions/trigger/main.py"} <= set(sources)


def dockerignore_includes(path: str) -> bool:
    """Whether the build context keeps `path`: .dockerignore rules in order, the last match wins, and a
    rule matching a parent directory matches everything below it (Docker's semantics)."""

    def matches(pattern: str, candidate: str) -> bool:
        regex = re.escape(pattern).replace(r"\*\*", ".*").replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        return re.fullmatch(regex, candidate) is not None

    parents = [str(Path(*Path(path).parts[: n + 1])) for n in range(len(Path(path).parts))]
    included = True
    for line in (REPO_ROOT / ".dockerignore").read_text().splitlines():
        rule = line.strip()
        if not rule or rule.startswith("#"):
            continue
        negated, pattern = rule.startswith("!"), rule.lstrip("!")
        if any(matches(pattern, candidate) for candidate in parents):
            included = negated
    return included


def test_every_copied_file_exists_and_is_sent_to_the_builder(image):
    name, instructions = image
    for sources, _ in copies(instructions):
        for source in sources:
            path = REPO_ROOT / source
            files = [path] if path.is_file() else [p for p in path.rglob("*.py") if "__pycache__" not in p.parts]
            assert files, f"{name}: COPY {source} copies nothing"
            for file in files:
                assert dockerignore_includes(str(file.relative_to(REPO_ROOT))), f"{name}: {file} is not in the context"


def test_build_context_leaves_out_what_no_image_needs():
    for path in (".venv/bin/python", ".git/HEAD", "tests/conftest.py", "docs/deploy.md", "bench/predict.py"):
        assert not dockerignore_includes(path), path
    assert not dockerignore_includes("shared/churnflow/__pycache__/settings.cpython-311.pyc")
