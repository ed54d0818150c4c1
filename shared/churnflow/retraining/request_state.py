"""The retrain-request state of one model and its transitions (pure; stored by `request_store`).

One small JSON object per model records the latest retrain request and how far it got:

    claimed ──publish ok──▶ pending ──job starts──▶ running ──▶ done | promoted | failed
       └──publish failed: the claim is withdrawn (the previous state is restored)

The monitor may request a retrain (`may_request`) unless a claim is being published (for under
`claim_ttl_s`), a request for the same champion is pending or running (for under `request_ttl_s`,
after which it is presumed lost), or a retrain finished less than `cooldown_s` ago: after a promotion
the new champion first needs fresh traffic, and after a run that did not promote, retraining on
nearly the same data would change nothing. The retrain trigger applies the same rules to every
message on the bus (`admit`): the monitor's own claimed or pending request passes, any other request
must pass `may_request` and is recorded as pending. The retrain job moves the state with `wait`,
`start`, `finish` and `fail`, each checking that it acts on its own request.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict

from churnflow.core.messages import RetrainRequested
from churnflow.settings import RequestTimingSettings

STATE_FORMAT: Final = "churnflow.retrain-state/v1"


class RetrainStatus(StrEnum):
    """Where the latest retrain request stands."""

    CLAIMED = "claimed"
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    PROMOTED = "promoted"
    FAILED = "failed"


class RetrainState(BaseModel):
    """The state object's content (JSON in GCS, see layout.retrain_state_object)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: Literal["churnflow.retrain-state/v1"] = STATE_FORMAT
    model_name: str
    status: RetrainStatus
    champion_version: int
    request_id: str
    check_id: str
    report_uri: str
    requested_at: datetime
    updated_at: datetime
    finished_at: datetime | None = None
    promoted_version: int | None = None
    detail: str = ""


class RequestOutcome(BaseModel):
    """Whether a drift check asked for a retrain: published, suppressed by the state, or none needed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    action: Literal["none", "published", "suppressed"]
    reason: str
    request_id: str | None = None
    message_id: str | None = None


class InvalidTransition(ValueError):
    """A transition that the state's current status does not allow."""


@dataclass(frozen=True)
class Timing:
    """How long claims and requests block new requests, and the cooldown after a finished retrain."""

    claim_ttl_s: float = 300.0
    request_ttl_s: float = 21_600.0
    cooldown_s: float = 21_600.0

    @classmethod
    def from_settings(cls, settings: RequestTimingSettings) -> Timing:
        """The timing of the monitor's or the trigger's settings (the same fields)."""
        return cls(settings.claim_ttl_s, settings.request_ttl_s, settings.cooldown_s)


def may_request(state: RetrainState | None, champion_version: int, now: datetime, timing: Timing) -> tuple[bool, str]:
    """Whether a new retrain request for `champion_version` may go out now, and why (not)."""
    if state is None:
        return True, "no retrain on record"
    age = (now - state.updated_at).total_seconds()
    if state.status is RetrainStatus.CLAIMED and age < timing.claim_ttl_s:
        return False, f"another check is publishing request {state.request_id}"
    if state.status in (RetrainStatus.PENDING, RetrainStatus.RUNNING) and state.champion_version == champion_version:
        if age < timing.request_ttl_s:
            return False, f"retrain {state.request_id} for v{champion_version} is {state.status}"
        return True, f"retrain {state.request_id} has been {state.status} for {age:.0f} s: presumed lost"
    if state.status in (RetrainStatus.DONE, RetrainStatus.PROMOTED) and state.finished_at is not None:
        since = (now - state.finished_at).total_seconds()
        if since < timing.cooldown_s:
            return False, f"cooldown: last retrain {state.status} {since:.0f} s ago (< {timing.cooldown_s:.0f} s)"
    return True, f"last retrain is {state.status}"


