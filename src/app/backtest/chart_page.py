"""The backtest's report.html: the page around the charts, one self-contained file.

Headline figures first, a legend for the trade marks, the charts (app.backtest_chart) and the
notes on what they leave out; below, the metrics, the parameters and the trades (closed ones,
then those still open at the end; at most :data:`MAX_TABLE_TRADES`, trades.csv has them all).
Bokeh's JavaScript is inlined (``Resources(mode="inline")``) and the data travel inside the
page, so the file opens offline, from anywhere, as it is. Bokeh, and the charts with it, are
imported only when a report is rendered, so the CLI starts without them.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from trading_engine.app.backtest.chart_data import (
    Candles,
    candles_for,
    open_return,
    strategy_indicators,
)
from trading_engine.app.backtest.results import BacktestResult, trade_return

__all__ = ["MAX_SYMBOLS", "MAX_TABLE_TRADES", "money", "render_report_html", "report_title"]

MAX_SYMBOLS = 4  # price panels
MAX_TABLE_TRADES = 10_000  # rows of the trades table (trades.csv has them all)


# --------------------------------------------------------------------------- formatting


def _plain(value: Decimal) -> str:
    return format(value, "f")


def money(value: float | Decimal | None) -> str:
    """Two decimals, thousands separated; "—" for none or not finite, never "-0.00"."""
    if value is None:
        return "—"
    number = float(value)
    if not math.isfinite(number):
        return "—"
    text = f"{number:,.2f}"
    return "0.00" if text == "-0.00" else text


def _exact(value: Decimal) -> str:
    """A price or size as given, without trailing zeros, with thousands separators."""
    text = _plain(value.normalize()) if value == value.to_integral() else _plain(value)
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    whole, _, fraction = text.partition(".")
    sign = "-" if whole.startswith("-") else ""
    whole = f"{int(whole.lstrip('-') or 0):,}"
    return sign + whole + ("." + fraction if fraction else "")


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "—"
        text = f"{value:,.4f}".rstrip("0").rstrip(".")
        return "0" if text in ("-0", "") else text
    if isinstance(value, Decimal):
        return _plain(value)
    if isinstance(value, list | tuple):
        return ", ".join(_fmt(v) for v in value)
    return str(value)


def _short(value: Any) -> str:
    if isinstance(value, Decimal):
        return _plain(value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


_PARAMS_KEYS = ("strategy_parameters", "params", "strategy_params")


def _strategy_params(parameters: dict[str, Any]) -> dict[str, Any]:
    return next(
        (parameters[key] for key in _PARAMS_KEYS if isinstance(parameters.get(key), dict)), {}
    )


def report_title(parameters: dict[str, Any]) -> str:
    """``strategy(param=value, ...)``, or the strategy's name, or "Backtest"."""
    strategy = str(parameters.get("strategy") or "Backtest")
    params = _strategy_params(parameters)
    if params:
        inner = ", ".join(f"{k}={_short(v)}" for k, v in params.items())
        return f"{strategy}({inner})"
    return strategy


_LABELS = {
    "start": "Start",
    "end": "End",
    "duration_days": "Duration [days]",
    "exposure_time_pct": "Exposure time [%]",
    "final_equity": "Equity final",
    "peak_equity": "Equity peak",
    "return_pct": "Return [%]",
    "buy_and_hold_return_pct": "Buy & hold return [%]",
    "return_ann_pct": "Return (ann.) [%]",
    "volatility_ann_pct": "Volatility (ann.) [%]",
    "cagr_pct": "CAGR [%]",
    "sharpe_ratio": "Sharpe ratio",
    "sortino_ratio": "Sortino ratio",
    "calmar_ratio": "Calmar ratio",
    "max_drawdown_pct": "Max. drawdown [%]",
    "avg_drawdown_pct": "Avg. drawdown [%]",
    "max_drawdown_duration_days": "Max. drawdown duration [days]",
    "avg_drawdown_duration_days": "Avg. drawdown duration [days]",
    "trades": "# Trades",
    "win_rate_pct": "Win rate [%]",
    "best_trade_pct": "Best trade [%]",
    "worst_trade_pct": "Worst trade [%]",
    "avg_trade_pct": "Avg. trade [%]",
    "max_trade_duration_days": "Max. trade duration [days]",
    "avg_trade_duration_days": "Avg. trade duration [days]",
    "profit_factor": "Profit factor",
    "expectancy_pct": "Expectancy [%]",
    "sqn": "SQN",
    "kelly_criterion": "Kelly criterion",
    "fees_paid": "Fees paid",
    "open_trades": "# Open trades (at the end)",
    "open_trades_pnl": "Open trades PnL (unrealized)",
    "open_trades_fees": "Open trades fees",
    "open_trades_counted": "Open trades in trade statistics",
    "annualised": "Annualised figures",
}


