"""The retrain state object in GCS, changed only by compare-and-swap, and the request flow.

Every change is read → decide (pure, `request_state`) → write if the generation is unchanged; a writer
that loses the race re-reads and decides again (`gcs.compare_and_swap`), so concurrent checks agree on
one request. Gives up with `gcs.Contention`; a failed publish raises `PublishFailed`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from churnflow.bus.pubsub import Publisher
from churnflow.core.messages import RetrainRequested
from churnflow.retraining import request_state
from churnflow.retraining.request_state import RequestOutcome, RetrainState, Timing
from churnflow.storage import gcs, layout

log = logging.getLogger(__name__)


class PublishFailed(RuntimeError):
    """Publishing a retrain request failed; its claim was withdrawn, so a retry may request again."""


class StateStore:
    """One model's retrain state object."""

    def __init__(self, project: str, bucket: str, model_name: str):
        self.project = project
        self.bucket = bucket
        self.name = layout.retrain_state_object(model_name)

    def read(self) -> tuple[RetrainState | None, int]:
        """The current state (None if there is none yet) and its generation (0 if absent)."""
        return gcs.read_model(self.project, self.bucket, self.name, RetrainState)

    def write(self, state: RetrainState, generation: int) -> int:
        """Replace the state if it is still at `generation`; raises PreconditionFailed otherwise."""
        return gcs.write_model(self.project, self.bucket, self.name, state, generation)

    def update(self, change: Callable[[RetrainState | None], RetrainState | None]) -> gcs.Swap[RetrainState]:
        """Apply a transition (e.g. `request_state.start`; None: leave the state) by compare-and-swap.

        Raises gcs.Contention when other writers keep winning; errors of `change` propagate.
        """
        return gcs.compare_and_swap(self.project, self.bucket, self.name, RetrainState, change)


def request_retrain(
    store: StateStore, publish: Publisher, request: RetrainRequested, now: datetime, timing: Timing
) -> RequestOutcome:
    """Publish `request` unless the state forbids it; at most one of concurrent callers publishes.

    The caller first claims the state object (compare-and-swap), then publishes, then marks the request
    pending. If publishing fails the claim is withdrawn (state `failed`, so a retry may request again)
    and PublishFailed is raised. Both last writes are compare-and-swaps too: the job the message starts
    may move the state on first, and then it is left as the job wrote it.
    """
    claimed = request_state.claim(request, now)

    def claim(state: RetrainState | None) -> RetrainState | None:
        return claimed if request_state.may_request(state, request.champion_version, now, timing)[0] else None

    swap = store.update(claim)
    _, why = request_state.may_request(swap.before, request.champion_version, now, timing)
    if swap.after is None:
        return RequestOutcome(action="suppressed", reason=why)
    try:
        message_id = publish(request)
    except Exception as error:  # whatever went wrong, the claim must not stay behind
        log.error("publish of retrain request %s failed: %s", request.request_id, error)
        detail = f"publish failed: {error}"
        store.update(lambda state: request_state.withdrawn(state, request.request_id, now, detail))
        raise PublishFailed(f"publishing the retrain request failed: {error}") from error
    store.update(lambda state: request_state.published(state, request.request_id, now))
    return RequestOutcome(action="published", reason=why, request_id=request.request_id, message_id=message_id)
