"""The inventory: a typed, strict model of the whole lab (``nixmox.toml``).

Field checks that concern one value live here (types, ranges, formats);
checks across the file (unique ids, references, devices used twice) live in
:mod:`nixmox.inventory.checks`, so both report every problem at once.
Keys Proxmox already names keep Proxmox's spelling (``vmid``, ``ostype``,
``keep-daily``, ``x-vga``); nixmox's own keys are snake_case.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from nixmox.rules.oncalendar import CalendarError, is_valid_calendar
from nixmox.rules.retention import Keep
from nixmox.rules.timespan import parse_timespan

# -- reusable value types -----------------------------------------------------


def _matches(pattern: str, what: str) -> AfterValidator:
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(f"{value!r} is not {what}")
        return value

    return AfterValidator(check)


def _calendar(value: str) -> str:
    problem = is_valid_calendar(value)
    if problem is not None:
        raise ValueError(f"{value!r} is not a systemd calendar spec: {problem}")
    return value


def _timespan(value: str) -> str:
    try:
        parse_timespan(value)
    except CalendarError as exc:
        raise ValueError(f"{value!r} is not a systemd time span: {exc}") from None
    return value


def _interface(value: str) -> str:
    try:
        ipaddress.ip_interface(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an address with prefix, like 192.0.2.2/24") from None
    if "/" not in value:
        raise ValueError(f"{value!r} needs a prefix length, like 192.0.2.2/24")
    return value


def _address(value: str) -> str:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address") from None
    return value


def _zone(value: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {value!r} (use an IANA name like Europe/Vienna)"
        ) from None
    return value


def _https(value: str) -> str:
    if not value.startswith("https://"):
        raise ValueError(f"{value!r} must start with https:// (TLS is always on)")
    if not re.fullmatch(
        r"https://[A-Za-z0-9.\-]+(:\d{1,5})?/?|https://\[[0-9A-Fa-f:.]+\](:\d{1,5})?/?", value
    ):
        raise ValueError(f"{value!r} is not of the form https://HOST:PORT")
    return value


Calendar = Annotated[str, AfterValidator(_calendar)]
TimeSpan = Annotated[str, AfterValidator(_timespan)]
Name = Annotated[str, _matches(r"[A-Za-z0-9][A-Za-z0-9-]{0,62}", "a name (letters, digits, -)")]
NodeName = Annotated[str, _matches(r"[A-Za-z0-9][A-Za-z0-9-]{0,62}", "a node name")]
StorageId = Annotated[str, _matches(r"[A-Za-z][A-Za-z0-9\-_.]*", "a Proxmox storage id")]
DatasetName = Annotated[
    str, _matches(r"[A-Za-z0-9][A-Za-z0-9_.:-]*(/[A-Za-z0-9_.:-]+)*", "a ZFS dataset name")
]
#: Proxmox sizes: a number with an optional K/M/G/T unit.
Size = Annotated[str, _matches(r"\d+(\.\d+)?[KMGT]?", "a size like 32G or 512M")]
#: A PCI address ``DDDD:BB:DD`` (every function) or ``DDDD:BB:DD.F``.
PciAddress = Annotated[
    str,
    _matches(
        r"[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[01][0-9a-fA-F](\.[0-7])?", "a PCI address DDDD:BB:DD[.F]"
    ),
]
PciFunction = Annotated[
    str,
    _matches(r"[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[01][0-9a-fA-F]\.[0-7]", "a PCI address DDDD:BB:DD.F"),
]
Interface = Annotated[str, AfterValidator(_interface)]
IpAddress = Annotated[str, AfterValidator(_address)]

# Host names, IPv4 and bracketed IPv6: what ssh takes as a destination host.
_SSH_HOST = r"([A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?|\[[0-9A-Fa-f:.]+\])"
_SSH_USER = r"[a-z_][a-z0-9_.-]*\$?"
#: ``[USER@]HOST[:PORT]``: nothing ssh could read as an option (no leading
#: ``-``), no whitespace and no shell characters.
SshDestination = Annotated[
    str,
    _matches(
        f"({_SSH_USER}@)?{_SSH_HOST}(:[0-9]{{1,5}})?", "an ssh destination [USER@]HOST[:PORT]"
    ),
]
SshHost = Annotated[str, _matches(_SSH_HOST, "a host name or IP address")]
SshUser = Annotated[str, _matches(_SSH_USER, "a user name")]
Zone = Annotated[str, AfterValidator(_zone)]
HttpsUrl = Annotated[str, AfterValidator(_https)]
Count = Annotated[int, Field(ge=0)]


class Strict(BaseModel):
    """Base of every inventory table: unknown keys are errors, no coercion."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# -- connection and tools -----------------------------------------------------