def _label(key: str) -> str:
    if key in _LABELS:
        return _LABELS[key]
    text = key.replace("_", " ")
    for suffix, unit in ((" pct", " [%]"), (" days", " [days]")):
        if text.endswith(suffix):
            text = text[: -len(suffix)] + unit
    return text[:1].upper() + text[1:]


def _flatten(params: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            rows.extend(_flatten(value, name + "."))
        else:
            rows.append((name, value))
    return rows


def _time_format(times: Sequence[datetime]) -> tuple[str, str]:
    """(strftime, Bokeh's) format: dates alone when every time is midnight."""
    if all(t.hour == t.minute == t.second == 0 for t in times[:500]):
        return "%Y-%m-%d", "%F"
    if all(t.second == 0 for t in times[:500]):
        return "%Y-%m-%d %H:%M", "%F %H:%M"
    return "%Y-%m-%d %H:%M:%S", "%F %T"


def _span_text(ms: float) -> str:
    seconds = ms / 1000
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g} s"


# --------------------------------------------------------------------------- page

_CSS = """
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#222;
background:#f6f7f9}
main{max-width:1280px;margin:0 auto;padding:20px 24px 40px}
h1{font-size:21px;margin:0 0 4px}h2{font-size:16px;margin:26px 0 8px}
.sub{color:#555;font-size:13px;margin-bottom:14px}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:0 0 14px}
.card{background:#fff;border:1px solid #e3e5e8;border-radius:6px;padding:8px 14px;min-width:130px}
.card .k{font-size:11px;color:#666;text-transform:uppercase;letter-spacing:.03em}
.card .v{font-size:18px;font-variant-numeric:tabular-nums;margin-top:2px}
.pos{color:#1a7f45}.neg{color:#c0392b}
.chart{background:#fff;border:1px solid #e3e5e8;border-radius:6px;padding:6px}
.legend{font-size:12px;color:#555;margin:4px 2px 8px}
.legend b{font-weight:600}
.notes{font-size:12px;color:#666;margin:6px 2px;padding-left:18px}
.tables{display:flex;gap:28px;flex-wrap:wrap;align-items:flex-start}
.box{background:#fff;border:1px solid #e3e5e8;border-radius:6px;padding:4px 10px 8px}
table{border-collapse:collapse;font-size:13px}
td,th{padding:3px 10px;border-bottom:1px solid #eee;text-align:left;white-space:nowrap}
th{background:#fafafa;font-weight:600;position:sticky;top:0}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
tr.open td{background:#f4f4f4;font-style:italic}
.scroll{max-height:520px;overflow:auto}
code{font-size:12px}.note{font-size:12px;color:#666;margin:6px 0;max-width:900px}
"""


def _kv_table(rows: Sequence[tuple[str, str, str]], table_id: str) -> str:
    """(label, key for the title, value) rows."""
    body = "".join(
        f'<tr title="{html.escape(key)}"><td>{html.escape(label)}</td>'
        f'<td class="num">{html.escape(value)}</td></tr>'
        for label, key, value in rows
    )
    return f'<table id="{table_id}">{body}</table>'


def _metrics_rows(metrics: dict[str, Any], open_count: int) -> list[tuple[str, str, str]]:
    rows = []
    for key, value in metrics.items():
        text = _fmt(value)
        if key == "trades" and open_count:
            text += f" closed (+{open_count} open, not counted)"
        rows.append((_label(key), key, text))
    return rows


