"""The lab's access checks, made as strict as Proxmox's where fakepve is lenient.

A mixin for :class:`tests.lab.server.Lab`, ahead of ``FakePve`` in its bases.
Each rule names where PVE has it:

- An API token is never root (pve-access-control ``PVE/RPCEnvironment.pm``:
  root-only checks compare the user id with exactly ``root@pam``, and a
  token's id is ``user@realm!name``). fakepve treats ``root@pam!x`` as root.
- A privilege-separated token holds what both its own ACL and its user's
  grant (``PVE/AccessControl.pm`` ``permission``); fakepve grants the union.
  ``root@pam`` itself holds everything, so its tokens hold exactly their ACL.
- qemu-server ``PVE/API2/Qemu.pm``: ``$check_vm_modify_config_perm`` (a key in
  no privilege table, such as ``affinity``, is root@pam's),
  ``check_hostpci_perm`` (raw ``host`` and ``romfile`` are root@pam's; a
  ``mapping`` needs ``Mapping.Use`` on ``/mapping/pci/ID``), and
  ``check_bridge_access`` (``SDN.Use`` on ``/sdn/zones/localnetwork/BRIDGE``)
  on create, config and (the source's NICs) clone; ``resize_vm``
  (``Datastore.AllocateSpace`` on the disk's storage).
- pve-manager ``PVE/API2/VZDump.pm``: ``prune-backups`` needs
  ``Datastore.Allocate`` on the storage; ``defaults`` answers the storage's
  own ``prune-backups``.
- pve-manager ``PVE/API2/Cluster.pm`` ``resources``: a storage is listed only
  with ``Datastore.Audit`` on it, a node's figures only with ``Sys.Audit`` on
  it, a guest's pool only with ``Pool.Audit`` on the pool (fakepve lists every
  storage and node, and filters only guests).
- A restore (qemu-server ``create_vm`` with ``archive``, pve-container
  ``create_vm`` with ``restore``): ``VM.Allocate`` on the VMID (or the pool),
  or ``VM.Backup`` when the guest exists and ``force`` is set, all checked
  before anything is overwritten; pve-storage ``check_volume_access`` of the
  archive (``Datastore.AllocateSpace`` on its storage and ``VM.Backup`` on the
  guest it belongs to, unless it is the VMID's own), ``Datastore.AllocateSpace``
  on the target storage and (qemu-server ``$parse_backup_hints``) on every
  storage a disk is restored to, ``check_restore_permissions`` (``SDN.Use``
  for the archived NICs, ``Mapping.Use`` for its mapped devices, a raw device
  root@pam's); pve-container: ``Sys.Modify`` on ``/`` for a privileged
  archive unless it replaces a privileged container; the new guest joins
  ``pool``.
- pve-manager ``PVE/API2/Cluster/Mapping/PCI.pm`` and ``USB.pm``: the
  mappings, stateful; the index lists only mappings the user may audit, use
  or modify; a VM whose mapping has no entry for its node does not start.

The lab also records what a test checks afterwards: ``answers`` (method,
path, HTTP status of every request) and ``used`` (every privilege a check
found held, as (user, path, privilege)).
"""

from __future__ import annotations

import json
import re
from typing import Any

from aiohttp import web
from fakepve import FakeVm, PveError
from fakepve.routing import split_list
from fakepve.server import USER, ok

