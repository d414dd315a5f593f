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
from collections.abc import Sequence
from dataclasses import dataclass, field

PROFILE = "/nix/var/nix/profiles/system"
NIX = ("nix", "--extra-experimental-features", "nix-command flakes")
# nix ≥ 2.19 replaced `nix flake lock --update-input NAME` with `nix flake update NAME`.
NEW_UPDATE_SYNTAX = (2, 19)
DEFAULT_FLAKE = "/etc/nixos"
BOOT_FILES = ("kernel", "initrd", "kernel-modules")
READ_GENERATION = (
    f"readlink {PROFILE}; readlink -f /run/current-system; readlink -f /run/booted-system"
)
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
    return Generation(int(found.group(1)), current, booted)


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
    """What the health checks found; :meth:`problems` is the verdict."""

    reachable: str | None = None  # why the guest did not answer
    state: str = "running"
    failed_units: list[str] = field(default_factory=list)
    inactive_units: list[str] = field(default_factory=list)
    failed_commands: list[str] = field(default_factory=list)
    bad_urls: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        """One line per failed check; empty: healthy."""
        out = []
        if self.reachable is not None:
            out.append(f"guest not reachable: {self.reachable}")
        if system_state(self.state) != "ok":
            out.append(f"system is {self.state.strip() or 'unknown'}")
        if self.failed_units:
            out.append("failed units: " + ", ".join(self.failed_units))
        if self.inactive_units:
            out.append("not active: " + ", ".join(self.inactive_units))
        out += [f"check failed: {c}" for c in self.failed_commands]
        out += [f"http: {u}" for u in self.bad_urls]
        return out


def deadman_argv(unit: str, delay: str, generation: int) -> list[str]:
    """``systemd-run`` arming a timer in the guest that switches back to ``generation``."""
    return [
        "systemd-run",
        f"--on-active={delay}",
        f"--unit={unit}",
        f"--description=nixmox: back to generation {generation} unless the update is confirmed",
        "/bin/sh",
        "-c",
        "PATH=/run/current-system/sw/bin:$PATH; " + switch_back_script(generation),
    ]


def switch_back_script(generation: int) -> str:
    """The two commands that switch the guest back to ``generation``."""
    return (
        f"nix-env -p {PROFILE} --switch-generation {generation} && "
        f"{PROFILE}/bin/switch-to-configuration switch"
    )
