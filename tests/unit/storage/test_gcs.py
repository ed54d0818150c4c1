"""The compare-and-swap retry (pure: no storage here; the emulator tests are in integration/test_gcs_state.py)."""

import time

import pytest

from churnflow.storage import gcs

FAST = gcs.Backoff(attempts=5, initial_s=0.001, maximum_s=0.004, deadline_s=10)


class Racer:
    """An attempt that loses `losses` races, then returns how many attempts it took."""

    def __init__(self, losses, error=gcs.PreconditionFailed):
        self.losses, self.error, self.calls = losses, error, 0

    def __call__(self):
        self.calls += 1
        if self.calls <= self.losses:
            raise self.error("lost")
        return self.calls


def test_a_lost_race_is_retried_until_it_wins():
    assert gcs.retry_on_conflict(Racer(4), "x", FAST) == 5


def test_it_gives_up_after_the_last_attempt_with_contention():
    racer = Racer(5)
    with pytest.raises(gcs.Contention, match="gs://b/x kept changing: 5 attempts") as raised:
        gcs.retry_on_conflict(racer, "gs://b/x", FAST)
    assert racer.calls == 5 and isinstance(raised.value.__cause__, gcs.PreconditionFailed)


def test_it_gives_up_at_the_deadline():
    slow = gcs.Backoff(attempts=1000, initial_s=0.02, maximum_s=0.02, multiplier=1, deadline_s=0.1)
    racer = Racer(1000)
    with pytest.raises(gcs.Contention):
        gcs.retry_on_conflict(racer, "x", slow)
    assert 2 <= racer.calls < 50  # the deadline, not the 1000 attempts, stopped it


def test_other_errors_are_not_retried():
    racer = Racer(3, error=KeyError)
    with pytest.raises(KeyError):
        gcs.retry_on_conflict(racer, "x", FAST)
    assert racer.calls == 1


def test_the_waits_are_jittered_and_capped(monkeypatch):
    waits = []
    monkeypatch.setattr(time, "sleep", waits.append)
    backoff = gcs.Backoff(attempts=8, initial_s=0.1, maximum_s=0.4, deadline_s=60)
    with pytest.raises(gcs.Contention):
        gcs.retry_on_conflict(Racer(8), "x", backoff)
    caps = [0.1, 0.2, 0.4, 0.4, 0.4, 0.4, 0.4]
    assert len(waits) == 7 and all(0 <= w <= cap for w, cap in zip(waits, caps, strict=True))
    assert len(set(waits)) == 7  # drawn at random, not a fixed schedule
