"""The demo's clients of the local stack: batches of real customers, a steady prober, the scheduler's log."""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import httpx
import pandas as pd

from churnflow.core import schema
from churnflow.monitoring.models import CheckSummary

BATCH = 500
T = TypeVar("T")


@dataclass
class Prober:
    """A steady trickle of single-row /predict calls (real customers, in turn) recording which version
    answered and every failure."""

    url: str
    rows: list[dict]
    interval_s: float = 0.05
    versions: Counter = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    first_seen: dict[int, float] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        """Begin probing in a background thread."""
        threading.Thread(target=self._run, name="prober", daemon=True).start()

    def stop(self) -> None:
        """Stop probing."""
        self._stop.set()

    def _run(self) -> None:
        with httpx.Client(timeout=10) as client:
            for row in itertools.cycle(self.rows):
                if self._stop.is_set():
                    return
                try:
                    response = client.post(f"{self.url}/predict", json=row)
                    if response.status_code == 200:
                        version = int(response.json()["model_version"])
                        self.versions[version] += 1
                        self.first_seen.setdefault(version, time.monotonic())
                    else:
                        self.failures.append(f"HTTP {response.status_code}: {response.text[:200]}")
                except httpx.HTTPError as error:
                    self.failures.append(repr(error))
                self._stop.wait(self.interval_s)


def send(client: httpx.Client, url: str, rows: pd.DataFrame) -> list[str]:
    """Score `rows` through /predict/batch; returns the logged request id of every row, in order."""
    ids: list[str] = []
    records = rows[list(schema.FEATURE_NAMES)].to_dict("records")
    for start in range(0, len(records), BATCH):
        response = client.post(f"{url}/predict/batch", json={"customers": records[start : start + BATCH]})
        response.raise_for_status()
        body = response.json()
        ids += [f"{body['request_id']}-{i}" for i in range(len(body["predictions"]))]
    return ids


def next_check(scheduler_url: str, seen: int, timeout_s: float) -> tuple[CheckSummary | None, int]:
    """Wait for the scheduler's next completed call; its check summary (None if the call failed)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        calls = httpx.get(scheduler_url, timeout=5).json()["calls"]
        if len(calls) > seen:
            call = calls[seen]
            summary = CheckSummary.model_validate_json(call["body"]) if call["status"] == 200 else None
            return summary, seen + 1
        time.sleep(0.25)
    raise TimeoutError(f"no scheduled check within {timeout_s:.0f}s")


def wait_for(condition: Callable[[], T | None], timeout_s: float, what: str, every_s: float = 0.25) -> T:
    """Poll `condition` until it returns something truthy; raises TimeoutError naming `what`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(every_s)
    raise TimeoutError(f"timed out after {timeout_s:.0f}s waiting for {what}")