class ProxmoxSettings(Strict):
    """How to reach the Proxmox API; each key can be overridden by NIXMOX_PVE_*."""

    url: HttpsUrl | None = Field(None, description="https://HOST:PORT of the API")
    token_id: (
        Annotated[
            str, _matches(r"[^@!\s]+@[^@!\s]+![A-Za-z][A-Za-z0-9._-]*", "USER@REALM!TOKENNAME")
        ]
        | None
    ) = None
    token_file: str | None = Field(
        None, description="file holding the token secret; must not be group/world-readable"
    )
    user: str | None = Field(
        None, description="USER@REALM for a password login (when no API token is configured)"
    )
    password_file: str | None = Field(
        None, description="file holding that user's password; must not be group/world-readable"
    )
    ca_file: str | None = Field(None, description="CA bundle that signed the API certificate")
    fingerprint: (
        Annotated[
            str, _matches(r"([0-9A-Fa-f]{2}:){31}[0-9A-Fa-f]{2}", "a SHA-256 fingerprint AA:BB:...")
        ]
        | None
    ) = Field(None, description="SHA-256 of the API certificate")


class ZfsSettings(Strict):
    """How nixmox runs ZFS commands (locally, over SSH or through sudo)."""

    command: list[str] = Field(default_factory=lambda: ["zfs"], min_length=1)
    zpool_command: list[str] | None = Field(
        None, min_length=1, description="default: `command` with its last word replaced by zpool"
    )


# -- the host -----------------------------------------------------------------


class ExpectedDisk(Strict):
    model: str
    count: int = Field(1, ge=1)
    pool: str | None = None


class ExpectedPci(Strict):
    address: PciFunction
    role: Literal["gpu", "audio", "usb", "nic", "storage", "other"]
    description: str | None = None


class Hardware(Strict):
    """What the host should have; `doctor` compares it with what it finds."""

    cpu: str | None = None
    cores: int | None = Field(None, ge=1)
    threads: int | None = Field(None, ge=1)
    memory_gib: int | None = Field(None, ge=1)
    ecc: bool | None = None
    nics: list[str] = Field(default_factory=list)
    disks: list[ExpectedDisk] = Field(default_factory=list)
    pci: list[ExpectedPci] = Field(default_factory=list)


class Node(Strict):
    """A Proxmox VE node."""

    name: NodeName
    address: SshHost | None = Field(None, description="host name for SSH (update host)")
    ssh_user: SshUser = "root"
    root_dataset: DatasetName | None = Field(
        None, description="snapshotted before host updates (required by update host)"
    )
    reboot: Literal["never", "allowed", "window"] = "never"
    reboot_window: Calendar | None = Field(
        None,
        description="calendar spec of the times update host may reboot the node; trailing "
        ":00 time fields count as * (Sun 04:00 is Sunday 04:00-04:59)",
    )
    hardware: Hardware | None = None


class Bridge(Strict):
    """A Linux bridge on a node (vmbrN)."""

    name: Annotated[str, _matches(r"[A-Za-z][A-Za-z0-9_]{0,13}", "a bridge name like vmbr0")]
    node: NodeName | None = Field(None, description="default: the only node")
    ports: list[str] = Field(default_factory=list)
    cidr: Interface | None = None
    gateway: IpAddress | None = None
    vlan_aware: bool = False
    autostart: bool = True
    comment: str | None = None


class Pool(Strict):
    """A ZFS pool."""

    name: Annotated[str, _matches(r"[A-Za-z][A-Za-z0-9_.:-]*", "a ZFS pool name")]
    node: NodeName | None = None
    layout: Literal["single", "mirror", "raidz1", "raidz2", "raidz3", "draid"] | None = None
    max_used_percent: int = Field(80, ge=1, le=100)


class Dataset(Strict):
    """A ZFS dataset nixmox looks after."""

    name: DatasetName
    properties: dict[str, str] = Field(default_factory=dict)
    comment: str | None = None


StorageContent = Literal["images", "rootdir", "backup", "iso", "vztmpl", "snippets", "import"]


