"""Installing and removing nixmox's systemd units on a Debian/Proxmox host.

``install`` writes what :func:`nixmox.schedule.units.render_units` rendered into
``ROOT/etc/systemd/system`` and records every file (with its SHA-256) and
every directory it created in a manifest in the state directory, so that
``uninstall`` removes exactly that and nothing else, and refuses to remove a
file changed since. Without a root both also talk to systemd (``systemctl``
through the runner); with one they only write files, e.g. into an image.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from nixmox import __version__
from nixmox.adapters.journal import Journal, ensure_state_dir
from nixmox.adapters.runner import Runner
from nixmox.core.errors import CommandNotFound, NixmoxError
from nixmox.core.files import write_atomically
from nixmox.schedule.units import job_of_unit, timers

log = logging.getLogger("nixmox.units")

UNIT_DIR = PurePosixPath("/etc/systemd/system")
MANIFEST = "installed-units.json"
_MANIFEST_FORMAT = 1
#: A failed run that ended this recently (seconds) has sent its own notification.
TOLD_WITHIN = 600.0
# Only names nixmox renders may ever be removed, whatever the manifest says.
_OUR_UNIT = re.compile(r"nixmox-[a-z-]+(@)?\.(service|timer)")


class UnitFileConflict(NixmoxError):
    """A unit file is in the way: not written by nixmox, or changed since."""


@dataclass(frozen=True)
class Layout:
    """Where the units and the manifest live, under ``root`` (``/`` for the host)."""

    root: Path
    state_dir: PurePosixPath

    def inside(self, path: PurePosixPath) -> Path:
        """``path`` (absolute, as seen on the host) under the root."""
        return self.root / path.relative_to("/")

    @property
    def unit_dir(self) -> Path:
        return self.inside(UNIT_DIR)

    @property
    def manifest(self) -> Path:
        return self.inside(self.state_dir / MANIFEST)


@dataclass
class Manifest:
    """What one ``install`` wrote: host paths -> SHA-256, timers, directories."""

    files: dict[str, str] = field(default_factory=dict)
    timers: list[str] = field(default_factory=list)
    created_dirs: list[str] = field(default_factory=list)
    inventory: str | None = None

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": _MANIFEST_FORMAT,
                "nixmox": __version__,
                "inventory": self.inventory,
                "files": self.files,
                "timers": self.timers,
                "created_dirs": self.created_dirs,
            },
            indent=2,
            sort_keys=True,
        )


@dataclass
class Report:
    """What install/uninstall did, for the CLI to print."""

    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    already_gone: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_manifest(layout: Layout) -> Manifest | None:
    """The manifest of the last install under ``layout``, or None if there is none."""
    try:
        data: Any = json.loads(layout.manifest.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise NixmoxError(f"{layout.manifest}: cannot read the install manifest: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != _MANIFEST_FORMAT:
        raise NixmoxError(f"{layout.manifest}: not an install manifest nixmox understands")
    shapes = {"files": dict, "timers": list, "created_dirs": list}
    for key, shape in shapes.items():
        if not isinstance(data.get(key, shape()), shape):
            raise NixmoxError(f"{layout.manifest}: {key} is not a {shape.__name__}; refusing")
    manifest = Manifest(
        files=dict(data.get("files", {})),
        timers=list(data.get("timers", [])),
        created_dirs=list(data.get("created_dirs", [])),
        inventory=data.get("inventory"),
    )

    # A tampered manifest must not make uninstall stop or delete what is not
    # nixmox's: every entry is checked against what install can write.
    def refuse(what: str) -> NixmoxError:
        return NixmoxError(
            f"{layout.manifest} lists {what}, which nixmox never writes; refusing to use it"
        )

    for name in manifest.files:
        path = PurePosixPath(name)
        if path.parent != UNIT_DIR or not _OUR_UNIT.fullmatch(path.name):
            raise refuse(name)
        if not isinstance(manifest.files[name], str):
            raise refuse(f"a bad checksum for {name}")
    for timer in manifest.timers:
        if (
            not isinstance(timer, str)
            or not _OUR_UNIT.fullmatch(timer)
            or not timer.endswith(".timer")
            or str(UNIT_DIR / timer) not in manifest.files
        ):
            raise refuse(f"the timer {timer!r}")
    allowed = _creatable_dirs(layout)
    for directory in manifest.created_dirs:
        if not isinstance(directory, str) or directory not in allowed:
            raise refuse(f"the directory {directory!r}")
    return manifest


def _creatable_dirs(layout: Layout) -> set[str]:
    """The directories ``install`` may create: the unit directory, the state
    directory, and their parents."""
    out: set[str] = set()
    for path in (UNIT_DIR, layout.state_dir):
        while path != path.parent:
            out.add(str(path))
            path = path.parent
    return out


def _check_unchanged(layout: Layout, manifest: Manifest, names: Sequence[str], doing: str) -> None:
    changed = [
        name
        for name in names
        if layout.inside(PurePosixPath(name)).exists()
        and _sha256(layout.inside(PurePosixPath(name))) != manifest.files[name]
    ]
    if changed:
        shown = ", ".join(str(layout.inside(PurePosixPath(name))) for name in changed)
        raise UnitFileConflict(
            f"refusing to {doing}: {shown} changed since `nixmox install` wrote "
            "it; nothing was changed (restore or remove it yourself)"
        )


def _make_dirs(layout: Layout, path: PurePosixPath, created: list[str], mode: int = 0o755) -> None:
    """Create ``path`` under the root, recording each directory made (the last one ``mode``)."""
    missing: list[PurePosixPath] = []
    current = path
    while current != current.parent and not layout.inside(current).exists():
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        layout.inside(directory).mkdir(mode=mode if directory == path else 0o755)
        layout.inside(directory).chmod(mode if directory == path else 0o755)
        created.append(str(directory))


def _write_atomically(path: Path, text: str, mode: int) -> None:
    write_atomically(path, text.encode("utf-8"), mode)


def _systemctl(runner: Runner, *args: str, report: list[str]) -> None:
    report.append("systemctl " + " ".join(args))
    try:
        runner.run(["systemctl", *args])
    except CommandNotFound:
        raise NixmoxError(
            "systemctl not found: this host does not run systemd (use --root DIR to only "
            "write the files)"
        ) from None


def install(
    layout: Layout,
    units: Mapping[str, str],
    *,
    runner: Runner | None,
    inventory: str | None = None,
) -> Report:
    """Write ``units`` (name -> text) and record them; enable the timers via ``runner``.

    ``runner`` None means only write files (``--root``). A file already in
    the way that the last install did not write, or changed since, stops the
    install before anything is written.
    """
    if not layout.root.is_dir():
        raise NixmoxError(f"{layout.root}: no such directory to install into")
    previous = read_manifest(layout) or Manifest()
    wanted = {str(UNIT_DIR / name): text for name, text in units.items()}
    for name in wanted:
        path = layout.inside(PurePosixPath(name))
        if path.exists() and name not in previous.files:
            raise UnitFileConflict(
                f"{path} exists and was not written by `nixmox install`; nothing was "
                "changed (move it away first)"
            )
    stale = sorted(set(previous.files) - set(wanted))
    _check_unchanged(
        layout, previous, [n for n in wanted if n in previous.files] + stale, "install"
    )

    report = Report()
    created = list(previous.created_dirs)
    _make_dirs(layout, UNIT_DIR, created)
    # The state directory holds the journal and the lock: private to root.
    _make_dirs(layout, layout.state_dir, created, 0o700)
    stale_timers = [t for t in previous.timers if str(UNIT_DIR / t) in stale]
    if runner is not None and stale_timers:
        _systemctl(runner, "disable", "--now", *stale_timers, report=report.commands)
    for name in stale:
        with contextlib.suppress(FileNotFoundError):
            layout.inside(PurePosixPath(name)).unlink()
        report.removed.append(name)

    manifest = Manifest(timers=timers(dict(units)), created_dirs=created, inventory=inventory)
    for name, text in wanted.items():
        path = layout.inside(PurePosixPath(name))
        data = text.encode("utf-8")
        manifest.files[name] = hashlib.sha256(data).hexdigest()
        if path.exists() and path.read_bytes() == data:
            report.unchanged.append(name)
            continue
        _write_atomically(path, text, 0o644)
        report.written.append(name)
    # The manifest can name hosts and paths; keep it as private as the journal.
    _write_atomically(layout.manifest, manifest.to_json() + "\n", 0o600)

    if runner is not None:
        _systemctl(runner, "daemon-reload", report=report.commands)
        _systemctl(runner, "enable", "--now", *manifest.timers, report=report.commands)
    return report


def uninstall(layout: Layout, *, runner: Runner | None) -> Report:
    """Remove exactly what the last ``install`` under ``layout`` wrote.

    Refuses (removing nothing) when a file changed since it was written.
    """
    manifest = read_manifest(layout)
    if manifest is None:
        raise NixmoxError(
            f"nothing to uninstall: {layout.manifest} not found (`nixmox install` writes it)"
        )
    _check_unchanged(layout, manifest, sorted(manifest.files), "uninstall")
    report = Report()
    present_timers = [t for t in manifest.timers if layout.inside(UNIT_DIR / t).exists()]
    if runner is not None and present_timers:
        _systemctl(runner, "disable", "--now", *present_timers, report=report.commands)
    for name in sorted(manifest.files):
        try:
            layout.inside(PurePosixPath(name)).unlink()
            report.removed.append(name)
        except FileNotFoundError:
            report.already_gone.append(name)
    layout.manifest.unlink()
    if runner is not None:
        _systemctl(runner, "daemon-reload", report=report.commands)
    # Directories install created go too, if nothing else has moved in since
    # (the state directory keeps the journal once a job has run).
    for directory in reversed(manifest.created_dirs):
        with contextlib.suppress(OSError):
            layout.inside(PurePosixPath(directory)).rmdir()
    return report


def systemd_version(runner: Runner) -> int | None:
    """This machine's systemd version (``systemctl --version``), or None if unknown."""
    try:
        result = runner.run(["systemctl", "--version"], changes=False, check=False, timeout=10)
    except NixmoxError:
        return None
    found = re.match(r"systemd (\d+)", result.stdout)
    return int(found.group(1)) if found else None


