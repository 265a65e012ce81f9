"""Same bars whatever the path (issue 14): a trades file replayed at full speed into a running
engine, replayed at 60× into another, and simulated in-process, give identical `ohlcv` rows
(every timeframe) and identical signals, through real Redis and PostgreSQL.

The data is not made to suit the engine: the bundled sample (2025, three hours, a trade every
half second on average) and a generated file of another year with a 20-minute silence in the
middle and bursts of trades in the same millisecond. Before issue 14 the engine closed bars by
the host's clock: the sample replayed into `run` closed no bar and grew past 4.8 GB.

The engines keep their last bars open when the data ends (a live engine cannot know the feed
is over), so the comparison covers every bar before the last trade's, in every timeframe.
"""

from __future__ import annotations

import subprocess
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
import redis
from psycopg import sql

from support.engine_output import EngineProcess
from support.engine_process import COMMAND, wait_until
from support.strategy_engine import (
    private_schemas,
    stop_for_report,
    strategy_env,
    strategy_lag,
)
from trading_engine.adapters.marketdata.synthetic import synthetic_trades
from trading_engine.adapters.marketdata.trade_files import read_gmo_trades, write_gmo_trades
from trading_engine.domain.bars import bucket_start
from trading_engine.domain.values import Timeframe

pytestmark = pytest.mark.postgres
SAMPLE = Path(__file__).resolve().parents[2] / "src" / "samples" / "gmo_BTC_JPY_sample.csv.gz"
TIMEFRAMES = ("1s", "1m", "5m")  # the defaults, as a new user runs it


def generated_file(path: Path) -> Path:
    """Two stretches of a 2024 market with twenty silent minutes between them, and bursts:
    every tenth trade repeated in the same millisecond at another price."""
    start = datetime(2024, 2, 29, 23, 47, 13, 250_000, tzinfo=UTC)  # a leap day, odd second
    first = list(synthetic_trades(start=start, seed=31, count=4000))
    later = first[-1].timestamp + timedelta(minutes=20, seconds=7)
    second = list(synthetic_trades(start=later, seed=32, count=4000))
    trades = []
    for n, trade in enumerate(first + second):
        trades.append(trade)
        if n % 10 == 0:
            trades.append(type(trade)(**{**_fields(trade), "price": trade.price + Decimal(7)}))
    write_gmo_trades(path, trades)
    return path


def _fields(trade) -> dict:
    return {name: getattr(trade, name) for name in trade.__dataclass_fields__}


def environment(pg_url: str, schema: str, redis_url: str, prefix: str) -> dict[str, str]:
    return strategy_env(
        pg_url,
        schema,
        redis_url,
        prefix,
        OHLCV_TIMEFRAMES=",".join(TIMEFRAMES),
        STRATEGY_TIMEFRAME="1m",
        MA_FAST_WINDOW="5",
        MA_SLOW_WINDOW="20",
    )


def cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [COMMAND, *args], env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def bars_and_signals(pg_url: str, schema: str, last: datetime) -> tuple[dict, list]:
    """Every bar before the last trade's (per timeframe), and the signals decided on them."""
    with psycopg.connect(pg_url) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        bars = {}
        for tf in TIMEFRAMES:
            bound = bucket_start(last, Timeframe(tf)).replace(tzinfo=None)
            bars[tf] = conn.execute(
                "SELECT timestamp, open, high, low, close, volume FROM ohlcv "
                "WHERE timeframe = %s AND timestamp < %s ORDER BY timestamp",
                (tf, bound),
            ).fetchall()
        bound = bucket_start(last, Timeframe("1m")).replace(tzinfo=None)
        signals = conn.execute(
            "SELECT signal_id, action, price_ref, timestamp FROM signals "
            "WHERE timestamp <= %s ORDER BY timestamp",
            (bound,),
        ).fetchall()
    return bars, signals


