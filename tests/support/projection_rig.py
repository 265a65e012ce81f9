"""Projection test rigs on both backends, and a deterministic trading workload for them."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from trading_engine.adapters.clocks.manual import ManualClock
from trading_engine.app.bootstrap.databases import ProjectionWiring, projections
from trading_engine.app.execution.orders import OrderService
from trading_engine.domain.models import Execution, Signal
from trading_engine.domain.values import CancelType, Side

T0 = datetime(2026, 3, 1, tzinfo=UTC)


@dataclass
class Rig:
    kind: str
    database_url: str
    wiring: ProjectionWiring

    @property
    def log(self):
        return self.wiring.log

    @property
    def store(self):
        return self.wiring.store

    @contextmanager
    def sql(self) -> Iterator[Any]:
        """A raw connection, as an operator (or a migration) has: autocommit."""
        if self.kind == "sqlite":
            conn = sqlite3.connect(
                self.database_url.removeprefix("sqlite:///"), isolation_level=None
            )
            try:
                yield conn
            finally:
                conn.close()
        else:
            url, schema = self.database_url.split("?schema=")
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
                yield conn

    def close(self) -> None:
        self.wiring.close()


def sqlite_rig(tmp_path: Path) -> Rig:
    url = f"sqlite:///{tmp_path / 'engine.sqlite3'}"
    return Rig("sqlite", url, projections(url))


def postgres_rig(pg_url: str, pg_schema: str) -> Rig:
    url = f"{pg_url}?schema={pg_schema}"
    return Rig("postgres", url, projections(url))


def a_signal(signal_id: str, symbol: str) -> Signal:
    return Signal(
        signal_id=signal_id,
        exchange="gmo",
        symbol=symbol,
        strategy="rsi",
        action="enter_long",
        confidence=Decimal(1),
        price_ref=Decimal(5_000_000),
        timestamp=T0,
        indicators={"rsi": 25.0},
        meta={},
    )


def trade(log, orders: int, seed: int = 7, run: str = "w") -> None:
    """`orders` orders on two symbols through the real use cases: accepted and filled in one
    to three parts, partly filled and canceled, rejected, or left open."""
    rng = random.Random(seed)
    clock = ManualClock(T0)
    service = OrderService(log, clock)
    for n in range(orders):
        clock.advance(timedelta(seconds=1))
        symbol = rng.choice(["BTC_JPY", "ETH_JPY"])
        side = rng.choice([Side.BUY, Side.SELL])
        size = Decimal(rng.choice(["0.01", "0.02", "0.03"]))
        price = Decimal(5_000_000 + rng.randrange(-50, 50) * 1000)
        order = service.submit_for_signal(
            a_signal(f"{run}-{n}", symbol), side=side, order_type="LIMIT", size=size, price=price
        )
        fate = rng.random()
        if fate < 0.1:
            service.reject(order.id, "ERR-201", "Trading margin is insufficient")
            continue
        service.accept(order.id, f"{run}-x{n}")
        if fate < 0.2:
            continue  # left open
        if fate >= 0.8:  # partly filled (or not at all), then canceled
            if size > Decimal("0.01"):
                _fill(service, order.id, f"{run}-e{n}-0", side, price, Decimal("0.01"), clock)
            service.cancel(order.id, CancelType.USER, "strategy changed its mind")
            continue
        parts = rng.choice([1, 2, 3])
        step = (size / parts).quantize(Decimal("0.001"))
        for part in range(parts):
            this = size - step * (parts - 1) if part == parts - 1 else step
            _fill(service, order.id, f"{run}-e{n}-{part}", side, price, this, clock)


def _fill(service, order_id, execution_id, side, price, size, clock) -> None:
    service.record_fill(
        order_id,
        Execution(
            execution_id=execution_id,
            side=side,
            price=price - 500,
            size=size,
            fee=Decimal("0.5"),
            executed_at=clock.now(),
        ),
    )
