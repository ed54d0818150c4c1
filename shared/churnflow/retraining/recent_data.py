"""The recent traffic a retrain learns from: logged requests whose churn outcome is now known."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from churnflow.core import schema
from churnflow.settings import CommonSettings
from churnflow.storage import labels, layout, request_log
from churnflow.storage.request_log_reader import RequestLogReader
from churnflow.training import data


def labelled_frame(records: Iterable[Mapping[str, Any]], outcomes: Mapping[str, bool]) -> pd.DataFrame:
    """Logged requests that have a label, as a cleaned frame of request id, the 19 features and Churn."""
    rows = [
        {
            schema.ID_COLUMN: r[request_log.REQUEST_ID],
            **{n: r[n] for n in schema.FEATURE_NAMES},
            schema.TARGET: schema.TARGET_POSITIVE if outcomes[r[request_log.REQUEST_ID]] else "No",
        }
        for r in records
        if r.get(request_log.REQUEST_ID) in outcomes
    ]
    columns = [schema.ID_COLUMN, *schema.FEATURE_NAMES, schema.TARGET]
    frame = pd.DataFrame(rows, columns=columns).drop_duplicates(schema.ID_COLUMN)
    return data.clean(frame.astype(str)) if len(frame) else frame


def labelled_traffic(settings: CommonSettings) -> pd.DataFrame:
    """Every logged request whose outcome is known, ready to train and evaluate on."""
    logged = RequestLogReader(settings.project, settings.bucket).read_all(layout.REQUEST_LOG_PREFIX)
    return labelled_frame(logged.records, labels.read_outcomes(settings))
