"""Reading the host's files under ``--host-root``, never outside it.

Every path is taken as a path on the host (``/sys/...``) and joined under the
root. Symbolic links are followed component by component inside the root,
the way a chroot would: an absolute target starts again at the root, ``..``
stops at the root. sysfs is built on links (``driver``, ``iommu_group``,
``/sys/bus/pci/devices/*``), and ``/etc/pve/qemu-server`` is one on Proxmox,
so a captured tree works exactly like the live host, and a link in it can
never make nixmox read the machine it runs on instead.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

# Linux gives up after 40 links in one lookup (ELOOP); so do we.
_MAX_LINKS = 40
# sysfs files are small; a bound keeps a wrong root (a huge file) from hurting.
_MAX_BYTES = 4 * 1024 * 1024


class HostFs:
    """The host's file system seen from ``root`` (``/`` on the host itself)."""

    def __init__(self, root: Path | str = "/") -> None:
        self.root = Path(root)

    def resolve(self, path: str) -> PurePosixPath | None:
        """``path`` with every link followed inside the root, as a host path.

        ``None`` when a link loops or nests deeper than Linux allows. Missing
        components are kept as they are (like ``realpath -m``).
        """
        done = PurePosixPath("/")
        todo = list(PurePosixPath("/", path).parts[1:])
        links = 0
        while todo:
            part = todo.pop(0)
            if part in ("", "."):
                continue
            if part == "..":
                done = done.parent  # the parent of "/" is "/": never above the root
                continue
            candidate = done / part
            real = self._local(candidate)
            if real.is_symlink():
                links += 1
                if links > _MAX_LINKS:
                    return None
                target = PurePosixPath(os.readlink(real))
                if target.is_absolute():
                    done = PurePosixPath("/")
                    todo = list(target.parts[1:]) + todo
                else:
                    todo = list(target.parts) + todo
                continue
            done = candidate
        return done

    def _local(self, host_path: PurePosixPath) -> Path:
        """Where a host path (already resolved) lives on this machine."""
        return self.root.joinpath(*host_path.parts[1:])

    def local(self, path: str) -> Path | None:
        """The file on this machine that holds the host's ``path``, links resolved."""
        resolved = self.resolve(path)
        return None if resolved is None else self._local(resolved)

    def read(self, path: str) -> str | None:
        """The text of the host's ``path``; ``None`` if it is missing or unreadable."""
        local = self.local(path)
        if local is None:
            return None
        try:
            with local.open("rb") as handle:
                return handle.read(_MAX_BYTES).decode("utf-8", errors="replace")
        except OSError:
            return None

    def exists(self, path: str) -> bool:
        """Whether the host has ``path`` (file, directory or device)."""
        local = self.local(path)
        return local is not None and local.exists()

    def listdir(self, path: str) -> list[str]:
        """Names in the host's directory ``path``, sorted; empty if it is not one."""
        local = self.local(path)
        if local is None:
            return []
        try:
            return sorted(os.listdir(local))
        except OSError:
            return []

    def link_name(self, path: str) -> str | None:
        """The last component of where the link ``path`` points (``vfio-pci`` for a
        ``driver`` link, ``11`` for ``iommu_group``); ``None`` if it is no link."""
        own = PurePosixPath("/", path)
        parent = self.resolve(str(own.parent))
        if parent is None or not self._local(parent / own.name).is_symlink():
            return None
        resolved = self.resolve(str(parent / own.name))
        return None if resolved is None else resolved.name
