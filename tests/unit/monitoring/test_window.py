"""The window a check looks at and the error bound it states for its sample (pure)."""

from datetime import UTC, datetime, timedelta

import pytest

from churnflow.monitoring import window
from churnflow.storage.request_log import Window

NOW = datetime(2026, 11, 5, 14, 30, tzinfo=UTC)


def test_window_since_last_check_starts_where_the_last_decided_check_ended():
    last = NOW - timedelta(minutes=5)
    assert window.choose_window(NOW, 24, last, since_last_check=True) == Window(last, NOW)


@pytest.mark.parametrize(
    ("last", "since"),
    [(None, True), (NOW - timedelta(hours=30), True), (NOW - timedelta(minutes=5), False)],
)
def test_window_falls_back_to_the_last_hours(last, since):
    assert window.choose_window(NOW, 2, last, since) == Window(NOW - timedelta(hours=2), NOW)


def test_error_bound_is_dkw():
    assert window.error_bound(50_000, 0.99) == pytest.approx(0.00728, abs=1e-5)
    assert window.error_bound(0, 0.99) == 1.0
