"""Pure decisions of `nixmox update nixos`: what to run in the guest and how to read it.

No I/O here: command lines and scripts for the guest, parsers of what they
print, and verdicts (lock unchanged, health, reboot needed), each tested
without a guest; whether a reboot may happen now is
:func:`nixmox.updates.reboot_policy.guest_stop`, shared with `update host`.
:mod:`nixmox.updates.nixos.job` runs them.
"""

from __future__ import annotations

import hashlib
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

PROFILE = "/nix/var/nix/profiles/system"
NIX = ("nix", "--extra-experimental-features", "nix-command flakes")
# nix ≥ 2.19 replaced `nix flake lock --update-input NAME` with `nix flake update NAME`.
NEW_UPDATE_SYNTAX = (2, 19)
DEFAULT_FLAKE = "/etc/nixos"
BOOT_FILES = ("kernel", "initrd", "kernel-modules")
# The fourth line: who nixmox is in the guest (it must be root).
READ_GENERATION = (
    f"readlink {PROFILE}; readlink -f /run/current-system; readlink -f /run/booted-system; id -u"
)
#: Where the guest's build runs: its ``result`` link is the new system's GC root
#: until the system profile holds it; one fixed place, so no run leaves another behind.
BUILD_DIR = "/var/lib/nixmox/build"
#: The exit code of :func:`read_lock_script` when the flake itself is missing.
NO_FLAKE = 3
READ_BOOT_FILES = "".join(
    f'echo "{f} $(readlink -e /run/booted-system/{f}) $(readlink -e /run/current-system/{f})"; '
    for f in BOOT_FILES
)


@dataclass(frozen=True)
class Generation:
    """The guest's system before the update."""

    number: int
    current: str
    booted: str
    uid: str | None = None  # who nixmox runs as in the guest ("0": root)


#: In the guest: the SHA-256 of the flake.lock nixmox last built and switched to (or found
#: to build the running system). A lock that differs from it is not "unchanged", even when
#: this run's lock update changed nothing: an earlier run stopped between lock and switch.
BUILT_MARKER = "/var/lib/nixmox/flake-lock-built"


def lock_digest(text: str) -> str:
    """The marker's value for a flake.lock's text."""
    return hashlib.sha256(text.encode()).hexdigest()


def lock_unchanged(before: str, after: str, built: str | None) -> bool:
    """Nothing to build: the update left the lock as it was, and the running system was
    built from that lock (or nixmox has no record yet, as before its first update)."""
    return after == before and (built is None or built == lock_digest(after))


def parse_generation(text: str) -> Generation:
    """The output of :data:`READ_GENERATION` (ValueError if it names no generation)."""
    lines = [line.strip() for line in text.splitlines()]
    found = re.fullmatch(r"(?:.*/)?system-(\d+)-link", lines[0] if lines else "")
    if found is None:
        raise ValueError(f"{PROFILE} does not point at a generation ({text.strip()[:80]!r})")
    current = lines[1] if len(lines) > 1 else ""
    booted = lines[2] if len(lines) > 2 else ""
    uid = lines[3] if len(lines) > 3 and lines[3] else None
    return Generation(int(found.group(1)), current, booted, uid)


def read_lock_script(flake: str) -> str:
    """Prints the working-tree flake.lock ("" when there is none yet); exits
    :data:`NO_FLAKE` when ``flake`` has no flake.nix at all."""
    nix, lock = (
        shlex.quote(flake.rstrip("/") + "/flake.nix"),
        shlex.quote(flake.rstrip("/") + "/flake.lock"),
    )
    return f"[ -e {nix} ] || exit {NO_FLAKE}; if [ -e {lock} ]; then cat {lock}; fi"


def build_script(flake: str, attr: str) -> str:
    """Builds ``flake#attr`` in :data:`BUILD_DIR`; prints the new system's store path."""
    target = shlex.quote(f"{flake}#{attr}")
    return (
        f"mkdir -p {BUILD_DIR} && cd {BUILD_DIR} && "
        f"nixos-rebuild build --flake {target} >&2 && readlink -f result"
    )


def parse_nix_version(text: str) -> tuple[int, ...] | None:
    """``nix (Nix) 2.8.0`` → ``(2, 8, 0)``; None when there is no version in it."""
    found = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", text)
    if found is None:
        return None
    return tuple(int(g) for g in found.groups() if g is not None)


def lock_argv(version: tuple[int, ...], flake: str, inputs: Sequence[str]) -> list[str]:
    """The command that updates ``flake``'s lock: every input, or only ``inputs``."""
    new = version >= NEW_UPDATE_SYNTAX
    if not inputs:
        return (
            [*NIX, "flake", "update", "--flake", flake] if new else [*NIX, "flake", "update", flake]
        )
    if new:
        return [*NIX, "flake", "update", *inputs, "--flake", flake]
    argv = [*NIX, "flake", "lock", flake]
    for name in inputs:
        argv += ["--update-input", name]
    return argv


