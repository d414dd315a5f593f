"""Logging for nixmox: one stderr handler, verbosity levels, secrets masked.

Secrets (the API token, passwords in URLs) are registered once and masked in
every log record nixmox emits, whoever logs it.
"""

from __future__ import annotations

import logging
import re
import threading
from urllib.parse import unquote

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


# What can separate the parts of a notification URL that carry credentials:
# path segments, query pairs, user:password, host:token.
_URL_PARTS = re.compile(r"[/?&#=@:,;]+")
# Where a URL's pieces are masked: words with a scheme, a slash or an "@" in
# them (URLs, request paths), not ordinary words that happen to match a piece.
_URLISH = re.compile(r"\S*[/@]\S*")
_url_pieces: set[str] = set()


def register_url(url: str) -> None:
    """Mask every part of ``url`` that may be a credential.

    Notification services put tokens anywhere: the password (``user:pass@``),
    the host slot (``tgram://BOTID:TOKEN/chat``), path segments
    (``discord://ID/TOKEN``) and query values (``?token=``), and libraries
    rewrite such URLs before logging them
    (``https://api.telegram.org/botID:TOKEN/...``). The password and the
    whole URL are masked everywhere; every other piece (also percent-decoded)
    wherever it appears inside a URL or a path.
    """
    rest = url.split("://", 1)[1] if "://" in url else url
    register_secret(rest)
    netloc, _, _ = rest.partition("/")
    if "@" in netloc:
        userinfo = netloc.rsplit("@", 1)[0]
        if ":" in userinfo:
            password = userinfo.split(":", 1)[1]
            register_secret(password)
            register_secret(unquote(password))
        rest = rest[len(userinfo) + 1 :]  # the user name is no secret
    pieces: set[str] = set()
    for segment in re.split(r"[/?&#]+", rest):
        pieces.add(segment)
        pieces.update(_URL_PARTS.split(segment))
    with _lock:
        for piece in pieces:
            for form in (piece, unquote(piece)):
                if len(form) >= 4:
                    _url_pieces.add(form)


def _mask_url_pieces(word: str, pieces: list[str]) -> str:
    for piece in pieces:
        word = word.replace(piece, MASK)
    return word


def mask(text: str) -> str:
    """``text`` with every registered secret and URL password replaced by ``***``."""
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
        pieces = sorted(_url_pieces, key=len, reverse=True)
    for secret in secrets:
        text = text.replace(secret, MASK)
    if pieces:
        text = _URLISH.sub(lambda m: _mask_url_pieces(m.group(0), pieces), text)
    return _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)


class _MaskingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = mask(record.getMessage())
        record.args = None
        # A logged exception's text is formatted after the filters: do it here, masked.
        if record.exc_info and not record.exc_text:
            record.exc_text = mask(logging.Formatter().formatException(record.exc_info))
        if record.stack_info:
            record.stack_info = mask(record.stack_info)
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
    # Third-party libraries (urllib3, apprise) only ever warn: at debug level
    # they log request URLs that nixmox never sees, tokens included.
    root.setLevel(logging.WARNING)
    logging.getLogger("nixmox").setLevel(level)
