"""`trading-engine run`: the service, with the Strategy and Execution modules (one process or
two), the projections followed, the health endpoint, stopping cleanly on SIGTERM/SIGINT.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trading_engine.app.cli.common import fail, settings_for

if TYPE_CHECKING:
    from trading_engine.app.runtime.resilience import LoopHealth


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
