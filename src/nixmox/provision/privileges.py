"""What a plan needs the token to hold: one :class:`Need` per read and change.

Pure (:func:`needed`), derived from the plan (only guests it creates or
changes, only the keys it writes) with Proxmox's own rules, which live in the
API handlers rather than the schema:

- qemu-server ``PVE/API2/Qemu.pm``: ``$check_vm_modify_config_perm`` (the
  ``$cpuoptions``/``$memoryoptions``/``$hwtypeoptions``/``$generaloptions``/
  ``$diskoptions`` tables; any other key is "only root can set"),
  ``check_hostpci_perm`` (a raw ``host`` and any ``romfile`` are root@pam's;
  a ``mapping`` needs ``Mapping.Use`` on ``/mapping/pci/ID``),
  ``$check_storage_access`` (``Datastore.AllocateSpace`` for a new disk),
  ``create_vm`` (``VM.Allocate``), ``clone_vm`` (``VM.Clone`` on the source,
  ``VM.Allocate`` on the new id, ``$check_storage_access_clone``,
  ``check_bridge_access`` on the source's NICs), ``resize_vm``
  (``Datastore.AllocateSpace`` on the disk's storage);
- pve-container ``PVE/LXC.pm``: ``check_ct_modify_config_perm`` (features
  other than ``nesting`` are root@pam's; ``nesting`` needs ``VM.Allocate``)
  and ``check_bridge_access``; ``PVE/API2/LXC.pm`` ``create_vm``
  (``Sys.Modify`` on ``/`` for a privileged container, the template's
  ``check_volume_access``);
- ``SDN.Use`` on ``/sdn/zones/localnetwork/BRIDGE`` for every NIC
  (``check_vnet_access``: a plain bridge is a vnet of the ``localnetwork`` zone);
- pve-manager ``PVE/API2/Backup.pm`` ``assert_param_permission_create``
  (a backup job's storage needs ``Datastore.Allocate``), ``Sys.Modify`` on ``/``.

:func:`missing_privileges` compares the needs with what the token may do
through :mod:`nixmox.adapters.proxmox.permissions`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from nixmox.adapters.proxmox import props
from nixmox.adapters.proxmox.client import Proxmox
from nixmox.adapters.proxmox.permissions import ROOT, Granted, Missing, Need, missing
from nixmox.inventory.model import Guest, Inventory
from nixmox.provision.desired import DesiredGuest, desired_guest
from nixmox.provision.diff import ActualGuest, Change, GuestPlan, Plan, diff_guest

# qemu-server, PVE/API2/Qemu.pm: the option tables of $check_vm_modify_config_perm.
_QEMU_CPU = {"cores", "cpu", "cpulimit", "cpuunits", "numa", "sockets", "vcpus"}
_QEMU_MEMORY = {"memory", "balloon", "shares", "allow-ksm"}
_QEMU_HWTYPE = {"acpi", "hotplug", "kvm", "machine", "scsihw", "smbios1", "tablet", "vga"}
_QEMU_HWTYPE |= {"watchdog", "audio0", "rng0"}
_QEMU_OPTIONS = {"agent", "autostart", "bios", "description", "keyboard", "localtime"}
_QEMU_OPTIONS |= {"migrate_downtime", "migrate_speed", "name", "onboot", "ostype"}
_QEMU_OPTIONS |= {"protection", "reboot", "startdate", "startup", "tdf", "template", "tags"}
_QEMU_DISK_OPTIONS = {"boot", "bootdisk", "vmstatestorage"}
_QEMU_DRIVES = {"ide", "sata", "scsi", "virtio", "efidisk", "tpmstate", "unused"}

# pve-container, PVE/LXC.pm: check_ct_modify_config_perm.
_LXC_CPU = {"cores", "cpuunits", "cpulimit"}
_LXC_MEMORY = {"memory", "swap"}
_LXC_NETWORK = {"hostname", "nameserver", "searchdomain"}

#: Why a root-only key needs root@pam, and what to do instead.
_ROOT_HINT = "log in as root@pam with a password (proxmox.user, proxmox.password_file)"


def storage_of(value: str) -> str | None:
    """The storage a drive value names (``vm-disks:32`` or ``vm-disks:vm-101-disk-0``)."""
    first = value.split(",", 1)[0]
    volume = first.split("=", 1)[1] if "=" in first else first
    storage, colon, _ = volume.partition(":")
    return storage if colon and storage not in ("none", "cdrom") else None


def _qemu_key(vm: str, key: str, value: str | None, what: str) -> list[Need]:
    kind = props.kind_of(key)
    if kind in _QEMU_DRIVES:
        needs = [Need(vm, "VM.Config.Disk", what)]
        store = storage_of(value) if value else None
        if store:
            needs.append(Need(f"/storage/{store}", "Datastore.AllocateSpace", what))
        return needs
    if kind == "net":
        return [Need(vm, "VM.Config.Network", what), *bridge_needs(value, what)]
    if kind == "hostpci":
        return _hostpci(vm, key, value, what)
    if key in _QEMU_CPU:
        return [Need(vm, "VM.Config.CPU", what)]
    if key in _QEMU_MEMORY:
        return [Need(vm, "VM.Config.Memory", what)]
    if key in _QEMU_HWTYPE:
        return [Need(vm, "VM.Config.HWType", what)]
    if key in _QEMU_DISK_OPTIONS:
        return [Need(vm, "VM.Config.Disk", what)]
    if key in _QEMU_OPTIONS:
        needs = [Need(vm, "VM.Config.Options", what)]
        if key == "startup":
            needs.append(Need("/", "Sys.Modify", what))
        return needs
    # "only root can set '$opt' config": affinity, args, ...
    return [Need(vm, ROOT, f"{what}: {key} is not in any privilege set; {_ROOT_HINT}")]


def _hostpci(vm: str, key: str, value: str | None, what: str) -> list[Need]:
    if value is None:
        # Deleting a raw hostpci: qemu-server checks the old value the same way; nixmox
        # only knows it from the plan's old value, passed in as the value to delete.
        return [Need(vm, "VM.Config.HWType", what)]
    opts = props.parse(key, value)
    needs: list[Need] = []
    if opts.get("host"):
        needs.append(
            Need(
                vm,
                ROOT,
                f"{what}: a raw PCI address needs root@pam; use a PCI resource mapping "
                '(`mapping = "ID"`, see docs/least-privilege.md)',
            )
        )
    elif opts.get("mapping"):
        needs.append(Need(f"/mapping/pci/{opts['mapping']}", "Mapping.Use", what))
        needs.append(Need(vm, "VM.Config.HWType", what))
    if opts.get("romfile"):
        needs.append(Need(vm, ROOT, f"{what}: romfile needs root@pam; {_ROOT_HINT}"))
    return needs


def bridge_needs(value: str | None, what: str) -> list[Need]:
    if not value:
        return []
    bridge = props.parse("net0", value).get("bridge")
    return [Need(f"/sdn/zones/localnetwork/{bridge}", "SDN.Use", what)] if bridge else []


def _lxc_key(
    vm: str, key: str, old: str | None, new: str | None, what: str, unprivileged: bool
) -> list[Need]:
    kind = props.kind_of(key)
    if key in _LXC_CPU:
        return [Need(vm, "VM.Config.CPU", what)]
    if kind in ("rootfs", "mp"):
        needs = [Need(vm, "VM.Config.Disk", what)]
        store = storage_of(new) if new else None
        if store:
            needs.append(Need(f"/storage/{store}", "Datastore.AllocateSpace", what))
        return needs
    if key in _LXC_MEMORY:
        return [Need(vm, "VM.Config.Memory", what)]
    if kind == "net":
        return [
            Need(vm, "VM.Config.Network", what),
            *bridge_needs(old, what),
            *bridge_needs(new, what),
        ]
    if key in _LXC_NETWORK:
        return [Need(vm, "VM.Config.Network", what)]
    if key == "features":
        if not unprivileged:
            return [Need(vm, ROOT, f"{what}: features of a privileged container; {_ROOT_HINT}")]
        before = set(props.parse(key, old)) if old else set()
        after = set(props.parse(key, new)) if new else set()
        before_v = props.parse(key, old) if old else {}
        after_v = props.parse(key, new) if new else {}
        changed = {f for f in before | after if before_v.get(f) != after_v.get(f)}
        if changed - {"nesting"}:
            others = ", ".join(sorted(changed - {"nesting"}))
            return [Need(vm, ROOT, f"{what}: LXC features other than nesting ({others})")]
        return [Need(vm, "VM.Allocate", what)] if changed else []
    return [Need(vm, "VM.Config.Options", what)]


def key_needs(guest: Guest, key: str, old: str | None, new: str | None, what: str) -> list[Need]:
    """What writing ``key`` (``new`` None: deleting it) of ``guest`` takes."""
    vm = f"/vms/{guest.vmid}"
    if guest.kind == "lxc":
        unprivileged = guest.unprivileged is not False
        return _lxc_key(vm, key, old, new, what, unprivileged)
    if new is None and props.kind_of(key) == "hostpci" and old is not None:
        # Deleting a raw hostpci is root@pam's too (check_hostpci_perm on the old value).
        return _hostpci(vm, key, old, what)
    return _qemu_key(vm, key, new, what)


def create_params(want: DesiredGuest) -> dict[str, str]:
    """The keys the create call sends (apply.Applier._create)."""
    params = dict(want.scalars)
    params.update({k: props.render(k, v) for k, v in want.options.items()})
    for slot, volume in want.volumes.items():
        params[slot] = volume.create_value(props.kind_of(slot))
    guest = want.guest
    if guest.kind == "lxc" and "features" not in params and guest.os == "nixos":
        params["features"] = "nesting=1"
    return params


def create_needs(
    want: DesiredGuest, source: ActualGuest | None = None, source_vmid: int | None = None
) -> list[Need]:
    """Creating ``want``: by create call, or a full clone of ``source`` then converging."""
    guest = want.guest
    vm = f"/vms/{guest.vmid}"
    what = f"create {guest.name}"
    needs = [Need(vm, "VM.Allocate", what)]
    if "clone" in want.create:
        src = source_vmid if source_vmid is not None else want.create["clone"]
        needs.append(Need(f"/vms/{src}", "VM.Clone", f"clone {guest.name} from {src}"))
        needs.append(Need(f"/vms/{src}", "VM.Audit", f"read the template of {guest.name}"))
        storage = next(iter(want.volumes.values())).storage if want.volumes else None
        if storage:
            needs.append(Need(f"/storage/{storage}", "Datastore.AllocateSpace", what))
        if source is not None:
            for key, value in source.config.items():
                if props.kind_of(key) == "net":
                    needs += bridge_needs(value, f"clone {guest.name}: the template's {key}")
            # The clone brings the template's settings; apply then converges them.
            converge = diff_guest(want, _as_guest(source, guest))
            needs += changes_needs(guest, converge.changes, f"converge {guest.name}")
        return needs
    params = create_params(want)
    if guest.kind == "lxc":
        template = want.create.get("ostemplate", "")
        store = template.split(":", 1)[0]
        # check_volume_access for a vztmpl: either privilege on its storage.
        needs.append(
            Need(
                f"/storage/{store}",
                "Datastore.AllocateSpace|Datastore.Audit",
                f"template of {guest.name}",
            )
        )
        if want.create.get("unprivileged", "1") == "0":
            needs.append(Need("/", "Sys.Modify", f"{what}: a privileged container"))
        for key, value in params.items():
            needs += key_needs(guest, key, None, value, what)
        return needs
    for key, value in params.items():
        needs += key_needs(guest, key, None, value, what)
    return needs


def _as_guest(source: ActualGuest, guest: Guest) -> ActualGuest:
    """The template's config as the new guest will have it right after the clone."""
    config = {k: v for k, v in source.config.items() if k not in ("template", "lock")}
    config["name"] = guest.name
    return ActualGuest(guest.vmid, source.type, guest.node, "stopped", None, False, config)


