"""Logging for nixmox: one stderr handler, verbosity levels, secrets masked.

Secrets (the API token, passwords in URLs) are registered once and masked in
every log record nixmox emits, whoever logs it.
"""

from __future__ import annotations

import logging
import re
import threading

MASK = "***"

_lock = threading.Lock()
_secrets: set[str] = set()
# user:password@ in URLs (apprise, http checks) never reaches a log.
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]+):(?P<pw>[^@/\s]+)@")


def register_secret(secret: str) -> None:
    """Mask ``secret`` wherever nixmox logs or reports it from now on."""
    if len(secret) >= 4:
        with _lock:
            _secrets.add(secret)


def mask(text: str) -> str:
    """``text`` with every registered secret and URL password replaced by ``***``."""
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        text = text.replace(secret, MASK)
    return _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)


class _MaskingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = mask(record.getMessage())
        record.args = None
        return True


def setup(verbosity: int) -> None:
    """Configure logging: -1 quiet (warnings), 0 normal, 1 debug, 2 debug + tracebacks."""
    level = {-1: logging.WARNING, 0: logging.INFO}.get(verbosity, logging.DEBUG)
    handler = logging.StreamHandler()
    handler.setFormatter(
        logging.Formatter("%(message)s" if verbosity < 1 else "%(name)s: %(message)s")
    )
    handler.addFilter(_MaskingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    # Third-party libraries speak only at -vv (urllib3's connection lines).
    root.setLevel(level if verbosity >= 2 else logging.WARNING)
    logging.getLogger("nixmox").setLevel(level)
