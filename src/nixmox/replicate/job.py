"""The replicate job: per source dataset, read both ends, send what is missing, prune the target.

One dataset's failure never stops the others; a dataset whose send failed
is not pruned. The source's newest common snapshot stays available for the
next run: a bookmark where the source pool has them, otherwise a hold (which
the snapshot job's retention treats as protected).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo

from nixmox.adapters.runner import Progress
from nixmox.adapters.zfs import (
    DatasetNotFound,
    SnapshotId,
    TargetModified,
    Zfs,
    ZfsError,
    Zpool,
    send_to,
)
from nixmox.core import interrupt
from nixmox.replicate.plan import (
    OWNER_PROPERTY,
    Decision,
    Discard,
    Ends,
    Kind,
    Send,
    bookmark_name,
    decide,
    hold_tag,
    newest_time,
    ours,
    prune_replica,
    replica_name,
)
from nixmox.rules.retention import Keep

log = logging.getLogger(__name__)

RESUME_PROPERTY = "receive_resume_token"


@dataclass(frozen=True)
class Features:
    """What both ends' ZFS can do, detected (never assumed) once per source and target."""

    resume: bool  # receive -s / send -t: both know receive_resume_token
    bookmarks: bool  # the source pool has feature@bookmarks
    raw: bool  # both know encryption and the target pool has feature@encryption

    def to_json(self) -> dict[str, bool]:
        return {"resume": self.resume, "bookmarks": self.bookmarks, "raw": self.raw}


def _pool(dataset: str) -> str:
    return dataset.split("/", 1)[0]


def _usable(state: str | None) -> bool:
    return state in ("enabled", "active")


def detect(
    source: Zfs, source_pool: Zpool, target: Zfs, target_pool: Zpool, src: str, dst: str
) -> Features:
    """Probe both ends: properties each zfs knows and the pools' feature flags."""
    resume = source.knows_property(src, RESUME_PROPERTY) and target.knows_property(
        dst, RESUME_PROPERTY
    )
    bookmarks = _usable(source_pool.feature(_pool(src), "bookmarks"))
    raw = (
        source.knows_property(src, "encryption")
        and target.knows_property(dst, "encryption")
        and _usable(target_pool.feature(_pool(dst), "encryption"))
    )
    return Features(resume, bookmarks, raw)


@dataclass
class DatasetResult:
    """What happened to one source dataset."""

    dataset: str
    replica: str
    kind: str = ""
    sent: list[str] = field(default_factory=list)  # snapshots now on the target
    bytes: int = 0
    seconds: float = 0.0
    used: list[str] = field(default_factory=list)  # resume, bookmark, hold, raw
    discarded: list[str] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)
    prune_failed: list[str] = field(default_factory=list)
    newest: str | None = None  # the newest nixmox snapshot on the target afterwards
    lag_seconds: float | None = None
    error: str | None = None
    fix: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and not self.prune_failed

    @property
    def rate(self) -> float:
        """Bytes per second over the sends (0 when nothing was sent)."""
        return self.bytes / self.seconds if self.seconds > 0 else 0.0


@dataclass
class Context:
    """One source tree to one target, with what the run needs to report."""

    target_name: str
    source: Zfs
    target: Zfs
    features: Features
    keep: Keep
    zone: tzinfo
    now: datetime
    discard: Discard
    progress: Callable[[str, int, float], None] | None = None


def _read_ends(ctx: Context, dataset: str, replica: str) -> Ends:
    snaps = ctx.source.snapshot_ids(dataset)
    bookmarks = ctx.source.bookmark_ids(dataset) if ctx.features.bookmarks else []
    exists = ctx.target.exists(replica)
    owner = ctx.target.get(replica, OWNER_PROPERTY) if exists else None
    replica_snaps = ctx.target.snapshot_ids(replica) if exists else []
    token = None
    if exists and ctx.features.resume:
        value = ctx.target.get(replica, RESUME_PROPERTY)
        token = value if value and value != "-" else None
    return Ends(dataset, replica, snaps, bookmarks, exists, owner, replica_snaps, token)


