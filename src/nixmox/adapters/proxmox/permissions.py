"""What the token may do: ``/access/permissions`` against a list of needs.

A :class:`Need` is a privilege on an ACL path and why it is needed; the features
derive their needs from what one run will do (``provision/privileges.py`` for a
plan, ``backup/privileges.py``, ``updates/privileges.py``, ...). :func:`check`
is pure; :func:`missing` reads what the token may do once and compares. Each
missing privilege is named with the path it is needed on and why, before
anything fails halfway. :func:`grant_commands` turns needs into the ``pveum``
lines that grant exactly them.

Two rules of Proxmox shape this module (pve-access-control,
``PVE/RPCEnvironment.pm``: ``permissions``/``check``; the root-only checks
compare ``$authuser eq 'root@pam'`` in qemu-server and pve-container):

- An API token is never root: its user id is ``user@realm!name``, so a check
  for exactly ``root@pam`` refuses even ``root@pam!name``. Only a password
  (ticket) login as ``root@pam`` passes one.
- A privilege-separated token holds what both the token's and its user's ACLs
  grant; the printed ACL lines name both.
"""

from __future__ import annotations

import hashlib
import logging
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nixmox.adapters.proxmox.client import Proxmox
from nixmox.core.errors import NixmoxError
from nixmox.core.words import plural

log = logging.getLogger(__name__)

#: The only user id a root-only check accepts.
ROOT = "root@pam"


@dataclass(frozen=True)
class Need:
    """A privilege (``A|B``: either will do; ``root@pam``: only that login) on an ACL path."""

    path: str
    privilege: str
    why: str

    @property
    def root_only(self) -> bool:
        return self.privilege == ROOT


@dataclass(frozen=True)
class Missing:
    """A need the token does not hold."""

    need: Need

    def __str__(self) -> str:
        if self.need.root_only:
            return (
                f"{self.need.why}: only a root@pam password login may do that, "
                "never an API token (not even root@pam's)"
            )
        privilege = " or ".join(self.need.privilege.split("|"))
        return f"{privilege} on {self.need.path} ({self.need.why})"

    def as_json(self) -> dict[str, str]:
        return {"path": self.need.path, "privilege": self.need.privilege, "why": self.need.why}


def _ancestors(path: str) -> Iterable[str]:
    parts = [p for p in path.strip("/").split("/") if p]
    for end in range(len(parts), 0, -1):
        yield "/" + "/".join(parts[:end])
    yield "/"


def is_root(user: str) -> bool:
    """Whether root-only checks accept ``user``: the ``root@pam`` login, never a token."""
    return user == ROOT


def holds(granted: Mapping[str, Mapping[str, Any]], path: str, privilege: str) -> bool:
    """Whether ``granted`` (``/access/permissions``) covers ``privilege`` (``A|B``) on ``path``."""
    choices = privilege.split("|")
    return any(granted.get(p, {}).get(choice) for p in _ancestors(path) for choice in choices)


def check(
    needs: Iterable[Need], granted: Mapping[str, Mapping[str, Any]], user: str
) -> list[Missing]:
    """Which needs ``granted`` (``/access/permissions``) does not cover; pure."""
    missing: list[Missing] = []
    seen: set[tuple[str, str]] = set()
    for need in needs:
        key = (need.path, need.privilege if not need.root_only else need.why)
        if key in seen:
            continue
        seen.add(key)
        if need.root_only:
            if not is_root(user):
                missing.append(Missing(need))
        elif not holds(granted, need.path, need.privilege):
            missing.append(Missing(need))
    return missing


def granted(api: Proxmox) -> Mapping[str, Mapping[str, Any]]:
    """What the token (or user) holds, per path: one ``/access/permissions``."""
    answer = api.get("/access/permissions") or {}
    return answer if isinstance(answer, Mapping) else {}


Granted = Mapping[str, Mapping[str, Any]]


def missing(api: Proxmox, needs: Iterable[Need], held: Granted | None = None) -> list[Missing]:
    """The needs the token (or user) does not hold, from one ``/access/permissions``
    (``held``: that answer, when the caller has read it already)."""
    return check(needs, granted(api) if held is None else held, api.conn.token_id)


def refusal(command: str, who: str, lacking: Sequence[Missing]) -> str:
    """The message of a run refused by its preflight: one line per missing privilege."""
    lines = [f"{command}: {who} lacks {plural(len(lacking), 'privilege')}; nothing was changed:"]
    lines += [f"missing: {m}" for m in lacking]
    return "\n".join(lines)


# -- the grant, as commands ---------------------------------------------------------------

