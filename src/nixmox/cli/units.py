"""`nixmox render systemd`, `nixmox install`, `nixmox uninstall` and the
hidden `nixmox unit-failed UNIT` (the units' OnFailure= hook)."""

from __future__ import annotations

import logging
import os
import shutil
import sys
import time
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from nixmox.adapters.journal import DEFAULT_STATE_DIR, state_dir
from nixmox.adapters.runner import Runner
from nixmox.core.errors import ConfigError, NixmoxError
from nixmox.inventory.load import find_inventory, load_inventory
from nixmox.runtime.run import with_overrides
from nixmox.schedule import install as installer
from nixmox.schedule.units import UnitSettings, render_units

log = logging.getLogger("nixmox.units")

#: Overrides where the units find nixmox (tests, unusual installs).
EXECUTABLE_ENV = "NIXMOX_EXECUTABLE"
#: Where the jobs keep their journal, lock and manifest (the units get it baked in).
STATE_ENV = "NIXMOX_STATE_DIR"


def resolve_executable(
    explicit: Path | None, environ: Mapping[str, str] | None = None, argv0: str | None = None
) -> Path:
    """The absolute path of the installed ``nixmox`` the units should run.

    ``--executable``, then ``$NIXMOX_EXECUTABLE``, then the script this
    process was started as, then ``nixmox`` on PATH. Symlinks are kept (a
    stable ``/usr/local/bin/nixmox`` survives upgrades better than its target).
    """
    env = os.environ if environ is None else environ
    started_as = sys.argv[0] if argv0 is None else argv0
    candidates: list[tuple[str, str | None]] = [
        ("--executable", str(explicit) if explicit is not None else None),
        (EXECUTABLE_ENV, env.get(EXECUTABLE_ENV) or None),
    ]
    if os.path.basename(started_as) == "nixmox":
        candidates.append(("the running script", started_as))
    candidates.append(("PATH", shutil.which("nixmox")))
    for source, value in candidates:
        if value is None:
            continue
        path = Path(os.path.abspath(value))
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise ConfigError(f"{source}: {path} is not an executable file")
        return path
    raise ConfigError(
        f"cannot find the installed nixmox for the units: pass --executable PATH "
        f"or set {EXECUTABLE_ENV}"
    )


def _render(
    config: Path | None, executable: Path | None, runner: Runner
) -> tuple[Path, dict[str, str]]:
    path = Path(os.path.abspath(find_inventory(config)))
    inv = load_inventory(path)
    settings = UnitSettings(
        executable=PurePosixPath(resolve_executable(executable)),
        config=PurePosixPath(path),
        state_dir=PurePosixPath(os.path.abspath(state_dir())),
        systemd_version=installer.systemd_version(runner),
    )
    units = render_units(inv, settings)
    if os.environ.get(STATE_ENV) and Path(settings.state_dir) != DEFAULT_STATE_DIR:
        # The caller's environment ends up in files that outlive it: say so.
        log.info(
            "the units use %s=%s from your environment (the default is %s)",
            STATE_ENV,
            settings.state_dir,
            DEFAULT_STATE_DIR,
        )
    return path, units


def render(config: Path | None, out: Path | None, executable: Path | None) -> int:
    """Write the units into ``out`` and print each file written; without ``out``,
    print the units themselves, each under its installed path as `systemctl cat` does."""
    _, units = _render(config, executable, Runner())
    if out is None:
        texts = [f"# {installer.UNIT_DIR / name}\n{text}" for name, text in units.items()]
        sys.stdout.write("\n".join(texts))
        return 0
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, text in units.items():
            (out / name).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{out}: cannot write the units: {exc.strerror}") from None
    for name in units:
        print(out / name)
    return 0


def _layout(root: Path | None) -> installer.Layout:
    return installer.Layout(
        root=Path(os.path.abspath(root)) if root is not None else Path("/"),
        state_dir=PurePosixPath(os.path.abspath(state_dir())),
    )


def _show(layout: installer.Layout, verb: str, names: list[str], note: str = "") -> None:
    """One line per unit file, with its path under the root."""
    for name in names:
        print(f"{verb} {layout.inside(PurePosixPath(name))}{note}")


def install(config: Path | None, root: Path | None, executable: Path | None) -> int:
    """Write the units (under ``root``), record them, enable the timers (no root)."""
    runner = Runner()
    inventory, units = _render(config, executable, runner)
    layout = _layout(root)
    report = installer.install(
        layout, units, runner=None if root is not None else runner, inventory=str(inventory)
    )
    _show(layout, "wrote", report.written)
    _show(layout, "unchanged", report.unchanged)
    _show(layout, "removed", report.removed, " (no longer scheduled)")
    print("".join(f"ran {command}\n" for command in report.commands), end="")
    if root is not None:
        print(f"manifest {layout.manifest}; nothing enabled (--root)")
    return 0


def uninstall(root: Path | None) -> int:
    """Disable (no root) and remove what the last install wrote."""
    layout = _layout(root)
    report = installer.uninstall(layout, runner=None if root is not None else Runner())
    print("".join(f"ran {command}\n" for command in report.commands), end="")
    _show(layout, "removed", report.removed)
    _show(layout, "already gone", report.already_gone)
    return 0


def unit_failed(unit: str, config: Path | None = None) -> int:
    """Journal the failure of ``unit``, log one line and notify; exit 0 (the hook did its job).

    The notification goes out unless the unit's own run ended with a failure
    moments ago (it has told already), and always when the journal cannot be
    written or read: a failure nobody hears of is the one thing the hook is for.
    """
    facts = installer.failure_facts(unit, Runner())
    directory = state_dir()
    problem: str | None = None
    try:
        log.warning("%s", installer.record_failure(facts, directory))
    except NixmoxError as exc:
        problem = str(exc)
        log.error("%s failed; %s", unit, problem)
    if problem is None and installer.told_by_its_run(facts, directory, time.time()):
        return 0
    try:
        inv = with_overrides(load_inventory(find_inventory(config)))
    except NixmoxError as exc:
        log.error("no notification about %s: %s", unit, exc)
        return 0
    from nixmox.observe.notify import notify_unit_failure

    notify_unit_failure(inv, facts, problem)
    return 0
