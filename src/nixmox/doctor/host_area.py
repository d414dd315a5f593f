"""Doctor area ``host``: the hardware found vs ``nodes.hardware``, and what the guests ask.

Pure verdicts over :class:`HostFacts` (read under ``--host-root``) and the
inventory: CPU model, cores and threads, memory, the expected PCI devices
with the class their role needs, and the declared guests' cores and memory
against the host's (overcommit reported, not forbidden).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from nixmox.adapters.hostfacts import HostFacts, read_host
from nixmox.adapters.hostfs import HostFs
from nixmox.core.verdict import Check, Status
from nixmox.core.words import plural
from nixmox.inventory.model import Guest, Hardware, Inventory
from nixmox.passthrough.checks import HOST_RESERVE_MIB, ROLE_CLASSES, host_root_is_node

#: The kernel's MemTotal is below the installed RAM by what firmware and kernel keep.
MEMORY_TOLERANCE = 0.9
#: Proxmox's defaults when a guest declares no memory (MiB).
DEFAULT_MEMORY = {"vm": 2048, "lxc": 512}


def _same(a: str, b: str) -> bool:
    return " ".join(a.split()).lower() == " ".join(b.split()).lower()


def hardware_checks(facts: HostFacts, hw: Hardware, node: str) -> list[Check]:
    """What the inventory says the host has, against what it has."""
    out = []
    fix = f"update nodes.hardware for {node} in the inventory if the hardware changed"
    if hw.cpu is not None:
        if facts.cpu_model is None:
            out.append(
                Check("host-cpu", Status.UNKNOWN, node, "no model name in /proc/cpuinfo", fix)
            )
        elif _same(facts.cpu_model, hw.cpu):
            out.append(Check("host-cpu", Status.PASS, node, facts.cpu_model))
        else:
            out.append(
                Check(
                    "host-cpu",
                    Status.WARN,
                    node,
                    f"CPU is {facts.cpu_model}, the inventory expects {hw.cpu}",
                    fix,
                )
            )
    if hw.cores is not None or hw.threads is not None:
        cores = plural(facts.cores, "core") if facts.cores else "? cores"
        found = f"{cores}, {plural(facts.threads, 'thread')}"
        wrong = (hw.cores is not None and facts.cores != hw.cores) or (
            hw.threads is not None and facts.threads != hw.threads
        )
        if wrong:
            out.append(
                Check(
                    "host-cores",
                    Status.WARN,
                    node,
                    f"{found}; the inventory expects {hw.cores or '?'} cores, "
                    f"{hw.threads or '?'} threads",
                    "check SMT and core settings in the firmware setup, or " + fix,
                )
            )
        else:
            out.append(Check("host-cores", Status.PASS, node, found))
    if hw.memory_gib is not None:
        out.append(_memory(facts, hw.memory_gib, node, fix))
    for expected in hw.pci:
        out.append(_pci(facts, expected.address.lower(), expected.role, node))
    return out


def _memory(facts: HostFacts, expected_gib: int, node: str, fix: str) -> Check:
    if facts.mem_total_kib is None:
        return Check("host-memory", Status.UNKNOWN, node, "no MemTotal in /proc/meminfo", fix)
    gib = facts.mem_total_kib / 1024**2
    found = f"{gib:.1f} GiB usable"
    if expected_gib * MEMORY_TOLERANCE <= gib <= expected_gib + 1:
        return Check("host-memory", Status.PASS, node, f"{found} of {expected_gib} GiB")
    return Check(
        "host-memory",
        Status.WARN,
        node,
        f"{found}, the inventory expects {expected_gib} GiB",
        "look for a failed or unseated DIMM (`dmidecode -t memory`), or " + fix,
    )


def _pci(facts: HostFacts, address: str, role: str, node: str) -> Check:
    subject = f"{node} {address}"
    pci = facts.pci.get(address)
    if pci is None:
        return Check(
            "host-pci",
            Status.FAIL,
            subject,
            f"no PCI device at {address} (expected a {role})",
            "check the card is seated and powered (`lspci -nn`); addresses move when cards "
            "change slots: correct nodes.hardware.pci",
        )
    wanted = ROLE_CLASSES.get(role, ())
    if wanted and not pci.class_code.lower().startswith(wanted):
        return Check(
            "host-pci",
            Status.FAIL,
            subject,
            f"{pci.ids} class {pci.class_code} is not a {role}",
            f"`lspci -nns {address}` shows what is there; correct nodes.hardware.pci",
        )
    return Check("host-pci", Status.PASS, subject, f"{pci.ids} class {pci.class_code}, {role}")


def allocation_checks(facts: HostFacts, guests: Sequence[Guest], node: str) -> list[Check]:
    """Declared guests' cores and memory against the host's threads and memory."""
    out = []
    if facts.threads:
        vcpus = {g.name: (g.cores or 1) * (g.sockets or 1) for g in guests}
        total = sum(vcpus.values())
        too_big = [n for n, v in vcpus.items() if v > facts.threads]
        share = f"{plural(total, 'vCPU')} declared on {plural(facts.threads, 'thread')}"
        if too_big:
            out.append(
                Check(
                    "host-cpu-allocation",
                    Status.FAIL,
                    node,
                    f"{', '.join(too_big)} declares more vCPUs than the host has threads: "
                    "Proxmox refuses to start it",
                    f"lower cores of {', '.join(too_big)} to at most {facts.threads}",
                )
            )
        elif total > facts.threads:
            out.append(
                Check(
                    "host-cpu-allocation",
                    Status.INFO,
                    node,
                    f"{share}: overcommitted {total / facts.threads:.1f}:1 "
                    "(fine while guests are mostly idle)",
                    "pin latency-sensitive guests (affinity) to their own cores",
                )
            )
        else:
            out.append(Check("host-cpu-allocation", Status.PASS, node, share))
    if facts.mem_total_kib:
        host_mib = facts.mem_total_kib // 1024
        total = sum(g.memory or DEFAULT_MEMORY[g.kind] for g in guests)
        share = f"{total} MiB declared of {host_mib} MiB"
        if total + HOST_RESERVE_MIB <= host_mib:
            out.append(Check("host-memory-allocation", Status.PASS, node, share))
        else:
            out.append(
                Check(
                    "host-memory-allocation",
                    Status.WARN,
                    node,
                    f"{share} (the host keeps {HOST_RESERVE_MIB} MiB): overcommitted; VMs with "
                    "passed devices pin all their memory, the others can be swapped or OOM-killed",
                    "lower guests' memory, enable ballooning for the guests without passthrough, "
                    "or add RAM",
                )
            )
    return out


def check_host(inv: Inventory, host_root: Path) -> list[Check]:
    """The host area for the node seen under ``host_root``."""
    facts = read_host(HostFs(host_root))
    local = [n for n in inv.nodes if host_root_is_node(facts, inv, n.name)]
    if not local:
        where = facts.hostname or "this host"
        return [
            Check(
                "host-cpu",
                Status.INFO,
                where,
                "not one of the inventory's nodes: nothing to compare",
                "run doctor on a node, or pass its tree with --host-root",
            )
        ]
    node = local[0]
    out = hardware_checks(facts, node.hardware, node.name) if node.hardware else []
    out += allocation_checks(facts, [g for g in inv.guests if g.node == node.name], node.name)
    return out
