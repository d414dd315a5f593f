"""Doctor areas that ask the Proxmox API: ``proxmox`` and ``guests``."""

from __future__ import annotations

from typing import Any

from nixmox.adapters.proxmox.client import AuthError, NoAnswer, Proxmox, TlsError
from nixmox.adapters.proxmox.cluster import GuestRow, mismatch, read_guests
from nixmox.adapters.proxmox.fanout import per_node
from nixmox.adapters.proxmox.permissions import Missing, grant
from nixmox.adapters.proxmox.settings import Connection, connection
from nixmox.core.clock import SYSTEM_CLOCK, Clock
from nixmox.core.errors import NixmoxError
from nixmox.core.verdict import Check, Status
from nixmox.inventory.model import Guest, Inventory


def check_proxmox(
    inv: Inventory, clock: Clock = SYSTEM_CLOCK
) -> tuple[list[Check], Proxmox | None]:
    """Is the API reachable over verified TLS, and does it take our token?
    (``clock``: where the pauses between retries of an unreachable API pass.)"""
    try:
        conn = connection(inv.proxmox)
    except NixmoxError as exc:
        return [
            Check(
                "proxmox-connection",
                Status.FAIL,
                "[proxmox]",
                str(exc),
                "set the [proxmox] keys or the NIXMOX_PVE_* variables",
            )
        ], None
    subject = conn.url
    try:
        api = Proxmox(conn, clock=clock)
        version: dict[str, Any] = api.get("/version")
    except AuthError as exc:
        # The server answered over verified TLS: it is reachable; the credentials are not right.
        return [
            Check(
                "proxmox-reachable",
                Status.PASS,
                subject,
                f"answers; TLS verified with {conn.verified_by}",
            ),
            Check("proxmox-token", Status.FAIL, conn.token_id, str(exc), _credentials_fix(conn)),
        ], None
    except NixmoxError as exc:
        return [
            Check("proxmox-reachable", Status.FAIL, subject, str(exc), _connection_fix(conn, exc))
        ], None
    how = conn.verified_by
    checks = [
        Check(
            "proxmox-reachable",
            Status.PASS,
            subject,
            f"Proxmox VE {version.get('version', '?')} (release {version.get('release', '?')}), "
            f"TLS verified with {how}, token {conn.token_id} accepted",
        ),
    ]
    major = str(version.get("version", "0")).split(".", 1)[0]
    if major.isdigit() and int(major) < 8:
        checks.append(
            Check(
                "proxmox-version",
                Status.WARN,
                subject,
                f"Proxmox VE {version.get('version')} is older than 8",
                "upgrade to Proxmox VE 8 or 9; nixmox targets those",
            )
        )
    return checks, api


def _credentials_fix(conn: Connection) -> str:
    if conn.password is not None:
        return f"check the user {conn.token_id} and its password ({conn.secret_source})"
    user = conn.token_id.split("!", 1)[0]
    return (
        f"check the token id and its secret ({conn.secret_source}); `pveum user token list {user}` "
        "on the node lists the user's tokens; a lost secret cannot be shown again: make a new token"
    )


def _connection_fix(conn: Connection, exc: NixmoxError) -> str:
    if isinstance(exc, TlsError):
        return (
            "if the SHA-256 above is your server's (`pvenode cert info` on the node shows it), "
            "pin it with proxmox.fingerprint, or set proxmox.ca_file to the CA that signed it "
            "(/etc/pve/pve-root-ca.pem on the node)"
        )
    if isinstance(exc, NoAnswer):
        return (
            f"check that pveproxy answers on {conn.host} (`systemctl status pveproxy` on the node) "
            "and that nothing between drops the traffic"
        )
    return (
        f"check the url's host and port (Proxmox listens on 8006) and that {conn.host} "
        "is reachable from here"
    )


def check_guests(inv: Inventory, api: Proxmox) -> list[Check]:
    """Every declared guest exists, on its node, of its kind, and is not locked."""
    try:
        rows = read_guests(api)
    except NixmoxError as exc:
        return [
            Check(
                "guest-exists",
                Status.UNKNOWN,
                "/cluster/resources",
                str(exc),
                "check the token's VM.Audit privilege",
            )
        ]
    # Each guest's own reads (pending, the agent's ping) run concurrently, bounded
    # per node: one by one they would take a second per 50 guests at 20 ms.
    present = [
        (guest, row)
        for guest in inv.guests
        if (row := rows.get(guest.vmid)) is not None
        and mismatch(row, guest.vmid, guest.kind, guest.node) is None
    ]
    read: dict[int, tuple[Check | None, Check]] = {}

    def read_guest(item: tuple[Guest, GuestRow]) -> None:
        guest, found = item
        subject = f"{guest.name} ({guest.vmid})"
        agent = None
        if guest.agent and found.type == "qemu":
            agent = _agent(api, found.path, subject, found.status == "running")
        pending = pending_check(_pending(api, found.path), subject, guest.vmid, found.type)
        read[guest.vmid] = (agent, pending)

    per_node(read_guest, present, lambda item: item[1].node)
    checks: list[Check] = []
    for guest in inv.guests:
        subject = f"{guest.name} ({guest.vmid})"
        found = rows.get(guest.vmid)
        wrong = mismatch(found, guest.vmid, guest.kind, guest.node)
        if found is None or wrong is not None:
            # Missing is only WARN: plan and apply create it; another guest in its place is FAIL.
            checks.append(
                Check(
                    "guest-exists",
                    Status.WARN if found is None else Status.FAIL,
                    subject,
                    str(wrong),
                    "run `nixmox plan` and `nixmox apply` to create it"
                    if found is None
                    else "fix the inventory's kind/node or free the vmid",
                )
            )
            continue
        checks.append(
            Check(
                "guest-exists",
                Status.PASS,
                subject,
                f"{found.type} on {found.node}, {found.status}",
            )
        )
        agent, pending = read[guest.vmid]
        if agent is not None:
            checks.append(agent)
        checks.append(pending)
        if found.lock:
            checks.append(
                Check(
                    "guest-lock",
                    Status.WARN,
                    subject,
                    f"locked ({found.lock})",
                    "wait for the operation holding the lock to finish",
                )
            )
    return checks


