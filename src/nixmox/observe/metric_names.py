"""The Prometheus metrics nixmox exports (the textfile, the Grafana dashboard).

Names follow Prometheus' conventions: base units, ``_seconds``,
``_timestamp_seconds``, ``_bytes``, ``_total``. Guest metrics carry
``id="qemu/101"`` (or ``lxc/100``) so they join with prometheus-pve-exporter's
``pve_guest_info``.

Job metrics name the nixmox command that ran (``backup``, ``update nixos``) in
a ``command`` label, as the run journal does. Never ``job``: Prometheus sets
``job`` (and ``instance``) on every scraped series itself, so a metric's own
``job`` would be renamed ``exported_job`` and every nixmox job would be stored
under the scrape job's name. node_exporter and prometheus-pve-exporter likewise
prefix only metric names and label what a thing is with a plain noun
(``name``, ``id``, ``node``, ``type``).

Pool metrics carry ``pool`` (zpool's name), disk metrics ``device`` (the
disk's ``/dev/disk/by-id`` name without the directory), as smartctl_exporter
and node_exporter's ZFS collector do.
"""

from __future__ import annotations

#: The results a run can end with: a ``nixmox_job_runs_total`` series exists for
#: each from a command's first run on, so its first failure is an increase.
#: ``interrupted``: stopped by SIGINT/SIGTERM, or found dead by a later run.
RUN_RESULTS = ("ok", "failed", "error", "interrupted")

#: zpool's pool states: ``nixmox_pool_state`` has a series for each (1 for the
#: current one), so an alert on ``{state="ONLINE"} == 0`` needs no list of its own.
POOL_STATES = ("ONLINE", "DEGRADED", "FAULTED", "OFFLINE", "UNAVAIL", "REMOVED", "SUSPENDED")

#: name -> (type, labels, help)
METRICS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "nixmox_job_last_run_timestamp_seconds": (
        "gauge",
        ("command",),
        "When the command's last run finished (Unix time).",
    ),
    "nixmox_job_last_run_duration_seconds": (
        "gauge",
        ("command",),
        "How long the command's last run took.",
    ),
    "nixmox_job_last_run_success": (
        "gauge",
        ("command",),
        "1 if the command's last run succeeded, else 0 (failed, error, interrupted).",
    ),
    "nixmox_job_runs_total": (
        "counter",
        ("command", "result"),
        "Finished runs of each command by result (ok, failed, error, interrupted).",
    ),
    "nixmox_guest_backup_newest_timestamp_seconds": (
        "gauge",
        ("id", "name"),
        "Time of the guest's newest vzdump archive.",
    ),
    "nixmox_guest_backup_newest_size_bytes": (
        "gauge",
        ("id", "name"),
        "Size of the guest's newest vzdump archive.",
    ),
    "nixmox_dataset_snapshot_newest_timestamp_seconds": (
        "gauge",
        ("dataset",),
        "Time of the dataset's newest nixmox snapshot.",
    ),
    "nixmox_dataset_snapshots": (
        "gauge",
        ("dataset",),
        "How many nixmox snapshots the dataset has.",
    ),
    "nixmox_replication_newest_timestamp_seconds": (
        "gauge",
        ("dataset", "target"),
        "Time of the newest nixmox snapshot on the dataset's replica at the target "
        "(the replication lag is time() minus this).",
    ),
    "nixmox_replication_last_success_timestamp_seconds": (
        "gauge",
        ("dataset", "target"),
        "When the dataset's last successful replication to the target ended (Unix time).",
    ),
    "nixmox_pending_updates": (
        "gauge",
        ("target",),
        "Updates waiting: packages on a node, or a guest's pending changes.",
    ),
    "nixmox_update_rollbacks_total": (
        "counter",
        ("id", "name"),
        "Updates of a guest or node that were rolled back.",
    ),
    "nixmox_guest_update_last_success": (
        "gauge",
        ("id", "name"),
        "1 if the guest's last update succeeded, else 0.",
    ),
    "nixmox_pool_state": (
        "gauge",
        ("pool", "state"),
        "1 for the pool's state as the newest pool check read it, 0 for the other states.",
    ),
    "nixmox_pool_data_errors": (
        "gauge",
        ("pool",),
        "Files with permanent damage (zpool status: errors: N data errors).",
    ),
    "nixmox_pool_vdev_errors": (
        "gauge",
        ("pool", "vdev", "type"),
        "A device's read, write or checksum error count (zpool clear resets it).",
    ),
    "nixmox_pool_size_bytes": (
        "gauge",
        ("pool",),
        "The pool's size.",
    ),
    "nixmox_pool_allocated_bytes": (
        "gauge",
        ("pool",),
        "Space allocated in the pool.",
    ),
    "nixmox_pool_fragmentation_ratio": (
        "gauge",
        ("pool",),
        "Fragmentation of the pool's free space (0-1), where zpool reports it.",
    ),
    "nixmox_pool_scrub_last_end_timestamp_seconds": (
        "gauge",
        ("pool",),
        "When the pool's newest scrub ended (finished or canceled).",
    ),
    "nixmox_pool_scrub_last_errors": (
        "gauge",
        ("pool",),
        "Errors the newest scrub could not repair.",
    ),
    "nixmox_pool_scrub_last_repaired_bytes": (
        "gauge",
        ("pool",),
        "Bytes the newest scrub repaired.",
    ),
    "nixmox_pool_fill_forecast_seconds": (
        "gauge",
        ("pool",),
        "Time until the pool reaches [pool_health] forecast_percent at its recent rate "
        "(0: there already; absent: not filling, or too little history).",
    ),
    "nixmox_disk_smart_healthy": (
        "gauge",
        ("device",),
        "1 if the disk's SMART self-assessment passed (and NVMe has no critical warning).",
    ),
    "nixmox_disk_reallocated_sectors": (
        "gauge",
        ("device",),
        "Sectors the disk reallocated (ATA attribute 5).",
    ),
    "nixmox_disk_pending_sectors": (
        "gauge",
        ("device",),
        "Sectors waiting to be reallocated (ATA attribute 197).",
    ),
    "nixmox_disk_media_errors": (
        "gauge",
        ("device",),
        "Unrecovered data integrity errors (NVMe media errors).",
    ),
    "nixmox_disk_endurance_used_ratio": (
        "gauge",
        ("device",),
        "NVMe percentage used / 100: the rated endurance used (may pass 1).",
    ),
    "nixmox_disk_temperature_celsius": (
        "gauge",
        ("device",),
        "The disk's temperature.",
    ),
    "nixmox_disk_power_on_seconds": (
        "gauge",
        ("device",),
        "How long the disk has been powered on.",
    ),
}
