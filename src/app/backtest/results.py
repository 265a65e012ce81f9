"""What a backtest produced, and the statistics of it.

The result types are the contract between a backtest run and what is made of it (metrics,
files, the HTML report).  The metrics follow the definitions of backtesting.py 0.6.6
(``backtesting/_stats.py``, ``compute_stats``) step by step, so numbers from this engine and
from backtesting.py can be compared one for one.  Where this module departs from it, the
docstring of :func:`compute_metrics` says so.

Pure computation: no I/O here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from trading_engine.domain.models import OHLCV

if TYPE_CHECKING:  # imported by the functions that compute: `--help`, audits and exports don't
    import numpy as np
    import pandas as pd

__all__ = [
    "BacktestResult",
    "ClosedTrade",
    "EquityPoint",
    "OpenTrade",
    "compute_metrics",
    "drawdown_fractions",
    "trade_return",
]


@dataclass(frozen=True, slots=True)
class ClosedTrade:
    symbol: str
    side: str  # "LONG" or "SHORT"
    size: Decimal  # > 0
    entry_time: datetime  # tz-aware UTC
    exit_time: datetime
    entry_price: Decimal
    exit_price: Decimal
    pnl: Decimal  # net of the fees of both legs
    fees: Decimal  # fees of both legs
    entry_bar: int  # index in the bar sequence of the fill
    exit_bar: int


@dataclass(frozen=True, slots=True)
class OpenTrade:
    """A position still open when the run ended: its entry, and its value at the last close.
    As in backtesting.py (without `finalize_trades`), it is in the final equity but not in the
    trade statistics."""

    symbol: str
    side: str  # "LONG" or "SHORT"
    size: Decimal  # > 0
    entry_time: datetime
    entry_price: Decimal
    fees: Decimal  # the entry leg's fees
    entry_bar: int
    last_price: Decimal  # the last close, at which the final equity values it
    pnl: Decimal  # unrealized, at `last_price`, net of the entry fees


@dataclass(frozen=True, slots=True)
class EquityPoint:
    timestamp: datetime  # bar time, tz-aware UTC
    equity: Decimal  # cash + open positions valued at this bar's close
    exposed: bool  # a position was open during this bar


@dataclass(frozen=True, slots=True)
class BacktestResult:
    initial_cash: Decimal
    equity: list[EquityPoint]
    trades: list[ClosedTrade]
    fees_paid: Decimal  # all fees, including of legs still open
    prices: dict[str, list[tuple[datetime, Decimal]]]  # per symbol: (bar time, close)
    parameters: dict[str, Any]  # what the run was asked (strategy, params, cash, commission...)
    open_trades: list[OpenTrade] = field(default_factory=list)  # still open at the end
    bars: dict[str, Sequence[OHLCV]] = field(default_factory=dict)  # per symbol, for charts


# Runs shorter than this are not annualised: their annual figures are n/a (None).
ANNUALISE_MIN_DAYS = 30
ANNUALISED = (
    "return_ann_pct",
    "volatility_ann_pct",
    "cagr_pct",
    "sharpe_ratio",
    "sortino_ratio",
    "calmar_ratio",
)

# --------------------------------------------------------------------------- helpers


def trade_return(trade: ClosedTrade) -> float:
    """The trade's return as a fraction, as backtesting.py's ``Trade.pl_pct``.

    ``sign * (exit / entry - 1) - fees / (size * entry)``: the price move relative to the entry
    price, less both legs' fees relative to the entry value.  (Equal to
    ``pnl / (size * entry_price)`` when ``pnl`` is the price P&L less the fees; computed the same
    way, in floats, as backtesting.py so the values agree to the last bit.)
    """
    sign = -1.0 if trade.side == "SHORT" else 1.0
    entry = float(trade.entry_price)
    gross = sign * (float(trade.exit_price) / entry - 1)
    return gross - float(trade.fees) / (abs(float(trade.size)) * entry)


def drawdown_fractions(equity: Sequence[float] | np.ndarray) -> np.ndarray:
    """``1 - equity / running peak`` per bar (0 at a new high, positive below it)."""
    import numpy as np

    values = np.asarray(equity, dtype=float)
    if not len(values):
        return values
    return 1 - values / np.maximum.accumulate(values)


def _data_period(index: pd.DatetimeIndex) -> pd.Timedelta:
    """Median spacing of the last 100 bars (backtesting.py ``_util._data_period``)."""
    import pandas as pd

    values = pd.Series(index[-100:])
    return values.diff().dropna().median()


def _drawdown_duration_peaks(dd: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Duration and depth of each drawdown, on the bar where it ends (``_stats`` function)."""
    import numpy as np
    import pandas as pd

    iloc = np.unique(np.r_[(dd == 0).values.nonzero()[0], len(dd) - 1])
    iloc = pd.Series(iloc, index=dd.index[iloc])
    df = iloc.to_frame("iloc").assign(prev=iloc.shift())
    df = df[df["iloc"] > df["prev"] + 1].astype(np.int64)
    if not len(df):
        return (dd.replace(0, np.nan),) * 2
    df["duration"] = df["iloc"].map(dd.index.__getitem__) - df["prev"].map(dd.index.__getitem__)
    df["peak_dd"] = df.apply(lambda row: dd.iloc[row["prev"] : row["iloc"] + 1].max(), axis=1)
    df = df.reindex(dd.index)
    return df["duration"], df["peak_dd"]


