"""systemd units for nixmox's jobs, rendered from the inventory (pure).

Each job with a schedule in ``[schedules]`` becomes a oneshot
``nixmox-<job>.service`` and a ``nixmox-<job>.timer``; a failure of any of
them starts ``nixmox-failed@<unit>.service``, which records the failure in
the run journal. Nothing here touches the file system or runs a command:
:mod:`nixmox.schedule.install` writes, enables and removes what this returns.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from pathlib import PurePosixPath

from nixmox import __version__
from nixmox.adapters.proxmox.settings import CREDENTIAL
from nixmox.core.errors import ConfigError
from nixmox.inventory.model import Inventory, Schedules
from nixmox.rules.oncalendar import parse_calendar

#: The template started by every job's ``OnFailure=``.
FAILED_TEMPLATE = "nixmox-failed@.service"
#: The hidden subcommand that template runs.
FAILED_COMMAND = "unit-failed"
#: FixedRandomDelay= appeared in systemd 247 (Debian 11, Proxmox VE 7).
FIXED_RANDOM_DELAY_SINCE = 247
#: Where systemd keeps StateDirectory= directories.
_STATE_ROOT = PurePosixPath("/var/lib")


class Sandbox(enum.Enum):
    """How much a job's unit may be confined without breaking what it runs."""

    #: Only the Proxmox API over HTTPS (and ssh for commands on a node).
    API = "api"
    #: zfs(8) on this host (needs /dev/zfs) or over ssh.
    ZFS = "zfs"
    #: apt and reboots on the host itself: it changes the system by design.
    HOST = "host"


@dataclass(frozen=True)
class Job:
    """A scheduled job: its unit name, the nixmox command it runs, its limits."""

    name: str
    command: tuple[str, ...]
    schedule: str
    timeout: str
    description: str
    sandbox: Sandbox
    needs_api: bool = True

    @property
    def service(self) -> str:
        return f"nixmox-{self.name}.service"

    @property
    def timer(self) -> str:
        return f"nixmox-{self.name}.timer"


# Timeouts: a hung job must end before its next run is due, yet leave room
# for the slow cases (vzdump of a large disk, a Windows cumulative update, a
# NixOS closure built from source).
JOBS: tuple[Job, ...] = (
    Job(
        "snapshot",
        ("snapshot",),
        "snapshot",
        "15min",
        "take and prune ZFS snapshots",
        Sandbox.ZFS,
        needs_api=False,
    ),
    Job(
        "replicate",
        ("replicate",),
        "replicate",
        "6h",
        "replicate ZFS snapshots to their targets",
        Sandbox.ZFS,
        needs_api=False,
    ),
    Job("backup", ("backup",), "backup", "6h", "back up the guests (vzdump)", Sandbox.API),
    Job(
        "backup-verify",
        ("backup", "verify"),
        "backup_verify",
        "2h",
        "restore the newest backup and check it",
        Sandbox.API,
    ),
    Job(
        "update-host",
        ("update", "host"),
        "update_host",
        "3h",
        "update the Proxmox host",
        Sandbox.HOST,
    ),
    Job(
        "update-nixos",
        ("update", "nixos"),
        "update_nixos",
        "3h",
        "update the NixOS guests",
        Sandbox.API,
    ),
    Job(
        "update-windows",
        ("update", "windows"),
        "update_windows",
        "4h",
        "update the Windows guests",
        Sandbox.API,
    ),
    # A scrub of a large pool of disks takes many hours, more with a pause window.
    Job(
        "pool-scrub",
        ("pool", "scrub"),
        "pool_scrub",
        "2d",
        "scrub the ZFS pools",
        Sandbox.ZFS,
        needs_api=False,
    ),
    Job(
        "pool-trim",
        ("pool", "trim"),
        "pool_trim",
        "12h",
        "TRIM the ZFS pools",
        Sandbox.ZFS,
        needs_api=False,
    ),
    Job(
        "pool-check",
        ("pool", "check"),
        "pool_check",
        "15min",
        "record pool and disk health (SMART)",
        Sandbox.ZFS,
        needs_api=False,
    ),
)


