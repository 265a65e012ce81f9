"""`--grid` specs (app/backtest/parameter_space.py): listed values, integer and float ranges,
steps, log scale; what a grid walks; an empty or unreadable range refused with the spec."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trading_engine.app.backtest.parameter_space import BadAxis, parse_axes, parse_axis


def test_listed_values_are_read_as_numbers_booleans_or_text() -> None:
    axis = parse_axis("mode=1,2.5,true,fast")
    assert axis.values == (1, 2.5, True, "fast")
    assert axis.grid_values() == [1, 2.5, True, "fast"]
    assert not axis.is_range


def test_an_integer_range_is_every_integer_or_each_step() -> None:
    assert parse_axis("fast_window=5:9").grid_values() == [5, 6, 7, 8, 9]
    assert parse_axis("fast_window=5:50:15").grid_values() == [5, 20, 35, 50]
    assert parse_axis("fast_window=5:49:15").grid_values() == [5, 20, 35]
    axis = parse_axis("fast_window=5:50")
    assert (axis.low, axis.high, axis.integer, axis.log) == (5, 50, True, False)


def test_a_float_range_walks_its_step_without_drift() -> None:
    assert parse_axis("k=0.1:0.5:0.1").grid_values() == [0.1, 0.2, 0.3, 0.4, 0.5]
    assert parse_axis("k=1:2:0.25").grid_values() == [1.0, 1.25, 1.5, 1.75, 2.0]
    axis = parse_axis("k=0.1:0.9")
    assert (axis.integer, axis.step) == (False, None)
    with pytest.raises(BadAxis, match="a float range needs a step"):
        axis.grid_values()


def test_a_log_range_is_for_a_search() -> None:
    axis = parse_axis("rate=1e-4:1e-1:log")
    assert (axis.low, axis.high, axis.log) == (1e-4, 1e-1, True)
    with pytest.raises(BadAxis, match="search"):
        axis.grid_values()
    assert parse_axis("period=2:200:log").integer


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("fast_window=50:5", "empty range"),
        ("fast_window=5:50:0", "step must be above 0"),
        ("fast_window=5:50:-5", "step must be above 0"),
        ("rate=0:1:log", "log-scale range must be above 0"),
        ("fast_window=five:50", "not a number"),
        ("fast_window=5:nan", "not a finite number"),
        ("fast_window=1:2:3:4", "a range is LOW:HIGH"),
        ("fast_window=", "expects NAME="),
        ("=5,10", "expects NAME="),
        ("fast_window=5,,10", "an empty value"),
        ("fast_window=0:10000000", "at most"),
    ],
)
def test_bad_specs_are_refused_with_the_spec(spec: str, message: str) -> None:
    with pytest.raises(BadAxis, match=message):
        parse_axis(spec).grid_values()


def test_an_axis_given_twice_is_refused() -> None:
    with pytest.raises(BadAxis, match="given twice"):
        parse_axes(["fast_window=5,10", "fast_window=5:9"])


@given(
    low=st.integers(-1000, 1000),
    width=st.integers(0, 500),
    step=st.integers(1, 50),
)
def test_an_integer_grid_stays_in_its_bounds_and_steps_evenly(
    low: int, width: int, step: int
) -> None:
    values = parse_axis(f"n={low}:{low + width}:{step}").grid_values()
    assert values[0] == low
    assert values[-1] <= low + width < values[-1] + step
    assert all(b - a == step for a, b in itertools.pairwise(values))
