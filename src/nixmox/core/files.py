"""Writing files nixmox owns: atomically, under a fresh random name, never through a link."""

from __future__ import annotations

import contextlib
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
