"""The `trading-engine` command for tests, the one way every test runs it.

`run_cli(*args, cwd=..., env=...)` runs it in this process by default: typer's CliRunner on the
typer app the console script calls (`trading_engine.app.cli.commands:cli`), which saves the
couple of seconds of imports a fresh process pays for each call. The call is isolated as a
fresh process would be, and its result reads like one (`returncode`, `stdout`, `stderr`):

- the environment is this process's plus `env` (`NAME: None` unsets NAME), and is put back
  afterwards, whatever the command did to it;
- the working directory is `cwd` (so `.env` files and relative paths such as `data/` resolve
  there, as in a process started there), and is put back afterwards;
- logging starts as in a fresh interpreter (no handlers on the root logger, level WARNING: a
  warning logged without a handler is printed to stderr), and every logger existing before
  the call gets its handlers and level back afterwards;
- warnings are filtered as a fresh interpreter does and printed to stderr, not collected by
  pytest; the filters are put back afterwards;
- an exception that escapes the command is printed to stderr as a traceback and the exit
  code is 1, as the real script does: `"Traceback" not in result.stderr` can still fail.

Output is the same as the script's into a pipe only while pytest captures output (the default):
the CLI's consoles choose their width and colours when they are imported, by whether stdout is
a terminal (under `pytest -s` in a terminal they may wrap at the terminal's width).

`run_cli(..., process=True)` runs the installed console script (`COMMAND`) in a process of its
own. Only for what a real process alone shows: signals (SIGTERM, SIGKILL), the exit status the
shell sees from the script itself, a crash, settings that act when a process starts (LD_PRELOAD,
FAKETIME, TZ, PYTHON*), and `run` (the service, which installs signal handlers). `run` is
refused in-process; tests that start it in the background use `COMMAND` with Popen.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import traceback
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

COMMAND = shutil.which("trading-engine") or str(Path(sys.executable).with_name("trading-engine"))

# Commands and settings that only a process of their own can honour.
PROCESS_ONLY_COMMANDS = frozenset({"run"})
PROCESS_ONLY_VARIABLES = ("LD_PRELOAD", "FAKETIME", "TZ", "PYTHON")

Env = Mapping[str, str | None]


@dataclass(frozen=True, repr=False)
class CliResult:
    """What the command did, as `subprocess.CompletedProcess` would say it."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    in_process: bool

    @property
    def output(self) -> str:
        """Both streams, stdout first (for a message looked for wherever it is printed)."""
        return self.stdout + self.stderr

    def __repr__(self) -> str:  # what an assertion message shows
        where = "in-process" if self.in_process else "process"
        return (
            f"trading-engine {' '.join(self.args)} ({where}) exited {self.returncode}\n"
            f"--- stdout ---\n{self.stdout[-3000:]}\n--- stderr ---\n{self.stderr[-3000:]}"
        )


def child_env(env: Env | None = None) -> dict[str, str]:
    """This process's environment with `env` applied (`None` unsets), for a child process."""
    merged = dict(os.environ)
    for name, value in (env or {}).items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = value
    return merged


def run_cli(
    *args: str | Path,
    cwd: Path | str,
    env: Env | None = None,
    process: bool = False,
    timeout: float = 300,
) -> CliResult:
    """`trading-engine ARGS...` to its end (see the module docstring).

    `cwd` is required: a test's own directory, so no developer's `.env` is read and nothing is
    written into the checkout. `timeout` bounds a process; an in-process call has none.
    """
    argv = tuple(str(arg) for arg in args)
    if process:
        done = subprocess.run(
            [COMMAND, *argv],
            env=child_env(env),
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return CliResult(argv, done.returncode, done.stdout, done.stderr, in_process=False)
    if argv[:1] and argv[0] in PROCESS_ONLY_COMMANDS:
        raise ValueError(f"`trading-engine {argv[0]}` needs a process of its own: process=True")
    for name, value in (env or {}).items():
        if name.startswith(PROCESS_ONLY_VARIABLES) and value != os.environ.get(name):
            raise ValueError(f"{name} acts only when a process starts: run_cli(..., process=True)")
    return _in_process(argv, Path(cwd), env or {})


def _in_process(argv: tuple[str, ...], cwd: Path, env: Env) -> CliResult:
    from typer.testing import CliRunner

    from trading_engine.app.cli.commands import cli

    environment = dict(os.environ)
    here = os.getcwd()
    try:
        os.chdir(cwd)
        with _fresh_logging(), _fresh_warnings():
            result = CliRunner().invoke(cli, list(argv), env=dict(env), prog_name="trading-engine")
    finally:
        os.chdir(here)
        if dict(os.environ) != environment:
            for name in set(os.environ) - set(environment):
                del os.environ[name]
            os.environ.update(environment)
    stderr, code = result.stderr, result.exit_code
    error = result.exception
    if error is not None and not isinstance(error, SystemExit):
        # What the script prints when a command raises (and its exit code).
        stderr += "".join(traceback.format_exception(error))
        code = 1
    return CliResult(argv, code, result.stdout, stderr, in_process=True)


@contextmanager
def _fresh_logging() -> Iterator[None]:
    """Logging as a new interpreter has it, for the call; every logger put back afterwards."""
    manager = logging.Logger.manager
    loggers = [logging.getLogger(), *(v for v in manager.loggerDict.values() if _is_logger(v))]
    saved = [(lg, lg.level, list(lg.handlers), lg.propagate, lg.disabled) for lg in loggers]
    disabled = manager.disable
    root = logging.getLogger()
    root.handlers = []
    root.setLevel(logging.WARNING)
    logging.disable(logging.NOTSET)
    try:
        yield
    finally:
        for logger, level, handlers, propagate, off in saved:
            logger.setLevel(level)
            logger.handlers = handlers
            logger.propagate, logger.disabled = propagate, off
        logging.disable(disabled)


def _is_logger(value: object) -> bool:
    return isinstance(value, logging.Logger)


@contextmanager
def _fresh_warnings() -> Iterator[None]:
    """A new interpreter's warning filters, warnings printed to stderr; all put back after."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))

    with warnings.catch_warnings():
        warnings.resetwarnings()
        warnings.filterwarnings("default", category=DeprecationWarning, module="__main__")
        for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning):
            warnings.simplefilter("ignore", category, append=True)
        warnings.simplefilter("ignore", ResourceWarning, append=True)
        warnings.showwarning = show
        yield
