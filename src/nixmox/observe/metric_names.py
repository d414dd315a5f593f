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
"""

from __future__ import annotations

#: The results a run can end with: a ``nixmox_job_runs_total`` series exists for
#: each from a command's first run on, so its first failure is an increase.
#: ``interrupted``: stopped by SIGINT/SIGTERM, or found dead by a later run.
RUN_RESULTS = ("ok", "failed", "error", "interrupted")

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
}
