"""The inventory: a typed, strict model of the whole lab (``nixmox.toml``).

Field checks that concern one value live here (types, ranges, formats);
checks across the file (unique ids, references, devices used twice) live in
:mod:`nixmox.inventory.checks`, so both report every problem at once.
Keys Proxmox already names keep Proxmox's spelling (``vmid``, ``ostype``,
``keep-daily``, ``x-vga``); nixmox's own keys are snake_case.
"""

# No `from __future__ import annotations` here: pydantic would have to evaluate
# every field's annotation from its text, a fifth of building the model.
import ipaddress
import re
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr

from nixmox.inventory.locate import Path as KeyPath
from nixmox.inventory.locate import Position, nearest, render_path
from nixmox.rules.oncalendar import CalendarError, is_valid_calendar
from nixmox.rules.timespan import parse_timespan

if TYPE_CHECKING:
    from nixmox.rules.retention import Keep

# -- reusable value types -----------------------------------------------------


def _matches(pattern: str, what: str) -> AfterValidator:
    def check(value: str) -> str:
        # Compiled on first use (re caches it): most patterns never meet a value.
        if not re.fullmatch(pattern, value):
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

    url: HttpsUrl | None = Field(
        None,
        description="https://HOST:PORT of the API (Proxmox listens on 8006); "
        "environment: NIXMOX_PVE_URL",
        examples=["https://pve.home.arpa:8006"],
    )
    token_id: (
        Annotated[
            str, _matches(r"[^@!\s]+@[^@!\s]+![A-Za-z][A-Za-z0-9._-]*", "USER@REALM!TOKENNAME")
        ]
        | None
    ) = Field(
        None,
        description="API token id USER@REALM!TOKENNAME; environment: NIXMOX_PVE_TOKEN_ID",
        examples=["nixmox@pve!automation"],
    )
    token_file: str | None = Field(
        None,
        description="file holding the token secret; refused when group- or world-readable. "
        "NIXMOX_PVE_TOKEN (the secret itself) and systemd's "
        "$CREDENTIALS_DIRECTORY/nixmox-pve-token come first",
    )
    user: str | None = Field(
        None,
        description="USER@REALM for a password login (a ticket renewed hourly), used when no "
        "API token is configured; environment: NIXMOX_PVE_USER",
    )
    password_file: str | None = Field(
        None,
        description="file holding that user's password; refused when group- or world-readable; "
        "environment: NIXMOX_PVE_PASSWORD (the password itself)",
    )
    ca_file: str | None = Field(
        None,
        description="CA bundle (PEM) that signed the API certificate, e.g. a copy of "
        "/etc/pve/pve-root-ca.pem; unset with no fingerprint: the system trust store; "
        "environment: NIXMOX_PVE_CA_FILE",
    )
    fingerprint: (
        Annotated[
            str, _matches(r"([0-9A-Fa-f]{2}:){31}[0-9A-Fa-f]{2}", "a SHA-256 fingerprint AA:BB:...")
        ]
        | None
    ) = Field(
        None,
        description="SHA-256 of the API certificate as AA:BB:... (32 bytes); checked during the "
        "TLS handshake, so a mismatch stops before any credential is sent; "
        "environment: NIXMOX_PVE_FINGERPRINT",
    )


class ZfsSettings(Strict):
    """How nixmox runs ZFS commands (locally, over SSH or through sudo)."""

    command: list[str] = Field(
        default_factory=lambda: ["zfs"],
        min_length=1,
        description='argv prefix that runs zfs, e.g. ["ssh", "root@pve1.home.arpa", "zfs"] '
        'or ["sudo", "zfs"]; default: zfs from PATH',
        json_schema_extra={"default": ["zfs"]},
    )
    zpool_command: list[str] | None = Field(
        None,
        min_length=1,
        description="argv prefix that runs zpool; default: `command` with its last word "
        "replaced by zpool",
    )


# -- the host -----------------------------------------------------------------


class ExpectedDisk(Strict):
    """Disks the host should have (documentation of the build; not checked yet)."""

    model: str = Field(description="the disk model, in your words (e.g. 2TB NVMe)")
    count: int = Field(1, ge=1, description="how many of them")
    pool: str | None = Field(None, description="the ZFS pool they make up")


class ExpectedPci(Strict):
    """A PCI function the host should have; `doctor` checks it exists with a fitting class."""

    address: PciFunction = Field(
        description="PCI address DDDD:BB:DD.F, as lspci -D shows it", examples=["0000:01:00.0"]
    )
    role: Literal["gpu", "audio", "usb", "nic", "storage", "other"] = Field(
        description="what the device is; gpu, audio and usb are checked against the PCI class "
        "(0x0300, 0x0403, 0x0c03)"
    )
    description: str | None = Field(None, description="free text, e.g. the card's name")


