"""What a health endpoint serves: a readiness report and metric samples, asked for on each
probe or scrape (the adapter serving them knows nothing of the loops)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Sample:
    """One metric value: `name{labels} value`, of a counter, a gauge or a histogram.

    A histogram's `value` is the sum of its observations and `buckets` holds the cumulative
    count of observations at or below each upper bound, ascending, the last one `inf` (whose
    count is the histogram's count)."""

    name: str
    kind: str  # "counter", "gauge" or "histogram"
    help: str
    value: float
    labels: tuple[tuple[str, str], ...] = ()
    buckets: tuple[tuple[float, int], ...] = ()


MetricsSource = Callable[[], Iterable[Sample]]


class ReadinessReport(Protocol):
    def report(self) -> tuple[bool, dict[str, Any]]:
        """(ready, a JSON-able account of every check)."""
        ...
