"""Sweep points on a Dask cluster (`trading-engine sweep --scheduler tcp://HOST:PORT`).

The caller connects to a running scheduler (`dask scheduler`, with `dask worker` processes on
any machines that have `trading-engine[research]` installed). What crosses the network:

* the bar files, read here once and sent to every worker as bytes (`client.scatter`,
  broadcast): a worker writes them to its own temporary folder, once per process, and reads
  them as a local run would: no shared file system;
* each point's `SweepJob` (plain data) and, back, its metrics; with `--keep-runs` also the
  point's event log (its SQLite file's bytes), which the caller writes to OUT/runs/N.

A worker that dies takes its running points with it: the scheduler runs them again on
another worker (up to `distributed.scheduler.allowed-failures`, 3 by default; a point that
kills every worker it meets is reported as failed). Each point's result is taken once, from
its future, so a point run twice is never counted twice.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from trading_engine.app.bootstrap.sweep import Progress, SweepJob, run_point

LOG_KEY = "_event_log"  # a result's event log bytes, on their way back to the caller


class ClusterUnavailable(RuntimeError):
    """The scheduler cannot be reached, has no worker, or its workers cannot run a point."""


@dataclass(frozen=True)
class BarFiles:
    """Bar files as bytes, keyed by their path on the caller's machine."""

    files: tuple[tuple[str, bytes], ...]

    @classmethod
    def read(cls, paths: Sequence[str]) -> BarFiles:
        return cls(tuple((path, Path(path).read_bytes()) for path in paths))

    @property
    def digest(self) -> str:
        sha = hashlib.sha256()
        for path, content in self.files:
            sha.update(path.encode())
            sha.update(hashlib.sha256(content).digest())
        return sha.hexdigest()[:16]


_materialised: dict[str, dict[str, str]] = {}  # per worker process: digest -> caller path -> here


def _local_paths(bars: BarFiles) -> dict[str, str]:
    """Where this worker keeps `bars`: written once per process, under the same file names
    (a file's name gives its symbol)."""
    known = _materialised.get(bars.digest)
    if known is not None and all(Path(p).exists() for p in known.values()):
        return known
    folder = Path(tempfile.mkdtemp(prefix=f"trading-engine-bars-{bars.digest}-"))
    paths: dict[str, str] = {}
    for number, (path, content) in enumerate(bars.files):
        target = folder / str(number) / Path(path).name
        target.parent.mkdir(parents=True)
        target.write_bytes(content)
        paths[path] = str(target)
    _materialised[bars.digest] = paths
    return paths


def run_remote(job: SweepJob, bars: BarFiles | None) -> dict[str, Any]:
    """One point on a worker: its bars from `bars`, its event log (if kept) in a temporary
    SQLite file whose bytes come back in the result."""
    if bars is not None and job.data:
        where = _local_paths(bars)
        job = replace(job, data=tuple(where[path] for path in job.data))
    if job.database_url is None:
        return run_point(job)
    folder = Path(tempfile.mkdtemp(prefix="trading-engine-run-"))
    try:
        log = folder / "events.sqlite3"
        result = run_point(replace(job, database_url=f"sqlite:///{log}"))
        if log.exists():
            result[LOG_KEY] = _consistent_copy(log).read_bytes()
        return result
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _consistent_copy(log: Path) -> Path:
    """The database as one file, through SQLite's backup: what is still in its write-ahead
    log (a run that failed half-way may not have closed it) is in the copy, not left out."""
    import sqlite3

    copy = log.with_name("shipped.sqlite3")
    with sqlite3.connect(log) as source, sqlite3.connect(copy) as target:
        source.backup(target)
    source.close()
    target.close()
    return copy


def code_fingerprint() -> str:
    """A digest of the engine's source files: a worker running other code than the caller
    (an older install, a process started before an upgrade) would give other figures."""
    import trading_engine

    root = Path(trading_engine.__file__).parent
    sha = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        sha.update(str(path.relative_to(root)).encode())
        sha.update(path.read_bytes())
    return sha.hexdigest()[:16]


def _can_run_points(expected: str) -> str:
    """On a worker: '' if it can run a point as the caller would, else why not."""
    try:
        from trading_engine.app.bootstrap.cluster import code_fingerprint
    except Exception as error:  # pragma: no cover - a worker without the engine
        return f"{type(error).__name__}: {error}"
    if code_fingerprint() != expected:
        return "it runs other trading-engine code than this machine (restart it after an upgrade)"
    return ""


