"""`nixmox prune-sim`: Proxmox's prune simulator on stdin (the input is read by
:mod:`nixmox.backup.prune_sim`).

Parsed with argparse, not typer: the command is a filter that may see
100,000 lines, and its whole run must stay within a few times the cost of a
bare Python process, so it loads nothing it does not use.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Sequence
from json.encoder import encode_basestring_ascii
from typing import NoReturn

from nixmox.backup.prune_sim import read_groups, simulate
from nixmox.core.errors import ConfigError, UsageError
from nixmox.rules.retention import Keep, Mark, Pruned


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"prune-sim: {message} (see `nixmox prune-sim --help`)")


def parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="nixmox prune-sim",
        description=(
            "Proxmox's prune simulator. Reads one backup per line on stdin: a time "
            "(ISO-8601, e.g. 2026-12-04T02:30:00Z or 2026-12-04 02:30), optionally followed "
            "by 'protected'; or a storage's file list as it is (vzdump file names, paths or "
            "volids, `ls -l` or `pvesm list` output: each guest's archives decided on their "
            "own, a NAME.protected file protects NAME, .log and .notes files are skipped). "
            "Prints each, newest first, with its mark (keep, remove, protected) and the reason."
        ),
    )
    for name in ("last", "hourly", "daily", "weekly", "monthly", "yearly"):
        p.add_argument(f"--keep-{name}", type=_count, metavar="N", help=f"keep-{name} (N >= 0)")
    p.add_argument("--keep-all", action="store_true", help="keep everything")
    p.add_argument(
        "--tz", metavar="ZONE", help="zone for hours, days and weeks (default: this machine's)"
    )
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p.add_argument("--config", help=argparse.SUPPRESS)  # accepted like every command; unused
    return p


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return value


def main(argv: Sequence[str], *, as_json: bool = False) -> int:
    """Run the simulator on stdin; return the exit code."""
    args = parser().parse_args(list(argv))
    if args.keep_all and any(
        getattr(args, f"keep_{n}")
        for n in ("last", "hourly", "daily", "weekly", "monthly", "yearly")
    ):
        raise ConfigError("--keep-all cannot be combined with another --keep option")
    from nixmox.core.zones import zone

    tz = zone(args.tz)
    keep = Keep(
        last=args.keep_last,
        hourly=args.keep_hourly,
        daily=args.keep_daily,
        weekly=args.keep_weekly,
        monthly=args.keep_monthly,
        yearly=args.keep_yearly,
        all=args.keep_all,
    )
    if sys.stdin.isatty():
        # Otherwise a person who typed only the command waits for nothing they can see.
        print(
            "prune-sim: reading backups from stdin, one per line (a time or a vzdump file "
            "name); end with Ctrl-D",
            file=sys.stderr,
        )
    result = simulate(read_groups(sys.stdin.read().splitlines(), tz), keep, tz)
    if args.json or as_json:
        write_json(result)
    else:
        write_table(result)
    return 0


def write_json(result: Pruned) -> None:
    """The contract's JSON list, newest first, built from pre-encoded pieces:
    the reasons repeat, and 100,000 rows through json.dumps cost more than
    deciding them."""
    reasons = {r: encode_basestring_ascii(r) for r in set(result.reasons)}
    rows = [
        f'{{"time": {encode_basestring_ascii(it.ref)}, "mark": "{m}", "reason": {reasons[r]}}}'
        for it, m, r in zip(result.items, result.marks, result.reasons, strict=True)
    ]
    sys.stdout.write("[" + ", ".join(rows) + "]\n")


def write_table(result: Pruned) -> None:
    """A readable table: time as given, mark, reason; then the totals."""
    times = [it.ref for it in result.items]
    width = max(map(len, times), default=4)
    lines = [f"{'time':<{width}}  {'mark':<9}  reason"]
    lines += [
        f"{t:<{width}}  {m:<9}  {r}"
        for t, m, r in zip(times, result.marks, result.reasons, strict=True)
    ]
    counts = Counter(result.marks)
    lines.append(", ".join(f"{counts[Mark(m)]} {m}" for m in ("keep", "protected", "remove")))
    sys.stdout.write("\n".join(lines) + "\n")
