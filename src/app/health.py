"""Liveness, readiness and metrics of a running service, computed when asked.

Readiness is a set of named checks (Redis answers, PostgreSQL answers, the exchange is
reachable, the projections are not far behind, the consumer groups are not piling up); each
returns None when fine or a reason when not. Metrics are read from the loops' own counters
at scrape time, so the loops carry no metrics code.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ports.health import Sample

log = logging.getLogger(__name__)

Check = Callable[[], str | None]


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    ok: bool
    detail: str


class Readiness:
    def __init__(self, checks: dict[str, Check]) -> None:
        self._checks = dict(checks)

    def results(self) -> list[CheckResult]:
        results = []
        for name, check in self._checks.items():
            try:
                problem = check()
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
