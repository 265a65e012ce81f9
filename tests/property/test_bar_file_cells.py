"""A bar file's columns are read with a fast path for plain numbers: whatever the cell, the
result (the value, the rounding count, or the refusal and its message) is the per-cell
reader's."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from trading_engine.adapters.marketdata.bar_files import BarFileError, _decimals, _price, _Rounding

PATH = Path("bars.csv")

cells = st.one_of(
    st.decimals(allow_nan=False, allow_infinity=False).map(str),
    st.from_regex(r"\A[0-9]{0,14}(\.[0-9]{0,11})?\Z"),
    st.from_regex(r"\A[ +-]?[0-9.eE_]{1,16} ?\Z"),
    st.floats(),
    st.integers(min_value=-(10**14), max_value=10**14),
)


def read_each(column: list[object], zero_ok: bool) -> tuple[object, int]:
    rounding = _Rounding()
    try:
        values = [
            _price(PATH, i + 1, "close", cell, rounding, zero_ok=zero_ok)
            for i, cell in enumerate(column)
        ]
    except BarFileError as error:
        return str(error), rounding.count
    return values, rounding.count


def read_fast(column: list[object], zero_ok: bool) -> tuple[object, int]:
    rounding = _Rounding()
    try:
        values = _decimals(PATH, "close", column, rounding, zero_ok=zero_ok)
    except BarFileError as error:
        return str(error), rounding.count
    return values, rounding.count


@given(st.lists(cells, max_size=8), st.booleans())
def test_the_fast_column_reader_is_the_per_cell_reader(column: list[object], zero_ok) -> None:
    fast, each = read_fast(column, zero_ok), read_each(column, zero_ok)
    assert fast == each
    if isinstance(fast[0], list):  # equal Decimals may differ in form (1.0 vs 1)
        assert [str(v) for v in fast[0]] == [str(v) for v in each[0]]
