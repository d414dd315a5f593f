"""Connection settings: the inventory, the NIXMOX_PVE_* overrides, the token file."""

from __future__ import annotations

from pathlib import Path

import pytest

from nixmox.adapters.proxmox.settings import connection
from nixmox.core.errors import ConfigError
from nixmox.core.log import mask
from nixmox.inventory.model import ProxmoxSettings

SETTINGS = ProxmoxSettings(
    url="https://pve.home.arpa:8006", token_id="nixmox@pve!automation", token_file=None
)


def test_environment_overrides_each_key(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    env = {
        "NIXMOX_PVE_URL": "https://127.0.0.1:8443",
        "NIXMOX_PVE_TOKEN_ID": "root@pam!ci",
        "NIXMOX_PVE_TOKEN": "env-secret-value",
        "NIXMOX_PVE_CA_FILE": str(ca),
        "NIXMOX_PVE_FINGERPRINT": ":".join(["AB"] * 32),
    }
    conn = connection(SETTINGS, env)
    assert (conn.host, conn.port, conn.token_id) == ("127.0.0.1", 8443, "root@pam!ci")
    assert conn.ca_file == str(ca) and conn.fingerprint == env["NIXMOX_PVE_FINGERPRINT"]
    assert "env-secret-value" not in repr(conn)
    assert mask("token env-secret-value") == "token ***"


def test_inventory_values_apply_without_overrides(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("file-secret-value\n")
    token.chmod(0o600)
    settings = SETTINGS.model_copy(update={"token_file": str(token)})
    conn = connection(settings, {})
    assert conn.url == "https://pve.home.arpa:8006" and conn.token == "file-secret-value"


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660])
def test_readable_token_file_is_refused_with_the_fix(tmp_path: Path, mode: int) -> None:
    token = tmp_path / "token"
    token.write_text("secret-in-readable-file")
    token.chmod(mode)
    settings = SETTINGS.model_copy(update={"token_file": str(token)})
    with pytest.raises(ConfigError) as info:
        connection(settings, {})
    assert f"chmod 600 {token}" in str(info.value)
    assert "secret-in-readable-file" not in str(info.value)


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"NIXMOX_PVE_URL": ""}, None),
        ({"NIXMOX_PVE_URL": "http://127.0.0.1:8006", "NIXMOX_PVE_TOKEN": "x"}, "https://"),
        ({"NIXMOX_PVE_TOKEN": ""}, "NIXMOX_PVE_TOKEN"),
        ({"NIXMOX_PVE_TOKEN": "x", "NIXMOX_PVE_CA_FILE": "/nonexistent.pem"}, "no such file"),
    ],
)
def test_incomplete_settings_are_one_clear_error(env: dict[str, str], fragment: str | None) -> None:
    if fragment is None:
        assert connection(SETTINGS, {"NIXMOX_PVE_TOKEN": "x", **env}).url.startswith("https://")
        return
    with pytest.raises(ConfigError, match=fragment):
        connection(SETTINGS, env)


def test_systemd_credential_is_read(tmp_path: Path) -> None:
    (tmp_path / "nixmox-pve-token").write_text("cred-secret-value\n")
    conn = connection(SETTINGS, {"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert conn.token == "cred-secret-value"
    # The environment variable still wins (tests and CI rely on it).
    assert (
        connection(
            SETTINGS, {"CREDENTIALS_DIRECTORY": str(tmp_path), "NIXMOX_PVE_TOKEN": "e"}
        ).token
        == "e"
    )
