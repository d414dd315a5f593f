"""``zpool status`` as plain data: the pool's state, its scan, each vdev (pure).

Two sources, one result (:class:`PoolState`): the JSON of OpenZFS 2.3+
(``zpool status -j --json-int``), preferred where zpool has it, and the text
every zpool prints, parsed otherwise: OpenZFS 2.x (``scan: scrub repaired 0B
in 00:01:23 with 0 errors on ...``, progress on two indented lines) and the
older form zfs-fuse prints (``scrub: scrub completed after 0h0m with 0
errors on ...``). Dates in the text are the host's local time, so they are
read in the zone the caller names.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any

from nixmox.adapters.zfs import size_bytes

#: Vdev states in which the vdev does not serve data.
BROKEN = frozenset({"FAULTED", "UNAVAIL", "REMOVED", "OFFLINE", "CANT_OPEN"})
_SECTIONS = {"logs", "cache", "spares", "special", "dedup", "l2cache"}


@dataclass(frozen=True)
class Scan:
    """The pool's newest scrub or resilver, as zpool reports it."""

    function: str | None = None  # "scrub" | "resilver"; None: never scanned
    state: str = "none"  # none | running | paused | finished | canceled
    percent: float | None = None
    scanned: str | None = None  # "12.3G / 45.6G" as zpool prints it
    issued: str | None = None
    rate: str | None = None  # "1.01G/s"
    to_go: str | None = None  # "00:00:35"
    repaired: int = 0  # bytes (repaired by a scrub, resilvered by a resilver)
    errors: int = 0
    ended: datetime | None = None  # when it finished or was canceled (aware)

    @property
    def active(self) -> bool:
        """Running (a paused scrub is not)."""
        return self.state == "running"


@dataclass(frozen=True)
class Vdev:
    """One line of the configuration: the pool itself, a top-level vdev or a member."""

    name: str
    depth: int  # 0 the pool, 1 a top-level vdev, 2 a member of a mirror/raidz
    section: str  # data, logs, cache, spares, special, dedup
    state: str
    read: int = 0
    write: int = 0
    checksum: int = 0
    repaired: int = 0  # bytes this vdev had repaired ("15.1M repaired"), zfs-fuse and old zpool
    path: str | None = None  # the device path zpool knows (JSON ``path``, text ``was ...``)
    trim: str | None = None  # trimming | trimmed | untrimmed | unsupported | None (not shown)
    trim_percent: int | None = None
    leaf: bool = False

    @property
    def errors(self) -> int:
        return self.read + self.write + self.checksum


@dataclass(frozen=True)
class PoolState:
    """One pool as ``zpool status`` shows it."""

    name: str
    state: str
    scan: Scan = field(default_factory=Scan)
    vdevs: tuple[Vdev, ...] = ()
    status: str = ""  # zpool's explanation, when it has one
    action: str = ""
    data_errors: int = 0  # "errors: N data errors": files with permanent damage
    source: str = "text"  # text | json

    @property
    def leaves(self) -> list[Vdev]:
        """The devices (disks, partitions, files), not the mirrors and raidz groups."""
        return [v for v in self.vdevs if v.leaf]


# -- text ---------------------------------------------------------------------------

_FIELD = re.compile(r"^\s*(pool|state|status|action|see|scan|scrub|config|errors|remove):\s?(.*)$")
_ROW = re.compile(r"^\t( *)(\S+)\s+([A-Z_]+)(?:\s+(\S+)\s+(\S+)\s+(\S+))?\s*(.*)$")
_DATE_FORMAT = "%a %b %d %H:%M:%S %Y"


def parse_text(text: str, zone: tzinfo) -> dict[str, PoolState]:
    """Every pool in ``zpool status [-t] [POOL]`` text, by name."""
    pools: dict[str, PoolState] = {}
    for block in _pool_blocks(text):
        state = _pool_from_block(block, zone)
        pools[state.name] = state
    return pools


def _pool_blocks(text: str) -> Iterator[list[str]]:
    block: list[str] = []
    for line in text.splitlines():
        if re.match(r"^\s*pool: ", line) and block:
            yield block
            block = []
        block.append(line)
    if block and any(re.match(r"^\s*pool: ", line) for line in block):
        yield block


def _pool_from_block(lines: list[str], zone: tzinfo) -> PoolState:
    fields: dict[str, str] = {}
    config: list[str] = []
    current: str | None = None
    for line in lines:
        found = _FIELD.match(line)
        if found and not line.startswith("\t"):
            current = found.group(1)
            fields[current] = found.group(2).strip()
            continue
        if current == "config":
            config.append(line)
        elif current is not None and line.strip():
            fields[current] += "\n" + line.strip()
    scan_text = fields.get("scan") or fields.get("scrub") or ""
    vdevs = _vdevs_from_config(config)
    scan = parse_scan(scan_text, zone)
    if scan.repaired == 0 and scan.function == "scrub":
        # zfs-fuse (and zpool before 0.7) say it per vdev only.
        scan = _with_repaired(scan, sum(v.repaired for v in vdevs))
    return PoolState(
        name=fields.get("pool", "").strip(),
        state=fields.get("state", "").strip(),
        scan=scan,
        vdevs=tuple(vdevs),
        status=" ".join(fields.get("status", "").split()),
        action=" ".join(fields.get("action", "").split()),
        data_errors=_data_errors(fields.get("errors", "")),
    )