class ThreePaths:
    """One file down the three paths at once: `simulate`, and two engines fed by `replay`
    at full speed and at 60×; each with its own schema and streams."""

    def __init__(self, file: Path, schemas: list[str], pg_url, redis_url, prefix, cwd: Path):
        self.file, self.schemas, self.pg_url, self.prefix = file, schemas, pg_url, prefix
        self.trades = list(read_gmo_trades(file))
        self.last = max(t.timestamp for t in self.trades)
        names = ("simulate", "fast", "paced")
        self.env = {
            name: environment(pg_url, schema, redis_url, f"{prefix}{name}:")
            for name, schema in zip(names, schemas, strict=True)
        }
        self.engines = {
            name: EngineProcess([COMMAND, "run"], env=self.env[name], cwd=cwd)
            for name in ("fast", "paced")
        }
        self.simulate = cli(
            "simulate",
            "--file",
            str(file),
            "--database-url",
            self.env["simulate"]["DATABASE_URL"],
            env=self.env["simulate"],
            cwd=cwd,
        )
        self.replays = {
            name: cli("replay", "--file", str(file), "--speed", speed, env=self.env[name], cwd=cwd)
            for name, speed in (("fast", "0"), ("paced", "60"))
        }
        self.reports: dict[str, dict] = {}

    def finish(self, client: redis.Redis) -> None:
        assert self.simulate.wait(timeout=300) == 0, self.simulate.stderr.read().decode()
        for name, replay in self.replays.items():
            assert replay.wait(timeout=600) == 0, replay.stderr.read().decode()
            stream = f"{self.prefix}{name}:md:trade"
            assert client.xlen(stream) == len(self.trades)
            wait_until(
                lambda s=stream: strategy_lag(client, s) == 0, 120, f"{name} engine to read all"
            )
            self.reports[name], _ = stop_for_report(self.engines[name])

    def kill(self) -> None:
        for process in [*self.engines.values(), *self.replays.values(), self.simulate]:
            if process.poll() is None:
                process.kill()

    def check(self) -> tuple[dict[str, int], int]:
        """The same bars and signals on the three paths; returns what was compared."""
        expected = bars_and_signals(self.pg_url, self.schemas[0], self.last)
        counts = {tf: len(rows) for tf, rows in expected[0].items()}
        assert counts["1m"] > 30
        assert expected[1]  # signals to compare
        for name, schema in zip(("fast", "paced"), self.schemas[1:], strict=True):
            report = self.reports[name]
            assert report["trades"] == len(self.trades), name
            assert (report["late_trades"], report["future_trades"]) == (0, 0), name
            assert bars_and_signals(self.pg_url, schema, self.last) == expected, name
        return counts, len(expected[1])


def test_replays_at_any_speed_and_simulate_give_the_same_bars_and_signals(
    tmp_path: Path, pg_url: str, redis_url: str, redis_prefix: str
) -> None:
    files = {
        "bundled sample": SAMPLE,
        "generated 2024 file": generated_file(tmp_path / "trades.csv"),
    }
    client = redis.Redis.from_url(redis_url)
    started = time.monotonic()
    runs = {}
    with private_schemas(pg_url, 6) as schemas:
        try:
            for n, (data, file) in enumerate(files.items()):
                three = schemas[3 * n : 3 * n + 3]
                prefix = f"{redis_prefix}{n}"
                runs[data] = ThreePaths(file, three, pg_url, redis_url, prefix, tmp_path)
            for run in runs.values():
                run.finish(client)
        finally:
            for run in runs.values():
                run.kill()
            client.close()
        elapsed = time.monotonic() - started
        for data, run in runs.items():
            counts, signals = run.check()
            print(
                f"\n{data}: {len(run.trades)} trades; bars before the last {counts} and "
                f"{signals} signals identical in simulate, replay --speed 0 and --speed 60 "
                "into run (0 late)"
            )
    print(f"both files, side by side: {elapsed:.0f} s")