class Storage(Strict):
    """A Proxmox storage (`pvesm`)."""

    storage: StorageId
    type: Literal["dir", "zfspool", "nfs", "cifs", "pbs", "lvm", "lvmthin", "btrfs"]
    path: str | None = None
    dataset: DatasetName | None = Field(
        None, description="for zfspool (its `pool`), or backing a dir"
    )
    content: list[StorageContent] = Field(default_factory=list)
    nodes: list[NodeName] = Field(default_factory=list)
    sparse: bool | None = None
    shared: bool = False


# -- guests -------------------------------------------------------------------


class Volume(Strict):
    """An LXC root file system."""

    storage: StorageId
    size: Size


class Disk(Strict):
    """A VM disk in one bus slot."""

    slot: Annotated[
        str,
        _matches(
            r"(scsi([0-9]|[12][0-9]|30)|virtio([0-9]|1[0-5])|sata[0-5]|ide[0-3])", "a disk slot"
        ),
    ]
    storage: StorageId
    size: Size
    iothread: bool | None = None
    discard: bool | None = None
    ssd: bool | None = None
    cache: Literal["none", "writeback", "writethrough", "directsync", "unsafe"] | None = None
    backup: bool | None = None


class Net(Strict):
    """A network interface; `net0`, `net1`, ... in order."""

    bridge: str
    model: Literal["virtio", "e1000", "e1000e", "rtl8139", "vmxnet3"] | None = None
    mac: Annotated[str, _matches(r"([0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}", "a MAC address")] | None = (
        None
    )
    ip: Literal["dhcp"] | Interface | None = None
    gw: IpAddress | None = None
    ip6: Literal["dhcp", "auto"] | Interface | None = None
    tag: int | None = Field(None, ge=1, le=4094)
    firewall: bool | None = None


class HostPci(Strict):
    """A passed-through PCI device (`hostpciN`)."""

    device: PciAddress | None = Field(
        None, description="DDDD:BB:DD for every function, or DDDD:BB:DD.F"
    )
    mapping: str | None = Field(
        None, description="a Proxmox PCI resource mapping instead of a raw address"
    )
    pcie: bool | None = None
    x_vga: bool | None = Field(None, alias="x-vga")
    rombar: bool | None = None
    romfile: str | None = None


class EfiDisk(Strict):
    storage: StorageId
    efitype: Literal["2m", "4m"] = "4m"
    pre_enrolled_keys: bool = Field(True, alias="pre-enrolled-keys")


class TpmState(Strict):
    storage: StorageId
    version: Literal["v1.2", "v2.0"] = "v2.0"


class KeepOptions(Strict):
    """Proxmox's keep-* retention options (see RETENTION.md)."""

    keep_all: bool | None = Field(None, alias="keep-all")
    keep_last: Count | None = Field(None, alias="keep-last")
    keep_hourly: Count | None = Field(None, alias="keep-hourly")
    keep_daily: Count | None = Field(None, alias="keep-daily")
    keep_weekly: Count | None = Field(None, alias="keep-weekly")
    keep_monthly: Count | None = Field(None, alias="keep-monthly")
    keep_yearly: Count | None = Field(None, alias="keep-yearly")

    def rule(self) -> Keep:
        """These options as the retention engine's :class:`~nixmox.rules.retention.Keep`."""
        return Keep(
            last=self.keep_last,
            hourly=self.keep_hourly,
            daily=self.keep_daily,
            weekly=self.keep_weekly,
            monthly=self.keep_monthly,
            yearly=self.keep_yearly,
            all=bool(self.keep_all),
        )


class HealthChecks(Strict):
    """What must hold after an update for it to count as healthy."""

    units: list[str] = Field(default_factory=list, description="units that must be active")
    commands: list[str] = Field(default_factory=list, description="commands that must exit 0")
    http: list[str] = Field(default_factory=list, description="URLs that must answer 2xx")
    timeout: TimeSpan = "2min"


class UpdateSettings(Strict):
    """How `nixmox update` maintains this guest."""

    method: Literal["nixos", "windows", "none"]
    via: Literal["ssh", "agent", "pct"] | None = None
    ssh: SshDestination | None = Field(
        None, description="USER@HOST[:PORT] for the system ssh client"
    )
    flake: str | None = Field(None, description="flake directory in the guest")
    host: str | None = Field(None, description="nixosConfigurations attribute")
    inputs: list[str] = Field(default_factory=list, description="inputs to update; empty: all")
    health: HealthChecks | None = None
    dead_man: TimeSpan = Field(
        "5min", description="switch back if nixmox loses the guest this long"
    )
    busy_processes: list[str] = Field(default_factory=list)
    keep_snapshot: bool = Field(
        False, description="keep the pre-update snapshot after a successful update"
    )
    snapshots: KeepOptions | None = Field(
        None, description="retention of nixmox's update snapshots; default keep-last = 3"
    )
    commit_lock: bool = Field(
        False, description="commit the updated flake.lock (as nixmox); else leave it modified"
    )
    max_rounds: int = Field(3, ge=1, le=10, description="Windows: scan/install/reboot rounds")


