"""Does a Proxmox host need a reboot? Decided on files captured from the host.

:data:`PROBE` is a small shell script nixmox runs on the node (over SSH, or
locally); it prints what the decision needs, one ``key<TAB>value`` line each:
the running kernel (``/proc/sys/kernel/osrelease``, what ``uname -r`` prints),
the installed kernels (``/boot/vmlinuz-*``, else ``/lib/modules/*``), whether
``/run/reboot-required`` exists (and the packages that asked for it), and a
kernel pinned with ``proxmox-boot-tool kernel pin``. :func:`parse_facts` reads
that back and :func:`reboot_needed` decides, without touching anything.

Kernel releases are ordered the way dpkg orders versions
(:func:`compare_versions`): digit runs as numbers, so ``6.8.12-10-pve`` is
newer than ``6.8.12-4-pve`` and ``6.14.8-2-pve`` newer than ``6.8.12-10-pve``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass

# Takes the host's root as $1 ("/" on a live host); never fails, never writes.
PROBE = r"""r=${1%/}
printf 'running\t%s\n' "$(cat "$r/proc/sys/kernel/osrelease" 2>/dev/null)"
for f in "$r"/boot/vmlinuz-*; do [ -f "$f" ] && printf 'boot\t%s\n' "${f##*/vmlinuz-}"; done
for d in "$r"/lib/modules/*; do [ -d "$d" ] && printf 'modules\t%s\n' "${d##*/}"; done
[ -e "$r/run/reboot-required" ] && printf 'reboot-required\t1\n'
if [ -f "$r/run/reboot-required.pkgs" ]; then
  while read -r p; do
    [ -n "$p" ] && printf 'package\t%s\n' "$p"
  done < "$r/run/reboot-required.pkgs"
fi
for k in proxmox-boot-pin next-boot-pin; do
  [ -s "$r/etc/kernel/$k" ] && printf '%s\t%s\n' "$k" "$(head -n 1 "$r/etc/kernel/$k")"
done
true
"""

# Kernel packages of Proxmox VE (and its older pve-kernel names); the helper is not one.
_KERNEL_PACKAGE = re.compile(r"(proxmox|pve)-(default-)?kernel(-(?!helper)\S*)?")


def _order(c: str) -> int:
    """dpkg's weight of one non-digit character: ``~`` first, then the end, letters, others."""
    if c == "~":
        return -1
    if c.isascii() and c.isalpha():
        return ord(c)
    return ord(c) + 256


def _digit(text: str, i: int) -> bool:
    return i < len(text) and "0" <= text[i] <= "9"


def compare_versions(a: str, b: str) -> int:
    """dpkg's ``verrevcmp``: below 0 if ``a`` is older than ``b``, 0 if equal, above 0 if newer."""
    i = j = 0
    while i < len(a) or j < len(b):
        while (i < len(a) and not _digit(a, i)) or (j < len(b) and not _digit(b, j)):
            ac = _order(a[i]) if i < len(a) and not _digit(a, i) else 0
            bc = _order(b[j]) if j < len(b) and not _digit(b, j) else 0
            if ac != bc:
                return ac - bc
            i += 1
            j += 1
        while i < len(a) and a[i] == "0":
            i += 1
        while j < len(b) and b[j] == "0":
            j += 1
        first_diff = 0
        while _digit(a, i) and _digit(b, j):
            if not first_diff:
                first_diff = ord(a[i]) - ord(b[j])
            i += 1
            j += 1
        if _digit(a, i):
            return 1
        if _digit(b, j):
            return -1
        if first_diff:
            return first_diff
    return 0


def newest(versions: Iterable[str]) -> str | None:
    """The newest of ``versions`` in dpkg's order; ``None`` for none."""
    ordered = sorted(versions, key=functools.cmp_to_key(compare_versions))
    return ordered[-1] if ordered else None


def is_kernel_package(name: str) -> bool:
    """Whether upgrading package ``name`` installs a kernel (a reboot will follow)."""
    return _KERNEL_PACKAGE.fullmatch(name) is not None


@dataclass(frozen=True)
class BootFacts:
    """What :data:`PROBE` found on a host."""

    running: str
    boot_kernels: tuple[str, ...] = ()  # /boot/vmlinuz-RELEASE
    module_dirs: tuple[str, ...] = ()  # /lib/modules/RELEASE
    reboot_required: bool = False  # /run/reboot-required exists
    packages: tuple[str, ...] = ()  # /run/reboot-required.pkgs
    pinned: str | None = None  # /etc/kernel/proxmox-boot-pin
    next_boot: str | None = None  # /etc/kernel/next-boot-pin (proxmox-boot-tool --next-boot)

    @property
    def installed(self) -> tuple[str, ...]:
        """The installed kernels: /boot's, or the module directories when /boot has none."""
        return self.boot_kernels or self.module_dirs


def parse_facts(text: str) -> BootFacts:
    """:data:`PROBE`'s output as :class:`BootFacts`."""
    values: dict[str, list[str]] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("\t")
        if sep and value.strip():
            values.setdefault(key, []).append(value.strip())

    def one(key: str) -> str | None:
        found = values.get(key)
        return found[0] if found else None

    return BootFacts(
        running=one("running") or "",
        boot_kernels=tuple(values.get("boot", [])),
        module_dirs=tuple(values.get("modules", [])),
        reboot_required="reboot-required" in values,
        packages=tuple(values.get("package", [])),
        pinned=one("proxmox-boot-pin"),
        next_boot=one("next-boot-pin"),
    )


@dataclass(frozen=True)
class RebootNeed:
    """Why a host needs a reboot, and the kernel it would boot (``None``: the same one)."""

    reasons: tuple[str, ...]
    kernel: str | None = None

    def __str__(self) -> str:
        return "; ".join(self.reasons)


def reboot_needed(facts: BootFacts) -> RebootNeed | None:
    """Whether ``facts`` call for a reboot: a newer (or pinned) kernel than the running
    one is installed, or a package left ``/run/reboot-required``. ``None`` when not."""
    reasons: list[str] = []
    kernel: str | None = None
    installed = facts.installed
    chosen = facts.next_boot or facts.pinned
    if chosen is not None and chosen in installed:
        if chosen != facts.running:
            how = "for the next boot" if facts.next_boot else "with proxmox-boot-tool"
            reasons.append(f"running kernel {facts.running}, {chosen} is pinned {how}")
            kernel = chosen
    else:
        latest = newest(installed)
        if latest is not None and facts.running and compare_versions(latest, facts.running) > 0:
            reasons.append(f"running kernel {facts.running}, newest installed {latest}")
            kernel = latest
    if facts.reboot_required:
        named = f" (by {', '.join(facts.packages)})" if facts.packages else ""
        reasons.append(f"/run/reboot-required exists{named}")
    return RebootNeed(tuple(reasons), kernel) if reasons else None
