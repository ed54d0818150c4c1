"""The history dashboard: Evidently's own UI over the checks' workspace in the bucket, kept current.

Evidently's UI reads a gs:// workspace through fsspec (gcsfs), but it watches for new runs only on a
local disk (watchdog); on any other filesystem it loads the runs once, at start, so a long-lived
instance would never show a new check. Here the same UI runs with a storage that re-lists the
workspace every `dashboard_refresh_s` seconds and reads only the runs it has not seen (and forgets
deleted ones): the reads per refresh are one listing per project plus the new checks, and what the
UI holds is what the workspace holds (its retention: `history_size`). The UI is read-only: its write
API needs a secret that is generated at start and never shown.

    python -m churnflow.monitoring.dashboard --host 127.0.0.1 --port 8084    # CHURNFLOW_BUCKET, $PORT
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import posixpath
import secrets
import uuid
from typing import Any

from evidently._pydantic_compat import PrivateAttr
from evidently.core.serialization import SnapshotModel
from evidently.ui.service.app import create_app, get_config
from evidently.ui.service.components.storage import LocalStorageComponent
from evidently.ui.service.managers.projects import ProjectManager
from evidently.ui.service.storage.common import NoopAuthManager
from evidently.ui.service.storage.local import create_local_project_manager
from evidently.ui.service.storage.local.base import SNAPSHOTS, UUID_REGEX, InMemoryDataStorage, LocalState
from litestar import Litestar

from churnflow.monitoring.history import configure_gcsfs
from churnflow.settings import DashboardSettings
from churnflow.storage import layout

log = logging.getLogger(__name__)
_JSON = ".json"


class Changes:
    """What a refresh found: per project, the runs to add (read) and the run ids that are gone."""

    def __init__(self) -> None:
        self.added: dict[uuid.UUID, dict[uuid.UUID, SnapshotModel]] = {}
        self.removed: dict[uuid.UUID, set[uuid.UUID]] = {}
        self.projects_changed = False


def _run_ids(state: LocalState, project: uuid.UUID) -> set[uuid.UUID]:
    path = posixpath.join(str(project), SNAPSHOTS)
    state.location.invalidate_cache(path)
    names = (posixpath.basename(name) for name in state.location.listdir(path))
    return {uuid.UUID(n[: -len(_JSON)]) for n in names if n.endswith(_JSON) and UUID_REGEX.match(n[: -len(_JSON)])}


def scan(state: LocalState) -> Changes:
    """List the workspace and read the runs the state lacks (blocking I/O: run it off the event loop)."""
    changes = Changes()
    state.location.invalidate_cache("")
    listed = {uuid.UUID(name) for name in state.location.listdir("") if UUID_REGEX.match(name)}
    if listed != set(state.projects):
        changes.projects_changed = True
        return changes
    for project in state.projects:
        stored, known = _run_ids(state, project), set(state.snapshots.get(project, {}))
        changes.removed[project] = known - stored
        changes.added[project] = {run: state.read_snapshot(project, run) for run in stored - known}
    return changes


def apply(state: LocalState, data: InMemoryDataStorage, changes: Changes) -> None:
    """Bring the UI's state to what `scan` found (on the event loop, where the request handlers read it)."""
    if changes.projects_changed:  # a project appeared or went (rare: the first check of a model)
        state.reload(force=True)
        return
    points = data._metrics_points or {}  # Evidently's in-memory series: drop those of deleted runs
    for project, gone in changes.removed.items():
        for run in gone:
            state.snapshots[project].pop(run, None)
            points.get(project, {}).pop(run, None)
    for project, runs in changes.added.items():
        for run, model in runs.items():
            state.snapshots[project][run] = model
            for callback in state.callbacks:  # the data storage indexes the run's values
                callback(project, run, model)


class RefreshingStorage(LocalStorageComponent):
    """Evidently's workspace storage, with a project manager that the app refreshes on a timer."""

    class Config:
        type_alias = "churnflow:storage:refreshing"

    _manager: Any = PrivateAttr(default=None)
    _state: Any = PrivateAttr(default=None)

    def open(self) -> None:
        """Load the workspace (every run it holds) and build the project manager the UI will use."""
        self._state = LocalState.load(self.path, None)
        self._manager = create_local_project_manager(self.path, False, NoopAuthManager(), self._state)

    def project_manager_provider(self) -> Any:
        async def project_manager() -> ProjectManager:
            return self._manager

        return project_manager

    async def refresh(self) -> None:
        """Pick up the runs added or deleted since the last refresh."""
        changes = await asyncio.to_thread(scan, self._state)
        apply(self._state, self._manager.data_storage, changes)


def build_app(workspace: str, refresh_s: float) -> Litestar:
    """Evidently's UI app over `workspace`, read-only, refreshing every `refresh_s` seconds."""
    configure_gcsfs()
    config = get_config(workspace=workspace, secret=secrets.token_urlsafe(32))
    storage = RefreshingStorage(path=workspace, autorefresh=False)
    storage.open()
    config.storage = storage
    app = create_app(config)

    async def refresh_forever() -> None:
        while True:
            await asyncio.sleep(refresh_s)
            try:
                await storage.refresh()
            except Exception as error:  # a failed refresh keeps what is shown; the next one retries
                log.warning("dashboard refresh failed: %s", error)

    tasks: set[asyncio.Task[None]] = set()
    app.on_startup.append(lambda: tasks.add(asyncio.get_running_loop().create_task(refresh_forever())))
    return app


def main() -> None:
    """Command line of the dashboard: serve Evidently's UI over the bucket's workspace."""
    import uvicorn

    from churnflow.logs import configure_logging

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8084")))
    args = parser.parse_args()
    configure_logging()
    settings = DashboardSettings()
    workspace = layout.evidently_workspace_uri(settings.bucket)
    log.info("dashboard of %s on http://%s:%d/", workspace, args.host, args.port)
    uvicorn.run(build_app(workspace, settings.dashboard_refresh_s), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
