"""Research pages: a sweep's report (ranking and heat maps) and a walk-forward's report.

Each is one self-contained HTML file (no script, no outside resource: it opens offline, as
it is), rendered from the plain data the command also writes as JSON (``sweep.json``,
``walk_forward.json``), so a page can be made again from the JSON alone.

* :func:`heatmap_html`: a metric over two swept parameters, as a table of coloured cells;
  the other axes are collapsed by taking their best point (said in the caption), a cell
  whose points all failed is blank with the error in its tooltip.
* :func:`sweep_report_html`: the ranking and the heat maps of a ``sweep.json`` document.
* :func:`walk_forward_report_html`: the stitched out-of-sample equity curve (inline SVG),
  in-sample against out-of-sample figures, the warning, and the windows.

Pure rendering: no I/O here.
"""

from __future__ import annotations

import html
import itertools
import math
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from trading_engine.app.backtest.chart_page import _CSS, _fmt, money
from trading_engine.app.backtest.walk_forward import metric_value

__all__ = ["heatmap_html", "sweep_report_html", "walk_forward_report_html"]

MAX_HEATMAPS = 6  # pairs of axes drawn (the first axes' pairs)
MAX_RANKING_ROWS = 200

_MORE_CSS = """
.warn{background:#fff4e5;border:1px solid #f0b46a;border-radius:6px;padding:8px 12px;
margin:8px 0 14px;color:#7a4a00;font-size:14px}
.heat td.cell{text-align:right;font-variant-numeric:tabular-nums;min-width:64px}
.heat td.blank{background:repeating-linear-gradient(45deg,#fff,#fff 4px,#eee 4px,#eee 8px)}
.heat th.axis{color:#666;font-weight:400}
caption{caption-side:bottom;font-size:12px;color:#666;text-align:left;padding:6px 2px;
max-width:900px}
svg text{font-size:11px;fill:#555}
td.err{color:#c0392b;white-space:normal;max-width:420px}
"""


def _page(title: str, sub: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{_CSS}{_MORE_CSS}</style></head>"
        f"<body><main><h1>{html.escape(title)}</h1>"
        f'<div class="sub">{html.escape(sub)}</div>{body}</main></body></html>\n'
    )


def _value_text(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3f}"


