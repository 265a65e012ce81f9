"""Topics of events recorded before the layers became one package, `trading_engine`.

A log written then names its events `domain.order:Order.Submitted`; it must still replay,
project, audit and export (and its hash chain, which covers the topic text, still verify:
stored rows are never rewritten). Each old module name resolves to the module it became;
events recorded now carry the new names.
"""

from __future__ import annotations

from eventsourcing.utils import register_topic

from trading_engine.domain import order, position, reconciliation, risk, signal_decision

_MOVED = {
    "domain.order": order,
    "domain.position": position,
    "domain.reconciliation": reconciliation,
    "domain.risk": risk,
    "domain.signal_decision": signal_decision,
}


def register_old_topics() -> None:
    """Idempotent: registering a name for the same module again changes nothing."""
    for old, module in _MOVED.items():
        register_topic(old, module)  # type: ignore[arg-type]


register_old_topics()