def reboot_needed(boot_files: str) -> list[str]:
    """Which of kernel/initrd/kernel-modules differ between booted and current system
    (the output of :data:`READ_BOOT_FILES`); empty: no reboot needed."""
    changed = []
    for line in boot_files.splitlines():
        parts = line.split(" ")
        if len(parts) == 3 and parts[0] in BOOT_FILES and parts[1] != parts[2]:
            changed.append(parts[0])
    return changed


def system_state(state: str) -> str:
    """``systemctl is-system-running``'s answer as ``ok``, ``wait`` or ``bad``."""
    state = state.strip()
    if state == "running":
        return "ok"
    if state in ("initializing", "starting"):
        return "wait"
    return "bad"


@dataclass
class Health:
    """What the health checks found; :meth:`problems` is the verdict.

    ``baseline_failed``: the units that had failed already before the switch.
    They are not the update's doing: neither they nor the ``degraded`` state
    they alone cause count against it.
    """

    reachable: str | None = None  # why the guest did not answer
    state: str = "running"
    failed_units: list[str] = field(default_factory=list)
    inactive_units: list[str] = field(default_factory=list)
    failed_commands: list[str] = field(default_factory=list)
    bad_urls: list[str] = field(default_factory=list)
    baseline_failed: list[str] = field(default_factory=list)

    @property
    def new_failed(self) -> list[str]:
        """The failed units that were not failed before the switch."""
        return [u for u in self.failed_units if u not in self.baseline_failed]

    def problems(self) -> list[str]:
        """One line per failed check; empty: healthy."""
        out = []
        if self.reachable is not None:
            out.append(f"guest not reachable: {self.reachable}")
        old_failures_only = (
            self.state.strip() == "degraded" and bool(self.failed_units) and not self.new_failed
        )
        if system_state(self.state) != "ok" and not old_failures_only:
            out.append(f"system is {self.state.strip() or 'unknown'}")
        if self.new_failed:
            out.append("failed units: " + ", ".join(self.new_failed))
        if self.inactive_units:
            out.append("not active: " + ", ".join(self.inactive_units))
        out += [f"check failed: {c}" for c in self.failed_commands]
        out += [f"http: {u}" for u in self.bad_urls]
        return out


def parse_failed_units(listing: str) -> list[str]:
    """The unit names of ``systemctl list-units --state=failed --no-legend --plain``."""
    return [line.split()[0] for line in listing.splitlines() if line.strip()]


LIST_FAILED = ("systemctl", "list-units", "--state=failed", "--no-legend", "--plain")
#: Units nixmox starts in the guest (``systemd-run``) are named with these prefixes.
DEADMAN, SWITCH = "nixmox-deadman", "nixmox-switch"
#: Forget nixmox's own failed transient units (a dead-man run before ``--collect``
#: was used): left loaded they keep the system ``degraded`` for every later update.
RESET_OWN_FAILED = ("systemctl", "reset-failed", f"{DEADMAN}-*", f"{SWITCH}-*")


def unit_stamp(now: datetime, token: str) -> str:
    """The part of this run's unit names that no other run shares."""
    return f"{now.strftime('%Y%m%d%H%M%S')}-{token}"


def deadman_argv(unit: str, delay: str, generation: int) -> list[str]:
    """``systemd-run`` arming a timer in the guest that switches back to ``generation``.

    ``--collect``: the transient units are unloaded once they ran, even failed;
    a failed one left loaded keeps ``is-system-running`` at ``degraded``.
    """
    return [
        "systemd-run",
        "--collect",
        f"--on-active={delay}",
        f"--unit={unit}",
        f"--description=nixmox: back to generation {generation} unless the update is confirmed",
        "/bin/sh",
        "-c",
        "PATH=/run/current-system/sw/bin:$PATH; " + switch_back_script(generation),
    ]


def switch_argv(unit: str, system: str) -> list[str]:
    """``SYSTEM/bin/switch-to-configuration switch`` in a transient unit of its own.

    As nixos-rebuild does (nixpkgs#39118): the switch must not die with the
    connection that started it (an ssh session, or the guest agent the switch
    restarts). ``--wait --pipe`` still hand back its output and exit status.
    """
    return [
        "systemd-run",
        "--collect",
        "--no-ask-password",
        "--pipe",
        "--quiet",
        "--service-type=exec",
        f"--unit={unit}",
        "--wait",
        f"{system}/bin/switch-to-configuration",
        "switch",
    ]


def switch_back_script(generation: int) -> str:
    """The two commands that switch the guest back to ``generation``."""
    return (
        f"nix-env -p {PROFILE} --switch-generation {generation} && "
        f"{PROFILE}/bin/switch-to-configuration switch"
    )
