"""The process environment: secrets taken out of it, and what children get.

``NIXMOX_PVE_TOKEN``, ``NIXMOX_PVE_PASSWORD`` and ``NIXMOX_NOTIFY_URLS`` (apprise
URLs carry tokens) are convenient for tests and CI, but every child (zfs, ssh,
nixos-rebuild, apt's maintainer scripts) would inherit them. The command-line
entry point moves them out of ``os.environ`` into this module as soon as nixmox
starts, and every command nixmox runs gets an environment without them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping

#: Variables that hold a secret itself (not a path to one).
SECRET_VARIABLES = ("NIXMOX_PVE_TOKEN", "NIXMOX_PVE_PASSWORD", "NIXMOX_NOTIFY_URLS")

_taken: dict[str, str] = {}


def take_secrets(environ: MutableMapping[str, str] | None = None) -> None:
    """Move the secret variables out of ``environ`` (default: this process's) into memory."""
    env = os.environ if environ is None else environ
    for name in SECRET_VARIABLES:
        value = env.pop(name, None)
        if value is not None:
            _taken[name] = value  # set but empty can mean something ("no notifications")


def secret(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """A secret variable's value: from ``environ`` when given, else from this process
    (its environment, or what :func:`take_secrets` moved out of it)."""
    if environ is not None:
        return environ.get(name) or None
    return os.environ.get(name) or _taken.get(name)


def variable(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """A secret variable as set (empty included), None when it is not set at all:
    from ``environ`` when given, else from this process or what was taken out of it."""
    if environ is not None:
        return environ.get(name)
    found = os.environ.get(name)
    return found if found is not None else _taken.get(name)


def child_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a command nixmox runs: this process's, minus the secrets."""
    env = {k: v for k, v in os.environ.items() if k not in SECRET_VARIABLES}
    if extra:
        env.update(extra)
    return env
