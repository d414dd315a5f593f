"""The lab's three mermaid diagrams, drawn from the inventory and (optionally) live facts.

Pure: an :class:`~nixmox.inventory.model.Inventory` and a :class:`Live` of
plain data in, mermaid text out. Reading the live state is
:mod:`nixmox.observe.live`'s job; printing is the CLI's.

The diagrams are the seed's (ARCHITECTURE.md): network topology, storage
layout, and the update and backup flow. Node ids are derived from names so
the same lab always gives the same text (diffable, cacheable); labels are
escaped so that any name or comment parses.
"""

from __future__ import annotations

import html as _html
import re
from dataclasses import dataclass, field
from typing import Literal

from nixmox.inventory.model import BackupVerify, Guest, Inventory, KeepOptions
from nixmox.schedule.units import JOBS

Kind = Literal["network", "storage", "updates"]
KINDS: tuple[Kind, ...] = ("network", "storage", "updates")


# -- live facts (plain data) ---------------------------------------------------


@dataclass(frozen=True)
class LiveGuest:
    """A guest as Proxmox reports it."""

    vmid: int
    kind: Literal["lxc", "vm"]
    name: str
    node: str
    status: str = "unknown"
    #: Bridges of its network interfaces, in net0, net1, ... order.
    bridges: tuple[str, ...] = ()
    #: (config key, storage id, size) of each disk or volume, e.g. ("scsi0", "vm-disks", "32G").
    volumes: tuple[tuple[str, str, str], ...] = ()


@dataclass(frozen=True)
class LiveBridge:
    """A Linux bridge present on a node."""

    node: str
    name: str
    cidr: str | None = None


@dataclass(frozen=True)
class LiveStorage:
    """A storage from ``/storage``."""

    storage: str
    type: str
    dataset: str | None = None
    path: str | None = None
    content: tuple[str, ...] = ()


@dataclass(frozen=True)
class Live:
    """What the Proxmox API reported; ``source`` says where from (for the diagram's comment)."""

    source: str
    guests: tuple[LiveGuest, ...] = ()
    bridges: tuple[LiveBridge, ...] = ()
    storages: tuple[LiveStorage, ...] = ()


# -- mermaid text ------------------------------------------------------------------

_ENTITIES = {
    "#": "#35;",  # first: the escapes below start with '#'
    '"': "#quot;",
    "<": "#lt;",
    ">": "#gt;",
    "`": "#96;",  # a leading backtick would make the label a markdown string
    # mermaid formats label text as markdown (`*-*-* 03:00` came out as `--* 03:00`,
    # the first "-" in italics). Entity codes do not stop that (with a <br/> in the
    # label they are decoded first); markdown's own backslash escape does.
    "\\": "\\\\",
    "*": "\\*",
    "_": "\\_",
    "~": "\\~",
    "[": "\\[",
    "]": "\\]",
}
#: A line that markdown would read as a list item or a heading: its mark escaped.
_BLOCK_START = re.compile(r"^([-+]|#35;|\d+(?=[.)](?:\s|$)))")


def label(*lines: str | None) -> str:
    """A quoted mermaid label of the non-empty ``lines``, escaped, joined by line breaks.

    Inside quotes mermaid takes brackets, parentheses and pipes literally;
    quotes, ``#`` and angle brackets must be entity codes (``#quot;``). mermaid
    then reads the text as markdown, so emphasis marks, brackets and a leading
    list or heading mark are backslash-escaped: the label shows what was written.
    """
    escaped = []
    for line in lines:
        if not line:
            continue
        text = "".join(_ENTITIES.get(c, c) for c in " ".join(line.split()))
        mark = _BLOCK_START.match(text)
        if mark is not None:
            # "\-" and "\#" escape the mark; "9900." is escaped after the digits ("9900\.").
            at = 0 if not mark.group(1)[0].isdigit() else mark.end()
            text = text[:at] + "\\" + text[at:]
        escaped.append(text)
    return '"' + "<br/>".join(escaped) + '"'


def node_id(prefix: str, *parts: str | int) -> str:
    """A stable, injective mermaid id: ``prefix_`` then the parts with other characters as _xx."""

    def encode(part: str | int) -> str:
        return re.sub(r"[^A-Za-z0-9]", lambda m: f"_{ord(m.group()):02x}", str(part))

    return "_".join([prefix, *(encode(p) for p in parts)])


