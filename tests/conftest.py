"""Fixtures for the whole suite: the lab (simulated Proxmox) and the real peers."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lab.fixtures import lab, lab_env, lab_process, lab_root_env  # noqa: F401
from tests.peers.fixtures import (  # noqa: F401
    faketime_bin,
    nix_sandbox,
    qga,
    qga_client,
    sshd,
    zfs,
    zfs_pool,
)


@pytest.fixture(autouse=True)
def _fresh_secret_registry() -> Iterator[None]:
    """Each test starts with the secrets masked by the process so far only:
    what one test registered (notification URLs, tokens) does not mask another's output."""
    from nixmox.core import log

    secrets, pieces = set(log._secrets), set(log._url_pieces)
    yield
    log._secrets.clear()
    log._secrets.update(secrets)
    log._url_pieces.clear()
    log._url_pieces.update(pieces)


@pytest.fixture(autouse=True)
def _loopback_only_side_effects(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[None]:
    """The example inventory's [notify] names hosts under home.arpa and its
    [metrics] a path in /var/lib: no test may contact those or write there.
    The observability tests bring their own loopback endpoints and paths."""
    if not request.node.module.__name__.startswith("tests.test_observe"):
        monkeypatch.setenv("NIXMOX_NOTIFY_URLS", "")
        monkeypatch.setenv("NIXMOX_METRICS_TEXTFILE", str(tmp_path / "nixmox.prom"))
    yield