def admit(
    state: RetrainState | None, request: RetrainRequested, now: datetime, timing: Timing
) -> tuple[bool, RetrainState | None, str]:
    """Whether the trigger may start `request` delivered by the bus, the state to store (None: leave it), and why.

    The request the state is about passes while it is claimed or pending (the monitor published it);
    once running or finished, another delivery of it is refused. Any other request is one nobody
    claimed: it must pass `may_request`, and is then pending at once (it is on the bus already).
    """
    if state is not None and state.request_id == request.request_id:
        if state.status in (RetrainStatus.CLAIMED, RetrainStatus.PENDING):
            return True, None, f"request {request.request_id} is {state.status}"
        return False, None, f"request {request.request_id} is already {state.status}"
    allowed, why = may_request(state, request.champion_version, now, timing)
    return allowed, confirm(claim(request, now), now) if allowed else None, why


def claim(request: RetrainRequested, now: datetime) -> RetrainState:
    """The state of a request that is about to be published."""
    return RetrainState(
        model_name=request.model_name,
        status=RetrainStatus.CLAIMED,
        champion_version=request.champion_version,
        request_id=request.request_id,
        check_id=request.check_id,
        report_uri=request.report_uri,
        requested_at=now,
        updated_at=now,
    )


def _move(
    state: RetrainState | None, request_id: str, allowed: tuple[RetrainStatus, ...], to: RetrainStatus, now: datetime
) -> RetrainState:
    if state is None or state.request_id != request_id:
        current = state.request_id if state else "nothing"
        raise InvalidTransition(f"state is about {current}, not request {request_id}")
    if state.status not in allowed:
        raise InvalidTransition(f"request {request_id} is {state.status}; cannot become {to}")
    return state.model_copy(update={"status": to, "updated_at": now})


def confirm(state: RetrainState, now: datetime) -> RetrainState:
    """The claim's message was published: the request is pending."""
    return _move(state, state.request_id, (RetrainStatus.CLAIMED,), RetrainStatus.PENDING, now)


def published(state: RetrainState | None, request_id: str, now: datetime) -> RetrainState | None:
    """After `request_id`'s message went out: pending, if still claimed. None (unchanged) if its job got
    there first and moved it on, or another request took the state after the claim expired."""
    return confirm(state, now) if state is not None and _claimed(state, request_id) else None


def withdrawn(state: RetrainState | None, request_id: str, now: datetime, detail: str) -> RetrainState | None:
    """After publishing `request_id` failed: its claim released (failed, so a retry may request again).
    None (unchanged) if the message got through after all and its job moved the state on."""
    return fail(state, request_id, now, detail) if state is not None and _claimed(state, request_id) else None


def _claimed(state: RetrainState, request_id: str) -> bool:
    return state.request_id == request_id and state.status is RetrainStatus.CLAIMED


def wait(state: RetrainState | None, request_id: str, now: datetime, detail: str) -> RetrainState:
    """The job for `request_id` could not start yet (e.g. another retrain holds the lock): still pending."""
    moved = _move(state, request_id, (RetrainStatus.PENDING,), RetrainStatus.PENDING, now)
    return moved.model_copy(update={"detail": detail})


def start(state: RetrainState | None, request_id: str, now: datetime) -> RetrainState:
    """The retrain job started on `request_id` (a rerun of a running job is allowed)."""
    allowed = (RetrainStatus.CLAIMED, RetrainStatus.PENDING, RetrainStatus.RUNNING)
    return _move(state, request_id, allowed, RetrainStatus.RUNNING, now)


def finish(state: RetrainState | None, request_id: str, now: datetime, promoted_version: int | None) -> RetrainState:
    """The retrain job ended; `promoted_version` is the new champion, or None if none was promoted."""
    to = RetrainStatus.PROMOTED if promoted_version is not None else RetrainStatus.DONE
    moved = _move(state, request_id, (RetrainStatus.RUNNING,), to, now)
    return moved.model_copy(update={"finished_at": now, "promoted_version": promoted_version})


def fail(state: RetrainState | None, request_id: str, now: datetime, detail: str) -> RetrainState:
    """The retrain job gave up on `request_id`; a new request may follow at once."""
    allowed = (RetrainStatus.CLAIMED, RetrainStatus.PENDING, RetrainStatus.RUNNING)
    moved = _move(state, request_id, allowed, RetrainStatus.FAILED, now)
    return moved.model_copy(update={"finished_at": now, "detail": detail})