@dataclass(frozen=True)
class UnitSettings:
    """What the units need to know about the machine they run on."""

    #: Absolute path of the installed ``nixmox``.
    executable: PurePosixPath
    #: Absolute path of the inventory the jobs read.
    config: PurePosixPath
    #: NIXMOX_STATE_DIR for the jobs (journal, lock, install manifest).
    state_dir: PurePosixPath
    #: The target's systemd version; None: assume a current one.
    systemd_version: int | None = None


def job_named(name: str) -> Job:
    """The job called ``name`` (``backup-verify``); KeyError if none."""
    for job in JOBS:
        if job.name == name:
            return job
    raise KeyError(name)


def job_of_unit(unit: str) -> Job | None:
    """The job whose service or timer is ``unit``, if any."""
    for job in JOBS:
        if unit in (job.service, job.timer):
            return job
    return None


def scheduled(schedules: Schedules | None) -> list[tuple[Job, str]]:
    """Every job that has a calendar spec, with that spec, in JOBS order."""
    if schedules is None:
        return []
    found: list[tuple[Job, str]] = []
    for job in JOBS:
        spec = getattr(schedules, job.schedule)
        if spec is not None:
            found.append((job, spec))
    return found


def sandbox_of(job: Job, inv: Inventory) -> Sandbox:
    """The confinement ``job`` can bear with this inventory.

    ``pct exec`` (an LXC guest updated with ``via = "pct"``) is lxc-attach:
    it writes under /run and /var/lib/lxc and switches AppArmor profiles, so
    that job runs as loosely as a host update; so does ``update windows``
    when the unit cannot reach the API and falls back to ``qm``.
    """
    if job.name == "update-nixos" and any(
        g.update is not None and g.update.method == "nixos" and g.update.via == "pct"
        for g in inv.guests
    ):
        return Sandbox.HOST
    if job.name == "update-windows" and not _unit_has_api(inv):
        # Without a way into the API the job runs `qm` on the host
        # (nixmox.windows.update_run): qm writes the VM config and task logs in
        # /etc/pve (pmxcfs) and /var/log/pve, and takes its locks in
        # /run/lock/qemu-server, all read-only under ProtectSystem=strict.
        return Sandbox.HOST
    return job.sandbox


def _unit_has_api(inv: Inventory) -> bool:
    """Whether a timer's run can log in to the API: a URL, and a token (its credential)
    or a password file in the inventory; the unit passes no environment."""
    settings = inv.proxmox
    return settings.url is not None and (
        settings.token_file is not None or settings.password_file is not None
    )


def render_units(inv: Inventory, settings: UnitSettings) -> dict[str, str]:
    """Every unit file for ``inv``: file name -> text.

    Raises :class:`ConfigError` when no job has a schedule, or when a path
    cannot be written safely into a unit file.
    """
    jobs = scheduled(inv.schedules)
    if not jobs:
        raise ConfigError(
            "the inventory's [schedules] gives no job a calendar spec: no units to render"
        )
    assert inv.schedules is not None
    for what, path in (
        ("the nixmox executable", settings.executable),
        ("the inventory", settings.config),
        ("NIXMOX_STATE_DIR", settings.state_dir),
    ):
        _check_path(what, str(path))
    _check_visible("NIXMOX_STATE_DIR", settings.state_dir)
    token_file = inv.proxmox.token_file
    if token_file is not None:
        _check_path("proxmox.token_file", token_file)
    metrics_dir = None
    if inv.metrics is not None:
        metrics_dir = str(PurePosixPath(inv.metrics.textfile).parent)
        _check_path("metrics.textfile", metrics_dir)
        _check_visible("metrics.textfile", PurePosixPath(inv.metrics.textfile))
    units: dict[str, str] = {}
    for job, spec in jobs:
        units[job.service] = _service(job, sandbox_of(job, inv), settings, token_file, metrics_dir)
        units[job.timer] = _timer(job, spec, inv.schedules, inv.timezone, settings)
    units[FAILED_TEMPLATE] = _failed_template(settings)
    return units


def timers(units: dict[str, str]) -> list[str]:
    """The timer units among ``units``: what ``install`` enables."""
    return sorted(name for name in units if name.endswith(".timer"))


# -- unit text ------------------------------------------------------------------

