"""The retrain request flow on the real GCS emulator: one publish among concurrent callers, a withdrawn claim."""

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest

from churnflow.retraining import request_state
from churnflow.retraining.request_state import InvalidTransition, RetrainStatus, Timing
from churnflow.retraining.request_store import PublishFailed, StateStore, request_retrain
from factories import retrain_request

pytestmark = pytest.mark.integration
NOW = datetime(2026, 11, 5, 12, tzinfo=UTC)


@pytest.fixture
def store(stack_env):
    return StateStore("test", stack_env["CHURNFLOW_BUCKET"], f"m{uuid.uuid4().hex[:8]}")


def test_of_eight_concurrent_requests_one_is_published(store):
    published = []

    def publish(message):
        published.append(message.request_id)
        return f"msg-{len(published)}"

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(lambda _: request_retrain(store, publish, retrain_request(), NOW, Timing()), range(8)))
    assert sorted(o.action for o in outcomes) == ["published"] + ["suppressed"] * 7
    [winner] = [o for o in outcomes if o.action == "published"]
    assert (
        winner.request_id == published[0] and winner.message_id == "msg-1" and winner.reason == "no retrain on record"
    )
    state, _ = store.read()
    assert (state.status, state.request_id) == (RetrainStatus.PENDING, winner.request_id)


def test_a_failed_publish_withdraws_the_claim(store):
    def broken(message):
        raise RuntimeError("pubsub down")

    with pytest.raises(PublishFailed, match="pubsub down"):
        request_retrain(store, broken, retrain_request(), NOW, Timing())
    state, _ = store.read()
    assert state.status is RetrainStatus.FAILED and "publish failed" in state.detail
    again = request_retrain(store, lambda m: "msg-2", retrain_request(), NOW, Timing())
    assert again.action == "published" and again.reason == "last retrain is failed"


def test_a_job_that_starts_before_the_publish_returns_keeps_its_state(store):
    """The trigger may start the job, which moves the state to running, before the monitor confirms."""

    def publish_and_start(message):
        store.update(lambda state: request_state.start(state, message.request_id, NOW))
        return "msg-1"

    outcome = request_retrain(store, publish_and_start, retrain_request(), NOW, Timing())
    state, _ = store.read()
    assert outcome.action == "published" and (state.status, state.request_id) == (
        RetrainStatus.RUNNING,
        outcome.request_id,
    )


def test_a_publish_that_failed_after_its_message_got_through_leaves_the_started_job_alone(store):
    def started_then_timed_out(message):
        store.update(lambda state: request_state.start(state, message.request_id, NOW))
        raise TimeoutError("no answer from pubsub")

    with pytest.raises(PublishFailed, match="no answer"):
        request_retrain(store, started_then_timed_out, retrain_request(), NOW, Timing())
    state, _ = store.read()
    assert state.status is RetrainStatus.RUNNING and state.detail == ""


def test_update_applies_a_transition_and_refuses_an_invalid_one(store):
    claimed = request_state.claim(retrain_request(), NOW)
    store.write(claimed, 0)
    swap = store.update(lambda s: request_state.start(s, claimed.request_id, NOW))
    assert swap.before == claimed and swap.after.status is RetrainStatus.RUNNING
    with pytest.raises(InvalidTransition):
        store.update(lambda s: request_state.start(s, "another request", NOW))
    assert store.read() == (swap.after, swap.generation)
