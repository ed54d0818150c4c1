"""How well the champion did on recent traffic whose outcomes are known (ground-truth labels).

Drift says the inputs moved; labels say whether the model is still right. The performance is measured
on what the service actually answered: the logged probability of each labelled request scored by the
champion, so no rescoring is involved.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from churnflow.monitoring.models import LabelledPerformance
from churnflow.settings import CommonSettings
from churnflow.storage import labels, layout, request_log
from churnflow.storage.request_log_reader import RequestLogReader


def labelled_metrics(
    records: Iterable[Mapping[str, Any]], outcomes: Mapping[str, bool], model_version: int, lookback_days: int
) -> LabelledPerformance | None:
    """Performance of `model_version` on the records that have a label; None when none has."""
    pairs = [
        (
            float(r[request_log.PROBABILITY]),
            int(bool(r[request_log.PREDICTION])),
            int(outcomes[r[request_log.REQUEST_ID]]),
        )
        for r in records
        if r.get(request_log.MODEL_VERSION) == model_version and r.get(request_log.REQUEST_ID) in outcomes
    ]
    if not pairs:
        return None
    probability, predicted, churned = (np.array(column) for column in zip(*pairs, strict=True))
    auc = float(roc_auc_score(churned, probability)) if len(np.unique(churned)) == 2 else None
    return LabelledPerformance(
        model_version=model_version,
        rows=len(pairs),
        churn_rate=float(churned.mean()),
        roc_auc=auc,
        accuracy=float((predicted == churned).mean()),
        lookback_days=lookback_days,
    )


def labelled_performance(
    settings: CommonSettings, now: datetime, model_version: int, lookback_days: int
) -> LabelledPerformance | None:
    """The champion's performance on labelled requests of the last `lookback_days` days (None without labels)."""
    outcomes = labels.read_outcomes(settings)
    if not outcomes:
        return None
    days = [layout.request_log_day(now - timedelta(days=day)) for day in range(lookback_days + 1)]
    logged = RequestLogReader(settings.project, settings.bucket).read_all(*days)
    return labelled_metrics(logged.records, outcomes, model_version, lookback_days)