class RebootPolicy(Strict):
    """When nixmox may reboot or stop this guest."""

    policy: Literal["never", "allowed", "window", "when-idle"] = "never"
    window: Calendar | None = None


class WindowsSettings(Strict):
    """Windows provisioning through the guest agent."""

    user: str | None = Field(
        None, description="the Windows account that plays: Steam starts at its logon"
    )
    steam: bool = False
    rust: Literal["none", "client", "server"] = Field(
        "none",
        description="client: app 252490, installed by the user in Steam; "
        "server: dedicated server app 258550 through steamcmd",
    )
    rust_server_dir: str = Field(
        "C:\\rustserver", description="where steamcmd installs the Rust dedicated server"
    )
    steamcmd_dir: str = Field("C:\\steamcmd", description="where nixmox unpacks steamcmd")


class Guest(Strict):
    """An LXC container or a VM.

    Only ``name``, ``vmid``, ``kind`` and ``node`` are required: such a guest
    is backed up and updated but never provisioned.
    """

    name: Name
    vmid: int = Field(ge=100, le=999_999_999)
    kind: Literal["lxc", "vm"]
    node: NodeName
    os: Literal["nixos", "windows", "other"] | None = None
    description: str | None = None
    tags: list[Annotated[str, _matches(r"[a-z0-9_][a-z0-9_+.-]*", "a Proxmox tag")]] = Field(
        default_factory=list
    )
    onboot: bool | None = None
    stage: Literal["install", "gpu", "gaming"] | None = None
    ostype: str | None = None
    machine: (
        Annotated[str, _matches(r"(q35|pc|pc-(q35|i440fx)-\d+\.\d+(\+pve\d+)?)", "a machine type")]
        | None
    ) = None
    bios: Literal["seabios", "ovmf"] | None = None
    cpu: str | None = None
    cores: int | None = Field(None, ge=1, le=1024)
    sockets: int | None = Field(None, ge=1, le=4)
    affinity: (
        Annotated[str, _matches(r"\d+(-\d+)?(,\d+(-\d+)?)*", "a CPU list like 8-15,24-31")] | None
    ) = None
    memory: int | None = Field(None, ge=16, description="MiB")
    balloon: int | None = Field(None, ge=0, description="MiB; 0 disables ballooning")
    swap: int | None = Field(None, ge=0, description="MiB (LXC)")
    agent: bool | None = None
    scsihw: Literal["virtio-scsi-single", "virtio-scsi-pci", "lsi", "megasas", "pvscsi"] | None = (
        None
    )
    unprivileged: bool | None = None
    features: list[Literal["nesting", "keyctl", "fuse", "mknod"]] = Field(default_factory=list)
    template: (
        Annotated[
            str, _matches(r"[A-Za-z][A-Za-z0-9\-_.]*:vztmpl/[^/]+", "a volume STORAGE:vztmpl/FILE")
        ]
        | None
    ) = Field(None, description="LXC: the template file to create from")
    clone: int | Name | None = Field(None, description="VM: template VM to clone, by vmid or name")
    rootfs: Volume | None = None
    disks: list[Disk] = Field(default_factory=list)
    net: list[Net] = Field(default_factory=list, max_length=32)
    hostpci: list[HostPci] = Field(default_factory=list, max_length=16)
    efidisk: EfiDisk | None = None
    tpmstate: TpmState | None = None
    update: UpdateSettings | None = None
    reboot: RebootPolicy = Field(default_factory=RebootPolicy)
    windows: WindowsSettings | None = None

    @property
    def pve_type(self) -> Literal["qemu", "lxc"]:
        """The API's word for the kind: ``qemu`` for a VM, ``lxc`` for a container."""
        return "lxc" if self.kind == "lxc" else "qemu"


# -- retention, snapshots, backups --------------------------------------------


class SnapshotPolicy(KeepOptions):
    """keep-* for snapshots, and how old the newest may get before `--monitor` complains."""

    warn_after: TimeSpan | None = Field(
        None, description="default: two of the policy's finest periods"
    )
    crit_after: TimeSpan | None = Field(None, description="default: four of its finest periods")


