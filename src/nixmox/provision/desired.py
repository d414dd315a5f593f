"""The inventory as Proxmox would hold it: desired config per guest, bridge, storage.

Pure. Only what the inventory declares appears here; an undeclared key is
never compared and never changed, so a guest with just ``name``, ``vmid``,
``kind`` and ``node`` is maintained but not provisioned.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from nixmox.adapters.proxmox import props
from nixmox.inventory.model import PBS_KEYS, Bridge, Guest, Inventory, Storage

Label = Literal["live", "needs-reboot", "needs-stop", "replace"]


@dataclass(frozen=True)
class Volume:
    """A disk nixmox manages: where, how big, with which options."""

    storage: str
    size: int | None  # bytes; None: not managed (efidisk, tpmstate)
    options: dict[str, str] = field(default_factory=dict)

    def create_value(self, kind: str) -> str:
        """``STORAGE:SIZE_IN_GIB`` plus options, as a create call wants it."""
        gib = 1 if self.size is None else max(1, -(-self.size // 1024**3))
        first = props.default_key(kind) or "file"
        return props.render(kind, {first: f"{self.storage}:{gib}", **self.options})


@dataclass(frozen=True)
class DesiredGuest:
    """One guest as nixmox wants it."""

    guest: Guest
    type: Literal["lxc", "qemu"]
    #: Plain keys: Proxmox key -> value as nixmox would write it.
    scalars: dict[str, str]
    #: Disk-like keys: slot -> volume.
    volumes: dict[str, Volume]
    #: Option-string keys compared option by option (net, hostpci, features).
    options: dict[str, dict[str, str]]
    #: Slots nixmox owns wholly: present in actual but not here means delete.
    owned_prefixes: tuple[str, ...]
    #: Creation-only parameters (template, clone source, unprivileged).
    create: dict[str, str]

    @property
    def provisioned(self) -> bool:
        """Whether the inventory declares anything beyond identity."""
        return bool(
            self.scalars.keys() - {"name", "hostname"}
            or self.volumes
            or self.options
            or self.create
        )


def _flag(value: bool) -> str:
    return "1" if value else "0"


def _ostype(guest: Guest) -> str | None:
    if guest.ostype is not None:
        return guest.ostype
    if guest.kind == "lxc":
        return "nixos" if guest.os == "nixos" else None
    if guest.os == "windows":
        return "win11"
    return "l26" if guest.os == "nixos" else None


def desired_guest(guest: Guest) -> DesiredGuest:
    """What ``guest`` declares, in Proxmox's keys."""
    scalars: dict[str, str] = {}
    volumes: dict[str, Volume] = {}
    options: dict[str, dict[str, str]] = {}
    create: dict[str, str] = {}
    owned: list[str] = []
    lxc = guest.kind == "lxc"
    scalars["hostname" if lxc else "name"] = guest.name

    def put(key: str, value: object) -> None:
        if value is None:
            return
        scalars[key] = _flag(value) if isinstance(value, bool) else str(value)

    put("ostype", _ostype(guest))
    put("description", guest.description)
    if guest.tags:
        scalars["tags"] = ";".join(sorted(guest.tags))
    put("onboot", guest.onboot)
    if guest.startup is not None:
        startup = guest.startup.model_dump(exclude_none=True)
        if startup:
            options["startup"] = {k: str(v) for k, v in startup.items()}
    put("cores", guest.cores)
    put("memory", guest.memory)
    if lxc:
        put("swap", guest.swap)
        if guest.unprivileged is not None:
            create["unprivileged"] = _flag(guest.unprivileged)
        if guest.features:
            options["features"] = {f: "1" for f in sorted(guest.features)}
        if guest.template is not None:
            create["ostemplate"] = guest.template
        if guest.rootfs is not None:
            volumes["rootfs"] = Volume(
                guest.rootfs.storage, props.size_bytes(guest.rootfs.size, "G")
            )
    else:
        for key in ("machine", "bios", "cpu", "sockets", "affinity", "balloon", "scsihw"):
            put(key, getattr(guest, key))
        if guest.agent is not None:
            options["agent"] = {"enabled": _flag(guest.agent)}
        if guest.clone is not None:
            create["clone"] = str(guest.clone)
        for disk in guest.disks:
            opts: dict[str, str] = {}
            for name in ("iothread", "ssd", "backup"):
                value = getattr(disk, name)
                if value is not None:
                    opts[name] = _flag(value)
            if disk.discard is not None:
                opts["discard"] = "on" if disk.discard else "ignore"
            if disk.cache is not None:
                opts["cache"] = disk.cache
            volumes[disk.slot] = Volume(disk.storage, props.size_bytes(disk.size, "G"), opts)
        if guest.efidisk is not None:
            volumes["efidisk0"] = Volume(
                guest.efidisk.storage,
                None,
                {
                    "efitype": guest.efidisk.efitype,
                    "pre-enrolled-keys": _flag(guest.efidisk.pre_enrolled_keys),
                },
            )
        if guest.tpmstate is not None:
            volumes["tpmstate0"] = Volume(
                guest.tpmstate.storage, None, {"version": guest.tpmstate.version}
            )
        _passthrough(guest, scalars, options, owned)
    for i, net in enumerate(guest.net):
        nic: dict[str, str] = {}
        if lxc:
            nic["name"] = f"eth{i}"
        else:
            nic["model"] = net.model or "virtio"
        nic["bridge"] = net.bridge
        if net.mac is not None:
            nic["hwaddr" if lxc else "macaddr"] = net.mac.upper()
        for key in ("ip", "gw", "ip6"):
            value = getattr(net, key)
            if value is not None and lxc:
                nic[key] = value
        if net.tag is not None:
            nic["tag"] = str(net.tag)
        if net.firewall is not None:
            nic["firewall"] = _flag(net.firewall)
        options[f"net{i}"] = nic
    return DesiredGuest(guest, guest.pve_type, scalars, volumes, options, tuple(owned), create)


