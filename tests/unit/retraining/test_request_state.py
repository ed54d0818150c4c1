"""The retrain-request state machine and the RetrainRequested message (pure)."""

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from churnflow.core.messages import RetrainRequested
from churnflow.retraining import request_state
from churnflow.retraining.request_state import InvalidTransition, RetrainStatus, Timing
from factories import retrain_request

NOW = datetime(2026, 11, 5, 12, tzinfo=UTC)
TIMING = Timing(claim_ttl_s=300, request_ttl_s=6 * 3600, cooldown_s=3600)


def request(version=3, **changes):
    return retrain_request(champion_version=version, **changes)


def state(status, age_s=0.0, version=3, finished_age_s=None):
    base = request_state.claim(request(version), NOW - timedelta(seconds=age_s))
    finished = NOW - timedelta(seconds=finished_age_s) if finished_age_s is not None else None
    return base.model_copy(update={"status": status, "finished_at": finished})


def test_message_round_trips_and_carries_attributes():
    message = request()
    assert RetrainRequested.from_bytes(message.to_bytes()) == message
    assert message.attributes() == {
        "kind": "retrain-requested",
        "model_name": "churn",
        "champion_version": "3",
        "request_id": message.request_id,
    }
    assert len(message.request_id) == 32 and message.created_at.tzinfo is not None
    assert request().request_id != message.request_id


def test_message_rejects_a_bad_body():
    with pytest.raises(ValidationError):
        RetrainRequested.from_bytes(b'{"model_name": "churn", "champion_version": 0}')


@pytest.mark.parametrize(
    ("current", "allowed", "why"),
    [
        (None, True, "no retrain on record"),
        (state(RetrainStatus.CLAIMED, age_s=10), False, "another check is publishing"),
        (state(RetrainStatus.CLAIMED, age_s=600), True, "last retrain is claimed"),
        (state(RetrainStatus.PENDING, age_s=60), False, "is pending"),
        (state(RetrainStatus.RUNNING, age_s=3600), False, "is running"),
        (state(RetrainStatus.RUNNING, age_s=7 * 3600), True, "presumed lost"),
        (state(RetrainStatus.PENDING, age_s=60, version=2), True, "last retrain is pending"),
        (state(RetrainStatus.PROMOTED, finished_age_s=600), False, "cooldown"),
        (state(RetrainStatus.DONE, finished_age_s=600), False, "cooldown"),
        (state(RetrainStatus.PROMOTED, finished_age_s=7200), True, "last retrain is promoted"),
        (state(RetrainStatus.FAILED, finished_age_s=60), True, "last retrain is failed"),
    ],
)
def test_may_request(current, allowed, why):
    decision, reason = request_state.may_request(current, 3, NOW, TIMING)
    assert decision is allowed and why in reason


def test_request_lifecycle():
    message = request()
    claimed = request_state.claim(message, NOW)
    assert (claimed.status, claimed.request_id, claimed.champion_version) == ("claimed", message.request_id, 3)
    pending = request_state.confirm(claimed, NOW)
    running = request_state.start(pending, message.request_id, NOW + timedelta(minutes=1))
    assert running.status is RetrainStatus.RUNNING and running.updated_at == NOW + timedelta(minutes=1)
    assert request_state.start(running, message.request_id, NOW).status is RetrainStatus.RUNNING  # a rerun
    promoted = request_state.finish(running, message.request_id, NOW + timedelta(minutes=9), promoted_version=4)
    assert (promoted.status, promoted.promoted_version) == (RetrainStatus.PROMOTED, 4)
    assert promoted.finished_at == NOW + timedelta(minutes=9)
    done = request_state.finish(running, message.request_id, NOW, promoted_version=None)
    assert done.status is RetrainStatus.DONE and done.promoted_version is None


def test_failure_is_recorded_with_its_detail():
    claimed = request_state.claim(request(), NOW)
    failed = request_state.fail(claimed, claimed.request_id, NOW, "publish failed: boom")
    assert failed.status is RetrainStatus.FAILED and failed.detail == "publish failed: boom"
    assert request_state.may_request(failed, 3, NOW, TIMING)[0]


