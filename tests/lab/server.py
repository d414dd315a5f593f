"""The lab: fakepve's simulated Proxmox VE, seeded with the inventory's host.

``Lab`` is a ``fakepve.FakePve`` subclass. fakepve answers every method of the
PVE 9 schema, but a few areas only with made-up data that changes nothing
(docs/lab.md). nixmox depends on exactly those areas (backups, passthrough
checks, host updates, bridges), so the lab makes them stateful through
fakepve's ``_routes_<area>`` hook: each method below returns
``(METHOD, schema path, async handler(values, user))`` and fakepve registers it
ahead of its catch-all, after its own schema and permission checks.

Everything else (guests, clones, templates, storage content, tasks, tokens)
is fakepve's own model, which the lab seeds from examples/homelab.toml.

Private fakepve hooks relied on (pinned by ``fakepve==0.5.0``):
``_routes_*`` tables, ``_stateful_handler`` (to add PVE's ``changes``
attribute next to ``data``), ``_node_stats``, ``_item`` (content listing),
``_complete`` and the ``storages[...]['volumes']`` / ``files`` layout.
"""

from __future__ import annotations

import asyncio
import base64
import contextvars
import datetime as dt
import difflib
import ipaddress
import json
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web
from fakepve import FakeCt, FakePve, FakeVm, PveError, TaskError
from fakepve.lxc import SNAPSHOT_STORAGE
from fakepve.routing import param_error, split_list

from .access import StrictAccess
from .inventory import Inventory, load_inventory, size_bytes
from .pci import DEFAULT_CLASS_BLACKLIST, VERBOSE_FIELDS, PciDevice, host_devices
from .windows_agent import WindowsAgent

#: The options of a VM restore that say how to restore, not what the VM is.
RESTORE_ONLY = frozenset(
    [
        "node",
        "vmid",
        "archive",
        "storage",
        "force",
        "unique",
        "live-restore",
        "pool",
        "bwlimit",
        "start",
    ]
)

GIB = 1024**3
Handler = Callable[[dict[str, Any], str], Awaitable[Any]]
Route = tuple[str, str, Handler]
Guest = FakeVm | FakeCt
# (agent command, request values, argv of the exec an exec-status reports on) -> answer or None.
AgentResponder = Callable[[str, dict[str, Any], list[str] | None], Any]

# Attributes a handler adds next to `data` (PVE's set_result_attrib), per request.
_RESULT_ATTRIBS: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "lab_result_attribs", default=None
)

# Archive extension per vzdump `compress` value.
COMPRESS_EXT = {"0": "", "1": ".lzo", "gzip": ".gz", "lzo": ".lzo", "zstd": ".zst"}
# What a fresh PVE 9 host has installed: the packages `pveversion -v` lists first.
DEFAULT_PACKAGES = {
    "proxmox-ve": "9.0.0",
    "pve-manager": "9.0.10",
    "proxmox-kernel-helper": "9.0.3",
    "proxmox-kernel-6.14": "6.14.8-2",
    "qemu-server": "9.0.16",
    "pve-container": "6.0.9",
    "libpve-storage-perl": "9.0.11",
    "zfsutils-linux": "2.3.3-pve1",
    "ifupdown2": "3.3.0-1+pmx9",
    "lxc-pve": "6.0.4-2",
}
RUNNING_KERNEL = "6.14.8-2-pve"
# /proc/cpuinfo flags of a Zen 3 CPU: `svm` is what passthrough checks look for.
CPU_FLAGS = " ".join(
    (
        "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush",
        "mmx fxsr sse sse2 ht syscall nx mmxext fxsr_opt pdpe1gb rdtscp lm constant_tsc",
        "rep_good nopl nonstop_tsc cpuid extd_apicid aperfmperf pni pclmulqdq monitor",
        "ssse3 fma cx16 sse4_1 sse4_2 movbe popcnt aes xsave avx f16c rdrand lahf_lm",
        "cmp_legacy svm extapic cr8_legacy abm sse4a misalignsse 3dnowprefetch osvw ibs",
        "skinit wdt tce topoext perfctr_core perfctr_nb bpext perfctr_llc mwaitx cpb",
        "cat_l3 cdp_l3 hw_pstate ssbd mba ibrs ibpb stibp vmmcall fsgsbase bmi1 avx2 smep",
        "bmi2 erms invpcid cqm rdt_a rdseed adx smap clflushopt clwb sha_ni xsaveopt",
        "xsavec xgetbv1 xsaves cqm_llc cqm_occup_llc cqm_mbm_total cqm_mbm_local clzero",
        "irperf xsaveerptr rdpru wbnoinvd arat npt lbrv svm_lock nrip_save tsc_scale",
        "vmcb_clean flushbyasid decodeassists pausefilter pfthreshold avic",
        "v_vmsave_vmload vgif v_spec_ctrl umip pku ospke vaes vpclmulqdq rdpid",
        "overflow_recov succor smca fsrm",
    )
)
# Usable space of the rpool mirror of two 2 TB NVMe disks; every storage of the lab lives on it.
RPOOL_AVAIL = int(1.7 * 1024**4)


#: The storage.cfg keys of a pbs storage the inventory declares.
PBS_KEYS = ("server", "datastore", "namespace", "port", "fingerprint", "username")
#: A PBS backup group's type per guest kind.
PBS_GROUP = {"qemu": "vm", "lxc": "ct"}


