"""Writing files nixmox owns: atomically, under a fresh random name, never through a link."""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path

from nixmox.core.errors import NixmoxError


def write_atomically(path: Path, data: bytes, mode: int) -> None:
    """Replace ``path`` with ``data`` in one step (readers see the old or the new file).

    The temporary file gets a random name created exclusively (``mkstemp``), so
    a link planted beside ``path`` is never followed; ``os.replace`` then swaps
    it in, replacing a link at ``path`` itself rather than writing through it.
    """
    try:
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise NixmoxError(f"cannot write {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), mode)
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise NixmoxError(f"cannot write {path}: {exc.strerror}") from None


def open_private(path: Path, flags: int = os.O_RDWR) -> int:
    """Open (creating, mode 0600) a file of nixmox's own: never through a symlink."""
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise NixmoxError(
            f"{path}: {exc.strerror}"
            + (
                " (a symlink where nixmox keeps its own file; remove it)"
                if exc.errno == errno.ELOOP
                else ""
            )
        ) from None
    os.fchmod(fd, 0o600)
    return fd