def test_transitions_check_status_and_request():
    claimed = request_state.claim(request(), NOW)
    with pytest.raises(InvalidTransition, match="cannot become done"):
        request_state.finish(claimed, claimed.request_id, NOW, None)
    with pytest.raises(InvalidTransition, match="not request other"):
        request_state.start(claimed, "other", NOW)
    with pytest.raises(InvalidTransition, match="about nothing"):
        request_state.start(None, "other", NOW)
    done = request_state.finish(request_state.start(claimed, claimed.request_id, NOW), claimed.request_id, NOW, None)
    with pytest.raises(InvalidTransition):
        request_state.confirm(done, NOW)


def test_state_serialises_to_the_documented_json():
    claimed = request_state.claim(request(), NOW)
    stored = claimed.model_dump(mode="json")
    assert stored["format"] == "churnflow.retrain-state/v1" and stored["status"] == "claimed"
    assert stored["requested_at"] == "2026-11-05T12:00:00Z" and stored["finished_at"] is None
    assert request_state.RetrainState.model_validate(stored) == claimed


def test_the_trigger_admits_the_monitors_own_request_while_it_is_claimed_or_pending():
    message = request()
    claimed = request_state.claim(message, NOW)
    for current in (claimed, request_state.confirm(claimed, NOW)):
        admitted, after, why = request_state.admit(current, message, NOW, TIMING)
        assert admitted and after is None and message.request_id in why  # the monitor's state is left as it is
    running = request_state.start(claimed, message.request_id, NOW)
    assert request_state.admit(running, message, NOW, TIMING)[:2] == (False, None)
    done = request_state.finish(running, message.request_id, NOW, None)
    assert "already done" in request_state.admit(done, message, NOW, TIMING)[2]


@pytest.mark.parametrize(
    ("current", "allowed", "why"),
    [
        (None, True, "no retrain on record"),
        (state(RetrainStatus.PENDING, age_s=60), False, "is pending"),
        (state(RetrainStatus.CLAIMED, age_s=10), False, "another check is publishing"),
        (state(RetrainStatus.PROMOTED, finished_age_s=66), False, "cooldown"),
        (state(RetrainStatus.FAILED, finished_age_s=60), True, "last retrain is failed"),
    ],
)
def test_the_trigger_holds_a_request_nobody_claimed_to_the_monitors_rules(current, allowed, why):
    unclaimed = request()
    admitted, after, reason = request_state.admit(current, unclaimed, NOW, TIMING)
    assert (admitted, reason) == request_state.may_request(current, unclaimed.champion_version, NOW, TIMING)
    assert admitted is allowed and why in reason
    if allowed:  # recorded as pending at once, so the next unclaimed message meets it
        assert (after.status, after.request_id) == (RetrainStatus.PENDING, unclaimed.request_id)
        assert not request_state.admit(after, request(), NOW, TIMING)[0]
    else:
        assert after is None


def test_a_job_waiting_for_the_lock_keeps_its_request_pending_with_the_reason():
    claimed = request_state.claim(request(), NOW)
    pending = request_state.confirm(claimed, NOW)
    later = NOW + timedelta(minutes=15)
    waiting = request_state.wait(pending, pending.request_id, later, "waiting: lock held by 'x'")
    assert (waiting.status, waiting.detail, waiting.updated_at) == (
        RetrainStatus.PENDING,
        "waiting: lock held by 'x'",
        later,
    )
    assert request_state.start(waiting, pending.request_id, later).status is RetrainStatus.RUNNING
    with pytest.raises(InvalidTransition):
        request_state.wait(claimed, claimed.request_id, NOW, "the monitor has not confirmed it yet")


def test_after_the_publish_only_a_claim_still_held_moves():
    claimed = request_state.claim(request(), NOW)
    running = request_state.start(claimed, claimed.request_id, NOW)  # its job got there first
    other = request_state.claim(request(check_id="20261105T130000Z-0123abcd"), NOW)
    assert request_state.published(claimed, claimed.request_id, NOW).status is RetrainStatus.PENDING
    withdrawn = request_state.withdrawn(claimed, claimed.request_id, NOW, "publish failed: boom")
    assert (withdrawn.status, withdrawn.detail) == (RetrainStatus.FAILED, "publish failed: boom")
    for state in (running, other, None):
        assert request_state.published(state, claimed.request_id, NOW) is None
        assert request_state.withdrawn(state, claimed.request_id, NOW, "publish failed: boom") is None