class Hardware(Strict):
    """What the host should have; `doctor` compares it with what it finds."""

    cpu: str | None = Field(
        None, description="CPU model name as /proc/cpuinfo shows it (case and spacing ignored)"
    )
    cores: int | None = Field(None, ge=1, description="physical cores")
    threads: int | None = Field(
        None,
        ge=1,
        description="hardware threads (logical CPUs); guests' vCPUs are judged against it",
    )
    memory_gib: int | None = Field(
        None, ge=1, description="installed memory in GiB (the kernel may report up to 10% less)"
    )
    ecc: bool | None = Field(None, description="ECC memory (documentation; not checked yet)")
    nics: list[str] = Field(
        default_factory=list, description="network cards, in your words (documentation)"
    )
    disks: list[ExpectedDisk] = Field(default_factory=list, description="disks (documentation)")
    pci: list[ExpectedPci] = Field(
        default_factory=list, description="PCI functions doctor checks for (host-pci)"
    )


class Node(Strict):
    """A Proxmox VE node."""

    name: NodeName = Field(description="the node's name in Proxmox (its short host name)")
    address: SshHost | None = Field(
        None,
        description="host name or address update host and template upload reach over SSH "
        "(the system ssh client); localhost: this machine",
    )
    ssh_user: SshUser = Field("root", description="user for SSH to the node")
    root_dataset: DatasetName | None = Field(
        None,
        description="root file system dataset, snapshotted before every host upgrade "
        "(required by update host), e.g. rpool/ROOT/pve-1",
    )
    reboot: Literal["never", "allowed", "window"] = Field(
        "never",
        description="may update host reboot the node when an upgrade needs it: never, allowed, "
        "or window (only inside reboot_window)",
    )
    reboot_window: Calendar | None = Field(
        None,
        description="systemd calendar spec of the times update host may reboot the node, in "
        "the spec's zone or else the inventory's; trailing :00 time fields count as * "
        "(Sun 04:00 is Sunday 04:00-04:59); required by reboot = window",
        examples=["Sat *-*-* 04..05:00:00"],
    )
    hardware: Hardware | None = Field(
        None, description="what the host should have; doctor's host area compares"
    )


class Bridge(Strict):
    """A Linux bridge on a node (vmbrN)."""

    name: Annotated[str, _matches(r"[A-Za-z][A-Za-z0-9_]{0,13}", "a bridge name like vmbr0")] = (
        Field(description="interface name, e.g. vmbr0")
    )
    node: NodeName | None = Field(None, description="the node it is on; default: the only node")
    ports: list[str] = Field(
        default_factory=list, description="physical ports enslaved (bridge_ports); empty: none"
    )
    cidr: Interface | None = Field(
        None, description="the host's address on it with prefix length, e.g. 192.0.2.2/24"
    )
    gateway: IpAddress | None = Field(None, description="default gateway through this bridge")
    vlan_aware: bool = Field(False, description="VLAN-aware bridge (guests' tag)")
    autostart: bool = Field(True, description="bring it up at boot")
    comment: str | None = Field(None, description="Proxmox's comments field")


class Pool(Strict):
    """A ZFS pool."""

    name: Annotated[str, _matches(r"[A-Za-z][A-Za-z0-9_.:-]*", "a ZFS pool name")] = Field(
        description="pool name"
    )
    node: NodeName | None = Field(None, description="the node it is on")
    layout: Literal["single", "mirror", "raidz1", "raidz2", "raidz3", "draid"] | None = Field(
        None, description="vdev layout (drawn in the storage diagram; not checked)"
    )
    max_used_percent: int = Field(
        80, ge=1, le=100, description="percent of capacity above which doctor warns"
    )


class Dataset(Strict):
    """A ZFS dataset nixmox looks after."""

    name: DatasetName = Field(description="full dataset name, e.g. rpool/data/vm")
    properties: dict[str, str] = Field(
        default_factory=dict,
        description="ZFS properties it should be created with (doctor's fix shows them); "
        'e.g. { compression = "zstd" }',
    )
    comment: str | None = Field(None, description="free text")


StorageContent = Literal["images", "rootdir", "backup", "iso", "vztmpl", "snippets", "import"]


