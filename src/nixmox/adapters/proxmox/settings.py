"""Connection settings for the Proxmox API: the inventory, then NIXMOX_PVE_*.

The token secret is read here (from ``NIXMOX_PVE_TOKEN`` or ``token_file``),
registered for masking at once, and never shown: not in ``repr``, logs or
error messages.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from nixmox.core.environment import secret
from nixmox.core.errors import ConfigError
from nixmox.core.log import register_secret
from nixmox.inventory.model import ProxmoxSettings

#: The credential name under $CREDENTIALS_DIRECTORY (systemd LoadCredential=).
CREDENTIAL = "nixmox-pve-token"


@dataclass(frozen=True)
class Connection:
    """Everything needed to talk to one Proxmox API endpoint."""

    url: str
    token_id: str
    token: str = field(repr=False)
    ca_file: str | None = None
    fingerprint: str | None = None
    #: A password login instead of a token: ``token_id`` then holds USER@REALM.
    password: str | None = field(default=None, repr=False)
    #: Where the secret (token or password) was read from, in words: an
    #: authentication failure names it, never the secret.
    secret_source: str = ""

    @property
    def verified_by(self) -> str:
        """What verifies the server's certificate, in words (doctor says it)."""
        if self.fingerprint:
            # The pin replaces CA validation (client._pinned_adapter): say so.
            unused = f"; CA file {self.ca_file} not used" if self.ca_file else ""
            return f"the pinned SHA-256 fingerprint {self.fingerprint}{unused}"
        if self.ca_file:
            return f"CA file {self.ca_file}"
        return "the system trust store"

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or 8006


#: A SHA-256 certificate fingerprint as Proxmox shows it: 32 hex pairs with colons.
FINGERPRINT = re.compile(r"([0-9A-Fa-f]{2}:){31}[0-9A-Fa-f]{2}")


def _check_fingerprint(value: str, source: str) -> str:
    if not FINGERPRINT.fullmatch(value):
        pairs = value.count(":") + 1
        kind = {16: " (an MD5 fingerprint?)", 20: " (a SHA-1 fingerprint?)"}.get(pairs, "")
        raise ConfigError(
            f"{source}: not a SHA-256 certificate fingerprint{kind}; expected 32 hex pairs "
            "AA:BB:...:FF (Proxmox shows it under the node's Certificates)"
        )
    return value


def _read_secret_file(path: str, key: str = "proxmox.token_file") -> str:
    try:
        info = os.stat(path)
    except OSError as exc:
        raise ConfigError(f"{key} {path}: {exc.strerror}") from None
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"{key} {path} is readable by group or others "
            f"(mode {stat.filemode(info.st_mode)}); fix with: chmod 600 {path}"
        )
    try:
        secret = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{key} {path}: {exc.strerror}") from None
    if not secret:
        raise ConfigError(f"{key} {path} is empty")
    return secret


def connection(settings: ProxmoxSettings, environ: Mapping[str, str] | None = None) -> Connection:
    """Resolve the connection from ``[proxmox]`` and the environment overrides."""
    env = os.environ if environ is None else environ

    def pick(var: str, value: str | None) -> str | None:
        return env.get(var) or value

    url = pick("NIXMOX_PVE_URL", settings.url)
    token_id = pick("NIXMOX_PVE_TOKEN_ID", settings.token_id)
    if not url:
        raise ConfigError("no Proxmox API url: set proxmox.url or NIXMOX_PVE_URL")
    if not url.startswith("https://"):
        raise ConfigError(f"Proxmox API url {url!r} must start with https:// (TLS is always on)")
    ca_file = pick("NIXMOX_PVE_CA_FILE", settings.ca_file)
    if ca_file is not None and not os.path.isfile(ca_file):
        named = "NIXMOX_PVE_CA_FILE" if env.get("NIXMOX_PVE_CA_FILE") else "proxmox.ca_file"
        raise ConfigError(f"{named} {ca_file}: no such file")
    fingerprint = pick("NIXMOX_PVE_FINGERPRINT", settings.fingerprint)
    if fingerprint is not None:
        source = (
            "NIXMOX_PVE_FINGERPRINT" if env.get("NIXMOX_PVE_FINGERPRINT") else "proxmox.fingerprint"
        )
        _check_fingerprint(fingerprint, source)
    user = pick("NIXMOX_PVE_USER", settings.user)
    if env.get("NIXMOX_PVE_USER") and not env.get("NIXMOX_PVE_TOKEN_ID"):
        # The environment chooses the login: a user there (and no token id) means a password
        # login, e.g. root@pam for the keys no API token may set (docs/least-privilege.md).
        token_id = None
    if not token_id and user:
        # Tokens come first; a password login only when no token is configured.
        password = secret("NIXMOX_PVE_PASSWORD", environ)
        source = "the environment (NIXMOX_PVE_PASSWORD)"
        if not password and settings.password_file:
            password = _read_secret_file(settings.password_file, "proxmox.password_file")
            source = f"proxmox.password_file {settings.password_file}"
        if not password:
            raise ConfigError("no password for proxmox.user: set proxmox.password_file")
        register_secret(password)
        return Connection(url.rstrip("/"), user, "", ca_file, fingerprint, password, source)
    if not token_id:
        raise ConfigError("no API token id: set proxmox.token_id or NIXMOX_PVE_TOKEN_ID")
    token = secret("NIXMOX_PVE_TOKEN", environ)
    source = "the environment (NIXMOX_PVE_TOKEN)"
    credentials = env.get("CREDENTIALS_DIRECTORY")
    if not token and credentials and (Path(credentials) / CREDENTIAL).is_file():
        # systemd's LoadCredential= (the units nixmox installs): never in the environment.
        token = (Path(credentials) / CREDENTIAL).read_text(encoding="utf-8").strip()
        source = f"the credentials directory ({Path(credentials) / CREDENTIAL})"
    if not token:
        if settings.token_file is None:
            raise ConfigError("no API token secret: set proxmox.token_file or NIXMOX_PVE_TOKEN")
        token = _read_secret_file(settings.token_file)
        source = f"proxmox.token_file {settings.token_file}"
    register_secret(token)
    return Connection(url.rstrip("/"), token_id, token, ca_file, fingerprint, secret_source=source)
