"""Same bars whatever the path (issue 14): a trades file replayed at full speed into a running
engine, replayed paced (at a multiple of real time) into another, and simulated in-process,
give identical `ohlcv` rows (every timeframe) and identical signals, through real Redis and
PostgreSQL.

The data is not made to suit the engine: the bundled sample (2025, three hours, a trade every
half second on average, with five silences of 4 to 7.5 minutes) and a generated file of
another year with a 20-minute silence in the middle and bursts of trades in the same
millisecond. Before issue 14 the engine closed bars by the host's clock: the sample replayed
into `run` closed no bar and grew past 4.8 GB.

What pacing adds to the full-speed replay is wall time between trades: when trading goes
quiet, the engine closes bars by the feed's clock (the last trade's time plus the wall time
since it arrived, less a 2 s grace), before the next trade; those bars must equal the ones the
next trade closes on the other paths. A silence closes bars that way only if it lasts longer
than the grace in wall time, so the pace and the stretch paced are chosen around the files'
longest silences, not their length (the whole sample at 60x took three minutes):

- the bundled sample: its first 40 minutes, paced at 60x (40 s): the 7.5-minute silence at
  21:24 lasts 7.6 s of wall time, as it did when the whole sample was paced at 60x;
- the generated file: whole, paced at 120x (42 s): its 20-minute silence lasts 10 s of wall
  time, long enough for the feed's clock to close the last trade's 1s, 1m and 5m bars (they
  end 6.9 s after it; 8.9 s with the grace) before the next trade comes.

A paced stretch that is the head of a file gives the same bars, before its last trade's, as
the whole file (a bar holds the trades of its own span, a signal is decided on the bars up to
its own), so the paced run is compared with the whole file's `simulate` up to the head's last
trade. The test also checks, on the paced stream's entry ids, that the silence did last that
long in wall time: without pacing it would prove nothing more than the full-speed run.

The engines keep their last bars open when the data ends (a live engine cannot know the feed
is over), so each comparison covers every bar before the last trade's, in every timeframe.
"""

from __future__ import annotations

import itertools
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
import redis
from psycopg import sql

from support.cli import COMMAND
from support.engine_output import EngineProcess
from support.engine_process import wait_until
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


@dataclass(frozen=True)
class Pacing:
    """The paced path: the file's trades before `until` (None: all of them), at `speed`x."""

    speed: int
    until: datetime | None = None


PACING = {
    "bundled sample": Pacing(60, until=datetime(2025, 7, 1, 21, 40, tzinfo=UTC)),
    "generated 2024 file": Pacing(120),
}


def longest_gap(times: list[datetime]) -> float:
    return max((b - a).total_seconds() for a, b in itertools.pairwise(times))


def longest_wall_gap(client: redis.Redis, stream: str) -> float:
    """The longest wait, in seconds of wall time, between two entries of `stream` (entry ids
    are Redis's clock in milliseconds when the entry was added)."""
    added = [int(entry_id.split(b"-")[0]) for entry_id, _ in client.xrange(stream)]
    return max(b - a for a, b in itertools.pairwise(added)) / 1000


class ThreePaths:
    """One file down the three paths at once: `simulate`, and two engines fed by `replay`,
    one at full speed, one paced (see `Pacing`); each with its own schema and streams."""

    def __init__(self, name: str, file: Path, schemas: list[str], pg_url, redis_url, prefix, cwd):
        self.file, self.schemas, self.pg_url, self.prefix = file, schemas, pg_url, prefix
        self.trades = list(read_gmo_trades(file))
        times = [t.timestamp for t in self.trades]
        assert times == sorted(times)  # so the trades before a time are the head of the file
        self.last = times[-1]
        self.pacing = PACING[name]
        until = self.pacing.until
        self.head = [t for t in self.trades if until is None or t.timestamp < until]
        paced_file = file
        if until is not None:
            paced_file = cwd / f"{file.name}.head.csv"
            write_gmo_trades(paced_file, self.head)
        self.head_last = self.head[-1].timestamp
        self.silence = longest_gap([t.timestamp for t in self.head])
        self.wall_silence = 0.0
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
            "fast": cli(
                "replay", "--file", str(file), "--speed", "0", env=self.env["fast"], cwd=cwd
            ),
            "paced": cli(
                "replay",
                "--file",
                str(paced_file),
                "--speed",
                str(self.pacing.speed),
                env=self.env["paced"],
                cwd=cwd,
            ),
        }
        self.published = {"fast": len(self.trades), "paced": len(self.head)}
        self.reports: dict[str, dict] = {}

    def finish(self, client: redis.Redis) -> None:
        assert self.simulate.wait(timeout=300) == 0, self.simulate.stderr.read().decode()
        for name, replay in self.replays.items():
            assert replay.wait(timeout=600) == 0, replay.stderr.read().decode()
            stream = f"{self.prefix}{name}:md:trade"
            assert client.xlen(stream) == self.published[name]
            wait_until(
                lambda s=stream: strategy_lag(client, s) == 0, 120, f"{name} engine to read all"
            )
            self.reports[name], _ = stop_for_report(self.engines[name])
        self.wall_silence = longest_wall_gap(client, f"{self.prefix}paced:md:trade")

    def kill(self) -> None:
        for process in [*self.engines.values(), *self.replays.values(), self.simulate]:
            if process.poll() is None:
                process.kill()

    def check(self) -> tuple[dict[str, int], int, dict[str, int], int]:
        """The same bars and signals on the three paths; returns what was compared."""
        expected = bars_and_signals(self.pg_url, self.schemas[0], self.last)
        counts = {tf: len(rows) for tf, rows in expected[0].items()}
        assert counts["1m"] > 30
        assert expected[1]  # signals to compare
        fast, paced = self.schemas[1:]
        report = self.reports["fast"]
        assert report["trades"] == len(self.trades)
        assert (report["late_trades"], report["future_trades"]) == (0, 0)
        assert bars_and_signals(self.pg_url, fast, self.last) == expected

        # the paced head: the silence lasted in wall time what the pace says it should
        assert self.wall_silence >= 0.9 * self.silence / self.pacing.speed, self.wall_silence
        assert self.wall_silence > 7  # longer than the grace and the rest of the last bars
        head = bars_and_signals(self.pg_url, self.schemas[0], self.head_last)
        head_counts = {tf: len(rows) for tf, rows in head[0].items()}
        assert head_counts["1m"] > 20
        assert head[1]  # signals to compare
        report = self.reports["paced"]
        assert report["trades"] == len(self.head)
        assert (report["late_trades"], report["future_trades"]) == (0, 0)
        assert bars_and_signals(self.pg_url, paced, self.head_last) == head
        return counts, len(expected[1]), head_counts, len(head[1])


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
                runs[data] = ThreePaths(data, file, three, pg_url, redis_url, prefix, tmp_path)
            for run in runs.values():
                run.finish(client)
        finally:
            for run in runs.values():
                run.kill()
            client.close()
        elapsed = time.monotonic() - started
        for data, run in runs.items():
            counts, signals, head_counts, head_signals = run.check()
            paced = "" if run.pacing.until is None else f" (its first {len(run.head)} trades)"
            print(
                f"\n{data}: {len(run.trades)} trades; bars before the last {counts} and "
                f"{signals} signals identical in simulate and replay --speed 0 into run; "
                f"paced at {run.pacing.speed}x{paced}: bars {head_counts} and {head_signals} "
                f"signals identical, its {run.silence:.0f} s silence {run.wall_silence:.1f} s "
                "of wall time (0 late)"
            )
    print(f"both files, side by side: {elapsed:.0f} s")
