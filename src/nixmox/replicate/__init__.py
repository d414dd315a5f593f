"""ZFS replication: nixmox's snapshots copied to another pool or host (``nixmox replicate``).

``plan`` holds the pure decisions (where a replica lives, the newest common
snapshot by GUID, divergence, what to send, what to prune on the target),
``job`` reads both ends, acts through the zfs adapter and the runner's pipe,
and ``runs`` is what the CLI starts and the journal stores.
"""
