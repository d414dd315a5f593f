"""Desired vs actual: the plan, as pure data.

Every change is labelled by what it costs the guest: ``live`` (applied while
it runs), ``needs-reboot`` (Proxmox keeps it pending until the next reboot;
checked against the guest's ``pending``), ``needs-stop`` (only while it is
stopped) or ``replace`` (cannot be changed in place: nixmox never does it,
it says so). Shrinking a disk is refused here, at plan time.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from nixmox.adapters.proxmox import props
from nixmox.adapters.proxmox.cluster import GuestRow
from nixmox.inventory.locate import Path
from nixmox.inventory.model import Inventory
from nixmox.provision.checks import Storages, backup_problems, guest_problems, node_problem
from nixmox.provision.desired import (
    BACKUP_JOB_ID,
    DesiredBridge,
    DesiredGuest,
    Label,
    Volume,
    creation,
    desired_backup_job,
    desired_bridges,
    desired_guest,
    desired_storage,
)

SCHEMA_VERSION = 1
DISRUPTIVE: tuple[Label, ...] = ("needs-reboot", "needs-stop", "replace")


@dataclass(frozen=True)
class ActualGuest:
    """What the API says about one guest."""

    vmid: int
    type: str  # "lxc" | "qemu"
    node: str
    status: str
    lock: str | None
    template: bool
    config: dict[str, str]
    #: key -> pending value (None: pending deletion)
    pending: dict[str, str | None] = field(default_factory=dict)
    digest: str | None = None


@dataclass(frozen=True)
class Change:
    """One key to change (``new`` None: delete)."""

    key: str
    old: str | None
    new: str | None
    label: Label
    note: str = ""
    #: How apply makes it: "config", "resize" (grow a disk) or "none" (already pending).
    via: Literal["config", "resize", "none"] = "config"


Action = Literal["create", "update", "none", "error"]


@dataclass(frozen=True)
class GuestPlan:
    name: str
    vmid: int
    node: str
    type: str
    action: Action
    changes: tuple[Change, ...] = ()
    error: str | None = None
    running: bool = False
    lock: str | None = None
    #: Each error on its own, located in the inventory (``error`` joins them).
    problems: tuple[str, ...] = ()
    #: What a create sets (Proxmox key, value), as apply will send it.
    attributes: tuple[tuple[str, str], ...] = ()
    #: Keys nixmox set before that the inventory no longer declares: (key, value
    #: they keep). Never changed; plan says so once they are "unmanaged now".
    released: tuple[tuple[str, str], ...] = ()

    @property
    def disruptive(self) -> list[Change]:
        return [c for c in self.changes if c.label in DISRUPTIVE]


@dataclass(frozen=True)
class ObjectPlan:
    """A bridge or a storage: create, update (with the changed options) or error."""

    kind: Literal["bridge", "storage", "backup-job"]
    name: str
    node: str | None
    action: Action
    options: dict[str, str] = field(default_factory=dict)
    changes: tuple[Change, ...] = ()
    error: str | None = None
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class Plan:
    guests: tuple[GuestPlan, ...]
    bridges: tuple[ObjectPlan, ...]
    storages: tuple[ObjectPlan, ...]
    unmanaged: tuple[tuple[int, str, str, str], ...]  # vmid, type, name, node
    jobs: tuple[ObjectPlan, ...] = ()
    #: Problems of no single object (the backup storage), located in the inventory.
    problems: tuple[str, ...] = ()

    @property
    def _all(self) -> list[GuestPlan | ObjectPlan]:
        return [*self.guests, *self.bridges, *self.storages, *self.jobs]

    @property
    def has_changes(self) -> bool:
        return self.changed > 0

    @property
    def changed(self) -> int:
        """How many objects the plan creates or updates."""
        return sum(p.action in ("create", "update") for p in self._all)

    @property
    def errors(self) -> list[str]:
        return [f"{p.name}: {p.error}" for p in self._all if p.error] + list(self.problems)

    def as_json(self) -> dict[str, Any]:
        """The ``--json`` document (``schema_version`` for machines that read it)."""

        def change(c: Change) -> dict[str, Any]:
            return {"key": c.key, "old": c.old, "new": c.new, "label": c.label, "note": c.note}

        def planned(o: ObjectPlan, **where: Any) -> dict[str, Any]:
            changes = [change(c) for c in o.changes]
            return {
                "name": o.name,
                **where,
                "action": o.action,
                "error": o.error,
                "changes": changes,
            }

        return {
            "schema_version": SCHEMA_VERSION,
            "changes": self.has_changes,
            "guests": [
                {
                    "name": g.name,
                    "vmid": g.vmid,
                    "node": g.node,
                    "type": g.type,
                    "action": g.action,
                    "running": g.running,
                    "error": g.error,
                    "changes": [change(c) for c in g.changes],
                    "attributes": dict(g.attributes),
                    "unmanaged_now": [k for k, _ in g.released],
                }
                for g in self.guests
            ],
            "bridges": [planned(b, node=b.node) for b in self.bridges],
            "storages": [planned(s) for s in self.storages],
            "jobs": [
                {"name": j.name, "action": j.action, "changes": [change(c) for c in j.changes]}
                for j in self.jobs
            ],
            "unmanaged": [
                {"vmid": v, "type": t, "name": n, "node": node} for v, t, n, node in self.unmanaged
            ],
            "errors": self.errors,
        }


def steps(plan: Plan) -> frozenset[tuple[str, ...]]:
    """What applying ``plan`` would write, one item per create or changed key
    (``("guest", "nixos-vm", "memory", "4096")``): two plans compare by it."""
    out: set[tuple[str, ...]] = set()
    objects: list[tuple[str, GuestPlan | ObjectPlan]] = [("guest", g) for g in plan.guests]
    objects += [(o.kind, o) for o in (*plan.bridges, *plan.storages, *plan.jobs)]
    for kind, o in objects:
        where = f"{o.name} on {o.node}" if kind == "bridge" else o.name
        if o.action == "create":
            out.add((kind, where, "create"))
        elif o.action == "update":
            out.update((kind, where, c.key, str(c.new)) for c in o.changes)
    return frozenset(out)


def unconfirmed(fresh: Plan, confirmed: Plan) -> list[str]:
    """The writes ``fresh`` would make that ``confirmed`` did not show, in words.

    Empty when the fresh plan is the confirmed one or part of it (another run
    made some of it meanwhile): then applying the fresh plan converges.
    """
    words = []
    for step in sorted(steps(fresh) - steps(confirmed)):
        kind, where, rest = step[0], step[1], step[2:]
        if rest == ("create",):
            words.append(f"create {kind} {where}")
        else:
            words.append(f"{kind} {where}: {rest[0]} -> {rest[1]}")
    return words


# -- comparing values ------------------------------------------------------------

_NUMBERS = {"cores", "sockets", "memory", "swap", "balloon", "cpulimit"}
_BOOLS = {"onboot", "unprivileged", "template", "protection"}
#: Running-guest keys Proxmox applies at once; the rest wait in pending.
_LIVE = {
    "lxc": {"cores", "memory", "swap", "description", "tags", "onboot", "startup", "net"}
    | {"cpulimit"},
    "qemu": {"name", "description", "tags", "onboot", "startup", "net", "balloon"},
}


def same_scalar(key: str, desired: str, actual: str | None) -> bool:
    """Whether the actual value already is the desired one, as Proxmox means it."""
    if actual is None:
        return False
    if key == "tags":
        return props.tags(desired) == props.tags(actual)
    if key == "affinity":
        return props.cpu_set(desired) == props.cpu_set(actual)
    if key == "machine":
        return props.machine_matches(desired, actual)
    if key == "description":
        return desired.strip() == actual.strip()
    if key in _NUMBERS:
        return desired.strip() == actual.strip() or _int(desired) == _int(actual)
    if key in _BOOLS:
        return props.same_bool(desired, actual) is True
    return desired == actual


def _int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def same_option(name: str, desired: str, actual: str | None) -> bool:
    if actual is None:
        return False
    verdict = props.same_bool(desired, actual)
    if verdict is not None:
        return verdict
    if name in ("macaddr", "hwaddr"):
        return desired.lower() == actual.lower()
    if name == "host":
        return _pci(desired) == _pci(actual)
    if name == "bridge_ports":
        return set(desired.split()) - {"none"} == set(actual.split()) - {"none"}
    return desired == actual


def _pci(address: str) -> str:
    address = address.lower()
    return address if address.count(":") == 2 else f"0000:{address}"


def _options_differ(
    key: str, desired: dict[str, str], actual: dict[str, str], *, whole: bool
) -> bool:
    """Declared options only; ``whole`` also counts options the actual has extra."""
    names = set(desired) | (set(actual) if whole else set())
    return any(
        not same_option(n, desired[n], actual.get(n)) if n in desired else True for n in names
    )


def _label(kind: str, key: str, running: bool) -> Label:
    if not running:
        return "live"
    return "live" if props.kind_of(key) in _LIVE[kind] or key in _LIVE[kind] else "needs-reboot"


# -- one guest -------------------------------------------------------------------


def diff_guest(want: DesiredGuest, have: ActualGuest | None) -> GuestPlan:
    """The plan for one declared guest."""
    g = want.guest
    base = GuestPlan(g.name, g.vmid, g.node, want.type, "none")
    if have is None:
        if not want.provisioned:
            return replace(
                base,
                action="error",
                error=(
                    f"guest {g.vmid} does not exist and the inventory does not say how to create it"
                ),
            )
        if want.type == "lxc" and "ostemplate" not in want.create:
            return replace(
                base,
                action="error",
                error='to create this container, give template = "STORAGE:vztmpl/FILE"',
            )
        return replace(base, action="create")
    running = have.status == "running"
    base = replace(base, running=running, lock=have.lock)
    if have.template:
        return replace(base, action="error", error=f"vmid {g.vmid} is a template, not a guest")
    if have.type != want.type:
        return replace(
            base,
            action="error",
            error=(
                f"vmid {g.vmid} is a {have.type} guest; the inventory says {want.type} "
                "(nixmox never replaces a guest)"
            ),
        )
    if have.node != g.node:
        return replace(
            base,
            action="error",
            error=(
                f"guest {g.vmid} is on node {have.node}, the inventory says {g.node}: "
                "migrate it or fix the inventory"
            ),
        )
    changes: list[Change] = []
    problems: list[str] = []

    def add(
        key: str,
        old: str | None,
        new: str | None,
        note: str = "",
        via: Literal["config", "resize", "none"] = "config",
        label: Label | None = None,
    ) -> None:
        if label is None:
            label = _label(want.type, key, running)
        if running and via == "config" and key in have.pending and have.pending[key] == new:
            label, via, note = "needs-reboot", "none", "already pending; waits for a reboot"
        changes.append(Change(key, old, new, label, note, via))

    for key, value in want.scalars.items():
        actual = have.config.get(key)
        if not same_scalar(key, value, actual):
            add(key, actual, value)
    for key, value in want.create.items():
        if key == "unprivileged" and not same_scalar(key, value, have.config.get(key)):
            add(
                key,
                have.config.get(key),
                value,
                "set when the container is created",
                label="replace",
            )
    for key, opts in want.options.items():
        raw = have.config.get(key)
        actual_opts = props.parse(key, raw) if raw is not None else {}
        whole = props.kind_of(key) in ("hostpci", "features")
        if raw is None or _options_differ(key, opts, actual_opts, whole=whole):
            merged = {**actual_opts, **opts} if not whole else opts
            add(key, raw, props.render(key, merged))
    for slot, volume in want.volumes.items():
        _diff_volume(slot, volume, have, add, problems)
    for key in sorted(have.config):
        if props.kind_of(key) in want.owned_prefixes and key not in want.options:
            add(key, have.config[key], None, "not in the inventory")
    if problems:
        return replace(base, action="error", changes=tuple(changes), error="; ".join(problems))
    return replace(base, action="update" if changes else "none", changes=tuple(changes))


def _diff_volume(
    slot: str, volume: Volume, have: ActualGuest, add: Any, problems: list[str]
) -> None:
    raw = have.config.get(slot)
    if raw is None:
        add(slot, None, volume.create_value(slot), "new disk")
        return
    actual = props.parse(slot, raw)
    first = props.default_key(slot) or "file"
    storage = props.volume_storage(actual.get(first, ""))
    if storage != volume.storage:
        add(
            slot,
            raw,
            f"{volume.storage}:…",
            f"on storage {storage}, wanted {volume.storage}: "
            "move the disk by hand (nixmox does not move disks)",
            label="replace",
        )
    if volume.size is not None:
        current = props.size_bytes(actual.get("size", "0"), "G") or 0
        if volume.size < current:
            problems.append(f"{slot} is {actual.get('size')}; shrinking a disk is refused")
        elif volume.size > current:
            add(
                slot,
                actual.get("size"),
                _gib(volume.size),
                "grow the disk",
                via="resize",
                label="live",
            )
    if _options_differ(slot, volume.options, actual, whole=False):
        merged = {**actual, **volume.options}
        add(slot, raw, props.render(slot, merged))


def _gib(size: int) -> str:
    return f"{size // 1024**3}G" if size % 1024**3 == 0 else f"{size // 1024**2}M"


# -- bridges and storages -------------------------------------------------------------


def diff_bridge(want: DesiredBridge, have: Mapping[str, Any] | None) -> ObjectPlan:
    if not want.node:
        return ObjectPlan(
            "bridge",
            want.iface,
            None,
            "error",
            error='declare the node in [[nodes]] or give node = "..."',
        )
    if have is None:
        return ObjectPlan(
            "bridge",
            want.iface,
            want.node,
            "create",
            dict(want.options),
            tuple(Change(k, None, v, "live") for k, v in want.options.items()),
        )
    unset = {"autostart": "0", "bridge_vlan_aware": "0", "bridge_ports": ""}
    changes = [
        Change(k, _text(have.get(k)), v, "live", "applied with one network reload")
        for k, v in want.options.items()
        if not same_option(k, v, _text(have[k]) if have.get(k) is not None else unset.get(k))
    ]
    if have.get("type") not in (None, "bridge", "OVSBridge"):
        return ObjectPlan(
            "bridge",
            want.iface,
            want.node,
            "error",
            error=f"{want.iface} exists as a {have.get('type')}, not a bridge",
        )
    return ObjectPlan(
        "bridge",
        want.iface,
        want.node,
        "update" if changes else "none",
        dict(want.options),
        tuple(changes),
    )


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value.strip()
    return str(value)


def diff_storage(
    storage_id: str, want: dict[str, str], have: Mapping[str, Any] | None
) -> ObjectPlan:
    if have is None:
        return ObjectPlan(
            "storage",
            storage_id,
            None,
            "create",
            want,
            tuple(Change(k, None, v, "live") for k, v in want.items()),
        )
    changes: list[Change] = []
    for key, value in want.items():
        actual = _text(have.get(key))
        if key in ("content", "nodes"):
            same = set(value.split(",")) == set((actual or "").split(",")) - {""}
        elif key in ("sparse", "shared", "is_mountpoint"):
            same = props.same_bool(value, actual or "0") is True
        else:
            same = value == actual
        if not same:
            label: Label = "replace" if key in ("type", "path", "pool") else "live"
            note = "cannot change in place; nixmox leaves it" if label == "replace" else ""
            changes.append(Change(key, actual, value, label, note))
    return ObjectPlan(
        "storage", storage_id, None, "update" if changes else "none", want, tuple(changes)
    )


# -- the whole plan ---------------------------------------------------------------------


@dataclass(frozen=True)
class ActualState:
    """Everything plan read: one /cluster/resources, configs of declared guests, ..."""

    guests: dict[int, ActualGuest]
    resources: list[GuestRow]  # every guest of the cluster, as /cluster/resources lists it
    bridges: dict[tuple[str, str], dict[str, Any]]  # (node, iface) -> options
    storages: dict[str, dict[str, Any]]
    errors: dict[int, str] = field(default_factory=dict)  # vmid -> why it could not be read
    backup_jobs: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> job
    #: (node, storage) -> the vztmpl volumes on it, read for containers still to create.
    container_templates: dict[tuple[str, str], frozenset[str]] = field(default_factory=dict)
    #: node -> "online" | "offline" | ...; None: not read (plan does not judge nodes).
    nodes: dict[str, str] | None = None
    #: (node, storage) -> its content types, for each storage enabled on that node.
    node_storages: dict[tuple[str, str], frozenset[str]] | None = None
    #: The nodes whose interfaces are in ``bridges`` (a bridge missing elsewhere is unknown).
    networks_read: frozenset[str] | None = None
    #: template vmid -> its config, read for VMs still to be cloned from it.
    clone_configs: dict[int, dict[str, Any]] = field(default_factory=dict)
    #: storage id -> why it was not read (the token cannot see it): never planned as new.
    storage_errors: dict[str, str] = field(default_factory=dict)
    #: clone source as the inventory names it -> the template's vmid and config.
    clone_sources: dict[str, tuple[int, ActualGuest]] = field(default_factory=dict)
    #: Storages the token may not audit (hidden from /cluster/resources), as plan names them.
    hidden_storages: frozenset[str] = frozenset()
    #: What the token holds per path (one /access/permissions), read for what it may see
    #: and used again for what it may do; None: not read.
    granted: Mapping[str, Mapping[str, Any]] | None = None


_DISK_SLOT = re.compile(r"(?:scsi|virtio|sata|ide)\d+")


def boot_slot(config: Mapping[str, Any]) -> str | None:
    """The disk slot a VM boots from: the first disk of ``boot: order=``, else its first disk."""
    disks = [
        k
        for k, v in config.items()
        if _DISK_SLOT.fullmatch(k) and "media=cdrom" not in str(v) and "cloudinit" not in str(v)
    ]
    order = props.parse("boot", str(config.get("boot") or "")).get("order", "")
    for slot in [*order.split(";"), str(config.get("bootdisk") or "")]:
        if slot in disks:
            return slot
    return sorted(disks)[0] if disks else None


def clone_problem(
    want: DesiredGuest, source: GuestRow, config: Mapping[str, Any], storages: Mapping[str, Any]
) -> str | None:
    """Why cloning ``source`` (a template) cannot give what the inventory declares.

    A full clone keeps the template's disk slots: a template booting from
    ``virtio0`` cloned into a guest that declares ``scsi0`` gets a new, empty
    ``scsi0`` and its real boot disk is never grown. And PVE refuses a clone
    to another node while the template's disks are on local storage
    (qemu-server, PVE::API2::Qemu clone_vm: "can't clone VM to node ... (VM
    uses local storage)").
    """
    g = want.guest
    booted = boot_slot(config)
    if g.disks and booted is not None and g.disks[0].slot not in config:
        return (
            f"template {source.vmid} boots from {booted}, but the first disk declared is "
            f"{g.disks[0].slot}: a clone keeps the template's slots, so it would get a new "
            f'empty {g.disks[0].slot} and never grow its boot disk; declare slot = "{booted}"'
        )
    if source.node != g.node:
        used = {
            props.volume_storage(str(v))
            for k, v in config.items()
            if (_DISK_SLOT.fullmatch(k) or k.startswith(("efidisk", "tpmstate")))
            and ":" in str(v).split(",", 1)[0]
            and "media=cdrom" not in str(v)
        }
        local = sorted(
            s
            for s in used
            if not props.same_bool("1", _text((storages.get(s) or {}).get("shared")) or "0")
        )
        if local:
            return (
                f"template {source.vmid} is on {source.node} with disks on local storage "
                f"({', '.join(local)}): PVE cannot clone it to {g.node}; keep the guest on "
                f"{source.node}, or put a copy of the template on {g.node} "
                "(`nixmox template upload --node ...`)"
            )
    return None


def source_problem(want: DesiredGuest, actual: ActualState) -> str | None:
    """Why a guest to create cannot be: its template file or template VM is missing."""
    found = _source_problem(want, actual)
    return None if found is None else found[1]


def _source_problem(want: DesiredGuest, actual: ActualState) -> tuple[str, str] | None:
    """Why a guest to create cannot be: its template file or template VM is missing."""
    g = want.guest
    volid = want.create.get("ostemplate")
    if volid is not None:
        storage = volid.split(":", 1)[0]
        found = actual.container_templates.get((g.node, storage))
        if found is not None and volid not in found:
            return "template", (
                f"template {volid} is not on storage {storage} of {g.node}: "
                "put it there with `nixmox template upload FILE`"
            )
    source = want.create.get("clone")
    if source is not None:
        match = [
            r
            for r in actual.resources
            if r.template and (str(r.vmid) == source or r.name == source)
        ]
        if not match:
            return "clone", (
                f"clone source {source} is not a template VM on the cluster: restore one with "
                "`nixmox template upload vzdump-qemu-....vma.zst --vmid N`"
            )
        config = actual.clone_configs.get(match[0].vmid)
        if config is not None:
            problem = clone_problem(want, match[0], config, actual.storages)
            if problem is not None:
                return "clone", problem
    return None


def managed_keys(want: DesiredGuest) -> frozenset[str]:
    """The Proxmox keys nixmox sets for this guest (what apply records it manages)."""
    return frozenset(
        {*want.scalars, *want.options, *want.volumes, *want.create} - {"ostemplate", "clone"}
    )


def released_keys(
    want: DesiredGuest, have: ActualGuest | None, before: frozenset[str]
) -> tuple[tuple[str, str], ...]:
    """Keys nixmox set (``before``, from the journal) that the inventory dropped and the
    guest still has: left as they are, which plan says instead of staying silent."""
    if have is None:
        return ()
    gone = before - managed_keys(want)
    return tuple(
        (key, have.config[key])
        for key in sorted(gone)
        if key in have.config and props.kind_of(key) not in want.owned_prefixes
    )


def make_plan(
    inv: Inventory, actual: ActualState, managed: Mapping[int, frozenset[str]] | None = None
) -> Plan:
    """Compare the inventory with what the API reported, and check what apply would need.

    ``managed``: per VMID, the keys the last apply set (from the journal), for the
    "unmanaged now" notes."""
    guests: list[GuestPlan] = []
    for i, guest in enumerate(inv.guests):
        if guest.vmid in actual.errors:
            guests.append(
                _located(
                    inv,
                    GuestPlan(guest.name, guest.vmid, guest.node, guest.pve_type, "error"),
                    [(("guests", i), actual.errors[guest.vmid])],
                )
            )
            continue
        want = desired_guest(guest)
        planned = diff_guest(want, actual.guests.get(guest.vmid))
        found: list[tuple[Path, str]] = []
        if planned.error is not None:
            found.append((("guests", i), planned.error))
        if planned.action == "create":
            problem = _source_problem(want, actual)
            if problem is not None:
                found.append((("guests", i, problem[0]), problem[1]))
        found += _judged(inv, i, planned, actual)
        if planned.action == "create":
            planned = replace(planned, attributes=tuple(creation(want).items()))
        elif managed and guest.vmid in managed:
            planned = replace(
                planned,
                released=released_keys(want, actual.guests.get(guest.vmid), managed[guest.vmid]),
            )
        guests.append(_located(inv, planned, found) if found else planned)
    bridges = tuple(
        _judge_bridge(inv, diff_bridge(b, actual.bridges.get((b.node, b.iface))), actual)
        for b in desired_bridges(inv)
    )
    storages = tuple(
        ObjectPlan("storage", s.storage, None, "error", error=actual.storage_errors[s.storage])
        if s.storage in actual.storage_errors
        else diff_storage(s.storage, desired_storage(s), actual.storages.get(s.storage))
        for s in inv.storages
    )
    declared = {g.vmid for g in inv.guests}
    unmanaged = tuple(
        (r.vmid, r.type, r.name, r.node) for r in actual.resources if r.vmid not in declared
    )
    jobs: tuple[ObjectPlan, ...] = ()
    want_job = desired_backup_job(inv)
    if want_job is not None:
        jobs = (diff_backup_job(want_job, actual.backup_jobs.get(BACKUP_JOB_ID)),)
    problems: tuple[str, ...] = ()
    known = _storages(inv, actual)
    if known is not None:
        problems = tuple(f"{inv.where(p.path)}: {p.message}" for p in backup_problems(inv, known))
    return Plan(tuple(guests), bridges, storages, unmanaged, jobs, problems)


def _located(inv: Inventory, planned: GuestPlan, found: list[tuple[Path, str]]) -> GuestPlan:
    """``planned`` as an error, each problem with its FILE:LINE:COL."""
    lines = tuple(f"{inv.where(path)}: {message}" for path, message in found)
    return replace(planned, action="error", error="; ".join(lines), problems=lines)


def _storages(inv: Inventory, actual: ActualState) -> Storages | None:
    if actual.nodes is None or actual.node_storages is None:
        return None  # not read: nothing to judge against
    return Storages.of(
        inv,
        actual.node_storages,
        frozenset(actual.storages),
        frozenset(actual.nodes),
        actual.hidden_storages,
    )


def _judged(
    inv: Inventory, i: int, planned: GuestPlan, actual: ActualState
) -> list[tuple[Path, str]]:
    """The plan-time checks of one guest to create or to extend (see :mod:`.checks`)."""
    known = _storages(inv, actual)
    if known is None or actual.nodes is None or planned.action not in ("create", "update"):
        return []
    guest = inv.guests[i]
    bridges: set[tuple[str, str]] | None = None
    if actual.networks_read is not None and guest.node in actual.networks_read:
        bridges = {
            key
            for key, iface in actual.bridges.items()
            if iface.get("type") in ("bridge", "OVSBridge")
        }
        bridges |= {(b.node, b.iface) for b in desired_bridges(inv)}
    new = frozenset(c.key for c in planned.changes if c.old is None)
    return [
        (p.path, p.message)
        for p in guest_problems(
            i,
            guest,
            creating=planned.action == "create",
            new_slots=new,
            storages=known,
            nodes=actual.nodes,
            bridges=bridges,
        )
    ]


def _judge_bridge(inv: Inventory, planned: ObjectPlan, actual: ActualState) -> ObjectPlan:
    """A bridge to create or change on a node that is not there or not online is an error."""
    if actual.nodes is None or planned.action not in ("create", "update") or not planned.node:
        return planned
    problem = node_problem(planned.node, actual.nodes)
    if problem is None:
        return planned
    index = next(
        (j for j, b in enumerate(inv.bridges) if b.name == planned.name),
        0,
    )
    line = f"{inv.where(('bridges', index, 'node'))}: {problem}"
    return replace(planned, action="error", error=line, problems=(line,))


def diff_backup_job(want: dict[str, str], have: Mapping[str, Any] | None) -> ObjectPlan:
    """The /cluster/backup job: vmid lists order-free, prune options parsed."""
    if have is None:
        return ObjectPlan(
            "backup-job",
            BACKUP_JOB_ID,
            None,
            "create",
            want,
            tuple(Change(k, None, v, "live") for k, v in want.items()),
        )
    changes = []
    for key, value in want.items():
        actual = _text(have.get(key))
        if key == "vmid":
            same = set(value.split(",")) == set((actual or "").split(","))
        elif key == "prune-backups":
            same = props.parse("prune", value) == props.parse("prune", actual or "")
        elif key == "enabled":
            same = props.same_bool(value, actual if actual is not None else "1") is True
        else:
            same = value == actual
        if not same:
            changes.append(Change(key, actual, value, "live"))
    return ObjectPlan(
        "backup-job", BACKUP_JOB_ID, None, "update" if changes else "none", want, tuple(changes)
    )
