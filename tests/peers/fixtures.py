"""Pytest fixtures for the real peers (zfs-fuse, qemu-ga, sshd, nix, faketime).

Each fixture checks its prerequisites first through ``require``: outside CI a
missing peer skips with the Debian package to install, in CI it fails.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.peers.nix import NixSandbox
from tests.peers.qga import QemuGuestAgent, QgaClient
from tests.peers.require import missing, need_binary, need_root
from tests.peers.sshd import Sshd
from tests.peers.zfs import ZfsFuse


@pytest.fixture(scope="session")
def zfs() -> Iterator[ZfsFuse]:
    """One zfs-fuse daemon for the session, in its own mount namespace.

    Shared because starting it costs about a second; tests stay independent
    by creating uniquely named pools (``create_pool()`` or ``zfs_pool``) and
    destroying them. Its namespace is private, so parallel sessions (xdist
    workers, other checkouts) each get their own daemon without conflict.
    """
    need_root("zfs-fuse")
    if not os.path.exists("/dev/fuse"):
        missing("zfs-fuse needs /dev/fuse")
    daemon = need_binary("zfs-fuse", "zfs-fuse")
    zfs_bin = need_binary("zfs", "zfs-fuse")
    zpool_bin = need_binary("zpool", "zfs-fuse")
    need_binary("unshare", "util-linux")
    need_binary("nsenter", "util-linux")
    with ZfsFuse(zfs_fuse=daemon, zfs=zfs_bin, zpool=zpool_bin) as z:
        yield z


@pytest.fixture
def zfs_pool(zfs: ZfsFuse) -> Iterator[str]:
    """A fresh, uniquely named, unmounted (``-m none``) pool; destroyed after."""
    name = zfs.create_pool()
    try:
        yield name
    finally:
        zfs.destroy_pool(name)


@pytest.fixture
def qga() -> Iterator[QemuGuestAgent]:
    """A fresh qemu-ga (dangerous commands blocked) on a temp unix socket."""
    need_root("qemu-ga")
    binary = need_binary("qemu-ga", "qemu-guest-agent")
    with QemuGuestAgent(qemu_ga=binary) as agent:
        yield agent


@pytest.fixture
def qga_client(qga: QemuGuestAgent) -> Iterator[QgaClient]:
    """A synced client connection to ``qga`` (the agent allows one at a time)."""
    with qga.client() as client:
        yield client


@pytest.fixture(scope="session")
def sshd() -> Iterator[Sshd]:
    """A throwaway sshd on 127.0.0.1 for the session; log in as root with
    ``ssh -F sshd.ssh_config sshd.host CMD`` (or ``sshd.ssh(CMD)``)."""
    need_root("sshd")
    server = need_binary("sshd", "openssh-server")
    client = need_binary("ssh", "openssh-client")
    keygen = need_binary("ssh-keygen", "openssh-client")
    with Sshd(sshd=server, ssh=client, ssh_keygen=keygen) as s:
        yield s


@pytest.fixture
def nix_sandbox() -> Iterator[NixSandbox]:
    """An offline nix with its own store, HOME and empty flake registry."""
    nix = need_binary("nix", "nix-bin")
    instantiate = need_binary("nix-instantiate", "nix-bin")
    with NixSandbox(nix=nix, nix_instantiate=instantiate) as sandbox:
        yield sandbox


@pytest.fixture(scope="session")
def faketime_bin() -> str:
    """Absolute path of ``faketime`` (libfaketime's wrapper)."""
    return need_binary("faketime", "faketime")
