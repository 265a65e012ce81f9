"""The report's Bokeh charts: panels on one shared time axis (zoom and pan move them together).

Top to bottom: equity with buy-and-hold of the first symbol beside it, drawdown, the PnL of
each trade at its exit, then for each symbol given the candlesticks with the strategy's
indicator lines and the trades' entries and exits, the volume and, for the RSI strategy, the
RSI with its levels. At most :data:`MAX_PLOTTED_TRADES` trades are drawn (evenly sampled
beyond); what was left out is said in the notes returned for the page.

Bokeh (the plotting library backtesting.py draws with) is imported only inside the functions
that draw, so importing this module, and the CLI, does not load it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from trading_engine.app.backtest.chart_data import (
    Candles,
    Indicators,
    bar_period_ms,
    epoch_ms,
    minmax_indices,
    open_return,
)
from trading_engine.app.backtest.chart_page import money
from trading_engine.app.backtest.chart_panels import LinkedPanels
from trading_engine.app.backtest.results import (
    BacktestResult,
    ClosedTrade,
    OpenTrade,
    drawdown_fractions,
    trade_return,
)

__all__ = ["LOSS_COLOUR", "MAX_PLOTTED_TRADES", "OPEN_COLOUR", "WIN_COLOUR", "build_layout"]

MAX_PLOTTED_TRADES = 10_000  # trade marks on the charts (evenly sampled beyond)

# trades by outcome; the page's legend names them too
WIN_COLOUR, LOSS_COLOUR, OPEN_COLOUR = "#1a9850", "#d73027", "#7a7a7a"
_UP, _DOWN = "#8ccfc0", "#f2a7a3"  # candles: muted, so the trade marks stand out
_UP_LINE, _DOWN_LINE = "#3f9e8a", "#d0605a"
_EQUITY, _BH, _DD = "#2c6fbb", "#9a9a9a", "#d73027"


def _sample(items: Sequence[Any], limit: int) -> list[Any]:
    if len(items) <= limit:
        return list(items)
    step = len(items) / limit
    return [items[int(i * step)] for i in range(limit)]


def _trade_columns(trades: Sequence[ClosedTrade]) -> dict[str, Any]:
    return {
        "symbol": [t.symbol for t in trades],
        "side": [t.side for t in trades],
        "size": np.array([float(t.size) for t in trades], dtype=float),
        "entry_x": np.array([epoch_ms(t.entry_time) for t in trades], dtype=float),
        "exit_x": np.array([epoch_ms(t.exit_time) for t in trades], dtype=float),
        "entry_price": np.array([float(t.entry_price) for t in trades], dtype=float),
        "exit_price": np.array([float(t.exit_price) for t in trades], dtype=float),
        "pnl": np.array([float(t.pnl) for t in trades], dtype=float),
        "ret": np.array([trade_return(t) * 100 for t in trades], dtype=float),
        "color": [WIN_COLOUR if t.pnl > 0 else LOSS_COLOUR for t in trades],
    }


def _open_columns(trades: Sequence[OpenTrade], last_ms: dict[str, float]) -> dict[str, Any]:
    return {
        "symbol": [t.symbol for t in trades],
        "side": [t.side for t in trades],
        "size": np.array([float(t.size) for t in trades], dtype=float),
        "entry_x": np.array([epoch_ms(t.entry_time) for t in trades], dtype=float),
        "exit_x": np.array([last_ms.get(t.symbol, epoch_ms(t.entry_time)) for t in trades]),
        "entry_price": np.array([float(t.entry_price) for t in trades], dtype=float),
        "exit_price": np.array([float(t.last_price) for t in trades], dtype=float),
        "pnl": np.array([float(t.pnl) for t in trades], dtype=float),
        "ret": np.array([open_return(t) * 100 for t in trades], dtype=float),
        "color": [OPEN_COLOUR] * len(trades),
    }


@dataclass
class _TradeSet:
    """One symbol's trades of one side, closed or still open, as a Bokeh data source."""

    symbol: str
    side: str  # LONG | SHORT
    open: bool
    source: Any

    @property
    def marker(self) -> str:
        """The entry's mark, pointing the way the trade bet: ▲ long, ▼ short."""
        return "triangle" if self.side == "LONG" else "inverted_triangle"


