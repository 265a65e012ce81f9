"""tests/support/cli.py runs `trading-engine` in the test's process: it must give what the
installed script gives in a process of its own, and leave nothing behind for the next test."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer

from support.cli import run_cli
from trading_engine.app.cli.commands import cli


@pytest.mark.parametrize(
    "args",
    [
        ("config",),  # settings from the environment and the .env file of the directory
        ("demo", "--no-such-option"),  # a usage error: exit 2, the message on stderr
        ("export", "tax", "--year", "1999", "--method", "moving-average"),  # refused: exit 2
    ],
    ids=["config", "usage-error", "refused"],
)
def test_in_process_gives_what_the_script_gives(tmp_path: Path, args: tuple[str, ...]) -> None:
    (tmp_path / ".env").write_text("MAX_POSITION_SIZE=0.5\nSTRATEGY_NAME=rsi\n")
    env = {"DATABASE_URL": None, "SYMBOLS": "BTC_JPY,ETH_JPY", "COLUMNS": "120"}
    script = run_cli(*args, cwd=tmp_path, env=env, process=True)
    here = run_cli(*args, cwd=tmp_path, env=env)
    assert (here.returncode, here.stdout, here.stderr) == (
        script.returncode,
        script.stdout,
        script.stderr,
    ), f"{here}\n{script}"
    if args == ("config",):
        assert "MAX_POSITION_SIZE=0.5" in here.stdout
        assert "STRATEGY_NAME=rsi" in here.stdout
        assert "SYMBOLS=['BTC_JPY', 'ETH_JPY']" in here.stdout
    else:
        assert here.returncode == 2


@pytest.fixture
def probe() -> Iterator[None]:
    """A command of the test's own on the real app: it changes what a command could change
    (the environment, the root logger, the warning filters), logs, warns, then fails."""

    @cli.command("probe-in-process")
    def probe_command(fail: bool = False) -> None:
        logging.getLogger("trading_engine.probe").info("not shown: INFO, no handler")
        logging.getLogger("trading_engine.probe").warning("a warning logged")
        warnings.warn("a warning warned", UserWarning, stacklevel=1)
        os.environ["TE_PROBE_LEFT_BEHIND"] = "1"
        logging.getLogger().addHandler(logging.NullHandler())
        logging.getLogger().setLevel(logging.DEBUG)
        warnings.simplefilter("error", DeprecationWarning)
        if fail:
            raise RuntimeError("the probe failed")
        typer.echo("probed")

    try:
        yield
    finally:
        cli.registered_commands.remove(
            next(c for c in cli.registered_commands if c.name == "probe-in-process")
        )


@pytest.mark.usefixtures("probe")
def test_nothing_is_left_behind_and_failures_read_as_the_script_s(tmp_path: Path) -> None:
    root = logging.getLogger()
    handlers, level, filters = list(root.handlers), root.level, list(warnings.filters)
    here, environment = Path.cwd(), dict(os.environ)

    done = run_cli("probe-in-process", cwd=tmp_path, env={"TE_PROBE_SET": "x"})
    assert done.returncode == 0, done
    assert done.stdout == "probed\n"
    # with no handler configured, a fresh process prints warnings (and only those) to stderr
    assert "a warning logged" in done.stderr
    assert "not shown" not in done.stderr
    assert "UserWarning: a warning warned" in done.stderr

    failed = run_cli("probe-in-process", "--fail", cwd=tmp_path)
    assert failed.returncode == 1
    assert "Traceback (most recent call last)" in failed.stderr
    assert "RuntimeError: the probe failed" in failed.stderr

    assert (Path.cwd(), dict(os.environ)) == (here, environment)
    assert (root.handlers, root.level, warnings.filters) == (handlers, level, filters)

    with pytest.raises(ValueError, match="process of its own"):
        run_cli("run", cwd=tmp_path)
    with pytest.raises(ValueError, match="when a process starts"):
        run_cli("config", cwd=tmp_path, env={"TZ": "Asia/Tokyo"})