def _geometric_mean(returns: pd.Series) -> float:
    import numpy as np

    returns = returns.fillna(0) + 1
    if np.any(returns <= 0):
        return 0.0
    return float(np.exp(np.log(returns).sum() / (len(returns) or np.nan)) - 1)


def _days(value: Any, period: Any) -> float | None:
    """A duration in days, first rounded up to the data's resolution as backtesting.py shows it.

    Not a duration (no trades, no drawdown) → None.
    """
    import pandas as pd

    if not isinstance(value, pd.Timedelta) or pd.isna(value):
        return None
    if isinstance(period, pd.Timedelta) and not pd.isna(period):
        resolution = getattr(period, "resolution_string", None) or period.resolution
        value = value.ceil(resolution)
    return value / pd.Timedelta(days=1)


def _clean(value: Any) -> Any:
    """numpy scalars → Python; NaN and ±inf → None (JSON has neither); -0.0 → 0.0."""
    import numpy as np

    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value + 0.0 if math.isfinite(value) else None  # + 0.0: no "-0.0"
    return value


def _utc_index(timestamps: Sequence[datetime]) -> pd.DatetimeIndex:
    import pandas as pd

    index = pd.DatetimeIndex(list(timestamps))
    return index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")


# --------------------------------------------------------------------------- metrics