ROOT = "root@pam"
#: qemu-server's option tables (PVE/API2/Qemu.pm); keys outside them and the
#: value-checked ones below are "only root can set".
QEMU_TABLES = {
    "cores", "cpu", "runningcpu", "cpulimit", "cpuunits", "numa", "smp", "sockets", "vcpus",
    "memory", "balloon", "shares", "allow-ksm",
    "acpi", "hotplug", "kvm", "machine", "runningmachine", "scsihw", "smbios1", "tablet", "vga",
    "watchdog", "audio0", "rng0",
    "agent", "autostart", "bios", "description", "keyboard", "localtime", "migrate_downtime",
    "migrate_speed", "name", "onboot", "ostype", "protection", "reboot", "startdate", "startup",
    "tdf", "template",
    "freeze", "boot", "bootdisk", "vmstatestorage", "vmstate", "tags", "cdrom",
    "cicustom", "cipassword", "citype", "ciuser", "ciupgrade", "nameserver", "searchdomain",
    "sshkeys", "hookscript",
}  # fmt: skip
#: Keys checked elsewhere by their value (drives, NICs, devices) or not config at all.
QEMU_ELSEWHERE = re.compile(
    r"(ide|sata|scsi|virtio|efidisk|tpmstate|unused|net|ipconfig|numa|serial|usb|hostpci"
    r"|virtiofs)\d+"
)
CREATE_PARAMS = {"node", "vmid", "pool", "storage", "start", "archive", "force", "unique"}
CREATE_PARAMS |= {"live-restore", "bwlimit", "ha-managed", "digest", "delete", "revert"}
CREATE_PARAMS |= {"skiplock", "background_delay"}