def _cards(metrics: dict[str, Any]) -> str:
    picks = [
        ("Return", "return_pct", "%"),
        ("Buy & hold", "buy_and_hold_return_pct", "%"),
        ("Max. drawdown", "max_drawdown_pct", "%"),
        ("Sharpe", "sharpe_ratio", ""),
        ("Trades", "trades", ""),
        ("Win rate", "win_rate_pct", "%"),
        ("Final equity", "final_equity", ""),
    ]
    out = []
    for label, key, unit in picks:
        if key not in metrics:
            continue
        value = metrics[key]
        if key == "final_equity":
            text = money(value)
        elif isinstance(value, float) and math.isfinite(value):
            text = f"{value:,.2f}{unit}"
        else:
            text = _fmt(value)
        tone = ""
        if key in ("return_pct", "buy_and_hold_return_pct") and isinstance(value, float):
            tone = " pos" if value > 0 else " neg" if value < 0 else ""
        out.append(
            f'<div class="card"><div class="k">{html.escape(label)}</div>'
            f'<div class="v{tone}">{html.escape(text)}</div></div>'
        )
    return '<div class="cards">' + "".join(out) + "</div>"


def _trades_table(result: BacktestResult, time_format: str) -> tuple[str, str]:
    """The trades table and the note above it."""
    closed = result.trades
    shown = closed[:MAX_TABLE_TRADES]
    head = (
        "<tr><th class=num>#</th><th>status</th><th>symbol</th><th>side</th>"
        "<th class=num>size</th><th>entry time</th><th class=num>entry price</th>"
        "<th>exit time</th><th class=num>exit price</th><th class=num>PnL</th>"
        "<th class=num>return %</th><th class=num>fees</th></tr>"
    )
    rows = []
    for n, t in enumerate(shown, 1):
        rows.append(
            "<tr>"
            f"<td class=num>{n}</td><td>closed</td><td>{html.escape(t.symbol)}</td>"
            f"<td>{t.side}</td><td class=num>{_exact(t.size)}</td>"
            f"<td>{t.entry_time:{time_format}}</td><td class=num>{_exact(t.entry_price)}</td>"
            f"<td>{t.exit_time:{time_format}}</td><td class=num>{_exact(t.exit_price)}</td>"
            f'<td class="num {"pos" if t.pnl > 0 else "neg" if t.pnl < 0 else ""}">'
            f"{money(t.pnl)}</td>"
            f"<td class=num>{trade_return(t) * 100:.2f}</td>"
            f"<td class=num>{money(t.fees)}</td></tr>"
        )
    for n, t in enumerate(result.open_trades, len(closed) + 1):
        rows.append(
            '<tr class="open" title="still open at the end: valued at the last close '
            f'{_exact(t.last_price)}, in the final equity, not in the trade statistics">'
            f"<td class=num>{n}</td><td>open</td><td>{html.escape(t.symbol)}</td>"
            f"<td>{t.side}</td><td class=num>{_exact(t.size)}</td>"
            f"<td>{t.entry_time:{time_format}}</td><td class=num>{_exact(t.entry_price)}</td>"
            "<td>—</td><td class=num>—</td>"
            f"<td class=num>{money(t.pnl)}</td>"
            f"<td class=num>{open_return(t) * 100:.2f}</td>"
            f"<td class=num>{money(t.fees)}</td></tr>"
        )
    parts = [
        f"{len(closed):,} closed trade{'s' if len(closed) != 1 else ''}",
    ]
    if len(shown) < len(closed):
        parts.append(f"the first {len(shown):,} listed here (trades.csv has all)")
    count = len(result.open_trades)
    if count:
        parts.append(
            f"{count} position{'s' if count != 1 else ''} still open at the end (rows marked "
            "“open”, PnL unrealized at the last close): as in backtesting.py, an open trade is "
            "counted in the final equity and the equity curve but <b>not</b> in the trade "
            "statistics (# trades, win rate, best/worst/avg. trade, profit factor, SQN, …)"
        )
    else:
        parts.append("no position open at the end")
    note = "; ".join(parts) + ". Returns are net of both legs' fees, as backtesting.py's."
    table = (
        '<div class="box scroll"><table id="trades"><thead>'
        + head
        + "</thead><tbody>"
        + "".join(rows)
        + "</tbody></table></div>"
    )
    return table, note