def changes_needs(guest: Guest, changes: Iterable[Change], what: str) -> list[Need]:
    """What the config writes and disk resizes of ``changes`` take."""
    needs: list[Need] = []
    vm = f"/vms/{guest.vmid}"
    for change in changes:
        if change.via == "none" or change.label == "replace":
            continue  # already pending, or never done in place
        label = f"{what}: {change.key}"
        if change.via == "resize":
            store = next((d.storage for d in guest.disks if d.slot == change.key), None)
            if guest.rootfs is not None and change.key == "rootfs":
                store = guest.rootfs.storage
            needs.append(Need(vm, "VM.Config.Disk", label))
            if store:
                needs.append(Need(f"/storage/{store}", "Datastore.AllocateSpace", label))
            continue
        if change.label == "needs-stop" and guest.reboot.policy != "allowed":
            continue  # held: the policy forbids the stop
        needs += key_needs(guest, change.key, change.old, change.new, label)
    return needs


def _power_needs(guest: Guest, gp: GuestPlan) -> list[Need]:
    """A reboot (or shutdown and start) only where apply would do one: policy ``allowed``."""
    if guest.reboot.policy != "allowed" or not gp.running:
        return []
    labels = {c.label for c in gp.changes if c.via != "none" or c.label == "needs-reboot"}
    if "needs-stop" in labels or "needs-reboot" in labels:
        return [Need(f"/vms/{gp.vmid}", "VM.PowerMgmt", f"reboot {guest.name} for its changes")]
    return []


