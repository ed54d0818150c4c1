"""Which logged requests a check looks at, and what its sample lets it claim (pure: no I/O here).

The window is read as a two-stage sample by the request-log reader (`storage.request_log_sample`).
The stated error bound is the Dvoretzky–Kiefer–Wolfowitz inequality at the effective sample size
n / DEFF, with DEFF the sample's design effect (1 when every batch is read).
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from churnflow.storage.request_log import Window


def choose_window(now: datetime, hours: float, last_end: datetime | None, since_last_check: bool) -> Window:
    """The window of a check at `now`: since the last decided check, at most `hours` back."""
    earliest = now - timedelta(hours=hours)
    if since_last_check and last_end is not None and earliest < last_end < now:
        return Window(last_end, now)
    return Window(earliest, now)


def error_bound(rows: int, confidence: float) -> float:
    """ε such that, with probability `confidence`, every column's sample CDF (or category share) is
    within ε of the whole window's (DKW: P(sup|F̂−F| > ε) ≤ 2·exp(−2nε²))."""
    return math.sqrt(math.log(2 / (1 - confidence)) / (2 * rows)) if rows else 1.0
