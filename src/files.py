"""Files written whole or not at all: every file the engine hands to a person (exports, tax
reports, a backtest's results and report, a sweep's table, trade files).

Each is written to a temporary sibling, flushed to disk and renamed over the target, so an
error, Ctrl-C or a kill midway leaves the previous file (or none), never half of one. The
result is mode 0644 whatever the writer: `mkstemp` makes its files 0600, and exports once came
out unreadable to the group that audits them while the report next to them was readable.

Below every layer but the domain (which does no I/O): the app's exports and the adapters'
trade files use the same one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

FILE_MODE = 0o644


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside `path` to write in any way (a Parquet writer, gzip); renamed
    onto `path` with mode 0644 when the block ends without an error, removed otherwise. The
    writer flushes its own file; the rename comes after an fsync of it here."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    os.close(fd)
    temporary = Path(name)
    try:
        yield temporary
        with temporary.open("rb+") as written:
            os.fsync(written.fileno())
        os.chmod(temporary, FILE_MODE)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_atomically(path: Path, write: Callable[[IO[Any]], None], *, binary: bool = False) -> None:
    """Call `write` with an open file (text: UTF-8, no newline translation; or binary)."""
    with atomic_path(path) as temporary:
        if binary:
            with temporary.open("wb") as handle:
                write(handle)
        else:
            with temporary.open("w", encoding="utf-8", newline="") as handle:
                write(handle)


def write_bytes_atomically(path: Path, data: bytes) -> None:
    write_atomically(path, lambda handle: handle.write(data), binary=True)
