"""Where each consumer group stands on its Redis stream (XINFO GROUPS): entries delivered and
not acknowledged, and entries not delivered yet. For readiness and metrics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import redis


@dataclass(frozen=True)
class GroupState:
    stream: str
    group: str
    pending: int
    lag: int | None  # None when Redis cannot tell (entries deleted from the stream)


def group_states(client: redis.Redis, groups: list[tuple[str, str]]) -> list[GroupState]:
    """The state of each (stream, group). A stream or group not created yet (nothing
    published, the loop not started) has nothing pending: it is left out, not a failure."""
    import redis

    states = []
    for stream, group in groups:
        try:
            infos = client.xinfo_groups(stream)
        except redis.ResponseError:  # no such key
            continue
        for info in infos:
            name = info["name"]
            if (name.decode() if isinstance(name, bytes) else name) == group:
                lag = info.get("lag")
                pending = int(info["pending"])
                states.append(GroupState(stream, group, pending, None if lag is None else int(lag)))
    return states