def _with_repaired(scan: Scan, repaired: int) -> Scan:
    return Scan(
        scan.function,
        scan.state,
        scan.percent,
        scan.scanned,
        scan.issued,
        scan.rate,
        scan.to_go,
        repaired,
        scan.errors,
        scan.ended,
    )


def _data_errors(text: str) -> int:
    found = re.match(r"(\d+) data errors?", text.strip())
    return int(found.group(1)) if found else 0


def _count(text: str | None) -> int:
    if text is None:
        return 0
    try:
        return size_bytes(text)
    except ValueError:
        return 0


@dataclass(frozen=True)
class _Row:
    depth: int
    section: str
    name: str
    state: str
    counters: tuple[str | None, str | None, str | None]
    note: str


def _vdevs_from_config(config: list[str]) -> list[Vdev]:
    rows: list[_Row] = []
    section = "data"
    for line in config:
        bare = line.strip()
        if not bare or bare.startswith("NAME "):
            continue
        found = _ROW.match(line)
        if found is None or (found.group(2) in _SECTIONS and not found.group(1)):
            # "logs", "cache", "spares", ... head their own part of the tree.
            word = bare.split()[0]
            if word in _SECTIONS:
                section = "cache" if word == "l2cache" else word
            continue
        indent, name, state, read, write, cksum, note = found.groups()
        rows.append(_Row(len(indent) // 2, section, name, state, (read, write, cksum), note))
    out: list[Vdev] = []
    for i, row in enumerate(rows):
        following = rows[i + 1].depth if i + 1 < len(rows) else -1
        trim, trim_percent = _trim_note(row.note)
        out.append(
            Vdev(
                name=row.name,
                depth=row.depth,
                section=row.section,
                state=row.state,
                read=_count(row.counters[0]),
                write=_count(row.counters[1]),
                checksum=_count(row.counters[2]),
                repaired=_repaired_note(row.note),
                path=_was(row.note),
                trim=trim,
                trim_percent=trim_percent,
                # Sections list their devices at depth 1 without a pool line above.
                leaf=row.depth > 0 and following <= row.depth,
            )
        )
    return out


def _repaired_note(note: str) -> int:
    found = re.search(r"(\S+) (?:repaired|resilvered)", note)
    return _count(found.group(1)) if found else 0


def _was(note: str) -> str | None:
    found = re.search(r"was (\S+)", note)
    return found.group(1) if found else None


def _trim_note(note: str) -> tuple[str | None, int | None]:
    if "(trim unsupported)" in note:
        return "unsupported", None
    if "(untrimmed)" in note:
        return "untrimmed", None
    found = re.search(r"\((\d+)% trimmed, (started|completed|suspended)", note)
    if found is None:
        return None, None
    percent = int(found.group(1))
    kind = {"started": "trimming", "completed": "trimmed", "suspended": "suspended"}
    return kind[found.group(2)], percent


_ON = re.compile(r" on (\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})")
_SINCE = re.compile(r" since (\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})")


def _date(text: str, zone: tzinfo) -> datetime | None:
    try:
        return datetime.strptime(" ".join(text.split()), _DATE_FORMAT).replace(tzinfo=zone)
    except ValueError:
        return None


def parse_scan(text: str, zone: tzinfo) -> Scan:
    """The ``scan:`` (OpenZFS) or ``scrub:`` (zfs-fuse) field, continuation lines included."""
    flat = " ".join(text.split())
    if not flat or flat.startswith("none requested"):
        return Scan()
    function = "resilver" if flat.startswith("resilver") else "scrub"
    ended_at = _ON.search(flat)
    ended = _date(ended_at.group(1), zone) if ended_at else None
    errors_found = re.search(r"with (\d+) errors", flat)
    errors = int(errors_found.group(1)) if errors_found else 0
    repaired_found = re.search(r"(?:repaired|resilvered) (\S+) in", flat) or re.search(
        r"(\S+) (?:repaired|resilvered),", flat
    )
    repaired = _count(repaired_found.group(1)) if repaired_found else 0
    if re.search(r"(scrub|resilver) (in progress|paused)", flat):
        state = "paused" if "paused" in flat.split(",")[0] else "running"
        return Scan(
            function,
            state,
            percent=_percent(flat),
            scanned=_progress(flat, "scanned"),
            issued=_progress(flat, "issued"),
            rate=_rate(flat),
            to_go=_to_go(flat),
            repaired=repaired,
        )
    if re.search(r"(canceled|stopped) (on|after)", flat):
        return Scan(function, "canceled", repaired=repaired, errors=errors, ended=ended)
    return Scan(function, "finished", percent=100.0, repaired=repaired, errors=errors, ended=ended)


def _percent(flat: str) -> float | None:
    found = re.search(r"([\d.]+)% done", flat)
    return float(found.group(1)) if found else None


def _progress(flat: str, word: str) -> str | None:
    found = re.search(rf"(\S+(?: / \S+)?) {word}", flat)
    return found.group(1) if found else None


def _rate(flat: str) -> str | None:
    found = re.search(r"issued at (\S+?/s)", flat) or re.search(r"scanned at (\S+?/s)", flat)
    return found.group(1) if found else None


def _to_go(flat: str) -> str | None:
    found = re.search(r"done, (.+?) to go", flat)
    return found.group(1) if found else None


# -- JSON (OpenZFS 2.3+) ---------------------------------------------------------------


def parse_json(doc: Mapping[str, Any], zone: tzinfo) -> dict[str, PoolState]:
    """Every pool in ``zpool status -j --json-int`` output, by name."""
    pools = doc.get("pools")
    if not isinstance(pools, Mapping):
        raise ValueError("no pools object in zpool status -j output")
    out: dict[str, PoolState] = {}
    for key, pool in pools.items():
        if not isinstance(pool, Mapping):
            continue
        name = str(pool.get("name", key))
        vdevs: list[Vdev] = []
        for top in _mapping(pool.get("vdevs")).values():
            _walk_json(top, 0, "data", vdevs)
        for key_name, section in (("logs", "logs"), ("l2cache", "cache"), ("spares", "spares")):
            for top in _mapping(pool.get(key_name)).values():
                _walk_json(top, 1, section, vdevs)
        out[name] = PoolState(
            name=name,
            state=str(pool.get("state", "")),
            scan=_scan_json(_mapping(pool.get("scan_stats")), zone),
            vdevs=tuple(vdevs),
            status=" ".join(str(pool.get("status", "")).split()),
            action=" ".join(str(pool.get("action", "")).split()),
            data_errors=_int(pool.get("error_count")),
            source="json",
        )
    return out


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _int(value: Any) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return size_bytes(value)
        except ValueError:
            return 0
    return 0


def _walk_json(node: Mapping[str, Any], depth: int, section: str, out: list[Vdev]) -> None:
    children = _mapping(node.get("vdevs"))
    klass = str(node.get("class", "normal"))
    if klass in ("special", "dedup"):
        section = klass
    elif klass in ("log", "logs"):
        section = "logs"
    elif klass == "l2cache":
        section = "cache"
    elif klass == "spare":
        section = "spares"
    out.append(
        Vdev(
            name=str(node.get("name", "")),
            depth=depth,
            section=section,
            state=str(node.get("state", "")),
            read=_int(node.get("read_errors")),
            write=_int(node.get("write_errors")),
            checksum=_int(node.get("checksum_errors")),
            path=str(node["path"]) if node.get("path") else None,
            leaf=not children and depth > 0,
        )
    )
    for child in children.values():
        if isinstance(child, Mapping):
            _walk_json(child, depth + 1, section, out)


_JSON_STATES = {"SCANNING": "running", "FINISHED": "finished", "CANCELED": "canceled"}


def _scan_json(scan: Mapping[str, Any], zone: tzinfo) -> Scan:
    function = str(scan.get("function", "")).lower()
    if function not in ("scrub", "resilver") or scan.get("state") in (None, "NONE"):
        return Scan()
    state = _JSON_STATES.get(str(scan.get("state")), "none")
    pause = scan.get("scrub_pause")
    if state == "running" and pause not in (None, "-", 0, "0", ""):
        state = "paused"
    total = _int(scan.get("to_examine"))
    issued = _int(scan.get("issued"))
    examined = _int(scan.get("examined"))
    percent = 100.0 if state == "finished" else (issued * 100.0 / total if total else None)
    ended = _json_time(scan.get("end_time"), zone) if state in ("finished", "canceled") else None
    return Scan(
        function,
        state,
        percent=None if percent is None else round(percent, 2),
        scanned=f"{examined} / {total}" if state in ("running", "paused") else None,
        issued=f"{issued} / {total}" if state in ("running", "paused") else None,
        repaired=_int(scan.get("processed")),
        errors=_int(scan.get("errors")),
        ended=ended,
    )


def _json_time(value: Any, zone: tzinfo) -> datetime | None:
    if isinstance(value, int) and value > 0:
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str):
        if value.isdigit() and int(value) > 0:
            return datetime.fromtimestamp(int(value), UTC)
        return _date(value, zone)
    return None
