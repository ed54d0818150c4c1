"""Write each image's requirements.txt from the root pyproject.toml (`make requirements`).

The root project is the one place where dependencies and their bounds are declared; an image
installs the core dependencies plus the extras its deployable needs, nothing else. `--check`
exits non-zero when a file is out of date instead of writing it.
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEADER = "# Generated from pyproject.toml by infra/gen_requirements.py (`make requirements`): do not edit.\n"


@dataclass(frozen=True)
class Deployable:
    """What one image installs: the core dependencies (or not), whole extras, and single picked packages."""

    extras: tuple[str, ...]
    picks: tuple[str, ...] = ()  # packages taken by name from another extra, with the bounds declared there
    core: bool = True


DEPLOYABLES = {
    "functions/predict/requirements.txt": Deployable(extras=("serve",)),
    "functions/monitor/requirements.txt": Deployable(extras=("monitor",)),
    # functions-framework: docker-compose.local.yml runs the trigger in this image, since locally the
    # trigger starts the job as a subprocess of its own
    "functions/retrain/requirements.txt": Deployable(extras=("train",), picks=("functions-framework",)),
    "functions/trigger/requirements.txt": Deployable(extras=("trigger",)),
    "infra/mlflow/requirements.txt": Deployable(extras=("mlflow-server",), core=False),
}


def name_of(requirement: str) -> str:
    """The normalised distribution name of a PEP 508 requirement string."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if match is None:
        raise ValueError(f"not a requirement: {requirement!r}")
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def requirements(project: dict, deployable: Deployable) -> list[str]:
    """The requirement lines of one deployable, sorted by name, duplicates dropped."""
    extras = project["optional-dependencies"]
    lines = list(project["dependencies"]) if deployable.core else []
    for extra in deployable.extras:
        lines += extras[extra]
    everywhere = {name_of(line): line for group in extras.values() for line in group}
    for pick in deployable.picks:
        lines.append(everywhere[name_of(pick)])
    return sorted(set(lines), key=lambda line: (name_of(line), line))


def render(project: dict, deployable: Deployable) -> str:
    """The text of one requirements.txt."""
    return HEADER + "".join(f"{line}\n" for line in requirements(project, deployable))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if a file differs instead of writing it")
    args = parser.parse_args(argv)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    stale = []
    for relative, deployable in DEPLOYABLES.items():
        path, text = ROOT / relative, render(project, deployable)
        if path.exists() and path.read_text() == text:
            continue
        if args.check:
            stale.append(relative)
        else:
            path.write_text(text)
            print(f"wrote {relative}")
    if stale:
        print(f"out of date (run `make requirements`): {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
