"""Checks across the inventory: what no single field can know.

Pure: takes a validated :class:`Inventory`, returns every problem found as a
``(path, message)`` pair. A reference is checked only when the inventory
declares that kind of thing at all, so small inventories (maintenance-only,
snapshots-only) stay valid on their own.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from nixmox.inventory.locate import Path, render_path
from nixmox.inventory.model import PBS_KEYS, Guest, Inventory, KeepOptions, Storage
from nixmox.rules.timespan import parse_timespan


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the inventory, at a key path."""

    path: Path
    message: str


def _duplicates(items: Iterable[tuple[Path, object]], what: str) -> Iterator[Problem]:
    seen: dict[object, Path] = {}
    for path, value in items:
        if value in seen:
            yield Problem(path, f"duplicate {what} {value!r} (first at {render_path(seen[value])})")
        else:
            seen[value] = path


def keep_problems(keep: KeepOptions, path: Path) -> Iterator[Problem]:
    """``keep-all`` excludes every other option (Proxmox refuses the mix)."""
    if keep.keep_all:
        others = [
            alias
            for alias, value in (
                ("keep-last", keep.keep_last),
                ("keep-hourly", keep.keep_hourly),
                ("keep-daily", keep.keep_daily),
                ("keep-weekly", keep.keep_weekly),
                ("keep-monthly", keep.keep_monthly),
                ("keep-yearly", keep.keep_yearly),
            )
            if value is not None
        ]
        if others:
            yield Problem(
                (*path, "keep-all"), f"keep-all cannot be combined with {', '.join(others)}"
            )


def _pci_function_set(device: str) -> tuple[str, frozenset[str]]:
    """Split an address into its slot and the functions it covers."""
    if "." in device:
        slot, function = device.lower().rsplit(".", 1)
        return slot, frozenset({function})
    return device.lower(), frozenset(str(f) for f in range(8))


def _guest_shape(guest: Guest, path: Path) -> Iterator[Problem]:
    """Keys that only make sense for one kind of guest or one update method."""
    if guest.kind == "lxc":
        for key in (
            "clone",
            "efidisk",
            "tpmstate",
            "bios",
            "machine",
            "scsihw",
            "balloon",
            "affinity",
        ):
            if getattr(guest, key) is not None:
                yield Problem((*path, key), f"{key} applies to VMs, not to an LXC container")
        for key in ("disks", "hostpci"):
            if getattr(guest, key):
                yield Problem((*path, key), f"{key} applies to VMs, not to an LXC container")
        if guest.os == "windows":
            yield Problem((*path, "os"), 'Windows runs only as a VM (kind = "vm")')
        if guest.stage is not None:
            yield Problem((*path, "stage"), "stage applies to a Windows VM")
    else:
        for key in ("template", "rootfs", "swap", "unprivileged"):
            if getattr(guest, key) is not None:
                yield Problem((*path, key), f"{key} applies to LXC containers, not to a VM")
        if guest.features:
            yield Problem((*path, "features"), "features applies to LXC containers, not to a VM")
    if guest.template is not None and guest.clone is not None:
        yield Problem((*path, "clone"), "give either template or clone, not both")
    if (
        any(pci.pcie for pci in guest.hostpci)
        and guest.machine not in (None, "q35")
        and not (guest.machine or "").startswith("pc-q35")
    ):
        yield Problem((*path, "machine"), 'pcie passthrough needs machine = "q35"')
    for i, pci in enumerate(guest.hostpci):
        if pci.device is None and pci.mapping is None:
            yield Problem((*path, "hostpci", i), "give a device or a mapping (or both)")
    if guest.reboot.policy == "window" and guest.reboot.window is None:
        yield Problem((*path, "reboot", "window"), 'policy "window" needs a window (calendar spec)')
    update = guest.update
    if update is not None:
        upath = (*path, "update")
        if update.method == "nixos" and guest.os not in (None, "nixos"):
            yield Problem((*upath, "method"), f'method "nixos" on a guest whose os is {guest.os!r}')
        if update.method == "windows":
            if guest.kind != "vm":
                yield Problem((*upath, "method"), 'method "windows" needs a VM')
            elif guest.agent is False:
                yield Problem(
                    (*upath, "method"),
                    'method "windows" runs through the guest agent: agent = true',
                )
        if update.via == "agent":
            if guest.kind != "vm":
                yield Problem(
                    (*upath, "via"), "an LXC container has no guest agent; use ssh or pct"
                )
            elif guest.agent is False:
                yield Problem((*upath, "via"), 'via = "agent" needs agent = true')
        if update.via == "pct" and guest.kind != "lxc":
            yield Problem((*upath, "via"), 'via = "pct" works only for LXC containers')
        if update.via in (None, "ssh") and update.method == "nixos" and update.ssh is None:
            yield Problem(upath, 'a NixOS guest updated over SSH needs ssh = "USER@HOST"')
        if update.method == "nixos":
            health = update.health.timeout if update.health is not None else "2min"
            if parse_timespan(update.dead_man) <= parse_timespan(health):
                # The switch back would fire while nixmox is still checking a healthy guest.
                yield Problem(
                    (*upath, "dead_man"),
                    f"dead_man ({update.dead_man}) must be longer than the health checks "
                    f"may take ({health})",
                )