def _raw(ctx: Context, dataset: str) -> bool:
    """Whether ``dataset`` must go raw; refuses to send an encrypted dataset decrypted."""
    if not ctx.source.knows_property(dataset, "encryption"):
        return False
    if ctx.source.get(dataset, "encryption") in (None, "off", "-"):
        return False
    if not ctx.features.raw:
        raise ZfsError(
            f"{dataset} is encrypted and target {ctx.target_name} cannot receive raw streams; "
            "nixmox never sends it decrypted"
        )
    return True


def replicate_dataset(ctx: Context, dataset: str, replica: str) -> DatasetResult:
    """Bring ``replica`` up to ``dataset``'s newest nixmox snapshot, then prune it."""
    result = DatasetResult(dataset, replica)
    try:
        ends = _read_ends(ctx, dataset, replica)
        decision = decide(ends, ctx.discard, target=ctx.target_name)
        result.kind = decision.kind.value
        if decision.kind is Kind.BLOCKED:
            result.error, result.fix = decision.error, decision.fix
            _report_lag(ctx, result, ends.replica_snapshots)
            return result
        raw = _raw(ctx, dataset)
        if raw:
            _use(result, "raw")
        if decision.kind is Kind.RESUME:
            _resume(ctx, ends, result)
            ends = _read_ends(ctx, dataset, replica)
            decision = decide(ends, ctx.discard, target=ctx.target_name)
            if decision.kind is Kind.BLOCKED:
                result.error, result.fix = decision.error, decision.fix
                return result
        _prepare_target(ctx, decision, replica, result)
        _send_chain(ctx, decision, ends, raw, result)
    except ZfsError as exc:
        result.error = _explain(exc, replica)
        if isinstance(exc, TargetModified):
            result.fix = (
                f"see what changed on {replica}; to roll it back to its newest common snapshot "
                f"(losing those changes): `nixmox replicate --dataset {dataset} "
                f"--discard {replica}`"
            )
    if result.sent:
        _anchor(ctx, dataset, result)
    if result.error is not None:
        # A failed send prunes nothing: the target keeps every copy it has.
        _report_lag(ctx, result, _safe_ids(ctx.target, replica))
        return result
    after = _safe_ids(ctx.target, replica)
    _prune(ctx, replica, after, result)
    _report_lag(ctx, result, [s for s in after if s.name not in result.pruned])
    return result


def _use(result: DatasetResult, feature: str) -> None:
    if feature not in result.used:
        result.used.append(feature)


def _explain(exc: ZfsError, replica: str) -> str:
    if isinstance(exc, TargetModified):
        return f"{replica} was written to since its newest snapshot; nixmox does not roll it back"
    return str(exc)


def _safe_ids(zfs: Zfs, dataset: str) -> list[SnapshotId]:
    try:
        return zfs.snapshot_ids(dataset)
    except ZfsError:
        return []


def _prepare_target(ctx: Context, decision: Decision, replica: str, result: DatasetResult) -> None:
    """Destroy exactly the snapshots and roll back exactly what the user named."""
    if decision.kind is not Kind.INCREMENTAL:
        return
    for name in decision.discard:
        ctx.target.destroy(f"{replica}@{name}")
        result.discarded.append(f"{replica}@{name}")
    if decision.rollback and decision.common is not None:
        ctx.target.rollback(f"{replica}@{decision.common}")
        result.discarded.append(f"{replica} (rolled back to {decision.common})")


def _progress(ctx: Context, dataset: str) -> Progress | None:
    if ctx.progress is None:
        return None
    report = ctx.progress
    return lambda moved, seconds: report(dataset, moved, seconds)


def _resume(ctx: Context, ends: Ends, result: DatasetResult) -> None:
    assert ends.resume_token is not None
    piped = send_to(
        ctx.source,
        ctx.target,
        ctx.source.send_argv("", resume_token=ends.resume_token),
        ctx.target.receive_argv(ends.replica, resumable=True),
        what=f"cannot resume the receive into {ends.replica}",
        progress=_progress(ctx, ends.source),
    )
    _use(result, "resume")
    result.bytes += piped.bytes
    result.seconds += piped.seconds


