"""`/livez`, `/readyz` and `/metrics` over HTTP (stdlib server, one thread, loopback by
default): what an orchestrator probes and Prometheus scrapes."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

from trading_engine.ports.health import MetricsSource, ReadinessReport, Sample

log = logging.getLogger(__name__)


class _Collector:
    def __init__(self, sources: list[MetricsSource]) -> None:
        self._sources = sources

    def collect(self) -> Iterable[Metric]:
        families: dict[str, Metric] = {}
        for source in self._sources:
            try:
                samples = list(source())
            except Exception as error:  # a database away: the scrape still serves the rest
                log.warning("metrics source %s failed: %s", _name_of(source), error)
                continue
            for sample in samples:
                family = families.get(sample.name)
                if family is None:
                    family = families[sample.name] = _family(sample)
                values = [v for _, v in sample.labels]
                if isinstance(family, HistogramMetricFamily):
                    buckets = [(floatToGoString(le), n) for le, n in sample.buckets]
                    family.add_metric(values, buckets, sample.value)
                else:
                    family.add_metric(values, sample.value)
        return list(families.values())


def _name_of(source: MetricsSource) -> str:
    return getattr(source, "__qualname__", None) or repr(source)


def _family(sample: Sample) -> Metric:
    """The family a sample's name starts (its first sample gives the help and label names)."""
    labels = [k for k, _ in sample.labels]
    if sample.kind == "histogram":
        return HistogramMetricFamily(sample.name, sample.help, labels=labels)
    if sample.kind == "counter":  # the client appends `_total` itself
        return CounterMetricFamily(sample.name.removesuffix("_total"), sample.help, labels=labels)
    return GaugeMetricFamily(sample.name, sample.help, labels=labels)


class HealthServer:
    def __init__(
        self,
        readiness: ReadinessReport,
        metrics: list[MetricsSource],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        registry = CollectorRegistry()
        registry.register(_Collector(metrics))  # type: ignore[arg-type]
        routes: dict[str, Callable[[], tuple[int, str, bytes]]] = {
            "/livez": lambda: (200, "application/json", b'{"alive":true}'),
            "/readyz": lambda: _ready(readiness),
            "/metrics": lambda: (200, "text/plain; version=0.0.4", generate_latest(registry)),
        }

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                route = routes.get(self.path.split("?")[0])
                status, kind, body = route() if route else (404, "text/plain", b"not found\n")
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:  # probes every few seconds: quiet
                return

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> HealthServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _ready(readiness: ReadinessReport) -> tuple[int, str, bytes]:
    ready, report = readiness.report()
    return (200 if ready else 503), "application/json", orjson.dumps(report)