def _short(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _params_text(parameters: dict[str, Any] | None) -> str:
    if not parameters:
        return "—"
    return ", ".join(f"{k}={_short(v)}" for k, v in parameters.items())


def _colour(fraction: float) -> str:
    """0 (worst) red, through yellow, to 1 (best) green."""
    return f"hsl({120 * min(max(fraction, 0.0), 1.0):.0f},65%,78%)"


# --------------------------------------------------------------------------- heat map


def _values_of(results: Iterable[dict[str, Any]], axis: str) -> list[Any]:
    seen: dict[Any, None] = {}
    for result in results:
        if axis in result.get("parameters", {}):
            seen.setdefault(result["parameters"][axis], None)
    try:
        return sorted(seen)
    except TypeError:  # mixed types: as met
        return list(seen)


def _axis(axes: dict[str, Any] | None, name: str, results: Sequence[dict[str, Any]]) -> list[Any]:
    """The axis's values as given (a list), else those the results hold (a search's range)."""
    given = (axes or {}).get(name)
    return list(given) if isinstance(given, list | tuple) and given else _values_of(results, name)


def heatmap_html(
    results: Sequence[dict[str, Any]],
    x_axis: str,
    y_axis: str | None,
    metric: str,
    *,
    descending: bool = True,
    axes: dict[str, list[Any]] | None = None,
) -> str:
    """A ``<table class="heat">``: ``metric`` over ``x_axis`` (columns) and ``y_axis``
    (rows; None: one row), each cell coloured from red (worst) to green (best).

    ``results``: a sweep's point results (``{"parameters": {...}, metric: value, ...}`` or
    ``{"parameters": {...}, "error": message}``), in any order. ``descending``: higher is
    better (False: lower is, as in a sweep ranked ``--ascending``). ``axes``: every axis's
    values in grid order (rows and columns follow it; default: the values met, sorted).
    Points that differ only on other axes share a cell, which shows the best of them (the
    caption says so). A cell without a value is blank: its title gives the errors of its
    points, or says the metric is n/a."""
    rows_axis = [None] if y_axis is None else _axis(axes, y_axis, results)
    columns = _axis(axes, x_axis, results)
    others = sorted({name for r in results for name in r.get("parameters", {})} - {x_axis, y_axis})
    cells: dict[tuple[Any, Any], list[dict[str, Any]]] = {}
    for result in results:
        parameters = result.get("parameters", {})
        key = (parameters.get(x_axis), None if y_axis is None else parameters.get(y_axis))
        cells.setdefault(key, []).append(result)

    def best(group: list[dict[str, Any]]) -> float | None:
        values = [v for v in (metric_value(r, metric) for r in group) if v is not None]
        if not values:
            return None
        return max(values) if descending else min(values)

    found = {key: best(group) for key, group in cells.items()}
    known = [v for v in found.values() if v is not None]
    low, high = (min(known), max(known)) if known else (0.0, 0.0)

    def cell(x: Any, y: Any) -> str:
        group = cells.get((x, y), [])
        where = ("" if y_axis is None else f"{y_axis}={_short(y)}, ") + f"{x_axis}={_short(x)}"
        value = found.get((x, y))
        failed = [r for r in group if "error" in r]
        if value is None:
            if not group:
                why = "not in the sweep"
            elif failed:
                errors = list(dict.fromkeys(str(r["error"]) for r in failed))
                why = f"{len(failed)} of {len(group)} failed: " + "; ".join(errors[:3])
            else:
                why = f"{metric} n/a"
            return f'<td class="cell blank" title="{html.escape(f"{where}: {why}")}"></td>'
        fraction = 0.5 if high == low else (value - low) / (high - low)
        if not descending:
            fraction = 1 - fraction
        title = f"{where}: {metric} {value:g}"
        if len(group) > 1:
            title += f" (best of {len(group)} points)"
        if failed:
            title += f"; {len(failed)} failed: {failed[0]['error']}"
        return (
            f'<td class="cell" style="background:{_colour(fraction)}" '
            f'title="{html.escape(title)}">{html.escape(_value_text(value))}</td>'
        )

    head = (
        f'<tr><th class="axis">{html.escape(y_axis or "")} \\ {html.escape(x_axis)}</th>'
        + "".join(f'<th class="num">{html.escape(_short(x))}</th>' for x in columns)
        + "</tr>"
    )
    body = "".join(
        "<tr>"
        + (f'<th class="num">{html.escape(_short(y))}</th>' if y_axis is not None else "<th></th>")
        + "".join(cell(x, y) for x in columns)
        + "</tr>"
        for y in rows_axis
    )
    over = x_axis if y_axis is None else f"{x_axis} (columns) and {y_axis} (rows)"
    caption = f"{metric} over {over}; {'higher' if descending else 'lower'} is better (green)."
    if others:
        caption += (
            f" Each cell is the best value over the other swept parameters ({', '.join(others)})."
        )
    caption += " Blank: no value (every point failed or the metric is n/a; hover for why)."
    return (
        f'<table class="heat"><caption>{html.escape(caption)}</caption>'
        f"<thead>{head}</thead><tbody>{body}</tbody></table>"
    )


# --------------------------------------------------------------------------- sweep page

_RANKING_METRICS = ("return_pct", "max_drawdown_pct", "trades", "final_equity")


def sweep_report_html(document: dict[str, Any]) -> str:
    """A sweep's report.html, from the document ``trading-engine sweep`` writes to
    sweep.json (``strategy``, ``sort``, ``descending``, ``axes``, ``fixed``, ``cash``,
    ``commission``, ``data``/``synthetic`` and ``results``: the ranked point results, each
    with its ``point`` number): the ranking (the first 200 rows) and a heat map of the sort
    metric for each pair of axes (the first six pairs; one row for a single axis)."""
    strategy = str(document.get("strategy", "?"))
    sort = str(document.get("sort", "sharpe_ratio"))
    descending = bool(document.get("descending", True))
    axes: dict[str, list[Any]] = dict(document.get("axes") or {})
    results: list[dict[str, Any]] = list(document.get("results") or [])
    failed = [r for r in results if "error" in r]
    names = list(axes) or sorted({k for r in results for k in r.get("parameters", {})})

    pairs: list[tuple[str, str | None]] = (
        [(x, y) for y, x in itertools.combinations(names, 2)][:MAX_HEATMAPS]
        if len(names) > 1
        else [(names[0], None)]
        if names
        else []
    )
    maps = "".join(
        f'<div class="box">{heatmap_html(results, x, y, sort, descending=descending, axes=axes)}'
        "</div>"
        for x, y in pairs
    )
    metrics = [sort, *(m for m in _RANKING_METRICS if m != sort)]
    head = (
        "<tr><th class=num>#</th><th class=num>point</th>"
        + "".join(f"<th class=num>{html.escape(n)}</th>" for n in names)
        + "".join(f"<th class=num>{html.escape(m)}</th>" for m in metrics)
        + "<th>error</th></tr>"
    )
    rows = []
    for place, result in enumerate(results[:MAX_RANKING_ROWS], start=1):
        parameters = result.get("parameters", {})
        cells = [
            f"<td class=num>{place}</td><td class=num>{html.escape(str(result.get('point', '')))}"
            "</td>",
            *(f"<td class=num>{html.escape(_short(parameters.get(n, '')))}</td>" for n in names),
            *(f"<td class=num>{html.escape(_fmt(result.get(m)))}</td>" for m in metrics),
            f'<td class="err">{html.escape(str(result.get("error", "")))}</td>',
        ]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    more = len(results) - MAX_RANKING_ROWS
    note = f"<p class=note>{more:,} more rows in sweep.csv.</p>" if more > 0 else ""
    direction = "highest" if descending else "lowest"
    summary = f"{len(results)} points ranked by {sort}, {direction} first"
    if failed:
        summary += f"; {len(failed)} failed (at the end, with their error)"
    body = (
        f"<p class=note>{html.escape(summary)}.</p>"
        + (f"<h2>Heat map{'s' if len(pairs) > 1 else ''}</h2>" + maps if maps else "")
        + "<h2>Ranking</h2>"
        + f'<div class="box scroll"><table id="ranking"><thead>{head}</thead><tbody>'
        + "".join(rows)
        + "</tbody></table></div>"
        + note
    )
    return _page(f"Sweep: {strategy}", _setting_text(document), body)


def _setting_text(document: dict[str, Any]) -> str:
    data = document.get("data") or []
    synthetic = document.get("synthetic")
    source = (
        ", ".join(str(d) for d in data)
        if data
        else f"{synthetic.get('count')} synthetic bars (seed {synthetic.get('seed')})"
        if isinstance(synthetic, dict)
        else "?"
    )
    fixed = document.get("fixed") or {}
    parts = [
        f"data: {source}",
        f"cash {document.get('cash', '?')}",
        f"commission {document.get('commission', '?')}",
    ]
    if fixed:
        parts.append("fixed: " + _params_text(fixed))
    return "; ".join(parts)


# --------------------------------------------------------------------------- walk-forward

_COMPARED = (
    "return_pct",
    "return_ann_pct",
    "sharpe_ratio",
    "sortino_ratio",
    "max_drawdown_pct",
    "win_rate_pct",
    "trades",
    "exposure_time_pct",
)

SVG_WIDTH, SVG_HEIGHT, SVG_LEFT, SVG_PAD = 1000, 320, 96, 24
MAX_CURVE_BUCKETS = 1500


def _thin(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """At most 2 · MAX_CURVE_BUCKETS points: each bucket's lowest and highest, in time
    order (drawdowns stay visible)."""
    if len(points) <= 2 * MAX_CURVE_BUCKETS:
        return points
    size = math.ceil(len(points) / MAX_CURVE_BUCKETS)
    kept: list[tuple[float, float]] = []
    for start in range(0, len(points), size):
        bucket = points[start : start + size]
        low = min(bucket, key=lambda p: p[1])
        high = max(bucket, key=lambda p: p[1])
        kept.extend(sorted({low, high}))
    return kept


def equity_svg(
    curve: Sequence[Sequence[Any]], boundaries: Sequence[str] = (), baseline: float | None = None
) -> str:
    """An inline SVG line of ``curve`` (``[[iso time, equity], ...]``), the ``boundaries``
    (iso times: the test windows' starts) as dotted lines, ``baseline`` (the initial cash)
    dashed."""
    if not curve:
        return "<p class=note>No out-of-sample curve: no window was tested.</p>"
    points = [(datetime.fromisoformat(t).timestamp(), float(e)) for t, e, *_ in curve]
    first, last = points[0][0], points[-1][0]
    values = [e for _, e in points] + ([baseline] if baseline is not None else [])
    low, high = min(values), max(values)
    if high == low:
        high, low = high + 1, low - 1
    width, height, left, pad = SVG_WIDTH, SVG_HEIGHT, SVG_LEFT, SVG_PAD

    def x(t: float) -> float:
        return left + (t - first) / ((last - first) or 1) * (width - left - pad)

    def y(e: float) -> float:
        return height - 2 * pad - (e - low) / (high - low) * (height - 3 * pad)

    line = " ".join(f"{x(t):.1f},{y(e):.1f}" for t, e in _thin(points))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="100%" role="img" aria-label="out-of-sample equity">',
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#fff"/>',
    ]
    for boundary in boundaries:
        t = datetime.fromisoformat(boundary).timestamp()
        if first <= t <= last:
            parts.append(
                f'<line x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{pad}" y2="{height - 2 * pad}" '
                'stroke="#ccc" stroke-dasharray="2,3"/>'
            )
    if baseline is not None:
        parts.append(
            f'<line x1="{left}" x2="{width - pad}" y1="{y(baseline):.1f}" '
            f'y2="{y(baseline):.1f}" '
            'stroke="#999" stroke-dasharray="6,4"/>'
        )
    parts.append(f'<polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="{line}"/>')
    for value in (low, high):
        parts.append(
            f'<text x="{left - 6}" y="{y(value) + 4:.1f}" text-anchor="end">'
            f"{html.escape(money(value))}</text>"
        )
    for t, anchor in ((first, "start"), (last, "end")):
        day = datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d")
        parts.append(f'<text x="{x(t):.1f}" y="{height - pad}" text-anchor="{anchor}">{day}</text>')
    parts.append("</svg>")
    return "".join(parts)


def day(text: str) -> str:
    """An ISO time as a date, or a date and minutes when it is not midnight UTC."""
    return text[:10] if text.endswith("T00:00:00+00:00") else text.replace("T", " ")[:16]


def _pct(value: Any) -> str:
    return "—" if not isinstance(value, int | float) else f"{value:,.2f} %"


def _num(value: Any) -> str:
    return html.escape(_fmt(value))


def walk_forward_report_html(document: dict[str, Any]) -> str:
    """A walk-forward's report.html from the document written to walk_forward.json: the
    warning (if any), headline figures, the stitched out-of-sample equity curve, in-sample
    against out-of-sample figures, and one row per window."""
    summary: dict[str, Any] = document.get("summary", {})
    windows: list[dict[str, Any]] = document.get("windows", [])
    oos = document.get("out_of_sample", {})
    stitched: dict[str, Any] = oos.get("metrics") or {}
    metric = str(summary.get("metric", document.get("sort", "")))
    mode = "anchored" if document.get("anchored") else "rolling"
    title = f"Walk-forward: {document.get('strategy', '?')}"
    sub = (
        f"{mode} windows, train {document.get('train')}, test {document.get('test')}, "
        f"chosen by {metric} ({'highest' if summary.get('descending', True) else 'lowest'}); "
        + _setting_text(document)
    )
    warning = summary.get("warning")
    banner = f'<div class="warn"><b>Warning:</b> {html.escape(warning)}</div>' if warning else ""
    cards = [
        ("OOS return", _pct(stitched.get("return_pct"))),
        ("OOS return / year", _pct(summary.get("out_of_sample_return_ann_pct"))),
        ("IS return / year", _pct(summary.get("in_sample_return_ann_pct"))),
        ("Efficiency", _fmt(summary.get("efficiency"))),
        (f"OOS {metric} (stitched)", _fmt(summary.get("out_of_sample_metric_stitched"))),
        (f"IS {metric} (mean)", _fmt(summary.get("in_sample_metric_mean"))),
        ("Windows tested", f"{summary.get('windows_tested', 0)} of {summary.get('windows', 0)}"),
    ]
    cards_html = '<div class="cards">' + "".join(
        f'<div class="card"><div class="k">{html.escape(k)}</div>'
        f'<div class="v">{html.escape(v)}</div></div>'
        for k, v in cards
    )
    cards_html += "</div>"

    def in_sample_mean(key: str) -> float | None:
        values = [
            v
            for w in windows
            if w.get("error") is None and isinstance(w.get("in_sample"), dict)
            for v in [w["in_sample"].get(key)]
            if isinstance(v, int | float)
        ]
        return sum(values) / len(values) if values else None

    def out_of_sample_mean(key: str) -> float | None:
        values = [
            v
            for w in windows
            if w.get("error") is None and isinstance(w.get("out_of_sample"), dict)
            for v in [w["out_of_sample"].get(key)]
            if isinstance(v, int | float)
        ]
        return sum(values) / len(values) if values else None

    compared = [metric, *(k for k in _COMPARED if k != metric)]
    comparison = (
        "<table id=compare><thead><tr><th>metric</th><th class=num>in sample (mean of the "
        "windows' chosen runs)</th><th class=num>out of sample (mean of the windows)</th>"
        "<th class=num>out of sample (stitched)</th></tr></thead><tbody>"
        + "".join(
            f"<tr><td>{html.escape(k)}</td><td class=num>{_num(in_sample_mean(k))}</td>"
            f"<td class=num>{_num(out_of_sample_mean(k))}</td>"
            f"<td class=num>{_num(stitched.get(k))}</td></tr>"
            for k in compared
        )
        + "</tbody></table>"
    )
    head = (
        "<tr><th class=num>#</th><th>train</th><th>test</th><th>chosen parameters</th>"
        f"<th class=num>IS {html.escape(metric)}</th><th class=num>OOS {html.escape(metric)}</th>"
        "<th class=num>IS return %</th><th class=num>OOS return %</th>"
        "<th class=num>OOS trades</th><th class=num>failed points</th><th>error</th></tr>"
    )

    rows = "".join(
        "<tr>"
        f"<td class=num>{w['window']}</td>"
        f"<td>{html.escape(day(w['train_start']))} → {html.escape(day(w['train_end']))}</td>"
        f"<td>{html.escape(day(w['test_start']))} → {html.escape(day(w['test_end']))}</td>"
        f"<td>{html.escape(_params_text(w.get('parameters')))}</td>"
        f"<td class=num>{_num(w.get('in_sample_metric'))}</td>"
        f"<td class=num>{_num(w.get('out_of_sample_metric'))}</td>"
        f"<td class=num>{_num(w.get('in_sample_return_pct'))}</td>"
        f"<td class=num>{_num(w.get('out_of_sample_return_pct'))}</td>"
        f"<td class=num>{_num(w.get('trades'))}</td>"
        f"<td class=num>{_num(w.get('failed_points'))}</td>"
        f'<td class="err">{html.escape(w.get("error") or "")}</td>'
        "</tr>"
        for w in windows
    )
    untested = document.get("untested")
    notes = [
        "Each test window starts with the equity the previous one ended with (returns "
        "compound); a position open at a window's end is valued at its last close and "
        "counted as a trade closed there (no exit fee), the next window starts in cash.",
        "Efficiency: the out-of-sample annual return (compounded over the test windows) over "
        "the in-sample one (the average of the chosen training runs' annual rates); "
        + str(summary.get("warning_rule", "")),
        "Test runs are warmed up on the bars from their training window's start: their "
        "strategy has the state live trading would have had, but trades only in the test "
        "window.",
    ]
    if untested:
        notes.append(
            f"Not tested: {day(str(untested.get('start')))} to {day(str(untested.get('end')))} "
            f"({untested.get('days', 0):.1f} days), shorter than a test window."
        )
    body = (
        banner
        + cards_html
        + "<h2>Out-of-sample equity (stitched)</h2><div class=chart>"
        + equity_svg(
            oos.get("equity") or [],
            [w["test_start"] for w in windows if w.get("error") is None],
            float(document["cash"]) if document.get("cash") is not None else None,
        )
        + "</div><ul class=notes>"
        + "".join(f"<li>{html.escape(n)}</li>" for n in notes)
        + "</ul><h2>In sample against out of sample</h2><div class=box>"
        + comparison
        + "</div><h2>Windows</h2><div class='box scroll'><table id=windows><thead>"
        + head
        + "</thead><tbody>"
        + rows
        + "</tbody></table></div>"
    )
    return _page(title, sub, body)
