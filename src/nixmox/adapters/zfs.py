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

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePath

from nixmox.adapters.runner import Runner, split_remote
from nixmox.core.errors import CommandError, NixmoxError

# OpenZFS refuses longer argument lists long before the kernel does; stay well
# below both so a batch never fails for its size.
BATCH_CHARS = 8000


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


_PHRASES: tuple[tuple[str, type[ZfsError]], ...] = (
    ("does not exist", DatasetNotFound),
    ("dataset is busy", DatasetBusy),
    ("pool or dataset is busy", DatasetBusy),
    ("has dependent clones", DatasetBusy),
    ("already exists", DatasetExists),
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


_VERSION = re.compile(r"^zfs-\d+\.\d+", re.MULTILINE)


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

    def get(self, prop: str, dataset: str) -> str:
        """One property's value as zfs prints it (``-`` when unset)."""
        out = self._run(
            ["get", "-H", "-o", "value", prop, dataset],
            f"cannot read {prop} of {dataset}",
            changes=False,
        )
        return out.strip()

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

    def destroy(self, dataset: str) -> None:
        """Destroy one file system or volume (never recursively)."""
        self._run(["destroy", dataset], f"cannot destroy {dataset}", changes=True)

    def rollback(self, snapshot: str, *, destroy_later: bool) -> None:
        """``zfs rollback [-r] SNAPSHOT``; ``destroy_later`` destroys newer snapshots."""
        flag = ["-r"] if destroy_later else []
        self._run(["rollback", *flag, snapshot], f"cannot roll back to {snapshot}", changes=True)

    def copy(self, snapshot: str, target: str) -> None:
        """A full, independent copy of ``snapshot`` as the new, unmounted ``target``
        (``zfs send | zfs recv -u``, one pipe where the zfs command runs)."""
        zfs = shlex.join(self.command)
        pipe = f"{zfs} send {shlex.quote(snapshot)} | {zfs} recv -u {shlex.quote(target)}"
        self._run_raw(["sh", "-c", pipe], f"cannot copy {snapshot} to {target}", changes=True)

    def _run_raw(self, argv: Sequence[str], what: str, *, changes: bool) -> str:
        try:
            return self.runner.run(list(argv), changes=changes).stdout
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

    def run_change(self, args: Sequence[str], what: str) -> None:
        """A ``zpool`` command that changes a pool (``add``, ``remove``); skipped by --dry-run."""
        self._run(args, what, changes=True)