def compute_metrics(result: BacktestResult, risk_free_rate: float = 0.0) -> dict[str, Any]:
    """The statistics of a backtest, as backtesting.py 0.6.6 ``compute_stats`` defines them.

    Keys are snake_case; values are floats (``trades`` an int; ``start``/``end`` ISO strings);
    NaN or infinite values (e.g. a profit factor without a losing trade, a Sortino ratio
    without a losing day) are ``None``.

    As in backtesting.py (without ``finalize_trades``), positions still open at the end are
    in the equity but not in the trade statistics, the exposure or the fees: ``open_trades``,
    ``open_trades_pnl`` and ``open_trades_fees`` tell them, ``open_trades_counted`` is False.

    Departures from backtesting.py, all of which coincide with it in an ordinary run:

    * ``return_pct`` is measured from ``initial_cash`` (backtesting.py: from the first equity
      value, which is the initial cash unless a fill happens on the very first bar);
    * ``buy_and_hold_return_pct`` runs from the first to the last close of the first symbol in
      ``prices`` (backtesting.py starts after the strategy's indicator warm-up);
    * runs shorter than ``ANNUALISE_MIN_DAYS`` have no annualised figures (``None``, and
      ``annualised`` False): backtesting.py compounds a week into 27-digit percentages;
    * trade returns come from :func:`trade_return` (``Trade.pl_pct``); ``win_rate_pct`` and
      ``sqn`` from the trades' ``pnl``, as there;
    * durations are in days (``duration_days`` exact; drawdown and trade durations rounded up to
      the bar resolution first, as backtesting.py displays them).
    """
    import numpy as np
    import pandas as pd

    if not -1 < risk_free_rate < 1:
        raise ValueError(f"risk_free_rate must be in (-1, 1), got {risk_free_rate}")
    if not result.equity:
        raise ValueError("a backtest result without equity points has no metrics")

    index = _utc_index([point.timestamp for point in result.equity])
    equity = np.array([float(point.equity) for point in result.equity], dtype=float)
    period = _data_period(index)

    dd = drawdown_fractions(equity)
    dd_dur, dd_peaks = _drawdown_duration_peaks(pd.Series(dd, index=index))

    trades = result.trades
    pl = pd.Series([float(trade.pnl) for trade in trades], dtype=float)
    returns = pd.Series([trade_return(trade) for trade in trades], dtype=float)
    durations = pd.Series(
        [pd.Timestamp(t.exit_time) - pd.Timestamp(t.entry_time) for t in trades],
        dtype="timedelta64[ns]",
    )

    s: dict[str, Any] = {}
    start, end = index[0], index[-1]
    duration = end - start
    s["start"] = start.isoformat()
    s["end"] = end.isoformat()
    s["duration_days"] = duration / pd.Timedelta(days=1)
    s["exposure_time_pct"] = _exposure_pct(result.trades, len(equity))
    s["final_equity"] = equity[-1]
    s["peak_equity"] = equity.max()
    initial = float(result.initial_cash)
    s["return_pct"] = (equity[-1] - initial) / initial * 100 if initial else np.nan
    s["buy_and_hold_return_pct"] = _buy_and_hold_pct(result.prices)

    # Annualisation: returns over calendar days (weeks, months, years for such bars),
    # compounded; 365 trading days a year when the bars include weekends, else 252.
    gmean_day_return = 0.0
    freq_days = period.days if isinstance(period, pd.Timedelta) and not pd.isna(period) else 0
    have_weekends = index.day_of_week.to_series().between(5, 6).mean() > 2 / 7 * 0.6
    annual_trading_days = (
        52
        if freq_days == 7
        else 12
        if freq_days == 31
        else 1
        if freq_days == 365
        else (365 if have_weekends else 252)
    )
    freq = {7: "W", 31: "ME", 365: "YE"}.get(freq_days, "D")
    day_returns = (
        pd.Series(equity, index=index).resample(freq).last().dropna().pct_change().dropna()
    )
    gmean_day_return = _geometric_mean(day_returns)
    annualized_return = (1 + gmean_day_return) ** annual_trading_days - 1
    s["return_ann_pct"] = annualized_return * 100
    s["volatility_ann_pct"] = (
        np.sqrt(
            (day_returns.var(ddof=1) + (1 + gmean_day_return) ** 2) ** annual_trading_days
            - (1 + gmean_day_return) ** (2 * annual_trading_days)
        )
        * 100
    )
    time_in_years = (duration.days + duration.seconds / 86400) / 365.25
    s["cagr_pct"] = (
        ((equity[-1] / equity[0]) ** (1 / time_in_years) - 1) * 100 if time_in_years else np.nan
    )
    s["sharpe_ratio"] = (s["return_ann_pct"] - risk_free_rate * 100) / (
        s["volatility_ann_pct"] or np.nan
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        s["sortino_ratio"] = (annualized_return - risk_free_rate) / (
            np.sqrt(np.mean(day_returns.clip(-np.inf, 0) ** 2)) * np.sqrt(annual_trading_days)
        )
    max_dd = -np.nan_to_num(dd.max())
    s["calmar_ratio"] = annualized_return / (-max_dd or np.nan)
    s["max_drawdown_pct"] = max_dd * 100
    s["avg_drawdown_pct"] = -dd_peaks.mean() * 100
    s["max_drawdown_duration_days"] = _days(dd_dur.max(), period)
    s["avg_drawdown_duration_days"] = _days(dd_dur.mean(), period)

    s["trades"] = n_trades = len(trades)
    win_rate = np.nan if not n_trades else (pl > 0).mean()
    s["win_rate_pct"] = win_rate * 100
    s["best_trade_pct"] = returns.max() * 100
    s["worst_trade_pct"] = returns.min() * 100
    s["avg_trade_pct"] = _geometric_mean(returns) * 100
    s["max_trade_duration_days"] = _days(durations.max(), period)
    s["avg_trade_duration_days"] = _days(durations.mean(), period)
    s["profit_factor"] = returns[returns > 0].sum() / (abs(returns[returns < 0].sum()) or np.nan)
    s["expectancy_pct"] = returns.mean() * 100
    s["sqn"] = np.sqrt(n_trades) * pl.mean() / (pl.std() or np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        s["kelly_criterion"] = win_rate - (1 - win_rate) / (pl[pl > 0].mean() / -pl[pl < 0].mean())
    s["fees_paid"] = float(sum((t.fees for t in trades), Decimal(0)))
    s["open_trades"] = len(result.open_trades)
    s["open_trades_pnl"] = float(sum((t.pnl for t in result.open_trades), Decimal(0)))
    s["open_trades_fees"] = float(sum((t.fees for t in result.open_trades), Decimal(0)))
    s["open_trades_counted"] = False  # in the equity, not in the trade statistics

    out = {key: _clean(value) for key, value in s.items()}
    out["trades"] = int(n_trades)
    days = s["duration_days"]
    out["annualised"] = days >= ANNUALISE_MIN_DAYS
    if not out["annualised"]:  # a week compounded to a year is noise, not a figure
        for key in ANNUALISED:
            out[key] = None
    return out


def _exposure_pct(trades: Sequence[ClosedTrade], bars: int) -> float:
    """Share of bars from a closed trade's entry bar to its exit bar, both included: the
    bars of a position still open at the end are not counted (backtesting.py's rule)."""
    import numpy as np

    if not bars:
        return np.nan
    held = np.zeros(bars, dtype=bool)
    for trade in trades:
        if trade.entry_bar >= 0:
            held[trade.entry_bar : trade.exit_bar + 1] = True
    return held.mean() * 100


def _buy_and_hold_pct(prices: dict[str, list[tuple[datetime, Decimal]]]) -> float:
    """First symbol's first → last close, in percent (NaN without prices)."""
    import numpy as np

    for series in prices.values():
        if not series:
            return np.nan
        first, last = float(series[0][1]), float(series[-1][1])
        return (last - first) / first * 100 if first else np.nan
    return np.nan


def metric_value(result: dict[str, Any], metric: str) -> float | None:
    """A run's value of ``metric`` in a metrics dict (a sweep point's result), or None when
    the run failed or has none (None, NaN, not a number): such a point is ranked last and
    never chosen."""
    if "error" in result:
        return None
    value = result.get(metric)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return None if math.isnan(value) else float(value)