class SnapshotTarget(Strict):
    """A dataset (tree) snapshotted on a policy."""

    dataset: DatasetName
    policy: str
    recursive: bool = False


class Snapshots(Strict):
    policies: dict[str, SnapshotPolicy] = Field(default_factory=dict)
    datasets: list[SnapshotTarget] = Field(default_factory=list)


class BackupVerify(Strict):
    """Where `backup verify` restores: a scratch VMID range and a storage."""

    vmids: list[Annotated[int, Field(ge=100, le=999_999_999)]] = Field(
        default_factory=lambda: [9900, 9999],
        min_length=2,
        max_length=2,
        description="first and last scratch VMID (inclusive)",
    )
    storage: StorageId | None = Field(None, description="default: the archive's own disks' storage")
    timeout: TimeSpan = Field(
        "10min", description="how long the restored guest may take to come up"
    )


class Backups(Strict):
    """vzdump backups and their retention."""

    storage: StorageId
    mode: Literal["snapshot", "suspend", "stop"] = "snapshot"
    compress: Literal["zstd", "lzo", "gzip", "0"] = "zstd"
    keep: KeepOptions | None = None
    guests: list[Name] = Field(default_factory=list, description="names to back up; empty: all")
    exclude: list[Name] = Field(default_factory=list)
    notes_template: str = "{{guestname}} (nixmox)"
    lock_wait: TimeSpan = Field(
        "10min", description="how long to wait for a guest locked by another job"
    )
    scheduler: Literal["nixmox", "proxmox"] = Field(
        "nixmox",
        description="nixmox: `nixmox backup` on its timer; proxmox: a /cluster/backup job kept in "
        "sync by plan/apply",
    )
    verify: BackupVerify | None = None


# -- schedules, notifications, metrics ----------------------------------------


class Schedules(Strict):
    """When each job runs (systemd calendar specs)."""

    snapshot: Calendar | None = None
    backup: Calendar | None = None
    backup_verify: Calendar | None = None
    update_host: Calendar | None = None
    update_nixos: Calendar | None = None
    update_windows: Calendar | None = None
    randomized_delay: TimeSpan | None = None
    fixed_random_delay: bool = Field(
        True, description="the same random delay every run (systemd >= 247)"
    )
    persistent: bool = True


NotifyEvent = Literal["failure", "recovery", "success"]
_DEFAULT_EVENTS: tuple[NotifyEvent, ...] = ("failure", "recovery")


class Templates(Strict):
    """What `nixmox template build` puts into the NixOS images."""

    ssh_keys: list[
        Annotated[
            str,
            _matches(
                r"(ssh-(ed25519|rsa)|ecdsa-sha2-nistp(256|384|521)|sk-[a-z0-9-]+@openssh\.com)"
                r" [A-Za-z0-9+/]+={0,3}( .*)?",
                "an SSH public key (TYPE BASE64 [COMMENT])",
            ),
        ]
    ] = Field(default_factory=list, description="public keys the guests accept for root")


class Notify(Strict):
    """Notifications through apprise."""

    urls: list[str] = Field(default_factory=list)
    on: list[NotifyEvent] = Field(default_factory=lambda: list(_DEFAULT_EVENTS))


class Metrics(Strict):
    textfile: str


class Inventory(Strict):
    """The whole lab: ``nixmox.toml``."""

    timezone: Zone | None = Field(
        None, description="the Proxmox host's zone; default: this machine's"
    )
    proxmox: ProxmoxSettings = Field(default_factory=ProxmoxSettings)
    zfs: ZfsSettings = Field(default_factory=ZfsSettings)
    nodes: list[Node] = Field(default_factory=list)
    bridges: list[Bridge] = Field(default_factory=list)
    pools: list[Pool] = Field(default_factory=list)
    datasets: list[Dataset] = Field(default_factory=list)
    storages: list[Storage] = Field(default_factory=list)
    guests: list[Guest] = Field(default_factory=list)
    snapshots: Snapshots | None = None
    backups: Backups | None = None
    schedules: Schedules | None = None
    notify: Notify | None = None
    metrics: Metrics | None = None
    templates: Templates | None = None

    def guest(self, name: str) -> Guest:
        """The guest called ``name`` (KeyError if none)."""
        for guest in self.guests:
            if guest.name == name:
                return guest
        raise KeyError(name)
