"""Startup cost of `nixmox --version` against a bare `python -c pass`.

Run: .venv/bin/python bench/startup.py [--runs N]
The target (issue 2): nixmox --version costs at most 3x a bare interpreter start.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path


def best_of(argv: list[str], runs: int) -> tuple[float, float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - started)
    return min(times), statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    nixmox = shutil.which("nixmox", path=str(Path(sys.executable).parent)) or "nixmox"
    cases = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "nixmox --version": [nixmox, "--version"],
        "nixmox --help": [nixmox, "--help"],
    }
    results = {name: best_of(argv, args.runs) for name, argv in cases.items()}
    _base_min, base_med = results["python -c pass"]
    print(f"{'command':<20} {'min ms':>8} {'median ms':>10} {'ratio (median)':>15}")
    for name, (low, med) in results.items():
        print(f"{name:<20} {low * 1000:8.1f} {med * 1000:10.1f} {med / base_med:14.2f}x")
    ratio = results["nixmox --version"][1] / base_med
    verdict = "OK" if ratio <= 3 else "OVER TARGET"
    print(f"\nnixmox --version / python -c pass = {ratio:.2f}x (target <= 3x): {verdict}")


if __name__ == "__main__":
    main()