class _Charts(LinkedPanels):
    """The backtest's panels, top to bottom, on one shared (linked) time axis."""

    def __init__(self, result: BacktestResult, shown: list[Candles], bokeh_time: str) -> None:
        self.result, self.shown = result, shown
        self.notes: list[str] = []
        self.eq_times = np.array([epoch_ms(p.timestamp) for p in result.equity], dtype=float)
        xs = [x for x in [self.eq_times, *(c.x for c in shown)] if len(x)]
        if xs:
            lo = min(float(x.min()) for x in xs)
            hi = max(float(x.max()) for x in xs)
        else:
            lo, hi = 0.0, 86_400_000.0
        step = max((c.period_ms * c.per for c in shown), default=bar_period_ms(self.eq_times))
        pad = max(step, (hi - lo) * 0.01)
        super().__init__(lo - pad, hi + pad, bokeh_time)
        self.trade_sets = self._trade_sets()

    # ---- trades

    def _trade_sets(self) -> list[_TradeSet]:
        from bokeh.models import ColumnDataSource

        closed = _sample(self.result.trades, MAX_PLOTTED_TRADES)
        if len(closed) < len(self.result.trades):
            self.notes.append(
                f"Trade marks: {len(closed):,} of {len(self.result.trades):,} closed trades "
                "drawn (evenly sampled); trades.csv has them all."
            )
        last_ms = {c.symbol: float(c.t1[-1]) for c in self.shown if len(c.t1)}
        sets = []
        for symbol in last_ms:
            for side in ("LONG", "SHORT"):
                mine = [t for t in closed if t.symbol == symbol and t.side == side]
                if mine:
                    source = ColumnDataSource(_trade_columns(mine))
                    sets.append(_TradeSet(symbol, side, False, source))
                still = [
                    t for t in self.result.open_trades if t.symbol == symbol and t.side == side
                ]
                if still:
                    source = ColumnDataSource(_open_columns(still, last_ms))
                    sets.append(_TradeSet(symbol, side, True, source))
        return sets

    def _trade_tips(self, still_open: bool) -> dict[str, Any]:
        t = self.time_fmt
        if still_open:
            tips = [
                ("trade", "@symbol @side @size{0,0.[00000000]} (still open)"),
                ("entry", "@entry_x" + t + " @ @entry_price{0,0.[00000000]}"),
                ("last close", "@exit_price{0,0.[00000000]}"),
                ("unrealized PnL", "@pnl{0,0.00} (@ret{0.00}%)"),
            ]
        else:
            tips = [
                ("trade", "@symbol @side @size{0,0.[00000000]}"),
                ("entry", "@entry_x" + t + " @ @entry_price{0,0.[00000000]}"),
                ("exit", "@exit_x" + t + " @ @exit_price{0,0.[00000000]}"),
                ("PnL", "@pnl{0,0.00} (@ret{0.00}%)"),
            ]
        return {"tooltips": tips, "formatters": {"@entry_x": "datetime", "@exit_x": "datetime"}}

    def _draw_trades(
        self, fig: Any, sets: list[_TradeSet], draw: Callable[[_TradeSet], list[Any]]
    ) -> None:
        """``draw`` each set's marks, the closed trades' first; closed and open trades get a
        hover tool each, as an open trade's tooltip has a last close where a closed one's has
        its exit."""
        for still_open in (False, True):
            renderers = [r for s in sets if s.open == still_open for r in draw(s)]
            self.hover(fig, renderers, **self._trade_tips(still_open))

    def _marker_size(self, base: int) -> int:
        drawn = sum(len(s.source.data["pnl"]) for s in self.trade_sets)
        return base if drawn <= 300 else base - 2 if drawn <= 2000 else base - 4

    # ---- panels

    def equity_and_drawdown(self) -> None:
        from bokeh.models import ColumnDataSource, Span

        result, times = self.result, self.eq_times
        if not len(times):
            return
        equity = np.array([float(p.equity) for p in result.equity], dtype=float)
        dd = -drawdown_fractions(equity) * 100 + 0.0
        cash = float(result.initial_cash)
        first = self.shown[0] if self.shown else None
        bh = np.full(len(times), np.nan)
        if first is not None and len(first.closes) and first.closes[0]:
            at = np.searchsorted(first.times, times, side="right") - 1
            valid = at >= 0
            bh[valid] = cash * first.closes[at[valid]] / first.closes[0]
        keep = minmax_indices([equity, bh, dd])
        if len(keep) < len(equity):
            self.notes.append(
                f"Equity and drawdown lines: {len(keep):,} of {len(equity):,} points drawn "
                "(each stretch's lowest and highest kept)."
            )
        source = ColumnDataSource(
            {"x": times[keep], "equity": equity[keep], "bh": bh[keep], "dd": dd[keep]}
        )
        tips = [
            ("time", "@x" + self.time_fmt),
            ("equity", "@equity{0,0.00}"),
            ("buy & hold", "@bh{0,0.00}"),
            ("drawdown", "@dd{0.00}%"),
        ]

        fig = self.panel(240, "Equity")
        fig.add_layout(
            Span(location=cash, dimension="width", line_color="#999", line_dash="dashed")
        )
        if first is not None and np.isfinite(bh).any():
            fig.line(
                "x",
                "bh",
                source=source,
                color=_BH,
                line_width=1.3,
                legend_label=f"Buy & hold {first.symbol}",
            )
        line = fig.line(
            "x", "equity", source=source, color=_EQUITY, line_width=1.8, legend_label="Equity"
        )
        i_peak, i_last = int(np.argmax(equity)), len(equity) - 1
        for i, colour, label in ((i_peak, "#1f77b4", "Peak"), (i_last, "#333", "Final")):
            fig.scatter(
                [times[i]],
                [equity[i]],
                size=8,
                color=colour,
                legend_label=f"{label} {money(equity[i])}",
            )
        self.hover(fig, [line], tips, mode="vline", formatters={"@x": "datetime"})
        self.fit_y(fig, [(source, "x", ["equity", "bh"])])
        self.legend(fig)

        fig = self.panel(130, "Drawdown [%]")
        area = fig.varea("x", y1=0, y2="dd", source=source, fill_color=_DD, fill_alpha=0.25)
        fig.line("x", "dd", source=source, color=_DD, line_width=1)
        i_dd = int(np.argmin(dd))
        fig.scatter(
            [times[i_dd]],
            [dd[i_dd]],
            size=7,
            color=_DD,
            legend_label=f"Max. drawdown {dd[i_dd]:.2f}%",
        )
        self.hover(fig, [area], tips[:1] + tips[3:], mode="vline", formatters={"@x": "datetime"})
        self.fit_y(fig, [(source, "x", ["dd"])], include_zero=True)
        self.legend(fig, "bottom_left")

    def trade_pnl(self) -> None:
        """Each trade's PnL at its exit (an open one's unrealized PnL at the last bar)."""
        from bokeh.models import Span

        if not self.trade_sets:
            return
        fig = self.panel(150, "Trade PnL")
        fig.add_layout(Span(location=0, dimension="width", line_color="#999"))
        size = self._marker_size(10)

        def pnl_mark(s: _TradeSet) -> list[Any]:
            fill = "white" if s.open else "color"  # hollow: not realized yet
            return [
                fig.scatter(
                    "exit_x",
                    "pnl",
                    source=s.source,
                    marker=s.marker,
                    size=size,
                    fill_color=fill,
                    line_color="color",
                    fill_alpha=0.85,
                )
            ]

        self._draw_trades(fig, self.trade_sets, pnl_mark)
        specs = [(s.source, "exit_x", ["pnl"]) for s in self.trade_sets]
        self.fit_y(fig, specs, include_zero=True, margin=0.15)  # room for the markers

    def prices(self, indicators: dict[str, Indicators]) -> None:
        for candles in self.shown:
            found = indicators.get(candles.symbol, Indicators())
            source = self._candles(candles, found)
            self._volume(candles, source)
            if found.rsi:
                self._rsi(candles, *found.rsi)

    def _candles(self, candles: Candles, found: Indicators) -> Any:
        from bokeh.models import ColumnDataSource

        up = candles.close >= candles.open
        data: dict[str, Any] = {
            "x": candles.x,
            "t0": candles.t0,
            "t1": candles.t1,
            "w": candles.width,
            "open": candles.open,
            "high": candles.high,
            "low": candles.low,
            "close": candles.close,
            "volume": candles.volume,
            "color": np.where(up, _UP, _DOWN),
            "edge": np.where(up, _UP_LINE, _DOWN_LINE),
        }
        for name, (values, _, _) in found.price.items():
            data[name] = values[candles.last]
        source = ColumnDataSource(data)
        fig = self.panel(400, f"{candles.symbol} price")
        fig.xaxis.visible = True
        if candles.has_ohlc:
            fig.segment("x", "high", "x", "low", source=source, color="edge", line_width=1)
            merged = f" ({candles.per} bars a candle)" if candles.per > 1 else ""
            body = fig.vbar(
                "x",
                "w",
                "open",
                "close",
                source=source,
                fill_color="color",
                line_color="edge",
                line_width=0.6,
                legend_label=candles.symbol + merged,
            )
        else:
            body = fig.line(
                "x",
                "close",
                source=source,
                color="#555",
                line_width=1.2,
                legend_label=f"{candles.symbol} close",
            )
        if found.band:
            fig.varea(
                "x",
                y1=found.band[0],
                y2=found.band[1],
                source=source,
                fill_color="#8c6bb1",
                fill_alpha=0.08,
            )
        for name, (_, colour, dash) in found.price.items():
            fig.line(
                "x",
                name,
                source=source,
                color=colour,
                line_width=1.4,
                line_dash=dash,
                legend_label=name,
            )
        span = "@t0" + self.time_fmt + (" → @t1" + self.time_fmt if candles.per > 1 else "")
        tips = [("time", span)]
        if candles.has_ohlc:
            tips += [(k, "@" + k + "{0,0.[00000000]}") for k in ("open", "high", "low")]
        tips.append(("close", "@close{0,0.[00000000]}"))
        if candles.volume.any():
            tips.append(("volume", "@volume{0,0.[0000]}"))
        tips += [(name, "@{" + name + "}{0,0.[00]}") for name in found.price]
        self.hover(
            fig, [body], tips, mode="vline", formatters={"@t0": "datetime", "@t1": "datetime"}
        )
        self._trade_marks(fig, candles.symbol)
        self.fit_y(fig, [(source, "x", ["low", "high", *found.price])])
        self.legend(fig)
        return source

    def _trade_marks(self, fig: Any, symbol: str) -> None:
        """Entries (▲ long, ▼ short), exits (●) and a line between, coloured by outcome."""
        mine = [s for s in self.trade_sets if s.symbol == symbol]
        closed = sum(len(s.source.data["pnl"]) for s in mine if not s.open)
        still = sum(len(s.source.data["pnl"]) for s in mine if s.open)
        label = f"trades ({closed:,}" + (f" + {still} open)" if still else ")")
        size = self._marker_size(12)

        def marks(s: _TradeSet) -> list[Any]:
            fig.segment(
                "entry_x",
                "entry_price",
                "exit_x",
                "exit_price",
                source=s.source,
                color="color",
                line_width=1.2,
                line_alpha=0.9,
                line_dash="dashed" if s.open else "dotted",  # dashed: to the last close
                legend_label=label,
            )
            style = {"fill_color": "color", "line_color": "#222", "line_width": 0.8}  # both ends
            drawn = [
                fig.scatter(
                    "entry_x",
                    "entry_price",
                    source=s.source,
                    marker=s.marker,
                    size=size,
                    legend_label=label,
                    **style,
                )
            ]
            if not s.open:
                drawn.append(
                    fig.scatter(
                        "exit_x",
                        "exit_price",
                        source=s.source,
                        marker="circle",
                        size=size - 4,
                        legend_label=label,
                        **style,
                    )
                )
            return drawn

        self._draw_trades(fig, mine, marks)

    def _volume(self, candles: Candles, source: Any) -> None:
        if not candles.volume.any():
            if candles.has_ohlc:
                self.notes.append(
                    f"{candles.symbol}: the data have no volume (all 0), so no volume panel."
                )
            return
        fig = self.panel(110, "Volume")
        fig.vbar(
            "x",
            "w",
            "volume",
            0,
            source=source,
            fill_color="color",
            line_color="color",
            fill_alpha=0.8,
        )
        self.fit_y(fig, [(source, "x", ["volume"])], include_zero=True)
        fig.yaxis.formatter.format = "0.[0]a"

    def _rsi(
        self, candles: Candles, label: str, values: np.ndarray, low: float, high: float
    ) -> None:
        from bokeh.models import BoxAnnotation, ColumnDataSource, Range1d, Span

        source = ColumnDataSource({"x": candles.x, "rsi": values[candles.last]})
        fig = self.panel(150, f"{label} {low:g}/{high:g}", y_range=Range1d(0, 100))
        fig.add_layout(BoxAnnotation(bottom=low, top=high, fill_color="#8c6bb1", fill_alpha=0.06))
        for level, colour in ((low, WIN_COLOUR), (high, LOSS_COLOUR)):
            fig.add_layout(
                Span(location=level, dimension="width", line_color=colour, line_dash="dashed")
            )
        line = fig.line("x", "rsi", source=source, color="#6a3d9a", line_width=1.3)
        tips = [("time", "@x" + self.time_fmt), (label, "@rsi{0.00}")]
        self.hover(fig, [line], tips, mode="vline", formatters={"@x": "datetime"})


def build_layout(
    result: BacktestResult,
    shown: list[Candles],
    indicators: dict[str, Indicators],
    bokeh_time: str,
) -> tuple[Any, list[str]]:
    """The Bokeh layout of all panels (None: nothing to draw), and notes for the page."""
    charts = _Charts(result, shown, bokeh_time)
    charts.equity_and_drawdown()
    charts.trade_pnl()
    charts.prices(indicators)
    return charts.layout(), charts.notes
