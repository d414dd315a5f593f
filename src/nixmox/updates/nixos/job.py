"""`nixmox update nixos`: one transaction per NixOS guest.

1. Record the generation (system profile link, ``/run/current-system``,
   ``/run/booted-system``) and read the working-tree ``flake.lock``.
2. Proxmox snapshot of the guest (disk only), taken *before* the lock is
   touched so that rolling it back also restores the lock.
3. Update the lock (whole, or ``update.inputs`` with the syntax of the guest's
   nix). Unchanged lock, and the running system built from it (the
   :data:`BUILT_MARKER` nixmox writes after each success): the snapshot just
   taken is deleted and nothing is built ("unchanged").
4. ``nixos-rebuild build``, then ``nix store diff-closures`` (best effort, shown).
   A failed build switches nothing: the old ``flake.lock`` is written back (so
   the next run tries again instead of seeing an "unchanged" lock) and the
   snapshot is deleted (nothing in the guest changed).
5. Note the units already failed (the health baseline), arm a dead-man switch
   in the guest (a ``systemd-run --collect --on-active`` timer that switches
   back to the recorded generation), switch to exactly the closure built
   (``nix-env --set``, then ``switch-to-configuration switch`` in a transient
   unit of its own, as nixos-rebuild runs it), check health, disarm on success.
6. On failure: switch back to the recorded generation inside the guest; when
   the guest no longer answers (or that switch fails), roll the Proxmox snapshot
   back. Either way the old ``flake.lock`` is restored, the snapshot is kept,
   and the result is "rolled-back" naming the rollback.
7. After success: commit the lock (``commit_lock``, as ``nixmox``) or leave it
   modified; delete the pre-update snapshot unless ``keep_snapshot``; prune
   nixmox's update snapshots with ``update.snapshots`` (default keep-last 3;
   snapshots of failed updates count too); a kernel/initrd change is a reboot,
   done through the API when the guest's reboot policy is ``allowed`` (or ``window``
   and now is inside it), else
   reported as pending.

The pure decisions (version → lock argv, parsing, health verdicts, reboot needed)
live in :mod:`nixmox.updates.nixos.decisions`; :class:`NixosUpdate`
does the I/O.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import shlex
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import tzinfo

from nixmox.adapters.proxmox.client import Proxmox
from nixmox.adapters.proxmox.cluster import guest_path
from nixmox.adapters.proxmox.tasks import wait
from nixmox.core.clock import SYSTEM_CLOCK, Clock
from nixmox.core.errors import NixmoxError
from nixmox.core.progress import SILENT, Progress
from nixmox.core.words import plural
from nixmox.inventory.model import Guest, HealthChecks, UpdateSettings
from nixmox.rules.retention import Keep
from nixmox.rules.timespan import parse_timespan
from nixmox.updates.guest_access import GuestAccess, GuestUnreachable
from nixmox.updates.guest_snapshots import (
    DEFAULT_KEEP,
    GuestSnapshots,
    SnapshotUnsupported,
    update_snapshot_name,
)
from nixmox.updates.nixos.decisions import (
    BUILD_DIR,
    BUILT_MARKER,
    DEADMAN,
    DEFAULT_FLAKE,
    LIST_FAILED,
    NEW_UPDATE_SYNTAX,
    NIX,
    NO_FLAKE,
    PROFILE,
    READ_BOOT_FILES,
    READ_GENERATION,
    RESET_OWN_FAILED,
    SWITCH,
    Generation,
    Health,
    build_script,
    deadman_argv,
    lock_argv,
    lock_digest,
    lock_unchanged,
    parse_failed_units,
    parse_generation,
    parse_nix_version,
    read_lock_script,
    reboot_needed,
    switch_argv,
    system_state,
    unit_stamp,
)
from nixmox.updates.outcome import UpdateOutcome
from nixmox.updates.reboot_policy import guest_stop

log = logging.getLogger(__name__)

HTTP_TIMEOUT = 10.0
POLL = 2.0


class NixosUpdateError(NixmoxError):
    """A step of the update failed; the message says which and why."""


def http_status(url: str, timeout: float = HTTP_TIMEOUT) -> str | None:
    """None when ``url`` answers 2xx, else why not (fetched from the nixmox side)."""
    # Directly, never through a proxy from the environment: a health URL is on the LAN.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as response:
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        return f"{url} answered {exc.returncode}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"{url}: {reason}"
    return None if 200 <= status < 300 else f"{url} answered {status}"


# -- the transaction ------------------------------------------------------------


class _Unreachable(Exception):
    """Internal: the guest stopped answering during the switch or the checks."""


@dataclass
class NixosUpdate:
    """Updates one NixOS guest through ``access``; ``snapshots`` is its Proxmox side."""

    guest: Guest
    access: GuestAccess
    snapshots: GuestSnapshots | None
    zone: tzinfo
    dry_run: bool = False
    fetch: Callable[[str], str | None] = http_status
    clock: Clock = SYSTEM_CLOCK
    token: Callable[[], str] = lambda: secrets.token_hex(3)
    #: Hears the guest's start, each step as it happens, the waits and the end.
    progress: Progress = SILENT
    _build_started: bool = field(default=False, init=False, repr=False)
    _current: UpdateOutcome | None = field(default=None, init=False, repr=False)

    @property
    def settings(self) -> UpdateSettings:
        assert self.guest.update is not None
        return self.guest.update

    @property
    def flake(self) -> str:
        return self.settings.flake or DEFAULT_FLAKE

    @property
    def attr(self) -> str:
        return self.settings.host or self.guest.name

    @property
    def lock_path(self) -> str:
        return self.flake.rstrip("/") + "/flake.lock"

    # -- reading ------------------------------------------------------------------

    def read_generation(self) -> Generation:
        reply = self.access.run(READ_GENERATION, changes=False)
        try:
            gen = parse_generation(reply.stdout)
        except ValueError as exc:
            raise NixosUpdateError(f"cannot read the current generation: {exc}") from None
        if gen.uid not in (None, "0"):
            raise NixosUpdateError(
                f"{self.access.where} runs as uid {gen.uid}, not root: an update sets the "
                'system profile and switches it (update.ssh = "root@GUEST")'
            )
        return gen

    def nix_version(self) -> tuple[int, ...]:
        reply = self.access.run(["nix", "--version"], changes=False)
        version = parse_nix_version(reply.stdout) if reply.ok else None
        if version is None:
            raise NixosUpdateError(f"cannot run nix in the guest: {reply.why()}")
        return version

    def read_lock(self) -> str:
        """The working-tree flake.lock ("" when there is none yet)."""
        reply = self.access.run(read_lock_script(self.flake), changes=False)
        if reply.returncode == NO_FLAKE:
            raise NixosUpdateError(
                f"no flake.nix in {self.flake}: a guest made from a template has no flake to "
                "update until you put one there (docs/nixos.md, first step), or set update.flake"
            )
        return reply.stdout

    def _built(self) -> str | None:
        """The marker's value, or None when nixmox never finished an update here."""
        path = shlex.quote(BUILT_MARKER)
        text = self.access.run(f"if [ -e {path} ]; then cat {path}; fi", changes=False).stdout
        return text.strip() or None

    def _mark_built(self, o: UpdateOutcome, lock: str) -> None:
        """Record the lock the running system comes from (see :data:`BUILT_MARKER`)."""
        digest = lock_digest(lock)
        directory = shlex.quote(BUILT_MARKER.rsplit("/", 1)[0])
        reply = self.access.run(
            f"mkdir -p {directory} && printf '%s\\n' {digest} > {shlex.quote(BUILT_MARKER)}"
        )
        if not reply.ok:  # only costs a rebuild next time
            log.warning("%s: cannot record the built lock: %s", self.guest.name, reply.why())
        else:
            o.step(f"recorded the built lock in {BUILT_MARKER}")

    # -- the plan (--dry-run) ---------------------------------------------------------

    def plan(self) -> UpdateOutcome:
        """What a run would do, changing nothing (read-only commands still run)."""
        g, u = self.guest, self.settings
        o = UpdateOutcome(g.name, g.vmid, "dry-run")
        o.step(f"reach the guest by {self.access.where}")
        problem = None
        version: tuple[int, ...] | None = None
        why = self._reachable()
        if why is None:
            try:
                gen = self.read_generation()
                o.step(f"record generation {gen.number} ({gen.current})")
                version = self.nix_version()
                self.read_lock()
            except (NixosUpdateError, GuestUnreachable) as exc:
                problem = f"cannot read the guest: {exc}"
                o.step(problem)
        else:
            problem = f"guest not reachable: {why}"
            o.step(problem)
        kind = self.snapshots.kind if self.snapshots is not None else "?"
        o.step(f"snapshot {kind}/{g.vmid} as {update_snapshot_name(self.clock.now())} (disk only)")
        if self.snapshots is not None:
            try:
                self.snapshots.require()
            except SnapshotUnsupported as exc:
                problem = f"{problem}; {exc}" if problem else str(exc)
            except NixmoxError as exc:
                o.step(f"cannot check the snapshot feature: {exc}")
        if version is not None:
            o.step(f"update the lock: {shlex.join(lock_argv(version, self.flake, u.inputs))}")
        else:
            old = shlex.join(lock_argv((2, 18), self.flake, u.inputs))
            new = shlex.join(lock_argv(NEW_UPDATE_SYNTAX, self.flake, u.inputs))
            o.step(f"update the lock: {old} (nix < 2.19) or {new} (nix ≥ 2.19)")
        o.step("if flake.lock is unchanged: stop there, delete the snapshot")
        o.step(f"build: nixos-rebuild build --flake {self.flake}#{self.attr}; diff closures")
        o.step("note the units failed already (they do not count against the update)")
        o.step(
            f"arm the dead-man switch: systemd-run --collect --on-active={u.dead_man} (switch back)"
        )
        o.step(
            f"switch: nix-env -p {PROFILE} --set NEW; systemd-run --collect --pipe "
            "--service-type=exec --wait NEW/bin/switch-to-configuration switch"
        )
        o.step("check health: " + ", ".join(self._checks_in_words()))
        o.step(
            "then: "
            + ("commit flake.lock as nixmox" if u.commit_lock else "leave flake.lock modified")
            + ("; keep the snapshot" if u.keep_snapshot else "; delete the snapshot")
        )
        if self.snapshots is not None:
            try:
                doomed = self.snapshots.prune(self._keep(), self.zone, dry_run=True)
            except NixmoxError as exc:
                o.step(f"snapshot retention: cannot list snapshots: {exc}")
            else:
                if doomed:
                    o.step("retention would delete: " + ", ".join(doomed))
        o.message = "plan only" + (f"; {problem}" if problem else "")
        return o

    def _checks_in_words(self) -> list[str]:
        h = self.settings.health or HealthChecks()
        words = ["system running (not degraded)", "no failed units", "guest still answers"]
        words += [f"{unit} active" for unit in h.units]
        words += [f"`{c}` exits 0" for c in h.commands]
        words += [f"{url} answers 2xx" for url in h.http]
        return words

    # -- the run --------------------------------------------------------------------

    def run(self) -> UpdateOutcome:
        """The whole transaction (only the plan under ``dry_run``); never raises for a
        guest-side failure."""
        if self.dry_run:
            return self.plan()
        g = self.guest
        o = UpdateOutcome(g.name, g.vmid, progress=self.progress)
        o.begin(f"updating {g.name}")
        self._current = o
        try:
            return self._run(o)
        except NixmoxError as exc:
            o.result, o.message = "failed", str(exc)  # what the report will say
            raise
        finally:
            self._current = None
            o.finish()

    def _tick(self) -> None:
        """A wait goes on: after a quiet while, the reporter says ``Still updating ...``."""
        if self._current is not None:
            self._current.tick()

    def _run(self, o: UpdateOutcome) -> UpdateOutcome:
        why = self._reachable()
        if why is not None:
            o.result, o.message = "failed", f"guest not reachable: {why}; nothing changed"
            return o
        try:
            gen = self.read_generation()
            o.step(f"generation {gen.number} ({gen.current})")
            version = self.nix_version()
            old_lock = self.read_lock()
        except (NixosUpdateError, GuestUnreachable) as exc:
            o.result, o.message = "failed", f"{exc}; nothing changed"
            return o
        try:
            self._snapshot(o)
        except NixmoxError as exc:
            o.result, o.message = "failed", f"snapshot failed: {exc}; nothing changed"
            return o
        return self._update(o, gen, version, old_lock)

    def _update(
        self, o: UpdateOutcome, gen: Generation, version: tuple[int, ...], old: str
    ) -> UpdateOutcome:
        try:
            return self._transaction(o, gen, version, old)
        finally:
            # Once switched (or not), the system profile keeps what it needs.
            if self._build_started:
                self._drop_build_root()

    def _transaction(
        self, o: UpdateOutcome, gen: Generation, version: tuple[int, ...], old: str
    ) -> UpdateOutcome:
        u = self.settings
        stamp = unit_stamp(self.clock.now(), self.token())
        unit, switch_unit = f"{DEADMAN}-{stamp}", f"{SWITCH}-{stamp}"
        try:
            argv = lock_argv(version, self.flake, u.inputs)
            reply = self.access.run(argv)
            o.step("$ " + shlex.join(argv))
            if not reply.ok:
                self._restore_lock(o, old)
                return self._failed(o, f"flake lock update failed: {reply.why()}")
            new_lock = self.read_lock()
            if lock_unchanged(old, new_lock, self._built()):
                self._drop_snapshot(o)
                o.result, o.message = "unchanged", "flake.lock unchanged: nothing to build"
                return o
            if new_lock == old:
                o.step(
                    "flake.lock unchanged, but nixmox never switched to it "
                    "(an earlier update stopped halfway): building it now"
                )
            new, failure = self._build(o)
            if new is None:
                self._restore_lock(o, old)
                return self._failed(o, f"build failed: {failure}; nothing switched")
            if new == gen.current:
                return self._same_system(o, new_lock)
            self._diff(o, gen, new)
            baseline = self._failed_before()
            if baseline:
                o.step("failed before the update (not counted): " + ", ".join(baseline))
            armed = self.access.run(deadman_argv(unit, u.dead_man, gen.number))
            if not armed.ok:
                self._restore_lock(o, old)
                return self._failed(o, f"cannot arm the dead-man switch: {armed.why()}")
            o.step(f"dead-man switch {unit} armed ({u.dead_man}, back to generation {gen.number})")
        except GuestUnreachable as exc:
            # Nothing switched yet: the guest runs the old system, the lock may be new.
            o.result = "failed"
            o.message = f"guest stopped answering before the switch: {exc}; snapshot kept"
            return o
        try:
            problems = self._switch_and_check(o, new, switch_unit, baseline)
        except _Unreachable as exc:
            return self._snapshot_rollback(o, f"guest unreachable after the switch: {exc}")
        if problems:
            return self._switch_back(o, gen, unit, switch_unit, old, "; ".join(problems))
        return self._succeeded(o, unit, gen, new, old, new_lock)

    def _build(self, o: UpdateOutcome) -> tuple[str | None, str]:
        """Build the new system: its store path, or None and why the build failed."""
        self._build_started = True
        reply = self.access.run(build_script(self.flake, self.attr), timeout=3 * 3600.0)
        o.step(f"$ nixos-rebuild build --flake {self.flake}#{self.attr}")
        path = reply.stdout.strip().splitlines()[-1] if reply.stdout.strip() else ""
        if not reply.ok or not path:
            return None, reply.why()
        o.step(f"built {path}")
        return path, ""

    def _diff(self, o: UpdateOutcome, gen: Generation, new: str) -> None:
        reply = self.access.run([*NIX, "store", "diff-closures", gen.current, new], changes=False)
        if reply.ok:
            lines = [line for line in reply.stdout.splitlines() if line.strip()]
            o.step(f"closure diff: {plural(len(lines), 'change')}")
            o.steps += ["  " + line for line in lines[:50]]
        else:
            o.step(f"closure diff unavailable: {reply.why()}")

    def _switch_and_check(
        self, o: UpdateOutcome, new: str, unit: str, baseline: list[str]
    ) -> list[str]:
        """Switch to ``new``; the health problems (empty: healthy). _Unreachable if lost."""
        try:
            set_profile = self.access.run(["nix-env", "-p", PROFILE, "--set", new])
            if not set_profile.ok:
                return [f"nix-env --set failed: {set_profile.why()}"]
            try:
                switched = self.access.run(switch_argv(unit, new), timeout=1800.0)
            except GuestUnreachable as exc:
                # The switch runs in its own unit: losing the connection that started
                # it (sshd or the agent restarted) does not stop it. Health decides.
                if not self._switch_finished(unit):
                    raise
                o.step(f"the connection dropped during the switch ({exc}); it finished")
            else:
                o.step(f"$ {new}/bin/switch-to-configuration switch (exit {switched.returncode})")
                if not switched.ok:
                    return [
                        f"switch-to-configuration exited {switched.returncode}: {switched.why()}"
                    ]
            health = self._health(baseline)
        except GuestUnreachable as exc:
            raise _Unreachable(str(exc)) from None
        if health.reachable is not None:
            raise _Unreachable(health.reachable)
        return health.problems()

    def _switch_finished(self, unit: str) -> bool:
        """Wait (the health timeout) for the guest to answer and ``unit`` to be gone."""
        deadline = self.clock.monotonic() + parse_timespan(
            (self.settings.health or HealthChecks()).timeout
        )
        while self.clock.monotonic() < deadline:
            if self._reachable() is None:
                try:
                    state = self.access.run(["systemctl", "is-active", unit], changes=False)
                except GuestUnreachable:
                    state = None
                if state is not None and state.stdout.strip() not in (
                    "active",
                    "activating",
                    "reloading",
                    "deactivating",
                ):
                    return True
            self._tick()
            self.clock.sleep(POLL)
        return False

    def _failed_before(self) -> list[str]:
        """The units failed before the switch, nixmox's own failed leftovers reset first."""
        self.access.run(list(RESET_OWN_FAILED))
        listed = self.access.run(list(LIST_FAILED), changes=False)
        return parse_failed_units(listed.stdout) if listed.ok else []

    def _health(self, baseline: list[str]) -> Health:
        h = self.settings.health or HealthChecks()
        limit = parse_timespan(h.timeout)
        deadline = self.clock.monotonic() + limit
        health = Health(baseline_failed=baseline)
        while True:
            reply = self.access.run(["systemctl", "is-system-running"], changes=False)
            health.state = reply.stdout.strip() or reply.why()
            if system_state(health.state) != "wait" or self.clock.monotonic() >= deadline:
                break
            self._tick()
            self.clock.sleep(POLL)
        listed = self.access.run(list(LIST_FAILED), changes=False)
        health.failed_units = parse_failed_units(listed.stdout)
        if h.units:
            active = self.access.run(["systemctl", "is-active", *h.units], changes=False)
            states = active.stdout.split()
            health.inactive_units = [
                unit
                for i, unit in enumerate(h.units)
                if (states[i] if i < len(states) else "unknown") != "active"
            ]
        for command in h.commands:
            if not self.access.run(command, changes=False, timeout=limit).ok:
                health.failed_commands.append(command)
        health.bad_urls = [why for why in (self.fetch(url) for url in h.http) if why]
        health.reachable = self.access.reachable()
        return health

    # -- endings ----------------------------------------------------------------------

    def _succeeded(
        self, o: UpdateOutcome, unit: str, gen: Generation, new: str, old: str, lock: str
    ) -> UpdateOutcome:
        u, g = self.settings, self.guest
        o.result = "ok"
        notes = ["switched, healthy"]
        try:
            self._disarm(o, unit)
            # Checks that outlast update.dead_man let the timer switch back meanwhile.
            running = self.access.run("readlink -f /run/current-system", changes=False)
            if running.stdout.strip() != new:
                self._restore_lock(o, old)
                o.result, o.rolled_back = "rolled-back", True
                o.rollback = f"generation {gen.number} (the dead-man switch fired)"
                o.message = (
                    f"the dead-man switch ({u.dead_man}) switched back before the checks ended: "
                    "make update.dead_man longer than the health checks take"
                )
                return o
            notes.append(self._commit_lock(o))
            self._mark_built(o, lock)
            reboot = reboot_needed(self.access.run(READ_BOOT_FILES, changes=False).stdout)
        except GuestUnreachable as exc:
            o.result = "failed"
            o.message = f"healthy, then the guest stopped answering: {exc}"
            return o
        self._after_success_snapshots(o)
        if reboot:
            if guest_stop(g, self.clock.now(), self.zone).allowed:
                notes.append(self._reboot(o, reboot))
            else:
                o.pending = 1
                notes.append(
                    f"reboot pending ({', '.join(reboot)} changed; reboot policy {g.reboot.policy})"
                )
        if u.keep_snapshot and o.snapshot:
            notes.append(f"snapshot {o.snapshot} kept")
        o.message = "; ".join(n for n in notes if n)
        return o

    def _same_system(self, o: UpdateOutcome, lock: str) -> UpdateOutcome:
        """The new lock builds the running system again: keep the lock, switch nothing."""
        o.result = "ok"
        notes = ["new lock, same system: nothing switched", self._commit_lock(o)]
        self._mark_built(o, lock)
        self._after_success_snapshots(o)
        o.message = "; ".join(notes)
        return o

    def _failed(self, o: UpdateOutcome, message: str) -> UpdateOutcome:
        """A failure before anything switched: the snapshot is of no use, delete it."""
        had = o.snapshot
        self._drop_snapshot(o)
        o.result = "failed"
        restored = "flake.lock restored" in o.steps
        o.message = message + (", flake.lock restored" if restored else "")
        if had is not None and o.snapshot is None:
            o.message += f", snapshot {had} deleted"
        return o

    def _switch_back(
        self, o: UpdateOutcome, gen: Generation, unit: str, switch_unit: str, old: str, why: str
    ) -> UpdateOutcome:
        """Health failed: back to the recorded generation in the guest (else the snapshot)."""
        o.step(f"unhealthy: {why}")
        try:
            back = self.access.run(
                ["nix-env", "-p", PROFILE, "--switch-generation", str(gen.number)]
            )
            if back.ok:
                back = self.access.run(switch_argv(f"{switch_unit}-back", PROFILE), timeout=1800.0)
            if not back.ok:
                return self._snapshot_rollback(
                    o, f"{why}; switching back in the guest failed: {back.why()}"
                )
            o.step(f"switched back to generation {gen.number}")
            self._disarm(o, unit)
            self._restore_lock(o, old)
        except GuestUnreachable as exc:
            return self._snapshot_rollback(o, f"{why}; then the guest stopped answering: {exc}")
        o.result, o.rolled_back = "rolled-back", True
        o.rollback = f"generation {gen.number} (switched back in the guest)"
        o.message = f"unhealthy after the switch: {why}"
        return o

    def _snapshot_rollback(self, o: UpdateOutcome, why: str) -> UpdateOutcome:
        o.step(why)
        if self.snapshots is None or o.snapshot is None:
            o.result, o.message = "failed", f"{why}; no snapshot to roll back to"
            return o
        try:
            self.snapshots.rollback(o.snapshot)
        except NixmoxError as exc:
            o.result = "failed"
            o.message = (
                f"{why}; rolling back snapshot {o.snapshot} failed: {exc} "
                "(the dead-man switch in the guest still switches back)"
            )
            return o
        o.step(f"rolled back Proxmox snapshot {o.snapshot}")
        o.result, o.rolled_back = "rolled-back", True
        o.rollback = f"Proxmox snapshot {o.snapshot}"
        o.message = why
        return o

    # -- helpers ------------------------------------------------------------------------

    def _reachable(self) -> str | None:
        try:
            return self.access.reachable()
        except NixmoxError as exc:
            return str(exc)

    def _keep(self) -> Keep:
        return self.settings.snapshots.rule() if self.settings.snapshots else DEFAULT_KEEP

    def _snapshot(self, o: UpdateOutcome) -> None:
        if self.snapshots is None:
            return
        name = update_snapshot_name(self.clock.now())
        self.snapshots.take(name, description=f"before nixmox update nixos of {self.guest.name}")
        o.snapshot = name
        o.step(f"snapshot {self.snapshots.kind}/{self.guest.vmid} {name}")

    def _drop_snapshot(self, o: UpdateOutcome) -> None:
        if self.snapshots is None or o.snapshot is None:
            return
        try:
            self.snapshots.delete(o.snapshot)
        except NixmoxError as exc:
            o.step(f"could not delete snapshot {o.snapshot}: {exc}")
            return
        o.step(f"deleted snapshot {o.snapshot}")
        o.snapshot = None

    def _drop_build_root(self) -> None:
        """Remove the build's ``result`` link (best effort: the next build replaces it)."""
        with contextlib.suppress(GuestUnreachable):
            self.access.run(f"rm -f {BUILD_DIR}/result")

    def _restore_lock(self, o: UpdateOutcome, old: str) -> None:
        path = shlex.quote(self.lock_path)
        script = f"cat > {path}" if old else f"rm -f {path}"
        reply = self.access.run(script, input=old if old else None)
        o.step(
            "flake.lock restored" if reply.ok else f"could not restore flake.lock: {reply.why()}"
        )

    def _disarm(self, o: UpdateOutcome, unit: str) -> None:
        reply = self.access.run(["systemctl", "stop", f"{unit}.timer"])
        o.step(f"dead-man switch {unit} disarmed" if reply.ok else f"disarm: {reply.why()}")

    def _commit_lock(self, o: UpdateOutcome) -> str:
        u = self.settings
        if not u.commit_lock:
            return "flake.lock updated, left uncommitted (commit_lock = false)"
        what = ", ".join(u.inputs) if u.inputs else "all inputs"
        script = (
            f"cd {shlex.quote(self.flake)} && "
            "{ git rev-parse --is-inside-work-tree >/dev/null 2>&1 || exit 3; } && "
            "git add flake.lock && "
            f"git -c user.name=nixmox -c user.email=nixmox@{shlex.quote(self.attr)} "
            f"commit -q -m {shlex.quote(f'flake.lock: update {what} (nixmox)')} -- flake.lock"
        )
        reply = self.access.run(script)
        if reply.ok:
            o.step("committed flake.lock as nixmox")
            return "flake.lock committed"
        if reply.returncode == 3:
            return "flake.lock left modified (not a git repository)"
        return f"flake.lock left modified (git commit failed: {reply.why()})"

    def _after_success_snapshots(self, o: UpdateOutcome) -> None:
        if self.snapshots is None:
            return
        if not self.settings.keep_snapshot:
            self._drop_snapshot(o)
        try:
            pruned = self.snapshots.prune(self._keep(), self.zone)
        except NixmoxError as exc:
            o.step(f"snapshot retention failed: {exc}")
            return
        if pruned:
            o.step("pruned snapshots: " + ", ".join(pruned))

    def _reboot(self, o: UpdateOutcome, changed: list[str]) -> str:
        if self.snapshots is None:
            o.pending = 1
            return "reboot pending (no API connection)"
        api: Proxmox = self.snapshots.api
        g = self.guest
        path = f"{guest_path(g.node, self.snapshots.kind, g.vmid)}/status/reboot"
        try:
            upid = api.post(path)
            if isinstance(upid, str):
                wait(
                    api,
                    upid,
                    what=f"reboot {g.vmid}",
                    timeout=600.0,
                    clock=self.clock,
                    watch=self._tick,
                )
        except NixmoxError as exc:
            o.pending = 1
            return f"reboot pending: the reboot failed: {exc}"
        deadline = self.clock.monotonic() + parse_timespan(
            (self.settings.health or HealthChecks()).timeout
        )
        while (why := self._reachable()) is not None:
            if self.clock.monotonic() >= deadline:
                o.result = "failed"
                return f"rebooted ({', '.join(changed)} changed) but it does not answer: {why}"
            self._tick()
            self.clock.sleep(POLL)
        o.step("rebooted through the API; the guest answers again")
        return f"rebooted ({', '.join(changed)} changed)"
