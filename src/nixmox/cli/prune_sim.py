"""`nixmox prune-sim`: Proxmox's prune simulator on stdin.

Parsed with argparse, not typer: the command is a filter that may see
100,000 lines, and its whole run must stay within a few times the cost of a
bare Python process, so it loads nothing it does not use.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from datetime import datetime, tzinfo
from typing import NoReturn

from nixmox.errors import ConfigError, UsageError
from nixmox.retention import Decision, Item, Keep, prune

PROTECTED = "protected"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"prune-sim: {message} (see `nixmox prune-sim --help`)")


def parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="nixmox prune-sim",
        description=(
            "Proxmox's prune simulator. Reads one backup per line on stdin: an ISO-8601 time, "
            "optionally followed by ' protected'. Prints each, newest first, with its mark "
            "(keep, remove, protected) and the reason."
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


def read_items(lines: Iterable[str], zone: tzinfo) -> tuple[list[Item], dict[str, str]]:
    """Items from stdin lines, and each item's time as the line gave it."""
    items: list[Item] = []
    given: dict[str, str] = {}
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        text, _, flag = line.partition(" ")
        flag = flag.strip()
        if flag not in ("", PROTECTED):
            raise ConfigError(
                f"stdin:{number}: expected '<time>' or '<time> protected', got {line!r}"
            )
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            raise ConfigError(f"stdin:{number}: {text!r} is not an ISO-8601 time") from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=zone)  # a time without offset is local to --tz
        ref = f"{number:09d}"
        given[ref] = text
        items.append(Item(when, flag == PROTECTED, ref))
    return items, given


def main(argv: Sequence[str], *, as_json: bool = False) -> int:
    """Run the simulator on stdin; return the exit code."""
    args = parser().parse_args(list(argv))
    if args.keep_all and any(
        getattr(args, f"keep_{n}")
        for n in ("last", "hourly", "daily", "weekly", "monthly", "yearly")
    ):
        raise ConfigError("--keep-all cannot be combined with another --keep option")
    from nixmox.zones import zone

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
    items, given = read_items(sys.stdin, tz)
    decisions = prune(items, keep, tz)
    out = sys.stdout
    if args.json or as_json:
        out.write(
            json.dumps(
                [
                    {"time": given[d.item.ref], "mark": d.mark.value, "reason": d.reason}
                    for d in decisions
                ]
            )
        )
        out.write("\n")
    else:
        write_table(decisions, given)
    return 0


def write_table(decisions: list[Decision], given: dict[str, str]) -> None:
    width = max((len(t) for t in given.values()), default=4)
    lines = [f"{'time':<{width}}  {'mark':<9}  reason"]
    lines += [f"{given[d.item.ref]:<{width}}  {d.mark.value:<9}  {d.reason}" for d in decisions]
    counts = {m: sum(d.mark.value == m for d in decisions) for m in ("keep", "protected", "remove")}
    lines.append(", ".join(f"{n} {m}" for m, n in counts.items()))
    sys.stdout.write("\n".join(lines) + "\n")
