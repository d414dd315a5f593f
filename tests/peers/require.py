"""Finding the real peers the tests run against.

Outside CI a missing peer skips the test with the Debian package to install.
In CI (``CI`` set) every peer must be there, so a missing one fails the test
instead: a suite that silently skips its integration tests proves nothing.
"""

from __future__ import annotations

import os
import shutil

import pytest


def in_ci() -> bool:
    """True when running under CI, where nothing may be skipped."""
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def missing(reason: str) -> None:
    """Skip (locally) or fail (in CI) because a peer cannot run here."""
    if in_ci():
        pytest.fail(f"required in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def need_binary(name: str, package: str) -> str:
    """Return the absolute path of ``name``, or skip/fail naming ``package``."""
    found = shutil.which(name) or next(
        (
            p
            for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}", f"/sbin/{name}")
            if os.access(p, os.X_OK)
        ),
        None,
    )
    if found is None:
        missing(f"{name} not found: apt-get install {package}")
        raise AssertionError("unreachable")
    return found


def need_root(what: str) -> None:
    """Skip/fail unless running as root (zfs-fuse, sshd and qemu-ga need it)."""
    if os.geteuid() != 0:
        missing(f"{what} needs root")
