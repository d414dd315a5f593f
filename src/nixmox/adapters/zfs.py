"""The one adapter for ``zfs`` (and ``zpool``).

It uses only the command subset that behaves the same on OpenZFS 2.2+ and
zfs-fuse (one snapshot per ``zfs snapshot``, one property per ``zfs set``,
``zfs list -H -o ...`` without ``-p``), and feature-detects what only OpenZFS
has: destroying many snapshots of one dataset in one call
(``zfs destroy pool/ds@a,b,c``). Every call goes through the runner, so
``[zfs] command`` (``ssh root@pve1 zfs``, ``sudo zfs``), ``--dry-run`` and
logging apply, and failures become typed errors by exit code and phrase.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePath

from nixmox.adapters.runner import Piped, Progress, Remote, Runner, split_remote
from nixmox.core.errors import CommandError, NixmoxError

# OpenZFS refuses longer argument lists long before the kernel does; stay well
# below both so a batch never fails for its size.
BATCH_CHARS = 8000

# Pauses (seconds) between tries when a just-unmounted file system is still busy.
BUSY_PAUSES = (0.2, 0.5, 1.0, 2.0)


class ZfsError(NixmoxError):
    """A zfs command failed; ``stderr`` holds what zfs said."""

    def __init__(self, message: str, stderr: str = "") -> None:
        super().__init__(message)
        self.stderr = stderr


class ZfsUsage(ZfsError):
    """zfs refused the command line itself (exit 2): an option this zfs lacks."""


class DatasetNotFound(ZfsError):
    """The dataset or snapshot does not exist."""


class DatasetBusy(ZfsError):
    """In use: held, mounted and busy, or with dependent clones."""


class DatasetExists(ZfsError):
    """A dataset or snapshot of that name exists already."""


class TargetModified(ZfsError):
    """``zfs receive`` refused: the target changed since its newest snapshot."""


_PHRASES: tuple[tuple[str, type[ZfsError]], ...] = (
    ("does not exist", DatasetNotFound),
    ("dataset is busy", DatasetBusy),
    ("pool or dataset is busy", DatasetBusy),
    ("has dependent clones", DatasetBusy),
    ("already exists", DatasetExists),
    ("has been modified", TargetModified),
    ("must destroy them to overwrite", TargetModified),
)


def _typed(exc: CommandError, what: str) -> ZfsError:
    lines = [line.strip() for line in exc.stderr.strip().splitlines() if line.strip()]
    said = lines[0] if lines else f"exit status {exc.returncode}"
    for phrase, kind in _PHRASES:
        if phrase in exc.stderr:
            return kind(f"{what}: {said}", exc.stderr)
    if exc.returncode == 2:
        return ZfsUsage(f"{what}: this zfs does not accept the command ({said})", exc.stderr)
    return ZfsError(f"{what}: {said}", exc.stderr)


@dataclass(frozen=True)
class Snapshot:
    """One snapshot as the fast listing shows it."""

    dataset: str
    name: str
    createtxg: int  # may be rounded (see _number); zfs sorts the listing itself
    userrefs: int

    @property
    def full(self) -> str:
        return f"{self.dataset}@{self.name}"


@dataclass(frozen=True)
class SnapshotId:
    """A snapshot with its GUID: the same GUID on two pools is the same snapshot."""

    name: str
    guid: int
    createtxg: int
    userrefs: int = 0


_VERSION = re.compile(r"^zfs-\d+\.\d+", re.MULTILINE)
#: What zfs says for a property it does not know (zfs-fuse and old OpenZFS alike).
_UNKNOWN_PROPERTY = ("bad property list", "invalid property")


class _Adapter:
    """A ZFS program through the runner; ``command`` is its argv prefix.

    A prefix that is ``ssh [OPTIONS] HOST PROGRAM`` runs ``PROGRAM`` on ``HOST``
    through a runner bound there (:func:`~nixmox.adapters.runner.split_remote`)."""

    def __init__(self, runner: Runner, command: Sequence[str]) -> None:
        remote, self.command = split_remote(command)
        self.runner = runner.on(remote) if remote is not None else runner

    @property
    def runs_remotely(self) -> bool:
        """Whether the program runs on another machine (over ssh), not here."""
        return self.runner.remote is not None

    @property
    def remote(self) -> Remote | None:
        """The machine the program runs on (``None``: here)."""
        return self.runner.remote

    def _argv(self, args: Sequence[str]) -> list[str]:
        return [*self.command, *args]

    def _run(self, args: Sequence[str], what: str, *, changes: bool) -> str:
        try:
            return self.runner.run(self._argv(args), changes=changes).stdout
        except CommandError as exc:
            raise _typed(exc, what) from None


class Zfs(_Adapter):
    """``zfs`` through the runner; ``command`` is the argv prefix (default ``zfs``)."""

    def __init__(self, runner: Runner, command: Sequence[str] = ("zfs",)) -> None:
        super().__init__(runner, command)
        self._batch: bool | None = None

    def datasets(self) -> set[str]:
        """Names of every file system and volume (one ``zfs list``)."""
        out = self._run(["list", "-H", "-o", "name"], "cannot list datasets", changes=False)
        return {line.strip() for line in out.splitlines() if line.strip()}

    @property
    def batch_destroy(self) -> bool:
        """Whether ``zfs destroy ds@a,b`` works: OpenZFS (``zfs version`` answers), not zfs-fuse."""
        if self._batch is None:
            try:
                out = self.runner.run(self._argv(["version"]), changes=False, check=False)
            except NixmoxError:
                self._batch = False
            else:
                found = _VERSION.search(out.stdout)
                self._batch = out.ok and found is not None
        return self._batch

    def list_snapshots(self, dataset: str, *, recursive: bool) -> list[Snapshot]:
        """Snapshots of ``dataset`` (and, if ``recursive``, of every descendant), oldest first.

        One call, fast columns only: the name, createtxg, and userrefs (holds).
        """
        depth = [] if recursive else ["-d", "1"]
        out = self._run(
            [
                "list",
                "-H",
                "-o",
                "name,createtxg,userrefs",
                "-t",
                "snapshot",
                "-s",
                "createtxg",
                "-r",
                *depth,
                dataset,
            ],
            f"cannot list snapshots of {dataset}",
            changes=False,
        )
        snapshots = []
        for line in out.splitlines():
            fields = line.split("\t")
            if len(fields) != 3 or "@" not in fields[0]:
                raise ZfsError(f"zfs list printed a line nixmox cannot read: {line!r}")
            ds, _, name = fields[0].partition("@")
            snapshots.append(Snapshot(ds, name, _number(fields[1]), _number(fields[2])))
        return snapshots

    def snapshot(self, dataset: str, name: str, *, recursive: bool) -> None:
        """Take ``dataset@name``; ``recursive`` snapshots every descendant atomically."""
        flag = ["-r"] if recursive else []
        self._run(
            ["snapshot", *flag, f"{dataset}@{name}"], f"cannot snapshot {dataset}", changes=True
        )

    def destroy_snapshots(self, dataset: str, names: Sequence[str]) -> list[tuple[str, ZfsError]]:
        """Destroy ``dataset@name`` for each name; return the ones that failed and why.

        With OpenZFS, names go in batches (``ds@a,b,c``); a failed batch is
        retried one by one so one held snapshot never keeps the others.
        """
        failed: list[tuple[str, ZfsError]] = []
        pending = list(names)
        if self.batch_destroy and len(pending) > 1:
            for batch in _batches(dataset, pending):
                try:
                    self._run(
                        ["destroy", f"{dataset}@{','.join(batch)}"],
                        f"cannot destroy snapshots of {dataset}",
                        changes=True,
                    )
                except ZfsError:
                    # Part of the batch may be gone already; retry each one.
                    failed += self._destroy_each(dataset, batch)
            return failed
        return self._destroy_each(dataset, pending)

    def _destroy_each(self, dataset: str, names: Sequence[str]) -> list[tuple[str, ZfsError]]:
        failed = []
        for name in names:
            try:
                self._run(
                    ["destroy", f"{dataset}@{name}"],
                    f"cannot destroy {dataset}@{name}",
                    changes=True,
                )
            except DatasetNotFound:
                continue  # already gone (a retried batch): what was asked for is done
            except ZfsError as exc:
                failed.append((name, exc))
        return failed

    # -- recovery: browse clones, guarded rollback ------------------------------------

    def clone(self, snapshot: str, target: str, properties: dict[str, str]) -> None:
        """``zfs clone -o K=V ... SNAPSHOT TARGET``."""
        options = [a for k, v in properties.items() for a in ("-o", f"{k}={v}")]
        self._run(["clone", *options, snapshot, target], f"cannot clone {snapshot}", changes=True)

    def unmount(self, dataset: str) -> None:
        """``zfs unmount`` (a dataset that is not mounted is fine)."""
        try:
            self._run(["unmount", dataset], f"cannot unmount {dataset}", changes=True)
        except ZfsError as exc:
            if "not currently mounted" not in exc.stderr and "not mounted" not in exc.stderr:
                raise

    def destroy_filesystem(self, dataset: str) -> None:
        """Destroy one file system (never recursively, never a snapshot by mistake)."""
        if "@" in dataset or "#" in dataset:
            raise ValueError(f"{dataset} is not a file system")
        # Just after an unmount, a file system can still be "busy" for a moment while
        # the last reader lets go (zfs-fuse says so for about a second; Linux
        # OpenZFS can while an unmount settles). Retry a few times, then report it.
        for pause in (*BUSY_PAUSES, None):
            try:
                self._run(["destroy", dataset], f"cannot destroy {dataset}", changes=True)
                return
            except ZfsError as exc:
                if pause is None or "busy" not in exc.stderr:
                    raise
                time.sleep(pause)

    def rollback_destroying_newer(self, snapshot: str) -> None:
        """``zfs rollback -r SNAPSHOT``: every newer snapshot is destroyed (the caller
        has named each of them)."""
        self._run(["rollback", "-r", snapshot], f"cannot roll back to {snapshot}", changes=True)

    # -- replication: reading ----------------------------------------------------

    def exists(self, dataset: str) -> bool:
        """Whether the file system or volume ``dataset`` exists."""
        try:
            self._run(
                ["list", "-H", "-o", "name", dataset], f"cannot list {dataset}", changes=False
            )
        except DatasetNotFound:
            return False
        return True

    def descendants(self, dataset: str) -> list[str]:
        """``dataset`` and every file system and volume below it, parents first."""
        out = self._run(
            ["list", "-H", "-o", "name", "-r", dataset], f"cannot list {dataset}", changes=False
        )
        return [line.strip() for line in out.splitlines() if line.strip()]

    def snapshot_ids(self, dataset: str) -> list[SnapshotId]:
        """``dataset``'s own snapshots with their GUIDs, oldest first.

        Two calls: ``zfs list`` prints GUIDs rounded (``15.0E``) without ``-p``,
        which zfs-fuse lacks, so the exact GUIDs come from ``zfs get -p``.
        """
        listing = self.list_snapshots(dataset, recursive=False)
        out = self._run(
            ["get", "-H", "-p", "-o", "name,value", "guid", "-r", "-d", "1", dataset],
            f"cannot read the GUIDs of {dataset}'s snapshots",
            changes=False,
        )
        guids: dict[str, int] = {}
        for line in out.splitlines():
            name, _, value = line.partition("\t")
            if "@" in name and value.strip().isdigit():
                guids[name.partition("@")[2]] = int(value)
        return [
            SnapshotId(s.name, guids[s.name], s.createtxg, s.userrefs)
            for s in listing
            if s.dataset == dataset and s.name in guids
        ]

    def bookmark_ids(self, dataset: str) -> list[SnapshotId]:
        """``dataset``'s bookmarks (``ds#name``) with GUIDs; only where bookmarks work."""
        out = self._run(
            ["list", "-H", "-o", "name", "-t", "bookmark", "-r", "-d", "1", dataset],
            f"cannot list the bookmarks of {dataset}",
            changes=False,
        )
        found = []
        for line in out.splitlines():
            full = line.strip()
            if "#" not in full or full.partition("#")[0] != dataset:
                continue
            guid = self.get(full, "guid")
            createtxg = self.get(full, "createtxg")
            if guid and guid.isdigit():
                found.append(
                    SnapshotId(full.partition("#")[2], int(guid), _number(createtxg or ""))
                )
        return found

    def get(self, dataset: str, prop: str) -> str | None:
        """One property's exact value (``-p``); ``None`` for a user property that is unset."""
        out = self._run(
            ["get", "-H", "-p", "-o", "value", prop, dataset],
            f"cannot read {prop} of {dataset}",
            changes=False,
        ).strip()
        return None if out == "-" and ":" in prop else out

    def knows_property(self, dataset: str, prop: str) -> bool:
        """Whether this zfs has the property ``prop`` (feature detection: never assumed)."""
        result = self.runner.run(
            self._argv(["get", "-H", "-o", "value", prop, dataset]), changes=False, check=False
        )
        if result.ok:
            return True
        if any(phrase in result.stderr for phrase in _UNKNOWN_PROPERTY):
            return False
        raise _typed(CommandError(self._argv(["get"]), result.returncode, "", result.stderr), prop)

    # -- replication: acting -----------------------------------------------------

    def set(self, dataset: str, prop: str, value: str) -> None:
        """``zfs set PROP=VALUE DATASET`` (one property per call, as zfs-fuse needs)."""
        self._run(
            ["set", f"{prop}={value}", dataset], f"cannot set {prop} on {dataset}", changes=True
        )

    def hold(self, tag: str, snapshot: str) -> None:
        """Put the hold ``tag`` on ``snapshot`` (an existing one of that tag is fine)."""
        with contextlib.suppress(DatasetExists):
            self._run(["hold", tag, snapshot], f"cannot hold {snapshot}", changes=True)

    def release(self, tag: str, snapshot: str) -> None:
        """Take the hold ``tag`` off ``snapshot``; a snapshot without it is left alone."""
        result = self.runner.run(self._argv(["release", tag, snapshot]), changes=True, check=False)
        if (
            not result.ok
            and "no such tag" not in result.stderr
            and "does not exist" not in (result.stderr)
        ):
            raise _typed(
                CommandError(self._argv(["release"]), result.returncode, "", result.stderr),
                f"cannot release {snapshot}",
            )

    def bookmark(self, snapshot: str, bookmark: str) -> None:
        """``zfs bookmark ds@snap ds#name``; an existing bookmark of that name is fine."""
        with contextlib.suppress(DatasetExists):
            self._run(["bookmark", snapshot, bookmark], f"cannot bookmark {snapshot}", changes=True)

    def destroy(self, name: str) -> None:
        """Destroy one snapshot or bookmark named exactly (never a file system)."""
        if "@" not in name and "#" not in name:
            raise ValueError(f"{name} is not a snapshot or bookmark")
        self._run(["destroy", name], f"cannot destroy {name}", changes=True)

    def rollback(self, snapshot: str) -> None:
        """``zfs rollback SNAPSHOT`` without ``-r``: it refuses when newer snapshots exist."""
        self._run(["rollback", snapshot], f"cannot roll back to {snapshot}", changes=True)

    def send_argv(
        self,
        snapshot: str,
        *,
        base: str | None = None,
        raw: bool = False,
        resume_token: str | None = None,
    ) -> list[str]:
        """The ``zfs send`` command for a full stream, an incremental (``-i base``), or a resume."""
        if resume_token is not None:
            return self._argv(["send", "-t", resume_token])
        flags = ["-w"] if raw else []
        if base is not None:
            flags += ["-i", base]
        return self._argv(["send", *flags, snapshot])

    def receive_argv(self, dataset: str, *, resumable: bool) -> list[str]:
        """``zfs receive -u`` (never mounted) into ``dataset``; ``-s`` keeps a resumable state.

        Never ``-F``: a receive must not roll back or destroy anything on the target.
        """
        return self._argv(["receive", "-u", *(["-s"] if resumable else []), dataset])


