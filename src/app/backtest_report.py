"""Backtest outputs: metrics.json, trades.csv, equity.csv and a self-contained report.html.

Every file is written under a temporary name in the destination folder, flushed to disk and
renamed into place, so an interrupted run never leaves a half-written file under a final name
(a previous complete file of that name stays as it was).

The HTML report needs nothing but a browser: no scripts, no external style sheets or fonts;
the charts are inline SVG drawn here, downsampled to at most 2000 points per line.
"""

from __future__ import annotations

import contextlib
import csv
import html
import math
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

import numpy as np
import orjson

from app.backtest_results import BacktestResult, ClosedTrade, drawdown_fractions

__all__ = ["MAX_DRAW_POINTS", "OUTPUT_NAMES", "write_outputs"]

MAX_DRAW_POINTS = 2000
MAX_DRAW_TRADES = 2000
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
)
EQUITY_HEADER = ("timestamp", "equity", "drawdown_pct", "exposed")


def write_outputs(result: BacktestResult, metrics: dict, out_dir: Path) -> dict[str, Path]:
    """Write the four output files into ``out_dir`` (created if missing); name → path."""
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
        path = out_dir / name
        _atomic_write(path, writers[name], binary=name.endswith(".json"))
        written[name] = path
    return written


# --------------------------------------------------------------------------- atomic files


def _atomic_write(path: Path, write: Callable[[IO[Any]], None], *, binary: bool = False) -> None:
    """Write through ``write`` to a temporary sibling, fsync it, then rename it onto ``path``."""
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        mode = {"mode": "wb"} if binary else {"mode": "w", "encoding": "utf-8", "newline": ""}
        with os.fdopen(fd, **mode) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


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

