"""Every file the engine hands to a person comes out whole and mode 0644 (issue 17: the
orders, executions and signals exports and sweep.csv were 0600 while the report and the tax
export were 0644), written by the one writer in `trading_engine.files`."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from support.cli import run_cli
from trading_engine.files import write_atomically


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def invoke(*args: str, cwd: Path) -> None:
    result = run_cli(*args, cwd=cwd)
    assert result.returncode == 0, result


def test_exports_backtest_and_sweep_files_are_0644(tmp_path: Path) -> None:
    run = tmp_path / "run"
    invoke("backtest", "--synthetic", "600", "--seed", "3", "--out", str(run), "--no-report",
           cwd=tmp_path)  # fmt: skip
    written = [p for p in run.iterdir() if p.suffix in (".csv", ".json")]
    for kind in ("orders", "executions", "signals"):
        for fmt in ("csv", "jsonl", "parquet"):
            out = tmp_path / f"{kind}.{fmt}"
            invoke(
                "export", kind, "--run", str(run), "--include-simulated",
                "--format", fmt, "--out", str(out), cwd=tmp_path,
            )  # fmt: skip
            written += [out, out.with_name(out.name + ".manifest.json")]
    tax = tmp_path / "tax.csv"
    invoke("export", "tax", "--run", str(run), "--year", "2026", "--method", "moving-average",
           "--include-simulated", "--format", "csv", "--out", str(tax), cwd=tmp_path)  # fmt: skip
    written.append(tax)
    sweep = tmp_path / "sweep"
    invoke("sweep", "--synthetic", "400", "--grid", "fast_window=5,10", "--param",
           "slow_window=20", "--workers", "1", "--out", str(sweep), cwd=tmp_path)  # fmt: skip
    written += list(sweep.glob("*.csv"))
    assert len(written) > 20
    assert {p.name: oct(mode(p)) for p in written} == {p.name: "0o644" for p in written}
    assert not list(tmp_path.rglob(".*.part")), "no temporary file left"


def test_an_interrupted_write_leaves_the_previous_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    write_atomically(target, lambda fh: fh.write("old\n"))

    def fails_midway(fh) -> None:
        fh.write("new, half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomically(target, fails_midway)
    assert target.read_text() == "old\n"
    assert mode(target) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]
