from tests.peers.fixtures import (  # noqa: F401
    faketime_bin,
    nix_sandbox,
    qga,
    qga_client,
    sshd,
    zfs,
    zfs_pool,
)
