"""What a sweep or a search varies: one axis per strategy parameter, from `--grid` specs.

    fast_window=5,10,20        values, each as `--param` reads it (ints, floats, booleans, text)
    fast_window=5:50           every integer from 5 to 50; a search draws integers in [5, 50]
    fast_window=5:50:5         5, 10, ..., 50 (a step: ints or floats)
    threshold=0.1:0.9          floats: a search draws from [0.1, 0.9]; a grid needs a step
    learning=1e-4:1e-1:log     drawn on a log scale (a search only: a grid needs values)

A grid expands every axis to values (`Axis.grid_values`); an optimiser (Optuna) reads the
range itself. Bounds are inclusive, as Optuna's are, and a range that holds nothing (low above
high, a step of 0) is refused here, with the spec, before any backtest runs.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

GRID_VALUES_MAX = 100_000  # one axis of a grid; a larger one is almost surely a typo
_INT = re.compile(r"^[+-]?\d+$")


class BadAxis(ValueError):
    """A `--grid` spec that cannot be read, or holds nothing."""


@dataclass(frozen=True)
class Axis:
    name: str
    values: tuple[Any, ...] | None = None  # listed values; else the range below
    low: float | int | None = None
    high: float | int | None = None
    step: float | int | None = None
    log: bool = False

    @property
    def is_range(self) -> bool:
        return self.values is None

    @property
    def integer(self) -> bool:
        return (
            isinstance(self.low, int)
            and isinstance(self.high, int)
            and (self.step is None or isinstance(self.step, int))
        )

    def grid_values(self) -> list[Any]:
        """The values a grid runs: the listed ones, or the range walked by its step (every
        integer for an integer range without one)."""
        if self.values is not None:
            return list(self.values)
        assert self.low is not None
        assert self.high is not None
        if self.log:
            raise BadAxis(
                f"--grid {self.name}: a log-scale range is for a search (--search optuna); "
                "a grid needs values or a step"
            )
        if self.step is None and not self.integer:
            raise BadAxis(
                f"--grid {self.name}={self.low}:{self.high}: a float range needs a step in a "
                f"grid ({self.name}={self.low}:{self.high}:STEP), or --search optuna"
            )
        step = 1 if self.step is None else self.step
        count = math.floor((self.high - self.low) / step + 1e-9) + 1
        if count > GRID_VALUES_MAX:
            raise BadAxis(f"--grid {self.name}: {count:,} values; at most {GRID_VALUES_MAX:,}")
        if self.integer:
            return [int(self.low + i * step) for i in range(count)]
        # each value from the low end (no sum of steps drifting), rounded to the step's digits
        digits = max(_decimals(self.low), _decimals(step))
        return [round(self.low + i * step, digits) for i in range(count)]


def _decimals(number: float | int) -> int:
    text = repr(float(number))
    if "e" in text:
        return 12
    return len(text.partition(".")[2].rstrip("0"))


def _number(text: str, spec: str) -> int | float:
    text = text.strip()
    if _INT.match(text):
        return int(text)
    try:
        value = float(text)
    except ValueError:
        raise BadAxis(f"--grid {spec!r}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise BadAxis(f"--grid {spec!r}: {text!r} is not a finite number")
    return value


def parse_axis(spec: str, parse_value: Any = None) -> Axis:
    """One `--grid` spec. `parse_value(name, text)` reads a listed value (default: the
    number, else the text)."""
    name, sep, raw = spec.partition("=")
    name = name.strip()
    if not sep or not name or not raw.strip():
        raise BadAxis(f"--grid expects NAME=V1,V2,... or NAME=LOW:HIGH[:STEP|:log], got {spec!r}")
    if ":" not in raw:
        texts = [text.strip() for text in raw.split(",")]
        if not all(texts):
            raise BadAxis(f"--grid {spec!r}: an empty value")
        read = parse_value or (lambda _name, text: _value(text))
        return Axis(name, values=tuple(read(name, text) for text in texts))
    parts = [part.strip() for part in raw.split(":")]
    if len(parts) not in (2, 3):
        raise BadAxis(f"--grid {spec!r}: a range is LOW:HIGH, LOW:HIGH:STEP or LOW:HIGH:log")
    low, high = _number(parts[0], spec), _number(parts[1], spec)
    log, step = False, None
    if len(parts) == 3:
        if parts[2].lower() == "log":
            log = True
        else:
            step = _number(parts[2], spec)
            if step <= 0:
                raise BadAxis(f"--grid {spec!r}: the step must be above 0")
    if low > high:
        raise BadAxis(f"--grid {spec!r}: an empty range ({low} is above {high})")
    if log and low <= 0:
        raise BadAxis(f"--grid {spec!r}: a log-scale range must be above 0")
    if isinstance(low, int) != isinstance(high, int):
        low, high = float(low), float(high)
    return Axis(name, low=low, high=high, step=step, log=log)


def _value(text: str) -> Any:
    try:
        return _number(text, text)
    except BadAxis:
        lowered = text.lower()
        return lowered == "true" if lowered in ("true", "false") else text


def parse_axes(specs: list[str], parse_value: Any = None) -> dict[str, Axis]:
    axes: dict[str, Axis] = {}
    for spec in specs:
        axis = parse_axis(spec, parse_value)
        if axis.name in axes:
            raise BadAxis(f"--grid: {axis.name} is given twice")
        axes[axis.name] = axis
    return axes