class Storage(Strict):
    """A Proxmox storage (`pvesm`)."""

    storage: StorageId = Field(description="the storage id, as Proxmox spells it")
    type: Literal["dir", "zfspool", "nfs", "cifs", "pbs", "lvm", "lvmthin", "btrfs"] = Field(
        description="Proxmox storage type"
    )
    path: str | None = Field(None, description="directory (type dir)")
    dataset: DatasetName | None = Field(
        None,
        description="zfspool: the dataset it uses (Proxmox's pool key); dir: the dataset "
        "mounted at path",
    )
    content: list[StorageContent] = Field(
        default_factory=list, description="content types it holds; empty: left to Proxmox"
    )
    nodes: list[NodeName] = Field(
        default_factory=list, description="nodes it is available on; empty: all"
    )
    sparse: bool | None = Field(None, description="zfspool: thin-provisioned volumes")
    shared: bool = Field(False, description="the same content on every node (network storage)")
    is_mountpoint: bool | None = Field(
        None,
        description="dir: Proxmox's is_mountpoint, the storage is active only while something "
        "is mounted at path (so nothing is written into the root file system under an "
        "unmounted dataset); unset: on when dataset is set",
    )
    server: str | None = Field(
        None,
        description="pbs: the Proxmox Backup Server's host name or IP address (required for pbs)",
    )
    datastore: str | None = Field(
        None, description="pbs: the datastore on that server (required for pbs)"
    )
    fingerprint: str | None = Field(
        None,
        description="pbs: the server certificate's SHA-256 fingerprint, when its certificate "
        "is not signed by a CA the node trusts (`proxmox-backup-manager cert info`)",
    )
    namespace: (
        Annotated[
            str,
            _matches(
                r"[A-Za-z0-9_][A-Za-z0-9._-]*(/[A-Za-z0-9_][A-Za-z0-9._-]*){0,7}",
                "a PBS namespace like pve1 or homelab/pve1 (at most 8 levels)",
            ),
        ]
        | None
    ) = Field(
        None,
        description="pbs: the namespace in the datastore the backups go to (one PBS can keep "
        "several hosts apart); unset: the datastore's root",
    )
    port: int | None = Field(
        None, ge=1, le=65535, description="pbs: the server's API port; unset: 8007"
    )
    username: str | None = Field(
        None,
        description="pbs: the PBS user or API token the node logs in as, e.g. "
        "backup@pbs!pve1; its password or secret is the admin's to set on the node "
        "(`pvesm set STORAGE --password`) and never in the inventory",
    )

    @property
    def mount_guard(self) -> bool:
        """Whether Proxmox should refuse the dir storage while its path is not mounted."""
        if self.type != "dir":
            return False
        return self.dataset is not None if self.is_mountpoint is None else self.is_mountpoint


#: The keys only a pbs storage takes (storage.cfg's names).
PBS_KEYS = ("server", "datastore", "namespace", "port", "fingerprint", "username")


# -- guests -------------------------------------------------------------------


class Volume(Strict):
    """An LXC root file system."""

    storage: StorageId = Field(description="storage with rootdir content")
    size: Size = Field(
        description="size with a K, M, G or T suffix (powers of 1024); no suffix: GiB",
        examples=["16G"],
    )


class Disk(Strict):
    """A VM disk in one bus slot."""

    slot: Annotated[
        str,
        _matches(
            r"(scsi([0-9]|[12][0-9]|30)|virtio([0-9]|1[0-5])|sata[0-5]|ide[0-3])", "a disk slot"
        ),
    ] = Field(description="bus and index: scsi0-30, virtio0-15, sata0-5, ide0-3")
    storage: StorageId = Field(description="storage with images content")
    size: Size = Field(
        description="size with a K, M, G or T suffix (powers of 1024); no suffix: GiB; grown, "
        "never shrunk",
        examples=["32G"],
    )
    iothread: bool | None = Field(None, description="own I/O thread (with virtio-scsi-single)")
    discard: bool | None = Field(None, description="pass TRIM to the storage (discard=on)")
    ssd: bool | None = Field(None, description="show the guest an SSD")
    cache: Literal["none", "writeback", "writethrough", "directsync", "unsafe"] | None = Field(
        None, description="QEMU cache mode"
    )
    backup: bool | None = Field(None, description="include this disk in vzdump backups")


class Net(Strict):
    """A network interface; `net0`, `net1`, ... in order."""

    bridge: str = Field(description="bridge it is plugged into, e.g. vmbr0")
    model: Literal["virtio", "e1000", "e1000e", "rtl8139", "vmxnet3"] | None = Field(
        None, description="VM: NIC model; default: virtio"
    )
    mac: Annotated[str, _matches(r"([0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}", "a MAC address")] | None = (
        Field(None, description="fixed MAC address; unset: the one Proxmox generated")
    )
    ip: Literal["dhcp"] | Interface | None = Field(
        None, description="LXC: dhcp or an IPv4 address with prefix (ignored for a VM)"
    )
    gw: IpAddress | None = Field(None, description="LXC: IPv4 gateway (ignored for a VM)")
    ip6: Literal["dhcp", "auto"] | Interface | None = Field(
        None, description="LXC: dhcp, auto (SLAAC) or an IPv6 address with prefix"
    )
    tag: int | None = Field(None, ge=1, le=4094, description="VLAN tag")
    firewall: bool | None = Field(None, description="Proxmox firewall on this interface")


class HostPci(Strict):
    """A passed-through PCI device (`hostpciN`)."""

    device: PciAddress | None = Field(
        None,
        description="PCI address DDDD:BB:DD for every function (GPU and its audio), or "
        "DDDD:BB:DD.F for one; alone it is passed raw, which needs root@pam; next to a "
        "mapping it says where the mapping should point (doctor checks it and prints the "
        "command that creates a missing mapping)",
    )
    mapping: str | None = Field(
        None,
        description="a Proxmox PCI resource mapping (/cluster/mapping/pci) passed instead of "
        "a raw address: usable with an API token (Mapping.Use)",
    )
    pcie: bool | None = Field(None, description="pass as PCIe (needs machine = q35)")
    x_vga: bool | None = Field(
        None,
        alias="x-vga",
        description="primary GPU; applied only at stage gaming (left out at stage gpu)",
    )
    rombar: bool | None = Field(None, description="expose the device's option ROM")
    romfile: str | None = Field(
        None, description="ROM file under /usr/share/kvm to use instead of the device's"
    )


