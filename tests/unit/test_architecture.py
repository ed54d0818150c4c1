"""Which layer may import which, checked on the source so the package keeps the shape its paths say.

Bottom up: `settings` and `logs`; `core` (pure); one package per external system (`storage`,
`registry`, `bus`) and `outcomes` (the query engine over the request log and the labels); the stages
(`training`, `serving`, `monitoring`, `retraining`); then `ops` (operator views over all of them),
`local`, `sim` and `cli`, which production code never imports. Every import counts, including those
inside functions (the lazy ones), since a lazy import still ships the module in the image. The runtime
counterpart, that importing the predict entry point loads no heavy package, is test_predict_imports.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from churnflow.settings import REPO_ROOT

HEAVY = ("sklearn", "pandas", "mlflow", "evidently", "scipy", "pyarrow")
STAGE_OF_FUNCTION = {"predict": "serving", "monitor": "monitoring", "retrain": "retraining"}


@dataclass(frozen=True)
class Rule:
    """Modules under `governs` (minus `exempt`) import nothing under `forbidden`, and of churnflow only `allowed`."""

    name: str
    governs: tuple[str, ...]
    allowed: tuple[str, ...] | None = None
    forbidden: tuple[str, ...] = ()
    exempt: tuple[str, ...] = ()


def _cf(*names: str) -> tuple[str, ...]:
    return tuple(f"churnflow.{name}" for name in names)


BASE = _cf("settings", "logs")
PRODUCTION = _cf("core", "storage", "registry", "bus", "outcomes", "training", "serving", "monitoring", "retraining")
RULES = (
    Rule("settings and logs import no other churnflow module", BASE, allowed=()),
    Rule("core is pure: it imports only core", _cf("core"), allowed=_cf("core")),
    Rule("storage imports only core, settings, logs", _cf("storage"), allowed=_cf("core", "storage") + BASE),
    Rule("registry imports only core, settings, logs", _cf("registry"), allowed=_cf("core", "registry") + BASE),
    Rule("bus imports only core, settings, logs", _cf("bus"), allowed=_cf("core", "bus") + BASE),
    Rule(
        "outcomes imports only core, storage, settings, logs",
        _cf("outcomes"),
        allowed=_cf("core", "storage", "outcomes") + BASE,
    ),
    Rule(
        "the registry's read side (serving's) never imports its MLflow write side",
        _cf("registry.read", "registry.tags"),
        forbidden=_cf("registry.write"),
    ),
    Rule(
        "training imports only core, storage, registry, settings, logs",
        _cf("training"),
        allowed=_cf("core", "storage", "registry", "training") + BASE,
    ),
    Rule(
        "serving imports only core, storage, registry.read/tags, settings, logs",
        _cf("serving"),
        allowed=_cf("core", "storage", "registry.read", "registry.tags", "serving") + BASE,
    ),
    Rule(
        "the serving image's modules import no training or monitoring stack",
        _cf("core", "serving", "registry.read", "registry.tags"),
        forbidden=HEAVY,
    ),
    Rule(
        "monitoring never imports the retrain job, training.register, serving, sim, local or cli",
        _cf("monitoring"),
        forbidden=_cf("retraining.job", "training.register", "serving", "sim", "local", "cli"),
    ),
    Rule(
        "retraining never imports monitoring, serving, sim, local or cli",
        _cf("retraining"),
        forbidden=_cf("monitoring", "serving", "sim", "local", "cli"),
    ),
    Rule(
        "the Pub/Sub trigger does not pull in the training side",
        _cf("retraining.pubsub_trigger", "retraining.launchers", "retraining.request_state"),
        forbidden=_cf("training", "retraining.job", "retraining.evaluation", "registry.write") + HEAVY,
    ),
    Rule(
        "production code never imports ops, sim, local or cli", PRODUCTION, forbidden=_cf("ops", "sim", "local", "cli")
    ),
    Rule("ops (what operators see) never imports sim, local or cli", _cf("ops"), forbidden=_cf("sim", "local", "cli")),
    Rule("local never imports ops, sim or cli", _cf("local"), forbidden=_cf("ops", "sim", "cli")),
    Rule("nothing imports cli", ("churnflow",), forbidden=_cf("cli"), exempt=_cf("cli")),
    *(
        Rule(
            f"functions/{folder} is thin: it imports only churnflow.{stage}, settings and logs",
            (f"functions.{folder}",),
            allowed=_cf(stage) + BASE,
        )
        for folder, stage in STAGE_OF_FUNCTION.items()
    ),
)

# Imports that break a rule today, each with why it is tolerated. An entry that no longer matches
# fails the test too, so the list only shrinks.
KNOWN: dict[tuple[str, str], str] = {}


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def modules(root: Path) -> dict[str, Path]:
    """Every module of the `churnflow` package and of `functions/` under `root`, by dotted name."""
    found = {}
    for top in ("shared/churnflow", "functions"):
        base = root / top
        for path in sorted(base.rglob("*.py")):
            parts = (*Path(top).parts[-1:], *path.relative_to(base).with_suffix("").parts)
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> Iterator[tuple[str, int]]:
    """(imported module, line) for every import in a module; `from m import x` names m.x when x is a module."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from ((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                target = f"{base}.{alias.name}"
                yield (target if target in known else base), node.lineno


