"""`/livez`, `/readyz` and `/metrics` over HTTP (stdlib server, one thread, loopback by
default): what an orchestrator probes and Prometheus scrapes."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from ports.health import MetricsSource, ReadinessReport


class _Collector:
    def __init__(self, sources: list[MetricsSource]) -> None:
        self._sources = sources

    def collect(self) -> Iterable[CounterMetricFamily | GaugeMetricFamily]:
        families: dict[str, CounterMetricFamily | GaugeMetricFamily] = {}
        for source in self._sources:
            for sample in source():
                family = families.get(sample.name)
                if family is None:
                    labels = [k for k, _ in sample.labels]
                    kind = CounterMetricFamily if sample.kind == "counter" else GaugeMetricFamily
                    name = (
                        sample.name.removesuffix("_total")
                        if sample.kind == "counter"
                        else sample.name
                    )
                    family = families[sample.name] = kind(name, sample.help, labels=labels)
                family.add_metric([v for _, v in sample.labels], sample.value)
        return list(families.values())


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
