"""The predict service's Prometheus metrics, in a registry of the app's own, exposed at `GET /metrics`.

Per request the app's ASGI entry (`app.PredictApp`) counts the request by route, status and model
version and times it; the scoring code times the scoring and sizes batches. Those are the only
per-request costs, and they are kept to a few list and dict operations: every observation and every
scrape happens on the event loop's thread (the hot path, FastAPI's async routes, `GET /metrics`), so
the counts live in plain Python numbers with no lock (prometheus-client's own metric objects take a
lock and check their type on every observation: about 3 µs a request, measured), and are turned into
prometheus-client metric families when scraped. Everything else (the request log's rows, the model
holder's polls and swaps, the model serving) is read at scrape time from the counters those parts
keep anyway.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence
from functools import cached_property
from typing import TYPE_CHECKING

from churnflow.serving.holder import ModelHolder
from churnflow.serving.request_logger import RequestLogger

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import Metric

LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
"""Seconds: the hot path answers in about 0.1 ms, FastAPI's routes in about 1 ms, a full batch in ~10 ms."""
BATCH_BUCKETS = (1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0)
OTHER_ROUTE = "other"
"""The route label of any path the app does not serve (paths are never labels: unbounded)."""
NO_MODEL = "none"


class LoopHistogram:
    """A histogram observed from one thread only: a bucket index (bisect), an increment, an addition."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]):
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one: above every bound (+Inf)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        """Count one observation (in the first bucket whose bound is >= value, as Prometheus' `le`)."""
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def buckets(self) -> list[tuple[str, float]]:
        """Cumulative counts by `le`, as prometheus-client's HistogramMetricFamily takes them."""
        found: list[tuple[str, float]] = []
        total = 0
        for bound, count in zip((*map(str, self.bounds), "+Inf"), self.counts, strict=True):
            total += count
            found.append((bound, total))
        return found


class PredictMetrics:
    """The per-request metrics of one predict app, and the registry that exposes them with the state."""

    def __init__(self, holder: ModelHolder, logger: RequestLogger | None):
        self.holder = holder
        self.routes: frozenset[str] = frozenset()
        self.requests: dict[tuple[str, int, int | None], int] = {}
        self.latency: dict[str, LoopHistogram] = {}
        self.scoring = {"one": LoopHistogram(LATENCY_BUCKETS), "batch": LoopHistogram(LATENCY_BUCKETS)}
        self.scored_one = self.scoring["one"].observe
        self.scored_batch = self.scoring["batch"].observe
        self.batches = LoopHistogram(BATCH_BUCKETS)
        self.batch_size = self.batches.observe
        self.logger = logger

    @cached_property
    def registry(self) -> CollectorRegistry:
        """The registry a scrape encodes, built on the first scrape (prometheus-client costs ~75 ms of start-up)."""
        from prometheus_client import CollectorRegistry

        registry = CollectorRegistry(auto_describe=True)
        registry.register(_RequestCollector(self))
        registry.register(_StateCollector(self.holder, self.logger))
        return registry

    def serve_routes(self, paths: set[str]) -> None:
        """The paths the app serves, each its own route label (any other path is labelled `other`)."""
        self.routes = frozenset(paths)
        self.latency = {route: LoopHistogram(LATENCY_BUCKETS) for route in (*sorted(self.routes), OTHER_ROUTE)}

    def observe(self, path: str, status: int, seconds: float) -> None:
        """Count one answered request and its latency, under the version serving now."""
        current = self.holder.current
        route = path if path in self.routes else OTHER_ROUTE
        key = (route, status, current.number if current is not None else None)
        self.requests[key] = self.requests.get(key, 0) + 1
        self.latency[route].observe(seconds)

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        """The metrics in the format the scraper asks for (OpenMetrics or Prometheus text) and its content type."""
        from prometheus_client.exposition import choose_encoder

        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type


class _RequestCollector:
    """The per-request counts as metric families, built at scrape time (on the event loop, like the counting)."""

    def __init__(self, metrics: PredictMetrics):
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

        metrics = self.metrics
        requests = CounterMetricFamily(
            "churnflow_predict_requests",
            "HTTP requests answered, by route, status and the model version serving when the answer was sent.",
            labels=["route", "status", "model_version"],
        )
        for (route, status, version), count in sorted(metrics.requests.items(), key=str):
            requests.add_metric([route, str(status), NO_MODEL if version is None else str(version)], count)
        yield requests
        yield _histogram(
            "churnflow_predict_request_duration_seconds",
            "Time from a request's arrival to its answer, body reading included.",
            "route", {route: h for route, h in metrics.latency.items() if h.counts != [0] * len(h.counts)},
        )  # fmt: skip
        yield _histogram(
            "churnflow_predict_scoring_seconds",
            "Server time of a prediction: from the body's arrival to the encoded answer (the Server-Timing value).",
            "kind", metrics.scoring,
        )  # fmt: skip
        batches = HistogramMetricFamily("churnflow_predict_batch_size", "Customers per /predict/batch request.")
        batches.add_metric([], metrics.batches.buckets(), metrics.batches.sum)
        yield batches


def _histogram(name: str, documentation: str, label: str, by_label: dict[str, LoopHistogram]) -> Metric:
    from prometheus_client.core import HistogramMetricFamily

    family = HistogramMetricFamily(name, documentation, labels=[label])
    for value, histogram in by_label.items():
        family.add_metric([value], histogram.buckets(), histogram.sum)
    return family


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
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

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
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

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
