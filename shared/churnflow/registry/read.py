"""A thin, stdlib-only client of the MLflow registry's REST API, for the serving path.

It resolves an alias to a model version and downloads that version's compiled scorer through the
tracking server's artifact proxy, so the predict image needs neither MLflow nor sklearn.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from churnflow.registry import tags

PROXY_SCHEME = "mlflow-artifacts:/"


class RegistryError(RuntimeError):
    """The registry could not answer (unreachable, timed out, or an unexpected reply)."""


class AliasNotFound(RegistryError):
    """The model or the alias does not exist (yet)."""


@dataclass(frozen=True)
class ModelVersion:
    """One registered model version, as the registry describes it."""

    name: str
    version: int
    run_id: str
    source: str
    tags: dict[str, str]
    aliases: tuple[str, ...]
    created_at_ms: int


class RegistryClient:
    """Reads the MLflow registry over HTTP with bounded timeouts and no retries of its own."""

    def __init__(self, tracking_uri: str, timeout_s: float = 5.0):
        self.base = tracking_uri.rstrip("/")
        self.timeout_s = timeout_s

    def _get(self, path: str, params: dict[str, str] | None = None) -> bytes:
        url = f"{self.base}{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
        try:
            with urllib.request.urlopen(url, timeout=self.timeout_s) as response:
                return response.read()  # type: ignore[no-any-return]
        except urllib.error.HTTPError as error:
            body = error.read().decode(errors="replace")[:300]
            # MLflow 3 answers a missing alias of an existing model with 400 INVALID_PARAMETER_VALUE
            missing_alias = error.code == 400 and "alias" in body and "not found" in body
            if error.code == 404 or "RESOURCE_DOES_NOT_EXIST" in body or missing_alias:
                raise AliasNotFound(f"{url}: {body}") from error
            raise RegistryError(f"{url}: HTTP {error.code}: {body}") from error
        except (urllib.error.URLError, OSError) as error:
            raise RegistryError(f"{url}: {getattr(error, 'reason', error)}") from error

    def _get_json(self, path: str, params: dict[str, str]) -> dict[str, Any]:
        try:
            return json.loads(self._get(path, params))  # type: ignore[no-any-return]
        except ValueError as error:
            raise RegistryError(f"{path}: reply is not JSON") from error

    def version_by_alias(self, name: str, alias: str) -> ModelVersion:
        """The version an alias points at; AliasNotFound if the model or alias does not exist."""
        reply = self._get_json("/api/2.0/mlflow/registered-models/alias", {"name": name, "alias": alias})
        found = reply.get("model_version")
        if not found:
            raise AliasNotFound(f"{name}@{alias} is not set")
        return ModelVersion(
            name=found["name"],
            version=int(found["version"]),
            run_id=found.get("run_id", ""),
            source=found.get("source", ""),
            tags={t["key"]: t["value"] for t in found.get("tags", [])},
            aliases=tuple(found.get("aliases", [])),
            created_at_ms=int(found.get("creation_timestamp", 0)),
        )

    def run_artifact(self, run_id: str, path: str) -> bytes:
        """Download one artifact of a run through the server's artifact proxy."""
        run = self._get_json("/api/2.0/mlflow/runs/get", {"run_id": run_id})
        root = run["run"]["info"]["artifact_uri"]
        if not root.startswith(PROXY_SCHEME):
            raise RegistryError(f"run {run_id} stores artifacts at {root}, not behind the server's proxy")
        relative = root[len(PROXY_SCHEME) :].lstrip("/")
        return self._get(f"/api/2.0/mlflow-artifacts/artifacts/{relative}/{path}")

    def scorer_artifact(self, version: ModelVersion) -> dict[str, Any]:
        """The compiled scorer logged with a model version, parsed from JSON."""
        path = version.tags.get(tags.SCORER_ARTIFACT)
        if not path:
            raise RegistryError(f"{version.name} v{version.version} has no {tags.SCORER_ARTIFACT} tag")
        raw = self.run_artifact(version.run_id, path)
        try:
            return json.loads(raw)  # type: ignore[no-any-return]
        except ValueError as error:
            raise RegistryError(f"{version.name} v{version.version}: scorer artifact is not JSON") from error