def creation(want: DesiredGuest) -> dict[str, str]:
    """What a create sets, as Proxmox keys: the declared keys plus the defaults
    nixmox adds (an unprivileged container, ``nesting`` for NixOS). ``plan``
    lists these; ``apply`` sends them."""
    guest = want.guest
    made: dict[str, str] = {}
    if want.type == "lxc":
        if "ostemplate" in want.create:
            made["ostemplate"] = want.create["ostemplate"]
        made["unprivileged"] = want.create.get("unprivileged", "1")
    elif "clone" in want.create:
        made["clone"] = f"{want.create['clone']} (full clone)"
    made.update(want.scalars)
    made.update({k: props.render(k, v) for k, v in want.options.items()})
    if want.type == "lxc" and "features" not in want.options and guest.os == "nixos":
        made["features"] = "nesting=1"  # the nix sandbox and systemd need it
    made.update({k: v.create_value(k) for k, v in want.volumes.items()})
    return made


def _passthrough(
    guest: Guest, scalars: dict[str, str], options: dict[str, dict[str, str]], owned: list[str]
) -> None:
    """hostpci and vga, following the Windows install stages (docs/passthrough.md):
    ``install`` has no GPU and a virtual display; ``gpu`` adds the devices
    without ``x-vga``; ``gaming`` makes the GPU primary (``x-vga=1``, no vga)."""
    if guest.hostpci or guest.stage is not None:
        owned.append("hostpci")  # nixmox owns every hostpci slot of this guest
    if guest.stage == "install":
        scalars["vga"] = "std"
        return
    for i, pci in enumerate(guest.hostpci):
        entry: dict[str, str] = {}
        if pci.mapping is not None:
            entry["mapping"] = pci.mapping  # a device next to it only says where it points
        elif pci.device is not None:
            entry["host"] = pci.device.lower()
        if pci.pcie is not None:
            entry["pcie"] = _flag(pci.pcie)
        if pci.x_vga and guest.stage != "gpu":
            entry["x-vga"] = "1"
        if pci.rombar is not None:
            entry["rombar"] = _flag(pci.rombar)
        if pci.romfile is not None:
            entry["romfile"] = pci.romfile
        options[f"hostpci{i}"] = entry
    if guest.stage == "gpu":
        scalars["vga"] = "std"
    elif guest.stage == "gaming":
        scalars["vga"] = "none"


