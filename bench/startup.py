"""Start-up cost of the interactive commands against a bare `python -c pass`.

Run: .venv/bin/python bench/startup.py [--runs N] [--against OTHER/src] [--instructions]

Targets (issue 20): `nixmox config check` on examples/homelab.toml at most 8x a
bare interpreter start, `nixmox --help` at most 5x (and `--version` 3x, issue 2).

Every case runs N times, the cases taking turns so that other work on the
machine weighs on all of them alike; the median wall time and the median CPU
time (user + system of the child) are printed with their ratio to `python -c
pass` from the same run. The floor rows are what `config check` cannot go
below while the inventory is a pydantic model: importing pydantic, and
importing it and building nixmox's models. `--against` times the nixmox rows
of another checkout's src/ too (e.g. main's, before a change). `--instructions`
adds instructions counted by valgrind (callgrind, one run each): they do not
depend on the machine's load.
"""

from __future__ import annotations

import argparse
import compileall
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = str(ROOT / "examples" / "homelab.toml")
BASE = "python -c pass"
TARGETS = {"nixmox --version": 3.0, "nixmox --help": 5.0, "nixmox config check": 8.0}


def cases(src: Path, label: str = "") -> dict[str, tuple[list[str], dict[str, str]]]:
    """name -> (argv, environment); nixmox runs from ``src``."""
    env = {**os.environ, "PYTHONPATH": str(src), "COLUMNS": "80"}
    py = sys.executable
    nixmox = [
        py,
        "-c",
        "import sys; from nixmox.cli.main import main; sys.argv[0] = 'nixmox'; main()",
    ]
    return {
        f"nixmox --version{label}": ([*nixmox, "--version"], env),
        f"nixmox --help{label}": ([*nixmox, "--help"], env),
        f"nixmox config check{label}": ([*nixmox, "config", "check", "--config", EXAMPLE], env),
    }


def floor(src: Path) -> dict[str, tuple[list[str], dict[str, str]]]:
    """What config check costs at least: pydantic, and pydantic with the models built."""
    env = {**os.environ, "PYTHONPATH": str(src), "PYDANTIC_DISABLE_PLUGINS": "__all__"}
    py = sys.executable
    return {
        "floor: import pydantic": (
            [py, "-c", "from pydantic import AfterValidator, BaseModel, ConfigDict, Field"],
            env,
        ),
        "floor: + build the models": ([py, "-c", "import nixmox.inventory.model"], env),
    }


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds of one run."""
    started = time.perf_counter()
    child = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(argv)} failed")
    return wall, usage.ru_utime + usage.ru_stime


def instructions(argv: list[str], env: dict[str, str]) -> int | None:
    """Instructions one run executes, counted by callgrind (None without valgrind)."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        return None
    out = subprocess.run(
        [valgrind, "--tool=callgrind", "--callgrind-out-file=/dev/null", *argv],
        env=env,
        capture_output=True,
        text=True,
    ).stderr
    found = re.search(r"Collected : (\d+)", out)
    return int(found.group(1)) if found else None


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--against", type=Path, help="another checkout's src/ to time as well")
    parser.add_argument("--instructions", action="store_true", help="also count instructions")
    args = parser.parse_args()

    # An installed nixmox runs from compiled bytecode (pip writes it at install
    # time); without it every run would compile nixmox's sources first, which
    # PYTHONDONTWRITEBYTECODE (set on some machines) makes permanent.
    for tree in [ROOT / "src", *([args.against] if args.against is not None else [])]:
        compileall.compile_dir(str(tree), quiet=1)
    env = dict(os.environ)
    table = {BASE: ([sys.executable, "-c", "pass"], env)}
    table |= cases(ROOT / "src")
    if args.against is not None:
        table |= cases(args.against.resolve(), " (--against)")
    table |= floor(ROOT / "src")

    walls: dict[str, list[float]] = {name: [] for name in table}
    cpus: dict[str, list[float]] = {name: [] for name in table}
    for argv, case_env in table.values():
        timed(argv, case_env)  # warm the page cache and the bytecode caches
    for _ in range(args.runs):
        for name, (argv, case_env) in table.items():
            wall, cpu = timed(argv, case_env)
            walls[name].append(wall)
            cpus[name].append(cpu)
    counted = (
        {name: instructions(argv, case_env) for name, (argv, case_env) in table.items()}
        if args.instructions
        else {}
    )

    base_wall, base_cpu = statistics.median(walls[BASE]), statistics.median(cpus[BASE])
    base_ins = counted.get(BASE)
    print(f"{args.runs} runs each, taking turns; medians; ratio = x `{BASE}` of this run")
    header = f"{'command':<38} {'wall ms':>8} {'ratio':>6} {'cpu ms':>8} {'ratio':>6}"
    print(header + (f" {'Minstr':>8} {'ratio':>6}" if counted else ""))
    for name in table:
        wall, cpu = statistics.median(walls[name]), statistics.median(cpus[name])
        line = (
            f"{name:<38} {wall * 1000:8.1f} {wall / base_wall:5.2f}x "
            f"{cpu * 1000:8.1f} {cpu / base_cpu:5.2f}x"
        )
        ins = counted.get(name)
        if ins is not None and base_ins:
            line += f" {ins / 1e6:8.0f} {ins / base_ins:5.2f}x"
        print(line)
    print()
    for name, target in TARGETS.items():
        wall = statistics.median(walls[name]) / base_wall
        cpu = statistics.median(cpus[name]) / base_cpu
        verdict = "OK" if wall <= target else "OVER TARGET"
        print(
            f"{name}: {wall:.2f}x wall, {cpu:.2f}x cpu of `{BASE}` "
            f"(target <= {target:g}x): {verdict}"
        )


if __name__ == "__main__":
    main()