def send_to(
    source: Zfs,
    target: Zfs,
    send: Sequence[str],
    receive: Sequence[str],
    *,
    what: str,
    progress: Progress | None = None,
) -> Piped:
    """``send | receive`` between two zfs programs (each where its runner runs it)."""
    try:
        return source.runner.pipe(
            send,
            receive,
            source_remote=source.remote,
            sink_remote=target.remote,
            progress=progress,
        )
    except CommandError as exc:
        raise _typed(exc, what) from None


_SUFFIX = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
_NUMBER = re.compile(r"(\d+(?:\.\d+)?)([KMGT]?)")


def _number(text: str) -> int:
    """A count from ``zfs list -H``. Without ``-p`` (which zfs-fuse lacks) zfs
    may print large counts rounded, like ``1.00K``: close enough for what
    nixmox uses them for (order is zfs's own ``-s createtxg``; holds only
    matter as zero or not)."""
    if text in ("-", ""):
        return 0
    found = _NUMBER.fullmatch(text)
    if found is None:
        raise ZfsError(f"zfs list printed {text!r} where nixmox expected a number")
    return int(float(found.group(1)) * _SUFFIX[found.group(2)])


def _batches(dataset: str, names: list[str]) -> list[list[str]]:
    batches: list[list[str]] = [[]]
    size = len(dataset) + 1
    for name in names:
        if batches[-1] and size + len(name) + 1 > BATCH_CHARS:
            batches.append([])
            size = len(dataset) + 1
        batches[-1].append(name)
        size += len(name) + 1
    return batches