class EfiDisk(Strict):
    """The OVMF variables disk (efidisk0) of a UEFI VM."""

    storage: StorageId = Field(description="storage with images content")
    efitype: Literal["2m", "4m"] = Field("4m", description="size of the OVMF variable store")
    pre_enrolled_keys: bool = Field(
        True,
        alias="pre-enrolled-keys",
        description="Secure Boot with Microsoft's keys enrolled (Windows 11)",
    )


class TpmState(Strict):
    """The TPM state volume (tpmstate0) of a VM."""

    storage: StorageId = Field(description="storage with images content")
    version: Literal["v1.2", "v2.0"] = Field("v2.0", description="TPM version; Windows 11: v2.0")


class Startup(Strict):
    """Where a guest comes in the node's boot order (Proxmox's ``startup``)."""

    order: int | None = Field(
        None,
        ge=0,
        description="position among the guests that start on boot: lower first; guests "
        "without one start after those with one, by VMID (also the order rebuild restores in)",
    )
    up: int | None = Field(
        None, ge=0, description="seconds to wait after starting it before starting the next"
    )
    down: int | None = Field(
        None, ge=0, description="seconds to wait for it to shut down before stopping it"
    )


class KeepOptions(Strict):
    """Proxmox's keep-* retention options (see docs/retention.md); none set: keep everything."""

    keep_all: bool | None = Field(
        None, alias="keep-all", description="keep everything; not with any other keep-*"
    )
    keep_last: Count | None = Field(None, alias="keep-last", description="the N newest")
    keep_hourly: Count | None = Field(
        None, alias="keep-hourly", description="the newest of each of N hours that have one"
    )
    keep_daily: Count | None = Field(
        None, alias="keep-daily", description="the newest of each of N days that have one"
    )
    keep_weekly: Count | None = Field(
        None,
        alias="keep-weekly",
        description="the newest of each of N ISO weeks (Monday to Sunday) that have one",
    )
    keep_monthly: Count | None = Field(
        None, alias="keep-monthly", description="the newest of each of N months that have one"
    )
    keep_yearly: Count | None = Field(
        None, alias="keep-yearly", description="the newest of each of N years that have one"
    )

    def rule(self) -> "Keep":
        """These options as the retention engine's :class:`~nixmox.rules.retention.Keep`."""
        from nixmox.rules.retention import Keep

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

    units: list[str] = Field(
        default_factory=list, description="systemd units in the guest that must be active"
    )
    commands: list[str] = Field(
        default_factory=list, description="shell commands in the guest that must exit 0"
    )
    http: list[str] = Field(
        default_factory=list, description="URLs that must answer 2xx, fetched from nixmox's side"
    )
    timeout: TimeSpan = Field(
        "2min",
        description="systemd time span the checks may take to pass; must be shorter than "
        "update.dead_man",
    )


class UpdateSettings(Strict):
    """How `nixmox update` maintains this guest."""

    method: Literal["nixos", "windows", "none"] = Field(
        description="nixos: update nixos; windows: update windows (a VM with the agent); "
        "none: not updated"
    )
    via: Literal["ssh", "agent", "pct"] | None = Field(
        None,
        description="NixOS: how nixmox reaches the guest; default: ssh when ssh is set, else "
        "the guest agent for a VM and pct exec on the node for a container",
    )
    ssh: SshDestination | None = Field(
        None, description="USER@HOST[:PORT] for the system ssh client (via = ssh)"
    )
    flake: str | None = Field(
        None, description="NixOS: flake directory in the guest; default: /etc/nixos"
    )
    host: str | None = Field(
        None, description="NixOS: nixosConfigurations attribute; default: the guest's name"
    )
    inputs: list[str] = Field(
        default_factory=list, description="NixOS: flake inputs to update; empty: the whole lock"
    )
    health: HealthChecks | None = Field(
        None,
        description="NixOS: checks after the switch; default: the system is running, no unit "
        "failed, within 2min",
    )
    dead_man: TimeSpan = Field(
        "5min",
        description="NixOS: systemd time span after which the guest switches back by itself "
        "if nixmox loses it; longer than health.timeout",
    )
    busy_processes: list[str] = Field(
        default_factory=list,
        description="Windows: process names that hold a when-idle reboot; empty: RustClient.exe",
    )
    keep_snapshot: bool = Field(
        False, description="keep the pre-update snapshot after a successful update"
    )
    snapshots: KeepOptions | None = Field(
        None,
        description="keep-* retention of nixmox's update snapshots of this guest; "
        "default: keep-last = 3",
    )
    commit_lock: bool = Field(
        False,
        description="NixOS: commit the updated flake.lock (author nixmox); else leave it modified",
    )
    max_rounds: int = Field(
        3, ge=1, le=10, description="Windows: at most this many scan/install/reboot rounds"
    )
    optional_updates: bool = Field(
        False,
        description="Windows: also install optional updates (BrowseOnly, e.g. preview "
        "cumulative updates); by default only what Windows Update installs on its own",
    )