Entry = tuple[str, str] | str
"""A ``Key=value`` line, or a comment line (the text after ``# ``)."""


def _check_path(what: str, path: str) -> None:
    # Unit files are line-based and split ExecStart= on spaces; a path that
    # would need quoting everywhere is refused rather than half-escaped.
    if not path.startswith("/"):
        raise ConfigError(f"{what} {path!r} must be an absolute path for a systemd unit")
    if re.search(r"[\s\"'\\]", path) or not path.isprintable():
        raise ConfigError(
            f"{what} {path!r} contains spaces, quotes or control characters; "
            "systemd units need a plain path"
        )


#: What ``PrivateTmp=yes`` replaces with an empty directory of the service's own.
PRIVATE_TMP = (PurePosixPath("/tmp"), PurePosixPath("/var/tmp"))


def hidden_by_private_tmp(path: PurePosixPath) -> bool:
    """Whether a service with ``PrivateTmp=yes`` sees its own ``path``, not the host's."""
    return any(path == tmp or tmp in path.parents for tmp in PRIVATE_TMP)


def _check_visible(what: str, path: PurePosixPath) -> None:
    # Every unit runs with PrivateTmp=yes: what a job wrote there would vanish
    # with the service, and `nixmox status` on the host would never see it.
    if hidden_by_private_tmp(path):
        raise ConfigError(
            f"{what} {str(path)!r} is under /tmp or /var/tmp, which the units' "
            "PrivateTmp=yes replaces with a private directory: the jobs would write "
            "where nobody sees it; choose a path elsewhere (default for the state: "
            "/var/lib/nixmox)"
        )


def _escape(value: str) -> str:
    """Protect ``value`` from systemd's specifier (%) and variable ($) expansion."""
    return value.replace("%", "%%").replace("$", "$$")


def _document(title: str, sections: list[tuple[str, list[Entry]]], settings: UnitSettings) -> str:
    lines = [
        f"# {title}",
        f"# Generated by nixmox {__version__} from {settings.config}.",
        "# Do not edit: change the inventory and run `nixmox install` again",
        "# (`nixmox uninstall` refuses to remove a file changed since it was written).",
    ]
    for name, entries in sections:
        lines += ["", f"[{name}]"]
        for entry in entries:
            lines.append(f"# {entry}" if isinstance(entry, str) else f"{entry[0]}={entry[1]}")
    return "\n".join(lines) + "\n"


def _exec(settings: UnitSettings, *command: str) -> str:
    words = [str(settings.executable), "--config", str(settings.config), *command]
    return " ".join(_escape(w) for w in words)


def _state_entries(settings: UnitSettings) -> list[Entry]:
    entries: list[Entry] = [("Environment", f"NIXMOX_STATE_DIR={_escape(str(settings.state_dir))}")]
    try:
        relative = settings.state_dir.relative_to(_STATE_ROOT)
    except ValueError:
        # Outside /var/lib systemd cannot create it for us: install does, and
        # ProtectSystem=strict needs it named writable.
        return [*entries, ("ReadWritePaths", _escape(str(settings.state_dir)))]
    # StateDirectory= creates it (mode 0700: the journal names hosts) and
    # keeps it writable under ProtectSystem=strict.
    return [*entries, ("StateDirectory", str(relative)), ("StateDirectoryMode", "0700")]


