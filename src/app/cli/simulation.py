"""`trading-engine demo`, `replay` and `simulate`: a scripted order lifecycle, a trades file
published to Redis as the collector would, and the Strategy module over a trades file on
the embedded default (no servers).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from trading_engine.app.cli.common import console, errors, fail, settings_for
from trading_engine.app.cli.options import DatabaseOption


def sample_trades() -> Path:
    """The bundled GMO trades file (package data: found in a wheel as in the source tree)."""
    from importlib import resources

    return Path(str(resources.files("trading_engine") / "samples" / "gmo_BTC_JPY_sample.csv.gz"))


def demo(database_url: DatabaseOption = None) -> None:
    """Run a scripted order lifecycle on the event store and print its audit trail."""
    import uuid

    from rich.table import Table

    from trading_engine.app.audit.trail import order_trail
    from trading_engine.app.bootstrap.databases import bootstrap
    from trading_engine.app.execution.demo import order_summary, scripted_lifecycle

    settings = settings_for(database_url)
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


FileOption = Annotated[
    Path | None,
    typer.Option("--file", help="GMO trades CSV (symbol,side,size,price,timestamp), .gz ok."),
]


SyntheticOption = Annotated[
    int | None, typer.Option("--synthetic", help="Generate this many synthetic trades instead.")
]


SeedOption = Annotated[int, typer.Option("--seed", help="Seed of the synthetic market.")]


def replay(
    file: FileOption = None,
    synthetic: SyntheticOption = None,
    seed: SeedOption = 7,
    speed: Annotated[
        float, typer.Option(help="0 = as fast as possible, 1 = real time, N ≥ 1 = N× faster.")
    ] = 0.0,
) -> None:
    """Publish a trades file or a synthetic market into the md:trade stream of REDIS_URL."""
    from redis.exceptions import RedisError
    from rich.progress import Progress

    from trading_engine.app.bootstrap.strategy import publish_to_redis, synthetic_start, trades_from

    settings = settings_for(None)
    if (file is None) == (synthetic is None):
        raise fail("give exactly one of --file or --synthetic")
    if 0 < speed < 1:
        # The engine closes bars when the feed's clock (its time advanced by the wall clock)
        # passes them: a feed slower than real time would see bars closed before their trades.
        raise fail(
            f"--speed {speed:g}: a replay slower than real time is not supported (the engine's "
            "feed clock would close bars before their trades arrive); use 0, 1 or more"
        )
    try:
        start = None if synthetic is None else synthetic_start(synthetic, speed)
        trades = trades_from(file, synthetic, seed, start)
        with Progress(console=errors) as progress:
            task = progress.add_task("publishing", total=synthetic)
            written = publish_to_redis(
                settings, trades, speed, lambda n: progress.update(task, completed=n)
            )
    except RedisError as error:
        raise fail(f"replay: Redis at {settings.REDIS_URL} failed: {error}") from None
    except (OSError, ValueError) as error:
        raise fail(f"replay: {error}") from None

    console.print(f"published {written} trades to {settings.STREAM_PREFIX}md:trade")


def simulate(
    file: FileOption = None,
    synthetic: SyntheticOption = None,
    seed: SeedOption = 7,
    database_url: DatabaseOption = None,
) -> None:
    """The Strategy module on the embedded default: in-process stream, SQLite, no servers.

    Without --database-url each run gets its own SQLite file under data/simulations/, even
    when DATABASE_URL is set: its bars and signals never mix with live ones, and a second
    run does not find the first one's bars (to which its trades would be late)."""
    import uuid

    from rich.table import Table

    from trading_engine.app.bootstrap.strategy import simulated_strategy_loop, trades_from
    from trading_engine.app.runtime.config import ConfigError

    if database_url is None:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        database_url = f"sqlite:///data/simulations/sim-{stamp}-{uuid.uuid4().hex[:6]}.sqlite3"
    settings = settings_for(database_url)
    if file is None and synthetic is None:
        file = sample_trades()
    try:
        loop, log, close = simulated_strategy_loop(
            settings, trades_from(file, synthetic, seed, None)
        )
    except ConfigError as error:
        raise fail(str(error)) from None
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