@dataclass(frozen=True)
class DesiredBridge:
    node: str
    iface: str
    options: dict[str, str]


def desired_bridge(bridge: Bridge, node: str) -> DesiredBridge:
    """A bridge as ``/nodes/{node}/network`` describes it."""
    opts = {
        "type": "bridge",
        "bridge_ports": " ".join(bridge.ports),
        "autostart": _flag(bridge.autostart),
        "bridge_vlan_aware": _flag(bridge.vlan_aware),
    }
    if bridge.cidr is not None:
        opts["cidr"] = bridge.cidr
    if bridge.gateway is not None:
        opts["gateway"] = bridge.gateway
    if bridge.comment is not None:
        opts["comments"] = bridge.comment
    return DesiredBridge(node, bridge.name, opts)


def desired_storage(storage: Storage) -> dict[str, str]:
    """A storage as ``/storage`` describes it (declared keys only)."""
    opts: dict[str, str] = {"type": storage.type}
    if storage.path is not None:
        opts["path"] = storage.path
    if storage.type == "zfspool" and storage.dataset is not None:
        opts["pool"] = storage.dataset
    if storage.content:
        opts["content"] = ",".join(sorted(storage.content))
    if storage.nodes:
        opts["nodes"] = ",".join(sorted(storage.nodes))
    if storage.sparse is not None:
        opts["sparse"] = _flag(storage.sparse)
    for key in PBS_KEYS:
        value = getattr(storage, key)
        if value is not None:
            opts[key] = str(value)
    if storage.shared:
        opts["shared"] = "1"
    if storage.mount_guard:
        # pve-storage DirPlugin::activate_storage refuses an unmounted path then.
        opts["is_mountpoint"] = "yes"
    elif storage.is_mountpoint is False:
        opts["is_mountpoint"] = "no"
    return opts


def desired_bridges(inv: Inventory) -> list[DesiredBridge]:
    """Every declared bridge on its node (the only node if unnamed)."""
    only = inv.nodes[0].name if len(inv.nodes) == 1 else None
    return [desired_bridge(b, b.node or only or "") for b in inv.bridges]


#: The id of the /cluster/backup job nixmox keeps in sync (scheduler = "proxmox").
BACKUP_JOB_ID = "nixmox-backup"


def desired_backup_job(inv: Inventory) -> dict[str, str] | None:
    """The Proxmox backup job the inventory asks for, or ``None`` (nixmox schedules itself)."""
    backups = inv.backups
    if backups is None or backups.scheduler != "proxmox" or inv.schedules is None:
        return None
    names = backups.guests or [g.name for g in inv.guests]
    vmids = sorted(g.vmid for g in inv.guests if g.name in names and g.name not in backups.exclude)
    keep = backups.keep
    prune = "keep-all=1"
    if keep is not None and not keep.rule().keeps_everything:
        prune = ",".join(f"keep-{name}={n}" for name, n in keep.rule().counts() if n)
    return {
        "schedule": inv.schedules.backup or "",
        "storage": backups.storage,
        "mode": backups.mode,
        "compress": backups.compress,
        "vmid": ",".join(str(v) for v in vmids),
        "prune-backups": prune,
        "notes-template": backups.notes_template,
        "enabled": "1",
        "comment": "managed by nixmox (nixmox.toml [backups])",
    }