def _opts(value: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in str(value).split(","):
        name, eq, val = part.partition("=")
        if eq:
            out[name] = val
    return out


class StrictAccess:
    """Token and root-only rules as PVE has them; see the module docstring."""

    acl: dict[str, list[tuple[str, set[str]]]] | None
    pools: dict[str, set[int]]
    pool_info: dict[str, dict[str, Any]]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        #: /cluster/mapping/{pci,usb}: id -> {"map": [entry, ...], "description": ...}
        #: (set first: seeding adds the inventory's mappings)
        self.mappings: dict[str, dict[str, dict[str, Any]]] = {"pci": {}, "usb": {}}
        super().__init__(*args, **kwargs)
        self.answers: list[tuple[str, str, int]] = []
        self.used: set[tuple[str, str, str]] = set()

    # ---------------------------------------------------------- who holds what

    def _acl_holds(self, user_id: str, path: str, priv: str) -> bool:
        """Whether one ACL subject (a user or a token, exactly) holds ``priv`` on ``path``."""
        paths = [path]
        parts = path.split("/")
        if path.startswith("/vms/") and parts[2].isdigit():
            vmid = int(parts[2])
            paths += ["/pool/" + n for n, ids in self.pools.items() if vmid in ids]
        elif path.startswith("/storage/"):
            paths += [
                "/pool/" + n for n, m in self.pool_info.items() if parts[2] in m.get("storage", ())
            ]
        for granted, privs in (self.acl or {}).get(user_id, []):
            if priv not in privs:
                continue
            if granted == "/" or any(p == granted or p.startswith(granted + "/") for p in paths):
                return True
        return False

    def _holds(self, user: str, path: str, priv: str) -> bool:
        if self.acl is None or user == ROOT:
            return True
        owner, bang, _ = user.partition("!")
        if not bang:
            return self._acl_holds(user, path, priv)
        # A privilege-separated token: its ACL, within its user's (root@pam's user holds all).
        return self._acl_holds(user, path, priv) and (
            owner == ROOT or self._acl_holds(owner, path, priv)
        )

    def allowed(self, user: str, path: str, priv: str) -> bool:
        held = self._holds(user, path, priv)
        if held and self.acl is not None:
            self.used.add((user, path, priv))
            parts = path.split("/")
            if path.startswith("/vms/") and parts[2].isdigit():
                # A guest's pool lends it its ACL: record the use there too.
                for name, ids in self.pools.items():
                    if int(parts[2]) in ids:
                        self.used.add((user, f"/pool/{name}", priv))
        return held

    def check_permissions(
        self, user: str | None, perms: Any, values: Any, declared: Any = None
    ) -> None:
        if user is not None and user.startswith(ROOT + "!") and self.acl is not None:
            # fakepve lets root@pam's tokens through as root; PVE checks their ACL.
            if perms and "check" in perms:
                ok, why = self._check(user, perms["check"], values, declared)  # type: ignore[attr-defined]
                if not ok:
                    raise PveError(403, f"Permission check failed ({why})")
                return
            if perms and perms.get("user") in ("all", "world"):
                return
            raise PveError(403, "Permission check failed (user != root@pam)")
        super().check_permissions(user, perms, values, declared)  # type: ignore[misc]

    def _routes_access(self) -> list[Any]:
        return [("GET", "/access/permissions", self._lab_permissions)]

    async def _lab_permissions(self, v: dict[str, Any], user: str) -> dict[str, dict[str, int]]:
        """What ``/access/permissions`` says: the same rule the checks apply."""
        from fakepve import shapes

        who = v.get("userid") or user
        if self.acl is None or who == ROOT:
            held = {"/": set(shapes.PRIVILEGES)}
        else:
            paths = {p for p, _ in self.acl.get(who, [])}
            held = {}
            for path in paths:
                privs = {p for p in shapes.PRIVILEGES if self._holds(who, path, p)}
                if privs:
                    held[path] = privs
        if v.get("path") is not None:
            held = {
                p: ps
                for p, ps in held.items()
                if v["path"] == p or p == "/" or v["path"].startswith(p + "/")
            }
        return {path: dict.fromkeys(sorted(privs), 1) for path, privs in sorted(held.items())}

    # ---------------------------------------------------------- recorded answers

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        response: web.StreamResponse = await super()._middleware(request, handler)  # type: ignore[misc]
        self.answers.append((request.method, request.path, response.status))
        return response

    # ---------------------------------------------------------- qemu's root-only keys

    def _need(self, user: str, path: str, priv: str) -> None:
        if not self.allowed(user, path, priv):
            raise PveError(403, f"Permission check failed ({path}, {priv})")

    def _qemu_rules(
        self, user: str, vmid: int, params: dict[str, Any], deletes: list[str], old: dict[str, Any]
    ) -> None:
        """The checks of qemu-server that fakepve leaves out (see the module docstring)."""
        if user == ROOT:
            return
        for key in [*params, *deletes]:
            if key in CREATE_PARAMS or key in QEMU_TABLES or QEMU_ELSEWHERE.fullmatch(key):
                continue
            raise PveError(500, f"only root can set '{key}' config")
        for key, value in [*params.items(), *((k, old.get(k)) for k in deletes)]:
            if not key.startswith("hostpci") or value is None:
                continue
            device = _opts(value)
            first = str(value).split(",")[0]
            if "=" not in first:
                device["host"] = first  # the default key of pve-qm-hostpci
            if device.get("host"):
                raise PveError(500, f"only root can set '{key}' config for non-mapped devices")
            if device.get("mapping"):
                self._need(user, f"/mapping/pci/{device['mapping']}", "Mapping.Use")
                self._need(user, f"/vms/{vmid}", "VM.Config.HWType")
            if device.get("romfile"):
                raise PveError(
                    400,
                    "Parameter verification failed.",
                    {key: "only root@pam can set 'romfile' option"},
                )
        if "startup" in params or "startup" in deletes:
            # qemu-server's config check: startup "changes host behaviour".
            self._need(user, "/", "Sys.Modify")
        for key, value in params.items():
            if re.fullmatch(r"net\d+", key):
                bridge = _opts(value).get("bridge")
                if bridge:
                    self._need(user, f"/sdn/zones/localnetwork/{bridge}", "SDN.Use")

    async def _qm_create(self, v: dict[str, Any], user: str) -> Any:
        if not v.get("archive"):
            self._qemu_rules(user, int(v["vmid"]), v, [], {})
        return await super()._qm_create(v, user)  # type: ignore[misc]

    async def _apply_config(self, vm: Any, user: str, p: dict[str, Any]) -> Any:
        deletes = [k for k in split_list(p.get("delete")) if k]
        updates = {k: val for k, val in p.items() if k not in ("delete", "digest", "skiplock")}
        if isinstance(vm, FakeVm):  # a container's checks are fakepve's own
            self._qemu_rules(user, vm.vmid, updates, deletes, dict(vm.config))
        return await super()._apply_config(vm, user, p)  # type: ignore[misc]

    async def _qm_clone(self, v: dict[str, Any], user: str) -> Any:
        src = self.find(v["node"], v["vmid"])  # type: ignore[attr-defined]
        if user != ROOT:
            for key, value in src.config.items():
                if re.fullmatch(r"net\d+", key) and _opts(value).get("bridge"):
                    bridge = _opts(value)["bridge"]
                    self._need(user, f"/sdn/zones/localnetwork/{bridge}", "SDN.Use")
        return await super()._qm_clone(v, user)  # type: ignore[misc]

    # ---------------------------------------------------------- what a token may see

    async def _resources(self, request: web.Request) -> web.Response:
        """PVE/API2/Cluster.pm ``resources``: storages, node figures and pools need auditing."""
        response: web.Response = await super()._resources(request)  # type: ignore[misc]
        user = request[USER]
        if self.acl is None or user == ROOT or response.status != 200:
            return response
        rows = []
        for row in json.loads(response.text)["data"]:
            kind = row.get("type")
            if kind == "storage" and not self.allowed(
                user, f"/storage/{row['storage']}", "Datastore.Audit"
            ):
                continue
            if kind == "node" and not self.allowed(user, f"/nodes/{row['node']}", "Sys.Audit"):
                # extract_node_stats(..., $exclude_stats): the state, never the figures.
                row = {
                    k: v for k, v in row.items() if k in ("id", "node", "type", "status", "level")
                }
            if row.get("pool") and not self.allowed(user, f"/pool/{row['pool']}", "Pool.Audit"):
                row = {k: v for k, v in row.items() if k != "pool"}
            rows.append(row)
        return ok(rows)  # type: ignore[no-any-return]

    # ---------------------------------------------------------- restores

    def _restore_rules(
        self,
        user: str,
        vmid: int,
        archive: str,
        saved: dict[str, Any],
        storage: str | None,
        disk_stores: tuple[str, ...] = (),
    ) -> None:
        """What PVE checks of a restore before its task (see the module docstring);
        ``disk_stores``: where a qemu archive's disks go (``$parse_backup_hints``)."""
        if user == ROOT or self.acl is None:
            return
        for store in disk_stores:
            self._need(user, f"/storage/{store}", "Datastore.AllocateSpace")
        sid, _, volname = archive.partition(":")
        owner = re.search(r"vzdump-(?:qemu|lxc)-(\d+)-", volname)
        if not (owner and int(owner.group(1)) == vmid):
            self._need(user, f"/storage/{sid}", "Datastore.AllocateSpace")
            if owner:
                self._need(user, f"/vms/{owner.group(1)}", "VM.Backup")
        if storage:
            self._need(user, f"/storage/{storage}", "Datastore.AllocateSpace")
        for key, value in saved.items():
            if re.fullmatch(r"net\d+", key) and _opts(value).get("bridge"):
                self._need(user, f"/sdn/zones/localnetwork/{_opts(value)['bridge']}", "SDN.Use")
            # PVE/QemuServer.pm check_mapping_access: a raw device is root@pam's.
            kind = re.sub(r"\d+$", "", key)
            if kind in ("hostpci", "usb"):
                device = _opts(value)
                first = str(value).split(",")[0]
                if "=" not in first:
                    device["host"] = first  # the default key of pve-qm-hostpci
                if device.get("mapping"):
                    self._need(
                        user,
                        f"/mapping/{'pci' if kind == 'hostpci' else 'usb'}/{device['mapping']}",
                        "Mapping.Use",
                    )
                elif kind == "hostpci" or str(device.get("host", "")).lower() != "spice":
                    raise PveError(500, f"only root can set '{key}' config for real devices")

    # ---------------------------------------------------------- resource mappings

    def _routes_mapping(self) -> list[Any]:
        routes: list[Any] = []
        for kind in ("pci", "usb"):
            base = f"/cluster/mapping/{kind}"
            routes += [
                ("GET", base, self._mapping_index(kind)),
                ("POST", base, self._mapping_create(kind)),
                ("GET", base + "/{id}", self._mapping_read(kind)),
                ("PUT", base + "/{id}", self._mapping_update(kind)),
                ("DELETE", base + "/{id}", self._mapping_delete(kind)),
            ]
        return routes

    def _mapping_view(self, kind: str, mid: str) -> dict[str, Any]:
        entry = self.mappings[kind][mid]
        view = {"id": mid, "map": list(entry["map"])}
        if entry.get("description"):
            view["description"] = entry["description"]
        return view

    def _mapping(self, kind: str, mid: str) -> dict[str, Any]:
        if mid not in self.mappings[kind]:
            raise PveError(500, f"{kind.upper()} mapping '{mid}' does not exist")
        return self.mappings[kind][mid]

    @staticmethod
    def _map_entries(kind: str, value: Any) -> list[str]:
        entries = value if isinstance(value, list) else [value]
        nodes = [_opts(e).get("node") for e in entries]
        if len(set(nodes)) != len(nodes):
            raise PveError(400, "Parameter verification failed.", {"map": "duplicate node"})
        if kind == "usb":
            for e in entries:
                if not (_opts(e).get("id") or _opts(e).get("path")):
                    raise PveError(400, "Parameter verification failed.", {"map": "id or path"})
        return [str(e) for e in entries]

    def _mapping_index(self, kind: str) -> Any:
        async def index(v: dict[str, Any], user: str) -> list[dict[str, Any]]:
            privs = ("Mapping.Modify", "Mapping.Use", "Mapping.Audit")
            return [
                self._mapping_view(kind, mid)
                for mid in sorted(self.mappings[kind])
                if any(self.allowed(user, f"/mapping/{kind}/{mid}", p) for p in privs)
            ]

        return index

    def _mapping_create(self, kind: str) -> Any:
        async def create(v: dict[str, Any], user: str) -> None:
            mid = str(v["id"])
            if mid in self.mappings[kind]:
                raise PveError(500, f"{kind.upper()} mapping '{mid}' already exists")
            entry: dict[str, Any] = {"map": self._map_entries(kind, v["map"])}
            if v.get("description"):
                entry["description"] = v["description"]
            self.mappings[kind][mid] = entry

        return create

    def _mapping_read(self, kind: str) -> Any:
        async def read(v: dict[str, Any], user: str) -> dict[str, Any]:
            self._mapping(kind, str(v["id"]))
            return self._mapping_view(kind, str(v["id"]))

        return read

    def _mapping_update(self, kind: str) -> Any:
        async def update(v: dict[str, Any], user: str) -> None:
            entry = self._mapping(kind, str(v["id"]))
            if "map" in v:
                entry["map"] = self._map_entries(kind, v["map"])
            if "description" in v:
                entry["description"] = v["description"]

        return update

    def _mapping_delete(self, kind: str) -> Any:
        async def delete(v: dict[str, Any], user: str) -> None:
            self._mapping(kind, str(v["id"]))
            del self.mappings[kind][str(v["id"])]

        return delete

    def mapped_paths(self, mid: str, node: str) -> list[str] | None:
        """The PCI addresses mapping ``mid`` names on ``node``, or None without an entry."""
        for entry in self.mappings["pci"].get(mid, {}).get("map", []):
            opts = _opts(entry)
            if opts.get("node") == node:
                return opts.get("path", "").split(";")
        return None

    def _check_mapped_start(self, vm: Any) -> None:
        """qemu-server at start: each mapped device must have an entry for the VM's node."""
        for key, value in vm.config.items():
            mid = _opts(value).get("mapping") if key.startswith("hostpci") else None
            if mid and self.mapped_paths(mid, vm.node) is None:
                raise PveError(500, f"PCI device mapping not found for '{mid}'")