def comment(text: str) -> str:
    """A mermaid comment line (never a ``%%{`` directive)."""
    return "%% " + " ".join(text.replace("{", "(").replace("}", ")").split())


@dataclass
class _Graph:
    """Collects nodes and edges once each, in first-seen order."""

    header: str
    comments: list[str] = field(default_factory=list)
    nodes: dict[str, str] = field(default_factory=dict)
    edges: list[str] = field(default_factory=list)
    styles: list[str] = field(default_factory=list)

    def node(self, ident: str, text: str, shape: str = "[]") -> str:
        if ident not in self.nodes:
            opening, closing = shape[: len(shape) // 2], shape[len(shape) // 2 :]
            self.nodes[ident] = f"{ident}{opening}{text}{closing}"
        return ident

    def edge(self, a: str, b: str, text: str | None = None, *, dashed: bool = False) -> None:
        arrow = "-.->" if dashed else "-->"
        line = f"{a} {arrow}|{label(text)}| {b}" if text else f"{a} {arrow} {b}"
        if line not in self.edges:
            self.edges.append(line)

    def render(self) -> str:
        body = [*self.nodes.values(), *self.edges, *self.styles]
        return "\n".join([*self.comments, self.header, *("    " + line for line in body)]) + "\n"


def _provenance(graph: _Graph, what: str, live: Live | None, reason: str | None) -> None:
    graph.comments.append(comment(f"nixmox {what} diagram, generated; do not edit"))
    if live is not None:
        graph.comments.append(comment(f"from the inventory and the live state of {live.source}"))
    else:
        graph.comments.append(
            comment(f"drawn from the inventory alone: {reason or 'live state not requested'}")
        )


def _guest_label(name: str, kind: str, vmid: int, extra: str | None = None) -> str:
    return label(name, f"{'LXC' if kind == 'lxc' else 'VM'} {vmid}", extra)


def _default_node(inv: Inventory) -> str:
    return inv.nodes[0].name if len(inv.nodes) == 1 else ""


# -- network -------------------------------------------------------------------------


def network(inv: Inventory, live: Live | None = None, reason: str | None = None) -> str:
    """Internet, router, each node, its bridges (with CIDR) and the guests on each bridge.

    With ``live``, bridges and guest-to-bridge links are the ones Proxmox
    reports; declared but absent ones are dashed and say so, as do present
    ones the inventory does not declare.
    """
    g = _Graph("flowchart TD")
    _provenance(g, "network", live, reason)
    internet = g.node("internet", label("Internet"), "(())")
    gateways = sorted({b.gateway for b in inv.bridges if b.gateway})
    router = g.node("router", label("Router", *gateways), "[]")
    g.edge(internet, router)

    default = _default_node(inv)
    nodes = {n.name: n for n in inv.nodes}
    for n in inv.nodes:
        g.node(node_id("node", n.name), label(f"Proxmox node {n.name}", n.address))
        g.edge(router, node_id("node", n.name))

    declared = {(b.node or default, b.name): b for b in inv.bridges}
    present = {(b.node, b.name): b for b in live.bridges} if live else None
    keys = list(declared) + [k for k in (present or {}) if k not in declared]

    def bridge(key: tuple[str, str], note: str | None = None) -> str:
        node, name = key
        ident = node_id("bridge", node, name)
        if ident in g.nodes:
            return ident
        spec = declared.get(key)
        seen = present.get(key) if present is not None else None
        cidr = (seen.cidr if seen else None) or (spec.cidr if spec else None)
        if present is not None and seen is None:
            note = note or "declared, not present"
        elif spec is None:
            note = note or "not in the inventory"
        g.node(ident, label(name, cidr, spec.comment if spec else None, note))
        if node not in nodes:
            g.node(node_id("node", node), label(f"Proxmox node {node}"))
        ports = ", ".join(spec.ports) if spec and spec.ports else None
        absent = present is not None and seen is None
        g.edge(node_id("node", node), ident, ports, dashed=absent)
        return ident

    for key in keys:
        bridge(key)

    declared_guests = {g_.vmid: g_ for g_ in inv.guests}
    live_guests = {lg.vmid: lg for lg in live.guests} if live else {}
    for guest in inv.guests:
        seen_guest = live_guests.get(guest.vmid)
        note = None if live is None else (seen_guest.status if seen_guest else "not created")
        ident = g.node(
            node_id("guest", guest.vmid), _guest_label(guest.name, guest.kind, guest.vmid, note)
        )
        if seen_guest is not None:
            for name in seen_guest.bridges:
                g.edge(bridge((seen_guest.node, name), "not present"), ident)
        else:
            for net in guest.net:
                g.edge(bridge((guest.node, net.bridge)), ident, dashed=live is not None)
    for vmid, seen_guest in sorted(live_guests.items()):
        if vmid in declared_guests:
            continue
        ident = g.node(
            node_id("guest", vmid),
            _guest_label(seen_guest.name, seen_guest.kind, vmid, "not in the inventory"),
        )
        for name in seen_guest.bridges:
            g.edge(bridge((seen_guest.node, name), "not present"), ident)
    return g.render()


# -- storage -------------------------------------------------------------------------


def _keep_text(keep: KeepOptions | None) -> str | None:
    if keep is None:
        return None
    words = [
        f"{alias} {value}"
        for name, info in KeepOptions.model_fields.items()
        if (value := getattr(keep, name)) is not None and (alias := info.alias or name)
    ]
    return ", ".join(words) or None


def _guest_volumes(guest: Guest) -> list[tuple[str, str, str]]:
    """(key, storage, size) of each volume the inventory declares for ``guest``."""
    found: list[tuple[str, str, str]] = []
    if guest.rootfs is not None:
        found.append(("rootfs", guest.rootfs.storage, guest.rootfs.size))
    found.extend((d.slot, d.storage, d.size) for d in guest.disks)
    if guest.efidisk is not None:
        found.append(("efidisk0", guest.efidisk.storage, ""))
    if guest.tpmstate is not None:
        found.append(("tpmstate0", guest.tpmstate.storage, ""))
    return found


def backed_up(inv: Inventory) -> list[Guest]:
    """The guests `nixmox backup` takes: ``backups.guests`` (or all) minus ``exclude``."""
    if inv.backups is None:
        return []
    chosen = set(inv.backups.guests)
    return [
        g
        for g in inv.guests
        if (not chosen or g.name in chosen) and g.name not in inv.backups.exclude
    ]


def storage(inv: Inventory, live: Live | None = None, reason: str | None = None) -> str:
    """Pools, datasets under them, storages on the datasets, and the guests' disks on those.

    The backup storage gets a dashed vzdump edge from each guest it backs up.
    With ``live``, storages and guest volumes are the ones Proxmox reports.
    """
    g = _Graph("graph TD")
    _provenance(g, "storage", live, reason)
    pools = {p.name: p for p in inv.pools}
    for p in inv.pools:
        g.node(node_id("pool", p.name), label(f"ZFS pool {p.name}", p.layout), "[()]")

    dataset_notes = {d.name: d.comment for d in inv.datasets}
    declared_storages = {s.storage: s for s in inv.storages}
    if live is not None:
        storages = [
            (s.storage, s.type, s.dataset, s.path, s.content, s.storage in declared_storages)
            for s in live.storages
        ]
    else:
        storages = [
            (s.storage, s.type, s.dataset, s.path, tuple(s.content), True) for s in inv.storages
        ]
    names = set(dataset_notes)
    names.update(s[2] for s in storages if s[2])
    if inv.snapshots is not None:
        names.update(t.dataset for t in inv.snapshots.datasets)

    def dataset(name: str) -> str:
        ident = node_id("dataset", name)
        if ident in g.nodes:
            return ident
        g.node(ident, label(name, dataset_notes.get(name)))
        # Hang it under the nearest drawn ancestor, else under its pool.
        parts = name.split("/")
        parents = ["/".join(parts[:i]) for i in range(len(parts) - 1, 0, -1)]
        parent = next((p for p in parents if p in names), None)
        if parent is not None:
            g.edge(dataset(parent), ident)
        else:
            pool = parts[0]
            if pool not in pools:
                g.node(node_id("pool", pool), label(f"ZFS pool {pool}"), "[()]")
            g.edge(node_id("pool", pool), ident)
        return ident

    for name in sorted(names):
        dataset(name)

    backup_storage = inv.backups.storage if inv.backups else None
    for sid, stype, ds, path, content, known in storages:
        role = "vzdump backups" if sid == backup_storage else None
        ident = g.node(
            node_id("storage", sid),
            label(
                f"Storage {sid}",
                f"{stype}: {', '.join(content)}" if content else stype,
                path,
                role,
                None if known else "not in the inventory",
            ),
            "[[]]",
        )
        if ds:
            g.edge(dataset(ds), ident)
        else:
            for node in inv.nodes:
                g.node(node_id("node", node.name), label(f"Proxmox node {node.name}"))
                g.edge(node_id("node", node.name), ident, "local file system")

    live_guests = {lg.vmid: lg for lg in live.guests} if live else {}
    guests = [(x.vmid, x.name, x.kind, _guest_volumes(x)) for x in inv.guests]
    if live is not None:
        guests = [
            (x.vmid, x.name, x.kind, list(live_guests[x.vmid].volumes))
            if x.vmid in live_guests
            else (x.vmid, x.name, x.kind, _guest_volumes(x))
            for x in inv.guests
        ]
    for vmid, name, kind, volumes in guests:
        absent = live is not None and vmid not in live_guests
        note = "not created" if absent else None
        ident = g.node(node_id("guest", vmid), _guest_label(name, kind, vmid, note))
        for key, sid, size in volumes:
            if node_id("storage", sid) not in g.nodes:
                g.node(node_id("storage", sid), label(f"Storage {sid}", "not present"), "[[]]")
            g.edge(node_id("storage", sid), ident, f"{key} {size}".strip(), dashed=absent)

    if backup_storage is not None and inv.backups is not None:
        target = node_id("storage", backup_storage)
        if target not in g.nodes:
            g.node(target, label(f"Storage {backup_storage}", "vzdump backups"), "[[]]")
        for guest in backed_up(inv):
            g.edge(node_id("guest", guest.vmid), target, "vzdump", dashed=True)
    return g.render()


# -- updates and backups ---------------------------------------------------------------


def _timer(g: _Graph, job_name: str, spec: str | None) -> str:
    job = next(j for j in JOBS if j.name == job_name)
    when = spec if spec else "not scheduled: run by hand"
    return g.node(node_id("timer", job.name), label(job.timer, when), "{{}}")


def updates(inv: Inventory, live: Live | None = None, reason: str | None = None) -> str:
    """The schedules as a flow: snapshot timer to datasets, backup timer through vzdump to
    the backup storage (with its retention), and the three update jobs to what they update.
    """
    g = _Graph("flowchart TD")
    _provenance(g, "update and backup flow", live, reason)
    schedules = inv.schedules
    spec = (lambda key: getattr(schedules, key)) if schedules else (lambda key: None)

    if inv.snapshots is not None and inv.snapshots.datasets:
        timer = _timer(g, "snapshot", spec("snapshot"))
        for target in inv.snapshots.datasets:
            policy = inv.snapshots.policies.get(target.policy)
            ident = g.node(
                node_id("dataset", target.dataset),
                label(target.dataset, f"policy {target.policy}", _keep_text(policy)),
            )
            g.edge(timer, ident, "zfs snapshot -r" if target.recursive else "zfs snapshot")

    if inv.backups is not None:
        b = inv.backups
        if b.scheduler == "proxmox":
            timer = g.node(
                "timer_backup_proxmox",
                label("Proxmox backup job", spec("backup") or "no schedule"),
                "{{}}",
            )
        else:
            timer = _timer(g, "backup", spec("backup"))
        vzdump = g.node("vzdump", label("vzdump", f"mode {b.mode}, compress {b.compress}"))
        g.edge(timer, vzdump)
        for guest in backed_up(inv):
            g.edge(
                g.node(
                    node_id("guest", guest.vmid), _guest_label(guest.name, guest.kind, guest.vmid)
                ),
                vzdump,
                dashed=True,
            )
        store = g.node(
            node_id("storage", b.storage),
            label(f"Storage {b.storage}", _keep_text(b.keep) or "keep all"),
            "[[]]",
        )
        g.edge(vzdump, store, "archive, then prune")
        if b.verify is not None or spec("backup_verify"):
            # [backups.verify] only changes the defaults: a schedule alone runs it too.
            checks = b.verify or BackupVerify()
            verify = _timer(g, "backup-verify", spec("backup_verify"))
            first, last = checks.vmids
            g.edge(
                store,
                verify,
                f"restore newest into VMID {first}-{last}"
                + (f" on {checks.storage}" if checks.storage else ""),
            )

    internet = None
    if inv.nodes:
        internet = g.node("internet", label("Internet"), "(())")
        host_timer = _timer(g, "update-host", spec("update_host"))
        g.edge(internet, host_timer, "Debian and Proxmox packages")
        for n in inv.nodes:
            reboot = f"reboot {n.reboot}" + (
                f": {n.reboot_window}" if n.reboot == "window" and n.reboot_window else ""
            )
            node = g.node(node_id("node", n.name), label(f"Proxmox node {n.name}", reboot))
            if n.root_dataset:
                g.edge(
                    host_timer,
                    g.node(node_id("dataset", n.root_dataset), label(n.root_dataset)),
                    "snapshot first",
                )
            g.edge(host_timer, node, "apt dist-upgrade")

    for method, job_name, key in (
        ("nixos", "update-nixos", "update_nixos"),
        ("windows", "update-windows", "update_windows"),
    ):
        chosen = [x for x in inv.guests if x.update is not None and x.update.method == method]
        if not chosen:
            continue
        timer = _timer(g, job_name, spec(key))
        if internet is not None:
            g.edge(internet, timer, "flake inputs" if method == "nixos" else "Windows Update")
        for guest in chosen:
            assert guest.update is not None
            ident = g.node(
                node_id("guest", guest.vmid), _guest_label(guest.name, guest.kind, guest.vmid)
            )
            u = guest.update
            if method == "nixos":
                inputs = ", ".join(u.inputs) if u.inputs else "all inputs"
                via = u.via or ("ssh" if u.ssh else "agent")
                g.edge(timer, ident, f"nix flake update {inputs}; nixos-rebuild switch via {via}")
                g.edge(ident, ident, "health checks, else switch back")
            else:
                g.edge(timer, ident, "Windows Update via QEMU guest agent")
                g.edge(ident, ident, f"reboot: {guest.reboot.policy}")
    return g.render()


def diagram(kind: Kind, inv: Inventory, live: Live | None = None, reason: str | None = None) -> str:
    """The mermaid text of diagram ``kind``."""
    draw = {"network": network, "storage": storage, "updates": updates}[kind]
    return draw(inv, live, reason)


# -- HTML -----------------------------------------------------------------------------


def html(mermaid_text: str, title: str, script: str | None = None) -> str:
    """A self-contained HTML page showing the diagram.

    The mermaid source sits in ``<pre class="mermaid">``. With ``script``
    (the text of mermaid's ``mermaid.min.js``: the packaged one, see
    :func:`mermaid_script`) the page inlines it and renders the diagram
    offline; without it, it shows the source, which any mermaid viewer renders.
    The page's Content-Security-Policy lets it load nothing from anywhere.
    """
    escaped_title = _html.escape(title)
    runner = ""
    if script is not None:
        # "</script" inside the inlined code would end the element early.
        safe = script.replace("</script", "<\\/script")
        runner = (
            f"<script>{safe}</script>\n"
            "<script>mermaid.initialize({startOnLoad: true, securityLevel: 'strict'});</script>\n"
        )
    else:
        runner = "<p>mermaid's script is not embedded: this page shows the diagram's source.</p>\n"
    return (
        "<!doctype html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">\n'
        f"<title>{escaped_title}</title>\n"
        "<style>body{font-family:sans-serif;margin:2em} pre{white-space:pre}</style>\n"
        "</head>\n<body>\n"
        f"<h1>{escaped_title}</h1>\n"
        f'<pre class="mermaid">\n{_html.escape(mermaid_text)}</pre>\n'
        f"{runner}"
        "</body>\n</html>\n"
    )


#: Nothing from the network or other files: inline script and styles only (mermaid
#: writes its own <style> into the SVG), images and fonts only as data: URLs.
_CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "img-src data:; font-src data:"
)


def mermaid_script() -> str:
    """The packaged mermaid browser bundle (``vendor/mermaid.min.js``, see its README)."""
    from importlib.resources import files

    return files("nixmox.observe").joinpath("vendor/mermaid.min.js").read_text(encoding="utf-8")
