"""Pin the project's development environment and every image's dependencies, with hashes (`make lock`).

pyproject.toml declares bounded ranges; `make requirements` turns them into each image's requirements.txt;
this script resolves each of those (and the dev environment: every extra but the MLflow server's) into a
lock file with uv (`uv pip compile --generate-hashes`). The dev lock is resolved first and constrains the
images, so an image gets the versions the test suite ran with. Each lock starts with a digest of the
requirement lines it was resolved from: `--check` (and tests/unit/ship/test_locks.py) finds a lock whose
input changed without a network. The images install with `pip install --require-hashes`; `make setup`
installs the dev lock.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEV_LOCK = "requirements-dev.lock"
PYTHON_VERSION = "3.11"  # the images' python:3.11-slim base
IMAGE_PLATFORM = "x86_64-manylinux_2_28"  # Cloud Run's linux/amd64 (the base's glibc is 2.36)
STAMP = "# input-sha256: "


def _generator():
    spec = importlib.util.spec_from_file_location("gen_requirements", ROOT / "infra" / "gen_requirements.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


gen = _generator()


def lock_path(requirements: str) -> str:
    """The lock file beside an image's requirements.txt."""
    return requirements.removesuffix(".txt") + ".lock"


def inputs(project: dict) -> dict[str, list[str]]:
    """Each lock file and the requirement lines it is resolved from; the dev lock first."""
    dev = gen.Deployable(extras=tuple(extra for extra in project["optional-dependencies"] if extra != "mlflow-server"))
    own = gen.name_of(project["name"])
    found = {DEV_LOCK: [line for line in gen.requirements(project, dev) if gen.name_of(line) != own]}
    for relative, deployable in gen.DEPLOYABLES.items():
        found[lock_path(relative)] = gen.requirements(project, deployable)
    return found


def digest(lines: list[str]) -> str:
    """A digest of a requirement set (order and duplicates ignored)."""
    return hashlib.sha256("\n".join(sorted(set(lines))).encode()).hexdigest()


def header(lock: str, lines: list[str]) -> str:
    source = (
        "pyproject.toml (every extra but mlflow-server)" if lock == DEV_LOCK else lock.removesuffix(".lock") + ".txt"
    )
    return f"# Locked from {source} by infra/lock.py (`make lock`): do not edit.\n{STAMP}{digest(lines)}\n"


def stale(project: dict) -> list[str]:
    """The lock files that are missing or were resolved from other requirement lines than declared now."""
    result = []
    for lock, lines in inputs(project).items():
        path = ROOT / lock
        first = path.read_text().splitlines()[:2] if path.exists() else []
        if len(first) < 2 or first[1] != f"{STAMP}{digest(lines)}":
            result.append(lock)
    return result


def uv() -> str:
    found = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
    if not Path(found).exists():
        raise SystemExit("uv is missing: `make setup` installs it (dev extra)")
    return found


def compile_lock(lock: str, lines: list[str], upgrade: bool) -> None:
    """Resolve `lines` into ROOT/lock with uv, keeping the versions pinned there unless `upgrade`."""
    with tempfile.TemporaryDirectory() as scratch:
        source = Path(scratch) / "requirements.in"
        source.write_text("".join(f"{line}\n" for line in lines))
        output = Path(scratch) / "out.lock"
        if (ROOT / lock).exists():  # uv keeps what an existing output file pins
            shutil.copy(ROOT / lock, output)
        command = [uv(), "pip", "compile", "--quiet", "--generate-hashes", "--no-header", "--annotation-style=line"]
        command += ["--python-version", PYTHON_VERSION, str(source), "--output-file", str(output)]
        if lock == DEV_LOCK:
            command += ["--universal"]  # developers' machines and CI alike
        else:
            command += ["--python-platform", IMAGE_PLATFORM, "--constraint", str(ROOT / DEV_LOCK)]
        if upgrade:
            command.append("--upgrade")
        subprocess.run(command, check=True, cwd=ROOT)
        (ROOT / lock).write_text(header(lock, lines) + output.read_text())
    print(f"wrote {lock}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a lock is out of date instead of writing")
    parser.add_argument("--upgrade", action="store_true", help="resolve the newest versions the ranges allow")
    args = parser.parse_args(argv)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    if args.check:
        out_of_date = stale(project)
        if out_of_date:
            print(f"out of date (run `make lock`): {', '.join(out_of_date)}", file=sys.stderr)
            return 1
        return 0
    for lock, lines in inputs(project).items():
        compile_lock(lock, lines, args.upgrade)
    return 0


if __name__ == "__main__":
    sys.exit(main())
