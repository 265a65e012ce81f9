"""`trading-engine run` as a real child process for execution tests: execution and projections
on, strategy off, orders to a GMO stand-in, signals on Redis, events in PostgreSQL.

The process is always bounded: every wait has a deadline, and `kill()` is safe to call in a
`finally` whatever state the process is in. Its output goes to files (a pipe nobody reads
would fill up and block the engine's logging).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import redis

from support.cli import COMMAND
from trading_engine.adapters.signals.redis_bus import EXECUTION_GROUP


def wait_until(
    condition: Callable[[], bool],
    timeout: float,
    what: str,
    explain: Callable[[], str] = lambda: "",
) -> None:
    """Poll `condition` until true; past `timeout`, fail saying what (and `explain()`)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{explain()}")
        time.sleep(0.05)


class EngineProcess:
    def __init__(self, env: dict[str, str], workdir: Path, client: redis.Redis) -> None:
        self.env, self.workdir, self.client = env, workdir, client
        self.stream = f"{env['STREAM_PREFIX']}signal:{env['EXCHANGE_NAME']}"
        self.process: subprocess.Popen[bytes] | None = None
        self.runs = 0

    @property
    def stdout(self) -> Path:
        return self.workdir / f"engine-{self.runs}.out"

    @property
    def stderr(self) -> Path:
        return self.workdir / f"engine-{self.runs}.err"

    def start(self) -> None:
        self.runs += 1
        # cwd: a directory of the test's own, so no `.env` of a developer's is read.
        with self.stdout.open("wb") as out, self.stderr.open("wb") as err:
            self.process = subprocess.Popen(
                [COMMAND, "run"], env=self.env, cwd=self.workdir, stdout=out, stderr=err
            )
        wait_until(self._reading, 30, "the engine's consumer group on the signal stream")

    def _reading(self) -> bool:
        self.assert_alive()
        try:
            groups = self.client.xinfo_groups(self.stream)
        except redis.ResponseError:  # no stream yet
            return False
        return any(g["name"].decode() == EXECUTION_GROUP for g in groups)

    def assert_alive(self) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"engine exited with {self.process.returncode}: {self.log_tail()}")

    def handled_every_signal(self) -> bool:
        """Every published signal read and acknowledged (decided, orders sent and recorded)."""
        self.assert_alive()
        for group in self.client.xinfo_groups(self.stream):
            if group["name"].decode() == EXECUTION_GROUP:
                return group["lag"] == 0 and group["pending"] == 0
        return False

    def stop(self) -> dict:
        """SIGTERM; the engine must exit 0 and print its JSON report last."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=30)
        assert code == 0, f"engine exited with {code}: {self.log_tail()}"
        lines = self.stdout.read_bytes().strip().splitlines()
        return orjson.loads(lines[-1])

    def sigkill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def kill(self) -> None:
        """For `finally`: whatever happened, no engine outlives the test."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)

    def lines_about(self, *words: str) -> str:
        """Every line of every run's output that names one of `words` (a signal id, say)."""
        found = []
        for run in range(1, self.runs + 1):
            for name in (f"engine-{run}.out", f"engine-{run}.err"):
                path = self.workdir / name
                if path.exists():
                    text = path.read_text(errors="replace")
                    found += [line for line in text.splitlines() if any(w in line for w in words)]
        return "\n".join(found)

    def log_tail(self, chars: int = 3000) -> str:
        """The end of this run's output (logs go to stdout or stderr, by LOG_FORMAT)."""
        text = ""
        for path in (self.stdout, self.stderr):
            if path.exists():
                text += path.read_text(errors="replace")[-chars:]
        return text


def engine_env(
    *,
    base_url: str,
    api_key: str,
    api_secret: str,
    redis_url: str,
    database_url: str,
    prefix: str,
    **extra: str,
) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        ENABLE_STRATEGY="false",
        ENABLE_EXECUTION="true",
        ENABLE_PROJECTIONS="true",
        PAPER_TRADING="false",
        EXCHANGE_NAME="gmo",
        REST_BASE_URL=base_url,
        API_KEY=api_key,
        API_SECRET=api_secret,
        REDIS_URL=redis_url,
        DATABASE_URL=database_url,
        STREAM_PREFIX=prefix,
        CONSUMER_NAME="engine-1",
        LOG_LEVEL="INFO",
    )
    env.update(extra)
    return env