def _sandbox_entries(sandbox: Sandbox) -> list[Entry]:
    if sandbox is Sandbox.HOST:
        return [
            "This job changes the host itself (apt and dpkg rewrite /usr, /etc, /boot,",
            "/var; the job may reboot) or enters containers (pct exec writes under /run",
            "and /var/lib/lxc and switches AppArmor profiles): no ProtectSystem=,",
            "ProtectHome= or NoNewPrivileges= here.",
            ("PrivateTmp", "yes"),
        ]
    entries: list[Entry] = [
        "Read-only system; only the state directory is writable. zfs snapshot/destroy",
        "and zpool scrub/trim mount nothing, so the private mount namespace this",
        "implies is harmless.",
        ("ProtectSystem", "strict"),
        "Read-only, not hidden: ssh reads keys, config and known_hosts in",
        "/root/.ssh (unknown hosts cannot be added from a timer, on purpose).",
        ("ProtectHome", "read-only"),
        ("PrivateTmp", "yes"),
        ("NoNewPrivileges", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectControlGroups", "yes"),
        ("LockPersonality", "yes"),
        ("RestrictRealtime", "yes"),
    ]
    if sandbox is Sandbox.ZFS:
        entries += [
            "No PrivateDevices=, DevicePolicy= or ProtectClock= (which implies a",
            "device allow-list): zfs talks to the kernel through /dev/zfs, smartctl",
            "reads the disks (pool check).",
        ]
    else:
        entries += [
            "The API and ssh need IP sockets; AF_UNIX and AF_NETLINK serve the resolver.",
            ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6 AF_NETLINK"),
        ]
    return entries


def _service(
    job: Job,
    sandbox: Sandbox,
    settings: UnitSettings,
    token_file: str | None,
    metrics_dir: str | None = None,
) -> str:
    unit: list[Entry] = [
        ("Description", f"nixmox: {job.description}"),
        "The API, the nodes and the guests are reached over the network.",
        ("After", "network-online.target"),
        ("Wants", "network-online.target"),
        ("OnFailure", "nixmox-failed@%n.service"),
    ]
    service: list[Entry] = [
        ("Type", "oneshot"),
        ("ExecStart", _exec(settings, *job.command)),
        ("TimeoutStartSec", job.timeout),
        *_state_entries(settings),
    ]
    if job.needs_api and token_file is not None:
        service += [
            "The API token reaches nixmox as $CREDENTIALS_DIRECTORY/" + CREDENTIAL + ",",
            "never through the environment or this file.",
            ("LoadCredential", f"{CREDENTIAL}:{_escape(token_file)}"),
        ]
    service += _sandbox_entries(sandbox)
    if metrics_dir is not None and sandbox is not Sandbox.HOST:
        service += [
            "Every run rewrites the Prometheus textfile ([metrics]) there.",
            ("ReadWritePaths", _escape(metrics_dir)),
        ]
    return _document(
        f"nixmox {' '.join(job.command)}: {job.description}",
        [("Unit", unit), ("Service", service)],
        settings,
    )


def _calendar_spec(spec: str, zone: str | None) -> str:
    # The schedule means the inventory's zone (the one retention counts in),
    # whatever zone the host's clock is set to.
    if zone is None or parse_calendar(spec).timezone is not None:
        return spec
    return f"{spec} {zone}"


def _timer(
    job: Job, spec: str, schedules: Schedules, zone: str | None, settings: UnitSettings
) -> str:
    timer: list[Entry] = [
        ("OnCalendar", _escape(_calendar_spec(spec, zone))),
        "Catch up on a run missed while the host was off.",
        ("Persistent", "true" if schedules.persistent else "false"),
    ]
    delay = schedules.randomized_delay
    if delay is not None:
        timer.append(("RandomizedDelaySec", delay))
        version = settings.systemd_version
        if schedules.fixed_random_delay and (
            version is None or version >= FIXED_RANDOM_DELAY_SINCE
        ):
            timer += [
                "The same delay every time: runs stay evenly spaced.",
                ("FixedRandomDelay", "true"),
            ]
    return _document(
        f"nixmox {' '.join(job.command)} on its schedule",
        [
            ("Unit", [("Description", f"nixmox: {job.description} on schedule")]),
            ("Timer", timer),
            ("Install", [("WantedBy", "timers.target")]),
        ],
        settings,
    )


def _failed_template(settings: UnitSettings) -> str:
    service: list[Entry] = [
        ("Type", "oneshot"),
        "%i is the failed unit's name (OnFailure=nixmox-failed@%n.service).",
        ("ExecStart", _exec(settings, FAILED_COMMAND) + " %i"),
        ("TimeoutStartSec", "2min"),
        *_state_entries(settings),
        *_sandbox_entries(Sandbox.API),
    ]
    return _document(
        "nixmox: record that a job's unit failed",
        [
            (
                "Unit",
                [
                    ("Description", "nixmox: record the failure of %i"),
                    "No OnFailure= here: a failing hook must not start itself again.",
                ],
            ),
            ("Service", service),
        ],
        settings,
    )