# -- zpool ----------------------------------------------------------------------


def zpool_command(zfs_command: Sequence[str], zpool: Sequence[str] | None = None) -> list[str]:
    """``[zfs] zpool_command``, else the zfs command with its last word replaced by zpool."""
    if zpool:
        return list(zpool)
    last = zfs_command[-1]
    # /usr/sbin/zfs -> /usr/sbin/zpool: a path to zfs means zpool sits next to it.
    sibling = str(PurePath(last).with_name("zpool")) if "/" in last else "zpool"
    return [*zfs_command[:-1], sibling]


@dataclass(frozen=True)
class PoolStatus:
    """One pool as ``zpool list`` shows it; sizes as zpool prints them (``1.81T``)."""

    name: str
    health: str  # ONLINE, DEGRADED, FAULTED, OFFLINE, UNAVAIL, REMOVED, SUSPENDED
    size: str
    alloc: str
    free: str
    capacity: int  # percent allocated


class Zpool(_Adapter):
    """``zpool`` through the runner."""

    def __init__(self, runner: Runner, command: Sequence[str] = ("zpool",)) -> None:
        super().__init__(runner, command)
        self._json: bool | None = None

    def list_pools(self) -> list[PoolStatus]:
        """Every imported pool (columns zfs-fuse and OpenZFS both know)."""
        out = self._run(
            ["list", "-H", "-o", "name,health,size,alloc,free,cap"],
            "cannot list pools",
            changes=False,
        )
        pools = []
        for line in out.splitlines():
            fields = line.split("\t")
            cap = fields[-1].rstrip("%") if len(fields) == 6 else ""
            if not cap.isdigit():
                raise ZfsError(f"zpool list printed a line nixmox cannot read: {line!r}")
            name, health, size, alloc, free = fields[:5]
            pools.append(PoolStatus(name, health, size, alloc, free, int(cap)))
        return pools

    def status(self) -> str:
        """``zpool status`` of every pool, as zpool prints it (see ``zfs_cache.parse_status``)."""
        return self._run(["status"], "cannot read the pools' status", changes=False)

    def feature(self, pool: str, name: str) -> str | None:
        """Pool feature ``name``'s state (``enabled``, ``active``, ``disabled``), or ``None``
        where the pool has no feature flags (zfs-fuse, pool version 23) or none of that name."""
        result = self.runner.run(
            self._argv(["get", "-H", "-o", "value", f"feature@{name}", pool]),
            changes=False,
            check=False,
        )
        value = result.stdout.strip()
        return value if result.ok and value not in ("", "-") else None

    def run_change(self, args: Sequence[str], what: str) -> None:
        """A ``zpool`` command that changes a pool (``add``, ``remove``); skipped by --dry-run."""
        self._run(args, what, changes=True)

    # -- health, scrub and trim (the pool feature) ---------------------------

    def pool_status(self, pool: str, *, trim: bool = False) -> str:
        """``zpool status [-t] POOL`` as text; ``-t`` (TRIM state per vdev, OpenZFS
        0.8+) raises :class:`ZfsUsage` where zpool lacks it."""
        flags = ["-t"] if trim else []
        return self._run(
            ["status", *flags, pool], f"cannot read the status of {pool}", changes=False
        )

    def status_json(self, pool: str) -> Mapping[str, object] | None:
        """``zpool status -j --json-int POOL`` (OpenZFS 2.3+), or ``None`` where zpool
        has no JSON output; detected on the first call and remembered."""
        if self._json is False:
            return None
        try:
            out = self._run(
                ["status", "-j", "--json-int", pool],
                f"cannot read the status of {pool}",
                changes=False,
            )
        except ZfsUsage:
            self._json = False
            return None
        try:
            doc = json.loads(out)
        except ValueError:
            raise ZfsError(f"zpool status -j printed no JSON for {pool}") from None
        if not isinstance(doc, dict):
            raise ZfsError(f"zpool status -j printed no JSON object for {pool}")
        self._json = True
        return doc

    def space(self, pool: str) -> PoolSpace:
        """Size, allocated and free bytes, capacity and fragmentation of ``pool``.

        Exact bytes (``-p``) and fragmentation where zpool has them (OpenZFS);
        otherwise the rounded sizes zpool prints (zfs-fuse), fragmentation unknown.
        """
        try:
            out = self._run(
                ["list", "-H", "-p", "-o", "name,size,allocated,free,capacity,fragmentation", pool],
                f"cannot read the space of {pool}",
                changes=False,
            )
        except ZfsUsage:
            out = self._run(
                ["list", "-H", "-o", "name,size,allocated,free,capacity", pool],
                f"cannot read the space of {pool}",
                changes=False,
            )
        fields = out.strip().split("\t")
        if len(fields) not in (5, 6) or fields[0] != pool:
            raise ZfsError(f"zpool list printed a line nixmox cannot read: {out.strip()!r}")
        try:
            size, alloc, free = (size_bytes(f) for f in fields[1:4])
            capacity = int(fields[4].rstrip("%"))
            frag = fields[5].rstrip("%") if len(fields) == 6 else "-"
        except ValueError:
            raise ZfsError(
                f"zpool list printed a line nixmox cannot read: {out.strip()!r}"
            ) from None
        return PoolSpace(pool, size, alloc, free, capacity, int(frag) if frag.isdigit() else None)

    def scrub(self, pool: str) -> None:
        """Start a scrub of ``pool``, or resume a paused one (OpenZFS). zfs-fuse's
        zpool returns only when the scrub has finished."""
        self._run(["scrub", pool], f"cannot scrub {pool}", changes=True)

    def pause_scrub(self, pool: str) -> None:
        """``zpool scrub -p``: :class:`ZfsUsage` where zpool cannot pause (before OpenZFS 0.7)."""
        self._run(["scrub", "-p", pool], f"cannot pause the scrub of {pool}", changes=True)

    def stop_scrub(self, pool: str) -> None:
        """``zpool scrub -s``: cancel the scrub (the next one starts from the beginning)."""
        self._run(["scrub", "-s", pool], f"cannot stop the scrub of {pool}", changes=True)

    def trim(self, pool: str) -> None:
        """``zpool trim POOL``: :class:`ZfsUsage` where zpool has no trim (before OpenZFS 0.8)."""
        self._run(["trim", pool], f"cannot trim {pool}", changes=True)


@dataclass(frozen=True)
class PoolSpace:
    """A pool's space in bytes and its fragmentation (percent; ``None``: unknown)."""

    name: str
    size: int
    allocated: int
    free: int
    capacity: int  # percent allocated
    fragmentation: int | None


_BINARY = {"": 1, "B": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40, "P": 2**50, "E": 2**60}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)([KMGTPE]?)B?")


def size_bytes(text: str) -> int:
    """Bytes from a size zpool printed: exact (``-p``) or rounded (``250M``, ``1.81T``,
    powers of 1024); ``ValueError`` otherwise."""
    found = _SIZE.fullmatch(text.strip())
    if found is None:
        raise ValueError(f"not a size: {text!r}")
    return int(float(found.group(1)) * _BINARY[found.group(2)])