def failure_facts(unit: str, runner: Runner) -> dict[str, Any]:
    """What is known of ``unit``'s failure: its job and, when systemctl can tell,
    systemd's own verdict (``Result=``: exit-code, timeout, signal, ...)."""
    job = job_of_unit(unit)
    facts: dict[str, Any] = {"unit": unit, "job": job.name if job else None}
    try:
        shown = runner.run(
            ["systemctl", "show", unit, "--property=Result,ExecMainStatus,ExecMainPID"],
            changes=False,
            check=True,
            timeout=10,
        )
        for line in shown.stdout.splitlines():
            key, _, value = line.partition("=")
            facts[key.strip().lower()] = value.strip()
    except NixmoxError as exc:
        facts["systemctl"] = str(exc)
    return facts


def record_failure(facts: dict[str, Any], state_dir: Path) -> str:
    """Journal a unit's failure (the OnFailure= hook); return the log line.

    Raises :class:`NixmoxError` when the journal cannot be written."""
    try:
        journal = Journal(ensure_state_dir(state_dir))
        try:
            run_id = journal.start("unit-failed")
            journal.finish(run_id, "failed", facts)
        finally:
            journal.close()
    except (sqlite3.Error, OSError, NixmoxError) as exc:
        raise NixmoxError(f"the run journal could not record it: {exc}") from None
    why = facts.get("result")
    return (
        f"{facts['unit']} failed" + (f" ({why})" if why else "") + "; recorded in the run journal"
    )


def told_by_its_run(facts: Mapping[str, Any], state_dir: Path, now: float) -> bool:
    """Whether the failed unit's own run ended (not ``ok``) and so sent its own
    notification: the newest run of its job, finished by that run itself (not
    found dead and closed by a later open of the journal: a killed run told
    nobody), by the unit's main process when systemd names it, else within the
    last :data:`TOLD_WITHIN` seconds."""
    job = job_of_unit(str(facts.get("unit")))
    if job is None:
        return False
    try:
        journal = Journal(state_dir)
        try:
            runs = journal.runs(" ".join(job.command), limit=1, exact=True)
        finally:
            journal.close()
    except (NixmoxError, sqlite3.Error, OSError):
        return False
    if not runs:
        return False
    last = runs[0]
    if last.ended is None or last.result in (None, "ok") or last.summary.get("vanished"):
        return False
    main = str(facts.get("execmainpid", ""))
    if main.isdigit() and int(main) > 0:
        return last.pid == int(main)
    return now - last.ended <= TOLD_WITHIN