class Lab(StrictAccess, FakePve):
    """A simulated PVE 9 host ``pve1`` as examples/homelab.toml describes it, before provisioning.

    Seeded: the node's CPU and memory, the four storages, the NixOS LXC
    template file and the NixOS VM template (9000). Not seeded: guests
    100-102 (``add_declared_guests()`` adds them) and the bridges (network
    apply creates them).
    """

    def __init__(
        self,
        inventory: Inventory | str | Path | None = None,
        *,
        user: str = "root@pam",
        password: str = "secret",
        host: str | None = None,
        port: int = 8006,
    ) -> None:
        super().__init__(user=user, password=password, host=host, port=port)
        self.inventory: Inventory = (
            inventory if isinstance(inventory, dict) else load_inventory(inventory)
        )
        node = self.inventory["nodes"][0]
        self.node_name: str = node["name"]
        self.hardware: dict[str, Any] = node.get("hardware", {})
        self.timezone = ZoneInfo(self.inventory.get("timezone", "UTC"))
        #: The node's own local zone: vzdump names archives in it (PVE::VZDump uses
        #: localtime), and the content listing's ctime is that name read back in it
        #: (pve-storage, PVE::Storage::archive_info). It need not be the inventory's.
        self.node_zone: ZoneInfo = self.timezone
        #: The qemu-server.conf inside a VM archive copied into a dump directory: what
        #: nixpkgs' proxmox-image writes by default (its boot disk virtio0, with the
        #: storage hint local-lvm). Restored without storage=, PVE puts the disk there.
        self.copied_vm_archive_config: dict[str, Any] = {
            "name": "nixos-vm",
            "cores": 2,
            "memory": 2048,
            "ostype": "l26",
            "agent": "1",
            "virtio0": "local-lvm:vm-9999-disk-0,size=8G",
            "boot": "order=virtio0",
            "net0": "virtio=00:00:00:00:00:00,bridge=vmbr0,firewall=1",
        }
        # The lab's clock (epoch seconds): replace it to back-date what the lab creates.
        self.now: Callable[[], float] = time.time
        # PVE seconds one guest's backup takes (scaled by time_scale like every task).
        self.backup_secs = 10.0
        #: Wall-clock seconds a VM restore runs (0: it ends at once, as every task at
        #: time_scale 0); the guest is `lock: create` meanwhile.
        self.restore_wall_secs = 0.0
        #: upid -> what stopping that running task undoes (its worker's cleanup).
        self.task_aborts: dict[str, Callable[[], None]] = {}
        #: Called when a network reload has applied the pending interfaces.
        self.after_network_reload: Callable[[], None] | None = None
        self.pci_devices: list[PciDevice] = host_devices()
        #: vmid -> the options a container restore took from its archive (not checked).
        self._from_archive: dict[int, set[str]] = {}
        #: Dir storage paths with nothing mounted on them (a ZFS dataset not mounted).
        self.unmounted: set[str] = set()
        # ZFS snapshots taken outside Proxmox (a snapshot job on the dataset behind a
        # guest volume): volid -> when each was taken. PVE's ZFS plugin refuses to roll
        # a volume back past them (see _refuse_zfs_rollback).
        self.zfs_snapshots: dict[str, list[float]] = {}
        #: (storage, volname) written into the root file system under an unmounted path.
        self.root_fs_writes: list[tuple[str, str]] = []
        self.backup_jobs: dict[str, dict[str, Any]] = {}
        self.installed_packages: dict[str, str] = dict(DEFAULT_PACKAGES)
        self.running_kernel = RUNNING_KERNEL
        # vmid -> (message, times left or None for ever)
        self._backup_failures: dict[int, list[Any]] = {}
        # Per node: upgrades the repositories offer, and the list PVE cached at its last
        # `apt update`.
        self._apt_available: dict[str, list[dict[str, Any]]] = {}
        self._apt_cache: dict[str, list[dict[str, Any]]] = {}
        self.apt_refreshes = 0
        #: Called with the node's name before its apt list is read or refreshed (a test
        #: applies what a stand-in apt-get did on that node's host).
        self.before_apt_read: Callable[[str], None] | None = None
        # /etc/network/interfaces (applied) and interfaces.new (None: nothing pending).
        self.net_applied: dict[str, dict[str, Any]] = {}
        self.net_pending: dict[str, dict[str, Any]] | None = None
        #: vmid -> responders consulted on every agent call (Windows provisioning agent below).
        self.agent_responders: dict[int, list[AgentResponder]] = {}
        #: Real seconds every answer is held, whatever time_scale is (see hold_answers).
        self.answer_hold = 0.0
        #: Seconds of real time an answer is held after its handler ran (the request took
        #: effect, the client does not know yet).
        self.late_answer = 0.0
        self._host_update_state()
        self._seed()
        self._windows_agent_setup()

    # ---------------------------------------------------------------- latency

    def hold_answers(self, seconds: float) -> None:
        """Hold every answer for ``seconds`` of real time.

        fakepve's ``slow_network`` is in PVE seconds, scaled by ``time_scale``
        (0 in the lab, so no delay at all); a benchmark of a latency-bound
        client needs a wait that does not scale.
        """
        self.answer_hold = seconds

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if self.answer_hold:
            await asyncio.sleep(self.answer_hold)
        response: web.StreamResponse = await super()._middleware(request, handler)
        if self.late_answer:
            await asyncio.sleep(self.late_answer)
        return response

    # ---------------------------------------------------------------- seeding

    def _seed(self) -> None:
        self.nodes = {self.node_name: {"online": True}}
        self.storages = {}
        for spec in self.inventory.get("storages", []):
            self.storages[spec["storage"]] = self._storage_record(spec)
        for iface in ("enp5s0", "enp6s0"):
            self.net_applied[iface] = {"type": "eth", "method": "manual", "exists": 1, "active": 1}
        for guest in self.inventory.get("guests", []):
            if guest.get("kind") == "lxc" and guest.get("template"):
                self._seed_template_file(guest["template"])
        clones = {
            g["clone"] for g in self.inventory.get("guests", []) if g.get("clone") is not None
        }
        for vmid in sorted(c for c in clones if isinstance(c, int)):
            self._seed_vm_template(vmid)
        # The admin made the inventory's PCI mappings once, as root (doctor prints the command).
        self.seed_mappings()
        # The admin made the scratch pool once (`pveum pool add`, as `nixmox token` prints).
        pool = self.inventory.get("backups", {}).get("verify", {}).get("pool")
        if pool:
            self.pools.setdefault(pool, set())
            self._pool_meta(pool)

    def seed_mappings(self) -> None:
        """The PCI resource mappings the inventory's guests name, pointing where their
        ``device`` says, with the ids and IOMMU group ``/hardware/pci`` lists."""
        listed = {d["id"]: d for d in host_devices()}
        for guest in self.inventory.get("guests", []):
            for pci in guest.get("hostpci", []):
                if not (pci.get("mapping") and pci.get("device")):
                    continue
                address = pci["device"]
                dev = listed[address if "." in address else address + ".0"]
                ids = f"{dev['vendor'][2:]}:{dev['device'][2:]}"
                group = dev["iommugroup"]
                entry = f"node={guest['node']},path={address},id={ids},iommugroup={group}"
                self.mappings["pci"][pci["mapping"]] = {"map": [entry]}

    @staticmethod
    def _storage_record(spec: dict[str, Any]) -> dict[str, Any]:
        """A fakepve storage entry: storage.cfg options plus the fake's state keys."""
        store: dict[str, Any] = {
            "type": spec["type"],
            "content": ",".join(spec.get("content", [])),
            "active": 1,
            "files": set(),
            "volumes": {},
            "avail": RPOOL_AVAIL,
        }
        if spec["type"] == "zfspool":
            store["pool"] = spec["dataset"]
            if spec.get("sparse"):
                store["sparse"] = 1
        elif spec["type"] == "pbs":
            # storage.cfg's pbs section: where the datastore is; the password is the admin's.
            store.update((k, spec[k]) for k in PBS_KEYS if spec.get(k) is not None)
            store["content"] = store["content"] or "backup"
        else:
            store["path"] = spec.get("path") or "/var/lib/vz"
        if spec["type"] == "dir" and spec.get("is_mountpoint", spec.get("dataset") is not None):
            store["is_mountpoint"] = "yes"
        return store

    # pve-storage DirPlugin::activate_storage: with is_mountpoint (a boolean, or a
    # path, parse_is_mountpoint), a dir storage whose mount point is not mounted
    # cannot be activated; without, PVE uses the bare directory underneath.

    def _mount_point(self, name: str) -> str | None:
        store = self.storages.get(name) or {}
        value = str(store.get("is_mountpoint", "")).strip().lower()
        if store.get("type") != "dir" or value in ("", "0", "no", "off", "false"):
            return None
        return str(store.get("path")) if value in ("1", "yes", "on", "true") else value

    def _mount_refused(self, name: str) -> str | None:
        point = self._mount_point(name)
        if point is None or point not in self.unmounted:
            return None
        return (
            f"unable to activate storage '{name}' - directory is expected to be a mount "
            f"point but is not mounted: '{point}'"
        )

    def _status_item(self, name: str, node: str, formats: bool = False) -> dict[str, Any]:
        item: dict[str, Any] = super()._status_item(name, node, formats)
        if self._mount_refused(name):
            item.update(active=0, total=0, used=0, avail=0)
        return item

    def _active_store(self, name: str, node: str) -> dict[str, Any]:
        refused = self._mount_refused(name)
        if refused:
            raise PveError(500, refused)
        store: dict[str, Any] = super()._active_store(name, node)
        return store

    def _add_volume(self, storage: str, volname: str, record: dict[str, Any]) -> None:
        """Put a volume on a storage and take its size from the free space, as allocation does."""
        store = self.storages[storage]
        if store.get("path") in self.unmounted:
            self.root_fs_writes.append((storage, volname))
        record.setdefault("ctime", int(self.now()))
        store["volumes"][volname] = record
        store["avail"] -= int(record.get("size") or 0)

    def _seed_template_file(self, volid: str) -> None:
        storage, _, volname = volid.partition(":")
        # PVE reports a template's format from its extension: tar.xz -> txz, tar.gz -> tgz.
        ext = volname.rsplit(".", 1)[-1]
        self._add_volume(
            storage,
            volname,
            {"content": "vztmpl", "format": "t" + ext, "size": 412 * 1024**2},
        )

    def _seed_vm_template(self, vmid: int) -> None:
        """The NixOS VM template the nixos-vm guest is cloned from; its base disk on vm-disks."""
        storage = self._images_storage()
        disk = f"base-{vmid}-disk-0"
        self._add_volume(
            storage, disk, {"content": "images", "format": "raw", "size": 8 * GIB, "vmid": vmid}
        )
        config = {
            "name": "nixos-template",
            "ostype": "l26",
            "cores": 2,
            "memory": 2048,
            "agent": "1",
            "scsihw": "virtio-scsi-single",
            "scsi0": f"{storage}:{disk},discard=on,iothread=1,size=8G,ssd=1",
            "net0": f"virtio={_mac(vmid, 0)},bridge=vmbr0",
            "boot": "order=scsi0",
            "serial0": "socket",
            "smbios1": f"uuid={uuid.UUID(int=vmid)}",
            "description": "NixOS VM template (nixos-generators qcow, cloud-init-less)",
            "template": 1,
        }
        self.add_vm(vmid, "nixos-template", node=self.node_name, config=config, template=True)

    def _images_storage(self) -> str:
        for name, store in self.storages.items():
            if "images" in split_list(store.get("content")):
                return name
        raise LookupError("the inventory has no storage for VM images")

    def writes(self, since: int = 0) -> list[Any]:
        """The requests from ``since`` on that could change something: every one but a GET
        and a password login (``POST /access/ticket`` only opens a session)."""
        return [
            r
            for r in self.requests[since:]
            if r[0] != "GET" and not r[1].endswith("/access/ticket")
        ]

    def add_declared_guests(self) -> list[Guest]:
        """Create the inventory's guests as provisioning would have left them; returns them.

        Containers and VMs with ``onboot`` run; the others (the Windows VM) are
        stopped. Disks are real volumes on their storages.
        """
        made: list[Guest] = []
        for guest in self.inventory.get("guests", []):
            if self.guest(guest["vmid"]) is not None:
                continue
            if guest.get("kind") == "lxc":
                made.append(self._add_declared_ct(guest))
            else:
                made.append(self._add_declared_vm(guest))
        return made

    def _add_declared_ct(self, guest: dict[str, Any]) -> FakeCt:
        vmid = guest["vmid"]
        config: dict[str, Any] = {
            "hostname": guest["name"],
            "cores": guest.get("cores", 1),
            "memory": guest.get("memory", 512),
            "swap": guest.get("swap", 512),
            "unprivileged": 1 if guest.get("unprivileged", True) else 0,
            "onboot": 1 if guest.get("onboot") else 0,
        }
        if guest.get("features"):
            config["features"] = ",".join(f"{f}=1" for f in guest["features"])
        _common_options(config, guest)
        rootfs = guest.get("rootfs") or {"storage": "local", "size": "8G"}
        volname = f"subvol-{vmid}-disk-0"
        size = size_bytes(rootfs["size"])
        self._add_volume(
            rootfs["storage"],
            volname,
            {"content": "rootdir", "format": "subvol", "size": size, "vmid": vmid},
        )
        config["rootfs"] = f"{rootfs['storage']}:{volname},size={rootfs['size']}"
        for n, net in enumerate(guest.get("net", [])):
            ip = net.get("ip", "dhcp")
            config[f"net{n}"] = (
                f"name=eth{n},bridge={net['bridge']},hwaddr={_mac(vmid, n)},ip={ip},type=veth"
            )
        status = "running" if guest.get("onboot") else "stopped"
        return self.add_ct(
            vmid,
            guest["name"],
            node=guest.get("node", self.node_name),
            status=status,
            config=config,
            ostemplate=guest.get("template"),
        )

    def _add_declared_vm(self, guest: dict[str, Any]) -> FakeVm:
        vmid = guest["vmid"]
        windows = guest.get("os") == "windows"
        config: dict[str, Any] = {"ostype": guest.get("ostype", "win11" if windows else "l26")}
        for key in ("bios", "cpu", "cores", "affinity", "memory", "balloon", "scsihw"):
            if key in guest:
                config[key] = guest[key]
        if guest.get("machine") == "q35" and windows:
            # PVE pins a Windows VM's machine version at create.
            config["machine"] = "pc-q35-10.0+pve1"
        elif guest.get("machine"):
            config["machine"] = guest["machine"]
        config["onboot"] = 1 if guest.get("onboot") else 0
        if guest.get("agent"):
            config["agent"] = "1"
        _common_options(config, guest)
        disk_no = 0

        def allocate(storage: str, size: int) -> str:
            nonlocal disk_no
            volname = f"vm-{vmid}-disk-{disk_no}"
            disk_no += 1
            self._add_volume(
                storage, volname, {"content": "images", "format": "raw", "size": size, "vmid": vmid}
            )
            return f"{storage}:{volname}"

        if efi := guest.get("efidisk"):
            opts = {"efitype": efi.get("efitype", "4m"), "size": "1M"}
            if efi.get("pre-enrolled-keys"):
                opts["pre-enrolled-keys"] = "1"
            config["efidisk0"] = _drive(allocate(efi["storage"], 1024**2), opts)
        for disk in guest.get("disks", []):
            opts = {"size": disk["size"]}
            opts.update(
                {
                    k: ("on" if k == "discard" else "1")
                    for k in ("discard", "ssd", "iothread")
                    if disk.get(k)
                }
            )
            config[disk["slot"]] = _drive(allocate(disk["storage"], size_bytes(disk["size"])), opts)
        if tpm := guest.get("tpmstate"):
            config["tpmstate0"] = _drive(
                allocate(tpm["storage"], 4 * 1024**2),
                {"size": "4M", "version": tpm.get("version", "v2.0")},
            )
        for n, net in enumerate(guest.get("net", [])):
            config[f"net{n}"] = (
                f"{net.get('model', 'virtio')}={_mac(vmid, n)},bridge={net['bridge']}"
            )
        stage = guest.get("stage", "gaming")
        if stage != "install":
            for n, pci in enumerate(guest.get("hostpci", [])):
                opts = {"pcie": "1"} if pci.get("pcie") else {}
                if pci.get("x-vga") and stage == "gaming":
                    opts["x-vga"] = "1"
                if pci.get("mapping"):
                    config[f"hostpci{n}"] = _drive(f"mapping={pci['mapping']}", opts)
                else:
                    config[f"hostpci{n}"] = _drive(pci["device"], opts)
        if stage == "gaming" and any(p.get("x-vga") for p in guest.get("hostpci", [])):
            config["vga"] = "none"
        boot = [k for k in ("scsi0", "virtio0", "sata0") if k in config]
        if boot:
            config["boot"] = "order=" + ";".join(boot)
        config["smbios1"] = f"uuid={uuid.UUID(int=vmid)}"
        status = "running" if guest.get("onboot") else "stopped"
        vm = self.add_vm(
            vmid,
            guest["name"],
            node=guest.get("node", self.node_name),
            status=status,
            config=config,
        )
        # The agent answers once the VM runs: NixOS or Windows, not fakepve's default Debian.
        vm.agent = {"os": _windows_osinfo() if windows else _nixos_osinfo()}
        return vm

    # ------------------------------------------------------------ node status

    def _node_stats(self, online: bool) -> dict[str, Any]:
        """/nodes and /cluster/resources: CPU threads and memory of the inventory's hardware."""
        if not online:
            return {}
        total = int(self.hardware.get("memory_gib", 8)) * GIB
        return {
            "cpu": 0.03,
            "maxcpu": int(self.hardware.get("threads", 4)),
            "mem": total // 8,
            "maxmem": total,
            "disk": 4 * GIB,
            "maxdisk": 64 * GIB,
            "uptime": 3600,
        }

    def _routes_lab_node(self) -> list[Route]:
        return [("GET", "/nodes/{node}/status", self._node_status)]

    async def _node_status(self, v: dict[str, Any], user: str) -> dict[str, Any]:
        hw = self.hardware
        total = int(hw.get("memory_gib", 8)) * GIB
        used = total - self.node_mem_available(v["node"])  # the host's share and running VMs
        threads = int(hw.get("threads", 4))
        kernel = self.running_kernel
        cores = int(hw.get("cores", threads))
        data = {
            "cpu": 0.03,
            "cpuinfo": {
                "model": hw.get("cpu", "Example CPU"),
                "cores": cores,
                "cpus": threads,
                "sockets": 1,
                "mhz": "3400.000",
                "hz": "3400000000",
                "user_hz": 100,
                "flags": CPU_FLAGS,
            },
            "memory": {
                "total": total,
                "used": used,
                "free": total - used,
                "available": total - used,
            },
            "swap": {"total": 0, "used": 0, "free": 0},
            "ksm": {"shared": 0},
            "rootfs": {"total": 100 * GIB, "used": 6 * GIB, "free": 94 * GIB, "avail": 94 * GIB},
            "loadavg": ["0.12", "0.10", "0.08"],
            "idle": 0,
            "wait": 0.0,
            "uptime": self.node_uptime(v["node"]),
            "kversion": f"Linux {kernel} #1 SMP PREEMPT_DYNAMIC PMX {kernel} x86_64",
            "current-kernel": {
                "sysname": "Linux",
                "release": self.running_kernel,
                "version": f"#1 SMP PREEMPT_DYNAMIC PMX {self.running_kernel}",
                "machine": "x86_64",
            },
            "boot-info": {"mode": "efi", "secureboot": 0},
            "pveversion": f"pve-manager/{self.installed_packages.get('pve-manager', '9.0.10')}/"
            f"{self.running_kernel}",
        }
        return self._complete("/nodes/{node}/status", data, node=v["node"])

    # ------------------------------------------------------------- hardware

    def _routes_lab_hardware(self) -> list[Route]:
        return [("GET", "/nodes/{node}/hardware/pci", self._pci_list)]

    async def _pci_list(self, v: dict[str, Any], user: str) -> list[dict[str, Any]]:
        """PVE::API2::Hardware::PCI: the blacklist lists class-code prefixes (hex, no 0x)."""
        blacklist = v.get("pci-class-blacklist")
        prefixes = split_list(DEFAULT_CLASS_BLACKLIST if blacklist is None else blacklist)
        verbose = v.get("verbose", 1)
        out = []
        for dev in sorted(self.pci_devices, key=lambda d: d["id"]):
            if any(dev["class"].lower().startswith("0x" + p.lower()) for p in prefixes):
                continue
            item = {k: val for k, val in dev.items() if k not in VERBOSE_FIELDS and k != "mdev"}
            if dev.get("mdev"):
                item["mdev"] = 1
            if verbose:
                item.update((k, dev[k]) for k in VERBOSE_FIELDS if dev.get(k))
            out.append(item)
        return out

    # -------------------------------------------------------------- restore

    async def _qm_create(self, v: dict[str, Any], user: str) -> str:
        # fakepve refuses `qm create --archive`; the lab restores its own archives.
        if not v.get("archive"):
            created: str = await super()._qm_create(v, user)
            return created
        return await self._qm_restore(v, user)

    async def _qm_restore(self, v: dict[str, Any], user: str) -> str:
        node, vmid, archive = v["node"], int(v["vmid"]), str(v["archive"])
        storage, _, volname = archive.partition(":")
        record = self.storages.get(storage, {}).get("volumes", {}).get(volname)
        if record is None or record.get("content") != "backup":
            raise PveError(500, f"unable to restore VM {vmid} - volume '{archive}' does not exist")
        existing = self.guest(vmid)
        saved = dict(
            record.get("config")
            or {"name": f"vm{record['vmid']}", "memory": "512", "net0": "virtio,bridge=vmbr0"}
        )
        target = v.get("storage")
        pool = v.get("pool")
        if pool and pool not in self.pools:
            raise PveError(403, f"Permission check failed (pool '{pool}' does not exist)")
        # PVE::API2::Qemu create_vm, before anything is overwritten: VM.Allocate, or
        # VM.Backup alone to restore over a VM that exists (force).
        over = bool(v.get("force")) and isinstance(existing, FakeVm) and existing.node == node
        if not (
            self.allowed(user, f"/vms/{vmid}", "VM.Allocate")
            or (pool and self.allowed(user, f"/pool/{pool}", "VM.Allocate"))
            or (over and self.allowed(user, f"/vms/{vmid}", "VM.Backup"))
        ):
            raise PveError(403, "Permission check failed")
        hinted = tuple(
            sorted(
                {
                    (target or "local") if target is not None else str(val).split(":", 1)[0]
                    for key, val in saved.items()
                    if re.fullmatch(r"(scsi|virtio|sata|ide|efidisk|tpmstate)\d+", key)
                    and ":" in str(val).split(",", 1)[0]
                    and "media=cdrom" not in str(val)
                }
            )
        )
        self._restore_rules(user, vmid, archive, saved, target, hinted)
        if existing is not None:
            # PVE::API2::Qemu create_vm: force= overwrites a stopped VM of this node,
            # its disks destroyed first; anything else is refused.
            if not over:
                raise PveError(500, f"unable to restore VM {vmid} - VM {vmid} already exists")
            assert isinstance(existing, FakeVm)
            if existing.lock:
                raise PveError(500, f"unable to restore VM {vmid} - VM is locked ({existing.lock})")
            if existing.status == "running":
                raise PveError(500, f"unable to restore VM {vmid} - VM {vmid} is running")
            for key, value in list(existing.config.items()):
                volume = str(value).split(",", 1)[0]
                if re.fullmatch(r"(scsi|virtio|sata|ide|efidisk|tpmstate|unused)\d+", key) and (
                    ":" in volume and "media=cdrom" not in str(value)
                ):
                    self._qm_free(volume)
            self.vms.remove(existing)
        config: dict[str, Any] = {}
        disk_no = 0
        planned: list[tuple[str, str, int]] = []
        for key, value in saved.items():
            text = str(value)
            volume = text.split(",", 1)[0]
            if ":" in volume and re.fullmatch(r"(scsi|virtio|sata|ide|efidisk|tpmstate)\d+", key):
                if "media=cdrom" in text:
                    continue
                new = f"vm-{vmid}-disk-{disk_no}"
                disk_no += 1
                # PVE::QemuServer::parse_backup_hints: storage= wins, else the archive's own
                # storage hint; that storage must exist and take VM images.
                store = (target or "local") if target is not None else volume.split(":", 1)[0]
                size = re.search(r"(?:^|,)size=(\d+[KMGT]?)", text)
                planned.append((store, new, size_bytes(size.group(1)) if size else 1024**3))
                rest = text.split(",", 1)[1] if "," in text else ""
                config[key] = f"{store}:{new}" + (f",{rest}" if rest else "")
            elif key not in ("lock", "digest"):
                config[key] = value
        refused = next(
            (
                f"storage '{store}' does not exist"
                if store not in self.storages
                else f"Content type 'images' is not available on storage '{store}'"
                for store, _, _ in planned
                if store not in self.storages
                or "images" not in split_list(self.storages[store].get("content"))
            ),
            None,
        )
        if refused is not None:

            async def fail() -> str:
                raise TaskError(refused)

            return await self.task(node, "qmrestore", vmid, user, fail)
        for store, new, size in planned:
            self._add_volume(
                store, new, {"content": "images", "format": "raw", "size": size, "vmid": vmid}
            )
        # PVE (qemu-server >= 7.2) applies the call's other options over the archive's
        # config ("override_conf"); disks cannot be given with an archive.
        for key, value in v.items():
            if key not in RESTORE_ONLY:
                config[key] = value
        if v.get("unique"):
            for key in [k for k in config if re.fullmatch(r"net\d+", k)]:
                config[key] = re.sub(r"=([0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}", "", str(config[key]))
        vm = FakeVm(vmid, str(config.pop("name", f"restored-{vmid}")), node=node, config=config)
        if str(config.get("agent", "0")).split(",")[0] in ("1", "enabled=1"):
            vm.agent = {}  # the restored system brings its guest agent up
        self.vms.append(vm)
        if self.restore_wall_secs:
            return self._slow_restore(node, vm, archive, user, planned, pool)

        async def body() -> str:
            if pool:
                self._pool_join(pool, vmid)
            return f"restore {archive} to VM {vmid}"

        return await self.task(node, "qmrestore", vmid, user, body, vm=vm)

    def _restore_ct_config(self, v: dict[str, Any]) -> None:
        storage, _, volname = str(v.get("ostemplate", "")).partition(":")
        record = self.storages.get(storage, {}).get("volumes", {}).get(volname) or {}
        saved = record.get("config")
        if not saved:
            return
        for key, value in saved.items():
            if key in ("lock", "digest", "ostype", "arch") or re.fullmatch(r"(mp|unused)\d+", key):
                continue
            if key == "rootfs":
                if "rootfs" not in v:
                    volume, _, rest = str(value).partition(",")
                    size = re.search(r"(?:^|,)size=(\d+[KMGT]?)", rest)
                    gib = max(1, size_bytes(size.group(1)) // GIB) if size else 8
                    v["rootfs"] = f"{v.get('storage') or volume.split(':', 1)[0]}:{gib}"
                    self._from_archive.setdefault(int(v["vmid"]), set()).add(key)
                continue
            if re.fullmatch(r"net\d+", key) and v.get("unique"):
                value = re.sub(r",?hwaddr=[0-9A-Fa-f:]+", "", str(value))
            if key not in v:
                v[key] = value
                self._from_archive.setdefault(int(v["vmid"]), set()).add(key)

    def _check_modify_perm(self, user: str, vmid: int, pool: Any, ct: Any, *rest: Any) -> Any:
        """fakepve's check of the options a create sets, less those a restore brought from
        the archive: pct restore checks only the options of the request."""
        params, *more = rest
        skip = self._from_archive.get(int(vmid), set())
        mine = {k: x for k, x in params.items() if k not in skip}
        return super()._check_modify_perm(user, vmid, pool, ct, mine, *more)

    def _slow_restore(
        self,
        node: str,
        vm: FakeVm,
        archive: str,
        user: str,
        planned: list[tuple[str, str, int]],
        pool: str | None = None,
    ) -> str:
        """A restore that copies for ``restore_wall_secs`` of real time.

        PVE::API2::Qemu create_vm: create_and_lock_config leaves the new guest
        ``lock: create`` until the worker ends, so nothing can destroy it
        meanwhile; stopping the task makes PVE::QemuServer::restore_vma_archive
        remove what it restored (its volumes, then the config).
        """
        _set_lock(vm, "create")
        upid = self.hold_task(node, "qmrestore", vm.vmid, user)

        def finish() -> None:
            if self.tasks[upid].get("status") == "running":
                _set_lock(vm, None)
                if pool:
                    self._pool_join(pool, vm.vmid)  # the worker adds it once restored
                self.end_task(upid)

        def abort() -> None:
            for store, volname, _ in planned:
                volume = self.storages[store]["volumes"].pop(volname, None)
                if volume is not None:
                    self.storages[store]["avail"] += int(volume.get("size") or 0)
            if vm in self.vms:
                self.vms.remove(vm)
            self.end_task(upid, "interrupted by signal")

        self.task_aborts[upid] = abort
        asyncio.get_running_loop().call_later(self.restore_wall_secs, finish)
        return upid

    def _routes_lab_tasks(self) -> list[Route]:
        return [("DELETE", "/nodes/{node}/tasks/{upid}", self._task_stop)]

    async def _task_stop(self, v: dict[str, Any], user: str) -> None:
        """PVE::API2::Tasks stop_task: the worker gets SIGTERM and runs its own cleanup."""
        record = self.tasks.get(str(v["upid"]))
        if record is None or record.get("node") != v["node"]:
            raise PveError(500, "no such task")
        if record.get("status") != "running":
            return
        abort = self.task_aborts.pop(str(v["upid"]), None)
        if abort is not None:
            abort()
        else:
            self.end_task(str(v["upid"]), "interrupted by signal")

    async def _qm_clone(self, v: dict[str, Any], user: str) -> str:
        # PVE::API2::Qemu clone_vm: a clone to another node needs every disk of the
        # source on shared storage, whatever storage= says ("VM uses local storage").
        target = v.get("target")
        src = self.guest(int(v["vmid"]))
        if target and target != v["node"] and isinstance(src, FakeVm):
            for key, value in src.config.items():
                volume = str(value).split(",", 1)[0]
                if not re.fullmatch(r"(scsi|virtio|sata|ide|efidisk|tpmstate)\d+", key):
                    continue
                if ":" not in volume or "media=cdrom" in str(value):
                    continue
                if not (self.storages.get(volume.split(":", 1)[0]) or {}).get("shared"):
                    raise PveError(
                        500, f"can't clone VM to node '{target}' (VM uses local storage)"
                    )
        upid: str = await super()._qm_clone(v, user)
        new = self.guest(int(v["newid"]))
        agent = str(src.config.get("agent", "0")).split(",")[0] if src is not None else "0"
        if isinstance(new, FakeVm) and agent in ("1", "enabled=1"):
            # The NixOS template's image brings its guest agent up in every clone.
            new.agent = {"os": _nixos_osinfo()}
        return upid

    # ------------------------------------------------------------- features

    # ------------------------------------------------------------ ZFS rollback

    # PVE's ZFS plugin rolls a volume back with `zfs rollback` without -r, after
    # checking the snapshot is the newest on the dataset (PVE::Storage::ZFSPoolPlugin
    # volume_rollback_is_possible: "can't rollback, '...' is not most recent
    # snapshot on '...'"). fakepve's rollbacks ignore storages; so did nixmox's
    # hourly snapshot policies on datasets holding guest disks (issue 24, item 3).

    def zfs_snapshot(self, volid: str, when: float | None = None) -> None:
        """Record a ZFS snapshot of the dataset behind ``volid`` taken outside Proxmox."""
        self.zfs_snapshots.setdefault(volid, []).append(self.now() if when is None else when)

    def _zfs_volumes(self, guest: Guest) -> list[str]:
        if isinstance(guest, FakeVm):
            found = [
                str(v).split(",", 1)[0]
                for k, v in guest.config.items()
                if re.fullmatch(r"(scsi|virtio|sata|ide|efidisk|tpmstate)\d+", k)
                and "media=cdrom" not in str(v)
            ]
        else:
            found = [m["volume"] for _, m in guest.volumes()]
        return [
            v
            for v in found
            if ":" in v and (self.storages.get(v.split(":", 1)[0]) or {}).get("type") == "zfspool"
        ]

    def _refuse_zfs_rollback(self, guest: Guest, name: str) -> str | None:
        snap = guest.snapshots.get(name)
        if snap is None:
            return None
        taken = float(snap.get("snaptime") or 0)
        newer_pve = [
            other
            for other, s in guest.snapshots.items()
            if other != name and float(s.get("snaptime") or 0) > taken
        ]
        for volid in self._zfs_volumes(guest):
            dataset = volid.split(":", 1)[1]
            if newer_pve or any(when > taken for when in self.zfs_snapshots.get(volid, [])):
                return f"can't rollback, '{name}' is not most recent snapshot on '{dataset}'"
        return None

    async def _qm_rollback(self, v: dict[str, Any], user: str) -> Any:
        vm = self.find(v["node"], v["vmid"])
        refused = self._refuse_zfs_rollback(vm, v["snapname"])
        if refused is None:
            return await super()._qm_rollback(v, user)

        async def body() -> None:
            raise TaskError(refused)

        return await self.task(vm.node, "qmrollback", vm.vmid, user, body, vm=vm, lock=False)

    async def _lxc_rollback(self, user: str, v: dict[str, Any]) -> Any:
        ct = self._find_ct(v["node"], v["vmid"])
        refused = self._refuse_zfs_rollback(ct, v["snapname"])
        if refused is None:
            return await super()._lxc_rollback(user, v)

        async def body() -> None:
            raise TaskError(refused)

        return await self.task(ct.node, "vzrollback", ct.vmid, user, body)

    def _routes_lab_feature(self) -> list[Route]:
        # fakepve answers these with made-up data; PVE asks each volume's storage
        # plugin (PVE::QemuServer::has_feature, PVE::LXC::Config::has_feature ->
        # PVE::Storage::volume_has_feature), the same rule fakepve's snapshot
        # task applies: a raw disk on a file storage has no snapshots.
        return [
            ("GET", "/nodes/{node}/qemu/{vmid}/feature", self._feature_qm),
            ("GET", "/nodes/{node}/lxc/{vmid}/feature", self._feature_ct),
        ]

    async def _feature_qm(self, v: dict[str, Any], user: str) -> dict[str, Any]:
        return self._feature(self.find(v["node"], v["vmid"]), v["feature"])

    async def _feature_ct(self, v: dict[str, Any], user: str) -> dict[str, Any]:
        return self._feature(self._find_ct(v["node"], v["vmid"]), v["feature"])

    def _feature(self, guest: Guest, feature: str) -> dict[str, Any]:
        if feature != "snapshot":
            return {"hasFeature": 1, "nodes": [guest.node]}
        if isinstance(guest, FakeVm):
            has = self._qm_can_snapshot(guest.config)
        else:
            has = all(
                self.storages[m["volume"].split(":")[0]].get("type") in SNAPSHOT_STORAGE
                for _, m in guest.volumes()
                if m["volume"].split(":")[0] in self.storages
            )
        return {"hasFeature": 1 if has else 0, "nodes": [guest.node] if has else []}

    # --------------------------------------------------------------- resize

    def _routes_lab_resize(self) -> list[Route]:
        # fakepve answers resize without changing anything; PVE grows the
        # volume and writes the new size into the drive's property string.
        return [
            ("PUT", "/nodes/{node}/qemu/{vmid}/resize", self._resize),
            ("PUT", "/nodes/{node}/lxc/{vmid}/resize", self._resize),
        ]

    async def _resize(self, v: dict[str, Any], user: str) -> str | None:
        guest = self.guest(int(v["vmid"]))
        disk, wanted = str(v["disk"]), str(v["size"])
        drive = guest.config.get(disk)
        if drive is None:
            raise PveError(
                400, "Parameter verification failed.", {"disk": f"no such disk '{disk}'"}
            )
        parts = str(drive).split(",")
        volume = parts[0].split("=", 1)[-1]
        if ":" in volume:
            # qemu-server resize_vm / pve-container resize_vm: space on the disk's storage.
            self.require(user, f"/storage/{volume.split(':', 1)[0]}", "Datastore.AllocateSpace")
        current = next((p.split("=", 1)[1] for p in parts if p.startswith("size=")), "0")
        new = (
            size_bytes(current) + size_bytes(wanted[1:])
            if wanted.startswith("+")
            else size_bytes(wanted)
        )
        if new < size_bytes(current):
            raise PveError(500, "unable to shrink disk size")
        gib = new // 1024**3
        text = f"{gib}G" if new % 1024**3 == 0 else f"{new // 1024**2}M"
        guest.config[disk] = ",".join(
            [p for p in parts if not p.startswith("size=")] + [f"size={text}"]
        )
        if isinstance(guest, FakeCt):
            return None

        async def body() -> str:
            return f"resized {disk} to {text}"

        return await self.task(v["node"], "resize", guest.vmid, user, body, vm=guest)

    # -------------------------------------------------------------- backups

    def _routes_lab_backup(self) -> list[Route]:
        jobs = "/cluster/backup"
        return [
            ("POST", "/nodes/{node}/vzdump", self._vzdump),
            ("GET", "/nodes/{node}/vzdump/defaults", self._vzdump_defaults),
            ("GET", jobs, self._job_list),
            ("POST", jobs, self._job_create),
            ("GET", jobs + "/{id}", self._job_read),
            ("PUT", jobs + "/{id}", self._job_update),
            ("DELETE", jobs + "/{id}", self._job_delete),
        ]

    def fail_backup(
        self, vmid: int, message: str = "got unexpected EOF", times: int | None = None
    ) -> None:
        """Make one guest's backup fail with ``message`` (``times`` times; None: every time).

        The job goes on with the other guests and ends as PVE's does: exit
        status ``job errors`` and ``ERROR: Backup of VM <vmid> failed - <message>``.
        """
        self._backup_failures[vmid] = [message, times]

    def clear_backup_failures(self) -> None:
        """Undo fail_backup()."""
        self._backup_failures.clear()

    def add_storage(self, spec: dict[str, Any]) -> None:
        """Add a storage as the inventory's ``[[storages]]`` entry ``spec`` declares it
        (as `pvesm add` would): e.g. a pbs storage the example does not have."""
        self.storages[spec["storage"]] = self._storage_record(spec)

    def seed_backup(
        self,
        storage: str,
        vmid: int,
        kind: str,
        when: dt.datetime | float,
        protected: bool = False,
        *,
        notes: str | None = None,
        size: int = 512 * 1024**2,
        compress: str = "zstd",
    ) -> str:
        """Put a vzdump archive of ``vmid`` on ``storage`` made at ``when``; returns its volid.

        ``kind`` is "qemu" (or "vm") or "lxc"; ``when`` an epoch or a datetime
        (naive ones are in the inventory's time zone, as vzdump names files in
        the node's local time).
        """
        if isinstance(when, dt.datetime):
            stamp = when if when.tzinfo else when.replace(tzinfo=self.timezone)
            ctime = int(stamp.timestamp())
        else:
            ctime = int(when)
        kind = "qemu" if kind in ("vm", "qemu") else kind
        if kind not in ("qemu", "lxc"):
            raise ValueError(f"kind must be qemu or lxc, not {kind!r}")
        return self._write_archive(storage, vmid, kind, ctime, size, compress, notes, protected)

    def backups(self, storage: str, vmid: int | None = None) -> dict[str, dict[str, Any]]:
        """The backup volumes of a storage (volname -> record), optionally of one guest."""
        return {
            name: vol
            for name, vol in self.storages[storage]["volumes"].items()
            if vol.get("content") == "backup" and (vmid is None or vol.get("vmid") == vmid)
        }

    def _archive_name(
        self, kind: str, vmid: int, ctime: int, compress: str, storage: str | None = None
    ) -> str:
        if storage is not None and self.storages[storage].get("type") == "pbs":
            # PBSPlugin: a snapshot of the group vm/VMID or ct/VMID, named by its UTC time.
            utc = dt.datetime.fromtimestamp(ctime, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            return f"backup/{PBS_GROUP[kind]}/{vmid}/{utc}"
        stamp = dt.datetime.fromtimestamp(ctime, self.node_zone).strftime("%Y_%m_%d-%H_%M_%S")
        ext = ("vma" if kind == "qemu" else "tar") + COMPRESS_EXT.get(compress, "")
        return f"backup/vzdump-{kind}-{vmid}-{stamp}.{ext}"

    def _write_archive(
        self,
        storage: str,
        vmid: int,
        kind: str,
        ctime: int,
        size: int,
        compress: str,
        notes: str | None,
        protected: bool,
    ) -> str:
        store = self.storages[storage]
        volname = self._archive_name(kind, vmid, ctime, compress, storage)
        # Archive names carry whole seconds; two backups of a guest in one second (time_scale 0)
        # would collide, so the later one is stamped a second on.
        while volname in store["volumes"]:
            ctime += 1
            volname = self._archive_name(kind, vmid, ctime, compress, storage)
        if "avail" in store and size > store["avail"]:
            raise TaskError(f"unable to write to storage '{storage}': No space left on device")
        record: dict[str, Any] = {
            "content": "backup",
            "format": f"pbs-{PBS_GROUP[kind]}"
            if store.get("type") == "pbs"
            else volname.split(".", 1)[1],
            "size": size,
            "ctime": ctime,
            "vmid": vmid,
            "subtype": kind,
        }
        if notes:
            record["notes"] = notes
        if protected:
            record["protected"] = True
        self._add_volume(storage, volname, record)
        return f"{storage}:{volname}"

    def _item(self, name: str, volname: str, vol: dict[str, Any]) -> dict[str, Any]:
        """A content listing entry; backups also carry PVE's `subtype` (qemu or lxc)."""
        item: dict[str, Any] = super()._item(name, volname, vol)
        if vol.get("content") == "backup" and vol.get("subtype"):
            item["subtype"] = vol["subtype"]
        if self.storages[name].get("type") == "pbs" and not item.get("protected"):
            # PBSPlugin list_volumes sets `protected` only on a protected snapshot.
            item.pop("protected", None)
        return item

    # PBS storages. fakepve parses only file and block volume names; a pbs
    # storage's volumes are snapshots (PVE/Storage/PBSPlugin.pm, pve-storage 9.1):
    # `backup/{vm|ct}/VMID/YYYY-MM-DDTHH:MM:SSZ`, whose notes and protection are
    # set with PUT on the content volume and which PBS's forget removes (never a
    # protected one).

    _PBS_VOLNAME = re.compile(r"backup/(vm|ct|host)/([^\s/]+)/(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)")

    def _parse_volname(self, store: dict[str, Any], volname: str) -> tuple[str, int | None, str]:
        if store.get("type") != "pbs":
            parsed: tuple[str, int | None, str] = super()._parse_volname(store, volname)
            return parsed
        found = self._PBS_VOLNAME.fullmatch(volname)
        if found is None:
            raise PveError(500, f"unable to parse PBS volume name '{volname}'")
        group, owner = found.group(1), found.group(2)
        vmid = int(owner) if group != "host" and owner.isdigit() else None
        return "backup", vmid, f"pbs-{group}"

    def _pbs_volume(self, v: dict[str, Any]) -> tuple[str, str, str, dict[str, Any]] | None:
        """(storage, volname, volid, volume record) of a pbs volume, or None for other storages."""
        sid = str(v.get("storage") or str(v["volume"]).split(":", 1)[0])
        if (self.storages.get(sid) or {}).get("type") != "pbs":
            return None
        _sid, volname, volid, _store, vtype, owner, _fmt = self._volume_target(v)
        self._check_access(v["_user"], sid, vtype, owner, volid)
        vol = self.storages[sid]["volumes"].get(volname)
        if vol is None:
            raise PveError(500, f"volume_size_info on '{volid}' failed - no such snapshot")
        return sid, volname, volid, vol

    async def _content_info(self, v: dict[str, Any], user: str) -> Any:
        found = self._pbs_volume({**v, "_user": user})
        if found is None:
            return await super()._content_info(v, user)
        sid, volname, _volid, vol = found
        store = self.storages[sid]
        data: dict[str, Any] = {
            "path": f"{store.get('server')}:{store.get('datastore')}/{volname.split('/', 1)[1]}",
            "size": int(vol.get("size") or 0),
            "used": int(vol.get("size") or 0),
            "format": vol.get("format"),
            "protected": 1 if vol.get("protected") else 0,
        }
        if vol.get("notes") is not None:
            data["notes"] = vol["notes"]
        return data

    async def _content_put(self, v: dict[str, Any], user: str) -> Any:
        found = self._pbs_volume({**v, "_user": user})
        if found is None:
            return await super()._content_put(v, user)
        _sid, _volname, _volid, vol = found
        if "notes" in v:
            if v["notes"] == "":
                vol.pop("notes", None)
            else:
                vol["notes"] = v["notes"]
        if "protected" in v:
            vol["protected"] = bool(int(v["protected"]))
        return None

    @staticmethod
    def _check_vzdump_params(v: dict[str, Any], check_missing: bool) -> None:
        """PVE::VZDump::verify_vzdump_parameters."""
        if (v.get("all") or v.get("stop")) and v.get("vmid"):
            raise param_error(all="option conflicts with option 'vmid'")
        if v.get("exclude") and v.get("vmid"):
            raise param_error(exclude="option conflicts with option 'vmid'")
        if v.get("pool") and v.get("vmid"):
            raise param_error(pool="option conflicts with option 'vmid'")
        if (
            v.get("prune-backups") is not None
            and v.get("remove") is not None
            and not v.get("remove")
        ):
            raise param_error(**{"prune-backups": "option conflicts with option 'remove'"})
        if (
            check_missing
            and not (v.get("all") or v.get("stop") or v.get("pool") or v.get("exclude"))
            and not v.get("vmid")
        ):
            raise param_error(vmid="property is missing")

    def _selected_guests(self, v: dict[str, Any], node: str) -> list[int]:
        """The vmids a vzdump job covers on this node (PVE skips guests of other nodes)."""
        if v.get("vmid"):
            return [int(x) for x in split_list(v["vmid"])]
        if v.get("pool"):
            ids = set(self.pools.get(v["pool"], set()))
        else:
            ids = {g.vmid for g in [*self.vms, *self.cts]}
        excluded = {int(x) for x in split_list(v.get("exclude"))}
        return sorted(
            i
            for i in ids
            if i not in excluded and (g := self.guest(i)) is not None and g.node == node
        )

    async def _vzdump(self, v: dict[str, Any], user: str) -> str:
        node = v["node"]
        self._check_vzdump_params(v, check_missing=True)
        storage = v.get("storage") or "local"
        vmids = self._selected_guests(v, node)
        if v.get("storage"):
            self.require(user, f"/storage/{storage}", "Datastore.AllocateSpace")
        if v.get("prune-backups") is not None and user != "root@pam":
            # PVE/API2/VZDump.pm assert_param_permission_vzdump.
            self.require(user, f"/storage/{storage}", "Datastore.Allocate")
        for vmid in vmids:
            self.require(user, f"/vms/{vmid}", "VM.Backup")
        compress = str(v.get("compress", "0"))
        mode = v.get("mode", "snapshot")
        args = (
            [v["vmid"].replace(",", " ")] if v.get("vmid") else ["--all 1"] if v.get("all") else []
        )
        args += [
            f"--{k} {v[k]}" for k in ("pool", "exclude", "storage", "mode", "compress") if k in v
        ]
        # A fresh str object: body() finds its task record by this first log line's identity.
        header = "".join(
            ["INFO: starting new backup job: vzdump ", " ".join([*args, f"--node {node}"])]
        )

        async def body() -> str:
            log = self._task_log_of(header)
            store = self.storages.get(storage)
            if store is None:
                raise TaskError(
                    f"could not get storage information for '{storage}': "
                    f"storage '{storage}' does not exist"
                )
            if "backup" not in split_list(store.get("content")):
                raise TaskError(
                    f"could not get storage information for '{storage}': "
                    f"can't use storage '{storage}' for backups - wrong content type"
                )
            refused = self._mount_refused(storage)
            if refused:
                raise TaskError(refused)
            errors = 0
            for vmid in vmids:
                failure = await self._backup_one(log, vmid, storage, compress, mode, v, node)
                if failure:
                    errors += 1
                    log.append(f"ERROR: Backup of VM {vmid} failed - {failure}")
            if errors:
                log.append("INFO: Backup job finished with errors")
                raise TaskError("job errors")
            return "INFO: Backup job finished successfully"

        taskid = v["vmid"] if v.get("vmid") and len(vmids) == 1 else ""
        upid: str = await self.task(node, "vzdump", taskid, user, body, log=[header])
        return upid

    async def _vzdump_defaults(self, v: dict[str, Any], user: str) -> dict[str, Any]:
        """vzdump's defaults for a storage: its own prune-backups (none: keep everything)."""
        storage = v.get("storage") or "local"
        if not (
            self.allowed(user, f"/storage/{storage}", "Datastore.Audit")
            or self.allowed(user, f"/storage/{storage}", "Datastore.AllocateSpace")
        ):
            raise PveError(
                403,
                f"Permission check failed (/storage/{storage}, "
                "Datastore.Audit|Datastore.AllocateSpace)",
            )
        answer: dict[str, Any] = {"storage": storage}
        prune = self.storages.get(storage, {}).get("prune-backups")
        if prune:
            answer["prune-backups"] = prune
        return answer

    def _task_log_of(self, header: str) -> list[str]:
        """The log list of the task whose first line is this very str object.

        fakepve's task() copies the initial log into its record and gives the
        body no handle on it; the body appends to the record's list to log.
        """
        for record in reversed(self.tasklog):
            if record["log"] and record["log"][0] is header:
                log: list[str] = record["log"]
                return log
        raise LookupError("task record not found")

    async def _backup_one(
        self,
        log: list[str],
        vmid: int,
        storage: str,
        compress: str,
        mode: str,
        v: dict[str, Any],
        node: str,
    ) -> str | None:
        """Back up one guest into the storage; returns the error message, or None when it worked."""
        guest = self.guest(vmid)
        if guest is None:
            return f"unable to find VM {vmid}"
        kind = "lxc" if isinstance(guest, FakeCt) else "qemu"
        start = self.now()
        local = dt.datetime.fromtimestamp(start, self.node_zone)
        log.append(f"INFO: Starting Backup of VM {vmid} ({kind})")
        log.append(f"INFO: Backup started at {local:%Y-%m-%d %H:%M:%S}")
        if guest.lock:
            return f"{'CT' if kind == 'lxc' else 'VM'} is locked ({guest.lock})"
        log.append(f"INFO: status = {guest.status}")
        log.append(f"INFO: {'CT' if kind == 'lxc' else 'VM'} Name: {guest.name}")
        log.append(f"INFO: backup mode: {mode}")
        if isinstance(guest, FakeVm) and guest.status != "running":
            # PVE::VZDump::QemuServer starts a stopped VM paused for the backup
            # (vm_start with its hostpci devices and all its memory).
            refused = self._start_refused(guest)
            if refused:
                return f"start failed: {refused}"
        failure = self._backup_failures.get(vmid)
        if failure:
            if failure[1] is not None:
                failure[1] -= 1
                if failure[1] <= 0:
                    del self._backup_failures[vmid]
            return str(failure[0])
        _set_lock(guest, "backup")
        try:
            if kind == "qemu":
                await self._copy_disks(log, guest)
            else:
                await self.pause(self.backup_secs)
        finally:
            _set_lock(guest, None)
        notes = _render_notes(v.get("notes-template"), guest, node, self.cluster_name)
        size = max(self._guest_disk_bytes(guest) // 16, 64 * 1024**2)
        try:
            volid = self._write_archive(
                storage, vmid, kind, int(start), size, compress, notes, bool(v.get("protected"))
            )
        except TaskError as e:
            return str(e)
        # The archive carries the guest's config, as a real one does (qemu-server.conf).
        self.storages[storage]["volumes"][volid.split(":", 1)[1]]["config"] = dict(guest.config)
        if self.storages[storage].get("type") == "pbs":
            # PVE::VZDump logs the snapshot PBS made, without the storage or `backup/`.
            snapshot = volid.split(":", 1)[1].split("/", 1)[1]
            log.append(f"INFO: creating Proxmox Backup Server archive '{snapshot}'")
        else:
            path = self._volume_path(storage, volid.split(":", 1)[1], "backup")
            log.append(f"INFO: creating vzdump archive '{path}'")
        log.append(f"INFO: archive file size: {size / 1024**2:.0f}MB")
        if notes:
            log.append("INFO: adding notes to backup")
        if v.get("protected"):
            log.append("INFO: marking backup as protected")
        took = time.strftime("%H:%M:%S", time.gmtime(self.backup_secs))
        log.append(f"INFO: Finished Backup of VM {vmid} ({took})")
        return None

    async def _copy_disks(self, log: list[str], guest: Guest) -> None:
        """A VM's backup job, logging its progress as vzdump does (PVE::VZDump::QemuServer)."""
        total = max(self._guest_disk_bytes(guest), GIB)
        steps = 5
        for step in range(1, steps + 1):
            await self.pause(self.backup_secs / steps)
            done = total * step // steps
            secs = max(1, round(self.backup_secs * step / steps))
            rate = done / secs / 1024**2
            log.append(
                f"INFO: {100 * step // steps:3d}% ({done / GIB:.1f} GiB of {total / GIB:.1f} GiB)"
                f" in {secs}s, read: {rate:.1f} MiB/s, write: {rate * 0.9:.1f} MiB/s"
            )

    def _guest_disk_bytes(self, guest: Guest) -> int:
        total = 0
        for name in self.storages:
            for vol in self._volumes(name).values():
                if vol.get("vmid") == guest.vmid and vol.get("content") in ("images", "rootdir"):
                    total += int(vol.get("size") or 0)
        return total

    # Backup jobs: /etc/pve/jobs.cfg, section type vzdump.

    async def _job_list(self, v: dict[str, Any], user: str) -> list[dict[str, Any]]:
        return [self._job_view(job_id) for job_id in sorted(self.backup_jobs)]

    def _job_view(self, job_id: str) -> dict[str, Any]:
        return {"id": job_id, "type": "vzdump", **self.backup_jobs[job_id]}

    def _job(self, job_id: str) -> dict[str, Any]:
        job = self.backup_jobs.get(job_id)
        if job is None:
            raise PveError(500, f"Job '{job_id}' does not exist")
        return job

    async def _job_read(self, v: dict[str, Any], user: str) -> dict[str, Any]:
        self._job(v["id"])
        return self._job_view(v["id"])

    async def _job_create(self, v: dict[str, Any], user: str) -> None:
        opts = {k: val for k, val in v.items() if k != "id"}
        job_id = v.get("id") or f"backup-{uuid.uuid4().hex[:8]}-{uuid.uuid4().hex[:4]}"
        if job_id in self.backup_jobs:
            raise PveError(500, f"Job ID '{job_id}' already exists")
        self._check_vzdump_params(opts, check_missing=True)
        if "schedule" not in opts:
            # Legacy starttime/dow become a calendar event, as PVE converts them.
            dow = opts.pop("dow", None)
            start = opts.pop("starttime", "00:00")
            opts["schedule"] = f"{dow} {start}" if dow else start
        opts.setdefault("enabled", 1)
        self.backup_jobs[job_id] = opts

    async def _job_update(self, v: dict[str, Any], user: str) -> None:
        job = self._job(v["id"])
        for key in split_list(v.get("delete")):
            job.pop(key, None)
        job.update((k, val) for k, val in v.items() if k not in ("id", "delete"))
        self._check_vzdump_params(job, check_missing=True)

    async def _job_delete(self, v: dict[str, Any], user: str) -> None:
        self._job(v["id"])
        del self.backup_jobs[v["id"]]

    # ------------------------------------------------------------------ apt

    def _routes_lab_apt(self) -> list[Route]:
        return [
            ("POST", "/nodes/{node}/apt/update", self._apt_update),
            ("GET", "/nodes/{node}/apt/update", self._apt_list),
            ("GET", "/nodes/{node}/apt/versions", self._apt_versions),
        ]

    def set_upgrades(
        self,
        packages: Iterable[dict[str, Any] | tuple[str, str]],
        *,
        cached: bool = False,
        node: str | None = None,
    ) -> None:
        """What the repositories offer ``node`` (default: every node): dicts with Package
        and Version, or (package, version).

        As on PVE, ``GET /nodes/{node}/apt/update`` lists only what the last
        ``POST .../apt/update`` found; ``cached=True`` fills that list at once
        (as if pve-daily-update had run).
        """
        for name in [node] if node is not None else list(self.nodes):
            self._apt_available[name] = [self._package(p) for p in packages]
            if cached:
                self._apt_cache[name] = [dict(p) for p in self._apt_available[name]]

    def apply_upgrades(self, node: str | None = None) -> list[str]:
        """Install the upgrades offered to ``node`` (default: every node), as
        `apt-get dist-upgrade` on the host does; returns their names."""
        done = []
        for name in [node] if node is not None else list(self.nodes):
            for pkg in self._apt_available.pop(name, []):
                self.installed_packages[pkg["Package"]] = pkg["Version"]
                done.append(pkg["Package"])
            self._apt_cache.pop(name, None)
        return done

    def _package(self, spec: dict[str, Any] | tuple[str, str]) -> dict[str, Any]:
        data = dict(spec) if isinstance(spec, dict) else {"Package": spec[0], "Version": spec[1]}
        name = data["Package"]
        data.setdefault("Title", f"{name} package")
        data.setdefault("Description", f"The {name} package of Proxmox VE.")
        data.setdefault("Origin", "Proxmox")
        data.setdefault("Arch", "amd64")
        data.setdefault("Priority", "optional")
        data.setdefault("Section", "admin")
        if name in self.installed_packages:
            data.setdefault("OldVersion", self.installed_packages[name])
        return data

    async def _apt_update(self, v: dict[str, Any], user: str) -> str:
        node = v["node"]

        async def body() -> str:
            await self.pause(5)
            if self.before_apt_read is not None:
                self.before_apt_read(node)
            self._apt_cache[node] = [dict(p) for p in self._apt_available.get(node, [])]
            self.apt_refreshes += 1
            return "Reading package lists..."

        log = [
            "starting apt-get update",
            "Hit:1 http://deb.debian.org/debian trixie InRelease",
            "Hit:2 http://deb.debian.org/debian trixie-updates InRelease",
            "Hit:3 http://security.debian.org/debian-security trixie-security InRelease",
            "Hit:4 http://download.proxmox.com/debian/pve trixie InRelease",
        ]
        upid: str = await self.task(v["node"], "aptupdate", "", user, body, log=log)
        return upid

    async def _apt_list(self, v: dict[str, Any], user: str) -> list[dict[str, Any]]:
        if self.before_apt_read is not None:
            self.before_apt_read(v["node"])
        return [dict(p) for p in self._apt_cache.get(v["node"], [])]

    async def _apt_versions(self, v: dict[str, Any], user: str) -> list[dict[str, Any]]:
        out = []
        for name, version in self.installed_packages.items():
            item = self._package({"Package": name, "Version": version})
            item.pop("OldVersion", None)
            item["CurrentState"] = "Installed"
            if name == "proxmox-ve":
                item["RunningKernel"] = self.running_kernel
            if name == "pve-manager":
                item["ManagerVersion"] = version
            out.append(item)
        return out

    # -------------------------------------------------------------- network

    def _routes_lab_network(self) -> list[Route]:
        net = "/nodes/{node}/network"
        return [
            ("GET", net, self._net_list),
            ("POST", net, self._net_create),
            ("PUT", net, self._net_reload),
            ("DELETE", net, self._net_revert),
            ("GET", net + "/{iface}", self._net_read),
            ("PUT", net + "/{iface}", self._net_update),
            ("DELETE", net + "/{iface}", self._net_delete),
        ]

    @property
    def network_changes(self) -> str | None:
        """The diff PVE shows between /etc/network/interfaces and interfaces.new, or None."""
        if self.net_pending is None:
            return None
        diff = difflib.unified_diff(
            _interfaces_file(self.net_applied).splitlines(keepends=True),
            _interfaces_file(self.net_pending).splitlines(keepends=True),
            "/etc/network/interfaces",
            "/etc/network/interfaces.new",
        )
        return "".join(diff) or None

    def _net_config(self) -> dict[str, dict[str, Any]]:
        """What PVE reads: interfaces.new when there is one, else the applied file."""
        return self.net_pending if self.net_pending is not None else self.net_applied

    def _net_staged(self) -> dict[str, dict[str, Any]]:
        """interfaces.new, created from the applied file by the first change."""
        if self.net_pending is None:
            self.net_pending = json.loads(json.dumps(self.net_applied))
        return self.net_pending

    def _net_view(self, iface: str, opts: dict[str, Any], priority: int) -> dict[str, Any]:
        item: dict[str, Any] = {
            "iface": iface,
            "families": ["inet"],
            "method6": "manual",
            "priority": priority,
        }
        item.update((k, val) for k, val in opts.items() if not k.startswith("_"))
        cidr = opts.get("cidr")
        if cidr:
            address, _, prefix = str(cidr).partition("/")
            item.update(address=address, netmask=prefix)
            item.setdefault("method", "static")
        item.setdefault("method", "manual")
        if opts.get("type") == "bridge":
            item.setdefault("bridge_stp", "off")
            item.setdefault("bridge_fd", "0")
        if opts.get("comments") is not None:
            # PVE reads comment lines with their newline.
            item["comments"] = str(opts["comments"]).rstrip("\n") + "\n"
        applied = self.net_applied.get(iface)
        if applied is None or applied.get("type") != opts.get("type"):
            item.pop("active", None)
        return item

    async def _net_list(self, v: dict[str, Any], user: str) -> list[dict[str, Any]]:
        changes = self.network_changes
        attribs = _RESULT_ATTRIBS.get()
        if changes and attribs is not None:
            attribs["changes"] = changes
        wanted = v.get("type")
        out = []
        for n, (iface, opts) in enumerate(self._net_config().items(), 1):
            kind = opts.get("type")
            if wanted in ("any_bridge", "any_local_bridge"):
                if kind not in ("bridge", "OVSBridge"):
                    continue
            elif wanted and wanted != "include_sdn" and kind != wanted:
                continue
            out.append(self._net_view(iface, opts, n))
        return out

    def _net_existing(self, iface: str) -> dict[str, Any]:
        opts = self._net_config().get(iface)
        if opts is None:
            raise param_error(iface="interface does not exist")
        return opts

    async def _net_read(self, v: dict[str, Any], user: str) -> dict[str, Any]:
        opts = self._net_existing(v["iface"])
        view = self._net_view(v["iface"], opts, list(self._net_config()).index(v["iface"]) + 1)
        view.pop("iface")
        return view

    def _check_gateway(
        self, config: dict[str, dict[str, Any]], iface: str, opts: dict[str, Any]
    ) -> None:
        if not opts.get("gateway"):
            return
        for other, oopts in config.items():
            if other != iface and oopts.get("gateway"):
                raise param_error(
                    gateway=f"Default ipv4 gateway already exists on interface '{other}'"
                )

    @staticmethod
    def _net_options(v: dict[str, Any]) -> dict[str, Any]:
        opts = {k: val for k, val in v.items() if k not in ("node", "iface", "delete")}
        if opts.get("address") and opts.get("netmask") and not opts.get("cidr"):
            net = ipaddress.IPv4Interface(f"{opts.pop('address')}/{opts.pop('netmask')}")
            opts["cidr"] = str(net)
        return opts

    async def _net_create(self, v: dict[str, Any], user: str) -> None:
        iface = v["iface"]
        if iface in self._net_config():
            raise param_error(iface="interface already exists")
        opts = self._net_options(v)
        self._check_gateway(self._net_config(), iface, opts)
        self._net_staged()[iface] = opts

    async def _net_update(self, v: dict[str, Any], user: str) -> None:
        iface = v["iface"]
        self._net_existing(iface)
        staged = self._net_staged()
        opts = staged[iface]
        for key in split_list(v.get("delete")):
            opts.pop(key, None)
            if key in ("address", "netmask"):
                opts.pop("cidr", None)
        new = self._net_options(v)
        self._check_gateway(staged, iface, {**opts, **new})
        opts.update(new)

    async def _net_delete(self, v: dict[str, Any], user: str) -> None:
        self._net_existing(v["iface"])
        del self._net_staged()[v["iface"]]

    async def _net_revert(self, v: dict[str, Any], user: str) -> None:
        self.net_pending = None

    async def _net_reload(self, v: dict[str, Any], user: str) -> str:
        async def body() -> None:
            await self.pause(2)
            if self.net_pending is not None:
                applied = self.net_pending
                for opts in applied.values():
                    # ifreload brings every configured interface up; the bridges now exist.
                    opts["active"] = 1
                    if opts.get("type") == "bridge":
                        opts["exists"] = 1
                self.net_applied = applied
                self.net_pending = None
            if self.after_network_reload is not None:
                # A test's fault, e.g. the management bridge cut off by the reload.
                self.after_network_reload()

        upid: str = await self.task(v["node"], "srvreload", "networking", user, body)
        return upid

    # ---------------------------------------------------- Windows guest agent
    #
    # Two responders (see _agent_call below) that put something behind a VM's
    # agent: a scripted Windows (tests/lab/windows_agent.py) answering the
    # `update windows` scripts, or a real qemu-ga on a unix socket, reached
    # with PVE's own wrapping. fakepve's checks (running, agent configured,
    # hangs) and its record in ``vm.agent_requests`` stay as they are.

    def _windows_agent_setup(self) -> None:
        self.windows_agents: dict[int, WindowsAgent] = {}
        #: Give every Windows VM (ostype win*) the demo's scripted agent when it is first asked.
        self.windows_agent_default = False

    def script_windows_agent(self, vmid: int, agent: WindowsAgent | None = None) -> WindowsAgent:
        """Answer VM ``vmid``'s agent with a scripted Windows (the demo's by default)."""
        scripted = agent or WindowsAgent.demo()
        self.windows_agents[vmid] = scripted
        self.agent_responders.setdefault(vmid, []).append(scripted.respond)
        vm = self.guest(vmid)
        if isinstance(vm, FakeVm) and vm.agent is None:
            vm.agent = {"os": _windows_osinfo()}
        return scripted

    def forward_agent(self, vmid: int, socket: str | Path) -> None:
        """Answer VM ``vmid``'s agent API with the real qemu-ga listening on ``socket``."""
        path = Path(socket)

        def forward(command: str, values: dict[str, Any], argv: list[str] | None) -> Any:
            return _forwarded(path, command, values)

        self.agent_responders.setdefault(vmid, []).insert(0, forward)
        vm = self.guest(vmid)
        if isinstance(vm, FakeVm) and vm.agent is None:
            vm.agent = {}

    def _default_windows_agent(self, values: dict[str, Any]) -> None:
        """With ``windows_agent_default``: script a Windows VM's agent when first asked
        (updates waiting, and a fresh install for provisioning)."""
        if not self.windows_agent_default:
            return
        vm = self.find(values["node"], values["vmid"])
        windows = str(vm.config.get("ostype", "")).startswith("win")
        if windows and int(vm.vmid) not in self.windows_agents:
            scripted = self.script_windows_agent(int(vm.vmid))
            # Behind the same agent, a fresh Windows for `windows provision` (no Steam yet),
            # with the same folders.
            from ..windows_guest import WindowsGuest

            self.agent_responders[int(vm.vmid)].append(WindowsGuest(folders=scripted.folders))

    # ------------------------------------------------------------ templates
    # PVE lists a directory storage by reading the directory: an archive copied
    # into PATH/dump (with scp, as `nixmox template upload` does with a VM image,
    # since PVE's upload API takes no backups) is backup content from then on,
    # and deleting that content removes the file. A storage whose path does not
    # exist on this machine (the example's /rpool/backups) is left as it was.

    _DUMP_NAME = re.compile(
        r"vzdump-(qemu|lxc)-(\d+)-\d{4}_\d\d_\d\d-\d\d_\d\d_\d\d\.(vma|tar)(\.(zst|gz|lzo))?"
    )

    def _dump_files(self, name: str) -> dict[str, Path]:
        """volname -> file, for the archives in a dir storage's dump directory."""
        store = self.storages.get(name) or {}
        path = store.get("path")
        if store.get("type") != "dir" or not path:
            return {}
        if "backup" not in split_list(store.get("content")):
            return {}
        dump = Path(path) / "dump"
        if not dump.is_dir():
            return {}
        return {
            f"backup/{f.name}": f
            for f in sorted(dump.iterdir())
            if f.is_file() and self._DUMP_NAME.fullmatch(f.name)
        }

    def _name_ctime(self, filename: str) -> int:
        stamp = re.search(r"(\d{4})_(\d\d)_(\d\d)-(\d\d)_(\d\d)_(\d\d)", filename)
        assert stamp is not None
        fields = [int(f) for f in stamp.groups()]
        return int(dt.datetime(*fields, tzinfo=self.node_zone).timestamp())

    def _volumes(self, name: str) -> dict[str, Any]:
        volumes = (self.storages.get(name) or {}).get("volumes")
        for volname, file in self._dump_files(name).items():
            if volumes is not None and volname not in volumes:
                found = self._DUMP_NAME.fullmatch(file.name)
                assert found is not None
                self._add_volume(
                    name,
                    volname,
                    {
                        "content": "backup",
                        "format": volname.split(".", 1)[1],
                        "size": file.stat().st_size,
                        # PVE lists the name's time, read in the node's zone, not the mtime.
                        "ctime": self._name_ctime(file.name),
                        "vmid": int(found.group(2)),
                        "subtype": found.group(1),
                        "config": dict(self.copied_vm_archive_config),
                    },
                )
        listed: dict[str, Any] = super()._volumes(name)
        return listed

    async def _content_delete(self, v: dict[str, Any], user: str) -> Any:
        files = self._dump_files(str(v["storage"]))
        answer = await super()._content_delete(v, user)
        volname = str(v["volume"]).split(":", 1)[-1]
        if volname in files and volname not in self.storages[v["storage"]]["volumes"]:
            files[volname].unlink()
        return answer

    # ---------------------------------------------------------- host update
    #
    # What `update host` meets: a cluster whose quorum can follow its nodes
    # (corosync's majority of votes, one per node), a node that reboots
    # (offline for a while, its guests stopped, the onboot ones started
    # again), VM migration that moves the VM (online for a running one, never
    # with local devices), the cluster's task list, and tasks that stay
    # running until a test ends them (a vzdump or a migration in progress).

    def _host_update_state(self) -> None:
        #: Wall-clock seconds a rebooting node stays offline. Not scaled by
        #: time_scale: nixmox has to see the node go and come back.
        self.reboot_wall_secs = 0.3
        #: PVE seconds a VM migration takes (scaled by time_scale like every task).
        self.migrate_secs = 20.0
        #: Wall-clock seconds the HA manager takes to act on a queued request (not
        #: scaled: the hamigrate/hastop/hastart task has long ended by then).
        self.ha_wall_secs = 0.3
        # When each node booted (the lab's clock); /nodes/{node}/status derives `uptime`.
        self.booted_at: dict[str, float] = {}
        #: What happened, in order: ("migrate", vmid, source, target), ("shutdown", vmid),
        #: ("start", vmid), ("reboot", node), ("stopped", vmid) by a reboot, ("online", node),
        #: ("onboot", vmid) started by the node's boot.
        self.host_events: list[tuple[Any, ...]] = []
        #: Called with the node's name when a rebooted node is back online.
        self.after_reboot: Callable[[str], None] | None = None
        #: Quorum as corosync counts it: a majority of the nodes (one vote each) online.
        #: Off by default, as if a QDevice kept quorum whichever node is offline.
        self.quorum_follows_nodes = False
        self._quorum_ok = True

    @property  # type: ignore[override]
    def quorate(self) -> bool:
        """Quorum: not lost on purpose (``lose_quorum``) and, when it follows the nodes,
        a majority of them online."""
        if not self._quorum_ok:
            return False
        if not getattr(self, "quorum_follows_nodes", False):
            return True
        online = sum(1 for s in self.nodes.values() if s.get("online", True))
        return len(self.nodes) <= 1 or 2 * online > len(self.nodes)

    @quorate.setter
    def quorate(self, value: bool) -> None:
        self._quorum_ok = value

    def node_uptime(self, node: str) -> int:
        """Seconds since ``node`` booted (an hour for a node that never rebooted)."""
        booted = self.booted_at.get(node)
        return 3600 if booted is None else max(0, int(self.now() - booted))

    def hold_task(self, node: str, ttype: str, vmid: int | str = "", user: str = "root@pam") -> str:
        """A task that runs until ``end_task`` (a vzdump or a migration in progress); its UPID."""
        upid, pid, start = self._upid(node, ttype, vmid, user)
        record = {
            "upid": upid,
            "node": node,
            "pid": pid,
            "pstart": pid * 7,
            "starttime": start,
            "type": ttype,
            "id": str(vmid),
            "user": user,
            "status": "running",
            "log": [],
        }
        self.tasks[upid] = record
        self.tasklog.append(record)
        return upid

    def end_task(self, upid: str, exitstatus: str = "OK") -> None:
        """Finish a task started by ``hold_task``."""
        record = self.tasks[upid]
        record.update(status="stopped", exitstatus=exitstatus, endtime=int(time.time()))
        record["log"].append("TASK OK" if exitstatus == "OK" else f"TASK ERROR: {exitstatus}")

    def _routes_lab_host_update(self) -> list[Route]:
        qm = "/nodes/{node}/qemu/{vmid}/migrate"
        return [
            ("POST", "/nodes/{node}/status", self._node_command),
            ("GET", "/cluster/tasks", self._cluster_tasks),
            ("GET", qm, self._qm_migrate_check),
            ("POST", qm, self._qm_migrate),
        ]

    async def _cluster_tasks(self, v: dict[str, Any], user: str) -> list[dict[str, Any]]:
        """PVE's cluster task list: every node's recent tasks, running ones without status."""
        rows = sorted(self.tasklog, key=lambda t: -int(t["starttime"]))
        return [self._task_view(t, True) for t in rows]

    async def _node_command(self, v: dict[str, Any], user: str) -> None:
        """PVE runs `shutdown -r now` in the background and answers null at once."""
        node, command = v["node"], v["command"]
        self.host_events.append((command, node))
        for record in self.tasklog:
            # The shutdown kills the node's workers: a running backup ends half-written.
            if record["node"] == node and record.get("status") == "running":
                self.end_task(record["upid"], "unexpected status")
                self.host_events.append(("killed", record["type"], record["id"]))
        for guest in [*self.vms, *self.cts]:
            if guest.node == node and guest.status == "running":
                guest.status = "stopped"
                if isinstance(guest, FakeVm):
                    guest.qmpstatus = "stopped"
                else:
                    guest.pid = None
                self.host_events.append(("stopped", guest.vmid))
        self.set_node_offline(node)
        if command == "reboot":
            asyncio.get_running_loop().call_later(self.reboot_wall_secs, self._node_back, node)

    def _node_back(self, node: str) -> None:
        self.booted_at[node] = self.now()
        self.set_node_offline(node, False)
        self.host_events.append(("online", node))
        for guest in [*self.vms, *self.cts]:
            if guest.node != node or guest.template or str(guest.config.get("onboot")) != "1":
                continue
            guest.status = "running"
            guest.started_at = time.time()
            if isinstance(guest, FakeVm):
                guest.qmpstatus = "running"
            else:
                guest.pid = next(self._ct_pids)
            self.host_events.append(("onboot", guest.vmid))
        if self.after_reboot is not None:
            self.after_reboot(node)

    @staticmethod
    def _local_resources(vm: FakeVm) -> list[str]:
        """PVE's check_local_resources: passed-through PCI and host USB devices pin a VM."""
        pci = [k for k in vm.config if re.fullmatch(r"hostpci\d+", k)]
        usb = [
            k
            for k, value in vm.config.items()
            if re.fullmatch(r"usb\d+", k) and not str(value).startswith("spice")
        ]
        return sorted(pci + usb)

    def _local_disks(self, vm: FakeVm) -> list[dict[str, Any]]:
        disks = []
        for key in vm.devices():
            if not key.startswith(("scsi", "virtio", "sata", "ide", "efidisk", "tpmstate")):
                continue
            volume = str(vm.config[key]).split(",")[0]
            storage = volume.split(":")[0]
            store = self.storages.get(storage)
            if store is None or store.get("shared"):
                continue
            cdrom = "media=cdrom" in str(vm.config[key])
            disks.append({"volid": volume, "cdrom": cdrom, "is_unused": False, "size": 0})
        return disks

    async def _qm_migrate_check(self, v: dict[str, Any], user: str) -> dict[str, Any]:
        vm = self.find(v["node"], v["vmid"])
        allowed = [
            n for n in sorted(self.nodes) if n != v["node"] and self.nodes[n].get("online", True)
        ]
        return {
            "running": vm.status == "running",
            "allowed_nodes": allowed,
            "not_allowed_nodes": {},
            "local_disks": self._local_disks(vm),
            "local_resources": self._local_resources(vm),
            "mapped-resources": [],
            "mapped-resource-info": {},
            "has-dbus-vmstate": False,
        }

    async def _qm_migrate(self, v: dict[str, Any], user: str) -> str:
        """PVE::API2::Qemu migrate_vm and PVE::QemuMigrate's checks, then the VM moves."""
        source, target = v["node"], v["target"]
        if target == source:
            raise param_error(target="target is local node.")
        self.need_quorum()
        if target not in self.nodes:
            raise PveError(500, f"no such cluster node '{target}'")
        if not self.nodes[target].get("online", True):
            raise PveError(500, f"target node '{target}' is not online")
        vm = self.find(source, v["vmid"])
        running = vm.status == "running"
        if running and not v.get("online"):
            raise PveError(500, "can't migrate running VM without --online")
        if vm.ha_managed:
            return await self._ha_queue(vm, user, "migrate", target)

        async def body() -> str:
            local = self._local_resources(vm)
            if local and not v.get("force"):
                raise TaskError(f"can't migrate VM which uses local devices: {', '.join(local)}")
            disks = [d["volid"] for d in self._local_disks(vm) if not d["cdrom"]]
            if running and disks and not v.get("with-local-disks"):
                raise TaskError(
                    "can't live migrate attached local disks without with-local-disks option"
                )
            if running and disks and vm.snapshots:
                # PVE::QemuMigrate::scan_local_volumes: a local volume a snapshot refers
                # to cannot be mirrored (the lab has no storage replication).
                raise TaskError(
                    "online storage migration not possible if non-replicated snapshot exists"
                )
            vm.lock = "migrate"
            try:
                await self.pause(self.migrate_secs)
                vm.node = target
            finally:
                vm.lock = None
            self.host_events.append(("migrate", vm.vmid, source, target))
            return "migration finished successfully"

        upid: str = await self.task(
            source,
            "qmigrate",
            vm.vmid,
            user,
            body,
            vm=vm,
            log=[f"starting migration of VM {vm.vmid} to node '{target}'"],
        )
        return upid

    # PVE::API2::Qemu (migrate_vm, vm_start, vm_shutdown, vm_stop) and
    # PVE::API2::LXC::Status / PVE::API2::LXC migrate_vm: for an HA resource
    # the worker only runs `ha-manager migrate|set` and ends; the CRM moves,
    # starts or stops the guest later. fakepve applies the change inside the
    # task when time_scale is 0; here it lands ha_wall_secs after the task
    # ended, and not at all when the guest's node went offline meanwhile.

    async def _ha_queue(self, guest: Guest, user: str, verb: str, target: str = "") -> str:
        node = guest.node
        kind = "CT" if isinstance(guest, FakeCt) else "VM"

        def apply() -> None:
            if not self.nodes.get(node, {}).get("online", True) or guest.node != node:
                guest.ha_state = "error"  # the CRM found the service's node fenced/gone
                return
            if verb == "migrate":
                if not self.nodes.get(target, {}).get("online", True):
                    return
                guest.node = target
                self.host_events.append(("migrate", guest.vmid, node, target))
                return
            running = verb == "start"
            guest.status = "running" if running else "stopped"
            guest.started_at = time.time() if running else None
            if isinstance(guest, FakeVm):
                guest.qmpstatus = guest.status
                if running:
                    guest.apply_pending()
            else:
                guest.pid = next(self._ct_pids) if running else None
            guest.ha_state = "started" if running else "stopped"

        async def body() -> None:
            asyncio.get_running_loop().call_later(self.ha_wall_secs, apply)

        what = f" to node {target}" if target else ""
        upid: str = await self.task(
            node,
            "ha" + verb,
            guest.vmid,
            user,
            body,
            lock=False,
            log=[f"Requesting HA {verb} for {kind} {guest.vmid}{what}"],
        )
        return upid

    async def _ha_request(self, vm: FakeVm, user: str, state: str) -> str:
        return await self._ha_queue(vm, user, "start" if state == "started" else "stop")

    async def _ct_ha(self, ct: FakeCt, user: str, state: str, timeout: int | None = None) -> str:
        return await self._ha_queue(ct, user, "start" if state == "started" else "stop")

    async def _lxc_migrate(self, user: str, v: dict[str, Any]) -> str:
        ct = self.ct(int(v["vmid"]))
        if ct is not None and ct.ha_managed and ct.node == v["node"] and v["target"] in self.nodes:
            return await self._ha_queue(ct, user, "migrate", v["target"])
        upid: str = await super()._lxc_migrate(user, v)
        if ct is not None and ct.node == v["target"]:
            self.host_events.append(("migrate", ct.vmid, v["node"], v["target"]))
        return upid

    async def _do_shutdown(self, vm: FakeVm, user: str, p: dict[str, Any]) -> str:
        self.host_events.append(("shutdown", vm.vmid))
        upid: str = await super()._do_shutdown(vm, user, p)
        return upid

    async def _do_start(self, vm: FakeVm, user: str, p: dict[str, Any]) -> str:
        self._check_mapped_start(vm)
        self.host_events.append(("start", vm.vmid))
        refused = None if vm.ha_managed else self._start_refused(vm)
        if refused is not None:

            async def fail() -> None:
                raise TaskError(refused)

            upid: str = await self.task(vm.node, "qmstart", vm.vmid, user, fail, vm=vm)
            return upid
        upid = await super()._do_start(vm, user, p)
        return upid

    def _pci_ids(self, vm: FakeVm) -> set[str]:
        """The host PCI devices of a VM's hostpci entries, as bus:device (all functions);
        a ``mapping=`` through its entry for the VM's node (PVE reserves those the same way)."""
        found = set()
        for key, value in vm.config.items():
            if re.fullmatch(r"hostpci\d+", key):
                first = str(value).split(",", 1)[0]
                if first.startswith("mapping="):
                    devices = self.mapped_paths(first.removeprefix("mapping="), vm.node) or []
                else:
                    devices = first.split(";")
                for device in devices:
                    if device and "=" not in device:
                        found.add(device.removeprefix("0000:").split(".", 1)[0])
                    elif device.startswith("host="):
                        found.add(device[5:].removeprefix("0000:").split(".", 1)[0])
        return found

    def _start_refused(self, vm: FakeVm) -> str | None:
        """Why PVE::QemuServer::vm_start fails for ``vm`` now, or None.

        PVE::QemuServer::PCI::reserve_pci_usage: a device reserved by another
        running VM ("already in use by VMID"); and a VM with passed-through
        devices pins all its memory, which the node must have free.
        """
        mine = self._pci_ids(vm)
        if not mine:
            return None
        for other in self.vms:
            if other is vm or other.node != vm.node or other.status != "running":
                continue
            shared = sorted(mine & self._pci_ids(other))
            if shared:
                return f"PCI device '0000:{shared[0]}.0' already in use by VMID '{other.vmid}'"
        need = int(str(vm.config.get("memory", 512))) * 1024**2
        if need > self.node_mem_available(vm.node):
            return f"VM {vm.vmid}: unable to allocate {need // 1024**2} MiB for passthrough"
        return None

    def node_mem_available(self, node: str) -> int:
        """Free memory of a node: the inventory's total less an eighth for the host, less
        the memory of its running VMs."""
        total = int(self.hardware.get("memory_gib", 8)) * GIB
        used = total // 8 + sum(
            int(str(g.config.get("memory", 512))) * 1024**2
            for g in self.vms
            if g.node == node and g.status == "running"
        )
        return max(total - used, 0)

    async def _lxc_shutdown(self, user: str, v: dict[str, Any]) -> str:
        self.host_events.append(("shutdown", int(v["vmid"])))
        upid: str = await super()._lxc_shutdown(user, v)
        return upid

    async def _lxc_create(self, user: str, v: dict[str, Any]) -> str:
        if v.get("restore"):
            archive = str(v["ostemplate"])
            sid, _, volname = archive.partition(":")
            record = self.storages.get(sid, {}).get("volumes", {}).get(volname) or {}
            saved = dict(record.get("config") or {})
            self._restore_rules(user, int(v["vmid"]), archive, saved, v.get("storage"))
            old = self.guest(int(v["vmid"]))
            privileged = str(v.get("unprivileged", saved.get("unprivileged", "0"))) in ("0", "")
            was_unprivileged = old is not None and str(old.config.get("unprivileged")) == "1"
            if privileged and (old is None or was_unprivileged):
                # PVE/API2/LXC.pm create_vm: restoring a privileged container, unless over one.
                self._need(user, "/", "Sys.Modify")
            # pct restore brings the archive's own config back (pct.conf inside it),
            # the request's options winning.
            self._restore_ct_config(v)
        try:
            upid: str = await super()._lxc_create(user, v)
        finally:
            self._from_archive.pop(int(v["vmid"]), None)
        return upid

    async def _lxc_start(self, user: str, v: dict[str, Any]) -> str:
        self.host_events.append(("start", int(v["vmid"])))
        upid: str = await super()._lxc_start(user, v)
        return upid

    # ---------------------------------------------------- result attributes

    def _stateful_handler(
        self, template: str, handler: Handler
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        """fakepve's wrapper, plus PVE's result attributes (e.g. `changes`) next to `data`."""
        serve = super()._stateful_handler(template, handler)

        async def with_attribs(request: web.Request) -> web.Response:
            attribs: dict[str, Any] = {}
            token = _RESULT_ATTRIBS.set(attribs)
            try:
                response: web.Response = await serve(request)
            finally:
                _RESULT_ATTRIBS.reset(token)
            if attribs and response.status == 200 and response.text:
                body = json.loads(response.text)
                body.update(attribs)
                return web.json_response(body)
            return response

        return with_attribs

    # ---------------------------------------------- Windows provisioning agent

    async def _agent_call(self, match: Any, values: dict[str, Any]) -> Any:
        """fakepve's agent call, then the VM's responders: the first non-None answer wins.

        fakepve has already checked that the VM runs and the agent answers, and
        recorded the request in ``vm.agent_requests``; its own answer (from
        ``vm.agent``) stands when no responder claims the call. A responder
        that keeps state stands in for a guest whose answers change as
        commands run (an installer makes the next check say "installed").
        Append to ``agent_responders[vmid]`` to add one; keep them generic so
        several features can script the same VM.
        """
        self._default_windows_agent(values)
        answer = await super()._agent_call(match, values)
        vm = self.find(values["node"], values["vmid"])
        command = match.template.rsplit("/", 1)[1]
        argv = vm.agent_execs.get(int(values["pid"])) if command == "exec-status" else None
        for responder in self.agent_responders.get(int(vm.vmid), []):
            mine = responder(command, values, argv)
            if mine is not None:
                return mine
        return answer


# ------------------------------------------------------------------- helpers


def _mac(vmid: int, n: int) -> str:
    """A stable MAC in Proxmox's BC:24:11 prefix, unique per guest and interface."""
    return f"BC:24:11:{n:02X}:{vmid >> 8 & 0xFF:02X}:{vmid & 0xFF:02X}"


def _drive(volume: str, opts: dict[str, str]) -> str:
    """A drive or device value as PVE writes it: the volume, then the options sorted."""
    return ",".join([volume] + [f"{k}={opts[k]}" for k in sorted(opts)])


def _common_options(config: dict[str, Any], guest: dict[str, Any]) -> None:
    if guest.get("description"):
        config["description"] = guest["description"]
    if guest.get("tags"):
        # PVE keeps tags sorted and separated by semicolons.
        config["tags"] = ";".join(sorted(guest["tags"]))


def _set_lock(guest: Guest, lock: str | None) -> None:
    """Set or clear a guest's config lock (a FakeCt keeps it in its config, a FakeVm in both)."""
    if isinstance(guest, FakeCt):
        guest.lock = lock
        return
    guest.lock = lock
    if lock:
        guest.config["lock"] = lock
    else:
        guest.config.pop("lock", None)


def _render_notes(template: str | None, guest: Guest, node: str, cluster: str) -> str | None:
    """vzdump's notes-template: {{guestname}}, {{vmid}}, {{node}}, {{cluster}}; `\\n` breaks."""
    if not template:
        return None
    out = template.replace("\\n", "\n").replace("\\\\", "\\")
    for key, value in (
        ("guestname", guest.name),
        ("vmid", str(guest.vmid)),
        ("node", node),
        ("cluster", cluster),
    ):
        out = out.replace("{{" + key + "}}", value)
    return out


def _interfaces_file(config: dict[str, dict[str, Any]]) -> str:
    """The /etc/network/interfaces PVE writes for a configuration (used for the `changes` diff)."""
    lines = ["auto lo", "iface lo inet loopback", ""]
    for iface, opts in config.items():
        method = "static" if opts.get("cidr") else opts.get("method", "manual")
        if opts.get("autostart") or opts.get("type") == "bridge":
            lines.append(f"auto {iface}")
        lines.append(f"iface {iface} inet {method}")
        if opts.get("cidr"):
            lines.append(f"\taddress {opts['cidr']}")
        if opts.get("gateway"):
            lines.append(f"\tgateway {opts['gateway']}")
        if opts.get("type") == "bridge":
            lines.append(f"\tbridge-ports {opts.get('bridge_ports') or 'none'}")
            lines.append("\tbridge-stp off")
            lines.append("\tbridge-fd 0")
            if opts.get("bridge_vlan_aware"):
                lines.append("\tbridge-vlan-aware yes")
        if opts.get("mtu"):
            lines.append(f"\tmtu {opts['mtu']}")
        if opts.get("comments"):
            lines.extend("#" + c for c in str(opts["comments"]).rstrip("\n").split("\n"))
        lines.append("")
    lines.append("source /etc/network/interfaces.d/*")
    return "\n".join(lines) + "\n"


def _nixos_osinfo() -> dict[str, str]:
    return {
        "name": "NixOS",
        "id": "nixos",
        "version": "25.05 (Warbler)",
        "version-id": "25.05",
        "pretty-name": "NixOS 25.05 (Warbler)",
        "kernel-release": "6.12.30",
        "kernel-version": "#1-NixOS SMP PREEMPT_DYNAMIC",
        "machine": "x86_64",
    }


def _windows_osinfo() -> dict[str, str]:
    return {
        "name": "Microsoft Windows",
        "id": "mswindows",
        "version": "Microsoft Windows 11",
        "version-id": "11",
        "pretty-name": "Windows 11 Pro",
        "kernel-release": "26100",
        "kernel-version": "10.0",
        "machine": "x86_64",
        "variant": "client",
        "variant-id": "client",
    }


# ------------------------------------------------- agent forwarding (qemu-ga)


def _forwarded(socket: Path, command: str, values: dict[str, Any]) -> Any:
    """One agent API call answered by the real qemu-ga, wrapped as PVE wraps it.

    Blocking: the lab serves one test client, and qemu-ga answers at once.
    """
    from tests.peers.qga import QgaClient, QgaError

    try:
        with QgaClient(socket) as qga:
            return _pve_agent(qga, command, values)
    except QgaError as exc:
        raise PveError(500, f"Agent error: {exc.desc}") from None
    except (OSError, TimeoutError) as exc:
        raise PveError(500, f"VM {values['vmid']} qmp command '{command}' failed - {exc}") from None


def _pve_agent(qga: Any, command: str, values: dict[str, Any]) -> Any:
    """PVE::API2::Qemu::Agent: exec takes an argv and base64s input-data, exec-status and
    file-read decode base64, file-write encodes it; everything else is {result: ...}."""
    if command == "exec":
        argv = [str(a) for a in values["command"]]
        args: dict[str, Any] = {"path": argv[0], "arg": argv[1:], "capture-output": True}
        if values.get("input-data") is not None:
            args["input-data"] = base64.b64encode(str(values["input-data"]).encode()).decode()
        return {"pid": qga.call("guest-exec", args)["pid"]}
    if command == "exec-status":
        status = dict(qga.call("guest-exec-status", {"pid": int(values["pid"])}))
        for key in ("out-data", "err-data"):
            if key in status:
                status[key] = base64.b64decode(status[key]).decode(errors="replace")
        return status
    if command == "file-write":
        data = str(values.get("content", "")).encode()
        if str(values.get("encode", 1)) in ("0", "False", "false"):
            data = base64.b64decode(data)
        handle = qga.call("guest-file-open", {"path": values["file"], "mode": "w"})
        try:
            qga.call(
                "guest-file-write", {"handle": handle, "buf-b64": base64.b64encode(data).decode()}
            )
        finally:
            qga.call("guest-file-close", {"handle": handle})
        return None
    if command == "file-read":
        handle = qga.call("guest-file-open", {"path": values["file"], "mode": "r"})
        try:
            got = qga.call("guest-file-read", {"handle": handle, "count": 16 * 1024 * 1024})
        finally:
            qga.call("guest-file-close", {"handle": handle})
        content = base64.b64decode(got.get("buf-b64") or "").decode(errors="replace")
        return {"content": content, "truncated": not got.get("eof", True)}
    return {"result": qga.call(f"guest-{command}")}
