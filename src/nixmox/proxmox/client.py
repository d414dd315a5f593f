"""A thin typed client for the Proxmox VE API, on proxmoxer.

TLS is always verified (the configured CA file, else the system store).
proxmoxer silences urllib3's TLS warnings for the whole process when it is
imported; nixmox puts them back, so nothing it loads hides an unverified
connection.
"""

from __future__ import annotations

import warnings
from typing import Any

from nixmox.errors import NixmoxError, ProxmoxError
from nixmox.log import mask
from nixmox.proxmox.settings import Connection

DEFAULT_TIMEOUT = 30.0


def _import_proxmoxer() -> Any:
    import proxmoxer
    import urllib3

    # proxmoxer's https backend calls urllib3.disable_warnings() at import;
    # a filter in front of its "ignore" keeps TLS warnings visible.
    warnings.simplefilter("default", urllib3.exceptions.HTTPWarning)
    return proxmoxer


class Proxmox:
    """GET/POST/PUT/DELETE on API paths like ``/nodes/pve1/qemu``; data only."""

    def __init__(self, conn: Connection, timeout: float = DEFAULT_TIMEOUT) -> None:
        if conn.fingerprint and not conn.ca_file:
            raise NixmoxError(
                "certificate pinning by fingerprint is not implemented yet (issue 3); "
                "set proxmox.ca_file / NIXMOX_PVE_CA_FILE instead"
            )
        proxmoxer = _import_proxmoxer()
        user, token_name = conn.token_id.split("!", 1)
        self.conn = conn
        self._api = proxmoxer.ProxmoxAPI(
            conn.host,
            port=conn.port,
            user=user,
            token_name=token_name,
            token_value=conn.token,
            verify_ssl=conn.ca_file or True,
            timeout=timeout,
            service="PVE",
        )

    def _call(self, method: str, path: str, params: dict[str, Any] | None) -> Any:
        import proxmoxer.core
        import requests

        resource = self._api(path.strip("/"))
        try:
            return getattr(resource, method)(**(params or {}))
        except proxmoxer.core.ResourceException as exc:
            raise ProxmoxError(
                mask(
                    f"{method.upper()} {path}: HTTP {exc.status_code} {exc.status_message}: "
                    f"{exc.content or ''}".rstrip(": ")
                )
            ) from None
        except requests.exceptions.SSLError as exc:
            raise ProxmoxError(
                f"TLS verification of {self.conn.url} failed: {_short(exc)} "
                "(set proxmox.ca_file to the CA that signed the API certificate)"
            ) from None
        except requests.exceptions.RequestException as exc:
            raise ProxmoxError(mask(f"cannot reach {self.conn.url}: {_short(exc)}")) from None

    def get(self, path: str, **params: Any) -> Any:
        return self._call("get", path, params)

    def post(self, path: str, **params: Any) -> Any:
        return self._call("post", path, params)

    def put(self, path: str, **params: Any) -> Any:
        return self._call("put", path, params)

    def delete(self, path: str, **params: Any) -> Any:
        return self._call("delete", path, params)


def _short(exc: BaseException) -> str:
    """The innermost reason of a requests error, without the retry noise."""
    text = str(exc)
    for marker in ("Caused by ", "(Caused by "):
        if marker in text:
            text = text.split(marker, 1)[1]
    return text.rstrip(")").strip()
