"""Learning that another writer changed an aggregate, without reading it back.

The execution process keeps its trading control in memory, but an operator's `risk halt`
saves it from another process, and the very next signal must see that. A watch answers, per
signal and without a database round trip, whether the aggregate may have moved past the
version in hand; only then is it read again.
"""

from __future__ import annotations

from typing import Protocol


class ChangeWatch(Protocol):
    def changed_since(self, version: int) -> bool:
        """True when the store may hold a version of the watched aggregate above `version`
        (another writer saved it), or when the watch cannot tell (it has just connected, or
        lost its connection): the caller then reads the aggregate again."""
        ...

    def close(self) -> None: ...