class DaskCluster:
    """A connection to a Dask scheduler that runs sweep points (and search workers)."""

    def __init__(self, address: str, connect_timeout: float = 10.0) -> None:
        self.address, self.connect_timeout = address, connect_timeout
        self._client: Any = None

    def __enter__(self) -> DaskCluster:
        self.connect()
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def connect(self) -> None:
        try:
            from distributed import Client
        except ImportError:
            raise ClusterUnavailable(
                "--scheduler needs Dask distributed: pip install 'trading-engine[research]'"
            ) from None
        try:
            self._client = Client(self.address, timeout=self.connect_timeout, set_as_default=False)
        except (OSError, TimeoutError) as error:
            raise ClusterUnavailable(
                f"scheduler {self.address} not reachable within {self.connect_timeout:g} s "
                f"({type(error).__name__}: {error}); is `dask scheduler` running there?"
            ) from None
        try:
            self._client.wait_for_workers(1, timeout=self.connect_timeout)
        except (OSError, TimeoutError):
            self.close()
            raise ClusterUnavailable(
                f"scheduler {self.address} has no worker after {self.connect_timeout:g} s; "
                f"start some: dask worker {self.address}"
            ) from None
        answers = self._client.run(_can_run_points, code_fingerprint(), on_error="return")
        unable = {
            worker: why if isinstance(why, str) else f"it runs other code ({why!r})"
            for worker, why in answers.items()
            if why
        }
        if unable:
            self.close()
            listed = "; ".join(f"{worker}: {why}" for worker, why in sorted(unable.items()))
            raise ClusterUnavailable(
                "workers cannot run trading-engine (install trading-engine[research] where "
                f"they run): {listed}"
            )

    @property
    def workers(self) -> int:
        """Worker threads: how many points run at once."""
        return sum(self._client.nthreads().values())

    def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            client.close()

    def run(self, jobs: Sequence[SweepJob], progress: Progress | None = None) -> list[dict]:
        """Every job's result, in the jobs' order; a point whose workers kept dying is
        reported as failed."""
        from distributed import as_completed

        total = len(jobs)
        if progress is not None:
            progress(0, total)
        paths = sorted({path for job in jobs for path in job.data})
        # hash=False: a key of its own; a second run on this connection must not share (and
        # then lose, when the first one's futures are released) the first one's
        bars = (
            self._client.scatter(BarFiles.read(paths), broadcast=True, hash=False)
            if paths
            else None
        )
        run = uuid.uuid4().hex[:8]
        futures = {
            self._client.submit(
                run_remote, job, bars, key=f"sweep-{run}-point-{job.number}", pure=False
            ): index
            for index, job in enumerate(jobs)
        }
        results: dict[int, dict[str, Any]] = {}
        try:
            for future in as_completed(futures, loop=self._client.loop):
                index = futures[future]
                results[index] = self._outcome(future, jobs[index])
                if progress is not None:
                    progress(len(results), total)
        finally:
            self._client.cancel(list(futures))
        return [_keep_log(jobs[index], results[index]) for index in range(total)]

    def start_tasks(self, task: Callable[..., Any], count: int, *args: Any) -> Tasks:
        """`task(*args, n)` for n in 0..count-1 across the cluster (search workers); bar files
        among `args` are sent once to every worker."""
        run = uuid.uuid4().hex[:8]
        shipped = [
            self._client.scatter(arg, broadcast=True, hash=False)
            if isinstance(arg, BarFiles)
            else arg
            for arg in args
        ]
        futures = [
            self._client.submit(task, *shipped, n, key=f"task-{run}-{n}", pure=False)
            for n in range(count)
        ]
        return Tasks(futures)

    @staticmethod
    def _outcome(future: Any, job: SweepJob) -> dict[str, Any]:
        try:
            return future.result()
        except Exception as error:
            name = type(error).__name__
            if name == "KilledWorker":
                why = "every worker that ran it died (distributed.scheduler.allowed-failures)"
            else:
                why = f"{name}: {error}"
            return {"parameters": dict(job.point), "error": f"worker failed: {why}"}


def _keep_log(job: SweepJob, result: dict[str, Any]) -> dict[str, Any]:
    """A result's event log written where the caller keeps the point's run."""
    content = result.pop(LOG_KEY, None)
    if content is not None and job.database_url is not None:
        target = Path(job.run_database_url().removeprefix("sqlite:///"))
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + f".{os.getpid()}.partial")
        partial.write_bytes(content)
        partial.replace(target)
    return result


class Tasks:
    """Tasks started somewhere (Dask futures, or a local pool's: both have `done` and
    `result`): done yet, and each outcome (or what stopped it)."""

    def __init__(self, futures: list[Any]) -> None:
        self.futures = futures

    def done(self) -> bool:
        return all(future.done() for future in self.futures)

    def outcomes(self) -> list[Any]:
        outcomes: list[Any] = []
        for future in self.futures:
            try:
                outcomes.append(future.result())
            except Exception as error:
                outcomes.append(error)
        return outcomes
