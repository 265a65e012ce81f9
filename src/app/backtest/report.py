"""Backtest outputs: metrics.json, trades.csv, equity.csv and a self-contained report.html.

Every file is written under a temporary name in the destination folder, flushed to disk and
renamed into place, so an interrupted run never leaves a half-written file under a final name
(a previous complete file of that name stays as it was).

The HTML report needs nothing but a browser, offline: interactive Bokeh charts with their
JavaScript inlined (app.backtest_chart), and the metrics and trades tables around them
(app.backtest_chart_page).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

import numpy as np
import orjson

from trading_engine.app.backtest.chart_page import render_report_html
from trading_engine.app.backtest.results import BacktestResult, drawdown_fractions
from trading_engine.files import write_atomically

__all__ = ["OUTPUT_NAMES", "render_report", "write_outputs"]

OUTPUT_NAMES = ("metrics.json", "trades.csv", "equity.csv", "report.html")
TRADES_HEADER = (
    "entry_time",
    "exit_time",
    "side",
    "size",
    "entry_price",
    "exit_price",
    "pnl",
    "fees",
    "symbol",
    "status",  # closed, or open: still open at the end (no exit; pnl at the last close)
)
EQUITY_HEADER = ("timestamp", "equity", "drawdown_pct", "exposed")


def write_outputs(
    result: BacktestResult, metrics: dict, out_dir: Path, *, report: bool = True
) -> dict[str, Path]:
    """Write the four output files into ``out_dir`` (created if missing), or the three
    without report.html (`report=False`: a run for its numbers); name → path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # Looked up at call time (not bound here) so each writer can be replaced in tests.
    writers: dict[str, Callable[[IO[Any]], None]] = {
        "metrics.json": lambda fh: _write_metrics_json(fh, result, metrics),
        "trades.csv": lambda fh: _write_trades_csv(fh, result),
        "equity.csv": lambda fh: _write_equity_csv(fh, result),
        "report.html": lambda fh: _write_report_html(fh, result, metrics),
    }
    written: dict[str, Path] = {}
    for name in OUTPUT_NAMES:
        if name == "report.html" and not report:
            continue
        path = out_dir / name
        write_atomically(path, writers[name], binary=name.endswith(".json"))
        written[name] = path
    return written


# --------------------------------------------------------------------------- data files


def _plain(value: Decimal) -> str:
    """A Decimal as a plain (never scientific) string."""
    return format(value, "f")


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return _plain(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    return str(value)


def _write_metrics_json(fh: IO[bytes], result: BacktestResult, metrics: dict) -> None:
    final = result.equity[-1].equity if result.equity else result.initial_cash
    payload = {
        **metrics,
        "final_equity": metrics.get("final_equity", float(final)),
        "final_equity_exact": _plain(final),
        "initial_cash": _plain(result.initial_cash),
        "parameters": _redact(result.parameters),
    }
    fh.write(
        orjson.dumps(
            payload,
            default=_json_default,
            option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY,
        )
    )
    fh.write(b"\n")


def _write_trades_csv(fh: IO[str], result: BacktestResult) -> None:
    writer = csv.writer(fh, lineterminator="\n")
    writer.writerow(TRADES_HEADER)
    for t in result.trades:
        writer.writerow(
            (
                t.entry_time.isoformat(),
                t.exit_time.isoformat(),
                t.side,
                _plain(t.size),
                _plain(t.entry_price),
                _plain(t.exit_price),
                _plain(t.pnl),
                _plain(t.fees),
                t.symbol,
                "closed",
            )
        )
    for o in result.open_trades:
        writer.writerow(
            (
                o.entry_time.isoformat(),
                "",
                o.side,
                _plain(o.size),
                _plain(o.entry_price),
                "",
                _plain(o.pnl),
                _plain(o.fees),
                o.symbol,
                "open",
            )
        )


def _drawdown_pct(result: BacktestResult) -> np.ndarray:
    """Per bar, the fall from the running equity peak in percent (≤ 0)."""
    dd = drawdown_fractions([float(p.equity) for p in result.equity])
    return -(dd * 100) + 0.0  # + 0.0 turns -0.0 into 0.0


def _write_equity_csv(fh: IO[str], result: BacktestResult) -> None:
    writer = csv.writer(fh, lineterminator="\n")
    writer.writerow(EQUITY_HEADER)
    for point, dd in zip(result.equity, _drawdown_pct(result), strict=True):
        writer.writerow(
            (
                point.timestamp.isoformat(),
                _plain(point.equity),
                repr(float(dd)),
                "true" if point.exposed else "false",
            )
        )


# --------------------------------------------------------------------------- HTML report

_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^/:@\s]*:)[^/@\s]+@", re.IGNORECASE)


def _redact(value: Any) -> Any:
    """Parameters as shown and saved: a password inside a URL (a database URL) masked."""
    if isinstance(value, str):
        return _URL_PASSWORD.sub(lambda m: m.group("head") + "***@", value)
    if isinstance(value, dict):
        return {k: _redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact(v) for v in value]
    return value


def render_report(result: BacktestResult, metrics: dict) -> str:
    """The whole report as one self-contained HTML document (works offline)."""
    return render_report_html(result, metrics, _redact(result.parameters))


def _write_report_html(fh: IO[str], result: BacktestResult, metrics: dict) -> None:
    fh.write(render_report(result, metrics))
