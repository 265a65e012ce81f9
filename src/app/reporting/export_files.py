"""Writing an export: CSV, JSON Lines or Parquet, streamed, and never half a file.

Rows arrive one at a time and leave in batches, so memory stays flat. Everything is written
whole or not at all (`trading_engine.files`: an export interrupted midway leaves no file under
the final name), mode 0644. A
manifest (`FILE.manifest.json`, written the same way, last) says what the file holds: the
kind, the filter, the row count, and the head of the event log's hash chain it was read at.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import orjson

from trading_engine.files import atomic_path, write_bytes_atomically

FORMATS = ("csv", "jsonl", "parquet")
BATCH = 10_000


def write_export(
    rows: Iterable[dict[str, str]],
    columns: Sequence[str],
    path: Path,
    fmt: str,
    manifest: dict[str, Any],
) -> int:
    """Write every row to `path` in `fmt`; returns the row count."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}: choose one of {', '.join(FORMATS)}")
    with atomic_path(path) as temporary:
        count = {"csv": _csv, "jsonl": _jsonl, "parquet": _parquet}[fmt](rows, columns, temporary)
    _write_manifest(path, {**manifest, "rows": count, "format": fmt, "file": path.name})
    return count


def _csv(rows: Iterable[dict[str, str]], columns: Sequence[str], target: Path) -> int:
    count = 0
    with target.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns), extrasaction="raise")
        writer.writeheader()
        for row in rows:
            writer.writerow(row)
            count += 1
    return count


def _jsonl(rows: Iterable[dict[str, str]], columns: Sequence[str], target: Path) -> int:
    count = 0
    with target.open("wb") as fh:
        for row in rows:
            fh.write(orjson.dumps({c: row[c] for c in columns}) + b"\n")
            count += 1
    return count


def _parquet(rows: Iterable[dict[str, str]], columns: Sequence[str], target: Path) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([(c, pa.string()) for c in columns])  # exact text, as in the CSV
    count = 0
    batch: dict[str, list[str]] = {c: [] for c in columns}
    with pq.ParquetWriter(target, schema) as writer:
        for row in rows:
            for c in columns:
                batch[c].append(row[c])
            count += 1
            if count % BATCH == 0:
                writer.write_table(pa.table(batch, schema=schema))
                batch = {c: [] for c in columns}
        if batch[columns[0]] or count == 0:
            writer.write_table(pa.table(batch, schema=schema))
    return count


def _write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    write_bytes_atomically(
        path.with_name(path.name + ".manifest.json"),
        orjson.dumps(manifest, option=orjson.OPT_INDENT_2, default=str),
    )
