"""The built wheel is the product: it holds only `trading_engine`, and installed into a fresh
virtualenv it runs a backtest and `migrate` from a directory with no source tree in reach
(migrations and the bundled sample are package data, found with importlib.resources).

The fresh virtualenv borrows the test virtualenv's third-party packages through a path file
(no download of pandas and the rest): a path line in a `.pth` adds the folder to sys.path
without running the editable install's own hook there, so `trading_engine` can only come
from the wheel."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import sysconfig
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest

# Its tests share a module-scoped fixture: one worker makes it once (ops/test.sh, xdist).
pytestmark = pytest.mark.xdist_group("wheel_install")

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Built from a copy of what the sdist holds: a `build/` folder left in the checkout by an
    # earlier build would otherwise lend the wheel modules the tree no longer has.
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), str(source)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (found,) = out.glob("trading_engine-*.whl")
    return found


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with the wheel installed (no deps: they come from the path file)."""
    env_dir = tmp_path_factory.mktemp("fresh") / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (Path(site) / "borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return env_dir


def test_the_wheel_holds_only_trading_engine(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert tops == {"trading_engine"}
    assert "trading_engine/samples/gmo_BTC_JPY_sample.csv.gz" in names
    for dialect in ("postgres", "sqlite"):
        assert any(
            n.startswith(f"trading_engine/adapters/sql/schema/{dialect}/0001_") for n in names
        )
    assert not [n for n in names if "standin" in n], "the stand-ins are not product"


def test_every_package_in_the_tree_is_in_the_wheel(wheel: Path) -> None:
    # A subpackage left out of pyproject's explicit list still imports from an editable
    # install, so only a wheel shows it missing.
    tree = {
        ".".join(("trading_engine", *p.parent.relative_to(ROOT / "src").parts))
        for p in (ROOT / "src").rglob("*.py")
        if "__pycache__" not in p.parts
    }
    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    assert tree <= listed, f"missing from [tool.setuptools] packages: {sorted(tree - listed)}"
    in_wheel = {
        "/".join(n.split("/")[:-1]).replace("/", ".")
        for n in zipfile.ZipFile(wheel).namelist()
        if n.endswith(".py")
    }
    assert tree <= in_wheel


def test_the_installed_wheel_backtests_and_migrates_from_elsewhere(
    installed: Path, tmp_path: Path
) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "TRADING_ENGINE_MIGRATIONS", "PYTHONPATH", "VIRTUAL_ENV")
    }

    def installed_run(program: str, *args: str) -> str:
        """`program` of the fresh virtualenv, from `tmp_path`; its stdout. Must exit 0."""
        done = subprocess.run(
            [str(installed / "bin" / program), *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    where = installed_run("python", "-c", "import trading_engine; print(trading_engine.__file__)")
    assert where.startswith(str(installed)), f"trading_engine came from {where}"

    run = tmp_path / "run"
    installed_run(
        "trading-engine", "backtest", "--synthetic", "2000", "--out", str(run), "--no-report"
    )
    assert "trades" in json.loads((run / "metrics.json").read_text())

    # `simulate` with no file plays the bundled GMO trades sample (package data).
    simulated = tmp_path / "sim.sqlite3"
    out = installed_run("trading-engine", "simulate", "--database-url", f"sqlite:///{simulated}")
    assert "gmo_BTC_JPY_sample.csv.gz" in out
    assert str(installed) in out.replace("\n", "")

    database = tmp_path / "fresh.sqlite3"
    installed_run("trading-engine", "migrate", "--database-url", f"sqlite:///{database}")
    with sqlite3.connect(database) as conn:
        versions = [row[0] for row in conn.execute("SELECT version FROM schema_migrations")]
    bundled = sorted((ROOT / "src" / "adapters" / "sql" / "schema" / "sqlite").glob("*.sql"))
    assert sorted(versions) == [p.stem for p in bundled]