class RebootPolicy(Strict):
    """When nixmox may reboot or stop this guest."""

    policy: Literal["never", "allowed", "window", "when-idle"] = Field(
        "never",
        description="never; allowed (any time); window (inside window); when-idle (Windows: "
        "not while busy_processes run or Steam downloads)",
    )
    window: Calendar | None = Field(
        None,
        description="systemd calendar spec of the allowed times (trailing :00 time fields count "
        "as *); required by policy = window",
    )


class WindowsSettings(Strict):
    """Windows provisioning through the guest agent."""

    user: str | None = Field(
        None, description="the Windows account that plays: Steam starts at its logon"
    )
    steam: bool = Field(False, description="install Steam and start it at user's logon")
    rust: Literal["none", "client", "server"] = Field(
        "none",
        description="none; client: app 252490, installed by the user in Steam (reported as "
        "pending); server: dedicated server app 258550 through steamcmd",
    )
    rust_server_dir: str = Field(
        "C:\\rustserver", description="where steamcmd installs the Rust dedicated server"
    )
    steamcmd_dir: str = Field(
        "C:\\Program Files\\steamcmd",
        description="where nixmox unpacks steamcmd (run as SYSTEM: only a folder that "
        "nobody but SYSTEM and Administrators may write is used)",
    )


class Guest(Strict):
    """An LXC container or a VM.

    Only ``name``, ``vmid``, ``kind`` and ``node`` are required: such a guest
    is backed up and updated but never provisioned.
    """

    name: Name = Field(description="guest name (the VM name or the container's host name)")
    vmid: int = Field(ge=100, le=999_999_999, description="Proxmox VMID")
    kind: Literal["lxc", "vm"] = Field(description="lxc (container) or vm (QEMU)")
    node: NodeName = Field(description="node it runs on")
    os: Literal["nixos", "windows", "other"] | None = Field(
        None,
        description="what runs inside; sets ostype when that is unset (nixos: nixos or l26, "
        "windows: win11)",
    )
    description: str | None = Field(None, description="Proxmox's notes for the guest")
    tags: list[Annotated[str, _matches(r"[a-z0-9_][a-z0-9_+.-]*", "a Proxmox tag")]] = Field(
        default_factory=list, description="Proxmox tags (order does not matter)"
    )
    onboot: bool | None = Field(None, description="start when the node boots")
    startup: Startup | None = Field(
        None, description="boot order and delays (Proxmox's startup: order=,up=,down=)"
    )
    stage: Literal["install", "gpu", "gaming"] | None = Field(
        None,
        description="Windows VM install stage: install (virtual display, no GPU), gpu (devices "
        "added without x-vga), gaming (GPU primary, no virtual display)",
    )
    ostype: str | None = Field(
        None, description="Proxmox ostype (l26, win11, nixos, ...); default: from os"
    )
    machine: (
        Annotated[str, _matches(r"(q35|pc|pc-(q35|i440fx)-\d+\.\d+(\+pve\d+)?)", "a machine type")]
        | None
    ) = Field(None, description="VM: machine type, q35 or pc (a pinned pc-q35-X.Y+pveN matches)")
    bios: Literal["seabios", "ovmf"] | None = Field(None, description="VM: seabios or ovmf (UEFI)")
    cpu: str | None = Field(None, description="VM: CPU type, e.g. host")
    cores: int | None = Field(None, ge=1, le=1024, description="CPU cores (per socket for a VM)")
    sockets: int | None = Field(None, ge=1, le=4, description="VM: CPU sockets")
    affinity: (
        Annotated[str, _matches(r"\d+(-\d+)?(,\d+(-\d+)?)*", "a CPU list like 8-15,24-31")] | None
    ) = Field(None, description="VM: host CPUs it may run on, e.g. 8-15,24-31")
    memory: int | None = Field(None, ge=16, description="memory in MiB")
    balloon: int | None = Field(
        None, ge=0, description="VM: minimum memory for ballooning in MiB; 0 disables ballooning"
    )
    swap: int | None = Field(None, ge=0, description="LXC: swap in MiB")
    agent: bool | None = Field(None, description="VM: QEMU guest agent enabled")
    scsihw: Literal["virtio-scsi-single", "virtio-scsi-pci", "lsi", "megasas", "pvscsi"] | None = (
        Field(None, description="VM: SCSI controller")
    )
    unprivileged: bool | None = Field(
        None, description="LXC: unprivileged container; set at creation only"
    )
    features: list[Literal["nesting", "keyctl", "fuse", "mknod"]] = Field(
        default_factory=list, description="LXC: features (nesting and keyctl for Docker)"
    )
    template: (
        Annotated[
            str, _matches(r"[A-Za-z][A-Za-z0-9\-_.]*:vztmpl/[^/]+", "a volume STORAGE:vztmpl/FILE")
        ]
        | None
    ) = Field(
        None,
        description="LXC: the template volume to create from, STORAGE:vztmpl/FILE",
        examples=["local:vztmpl/nixos-lxc-25.05.tar.xz"],
    )
    clone: int | Name | None = Field(
        None, description="VM: template VM to create a full clone of, by vmid or name"
    )
    rootfs: Volume | None = Field(
        None,
        description="LXC: the root disk (a storage with rootdir content, and a size); "
        "required to create a container, no default",
    )
    disks: list[Disk] = Field(default_factory=list, description="VM: disks, one per slot")
    net: list[Net] = Field(
        default_factory=list, max_length=32, description="network interfaces: net0, net1, ..."
    )
    hostpci: list[HostPci] = Field(
        default_factory=list, max_length=16, description="VM: PCI passthrough: hostpci0, ..."
    )
    efidisk: EfiDisk | None = Field(None, description="VM: EFI variables disk (bios = ovmf)")
    tpmstate: TpmState | None = Field(None, description="VM: TPM state (Windows 11)")
    update: UpdateSettings | None = Field(
        None, description="how nixmox updates it; unset: not updated"
    )
    reboot: RebootPolicy = Field(
        default_factory=RebootPolicy,
        description="when nixmox may reboot or stop it; default: never",
    )
    windows: WindowsSettings | None = Field(
        None, description="what windows provision sets up in it"
    )

    @property
    def pve_type(self) -> Literal["qemu", "lxc"]:
        """The API's word for the kind: ``qemu`` for a VM, ``lxc`` for a container."""
        return "lxc" if self.kind == "lxc" else "qemu"


