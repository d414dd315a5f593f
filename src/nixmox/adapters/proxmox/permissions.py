"""What the token may do: ``/access/permissions`` against a list of needs.

A :class:`Need` is a privilege on an ACL path and why it is needed; the features
derive their needs (:mod:`nixmox.provision.privileges` for a plan,
:mod:`nixmox.updates.privileges` for the update jobs). :func:`check` is pure;
:func:`missing` reads what the token may do once and compares. Each missing
privilege is named with the path it is needed on and why, before anything
fails halfway.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from nixmox.adapters.proxmox.client import Proxmox


@dataclass(frozen=True)
class Need:
    """A privilege (``A|B``: either will do; ``root@pam``: only that user) on an ACL path."""

    path: str
    privilege: str
    why: str


@dataclass(frozen=True)
class Missing:
    """A need the token does not hold."""

    need: Need

    def __str__(self) -> str:
        if self.need.privilege == "root@pam":
            return f"{self.need.why}: only root@pam may do that (or use a PCI resource mapping)"
        privilege = " or ".join(self.need.privilege.split("|"))
        return f"{privilege} on {self.need.path} ({self.need.why})"

    def as_json(self) -> dict[str, str]:
        return {"path": self.need.path, "privilege": self.need.privilege, "why": self.need.why}


def _ancestors(path: str) -> Iterable[str]:
    parts = path.strip("/").split("/")
    for end in range(len(parts), 0, -1):
        yield "/" + "/".join(parts[:end])
    yield "/"


def check(
    needs: Iterable[Need], granted: Mapping[str, Mapping[str, Any]], user: str
) -> list[Missing]:
    """Which needs ``granted`` (``/access/permissions``) does not cover; pure."""
    missing: list[Missing] = []
    seen: set[tuple[str, str]] = set()
    for need in needs:
        key = (need.path, need.privilege)
        if key in seen:
            continue
        seen.add(key)
        if need.privilege == "root@pam":
            if user.split("!", 1)[0] != "root@pam":
                missing.append(Missing(need))
            continue
        # "A|B": either privilege will do (e.g. PVE 9's and PVE 8's name for the same right).
        choices = need.privilege.split("|")
        if not any(
            granted.get(p, {}).get(choice) for p in _ancestors(need.path) for choice in choices
        ):
            missing.append(Missing(need))
    return missing


def missing(api: Proxmox, needs: Iterable[Need]) -> list[Missing]:
    """The needs the token (or user) does not hold, from one ``/access/permissions``."""
    granted = api.get("/access/permissions") or {}
    return check(needs, granted, api.conn.token_id)
