"""Logs recorded before the layers became one package name their events `domain.order:...`:
they still replay (orders, positions) and their topics resolve, in a fresh process where
nothing has registered the new names yet."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from trading_engine.adapters.eventstore.sqlite import sqlite_event_store
from trading_engine.domain.models import Execution
from trading_engine.domain.order import Order
from trading_engine.domain.position import Position

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)

READ_BACK = """
import sys
from trading_engine.adapters.eventstore.sqlite import sqlite_event_store
store = sqlite_event_store(sys.argv[1])
order = store.get_order(__import__("uuid").UUID(sys.argv[2]))
position = store.find_position("gmo", "BTC_JPY")
print(order.status.value, order.filled_size, position.quantity)
"""


def test_a_log_with_the_old_topics_replays(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    store = sqlite_event_store(path)
    order = Order.submit(
        signal_id="sig-old-topics",
        exchange="gmo",
        symbol="BTC_JPY",
        side="BUY",
        order_type="MARKET",
        size=Decimal("0.03"),
        at=T0,
    )
    order.accept("X1", at=T0)
    fill = Execution("E1", "BUY", Decimal("15000000"), Decimal("0.03"), Decimal(0), T0)
    order.fill(fill, at=T0)
    position = Position.open_book("gmo", "BTC_JPY", at=T0)
    position.apply_fill(order_id=order.id, exchange="gmo", symbol="BTC_JPY", execution=fill, at=T0)
    store.save(order, position)
    store.close()
    with sqlite3.connect(path) as conn:  # as an engine of before wrote them
        # (the log is append-only: its guard is lifted for this rewrite, which is the test's)
        for (trigger,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'stored_events'"
        ).fetchall():
            conn.execute(f'DROP TRIGGER "{trigger}"')
        conn.execute(
            "UPDATE stored_events SET topic = substr(topic, length('trading_engine.') + 1)"
        )
        topics = {row[0] for row in conn.execute("SELECT topic FROM stored_events")}
    assert "domain.order:Order.Submitted" in topics
    assert not [t for t in topics if t.startswith("trading_engine.")]

    read = subprocess.run(
        [sys.executable, "-c", READ_BACK, str(path), str(order.id)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert read.returncode == 0, read.stderr[-2000:]
    assert read.stdout.split() == ["FILLED", "0.03", "0.03"]
