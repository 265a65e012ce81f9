"""What a health endpoint serves: a readiness report and metric samples, asked for on each
probe or scrape (the adapter serving them knows nothing of the loops)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Sample:
    """One metric value: `name{labels} value`, of a counter or a gauge."""

    name: str
    kind: str  # "counter" or "gauge"
    help: str
    value: float
    labels: tuple[tuple[str, str], ...] = ()


MetricsSource = Callable[[], Iterable[Sample]]


class ReadinessReport(Protocol):
    def report(self) -> tuple[bool, dict[str, Any]]:
        """(ready, a JSON-able account of every check)."""
        ...