# -- retention, snapshots, backups --------------------------------------------


class SnapshotPolicy(KeepOptions):
    """keep-* for snapshots, and how old the newest may get before `--monitor` complains."""

    warn_after: TimeSpan | None = Field(
        None,
        description="systemd time span: snapshot --monitor warns when the newest snapshot is "
        "older; default: two of the policy's finest periods (keep-hourly: 2h)",
    )
    crit_after: TimeSpan | None = Field(
        None,
        description="systemd time span: --monitor is critical beyond it; default: four of the "
        "finest periods",
    )


class SnapshotTarget(Strict):
    """A dataset (tree) snapshotted on a policy."""

    dataset: DatasetName = Field(description="the dataset (tree root) to snapshot")
    policy: str = Field(description="name of a [snapshots.policies.NAME] table")
    recursive: bool = Field(
        False, description="one atomic snapshot of the dataset and every child (zfs snapshot -r)"
    )


class Snapshots(Strict):
    """ZFS snapshots: named policies and the datasets they apply to."""

    policies: dict[str, SnapshotPolicy] = Field(
        default_factory=dict, description="policies by name"
    )
    datasets: list[SnapshotTarget] = Field(
        default_factory=list, description="datasets snapshotted, each on a policy"
    )


class BackupVerify(Strict):
    """Where `backup verify` restores: a scratch VMID range and a storage."""

    vmids: list[Annotated[int, Field(ge=100, le=999_999_999)]] = Field(
        default_factory=lambda: [9900, 9999],
        min_length=2,
        max_length=2,
        description="first and last scratch VMID (inclusive); a free one is used",
        json_schema_extra={"default": [9900, 9999]},
    )
    storage: StorageId | None = Field(
        None, description="storage to restore onto; default: the archive's own disks' storage"
    )
    pool: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        max_length=64,
        description="Proxmox resource pool the scratch guests join: the API token then needs one "
        "ACL on /pool/NAME instead of one per scratch VMID (the pool must exist: "
        "`pveum pool add NAME`, printed by `nixmox token`); unset: ACLs per VMID of the range",
    )
    timeout: TimeSpan = Field(
        "10min",
        description="systemd time span the restored guest (and its agent) may take to come up "
        "after its start",
    )
    restore_timeout: TimeSpan = Field(
        "2h",
        description="systemd time span the restore itself may take (it copies the whole "
        "archive); a restore still running then is stopped, and its scratch guest removed",
    )


class Backups(Strict):
    """vzdump backups and their retention."""

    storage: StorageId = Field(description="storage with backup content the archives go to")
    mode: Literal["snapshot", "suspend", "stop"] = Field("snapshot", description="vzdump mode")
    compress: Literal["zstd", "lzo", "gzip", "0"] = Field(
        "zstd", description="vzdump compression; 0: none"
    )
    keep: KeepOptions | None = Field(
        None, description="keep-* retention per guest; unset: nothing is pruned"
    )
    guests: list[Name] = Field(default_factory=list, description="names to back up; empty: all")
    exclude: list[Name] = Field(default_factory=list, description="names never backed up")
    notes_template: str = Field(
        "{{guestname}} (nixmox)",
        description="vzdump notes of each archive ({{guestname}}, {{vmid}}, {{node}}, "
        "{{cluster}} are filled in by Proxmox)",
    )
    lock_wait: TimeSpan = Field(
        "10min",
        description="systemd time span to wait for a guest locked by another job before it "
        "counts as failed",
    )
    scheduler: Literal["nixmox", "proxmox"] = Field(
        "nixmox",
        description="nixmox: `nixmox backup` on its timer; proxmox: a /cluster/backup job kept in "
        "sync by plan/apply",
    )
    verify: BackupVerify | None = Field(
        None, description="where backup verify restores; default: VMIDs 9900-9999"
    )