#: Role name prefix per top-level ACL path, in the order the grant lines are printed.
_KINDS = {
    "vms": "Guest",
    "storage": "Storage",
    "sdn": "Net",
    "mapping": "Mapping",
    "nodes": "Node",
    "pool": "Pool",
}


def _depth_key(path: str) -> tuple[int, int, str]:
    """Smallest paths first: /vms/100 before /nodes/pve1 before /."""
    parts = [p for p in path.split("/") if p]
    kind = list(_KINDS).index(parts[0]) if parts and parts[0] in _KINDS else len(_KINDS)
    return (-len(parts), kind, path)


@dataclass(frozen=True)
class Grant:
    """The roles and ACL entries that give a token exactly a set of needs."""

    roles: dict[str, tuple[str, ...]]  # role id -> privileges
    acls: tuple[tuple[str, str], ...]  # (path, role id), smallest paths first
    root_only: tuple[Need, ...]  # what no grant can give a token

    def commands(self, token_id: str) -> list[str]:
        """``pveum role add`` and ``pveum acl modify`` lines, runnable as printed."""
        user = token_id.split("!", 1)[0]
        lines = [
            f"pveum role add {name} --privs {shlex.quote(','.join(privs))}"
            for name, privs in self.roles.items()
        ]
        lines += [
            f"pveum acl modify {shlex.quote(path)} --roles {role} "
            f"--users {shlex.quote(user)} --tokens {shlex.quote(token_id)}"
            for path, role in self.acls
        ]
        return lines


def role_name(prefix: str, path: str, privileges: Iterable[str]) -> str:
    """The role id for exactly ``privileges``: its kind (from ``path``) and a hash of the set.

    The name follows from the privileges alone, so two nixmox versions (or two
    inventories) never print one role id with different privileges: a role that
    exists under that name already holds exactly these, and a changed set gets a
    new name instead of silently keeping the old one's privileges.
    """
    parts = [p for p in path.split("/") if p]
    kind = _KINDS.get(parts[0], "Cluster") if parts else "Cluster"
    digest = hashlib.sha256(",".join(sorted(set(privileges))).encode()).hexdigest()[:10]
    return f"{prefix}{kind}-{digest}"


def grant(needs: Iterable[Need], prefix: str = "Nixmox") -> Grant:
    """The smallest grant covering ``needs``: per path exactly its privileges.

    For ``A|B`` the first name is granted (PVE 9's; PVE 8 knows the second).
    Paths with the same set of privileges (and kind) share one role
    (:func:`role_name`).
    """
    by_path: dict[str, set[str]] = {}
    root: list[Need] = []
    either: list[Need] = []
    for need in needs:
        if need.root_only:
            if need.why not in {r.why for r in root}:
                root.append(need)
        elif "|" in need.privilege:
            either.append(need)
        else:
            by_path.setdefault(need.path, set()).add(need.privilege)
    for need in sorted(either, key=lambda n: n.privilege.count("|")):
        # "A|B" is met already when another need grants one of them here or above; the
        # narrowest choices go first, so "A|B|C" can reuse what "B|C" granted.
        choices = need.privilege.split("|")
        if not any(c in by_path.get(a, ()) for a in _ancestors(need.path) for c in choices):
            by_path.setdefault(need.path, set()).add(choices[0])
    # A privilege held on a path also holds below it (ACLs propagate): drop the repeats.
    for path in list(by_path):
        inherited = set().union(*(by_path.get(a, set()) for a in list(_ancestors(path))[1:]))
        by_path[path] -= inherited
        if not by_path[path]:
            del by_path[path]
    roles: dict[str, tuple[str, ...]] = {}
    acls: list[tuple[str, str]] = []
    for path in sorted(by_path, key=_depth_key):
        privs = tuple(sorted(by_path[path]))
        name = role_name(prefix, path, privs)
        roles[name] = privs
        acls.append((path, name))
    return Grant(roles, tuple(acls), tuple(root))


class PrivilegesMissing(NixmoxError):
    """A run refused by its preflight: nothing was changed."""


def require(api: Proxmox, needs: Iterable[Need], command: str, held: Granted | None = None) -> None:
    """Refuse ``command``, one line per missing privilege, before anything changed."""
    lacking = missing(api, needs, held)
    if lacking:
        raise PrivilegesMissing(refusal(command, api.conn.token_id, lacking))


def preflight(
    api: Proxmox,
    needs: Iterable[Need],
    command: str,
    *,
    dry_run: bool,
    held: Granted | None = None,
) -> None:
    """:func:`require` for a real run; a dry run only warns, so its plan still shows.
    ``held``: what :func:`granted` answered, when the caller read it already."""
    if not dry_run:
        require(api, needs, command, held)
        return
    for lacking in missing(api, needs, held):
        log.warning("%s would fail: missing %s", command, lacking)
