"""The predict service's Prometheus metrics, in a registry of the app's own, exposed at `GET /metrics`.

Per request the app's ASGI entry (`app.PredictApp`) counts the request by route, status and model
version and times it; the scoring code times the scoring and sizes batches. Those are the only
per-request costs: label children are bound once and cached by their label values (a tuple lookup),
never built per request. Everything else (the request log's rows, the model holder's polls and
swaps, the model serving) is read from the counters those parts keep anyway, at scrape time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder

from churnflow.serving.holder import ModelHolder
from churnflow.serving.request_logger import RequestLogger

LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
"""Seconds: the hot path answers in about 0.1 ms, FastAPI's routes in about 1 ms, a full batch in ~10 ms."""
BATCH_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000)
OTHER_ROUTE = "other"
"""The route label of any path the app does not serve (paths are never labels: unbounded)."""
NO_MODEL = "none"

_Observe = Callable[[float], None]

# no `_created` series: each would be one more time series to store (and pay for) per labelled child
disable_created_metrics()  # type: ignore[no-untyped-call]


class PredictMetrics:
    """The metric families of one predict app and the cached label children its hot path uses."""

    def __init__(self, holder: ModelHolder, logger: RequestLogger | None):
        self.registry = CollectorRegistry(auto_describe=True)
        self.holder = holder
        self.routes: frozenset[str] = frozenset()
        self.requests = Counter(
            "churnflow_predict_requests",
            "HTTP requests answered, by route, status and the model version serving when the answer was sent.",
            ["route", "status", "model_version"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "churnflow_predict_request_duration_seconds",
            "Time from a request's arrival to its answer, body reading included.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        scoring = Histogram(
            "churnflow_predict_scoring_seconds",
            "Server time of a prediction: from the body's arrival to the encoded answer (the Server-Timing value).",
            ["kind"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.scored_one: _Observe = scoring.labels("one").observe
        self.scored_batch: _Observe = scoring.labels("batch").observe
        self.batch_size: _Observe = Histogram(
            "churnflow_predict_batch_size",
            "Customers per /predict/batch request.",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        ).observe
        self._children: dict[tuple[str, int, int | None], tuple[Callable[[], None], _Observe]] = {}
        self.registry.register(_StateCollector(holder, logger))

    def serve_routes(self, paths: set[str]) -> None:
        """The paths the app serves, each its own route label (any other path is labelled `other`)."""
        self.routes = frozenset(paths)

    def observe(self, path: str, status: int, seconds: float) -> None:
        """Count one answered request and its latency (children cached per route, status and version)."""
        current = self.holder.current
        version = current.number if current is not None else None
        key = (path, status, version)
        children = self._children.get(key)
        if children is None:
            route = path if path in self.routes else OTHER_ROUTE
            label = str(version) if version is not None else NO_MODEL
            children = (self.requests.labels(route, str(status), label).inc, self.latency.labels(route).observe)
            if route != OTHER_ROUTE:  # the cache stays as bounded as the labels
                self._children[key] = children
        count, time = children
        count()
        time(seconds)

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        """The metrics in the format the scraper asks for (OpenMetrics or Prometheus text) and its content type."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type


class _StateCollector:
    """Reads the request log's and the model holder's own counters at scrape time (no per-request cost)."""

    def __init__(self, holder: ModelHolder, logger: RequestLogger | None):
        self.holder = holder
        self.logger = logger

    def collect(self) -> Iterator[Metric]:
        yield from self._model()
        if self.logger is not None:
            yield from self._request_log(self.logger)

    def _model(self) -> Iterator[Metric]:
        stats = self.holder.stats
        for name, value, help_text in (
            ("churnflow_model_registry_polls", stats.refreshes, "Resolutions of the champion alias in the registry."),
            ("churnflow_model_swaps", stats.swaps, "Model versions swapped in (the first load included)."),
            ("churnflow_model_refused", stats.refused, "New versions refused (artifact invalid or not loadable)."),
            ("churnflow_model_registry_errors", stats.registry_errors, "Polls the registry did not answer."),
        ):
            yield CounterMetricFamily(name, help_text, value=value)
        info = GaugeMetricFamily(
            "churnflow_model_info", "The model version serving (value 1; none before the first champion).",
            labels=["model_name", "alias", "model_version"],
        )  # fmt: skip
        loaded = GaugeMetricFamily("churnflow_model_loaded_timestamp_seconds", "When the serving version was loaded.")
        current = self.holder.current
        if current is not None:
            info.add_metric([current.version.name, current.alias, str(current.number)], 1)
            loaded.add_metric([], current.loaded_at)
        yield info
        yield loaded

    @staticmethod
    def _request_log(logger: RequestLogger) -> Iterator[Metric]:
        stats = logger.stats
        rows = CounterMetricFamily(
            "churnflow_request_log_rows",
            "Request-log rows: accepted (queued), recovered from a dead process, uploaded to GCS, "
            "dropped at the spool cap, lost (could not be encoded or spooled).",
            labels=["state"],
        )
        for state in ("accepted", "recovered", "uploaded", "dropped", "lost"):
            rows.add_metric([state], getattr(stats, state))
        yield rows
        yield CounterMetricFamily(
            "churnflow_request_log_failed_uploads", "Uploads of request-log batches that failed.", stats.failed_uploads
        )
        yield GaugeMetricFamily(
            "churnflow_request_log_rows_spooled", "Rows waiting in the spool for GCS to answer.", stats.spooled
        )
        yield GaugeMetricFamily("churnflow_request_log_spool_bytes", "Bytes waiting in the spool.", stats.spool_bytes)
        yield GaugeMetricFamily(
            "churnflow_request_log_rows_pending", "Rows accepted, not yet handed to an upload.", logger.pending
        )
