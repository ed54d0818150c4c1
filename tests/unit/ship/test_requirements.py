"""The images' requirements: generated from pyproject.toml, complete for their entry points, and the
predict and trigger images free of training packages (checked on the full dependency closure, not just
the file)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from churnflow.settings import REPO_ROOT

TRAINING_ONLY = {"scikit-learn", "pandas", "mlflow", "mlflow-skinny", "evidently", "scipy", "pyarrow"}


def load_generator():
    spec = importlib.util.spec_from_file_location("gen_requirements", REPO_ROOT / "infra" / "gen_requirements.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


gen = load_generator()
PROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]


def requirement_lines(relative: str) -> list[str]:
    lines = (REPO_ROOT / relative).read_text().splitlines()
    return [line for line in lines if line and not line.startswith("#")]


def closure(requirements: list[str]) -> set[str]:
    """Every distribution `pip install` of `requirements` brings in, resolved with the installed versions."""
    found: set[str] = set()
    todo = [(Requirement(line), {""}) for line in requirements]
    while todo:
        requirement, extras = todo.pop()
        if requirement.marker and not any(requirement.marker.evaluate({"extra": e}) for e in extras):
            continue
        name = canonicalize_name(requirement.name)
        wanted = {"", *requirement.extras}
        if (name, frozenset(wanted)) in found:
            continue
        found.add((name, frozenset(wanted)))
        todo += [(Requirement(line), wanted) for line in metadata.requires(name) or []]
    return {name for name, _ in found}


def test_every_requirements_file_is_what_the_generator_writes():
    assert gen.main(["--check"]) == 0
    for relative, deployable in gen.DEPLOYABLES.items():
        assert (REPO_ROOT / relative).read_text() == gen.render(PROJECT, deployable)


def test_generator_takes_core_extras_and_picks_with_their_declared_bounds():
    retrain = gen.requirements(PROJECT, gen.DEPLOYABLES["functions/retrain/requirements.txt"])
    assert set(PROJECT["dependencies"]) <= set(retrain)
    assert set(PROJECT["optional-dependencies"]["train"]) <= set(retrain)
    assert [line for line in retrain if gen.name_of(line) == "functions-framework"] == [
        line for line in PROJECT["optional-dependencies"]["monitor"] if gen.name_of(line) == "functions-framework"
    ]
    mlflow = gen.requirements(PROJECT, gen.DEPLOYABLES["infra/mlflow/requirements.txt"])
    assert sorted(gen.name_of(line) for line in mlflow) == ["google-cloud-storage", "mlflow", "psycopg2-binary"]


LEAN = {
    "functions/predict/requirements.txt": {"fastapi", "uvicorn", "mangum", "google-cloud-storage"},
    "functions/trigger/requirements.txt": {"functions-framework", "google-cloud-run", "google-cloud-storage"},
}


@pytest.mark.parametrize(("requirements", "key_packages"), LEAN.items(), ids=["predict", "trigger"])
def test_lean_requirements_name_no_training_package(requirements, key_packages):
    names = {gen.name_of(line) for line in requirement_lines(requirements)}
    assert names & TRAINING_ONLY == set()
    assert key_packages <= names


@pytest.mark.parametrize(("requirements", "key_packages"), LEAN.items(), ids=["predict", "trigger"])
def test_lean_images_install_no_training_package_even_indirectly(requirements, key_packages):
    installed = closure(requirement_lines(requirements))
    assert key_packages | {"pydantic", "google-api-core"} <= installed
    assert installed & TRAINING_ONLY == set()


def test_the_retrain_image_installs_every_package_a_logged_model_pins():
    from churnflow.registry.write import pip_requirements

    pinned = {canonicalize_name(line.split("==")[0]) for line in pip_requirements()}
    assert pinned <= closure(requirement_lines("functions/retrain/requirements.txt"))


def test_predict_image_gets_its_fast_server_stack():
    assert {"uvloop", "httptools", "numpy"} <= closure(requirement_lines("functions/predict/requirements.txt"))


# Runs the entry points in this venv with every installed distribution outside the image's closure
# made unimportable: optional imports then fail (and degrade) exactly as they would in the image.
PROBE = """
import json, re, runpy, sys
from importlib import metadata
allowed = set(json.loads(sys.argv[1]))
owners = metadata.packages_distributions()
canonical = lambda name: re.sub(r"[-_.]+", "-", name).lower()
class NotInImage:
    def find_spec(self, name, path=None, target=None):
        dists = owners.get(name.partition(".")[0], [])
        if dists and not any(canonical(dist) in allowed for dist in dists):
            raise ModuleNotFoundError(f"No module named {name!r} (not in the image)", name=name)
sys.meta_path.insert(0, NotInImage())
for path in sys.argv[2:]:
    sys.argv = [path]
    runpy.run_path(path, run_name="probe")
imported = {canonical(dist) for name in sys.modules for dist in owners.get(name.partition(".")[0], [])}
print(json.dumps(sorted(imported)))
"""


def probe(requirements: str, scripts: list[Path]) -> subprocess.CompletedProcess[str]:
    """Run `scripts` in one interpreter that can import only what `requirements` installs (and churnflow)."""
    allowed = sorted(closure(requirement_lines(requirements)) | {"churnflow"})
    return subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(allowed), *map(str, scripts)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
    )


def imported_by(result: subprocess.CompletedProcess[str]) -> set[str]:
    assert result.returncode == 0, result.stderr[-3000:]
    return set(json.loads(result.stdout.splitlines()[-1]))


@pytest.mark.parametrize(
    ("requirements", "entry_points", "key_packages"),
    [
        ("functions/predict/requirements.txt", ["functions/predict/main.py"], {"fastapi", "mangum"}),
        ("functions/monitor/requirements.txt", ["functions/monitor/main.py"], {"evidently", "functions-framework"}),
        # the local compose stack runs the trigger in the retrain image too (it starts the job as a subprocess);
        # infra/promote.sh runs `python -m churnflow.cli promote` in it
        (
            "functions/retrain/requirements.txt",
            ["functions/retrain/job.py", "functions/trigger/main.py", "shared/churnflow/cli.py"],
            {"scikit-learn", "pandas", "functions-framework", "typer"},
        ),
    ],
)
def test_entry_points_import_with_only_their_image_packages(requirements, entry_points, key_packages):
    imported = imported_by(probe(requirements, [REPO_ROOT / path for path in entry_points]))
    assert key_packages | {"churnflow"} <= imported


def test_trigger_and_its_first_launch_import_no_training_package(tmp_path):
    first_launch = tmp_path / "first_launch.py"  # what the Cloud Run launcher imports on the first message
    first_launch.write_text(
        'from churnflow.retraining import launchers\nlaunchers.run_job_request("p", "r", "j", {})\n'
    )
    imported = imported_by(
        probe("functions/trigger/requirements.txt", [REPO_ROOT / "functions/trigger/main.py", first_launch])
    )
    assert {"functions-framework", "google-cloud-run", "churnflow"} <= imported
    assert imported & TRAINING_ONLY == set()


def test_the_probe_fails_when_an_image_lacks_a_package_its_entry_point_imports():
    result = probe("functions/predict/requirements.txt", [REPO_ROOT / "functions/monitor/main.py"])
    assert result.returncode == 1
    assert "(not in the image)" in result.stderr


def test_every_deployable_has_its_generated_file():
    assert sorted(gen.DEPLOYABLES) == sorted(
        str(path.relative_to(REPO_ROOT)) for path in Path(REPO_ROOT).glob("*/*/requirements.txt")
    )
