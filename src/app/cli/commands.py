"""The `trading-engine` command.

Start-up (issue 16): this module and the command modules import only typer, rich and the
standard library at their top, which is all `--help` needs; each command imports the engine
(the composition root, the configuration, the adapters behind them) when it runs, so it
loads what it uses and no more. tests/unit/test_cli_imports.py keeps it so.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from trading_engine.app.cli.backtest import backtest
from trading_engine.app.cli.common import errors, fail, settings_for
from trading_engine.app.cli.export import export_cli
from trading_engine.app.cli.options import DatabaseOption
from trading_engine.app.cli.projections import projections_cli
from trading_engine.app.cli.sweep import sweep
from trading_engine.app.cli.verify import verify_log

if TYPE_CHECKING:
    from trading_engine.app.runtime.resilience import LoopHealth


def sample_trades() -> Path:
    """The bundled GMO trades file (package data: found in a wheel as in the source tree)."""
    from importlib import resources

    return Path(str(resources.files("trading_engine") / "samples" / "gmo_BTC_JPY_sample.csv.gz"))


cli = typer.Typer(
    name="trading-engine",
    help="Event-sourced trading core for crypto exchanges (GMO Coin first).",
    no_args_is_help=True,
    add_completion=False,
    # A traceback's local variables would print the broker's key and secret.
    pretty_exceptions_show_locals=False,
)
# Wide enough for the audit tables when output goes to a file or a CI log.
console = Console(width=None if sys.stdout.isatty() else 150)


@cli.command()
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


@cli.command()
def run() -> None:
    """Run the service: the Strategy module (ENABLE_STRATEGY) and the Execution module
    (ENABLE_EXECUTION), in one process or, with one of them false, separately. Stops on
    SIGTERM/SIGINT after the batch in hand."""
    import logging

    import orjson
    import psycopg
    from redis.exceptions import RedisError

    from trading_engine.app.bootstrap.health import health_server
    from trading_engine.app.bootstrap.logs import configure_logging
    from trading_engine.app.runtime.config import ConfigError
    from trading_engine.app.runtime.resilience import LoopHealth
    from trading_engine.app.runtime.service import stop_on_signals
    from trading_engine.ports.broker import BrokerError

    settings = settings_for(None)
    logs = configure_logging(settings)
    log = logging.getLogger("trading_engine")
    if not settings.ENABLE_STRATEGY and not settings.ENABLE_EXECUTION:
        raise fail("nothing to run: ENABLE_STRATEGY and ENABLE_EXECUTION are both false")
    closers = [logs.close]
    loops = LoopHealth()
    try:
        with stop_on_signals() as should_stop:
            strategy, execution, wiring = (
                (None, None, None)
                if should_stop()  # asked while the process was starting: nothing consumed
                else _start(settings, closers, loops, should_stop, log)
            )
            if strategy is None and execution is None:
                log.warning("stopped before the loops started")
                _close_all(closers)
                print(orjson.dumps({"started": False}).decode(), flush=True)
                return
            health = health_server(settings, strategy, execution, wiring, loops)
            if health is not None:
                closers.append(health.stop)
                log.info("health endpoint on port %d (/livez, /readyz, /metrics)", health.port)
            report = _run_loops(strategy, execution, should_stop, log, wiring, settings, loops)
    except ConfigError as error:
        _close_all(closers)
        raise fail(logs.redact(str(error))) from None
    except OSError as error:
        _close_all(closers)
        raise fail(logs.redact(f"cannot start: {error}"), code=1) from None
    except (RedisError, psycopg.Error, BrokerError) as error:
        # Not a server away (that is waited out): an answer that needs an operator. Nothing
        # is lost: unacknowledged entries are recovered at the next start.
        log.critical("stopped on an error (restart to resume): %s", error)
        _close_all(closers)
        raise fail(logs.redact(f"stopped on an error (restart to resume): {error}"), 1) from None
    log.info("stopped cleanly", extra={"fields": {"report": report}})
    _close_all(closers)
    print(logs.redact(orjson.dumps(report).decode()), flush=True)


def _start(settings, closers: list, loops: LoopHealth, should_stop, log):
    """Migrations, then the loops (each reconciles and recovers its pending entries when it
    starts). A server that is away at start is waited for, as during the run."""
    from trading_engine.app.bootstrap.databases import migrate as bootstrap_migrate
    from trading_engine.app.bootstrap.databases import projections
    from trading_engine.app.bootstrap.execution import connect_paper_market, live_execution_loop
    from trading_engine.app.bootstrap.logs import transient_errors
    from trading_engine.app.bootstrap.strategy import live_strategy_loop
    from trading_engine.app.runtime.resilience import Backoff, run_resilient

    def open_all():
        wiring = strategy = execution = None
        if _has_tables(settings.DATABASE_URL):
            applied = bootstrap_migrate(settings.DATABASE_URL)  # before anything reads a table
            if applied:
                log.info("migrations applied: %s", ", ".join(applied))
            if settings.ENABLE_PROJECTIONS:
                wiring = projections(settings.DATABASE_URL, settings.PROJECTION_BATCH_SIZE)
                closers.append(wiring.close)
        if settings.ENABLE_STRATEGY:
            strategy, close = live_strategy_loop(settings)
            closers.append(close)
        if settings.ENABLE_EXECUTION:
            execution, close = live_execution_loop(settings)
            closers.append(close)
            connect_paper_market(strategy, execution)
        return strategy, execution, wiring

    def reopen() -> None:
        _close_all(closers[1:])  # the log handlers stay
        del closers[1:]

    opened = run_resilient(
        "start-up",
        open_all,
        reopen,
        transient=transient_errors(),
        should_stop=should_stop,
        health=loops,
        backoff=Backoff(most=settings.RETRY_MAX_BACKOFF_SECONDS),
    )
    return opened if opened is not None else (None, None, None)


def _has_tables(database_url: str) -> bool:
    return database_url.split(":", 1)[0] in ("sqlite", "postgresql", "postgres")


def _follow_projections(wiring, stop, interval: float, log, report: dict) -> None:
    """Keep the read tables current. A projection stopped by an event it cannot apply does
    not stop trading (risk reads the event log, not the tables): it waits for a fix."""
    import time

    from trading_engine.app.projections.runner import ProjectionFailed, follow_all

    while not stop():
        try:
            follow_all(wiring.runners, stop, wiring.watcher, poll_interval=interval)
        except ProjectionFailed as failed:
            log.error("%s; the tables wait for a fix (trading-engine projections status)", failed)
            report["projections_failed"] = str(failed)
            return
        except Exception as error:  # the database away for a while: try again
            log.warning("projections paused: %s", error)
            time.sleep(interval)


def _run_loops(
    strategy, execution, should_stop, log, wiring=None, settings=None, loops=None
) -> dict:
    """Both loops in one process: execution in a thread, strategy in this one; an error in
    either stops both (and is raised here), a server away is waited out by each loop.
    Projections follow the log in a thread too."""
    import threading
    import time

    from trading_engine.app.bootstrap.logs import transient_errors
    from trading_engine.app.runtime.resilience import Backoff, LoopHealth, run_resilient

    failure: list[BaseException] = []
    finished = threading.Event()  # the strategy loop ended: the execution loop ends too
    loops = loops or LoopHealth()
    backoff = Backoff(most=settings.RETRY_MAX_BACKOFF_SECONDS if settings else 30.0)

    transient = transient_errors()

    def stop() -> bool:
        return should_stop() or bool(failure) or finished.is_set()

    def resilient(name: str, run_loop, restart):
        return run_resilient(
            name,
            run_loop,
            restart,
            transient=transient,
            should_stop=stop,
            health=loops,
            backoff=backoff,
        )

    report: dict = {}
    worker = None
    follower = None
    if wiring is not None:
        interval = settings.PROJECTION_POLL_INTERVAL_SECONDS if settings else 1.0
        follower = threading.Thread(
            target=_follow_projections,
            args=(wiring, stop, interval, log, report),
            name="projections",
            daemon=True,
        )
        follower.start()
    if execution is not None:

        def start_execution() -> bool:
            recovered = execution.start()
            log.info(
                "execution loop started (%d pending signals handled; reconciliation: %s)",
                recovered,
                "clean" if execution.reconciliation.clean else "differences, see above",
            )
            return True  # (None from run_resilient: stopped while waiting)

        def run_execution() -> None:
            try:
                if resilient("execution", start_execution, start_execution) is None:
                    return
                resilient("execution", lambda: execution.run(stop), start_execution)
                cancel = settings is not None and settings.CANCEL_OPEN_ORDERS_ON_STOP
                canceled = resilient("execution", lambda: execution.finish(cancel), lambda: None)
                if canceled:
                    log.info("asked the exchange to cancel %d open orders at stop", canceled)
            except BaseException as error:  # surfaced in the main thread below
                failure.append(error)

        worker = threading.Thread(target=run_execution, name="execution", daemon=True)
        worker.start()
    try:
        if strategy is not None:

            def start_strategy() -> bool:
                strategy.reset()
                recovered = strategy.start(stop)
                log.info("strategy loop started (%d pending entries recovered)", recovered)
                return True  # (None from run_resilient: stopped while waiting)

            if resilient("strategy", start_strategy, lambda: None) is not None:
                resilient("strategy", lambda: strategy.run(stop), start_strategy)
            report["strategy"] = strategy.report()
        else:
            while not stop():
                time.sleep(0.1)
    finally:
        finished.set()
        if worker is not None:
            worker.join()
        if follower is not None:
            follower.join()
    if failure:
        raise failure[0]
    if wiring is not None:
        for runner in wiring.runners:
            resilient("projections", runner.catch_up, lambda: None)  # the loops' last events
        report["projections"] = {r.projection.name: r.status().position for r in wiring.runners}
    if execution is not None:
        report["execution"] = {
            **{k: v for k, v in vars(execution.stats).items() if isinstance(v, int | float | dict)},
            "dead_letters": execution.dead_letters,
        }
    report["retries"] = loops.retries
    return report


def _close_all(closers: list) -> None:
    for close in reversed(closers):
        close()


cli.add_typer(projections_cli, name="projections")
cli.add_typer(export_cli, name="export")
cli.command("backtest")(backtest)
cli.command("sweep")(sweep)
cli.command("verify-log")(verify_log)

risk_cli = typer.Typer(help="The trading state: status, kill switch, resume.", no_args_is_help=True)
cli.add_typer(risk_cli, name="risk")
ReasonArgument = Annotated[str, typer.Option("--reason", help="Why (kept in the event log).")]


def _control(database_url: str | None, change: str | None, reason: str) -> None:
    from trading_engine.app.bootstrap.execution import risk_limits, trading_control

    settings = settings_for(database_url)
    service, close = trading_control(settings)
    try:
        if change == "halt":
            control = service.halt(reason)
        elif change == "reduce":
            control = service.reduce_only(reason)
        elif change == "resume":
            control = service.resume(reason)
        else:
            control = service.control()
            control.evaluate(risk_limits(settings), now=datetime.now(UTC))
        drawdown = control.drawdown_pct(risk_limits(settings), now=datetime.now(UTC))
        console.print(
            f"{settings.EXCHANGE_NAME}: [bold]{control.state.value}[/bold]"
            + (f" ({control.reason})" if control.reason else "")
            + f"; losses in a row {control.losses_in_a_row}/{settings.MAX_CONSECUTIVE_LOSSES}"
            + f"; drawdown {drawdown:.2f}%/{settings.MAX_DRAWDOWN_PCT}%"
            + f" over {settings.DRAWDOWN_WINDOW_DAYS} day(s)"
        )
    finally:
        close()


@risk_cli.command("status")
def risk_status(database_url: DatabaseOption = None) -> None:
    """Show the trading state (ACTIVE, REDUCING, HALTED) and what moves it."""
    _control(database_url, None, "")


@risk_cli.command("halt")
def risk_halt(reason: ReasonArgument = "kill switch", database_url: DatabaseOption = None) -> None:
    """The kill switch: no order goes out until `risk resume`."""
    _control(database_url, "halt", reason)


@risk_cli.command("reduce")
def risk_reduce(reason: ReasonArgument = "operator", database_url: DatabaseOption = None) -> None:
    """Only orders that shrink a position go out."""
    _control(database_url, "reduce", reason)


@risk_cli.command("resume")
def risk_resume(reason: ReasonArgument = "operator", database_url: DatabaseOption = None) -> None:
    """Lift a halt or a pause; drawdown counts afresh from now."""
    _control(database_url, "resume", reason)


audit_cli = typer.Typer(
    help="What the event log says about an order or a signal.", no_args_is_help=True
)
cli.add_typer(audit_cli, name="audit")


@audit_cli.command("order")
def audit_order_command(
    order_id: Annotated[str, typer.Argument(help="Engine order id (UUID) or exchange order id.")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
    database_url: DatabaseOption = None,
) -> None:
    """Every transition of an order, its causing signal and decision, and its fills."""
    from trading_engine.app.audit.trail import AmbiguousOrder, audit_order, order_document
    from trading_engine.app.audit.view import json_text, print_order_audit
    from trading_engine.app.bootstrap.databases import bootstrap
    from trading_engine.domain.errors import UnknownOrder

    engine = bootstrap(settings_for(database_url).DATABASE_URL)
    try:
        found = audit_order(engine.store, order_id)
    except (UnknownOrder, AmbiguousOrder) as error:
        raise fail(str(error), code=1) from None
    finally:
        engine.close()
    if as_json:
        print(json_text(order_document(found)))
    else:
        print_order_audit(console, found)


@audit_cli.command("signal")
def audit_signal_command(
    signal_id: Annotated[str, typer.Argument(help="The signal id.")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
    database_url: DatabaseOption = None,
) -> None:
    """What a signal led to: its decision and each order's status and trail."""
    from trading_engine.app.audit.signal import UnknownSignal, audit_signal, signal_document
    from trading_engine.app.audit.view import json_text, print_signal_audit
    from trading_engine.app.bootstrap.databases import bootstrap

    engine = bootstrap(settings_for(database_url).DATABASE_URL)
    try:
        found = audit_signal(engine.store, signal_id)
    except UnknownSignal as error:
        raise fail(str(error), code=1) from None
    finally:
        engine.close()
    if as_json:
        print(json_text(signal_document(found)))
    else:
        print_signal_audit(console, found)


@cli.command()
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


@cli.command()
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


@cli.command()
def migrate(database_url: DatabaseOption = None) -> None:
    """Apply the SQL migrations (package data: adapters/sql/schema) to the DATABASE_URL database."""
    from trading_engine.app.bootstrap.databases import migrate as bootstrap_migrate

    settings = settings_for(database_url)
    applied = bootstrap_migrate(settings.DATABASE_URL)
    console.print(f"applied: {', '.join(applied) if applied else 'nothing (up to date)'}")


@cli.command()
def config() -> None:
    """Validate the configuration and print it, secrets redacted."""
    from decimal import Decimal

    settings = settings_for(None)
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
