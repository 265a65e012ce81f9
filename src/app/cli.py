"""The `trading-engine` command."""

from __future__ import annotations

import logging
import os
import sys
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated

import orjson
import psycopg
import typer
from redis.exceptions import RedisError
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from app.audit import order_trail
from app.bootstrap import (
    bootstrap,
    live_strategy_loop,
    publish_to_redis,
    simulated_strategy_loop,
    trades_from,
)
from app.bootstrap import migrate as bootstrap_migrate
from app.config import ConfigError, load_settings
from app.demo import order_summary, scripted_lifecycle
from app.service import stop_on_signals

SAMPLE_TRADES = Path(__file__).resolve().parents[2] / "samples" / "gmo_BTC_JPY_sample.csv.gz"

cli = typer.Typer(
    name="trading-engine",
    help="Event-sourced trading core for crypto exchanges (GMO Coin first).",
    no_args_is_help=True,
    add_completion=False,
)
# Wide enough for the audit tables when output goes to a file or a CI log.
console = Console(width=None if sys.stdout.isatty() else 150)


def _settings(database_url: str | None):
    try:
        overrides = {"DATABASE_URL": database_url} if database_url else {}
        return load_settings(**overrides)
    except ConfigError as error:
        Console(stderr=True).print(f"[red]{error}[/red]")
        raise typer.Exit(2) from None


DatabaseOption = Annotated[
    str | None,
    typer.Option("--database-url", help="Event store URL (default: $DATABASE_URL, else SQLite)."),
]


@cli.command()
def demo(database_url: DatabaseOption = None) -> None:
    """Run a scripted order lifecycle on the event store and print its audit trail."""
    settings = _settings(database_url)
    engine = bootstrap(settings.DATABASE_URL)
    try:
        run_id = uuid.uuid4().hex[:8]
        console.print(f"[bold]trading-engine demo[/bold] run {run_id} on {settings.DATABASE_URL}")
        result = scripted_lifecycle(engine.orders, engine.clock.now(), run_id)
        for order_id in result.order_ids:
            order = engine.store.get_order(order_id)
            table = Table(
                title=f"order {order_id} (signal {order.signal_id})", title_justify="left"
            )
            for column in ("v", "event", "before", "after", "filled", "avg price", "details"):
                table.add_column(column)
            for step in order_trail(engine.store, order_id):
                table.add_row(
                    str(step.version),
                    step.event,
                    step.status_before or "",
                    step.status_after,
                    str(step.filled_size),
                    "" if step.average_price is None else f"{step.average_price:.2f}",
                    ", ".join(f"{k}={v}" for k, v in step.details.items()),
                )
            console.print(table)
            console.print(f"  → {order_summary(order)}")
        for note in result.notes:
            console.print(f"• {note}")
        position = result.position
        if position is not None:
            average = "-" if position.average_price is None else f"{position.average_price:.2f}"
            console.print(
                f"[bold]position[/bold] {position.exchange}:{position.symbol} "
                f"(all runs in this store): {position.side} {position.size} @ {average}, "
                f"realized PnL {position.realized_pnl:.8f}, "
                f"unrealized at {result.mark} {position.unrealized_pnl(result.mark):.8f}, "
                f"fees paid {position.fees_paid}"
            )
        console.print(f"event log: {engine.store.max_position()} events recorded in all")
    finally:
        engine.close()


def _logging(level: str) -> None:
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def _fail(message: str, code: int = 2) -> typer.Exit:
    Console(stderr=True).print(f"[red]{message}[/red]")
    return typer.Exit(code)


FileOption = Annotated[
    Path | None,
    typer.Option("--file", help="GMO trades CSV (symbol,side,size,price,timestamp), .gz ok."),
]
SyntheticOption = Annotated[
    int | None, typer.Option("--synthetic", help="Generate this many synthetic trades instead.")
]
SeedOption = Annotated[int, typer.Option("--seed", help="Seed of the synthetic market.")]


@cli.command()
def run() -> None:
    """Run the service: the Strategy module when ENABLE_STRATEGY=true (stops on SIGTERM/SIGINT)."""
    settings = _settings(None)
    _logging(settings.LOG_LEVEL)
    log = logging.getLogger("trading_engine")
    if not settings.ENABLE_STRATEGY and not settings.ENABLE_EXECUTION:
        raise _fail("nothing to run: ENABLE_STRATEGY and ENABLE_EXECUTION are both false")
    if settings.ENABLE_EXECUTION:
        log.warning(
            "ENABLE_EXECUTION=true: the execution module is not built yet (issue 4); "
            "running the strategy module only"
        )
    if not settings.ENABLE_STRATEGY:
        raise _fail("ENABLE_STRATEGY=false and the execution module is not built yet")
    try:
        loop, close = live_strategy_loop(settings)
    except ConfigError as error:
        raise _fail(str(error)) from None
    except (RedisError, OSError, psycopg.Error) as error:
        raise _fail(f"cannot start: {error}", code=1) from None
    try:
        with stop_on_signals() as should_stop:
            recovered = loop.start()
            log.info("strategy loop started (%d pending entries recovered)", recovered)
            stats = loop.run(should_stop)
    except (RedisError, psycopg.Error) as error:
        # Nothing is lost: unacknowledged entries are recovered at the next start.
        raise _fail(f"stopped on a server error (restart to resume): {error}", code=1) from None
    finally:
        close()
    log.info("stopped cleanly: %s", stats)
    print(orjson.dumps({k: v for k, v in vars(stats).items() if k != "signals"}).decode())