def _agent(api: Proxmox, base: str, subject: str, running: bool) -> Check:
    """Does the guest agent answer a ping (only asked of a running VM)?"""
    if not running:
        return Check("guest-agent", Status.INFO, subject, "not running: agent not asked")
    try:
        api.post(f"{base}/agent/ping")
    except NixmoxError as exc:
        return Check(
            "guest-agent",
            Status.WARN,
            subject,
            f"the guest agent does not answer: {exc}",
            "install and start qemu-guest-agent in the guest (virtio-win's guest agent on "
            "Windows; services.qemuGuest.enable = true on NixOS)",
        )
    return Check("guest-agent", Status.PASS, subject, "guest agent answers")


def _pending(api: Proxmox, base: str) -> list[dict[str, Any]] | str:
    try:
        pending: list[dict[str, Any]] = api.get(f"{base}/pending")
    except NixmoxError as exc:
        return str(exc)
    return pending


def pending_check(pending: list[dict[str, Any]] | str, subject: str, vmid: int, kind: str) -> Check:
    """Config changes that wait for the guest's next reboot (``GET .../pending``)."""
    if isinstance(pending, str):
        return Check(
            "guest-pending",
            Status.UNKNOWN,
            subject,
            pending,
            "check the token's VM.Audit privilege",
        )
    changes = [
        f"{p['key']} deleted"
        if p.get("delete")
        else f"{p['key']} {p.get('value', '-')} -> {p['pending']}"
        for p in pending
        if "pending" in p or p.get("delete")
    ]
    if not changes:
        return Check("guest-pending", Status.PASS, subject, "no changes waiting for a reboot")
    tool = "pct" if kind == "lxc" else "qm"
    return Check(
        "guest-pending",
        Status.WARN,
        subject,
        "waiting for a reboot: " + ", ".join(changes),
        f"`{tool} reboot {vmid}` when convenient (a shutdown and start, not a guest-side reboot)",
    )


def check_token_privileges(inv: Inventory, api: Proxmox) -> list[Check]:
    """``token-privileges``: what the token may do against what the inventory needs now,
    derived the way each job's preflight derives it: ``apply`` for the plan it would
    make, and every job the inventory runs on a timer (``doctor/roles.py``)."""
    from nixmox.doctor.roles import missing_by_job, scheduled_jobs

    jobs = ["apply", *scheduled_jobs(inv)]
    try:
        missing = missing_by_job(inv, api, jobs)
    except NixmoxError as exc:
        return [
            Check(
                "token-privileges",
                Status.UNKNOWN,
                api.conn.token_id,
                str(exc),
                "check that the API answers and the token may read /access/permissions",
            )
        ]
    if not missing:
        return [
            Check(
                "token-privileges",
                Status.PASS,
                api.conn.token_id,
                f"holds every privilege {', '.join(jobs)} need now",
            )
        ]
    # One line per missing privilege, with every job that needs it.
    by_need: dict[tuple[str, str, str], tuple[Missing, list[str]]] = {}
    for m, job in missing:
        key = (m.need.path, m.need.privilege, m.need.why if m.need.root_only else "")
        entry = by_need.setdefault(key, (m, []))
        if job not in entry[1]:
            entry[1].append(job)
    return [
        Check(
            "token-privileges",
            Status.FAIL,
            api.conn.token_id,
            f"missing for {', '.join(jobs_of)}: {m}",
            _fix(m, api.conn.token_id),
        )
        for m, jobs_of in by_need.values()
    ]


def _fix(m: Missing, token_id: str) -> str:
    """A runnable grant for one missing privilege, or what to do instead of a root-only key."""
    if m.need.root_only:
        return (
            "a token never passes root@pam's checks: use a PCI resource mapping for passthrough "
            "(`nixmox token` prints how), or log in as root@pam with a password "
            "(proxmox.user, proxmox.password_file)"
        )
    return "grant it (all at once: `nixmox token`): " + "; ".join(
        grant([m.need]).commands(token_id)
    )