# -- replication ----------------------------------------------------------------


class ReplicationTarget(KeepOptions):
    """Where replicas go (a pool here or on another host), with its own keep-* policy.

    The keep-* options prune nixmox's snapshots on the replicas; none set: the
    target keeps every snapshot it received.
    """

    dataset: DatasetName = Field(
        description="existing dataset on the target under which the replicas are received "
        "(nixmox creates datasets below it, never it), e.g. usb/pve"
    )
    host: SshDestination | None = Field(
        None,
        description="ssh destination [USER@]HOST[:PORT] of the target machine (the system ssh "
        "client; NIXMOX_SSH_CONFIG applies); unset: this machine",
    )
    zfs_command: list[str] = Field(
        default_factory=lambda: ["zfs"],
        min_length=1,
        description='argv prefix that runs zfs on the target (on host when set), e.g. ["sudo", '
        '"zfs"]; default: zfs from PATH',
        json_schema_extra={"default": ["zfs"]},
    )
    zpool_command: list[str] | None = Field(
        None,
        min_length=1,
        description="argv prefix that runs zpool on the target; default: zfs_command with its "
        "last word replaced by zpool",
    )


class ReplicationSource(Strict):
    """A dataset (tree) whose nixmox snapshots are replicated to a target."""

    dataset: DatasetName = Field(
        description="the source dataset; its replica is TARGET_DATASET/<its last name component>"
    )
    target: Name = Field(description="name of a [replication.targets.NAME] table")
    recursive: bool = Field(
        False,
        description="also every dataset below it, each to the same place below the replica",
    )


class Replication(Strict):
    """ZFS replication of nixmox's snapshots to other pools or hosts (`nixmox replicate`)."""

    targets: dict[Name, ReplicationTarget] = Field(
        default_factory=dict, description="targets by name"
    )
    datasets: list[ReplicationSource] = Field(
        default_factory=list, description="source datasets, each to a target"
    )


# -- schedules, notifications, metrics ----------------------------------------


class Schedules(Strict):
    """When each job runs (systemd calendar specs)."""

    snapshot: Calendar | None = Field(
        None, description="when nixmox snapshot runs (systemd calendar spec); unset: no timer"
    )
    backup: Calendar | None = Field(None, description="when nixmox backup runs; unset: no timer")
    backup_verify: Calendar | None = Field(
        None, description="when nixmox backup verify runs; unset: no timer"
    )
    replicate: Calendar | None = Field(
        None, description="when nixmox replicate runs; unset: no timer"
    )
    update_host: Calendar | None = Field(
        None, description="when nixmox update host runs; unset: no timer"
    )
    update_nixos: Calendar | None = Field(
        None, description="when nixmox update nixos runs; unset: no timer"
    )
    update_windows: Calendar | None = Field(
        None, description="when nixmox update windows runs; unset: no timer"
    )
    pool_scrub: Calendar | None = Field(
        None, description="when nixmox pool scrub runs (monthly is usual); unset: no timer"
    )
    pool_trim: Calendar | None = Field(
        None, description="when nixmox pool trim runs (weekly is usual); unset: no timer"
    )
    pool_check: Calendar | None = Field(
        None,
        description="when nixmox pool check records pool and disk health (daily gives the "
        "fill forecast its history); unset: no timer",
    )
    randomized_delay: TimeSpan | None = Field(
        None, description="systemd time span: every timer's RandomizedDelaySec=; unset: none"
    )
    fixed_random_delay: bool = Field(
        True, description="the same random delay every run (FixedRandomDelay=, systemd >= 247)"
    )
    persistent: bool = Field(
        True, description="catch up on a run missed while the host was off (Persistent=)"
    )


