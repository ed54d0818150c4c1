"""The retrain state object in GCS, changed only with generation preconditions, and the request flow.

Every change is read → decide (pure, `trigger`) → write if the generation is unchanged; a writer that
loses the race re-reads and decides again, so concurrent checks agree on one request.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from churnflow.bus.pubsub import Publisher
from churnflow.core.messages import RetrainRequested
from churnflow.monitoring.errors import MonitorUnavailable
from churnflow.monitoring.models import TriggerOutcome
from churnflow.retraining import request_state
from churnflow.retraining.request_state import RetrainState, Timing
from churnflow.storage import gcs, layout

log = logging.getLogger(__name__)
ATTEMPTS = 8


class StateStore:
    """One model's retrain state object."""

    def __init__(self, project: str, bucket: str, model_name: str):
        self.project = project
        self.bucket = bucket
        self.name = layout.state_object(request_state.state_name(model_name))

    def read(self) -> tuple[RetrainState | None, int]:
        """The current state (None if there is none yet) and its generation (0 if absent)."""
        value, generation = gcs.read_json(self.project, self.bucket, self.name)
        return (RetrainState.model_validate(value) if value is not None else None), generation

    def write(self, state: RetrainState, generation: int) -> int:
        """Replace the state if it is still at `generation`; raises PreconditionFailed otherwise."""
        return gcs.write_json(self.project, self.bucket, self.name, state.model_dump(mode="json"), generation)

    def update(self, change: Callable[[RetrainState | None], RetrainState]) -> RetrainState:
        """Apply a transition (e.g. `request_state.start`) atomically, re-reading when another writer won."""
        for _ in range(ATTEMPTS):
            try:
                state, generation = self.read()
                new = change(state)
                self.write(new, generation)
            except gcs.PreconditionFailed:
                continue
            return new
        raise MonitorUnavailable(f"{self.name} kept changing during {ATTEMPTS} attempts")


def request_retrain(
    store: StateStore, publish: Publisher, request: RetrainRequested, now: datetime, timing: Timing
) -> TriggerOutcome:
    """Publish `request` unless the state forbids it; at most one of concurrent callers publishes.

    The caller first claims the state object (precondition on its generation), then publishes, then
    marks the request pending. If publishing fails the claim is withdrawn (state `failed`, so a retry
    may request again) and MonitorUnavailable is raised.
    """
    claimed = request_state.claim(request, now)
    for _ in range(ATTEMPTS):
        try:
            state, generation = store.read()
            allowed, why = request_state.may_request(state, request.champion_version, now, timing)
            if not allowed:
                return TriggerOutcome(action="suppressed", reason=why)
            claimed_generation = store.write(claimed, generation)
        except gcs.PreconditionFailed:
            continue
        try:
            message_id = publish(request)
        except Exception as error:  # whatever went wrong, the claim must not stay behind
            log.error("publish of retrain request %s failed: %s", request.request_id, error)
            released = request_state.fail(claimed, request.request_id, now, f"publish failed: {error}")
            store.write(released, claimed_generation)
            raise MonitorUnavailable(f"publishing the retrain request failed: {error}") from error
        store.write(request_state.confirm(claimed, now), claimed_generation)
        return TriggerOutcome(action="published", reason=why, request_id=request.request_id, message_id=message_id)
    raise MonitorUnavailable(f"{store.name} kept changing during {ATTEMPTS} attempts")
