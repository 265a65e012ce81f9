"""Start-up (issue 16): `--help` imports none of the heavy libraries, and each command
imports only what it uses.

Each case runs in a fresh interpreter: it calls the console script's main function
(`app.entry.main`, what `trading-engine` runs) with the case's arguments, then writes down
every module the process imported. What is imported is what makes start-up slow, and unlike
a time it does not vary with the machine or its load; bench/cli_startup.py has the times.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from trading_engine.app.cli.commands import cli

# Runs argv[2:] as `trading-engine ...` would, then writes {"code", "modules"} to argv[1].
HARNESS = """
import json, sys
out, args = sys.argv[1], sys.argv[2:]
sys.argv = ["trading-engine", *args]
from trading_engine.app.cli.entry import main
try:
    main()
    code = 0
except SystemExit as stop:
    code = stop.code
with open(out, "w", encoding="utf-8") as fh:
    json.dump({"code": code, "modules": sorted(sys.modules)}, fh)
"""

# What --help needs is typer (click, rich) and the command modules' option declarations.
# (pydantic is not listed: typer itself converts a command's parameters with it, so every
# command loads it, --help included; the configuration's pydantic_settings stays out.)
HEAVY = frozenset(
    {
        "bokeh",
        "ccxt",
        "eventsourcing",
        "httpx",
        "numpy",
        "orjson",
        "pandas",
        "prometheus_client",
        "psycopg",
        "psycopg_pool",
        "pyarrow",
        "pydantic_settings",
        "redis",
    }
)
HELP_ENGINE = frozenset({"adapters", "domain", "ports"})  # no engine layer below app for --help
EXCHANGES = frozenset({"ccxt", "httpx"})  # the live brokers' clients: only `run` talks to one


def run_case(tmp_path: Path, *args: str) -> tuple[object, set[str]]:
    """(exit code, modules imported) of `trading-engine ARGS` in a fresh process."""
    out = tmp_path / f"modules-{os.getpid()}-{len(list(tmp_path.glob('modules-*')))}.json"
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    completed = subprocess.run(
        [sys.executable, "-c", HARNESS, str(out), *args],
        cwd=tmp_path,  # no .env of the checkout
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.is_file(), f"{args}: the harness did not finish:\n{completed.stderr}"
    found = json.loads(out.read_text(encoding="utf-8"))
    return found["code"], set(found["modules"])


def package_of(module: str) -> str:
    """A library's top-level name, or the engine's layer (`trading_engine.adapters.x` ->
    `adapters`)."""
    top, _, rest = module.partition(".")
    return rest.partition(".")[0] if top == "trading_engine" and rest else top


def unwanted(modules: set[str], forbidden: frozenset[str] | set[str]) -> list[str]:
    """The forbidden packages among `modules`, each with the modules of it imported."""
    return sorted(
        f"{package} ({sum(1 for m in modules if package_of(m) == package)} modules)"
        for package in {package_of(name) for name in modules} & forbidden
    )


def assert_none(modules: set[str], forbidden: frozenset[str] | set[str]) -> None:
    found = unwanted(modules, forbidden)
    assert not found, f"imported: {', '.join(found)}"


def command_paths() -> list[tuple[str, ...]]:
    """Every command and group of the CLI, as the words that name it."""
    paths: list[tuple[str, ...]] = []

    def walk(command: object, path: tuple[str, ...]) -> None:
        paths.append(path)
        for name, sub in getattr(command, "commands", {}).items():  # a group's commands
            walk(sub, (*path, name))

    walk(typer.main.get_command(cli), ())
    return paths


@pytest.mark.parametrize("path", command_paths(), ids=lambda p: " ".join(p) or "top")
def test_help_imports_no_heavy_library(tmp_path: Path, path: tuple[str, ...]) -> None:
    code, modules = run_case(tmp_path, *path, "--help")
    assert code == 0
    assert_none(modules, HEAVY | HELP_ENGINE)
    wiring = [m for m in modules if m.startswith("trading_engine.app.bootstrap.")]
    assert sorted({*wiring, "trading_engine.app.runtime.config"} & modules) == []


# ----- commands that run ---------------------------------------------------------------------


# The tests on one backtest run share it (a module-scoped fixture): one worker makes it once.
ON_THE_RUN = pytest.mark.xdist_group("cli_imports_backtest_run")


@pytest.fixture(scope="module")
def backtest_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, set[str]]:
    """A small backtest (its run folder is the SQLite store of the cases below)."""
    where = tmp_path_factory.mktemp("cli-imports")
    args = ("backtest", "--synthetic", "300", "--timeframe", "1h", "--out", "run")
    code, modules = run_case(where, *args)
    assert code == 0
    return where / "run", modules


@ON_THE_RUN
def test_backtest_imports_no_exchange_client(backtest_run: tuple[Path, set[str]]) -> None:
    _, modules = backtest_run
    assert_none(modules, EXCHANGES | {"prometheus_client"})


@ON_THE_RUN
def test_backtest_imports_neither_redis_nor_psycopg(backtest_run: tuple[Path, set[str]]) -> None:
    _, modules = backtest_run
    assert_none(modules, {"redis", "psycopg"})


ON_THE_STORE = [
    (("verify-log",), 0),
    (("audit", "order", "no-such-order"), 1),  # 1: not in the log (looked up all the same)
    (("audit", "signal", "no-such-signal"), 1),
    (("export", "orders", "--out", "orders.csv"), 0),
    (("export", "tax", "--year", "2026", "--method", "moving-average", "--out", "t.json"), 0),
    (("projections", "status"), 0),
    (("risk", "status"), 0),
]


@ON_THE_RUN
@pytest.mark.parametrize(
    ("args", "exit_code"), [pytest.param(*case, id=" ".join(case[0])) for case in ON_THE_STORE]
)
def test_commands_on_a_sqlite_store_import_no_redis_exchange_or_chart(
    tmp_path: Path, backtest_run: tuple[Path, set[str]], args: tuple[str, ...], exit_code: int
) -> None:
    run, _ = backtest_run
    code, modules = run_case(tmp_path, *args, "--run", str(run))
    assert code == exit_code
    assert_none(modules, EXCHANGES | {"redis", "bokeh", "prometheus_client"})


def test_config_imports_no_adapter_or_store(tmp_path: Path) -> None:
    code, modules = run_case(tmp_path, "config")
    assert code == 0
    assert_none(modules, (HEAVY - {"pydantic_settings"}) | {"adapters"})