def _send_chain(
    ctx: Context, decision: Decision, ends: Ends, raw: bool, result: DatasetResult
) -> None:
    first_full = decision.kind is Kind.FULL
    for send in decision.sends:
        if interrupt.stopping():
            result.error = (
                f"stopped before {send.snapshot}: interrupted by {interrupt.signal_name()}"
            )
            return
        _send_one(ctx, ends, send, raw, result)
        result.sent.append(send.snapshot)
        if first_full and not ctx.source.runner.dry_run:
            # Mark it ours at once: a later failure must not leave an unowned replica.
            ctx.target.set(ends.replica, OWNER_PROPERTY, ends.source)
        first_full = False


def _send_one(ctx: Context, ends: Ends, send: Send, raw: bool, result: DatasetResult) -> None:
    base = None
    if send.base is not None:
        base = f"{ends.source}{send.base}" if send.base.startswith("#") else send.base[1:]
        if send.base.startswith("#"):
            _use(result, "bookmark")
    piped = send_to(
        ctx.source,
        ctx.target,
        ctx.source.send_argv(f"{ends.source}@{send.snapshot}", base=base, raw=raw),
        ctx.target.receive_argv(ends.replica, resumable=ctx.features.resume),
        what=f"cannot send {ends.source}@{send.snapshot} to {ends.replica}",
        progress=_progress(ctx, ends.source),
    )
    result.bytes += piped.bytes
    result.seconds += piped.seconds
    log.info(
        "%s@%s -> %s: %d bytes in %.1f s",
        ends.source,
        send.snapshot,
        ends.replica,
        piped.bytes,
        piped.seconds,
    )


def _anchor(ctx: Context, dataset: str, result: DatasetResult) -> None:
    """Keep the newest sent snapshot's data reachable on the source for the next run."""
    newest = result.sent[-1]
    try:
        if ctx.features.bookmarks:
            mark = bookmark_name(ctx.target_name, newest)
            ctx.source.bookmark(f"{dataset}@{newest}", f"{dataset}#{mark}")
            prefix = bookmark_name(ctx.target_name, "")
            for old in ctx.source.bookmark_ids(dataset):
                if old.name.startswith(prefix) and old.name != mark:
                    ctx.source.destroy(f"{dataset}#{old.name}")
            _use(result, "bookmark")
            return
        tag = hold_tag(ctx.target_name)
        ctx.source.hold(tag, f"{dataset}@{newest}")
        for snap in ctx.source.snapshot_ids(dataset):
            if snap.name != newest and snap.userrefs > 0:
                ctx.source.release(tag, f"{dataset}@{snap.name}")
        _use(result, "hold")
    except ZfsError as exc:
        log.warning("%s: the next run's base is not protected: %s", dataset, exc)


def _prune(ctx: Context, replica: str, after: list[SnapshotId], result: DatasetResult) -> None:
    if ctx.keep.keeps_everything:
        return
    mine = ours(after)
    common = mine[-1].name if mine else None  # the next run's base: never pruned
    plan = prune_replica(replica, after, ctx.keep, ctx.zone, common=common)
    if not plan.remove:
        return
    failed = dict(ctx.target.destroy_snapshots(replica, plan.remove))
    result.pruned = [n for n in plan.remove if n not in failed]
    result.prune_failed = [str(exc) for exc in failed.values()]


def _report_lag(ctx: Context, result: DatasetResult, snapshots: Sequence[SnapshotId]) -> None:
    mine = ours(snapshots)
    if not mine:
        return
    result.newest = mine[-1].name
    when = newest_time(mine)
    if when is not None:
        result.lag_seconds = max((ctx.now - when).total_seconds(), 0.0)


def tree(source: Zfs, root: str, recursive: bool) -> list[str]:
    """The source datasets one declared entry covers, parents first."""
    if not recursive:
        if not source.exists(root):
            raise DatasetNotFound(f"dataset {root} does not exist")
        return [root]
    return source.descendants(root)


def replicas(root: str, target_root: str, datasets: list[str]) -> list[tuple[str, str]]:
    """Each source dataset with where it is received."""
    return [(ds, replica_name(target_root, root, ds)) for ds in datasets]