class PoolHealth(Strict):
    """Scrubs, TRIM, SMART and the fill forecast (`nixmox pool ...`, doctor, status)."""

    pools: list[Annotated[str, _matches(r"[A-Za-z][A-Za-z0-9_.:-]*", "a ZFS pool name")]] = Field(
        default_factory=list,
        description="pools looked after; empty: the inventory's [[pools]], else every "
        "imported pool",
    )
    pause_during: Calendar | None = Field(
        None,
        description="a window (calendar spec, e.g. the backup window `*-*-* 02..04:*`) in "
        "which a scrub is paused (`zpool scrub -p`; stopped and restarted where zpool cannot "
        "pause) and resumed after; unset: never paused",
    )
    poll: TimeSpan = Field(
        "30s", description="systemd time span between two progress reads of a scrub or trim"
    )
    scrub_max_age: TimeSpan = Field(
        "35d", description="systemd time span: doctor warns when a pool's last scrub is older"
    )
    fragmentation_warn: int = Field(
        70, ge=1, le=100, description="percent of free-space fragmentation above which doctor warns"
    )
    smart: bool = Field(
        True, description="read SMART (smartctl --json -a) of every disk under the pools"
    )
    smartctl_command: list[str] = Field(
        default_factory=lambda: ["smartctl"],
        min_length=1,
        description='argv prefix that runs smartctl, e.g. ["sudo", "smartctl"]',
        json_schema_extra={"default": ["smartctl"]},
    )
    temperature_warn: int = Field(
        55, ge=20, le=100, description="degrees Celsius above which a disk's temperature warns"
    )
    forecast_days: int = Field(
        30, ge=2, le=365, description="days of recorded capacity the fill forecast looks back on"
    )
    forecast_percent: int = Field(
        90, ge=1, le=100, description="the capacity (percent) the forecast predicts the date of"
    )
    forecast_horizon: TimeSpan = Field(
        "60d",
        description="systemd time span: doctor warns (and a notification goes out) when the "
        "forecast reaches forecast_percent sooner",
    )


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

    urls: list[str] = Field(
        default_factory=list,
        description="apprise URLs, treated as secrets; environment: NIXMOX_NOTIFY_URLS "
        "(space-separated; empty: none)",
    )
    on: list[NotifyEvent] = Field(
        default_factory=lambda: list(_DEFAULT_EVENTS),
        description="when to send: failure, recovery (a job's previous run failed), success",
        json_schema_extra={"default": list(_DEFAULT_EVENTS)},
    )


class Metrics(Strict):
    """Prometheus metrics for node_exporter's textfile collector."""

    textfile: str = Field(
        description="the .prom file rewritten after every journaled run; environment: "
        "NIXMOX_METRICS_TEXTFILE (empty: none)",
        examples=["/var/lib/prometheus/node-exporter/nixmox.prom"],
    )


class Inventory(Strict):
    """Everything nixmox manages on one Proxmox server or cluster: ``nixmox.toml``."""

    timezone: Zone | None = Field(
        None,
        description="IANA zone of the Proxmox host (retention days and weeks, schedules, "
        "windows); default: this machine's",
        examples=["Europe/Vienna"],
    )
    proxmox: ProxmoxSettings = Field(
        default_factory=ProxmoxSettings, description="how to reach the Proxmox API"
    )
    zfs: ZfsSettings = Field(default_factory=ZfsSettings, description="how zfs and zpool run")
    nodes: list[Node] = Field(default_factory=list, description="Proxmox VE nodes")
    bridges: list[Bridge] = Field(
        default_factory=list,
        description="Linux bridges apply manages; guests may also use bridges not listed here",
    )
    pools: list[Pool] = Field(default_factory=list, description="ZFS pools doctor checks")
    datasets: list[Dataset] = Field(default_factory=list, description="ZFS datasets doctor checks")
    storages: list[Storage] = Field(
        default_factory=list,
        description="Proxmox storages apply manages; guests may also use storages not listed "
        "here (plan checks them on the server)",
    )
    guests: list[Guest] = Field(default_factory=list, description="containers and VMs")
    snapshots: Snapshots | None = Field(None, description="ZFS snapshot policies; unset: none")
    backups: Backups | None = Field(None, description="vzdump backups; unset: none")
    replication: Replication | None = Field(
        None, description="ZFS replication to other pools or hosts; unset: none"
    )
    schedules: Schedules | None = Field(None, description="timers for the jobs; unset: none")
    notify: Notify | None = Field(None, description="notifications; unset: none")
    pool_health: PoolHealth = Field(
        default_factory=PoolHealth, description="scrubs, TRIM, SMART and the fill forecast"
    )
    metrics: Metrics | None = Field(None, description="Prometheus textfile; unset: none")
    templates: Templates | None = Field(
        None, description="what template build bakes into the NixOS images"
    )

    #: The file it was read from and where each key stands in it (set by the loader).
    _source: tuple[str, dict[KeyPath, Position]] | None = PrivateAttr(default=None)

    def remember_source(self, file: str, positions: dict[KeyPath, Position]) -> None:
        """Keep where each key stands, so later errors (plan's) can name FILE:LINE:COL."""
        self._source = (file, positions)

    def where(self, path: KeyPath) -> str:
        """``FILE:LINE:COL: key.path`` of ``path`` (its closest ancestor's line), or
        just ``key.path`` when the inventory was not read from a file."""
        if self._source is None:
            return render_path(path)
        file, positions = self._source
        pos = nearest(positions, path)
        return f"{file}:{pos.line}:{pos.column}: {render_path(path)}"

    def guest(self, name: str) -> Guest:
        """The guest called ``name`` (KeyError if none)."""
        for guest in self.guests:
            if guest.name == name:
                return guest
        raise KeyError(name)