def backed_guest_storage(dataset: str, recursive: bool, storages: Iterable[Storage]) -> str | None:
    """The zfspool storage whose guest volumes a snapshot of ``dataset`` would cover.

    pve-storage's ZFS plugin (PVE::Storage::ZFSPoolPlugin::volume_rollback_is_possible)
    refuses a rollback to a snapshot that is not the volume's most recent one, and
    counts every ZFS snapshot, whoever took it.
    """
    for store in storages:
        if store.type != "zfspool" or not store.dataset:
            continue
        pool = store.dataset
        # Not recursive, a snapshot of the storage's parent dataset covers no volume.
        if dataset.startswith(pool + "/") or (
            recursive and (dataset == pool or pool.startswith(dataset + "/"))
        ):
            return store.storage
    return None


def check(inv: Inventory) -> list[Problem]:
    """Every cross-reference problem in ``inv``, in file order."""
    problems: list[Problem] = []
    add = problems.extend

    # Uniqueness.
    add(_duplicates(((("nodes", i, "name"), n.name) for i, n in enumerate(inv.nodes)), "node"))
    add(_duplicates(((("guests", i, "vmid"), g.vmid) for i, g in enumerate(inv.guests)), "vmid"))
    add(
        _duplicates(
            ((("guests", i, "name"), g.name) for i, g in enumerate(inv.guests)), "guest name"
        )
    )
    add(_duplicates(((("pools", i, "name"), p.name) for i, p in enumerate(inv.pools)), "pool"))
    add(
        _duplicates(
            ((("datasets", i, "name"), d.name) for i, d in enumerate(inv.datasets)), "dataset"
        )
    )
    add(
        _duplicates(
            ((("storages", i, "storage"), s.storage) for i, s in enumerate(inv.storages)),
            "storage id",
        )
    )
    node_names = {n.name for n in inv.nodes}
    only_node = next(iter(node_names)) if len(node_names) == 1 else None
    add(
        _duplicates(
            (
                (("bridges", i, "name"), f"{b.node or only_node}/{b.name}")
                for i, b in enumerate(inv.bridges)
            ),
            "bridge",
        )
    )

    def node_ref(path: Path, name: str | None) -> None:
        if name is not None and node_names and name not in node_names:
            problems.append(Problem(path, f"node {name!r} is not declared in [[nodes]]"))

    pools = {p.name for p in inv.pools}
    datasets = {d.name for d in inv.datasets}
    # [[storages]] and [[bridges]] list what nixmox manages, not everything there is:
    # a guest may name any storage or bridge, and `plan` checks it against the cluster.

    def dataset_ref(path: Path, name: str) -> None:
        if datasets and name not in datasets and name not in pools:
            problems.append(
                Problem(
                    path,
                    f"dataset {name!r} is not declared in [[datasets]] (once [[datasets]] "
                    "lists one, it must list every dataset named elsewhere, so doctor checks "
                    "them all; add it, or name a pool)",
                )
            )

    for i, node in enumerate(inv.nodes):
        if node.reboot == "window" and node.reboot_window is None:
            problems.append(
                Problem(("nodes", i, "reboot"), 'reboot = "window" needs reboot_window')
            )
        if node.hardware is not None:
            add(
                _duplicates(
                    (
                        (("nodes", i, "hardware", "pci", j, "address"), p.address.lower())
                        for j, p in enumerate(node.hardware.pci)
                    ),
                    "PCI address",
                )
            )
    for i, bridge in enumerate(inv.bridges):
        node_ref(("bridges", i, "node"), bridge.node)
        if bridge.node is None and len(node_names) > 1:
            problems.append(
                Problem(("bridges", i), 'with several nodes, say which node: node = "..."')
            )
    for i, pool in enumerate(inv.pools):
        node_ref(("pools", i, "node"), pool.node)
    for i, dataset in enumerate(inv.datasets):
        root = dataset.name.split("/", 1)[0]
        if pools and root not in pools:
            problems.append(
                Problem(("datasets", i, "name"), f"pool {root!r} is not declared in [[pools]]")
            )
    for i, storage in enumerate(inv.storages):
        spath: Path = ("storages", i)
        if storage.type == "zfspool" and storage.dataset is None:
            problems.append(Problem(spath, 'a zfspool storage needs dataset = "POOL/DATASET"'))
        if storage.type == "dir" and storage.path is None:
            problems.append(Problem(spath, 'a dir storage needs path = "/..."'))
        if storage.type == "pbs":
            for key in ("server", "datastore"):
                if getattr(storage, key) is None:
                    problems.append(Problem(spath, f'a pbs storage needs {key} = "..."'))
            if storage.content and storage.content != ["backup"]:
                problems.append(
                    Problem((*spath, "content"), 'a pbs storage holds only content = ["backup"]')
                )
        else:
            for key in PBS_KEYS:
                if getattr(storage, key) is not None:
                    problems.append(Problem((*spath, key), f"{key} is for a pbs storage only"))
        if storage.dataset is not None:
            dataset_ref((*spath, "dataset"), storage.dataset)
        for j, name in enumerate(storage.nodes):
            node_ref((*spath, "nodes", j), name)

    # Guests and their references.
    owners: dict[tuple[str, str], list[tuple[str, frozenset[str], Path]]] = {}
    for i, guest in enumerate(inv.guests):
        gpath: Path = ("guests", i)
        node_ref((*gpath, "node"), guest.node)
        add(_guest_shape(guest, gpath))
        add(
            _duplicates(
                ((((*gpath, "disks", j, "slot")), d.slot) for j, d in enumerate(guest.disks)),
                "disk slot",
            )
        )
        for j, pci in enumerate(guest.hostpci):
            if pci.device is None:
                continue
            slot, functions = _pci_function_set(pci.device)
            for other_name, other_functions, other_path in owners.get((guest.node, slot), []):
                if functions & other_functions:
                    problems.append(
                        Problem(
                            (*gpath, "hostpci", j, "device"),
                            f"PCI device {pci.device} is already passed to {other_name!r} "
                            f"({render_path(other_path)}); a device can go to one guest only",
                        )
                    )
            owners.setdefault((guest.node, slot), []).append(
                (guest.name, functions, (*gpath, "hostpci", j, "device"))
            )

    # Snapshots.
    if inv.snapshots is not None:
        for name, policy in inv.snapshots.policies.items():
            add(keep_problems(policy, ("snapshots", "policies", name)))
            if (
                policy.warn_after
                and policy.crit_after
                and parse_timespan(policy.warn_after) > parse_timespan(policy.crit_after)
            ):
                problems.append(
                    Problem(
                        ("snapshots", "policies", name, "warn_after"),
                        "warn_after is longer than crit_after",
                    )
                )
        add(
            _duplicates(
                (
                    (("snapshots", "datasets", i, "dataset"), t.dataset)
                    for i, t in enumerate(inv.snapshots.datasets)
                ),
                "snapshot dataset",
            )
        )
        trees = [t.dataset for t in inv.snapshots.datasets if t.recursive]
        for i, target in enumerate(inv.snapshots.datasets):
            tpath: Path = ("snapshots", "datasets", i)
            parent = next((t for t in trees if target.dataset.startswith(t + "/")), None)
            if parent is not None:
                problems.append(
                    Problem(
                        (*tpath, "dataset"),
                        f"{target.dataset} is already inside the recursive snapshots of {parent}",
                    )
                )
            if target.policy not in inv.snapshots.policies:
                known = ", ".join(sorted(inv.snapshots.policies)) or "none declared"
                problems.append(
                    Problem(
                        (*tpath, "policy"),
                        f"policy {target.policy!r} is not defined (known: {known})",
                    )
                )
            dataset_ref((*tpath, "dataset"), target.dataset)
            guest_storage = backed_guest_storage(target.dataset, target.recursive, inv.storages)
            if guest_storage is not None:
                problems.append(
                    Problem(
                        (*tpath, "dataset"),
                        f"{target.dataset} holds the guest disks of storage {guest_storage}: "
                        "Proxmox refuses to roll a guest back to a snapshot when a newer ZFS "
                        "snapshot of its disk exists, so these snapshots would make every guest "
                        "snapshot (nixmox's update snapshots too) impossible to restore; leave "
                        "guest storages out and snapshot guests through Proxmox (see "
                        "docs/snapshots.md)",
                    )
                )

    # Replication.
    if inv.replication is not None:
        add(_replication_problems(inv))

    # Backups.
    if inv.backups is not None:
        if inv.backups.keep is not None:
            add(keep_problems(inv.backups.keep, ("backups", "keep")))
        names = {g.name for g in inv.guests}
        vmids = {g.vmid for g in inv.guests}
        for key in ("guests", "exclude"):
            for j, name in enumerate(getattr(inv.backups, key)):
                if name not in names:
                    problems.append(
                        Problem(
                            ("backups", key, j), f"guest {name!r} is not declared in [[guests]]"
                        )
                    )
        verify = inv.backups.verify
        if verify is not None:
            low, high = verify.vmids
            if low > high:
                problems.append(
                    Problem(("backups", "verify", "vmids"), "give [first, last] with first <= last")
                )
            taken = sorted(v for v in vmids if low <= v <= high)
            if taken:
                problems.append(
                    Problem(
                        ("backups", "verify", "vmids"),
                        f"the scratch range holds declared guests' vmids: {taken}",
                    )
                )
        if inv.backups.scheduler == "proxmox" and (
            inv.schedules is None or inv.schedules.backup is None
        ):
            problems.append(
                Problem(
                    ("backups", "scheduler"),
                    'a Proxmox backup job needs [schedules] backup = "..."',
                )
            )
    return problems


