"""Retention speed: the engine on 100,000 items, and `prune-sim --json` end to end.

Run: .venv/bin/python bench/retention.py [--items N] [--runs R]
Targets (issue 4): the engine decides 100,000 items with all six options in
under 0.3 s; `nixmox prune-sim --json` end to end within 4x of a bare Python
process that reads the same lines and writes JSON of the same size.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from nixmox.rules.retention import Item, Keep, prune

KEEPS = {
    "typical (5/24/7/4/12/5)": Keep(last=5, hourly=24, daily=7, weekly=4, monthly=12, yearly=5),
    "large (100/1000/1000/500/100/10)": Keep(
        last=100, hourly=1000, daily=1000, weekly=500, monthly=100, yearly=10
    ),
}
CLI_ARGS = [
    "--keep-last",
    "5",
    "--keep-hourly",
    "24",
    "--keep-daily",
    "7",
    "--keep-weekly",
    "4",
    "--keep-monthly",
    "12",
    "--keep-yearly",
    "5",
    "--tz",
    "Europe/Vienna",
    "--json",
]


def make_times(count: int) -> list[datetime]:
    """Newest first, every 37 minutes: about 7 years for 100,000 items."""
    start = datetime(2026, 11, 1, tzinfo=UTC)
    return [start - timedelta(minutes=37 * i) for i in range(count)]


def best(fn: object, runs: int) -> float:
    assert callable(fn)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    zone = ZoneInfo("Europe/Vienna")
    times = make_times(args.items)
    newest_first = [Item(t, ref=f"{i:09d}") for i, t in enumerate(times)]
    shuffled = newest_first[::-1]  # oldest first: forces the sort
    print(f"engine, {args.items:,} items, all six options, Europe/Vienna (best of {args.runs}):")
    for label, keep in KEEPS.items():
        for order, its in (("newest first", newest_first), ("oldest first", shuffled)):
            seconds = best(lambda its=its, keep=keep: prune(its, keep, zone), args.runs)
            verdict = "OK" if seconds < 0.3 else "OVER 0.3 s"
            print(f"  {label:<34} {order:<13} {seconds * 1000:7.1f} ms  {verdict}")

    nixmox = shutil.which("nixmox", path=str(Path(sys.executable).parent)) or "nixmox"
    with tempfile.TemporaryDirectory() as tmp:
        lines = Path(tmp) / "times.txt"
        lines.write_text("".join(t.isoformat() + "\n" for t in times))
        out = subprocess.run(
            [nixmox, "prune-sim", *CLI_ARGS], stdin=lines.open(), capture_output=True, check=True
        ).stdout
        baseline = Path(tmp) / "baseline.py"
        # Reads the same lines and writes JSON of the same size: the reason is
        # padded so that the output matches nixmox's byte count.
        empty_row = len('{"time": "", "mark": "keep", "reason": ""}, ')
        time_chars = sum(len(t.isoformat()) for t in times)
        pad = max((len(out) - time_chars - empty_row * args.items) // max(args.items, 1), 0)
        baseline.write_text(
            "import json, sys\n"
            "rows = [line.strip() for line in sys.stdin]\n"
            f"reason = 'x' * {pad}\n"
            "sys.stdout.write(json.dumps("
            "[{'time': r, 'mark': 'keep', 'reason': reason} for r in rows]) + '\\n')\n"
        )

        def run_cli() -> None:
            with lines.open() as stdin:
                subprocess.run(
                    [nixmox, "prune-sim", *CLI_ARGS],
                    stdin=stdin,
                    stdout=subprocess.DEVNULL,
                    check=True,
                )

        def run_bare() -> None:
            with lines.open() as stdin:
                subprocess.run(
                    [sys.executable, str(baseline)],
                    stdin=stdin,
                    stdout=subprocess.DEVNULL,
                    check=True,
                )

        base_out = subprocess.run(
            [sys.executable, str(baseline)], stdin=lines.open(), capture_output=True, check=True
        ).stdout
        cli = best(run_cli, args.runs)
        bare = best(run_bare, args.runs)
    ratio = cli / bare
    print(f"\nprune-sim --json end to end, {args.items:,} lines (best of {args.runs}):")
    print(f"  nixmox prune-sim --json   {cli * 1000:7.1f} ms  ({len(out):,} bytes of JSON)")
    print(f"  bare python read + dump   {bare * 1000:7.1f} ms  ({len(base_out):,} bytes of JSON)")
    print(f"  ratio {ratio:.2f}x (target <= 4x): {'OK' if ratio <= 4 else 'OVER TARGET'}")


if __name__ == "__main__":
    main()
