"""Benchmark (not a test): how long `trading-engine` takes to start, whole process, next to
the floor of any typer CLI on the same interpreter in the same run.

Each line is the median of --runs fresh processes (started with subprocess, timed from
spawn to exit; output discarded). The lines take turns run by run, so a machine that gets
busier part way slows them alike. The floor is `python -c "import typer"`; `python -c pass`
is the interpreter alone. The target (issue 16) is `--help` under 0.5 s whole process;
tests/unit/test_cli_imports.py checks the cause (which modules are imported), not the time.

  .venv/bin/python bench/cli_startup.py                # 11 runs of each
  .venv/bin/python bench/cli_startup.py --runs 21 --every-command
  .venv/bin/python bench/cli_startup.py --importtime   # + the slowest imports of --help
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

TARGET_SECONDS = 0.5
FLOOR = "python -c 'import typer' (floor)"
COMMAND = shutil.which("trading-engine") or str(Path(sys.executable).with_name("trading-engine"))


# A two-command typer app: its `--help` and a command's. typer parses a command's options
# with pydantic (TypeAdapter), so a command's --help costs more than the top one in any
# typer CLI; these two lines show that part of the cost apart from ours.
TINY_APP = """
import typer
app = typer.Typer(add_completion=False)
@app.command()
def one(out: str = "x") -> None:
    \"\"\"One.\"\"\"
@app.command()
def two(count: int = 1) -> None:
    \"\"\"Two.\"\"\"
app()
"""


def lines(every_command: bool) -> list[tuple[str, list[str]]]:
    chosen = [
        ("python -c pass", [sys.executable, "-c", "pass"]),
        (FLOOR, [sys.executable, "-c", "import typer"]),
        ("two-command typer app --help", [sys.executable, "-c", TINY_APP, "--help"]),
        ("two-command typer app one --help", [sys.executable, "-c", TINY_APP, "one", "--help"]),
        ("trading-engine --help", [COMMAND, "--help"]),
        ("trading-engine backtest --help", [COMMAND, "backtest", "--help"]),
    ]
    if every_command:
        for path in command_paths():
            if path and path != ("backtest",):
                chosen.append(
                    (f"trading-engine {' '.join(path)} --help", [COMMAND, *path, "--help"])
                )
    return chosen


def command_paths() -> list[tuple[str, ...]]:
    import typer

    from trading_engine.app.cli.commands import cli

    paths: list[tuple[str, ...]] = []

    def walk(command: object, path: tuple[str, ...]) -> None:
        paths.append(path)
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, (*path, name))

    walk(typer.main.get_command(cli), ())
    return paths


def once(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


# as the console script, under -X importtime
SCRIPT = "from trading_engine.app.cli.entry import main; main()"


def slowest_imports(argv: list[str], count: int) -> list[tuple[float, str]]:
    """The imports of `argv` with the largest cumulative time (-X importtime): those made by
    the script and by the modules it imports directly."""
    found = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", SCRIPT, *argv[1:]],
        capture_output=True,
        text=True,
        check=False,
    ).stderr
    rows = []
    for line in found.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = line.removeprefix("import time:").split("|")
        if len(name) - len(name.lstrip()) <= 3:  # one space at the top, two more a level
            rows.append((int(cumulative) / 1e6, name.strip()))
    return sorted(rows, reverse=True)[:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=11, help="processes per line (median)")
    parser.add_argument("--every-command", action="store_true", help="every command's --help")
    parser.add_argument("--importtime", action="store_true", help="slowest imports of --help")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    chosen = lines(args.every_command)
    for _, argv in chosen:  # warm the file cache; not counted
        once(argv)
    times: dict[str, list[float]] = {name: [] for name, _ in chosen}
    for _ in range(args.runs):
        for name, argv in chosen:
            times[name].append(once(argv))

    floor = statistics.median(times[FLOOR])
    width = max(len(name) for name in times)
    print(f"{'whole process':<{width}}  median     min   × floor  under {TARGET_SECONDS} s")
    figures = {}
    for name, runs in times.items():
        median = statistics.median(runs)
        verdict = ("yes" if median < TARGET_SECONDS else "NO") if "--help" in name else ""
        print(f"{name:<{width}}  {median:6.3f}  {min(runs):6.3f}  {median / floor:8.2f}  {verdict}")
        figures[name] = {"median_s": median, "min_s": min(runs), "ratio_to_floor": median / floor}
    print(f"({args.runs} runs each, interleaved; {COMMAND})")
    if args.importtime:
        print("\nslowest imports of `trading-engine --help` (cumulative, one run):")
        for seconds, module in slowest_imports([COMMAND, "--help"], 12):
            print(f"  {seconds:6.3f} s  {module}")
    if args.json:
        args.json.write_text(json.dumps({"runs": args.runs, "figures": figures}, indent=2) + "\n")


if __name__ == "__main__":
    main()