def needed(
    inv: Inventory,
    plan: Plan,
    sources: Mapping[str, tuple[int, ActualGuest]] | None = None,
) -> list[Need]:
    """Privileges the plan's reads and changes require.

    ``sources``: clone source (as the inventory names it) -> its vmid and config,
    so the converge after a clone asks only for the keys that will differ.
    """
    needs: list[Need] = []
    guests = {g.name: g for g in inv.guests}
    for gp in plan.guests:
        guest = guests[gp.name]
        vm = f"/vms/{gp.vmid}"
        needs.append(Need(vm, "VM.Audit", f"read {gp.name}"))
        if gp.action in ("create", "error") and isinstance(guest.clone, int):
            # A template the token cannot see is missing from /cluster/resources.
            needs.append(Need(f"/vms/{guest.clone}", "VM.Audit", f"read the template of {gp.name}"))
        if gp.action == "create":
            want = desired_guest(guest)
            found = (sources or {}).get(want.create.get("clone", ""))
            needs += create_needs(want, found[1] if found else None, found[0] if found else None)
        elif gp.action == "update":
            needs += changes_needs(guest, gp.changes, f"change {gp.name}")
            needs += _power_needs(guest, gp)
    for bp in plan.bridges:
        # Reading /nodes/{node}/network takes no privilege (its schema: user => 'all').
        if bp.action in ("create", "update") and bp.node:
            needs.append(Need(f"/nodes/{bp.node}", "Sys.Modify", f"bridge {bp.name}"))
    for jp in plan.jobs:
        needs.append(Need("/", "Sys.Audit", "read the backup jobs"))
        if jp.action in ("create", "update"):
            needs.append(Need("/", "Sys.Modify", f"backup job {jp.name}"))
            store = jp.options.get("storage") or (inv.backups.storage if inv.backups else None)
            if store:
                needs.append(
                    Need(f"/storage/{store}", "Datastore.Allocate", f"backup job {jp.name}")
                )
    for sp in plan.storages:
        needs.append(Need(f"/storage/{sp.name}", "Datastore.Audit", f"read storage {sp.name}"))
        if sp.action == "create":
            needs.append(Need("/storage", "Datastore.Allocate", f"create storage {sp.name}"))
        elif sp.action == "update":
            needs.append(
                Need(f"/storage/{sp.name}", "Datastore.Allocate", f"change storage {sp.name}")
            )
    return needs


def missing_privileges(
    api: Proxmox,
    inv: Inventory,
    plan: Plan,
    sources: Mapping[str, tuple[int, ActualGuest]] | None = None,
    held: Granted | None = None,
) -> list[Missing]:
    """Compare what the token may do (``held``, as plan read it; else read now) with
    what the plan needs."""
    return missing(api, needed(inv, plan, sources), held)
