"""The recent traffic a retrain learns from: the newest logged requests whose churn outcome is now known.

Bounded by `retrain_max_rows` and `retrain_max_age_days`, not by history: the query engine reads the
labelled examples of those days (materialised by each label import) and returns one typed columnar
frame, oldest row first, which `data.clean` validates without a round trip through text.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd

from churnflow.outcomes.engine import open_engine
from churnflow.outcomes.labelled import recent_labelled
from churnflow.settings import RetrainSettings
from churnflow.storage import request_log
from churnflow.training import data


def labelled_traffic(settings: RetrainSettings, now: datetime | None = None) -> pd.DataFrame:
    """The newest labelled requests (request id as customerID, the 19 features, Churn, logged time `ts`),
    cleaned, oldest first."""
    now = now or datetime.now(UTC)
    since = now - timedelta(days=settings.retrain_max_age_days)
    table = recent_labelled(open_engine(settings), since, now.date(), settings.retrain_max_rows)
    frame = table.to_pandas()
    if not len(frame):
        return frame
    logged = frame[request_log.TIMESTAMP].to_numpy(dtype=float)
    return data.clean(frame).assign(**{request_log.TIMESTAMP: logged})
