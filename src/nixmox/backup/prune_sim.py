"""What ``nixmox prune-sim`` reads: backup times, or a storage's file list as it is.

Pure: lines in, decisions out. A line is one of

- a time, ISO-8601 (``2026-12-04T02:30:00Z``, ``2026-12-04 02:30``: a space
  for the ``T``, seconds optional), optionally followed by ``protected``; a
  time without an offset is in the zone given;
- a line naming a vzdump archive (``vzdump-qemu-101-2026_11_20-02_30_00.vma.zst``,
  a path, a volid, ``ls -l`` or ``pvesm list`` output): its time is the one
  in the name, read in the zone given (vzdump names files in the node's local
  time). ``protected`` as the line's last word, or a ``NAME.protected`` file
  in the list (how a directory storage marks it), protects it. vzdump's
  ``.log`` and ``.notes`` files beside an archive, and copies named by hand
  (no time in the name), are not backups Proxmox would prune: skipped;
- a blank line, a ``#`` comment, ``pvesm list``'s ``Volid ...`` header or
  ``ls -l``'s ``total N``: skipped.

Proxmox prunes each guest's backups on their own, so archive names are
grouped by guest (``qemu/101``) and each group is decided alone; the results
are merged newest first. Plain times are one group.

Kept cheap to import and to run: ``prune-sim`` may read 100,000 lines and
must stay within a few times the cost of a bare Python process.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime, tzinfo

from nixmox.core.errors import ConfigError
from nixmox.rules.retention import Item, Keep, Mark, Pruned, prune

PROTECTED = "protected"

#: vzdump's file names (pve-storage's ``archive_info``), extensions included.
_ARCHIVE = re.compile(
    r"vzdump-(qemu|lxc|openvz)-(\d+)-(\d{4})_(\d\d)_(\d\d)-(\d\d)_(\d\d)_(\d\d)((?:\.[\w-]+)*)"
)
#: Files vzdump writes next to an archive, and in-progress dumps: not backups.
_BESIDE = (".log", ".notes", ".tmp", ".dat")
_MARKER = ".protected"
#: Listing furniture: ``pvesm list``'s header, ``ls -l``'s first line.
_FURNITURE = re.compile(r"Volid\s.*|total \d+\S*")

#: The group of plain times (archive names are grouped by guest, ``qemu/101``).
TIMES = ""


def read_groups(lines: Iterable[str], zone: tzinfo) -> dict[str, list[Item]]:
    """Items from the lines, by group; each item's ``ref`` is what the line gave for it
    (the time as written, or the archive's file name, path or volid).

    Raises :class:`ConfigError` naming the line (``stdin:N:``) of one that is
    neither a time nor a file list line.
    """
    times: list[Item] = []
    append = times.append
    groups: dict[str, list[Item]] = {TIMES: times}
    marked: set[str] = set()
    parse = datetime.fromisoformat
    for number, raw in enumerate(lines, 1):
        text = raw.strip()
        protected = False
        try:
            # The usual line is a bare time: try that first, classify only what fails.
            when = parse(text)
        except ValueError:
            if not text or text[0] == "#" or _FURNITURE.fullmatch(text):
                continue
            if "vzdump-" in text:
                _archive_line(text, number, zone, groups, marked)
                continue
            head = text[: -len(PROTECTED)]
            if not (text.endswith(PROTECTED) and head[-1:].isspace()):
                raise ConfigError(_not_a_time(number, raw)) from None
            text, protected = head.rstrip(), True
            try:
                when = parse(text)
            except ValueError:
                raise ConfigError(_not_a_time(number, raw)) from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=zone)  # a time without offset is local to the zone
        append(Item(when, protected, text))
    if marked:
        for name, items in groups.items():
            if name != TIMES:
                items[:] = [
                    it._replace(protected=True) if _base(it.ref) in marked else it for it in items
                ]
    return {name: items for name, items in groups.items() if items or name == TIMES}


def _not_a_time(number: int, raw: str) -> str:
    return (
        f"stdin:{number}: {raw.strip()!r} is neither a time (ISO-8601 like 2026-12-04 02:30, "
        "optionally followed by 'protected') nor a vzdump archive name"
    )


def _base(word: str) -> str:
    """A file name without its directory or storage (``local:backup/``)."""
    return word.rpartition("/")[2].rpartition(":")[2]


def _archive_line(
    text: str, number: int, zone: tzinfo, groups: dict[str, list[Item]], marked: set[str]
) -> None:
    words = text.split()
    word = next(w for w in words if "vzdump-" in w)
    found = _ARCHIVE.fullmatch(_base(word))
    if found is None:
        return  # named by hand: no time to prune by, and Proxmox never prunes it
    kind, vmid, *fields, suffix = found.groups()
    if suffix.endswith(_MARKER):
        marked.add(_base(word)[: -len(_MARKER)])
        return
    if suffix.endswith(_BESIDE):
        return
    try:
        year, month, day, hour, minute, second = map(int, fields)
        when = datetime(year, month, day, hour, minute, second, tzinfo=zone)
    except ValueError:
        raise ConfigError(f"stdin:{number}: {word!r} names no real time") from None
    protected = len(words) > 1 and words[-1] == PROTECTED
    groups.setdefault(f"{kind}/{vmid}", []).append(Item(when, protected, word))


def simulate(groups: dict[str, list[Item]], keep: Keep, zone: tzinfo) -> Pruned:
    """Each group decided on its own with Proxmox's rule, merged newest first."""
    results = [prune(items, keep, zone) for items in groups.values() if items]
    if not results:
        return Pruned([], [], [])
    if len(results) == 1:
        return results[0]
    rows = [
        (item, mark, reason)
        for result in results
        for item, mark, reason in zip(result.items, result.marks, result.reasons, strict=True)
    ]
    rows.sort(key=lambda row: row[0].ref)
    rows.sort(key=lambda row: row[0].time.timestamp(), reverse=True)
    marks: list[Mark] = [mark for _, mark, _ in rows]
    return Pruned([item for item, _, _ in rows], marks, [reason for _, _, reason in rows])
