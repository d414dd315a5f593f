"""Fixtures for the whole suite: the lab (simulated Proxmox) and the real peers."""

from tests.lab.fixtures import lab, lab_process  # noqa: F401
from tests.peers.fixtures import (  # noqa: F401
    faketime_bin,
    nix_sandbox,
    qga,
    qga_client,
    sshd,
    zfs,
    zfs_pool,
)
