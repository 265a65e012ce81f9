"""Liveness, readiness and metrics of a running service, computed when asked.

Readiness is a set of named checks (Redis answers, PostgreSQL answers, the exchange is
reachable, the projections are not far behind, the consumer groups are not piling up); each
returns None when fine or a reason when not. Metrics are read from the loops' own counters
at scrape time, so the loops carry no metrics code.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

from trading_engine.ports.health import Sample

log = logging.getLogger(__name__)

Check = Callable[[], str | None]


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    ok: bool
    detail: str


class Readiness:
    """The checks run side by side, each given `timeout` seconds: a server that does not
    answer (a connect stuck on a dead host) makes its check fail, never the probe hang."""

    def __init__(self, checks: dict[str, Check], timeout: float = 3.0) -> None:
        self._checks = dict(checks)
        self._timeout = timeout
        # Shared across probes and bounded: checks stuck for good cannot pile up threads.
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="readiness")

    def results(self) -> list[CheckResult]:
        running = {name: self._pool.submit(check) for name, check in self._checks.items()}
        deadline = time.monotonic() + self._timeout
        results = []
        for name, future in running.items():
            try:
                problem = future.result(timeout=max(0.0, deadline - time.monotonic()))
            except FutureTimeout:
                problem = f"no answer within {self._timeout:g}s"
            except Exception as error:  # a check that fails to run is a failed check
                problem = f"{type(error).__name__}: {error}"
            results.append(CheckResult(name, problem is None, problem or "ok"))
        return results

    def report(self) -> tuple[bool, dict[str, Any]]:
        results = self.results()
        ready = all(r.ok for r in results)
        return ready, {
            "ready": ready,
            "checks": {r.name: {"ok": r.ok, "detail": r.detail} for r in results},
        }


def stats_samples(prefix: str, stats: Any, help_text: str) -> list[Sample]:
    """A loop's stats dataclass (ints) as counters `trading_engine_<prefix>_<field>_total`."""
    samples = []
    for field, value in vars(stats).items():
        if isinstance(value, int) and not isinstance(value, bool):
            samples.append(
                Sample(f"trading_engine_{prefix}_{field}_total", "counter", help_text, value)
            )
    return samples


def dead_letter_samples(source: str, reasons: dict[str, int]) -> list[Sample]:
    """Malformed entries set aside by one reader (`market`, `signals`), by reason."""
    return [
        Sample(
            "trading_engine_dead_letters_total",
            "counter",
            "Malformed entries moved to a dead-letter stream, by reader and reason.",
            n,
            (("source", source), ("reason", reason)),
        )
        for reason, n in sorted(reasons.items())
    ]
