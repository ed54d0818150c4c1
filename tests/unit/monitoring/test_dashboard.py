"""The dashboard's refresh on a workspace in a temporary directory (the same Evidently storage code as
gs://): it picks up new runs, forgets deleted ones with their plotted values, and notices new projects."""

from datetime import UTC, datetime

from evidently.ui.service.storage.local import create_local_project_manager
from evidently.ui.service.storage.local.base import LocalState

from churnflow.monitoring import dashboard, history
from churnflow.monitoring.models import CheckStatus, CheckSummary, WindowStats
from churnflow.retraining.request_state import RequestOutcome

T0 = datetime(2026, 11, 5, 12, tzinfo=UTC)


def small_check(rows):
    counts = dict.fromkeys(("objects", "objects_read", "lines", "parsed_lines", "valid_rows"), rows)
    zeros = dict.fromkeys(("corrupt_objects", "unnamed_objects", "bad_lines", "bad_rows", "tested_rows"), 0)
    return CheckSummary(
        check_id="20261105T120000Z-0123abcd",
        checked_at=T0,
        status=CheckStatus.INSUFFICIENT_DATA,
        model_name="churn",
        champion_version=1,
        data_fingerprint="f" * 16,
        window=WindowStats(
            start=T0, end=T0, **counts, **zeros, sampled=False, design_effect=1.0, effective_rows=0,
            sample_error_bound=0.0, model_versions={},
        ),
        summary_uri="gs://b/s.json",
        trigger=RequestOutcome(action="none", reason="few rows"),
    )  # fmt: skip


def test_refresh_adds_new_runs_and_forgets_deleted_ones(tmp_path):
    store = history.History(str(tmp_path))
    pid = store.ensure_project("churn")
    first = store.add(pid, history.run_model(small_check(10), None))
    state = LocalState.load(str(tmp_path), None)
    data = create_local_project_manager(str(tmp_path), False, None, state).data_storage
    assert set(state.snapshots[pid]) == {first}

    second = store.add(pid, history.run_model(small_check(20), None))
    changes = dashboard.scan(state)
    assert set(changes.added[pid]) == {second} and changes.removed[pid] == set()
    dashboard.apply(state, data, changes)
    assert set(state.snapshots[pid]) == {first, second} and set(data._metrics_points[pid]) == {first, second}

    store.prune(pid, keep=1)
    dashboard.apply(state, data, dashboard.scan(state))
    assert set(state.snapshots[pid]) == {second}
    assert set(data._metrics_points[pid]) == {second}  # the deleted run's values go too: memory stays bounded
    assert dashboard.scan(state).added == {pid: {}}  # nothing new: nothing read


def test_a_new_project_reloads_the_workspace(tmp_path):
    state = LocalState.load(str(tmp_path), None)
    store = history.History(str(tmp_path))
    pid = store.ensure_project("churn")
    changes = dashboard.scan(state)
    assert changes.projects_changed
    dashboard.apply(state, create_local_project_manager(str(tmp_path), False, None, state).data_storage, changes)
    assert pid in state.projects