@cli.command()
def replay(
    file: FileOption = None,
    synthetic: SyntheticOption = None,
    seed: SeedOption = 7,
    speed: Annotated[
        float, typer.Option(help="0 = as fast as possible, 1 = real time, N = N×.")
    ] = 0.0,
) -> None:
    """Publish a trades file or a synthetic market into the md:trade stream of REDIS_URL."""
    settings = _settings(None)
    if (file is None) == (synthetic is None):
        raise _fail("give exactly one of --file or --synthetic")
    try:
        trades = trades_from(file, synthetic, seed, None)
        with Progress(console=Console(stderr=True)) as progress:
            task = progress.add_task("publishing", total=synthetic)
            written = publish_to_redis(
                settings, trades, speed, lambda n: progress.update(task, completed=n)
            )
    except RedisError as error:
        raise _fail(f"replay: Redis at {settings.REDIS_URL} failed: {error}") from None
    except (OSError, ValueError) as error:
        raise _fail(f"replay: {error}") from None

    console.print(f"published {written} trades to {settings.STREAM_PREFIX}md:trade")


@cli.command()
def simulate(
    file: FileOption = None,
    synthetic: SyntheticOption = None,
    seed: SeedOption = 7,
    database_url: DatabaseOption = None,
) -> None:
    """The Strategy module on the embedded default: in-process stream, SQLite, no servers.

    Without --database-url or DATABASE_URL each run gets its own SQLite file under
    data/simulations/, so a second run does not find the first one's bars (to which its
    trades would be late)."""
    if database_url is None and "DATABASE_URL" not in os.environ:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        database_url = f"sqlite:///data/simulations/sim-{stamp}-{uuid.uuid4().hex[:6]}.sqlite3"
    settings = _settings(database_url)
    if file is None and synthetic is None:
        file = SAMPLE_TRADES
    try:
        loop, log, close = simulated_strategy_loop(
            settings, trades_from(file, synthetic, seed, None)
        )
    except ConfigError as error:
        raise _fail(str(error)) from None
    try:
        stats = loop.run_to_end()
    finally:
        close()
    data = file or f"{synthetic} synthetic trades"
    console.print(
        f"[bold]simulate[/bold] {settings.STRATEGY_NAME} on {data} → {settings.DATABASE_URL}"
    )
    console.print(
        f"entries {stats.entries}, trades {stats.trades}, "
        f"late {stats.late_trades} (bars already closed or stored), "
        f"bars closed {stats.bars_closed} ({', '.join(settings.OHLCV_TIMEFRAMES)}), "
        f"signals {len(stats.signals)} (new in the table: {stats.signals_new}, "
        f"stored by an earlier run: {stats.signals_seen_before}), "
        f"dead-lettered {loop.source.stats.dead_lettered}"
    )
    table = Table(title=f"signals on {settings.STRATEGY_TIMEFRAME} bars", title_justify="left")
    for column in ("decided at", "symbol", "action", "conf.", "price", "reason"):
        table.add_column(column)
    for signal in stats.signals:
        table.add_row(
            signal.timestamp.strftime("%Y-%m-%d %H:%M"),
            str(signal.symbol),
            signal.action.value,
            str(signal.confidence),
            str(signal.price_ref),
            str(signal.meta.get("reason", "")),
        )
    console.print(table)
    console.print(f"signal stream entries: {log.length('signal:gmo')}")


@cli.command()
def migrate(database_url: DatabaseOption = None) -> None:
    """Apply the SQL migrations (ops/migrations) to the DATABASE_URL database."""
    settings = _settings(database_url)
    applied = bootstrap_migrate(settings.DATABASE_URL)
    console.print(f"applied: {', '.join(applied) if applied else 'nothing (up to date)'}")


@cli.command()
def config() -> None:
    """Validate the configuration and print it, secrets redacted."""
    settings = _settings(None)
    for name, value in settings.model_dump().items():
        shown = "********" if name in ("API_KEY", "API_SECRET") and str(value) else value
        if isinstance(shown, Decimal):
            shown = str(shown)
        console.print(f"{name}={shown}")


def main() -> None:
    try:
        cli()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
