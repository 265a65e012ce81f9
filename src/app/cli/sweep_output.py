"""What a sweep or a search leaves: sweep.csv, sweep.json, report.html and the ranking printed
as a table. Shared by the grid (`--search grid`) and the Optuna search."""

from __future__ import annotations

from pathlib import Path
from typing import IO, Any

from trading_engine.app.cli.backtest import SHOWN
from trading_engine.app.cli.common import console, errors
from trading_engine.files import write_atomically


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)  # round-trips exactly
    return str(value)


def _shown(value: Any) -> str:
    if value is None or value == "":
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def rankable(sort: str, results: list[dict]) -> str:
    """`sort`, unless it is an annualised figure that no point has because the data span
    less than a month: then the return (and the reason, said once)."""
    from trading_engine.app.backtest.results import ANNUALISE_MIN_DAYS, ANNUALISED

    ran = [result for result in results if "error" not in result and "return_pct" in result]
    if sort not in ANNUALISED or not ran or any(result.get("annualised") for result in ran):
        return sort
    days = ran[0].get("duration_days") or 0.0
    errors.print(
        f"{sort} is n/a: the data span {days:.1f} days, under {ANNUALISE_MIN_DAYS} (annualised "
        "figures need a month); ranked by return_pct instead (--sort to choose)",
        highlight=False,
    )
    return "return_pct"


def write_results(
    out: Path,
    document: dict[str, Any],
    axes: list[str],
    *,
    top: int,
    title: str,
    states: bool = False,
) -> tuple[Path, Path, Path]:
    """sweep.csv, sweep.json and report.html from `document` (its `results` ranked,
    each with its `point` number); the best `top` printed. `states`: a search's trials
    have a state (COMPLETE, PRUNED, FAIL) shown as a column."""
    import orjson
    from rich.table import Table

    from trading_engine.app.backtest.research_report import sweep_report_html
    from trading_engine.app.bootstrap.sweep import iter_rows

    ranked = document["results"]
    sort = document["sort"]
    metrics = [sort, *(name for name in SHOWN if name != sort)]
    extra = ["state"] if states else []
    columns = ["point", *axes, *extra, *metrics, "error"]
    rows = []
    for result, row in zip(ranked, iter_rows(ranked, axes, metrics), strict=True):
        if states:
            row["state"] = result.get("state", "")
            if result.get("pruned_at"):
                row["error"] = f"pruned at {result['pruned_at']} of the bars"
        rows.append({"point": result["point"], **row})

    def write_csv(fh: IO[str]) -> None:
        import csv

        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({name: _cell(row[name]) for name in columns})

    csv_path, json_path = out / "sweep.csv", out / "sweep.json"
    write_atomically(csv_path, write_csv)
    write_atomically(
        json_path,
        lambda fh: fh.write(orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n"),
        binary=True,
    )

    report = out / "report.html"
    write_atomically(report, lambda fh: fh.write(sweep_report_html(_reportable(document))))

    failed = sum(1 for result in ranked if "error" in result)
    table = Table(title=f"{title}: {len(ranked)} points by {sort}, top {min(top, len(rows))}")
    shown = list(dict.fromkeys([sort, "return_pct", "max_drawdown_pct", "trades", "final_equity"]))
    for name in ["#", "point", *axes, *extra, *shown]:
        table.add_column(name, justify="right")
    notes = failed or any(row["error"] for row in rows)
    if notes:
        table.add_column("error", no_wrap=True, overflow="ellipsis", max_width=70)
    for place, row in enumerate(rows[:top], start=1):
        cells = [str(place), str(row["point"]), *(_shown(row[name]) for name in axes)]
        cells += [str(row[name]) for name in extra]
        cells += [_shown(row[name]) for name in shown]
        if notes:
            cells.append(row["error"] or "")
        table.add_row(*cells)
    console.print(table)
    return csv_path, json_path, report


def _reportable(document: dict[str, Any]) -> dict[str, Any]:
    """The document as the report reads it: a search's axes are ranges, not the values a
    grid runs; its heat maps follow the values the trials drew."""
    axes = {
        name: values if isinstance(values, list) else []
        for name, values in (document.get("axes") or {}).items()
    }
    return {**document, "axes": axes}
