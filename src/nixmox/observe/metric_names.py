"""The Prometheus metrics nixmox exports (the textfile, the Grafana dashboard).

Names follow Prometheus' conventions: base units, ``_seconds``,
``_timestamp_seconds``, ``_bytes``, ``_total``. Guest metrics carry
``id="qemu/101"`` (or ``lxc/100``) so they join with prometheus-pve-exporter's
``pve_guest_info``.
"""

from __future__ import annotations

#: name -> (type, labels, help)
METRICS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "nixmox_job_last_run_timestamp_seconds": (
        "gauge",
        ("job",),
        "When the job last finished (Unix time).",
    ),
    "nixmox_job_last_run_duration_seconds": (
        "gauge",
        ("job",),
        "How long the job's last run took.",
    ),
    "nixmox_job_last_run_success": (
        "gauge",
        ("job",),
        "1 if the job's last run succeeded, else 0.",
    ),
    "nixmox_job_runs_total": (
        "counter",
        ("job", "result"),
        "Runs of each job by result, from the journal.",
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
    "nixmox_pending_updates": (
        "gauge",
        ("target",),
        "Updates waiting: packages on a node, or a guest's pending changes.",
    ),
    "nixmox_update_rollbacks_total": (
        "counter",
        ("id", "name"),
        "Updates of a guest that were rolled back.",
    ),
    "nixmox_guest_update_last_success": (
        "gauge",
        ("id", "name"),
        "1 if the guest's last update succeeded, else 0.",
    ),
}