def render_report_html(result: BacktestResult, metrics: dict, parameters: dict[str, Any]) -> str:
    """The whole report.html: ``parameters`` are the run's, as they may be shown (redacted)."""
    from bokeh.embed import components
    from bokeh.resources import Resources

    # here, not at the top: the charts label the equity with `money`, from this module
    from trading_engine.app.backtest.chart import LOSS_COLOUR, OPEN_COLOUR, WIN_COLOUR, build_layout

    title = report_title(parameters)
    symbols = list(dict.fromkeys([*result.bars, *result.prices]))
    shown: list[Candles] = []
    for symbol in symbols[:MAX_SYMBOLS]:
        candles = candles_for(symbol, result)
        if candles is not None:
            shown.append(candles)
    strategy = str(parameters.get("strategy") or "")
    params = _strategy_params(parameters)
    indicators = {c.symbol: strategy_indicators(strategy, params, c.closes) for c in shown}

    all_times = [p.timestamp for p in result.equity[:500]]
    time_format, bokeh_time = _time_format(all_times or [datetime(2000, 1, 1)])
    layout, notes = build_layout(result, shown, indicators, bokeh_time)
    for c in shown:
        if c.per > 1:
            notes.insert(
                0,
                f"{c.symbol}: {c.bars:,} bars shown as {len(c.x):,} candles of {c.per} bars "
                f"({_span_text(c.per * c.period_ms)}) each: first open, highest high, lowest "
                "low, last close, summed volume. Zoom in for the shape; the trades are drawn "
                "at their exact times and prices.",
            )
    if len(symbols) > MAX_SYMBOLS:
        notes.append(
            f"Price panels for the first {MAX_SYMBOLS} of {len(symbols)} symbols "
            f"({', '.join(symbols[:MAX_SYMBOLS])}); the others' trades are in the table."
        )
    if layout is not None:
        script, div = components(layout)
        resources = Resources(mode="inline", components=["bokeh"])
        head_js = resources.render_js()
    else:
        script, div, head_js = "", '<p class="note">Nothing to chart.</p>', ""

    sub = " · ".join(
        part
        for part in (
            (
                f"{result.equity[0].timestamp:{time_format}} → "
                f"{result.equity[-1].timestamp:{time_format}} UTC"
            )
            if result.equity
            else None,
            ", ".join(symbols) or None,
            f"{sum(c.bars for c in shown):,} bars" if shown else None,
            f"{len(result.trades):,} closed trades"
            + (f", {len(result.open_trades)} open" if result.open_trades else ""),
        )
        if part
    )
    legend = (
        '<div class="legend">Drag to pan, wheel to zoom (time axis, all panels together); '
        "hover for details. Trades: <b>▲</b> long entry, <b>▼</b> short entry, <b>●</b> exit, "
        f'dotted line entry → exit; <b style="color:{WIN_COLOUR}">green</b> winning, '
        f'<b style="color:{LOSS_COLOUR}">red</b> losing, '
        f'<b style="color:{OPEN_COLOUR}">grey</b> still '
        "open (dashed to the last close). Click a legend entry to hide it.</div>"
    )
    notes_html = (
        '<ul class="notes">' + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>"
        if notes
        else ""
    )
    trades_table, trades_note = _trades_table(result, time_format)
    param_rows = [(k, k, _fmt(v)) for k, v in _flatten(parameters)]
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style>\n"
        f"{head_js}\n</head><body><main>"
        f"<h1>{html.escape(title)}</h1>"
        f'<div class="sub">{html.escape(sub)}</div>'
        + _cards(metrics)
        + legend
        + f'<div class="chart" id="charts">{div}</div>'
        + notes_html
        + '<div class="tables">'
        + '<div><h2>Metrics</h2><div class="box">'
        + _kv_table(_metrics_rows(metrics, len(result.open_trades)), "metrics")
        + '<p class="note">Trade statistics count closed trades only; the final equity '
        "includes any position still open (see the trades below).</p></div></div>"
        + '<div><h2>Parameters</h2><div class="box">'
        + _kv_table(param_rows, "parameters")
        + "</div></div></div>"
        + "<h2>Trades</h2>"
        + f'<p class="note" id="trades-note">{trades_note}</p>'
        + trades_table
        + f"</main>{script}</body></html>\n"
    )