def _snapshotted(inv: Inventory, dataset: str) -> bool:
    """Whether ``nixmox snapshot`` takes snapshots of ``dataset``."""
    targets = inv.snapshots.datasets if inv.snapshots is not None else []
    return any(
        t.dataset == dataset or (t.recursive and dataset.startswith(t.dataset + "/"))
        for t in targets
    )


def _replication_problems(inv: Inventory) -> Iterator[Problem]:
    """Targets exist, their keep-* are sane, sources are snapshotted by nixmox, and no two
    sources share one replica."""
    assert inv.replication is not None
    rep = inv.replication
    for name, target in rep.targets.items():
        yield from keep_problems(target, ("replication", "targets", name))
    replicas: dict[tuple[str, str], str] = {}
    trees = [(s.dataset, s.target) for s in rep.datasets if s.recursive]
    for i, source in enumerate(rep.datasets):
        path: Path = ("replication", "datasets", i)
        if source.target not in rep.targets:
            known = ", ".join(sorted(rep.targets)) or "none declared"
            yield Problem(
                (*path, "target"), f"target {source.target!r} is not defined (known: {known})"
            )
            continue
        parent = next(
            (t for t, to in trees if to == source.target and source.dataset.startswith(t + "/")),
            None,
        )
        if parent is not None:
            yield Problem(
                (*path, "dataset"),
                f"{source.dataset} is already replicated with the tree of {parent}",
            )
        if not _snapshotted(inv, source.dataset):
            yield Problem(
                (*path, "dataset"),
                f"{source.dataset} is in no [[snapshots.datasets]] (nor inside a recursive one): "
                "nixmox replicates only its own snapshots, so there would never be one to send",
            )
        # The replica is named after the source's last component (see replicate.plan).
        replica = f"{rep.targets[source.target].dataset}/{source.dataset.rsplit('/', 1)[-1]}"
        other = replicas.setdefault((source.target, replica), source.dataset)
        if other != source.dataset:
            yield Problem(
                (*path, "dataset"),
                f"{source.dataset} and {other} would both be received as {replica} on "
                f"target {source.target!r}",
            )