def violations(root: Path) -> list[tuple[str, str, str, int]]:
    """(rule, importer, imported, line) for every import under `root` that breaks a rule."""
    known = modules(root)
    found = []
    for name, path in known.items():
        rules = [r for r in RULES if _within(name, r.governs) and not _within(name, r.exempt)]
        for target, line in imports(name, path, known):
            for rule in rules:
                outside = rule.allowed is not None and _within(target, ("churnflow",)) and target != "churnflow"
                if _within(target, rule.forbidden) or (outside and not _within(target, rule.allowed or ())):
                    found.append((rule.name, name, target, line))
    return found


def _report(found: list[tuple[str, str, str, int]]) -> str:
    return "\n".join(f"{rule}: {importer} imports {target} (line {line})" for rule, importer, target, line in found)


def test_every_import_keeps_to_the_layers():
    found = violations(REPO_ROOT)
    breaking = [v for v in found if not any(_within(v[2], (imported,)) and v[1] == m for m, imported in KNOWN)]
    assert not breaking, "\n" + _report(breaking)
    stale = [pair for pair in KNOWN if not any(v[1] == pair[0] and _within(v[2], (pair[1],)) for v in found)]
    assert not stale, f"no longer needed, remove from KNOWN: {stale}"


def _tree(root: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_a_forbidden_import_fails_the_check_and_names_the_rule(tmp_path):
    root = _tree(
        tmp_path,
        {
            "shared/churnflow/__init__.py": "",
            "shared/churnflow/settings.py": "",
            "shared/churnflow/training/data.py": "",
            "shared/churnflow/registry/write.py": "",
            "shared/churnflow/core/schema.py": "def lazy():\n    from churnflow import settings\n",
            "shared/churnflow/serving/holder.py": "from churnflow.registry import write\nfrom ..training import data\n",
            "shared/churnflow/serving/scoring.py": "def lazy():\n    import pandas.api\n",
            "functions/predict/main.py": "import churnflow.monitoring.check\n",
        },
    )

    found = {(rule, importer, target) for rule, importer, target, _ in violations(root)}

    serving = "serving imports only core, storage, registry.read/tags, settings, logs"
    assert found == {
        ("core is pure: it imports only core", "churnflow.core.schema", "churnflow.settings"),
        (serving, "churnflow.serving.holder", "churnflow.registry.write"),
        (serving, "churnflow.serving.holder", "churnflow.training.data"),
        (
            "the serving image's modules import no training or monitoring stack",
            "churnflow.serving.scoring",
            "pandas.api",
        ),
        (
            "functions/predict is thin: it imports only churnflow.serving, settings and logs",
            "functions.predict.main",
            "churnflow.monitoring.check",
        ),
    }