_WIN = "#1a9850"
_LOSS = "#d73027"
_LINE = "#2c6fbb"
_WIDTH, _LEFT, _RIGHT, _TOP, _BOTTOM = 960, 78, 16, 12, 26

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px auto;
max-width:1000px;color:#222;background:#fff}
h1{font-size:20px;margin:0 0 4px}h2{font-size:15px;margin:22px 0 6px}
.sub{color:#666;font-size:13px;margin-bottom:12px}
svg{display:block;background:#fcfcfc;border:1px solid #e3e3e3}
svg text{font-size:11px;fill:#555}
.grid{stroke:#ececec;stroke-width:1}.axis{stroke:#bbb;stroke-width:1}
.tables{display:flex;gap:28px;flex-wrap:wrap;align-items:flex-start}
table{border-collapse:collapse;font-size:13px}
td,th{padding:3px 10px;border-bottom:1px solid #eee;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}
code{font-size:12px}.legend{font-size:12px;color:#555;margin:4px 0}
.note{font-size:12px;color:#888}
"""


_PARAMS_KEYS = ("strategy_parameters", "params", "strategy_params")
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


def _title(parameters: dict[str, Any]) -> str:
    strategy = str(parameters.get("strategy") or "Backtest")
    params = next(
        (parameters[key] for key in _PARAMS_KEYS if isinstance(parameters.get(key), dict)), None
    )
    if params:
        inner = ", ".join(f"{k}={_short(v)}" for k, v in params.items())
        return f"{strategy}({inner})"
    return strategy


def _short(value: Any) -> str:
    if isinstance(value, Decimal):
        return _plain(value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, int):  # bool included
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return "—"
        text = f"{value:,.4f}".rstrip("0").rstrip(".")
        return "0" if text in ("-0", "") else text
    if isinstance(value, Decimal):
        return _plain(value)
    return str(value)


def _epoch(ts: datetime) -> float:
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.timestamp()


def _downsample(xs: np.ndarray, ys: np.ndarray, limit: int = MAX_DRAW_POINTS) -> tuple:
    """At most ``limit`` points: the lowest and highest point of each of ``limit/2`` buckets,
    in time order (keeps the spikes and the troughs a plain stride would skip)."""
    n = len(xs)
    if n <= limit:
        return xs, ys
    keep: list[int] = []
    for bucket in np.array_split(np.arange(n), limit // 2):
        if not len(bucket):
            continue
        lo = bucket[int(np.argmin(ys[bucket]))]
        hi = bucket[int(np.argmax(ys[bucket]))]
        keep.extend(sorted({int(lo), int(hi)}))
    idx = np.array(keep, dtype=int)
    return xs[idx], ys[idx]


def _nice_ticks(lo: float, hi: float, count: int = 6) -> list[float]:
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo] if math.isfinite(lo) else []
    raw = (hi - lo) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(lo / step) * step
    ticks = []
    value = first
    while value <= hi + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    return ticks


def _tick_label(value: float) -> str:
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.6g}"


class _Frame:
    """One chart: maps (epoch seconds, value) onto SVG pixels."""

    def __init__(self, x0: float, x1: float, y0: float, y1: float, height: int) -> None:
        if y1 <= y0:
            pad = abs(y0) * 0.01 or 1.0
            y0, y1 = y0 - pad, y1 + pad
        else:
            pad = (y1 - y0) * 0.05
            y0, y1 = y0 - pad, y1 + pad
        self.x0, self.x1 = x0, (x1 if x1 > x0 else x0 + 1)
        self.y0, self.y1 = y0, y1
        self.height = height
        self.plot_w = _WIDTH - _LEFT - _RIGHT
        self.plot_h = height - _TOP - _BOTTOM

    def x(self, t: float) -> float:
        return _LEFT + (t - self.x0) / (self.x1 - self.x0) * self.plot_w

    def y(self, v: float) -> float:
        return _TOP + (self.y1 - v) / (self.y1 - self.y0) * self.plot_h

    def axes(self, y_suffix: str = "") -> list[str]:
        parts = []
        for tick in _nice_ticks(self.y0, self.y1):
            py = self.y(tick)
            parts.append(
                f'<line class="grid" x1="{_LEFT}" x2="{_WIDTH - _RIGHT}" '
                f'y1="{py:.1f}" y2="{py:.1f}"/>'
                f'<text x="{_LEFT - 6}" y="{py + 4:.1f}" text-anchor="end">'
                f"{html.escape(_tick_label(tick))}{y_suffix}</text>"
            )
        span = self.x1 - self.x0
        with_time = span < 3 * 86400
        for i in range(7):
            t = self.x0 + span * i / 6
            label = datetime.fromtimestamp(t, UTC).strftime(
                "%m-%d %H:%M" if with_time else "%Y-%m-%d"
            )
            anchor = "start" if i == 0 else "end" if i == 6 else "middle"
            parts.append(
                f'<text x="{self.x(t):.1f}" y="{self.height - 8}" '
                f'text-anchor="{anchor}">{label}</text>'
            )
        bottom = self.height - _BOTTOM
        parts.append(
            f'<line class="axis" x1="{_LEFT}" x2="{_WIDTH - _RIGHT}" y1="{bottom}" y2="{bottom}"/>'
            f'<line class="axis" x1="{_LEFT}" x2="{_LEFT}" y1="{_TOP}" y2="{bottom}"/>'
        )
        return parts

    def points(self, xs: Sequence[float], ys: Sequence[float]) -> str:
        return " ".join(
            f"{self.x(float(x)):.1f},{self.y(float(y)):.1f}" for x, y in zip(xs, ys, strict=True)
        )


def _svg(height: int, parts: list[str], label: str) -> str:
    return (
        f'<svg viewBox="0 0 {_WIDTH} {height}" width="100%" role="img" '
        f'aria-label="{html.escape(label)}">' + "".join(parts) + "</svg>"
    )


def _finite_range(values: np.ndarray) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if not len(finite):
        return 0.0, 1.0
    return float(finite.min()), float(finite.max())


def _equity_svg(xs: np.ndarray, equity: np.ndarray, initial: float, x0: float, x1: float) -> str:
    dx, dy = _downsample(xs, equity)
    lo, hi = _finite_range(np.append(dy, initial))
    frame = _Frame(x0, x1, lo, hi, 280)
    parts = frame.axes()
    base = frame.y(initial)
    parts.append(
        f'<line x1="{_LEFT}" x2="{_WIDTH - _RIGHT}" y1="{base:.1f}" y2="{base:.1f}" '
        'stroke="#999" stroke-dasharray="4 3"/>'
    )
    parts.append(
        f'<polyline fill="none" stroke="{_LINE}" stroke-width="1.5" '
        f'points="{frame.points(dx, dy)}"/>'
    )
    return _svg(frame.height, parts, "equity curve")


def _drawdown_svg(xs: np.ndarray, dd_pct: np.ndarray, x0: float, x1: float) -> str:
    dx, dy = _downsample(xs, dd_pct)
    lo, _ = _finite_range(dy)
    frame = _Frame(x0, x1, min(lo, 0.0), 0.0, 170)
    parts = frame.axes("%")
    if len(dx):
        zero = frame.y(0.0)
        area = (
            f"{frame.x(float(dx[0])):.1f},{zero:.1f} "
            + frame.points(dx, dy)
            + f" {frame.x(float(dx[-1])):.1f},{zero:.1f}"
        )
        parts.append(f'<polygon fill="{_LOSS}" fill-opacity="0.25" points="{area}"/>')
        parts.append(
            f'<polyline fill="none" stroke="{_LOSS}" stroke-width="1" '
            f'points="{frame.points(dx, dy)}"/>'
        )
    return _svg(frame.height, parts, "drawdown")


def _trade_marks(frame: _Frame, trades: Sequence[ClosedTrade]) -> list[str]:
    parts = []
    for t in trades:
        colour = _WIN if t.pnl > 0 else _LOSS
        ex, ey = frame.x(_epoch(t.entry_time)), frame.y(float(t.entry_price))
        xx, xy = frame.x(_epoch(t.exit_time)), frame.y(float(t.exit_price))
        if t.side == "SHORT":  # ▼
            tri = f"{ex - 5:.1f},{ey - 4:.1f} {ex + 5:.1f},{ey - 4:.1f} {ex:.1f},{ey + 5:.1f}"
        else:  # ▲
            tri = f"{ex - 5:.1f},{ey + 4:.1f} {ex + 5:.1f},{ey + 4:.1f} {ex:.1f},{ey - 5:.1f}"
        tip = html.escape(
            f"{t.side} {_plain(t.size)} {t.symbol} "
            f"{t.entry_time:%Y-%m-%d %H:%M} @ {_plain(t.entry_price)} → "
            f"{t.exit_time:%Y-%m-%d %H:%M} @ {_plain(t.exit_price)}; "
            f"pnl {_plain(t.pnl)} (fees {_plain(t.fees)})"
        )
        parts.append(
            f"<g><title>{tip}</title>"
            f'<line x1="{ex:.1f}" y1="{ey:.1f}" x2="{xx:.1f}" y2="{xy:.1f}" stroke="{colour}" '
            'stroke-width="1" stroke-dasharray="3 2"/>'
            f'<polygon points="{tri}" fill="{colour}"/>'
            f'<circle cx="{xx:.1f}" cy="{xy:.1f}" r="3.5" fill="{colour}"/></g>'
        )
    return parts


def _price_svg(
    symbol: str,
    series: list[tuple[datetime, Decimal]],
    trades: Sequence[ClosedTrade],
    x0: float,
    x1: float,
) -> str:
    xs = np.array([_epoch(ts) for ts, _ in series], dtype=float)
    ys = np.array([float(price) for _, price in series], dtype=float)
    dx, dy = _downsample(xs, ys)
    marks = [float(t.entry_price) for t in trades] + [float(t.exit_price) for t in trades]
    lo, hi = _finite_range(np.concatenate([dy, np.array(marks, dtype=float)]))
    frame = _Frame(x0, x1, lo, hi, 300)
    parts = frame.axes()
    parts.append(
        f'<polyline fill="none" stroke="#555" stroke-width="1.2" points="{frame.points(dx, dy)}"/>'
    )
    parts.extend(_trade_marks(frame, trades))
    return _svg(frame.height, parts, f"{symbol} price with trades")


def _sample_trades(trades: Sequence[ClosedTrade]) -> list[ClosedTrade]:
    if len(trades) <= MAX_DRAW_TRADES:
        return list(trades)
    step = len(trades) / MAX_DRAW_TRADES
    return [trades[int(i * step)] for i in range(MAX_DRAW_TRADES)]


def _table(rows: Sequence[tuple[str, Any]], caption: str) -> str:
    body = "".join(
        f"<tr><td><code>{html.escape(str(k))}</code></td>"
        f'<td class="num">{html.escape(_fmt(v))}</td></tr>'
        for k, v in rows
    )
    return f"<div><h2>{html.escape(caption)}</h2><table>{body}</table></div>"


def _flatten(params: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            rows.extend(_flatten(value, name + "."))
        else:
            rows.append((name, value if not isinstance(value, list | tuple) else list(value)))
    return rows


def render_report(result: BacktestResult, metrics: dict) -> str:
    """The whole report as one HTML document (no scripts, no external resources)."""
    title = _title(result.parameters)
    xs = np.array([_epoch(p.timestamp) for p in result.equity], dtype=float)
    equity = np.array([float(p.equity) for p in result.equity], dtype=float)
    dd_pct = _drawdown_pct(result)
    all_x = [xs] + [
        np.array([_epoch(ts) for ts, _ in series], dtype=float)
        for series in result.prices.values()
        if series
    ]
    joined = np.concatenate(all_x) if all_x else np.array([], dtype=float)
    x0, x1 = (float(joined.min()), float(joined.max())) if len(joined) else (0.0, 1.0)

    sections = []
    if len(xs):
        sections.append("<h2>Equity</h2>")
        sections.append(_equity_svg(xs, equity, float(result.initial_cash), x0, x1))
        sections.append("<h2>Drawdown</h2>")
        sections.append(_drawdown_svg(xs, dd_pct, x0, x1))
    else:
        sections.append('<p class="note">No equity points.</p>')
    for symbol, series in result.prices.items():
        if not series:
            continue
        mine = [t for t in result.trades if t.symbol == symbol]
        drawn = _sample_trades(mine)
        sections.append(f"<h2>{html.escape(symbol)} price and trades</h2>")
        sections.append(
            '<div class="legend">'
            f'<span style="color:{_WIN}">■ winning</span> · '
            f'<span style="color:{_LOSS}">■ losing</span> · ▲ long entry · ▼ short entry · '
            "● exit</div>"
        )
        sections.append(_price_svg(symbol, series, drawn, x0, x1))
        if len(drawn) < len(mine):
            sections.append(
                f'<p class="note">{len(drawn)} of {len(mine)} trades drawn (evenly sampled).</p>'
            )

    sub = " · ".join(
        part
        for part in (
            f"{metrics.get('start') or ''} → {metrics.get('end') or ''}",
            ", ".join(result.prices) or None,
            f"{len(result.trades)} trades",
        )
        if part
    )
    tables = (
        '<div class="tables">'
        + _table(list(metrics.items()), "Metrics")
        + _table(_flatten(_redact(result.parameters)), "Parameters")
        + "</div>"
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>"
        f'<div class="sub">{html.escape(sub)}</div>'
        + "".join(sections)
        + tables
        + "</body></html>\n"
    )


def _write_report_html(fh: IO[str], result: BacktestResult, metrics: dict) -> None:
    fh.write(render_report(result, metrics))
