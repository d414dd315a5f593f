"""A thin typed client for the Proxmox VE API, on proxmoxer's HTTPS session
(reads go straight to that session's verified connection pool: a read pass makes
one per guest, and requests' own per-call work was half their cost).

- TLS is always verified: against ``ca_file``, against the certificate's
  SHA-256 ``fingerprint`` (checked by urllib3 right after the handshake, so a
  wrong pin stops before any request, and so any credential, is sent), or
  against the system store. There is no insecure mode, and the TLS warnings
  proxmoxer silences for the whole process at import are switched back on.
- API tokens first; a password login (ticket) is renewed well before its
  two-hour expiry.
- Timeouts per kind of call (short for reads, longer for writes that start a
  task); a request that has had no answer for a few seconds says what it waits
  for. Retries with backoff (logged at ``-v``) on 5xx/595/596/599, refused
  connections and "can't lock file ... got timeout"; a server that accepted
  the connection and then stays silent is not asked again. A write is retried
  only after its caller's ``done`` check re-read the state and found it not
  done, so a retry never applies a change twice.
- Failures are one plain line: a refused connection, a name that does not
  resolve, a certificate that does not verify (with the SHA-256 of the one the
  server showed), a token the server refused (with its id and where its secret
  was read from).
- Every request is counted (``calls``), which the plan benchmark reports.
"""

from __future__ import annotations

import functools
import hashlib
import http.client
import io
import json
import logging
import secrets
import socket
import ssl
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from nixmox.adapters.proxmox.settings import Connection
from nixmox.core.clock import SYSTEM_CLOCK, Clock
from nixmox.core.errors import NixmoxError, ProxmoxError
from nixmox.core.log import mask, register_secret
from nixmox.core.text import printable

log = logging.getLogger("nixmox.api")


@dataclass(frozen=True)
class Timeouts:
    """Seconds per kind of call: reads, writes (which may start a task), task polls,
    login, and opening the connection (TCP and the TLS handshake)."""

    read: float = 10.0
    write: float = 60.0
    poll: float = 10.0
    login: float = 15.0
    connect: float = 5.0


#: After this many seconds without an answer, a request says what it waits for.
NOTICE_AFTER = 3.0


@dataclass(frozen=True)
class Retry:
    """How often and how long to retry a transient failure."""

    attempts: int = 4
    first_delay: float = 0.5
    max_delay: float = 8.0


class ApiError(ProxmoxError):
    """The API answered with an error status."""

    def __init__(self, method: str, path: str, status: int, message: str) -> None:
        self.method = method
        self.path = path
        self.status = status
        self.reason = message
        super().__init__(mask(f"{method} {path}: HTTP {status}: {message}"))

    @property
    def transient(self) -> bool:
        """Worth retrying: server trouble, an offline node, or a busy config lock.

        PVE answers 500 for ordinary refusals too ("does not exist", "already
        exists", "is locked"), so a 500 counts only when it says it is passing.
        """
        if self.status > 500:
            return True
        passing = (
            "got timeout",
            "no quorum",
            "Internal Server Error",
            "Connection refused",
            "temporarily unavailable",
        )
        return self.status == 500 and (
            not self.reason.strip() or any(p in self.reason for p in passing)
        )

    @property
    def lock_timeout(self) -> bool:
        return "can't lock file" in self.reason and "got timeout" in self.reason


class AuthError(ApiError):
    """The API answered and refused our credentials (HTTP 401): the server is
    reachable, the token id or its secret (or the password) is wrong."""

    def __init__(self, conn: Connection, method: str, path: str, status: int, message: str) -> None:
        super().__init__(method, path, status, message)
        what = (
            f"the API token {conn.token_id}"
            if conn.password is None
            else f"the password login of {conn.token_id}"
        )
        where = f" with the secret from {conn.secret_source}" if conn.secret_source else ""
        Exception.__init__(
            self,
            mask(f"the Proxmox API at {conn.url} refused {what}{where} (HTTP {status}: {message})"),
        )


class Unreachable(ProxmoxError):
    """No answer: connection refused, timed out, or TLS failed."""


class NoAnswer(Unreachable):
    """Connected (or connecting) and then silence until the timeout: not asked again,
    since a second wait would only double the time to fail."""


class TlsError(Unreachable):
    """The server's certificate did not verify (CA or pin)."""


@functools.cache
def _http() -> tuple[Any, Any, Any]:
    """Import requests, urllib3 and proxmoxer's session lazily (CLI start-up stays
    cheap), once: every request asks, and the warnings filter is set only the first time."""
    import requests
    import urllib3
    from proxmoxer.backends import https

    # proxmoxer's https backend calls urllib3.disable_warnings() at import;
    # a filter in front of its "ignore" keeps TLS warnings visible.
    warnings.simplefilter("default", urllib3.exceptions.HTTPWarning)
    return requests, urllib3, https


def _pinned_adapter(fingerprint: str, pool_size: int) -> Any:
    """A requests adapter that accepts exactly the certificate with this SHA-256."""
    _http()
    from requests.adapters import HTTPAdapter

    class PinnedAdapter(HTTPAdapter):
        # The pin replaces CA validation (Proxmox's own certificate is
        # self-signed); urllib3 compares it during the handshake, before a
        # byte of the request (and its Authorization header) is sent.
        def build_connection_pool_key_attributes(  # type: ignore[override]
            self, request: Any, verify: Any, cert: Any = None
        ) -> tuple[Any, dict[str, Any]]:
            host, found = super().build_connection_pool_key_attributes(request, verify, cert)
            pool: dict[str, Any] = dict(found)
            pool.pop("ca_certs", None)
            pool.pop("ca_cert_dir", None)
            pool["cert_reqs"] = "CERT_NONE"
            pool["assert_fingerprint"] = fingerprint.replace(":", "").lower()
            return host, pool

        def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
            conn.cert_reqs = "CERT_NONE"
            conn.assert_fingerprint = fingerprint.replace(":", "").lower()

    return PinnedAdapter(pool_connections=4, pool_maxsize=pool_size)


class Proxmox:
    """GET/POST/PUT/DELETE on API paths such as ``/nodes/pve1/qemu``; data in, data out."""

    def __init__(
        self,
        conn: Connection,
        *,
        timeouts: Timeouts | None = None,
        retry: Retry | None = None,
        pool_size: int = 32,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        requests, _, https = _http()
        self.conn = conn
        self.timeouts = timeouts or Timeouts()
        self.retry = retry or Retry()
        self.clock = clock  # the pauses between retries
        self.base = f"{conn.url}/api2/json"
        self.calls = 0
        self._count = threading.Lock()
        # A CA file (or the system store) is passed on every request: a
        # session-wide verify would lose to REQUESTS_CA_BUNDLE.
        self.verify: str | bool = conn.ca_file or True
        self.session = https.ProxmoxHttpSession()
        # The API is reached directly: no proxy from the environment, and no
        # per-request environment lookups (a third of the client's CPU time
        # on a 1,000-guest plan). Verification is passed explicitly anyway.
        self.session.trust_env = False
        if conn.fingerprint:
            self._adapter = _pinned_adapter(conn.fingerprint, pool_size)
        else:
            self._adapter = requests.adapters.HTTPAdapter(pool_maxsize=pool_size)
        self.session.mount("https://", self._adapter)
        self._base_headers = dict(self.session.headers)
        self._pool_guard = threading.Lock()
        self._https: Any = None
        if conn.password is None:
            user, token_name = conn.token_id.split("!", 1)
            self.session.auth = https.ProxmoxHTTPApiTokenAuth(
                user, token_name, conn.token, verify_ssl=self.verify, timeout=self.timeouts.read
            )
        else:
            self.session.auth = _TicketAuth(self, conn.token_id, conn.password)

    # -- the calls -------------------------------------------------------------
    def get(self, path: str, **params: Any) -> Any:
        """Read; retried on transient failures."""
        return self._with_retries("GET", path, params, done=None)

    def post(self, path: str, *, done: Callable[[], bool] | None = None, **params: Any) -> Any:
        """Create or act. Retried only with ``done``: re-reads the state and
        says whether an earlier attempt already took effect."""
        return self._with_retries("POST", path, params, done=done)

    def put(self, path: str, *, done: Callable[[], bool] | None = None, **params: Any) -> Any:
        """Change; see :meth:`post` for retries."""
        return self._with_retries("PUT", path, params, done=done)

    def delete(self, path: str, *, done: Callable[[], bool] | None = None, **params: Any) -> Any:
        """Remove; see :meth:`post` for retries."""
        return self._with_retries("DELETE", path, params, done=done)

    def _with_retries(
        self, method: str, path: str, params: dict[str, Any], done: Callable[[], bool] | None
    ) -> Any:
        delay = self.retry.first_delay
        for attempt in range(1, self.retry.attempts + 1):
            try:
                return self.request(method, path, params)
            except (ApiError, Unreachable) as exc:
                retryable = isinstance(exc, Unreachable) and not isinstance(
                    exc, (TlsError, NoAnswer)
                )
                retryable = retryable or (isinstance(exc, ApiError) and exc.transient)
                if not retryable or attempt == self.retry.attempts:
                    raise
                if method != "GET":
                    if done is None:
                        raise
                    if done():
                        log.debug("%s %s took effect before the error; not repeated", method, path)
                        return None
                log.debug("retrying %s %s in %g s after: %s", method, path, delay, exc)
                self.clock.sleep(delay)
                delay = min(delay * 2, self.retry.max_delay)
        raise AssertionError("unreachable")

    def request(
        self, method: str, path: str, params: dict[str, Any] | None = None, *, whole: bool = False
    ) -> Any:
        """One request, no retries. Returns the ``data`` member of the answer
        (``whole``: the whole answer, e.g. the network's pending ``changes``)."""
        requests, urllib3, _ = _http()
        params = {k: _wire(v) for k, v in (params or {}).items() if v is not None}
        url = self.base + (path if path.startswith("/") else "/" + path)
        timeout = self.timeouts.read if method == "GET" else self.timeouts.write
        if "/tasks/" in path:
            timeout = self.timeouts.poll
        with self._count:
            self.calls += 1
        connect = min(self.timeouts.connect, timeout)
        waiting = _WATCH.start(f"{self.conn.url}: {method} {path}", timeout)
        try:
            if method == "GET":
                response: Any = self._read(url, params, connect, timeout)
            else:
                response = self.session.request(
                    method,
                    url,
                    params=params if method == "DELETE" else None,
                    data=params if method in ("POST", "PUT") else None,
                    timeout=(connect, timeout),
                    verify=self.verify,
                )
        except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError) as exc:
            raise failure(self.conn, exc, f"{method} {path}", timeout, connect) from None
        finally:
            _WATCH.done(waiting)
        if response.status_code == 401:
            raise AuthError(self.conn, method, path, 401, _reason(response))
        if response.status_code >= 400:
            raise ApiError(method, path, response.status_code, _reason(response))
        try:
            body = response.json()
        except ValueError:
            raise ProxmoxError(f"{method} {path}: the answer is not JSON") from None
        if whole:
            return body
        return body.get("data") if isinstance(body, dict) else None

    def _read(self, url: str, params: dict[str, Any], connect: float, timeout: float) -> _Answer:
        """A GET straight on the session's verified connection pool.

        A read pass makes one GET per guest, and requests' per-call work
        (merging settings, cookies, hooks, re-preparing headers) was half of
        the client's CPU time for each answer. The pool is the one the
        session's adapter made for this server, with the same TLS checks (CA
        file, system store or pinned SHA-256); the headers are the session's,
        signed by the same auth. Writes keep going through the session."""
        requests, urllib3, _ = _http()
        pool = self._pool()
        headers = dict(self._base_headers)
        self.session.auth(_Signed(headers))
        target = f"{url}?{urlencode(params, doseq=True)}" if params else url
        reply = pool.urlopen(
            "GET",
            requests.utils.requote_uri(target),
            headers=headers,
            redirect=False,
            assert_same_host=False,
            retries=self._adapter.max_retries,
            timeout=urllib3.Timeout(connect=connect, read=timeout),
        )
        return _Answer(reply.status, str(reply.reason or ""), reply.data)

    def _pool(self) -> Any:
        """The adapter's connection pool for this server, made (and checked) once."""
        with self._pool_guard:
            if self._https is None:
                requests, _, _ = _http()
                probe = requests.Request("GET", self.base).prepare()
                pool = self._adapter.get_connection_with_tls_context(probe, self.verify)
                # What the adapter does before each of its own sends: the CA or the pin.
                self._adapter.cert_verify(pool, self.base, self.verify, None)
                self._https = pool
            return self._https

    def upload(self, node: str, storage: str, path: Path, *, content: str, filename: str) -> Any:
        """``POST /nodes/{node}/storage/{storage}/upload``: ``path`` as ``filename``
        (``content`` iso, vztmpl or import). The file is streamed, not read into
        memory; never retried. Returns the task's UPID."""
        requests, _, _ = _http()
        boundary = f"nixmox-{secrets.token_hex(16)}"
        fields = b"".join(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
            for k, v in (("content", content),)
        )
        head = (
            fields
            + (
                f"--{boundary}\r\nContent-Disposition: form-data; "
                f'name="filename"; filename="{filename}"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n"
            ).encode()
        )
        tail = f"\r\n--{boundary}--\r\n".encode()
        api_path = f"/nodes/{node}/storage/{storage}/upload"
        with self._count:
            self.calls += 1
        waiting = _WATCH.start(f"{self.conn.url}: POST {api_path}", self.timeouts.write)
        try:
            # requests' own request(): proxmoxer's override wants a dict body
            # (it would buffer the file); the session's auth and adapters still apply.
            response = requests.Session.request(
                self.session,
                "POST",
                self.base + api_path,
                data=_Multipart(head, path, tail),
                headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
                timeout=(self.timeouts.connect, self.timeouts.write),
                verify=self.verify,
            )
        except requests.exceptions.RequestException as exc:
            raise failure(
                self.conn, exc, f"POST {api_path}", self.timeouts.write, self.timeouts.connect
            ) from None
        finally:
            _WATCH.done(waiting)
        if response.status_code == 401:
            raise AuthError(self.conn, "POST", api_path, 401, _reason(response))
        if response.status_code >= 400:
            raise ApiError("POST", api_path, response.status_code, _reason(response))
        try:
            answer = response.json()
        except ValueError:
            raise ProxmoxError(f"POST {api_path}: the answer is not JSON") from None
        return answer.get("data") if isinstance(answer, dict) else None


class _Multipart:
    """A multipart body read from disk as it is sent: requests sees a file-like
    object of known length (``Content-Length``, no chunking), http.client reads it."""

    def __init__(self, head: bytes, path: Path, tail: bytes) -> None:
        self.parts: list[Any] = [io.BytesIO(head), path.open("rb"), io.BytesIO(tail)]
        self.length = len(head) + path.stat().st_size + len(tail)

    def __len__(self) -> int:
        return self.length

    def read(self, size: int = -1) -> bytes:
        out = b""
        while self.parts and (size < 0 or len(out) < size):
            chunk = self.parts[0].read(-1 if size < 0 else size - len(out))
            if not chunk:
                self.parts.pop(0).close()
                continue
            out += chunk
        return out


class ReadOnce(Proxmox):
    """A client that sends each distinct GET once and answers repeats from memory.

    For read-only passes where several checks read the same things (doctor's
    areas, status): one ``/cluster/resources`` however many checks want it.
    Writes go through unchanged."""

    def __init__(self, api: Proxmox) -> None:
        super().__init__(api.conn)
        self._seen: dict[tuple[str, tuple[tuple[str, str], ...]], Any] = {}

    def get(self, path: str, **params: Any) -> Any:
        key = (path, tuple(sorted((k, str(v)) for k, v in params.items())))
        if key not in self._seen:
            try:
                self._seen[key] = super().get(path, **params)
            except NixmoxError as exc:
                self._seen[key] = exc
        found = self._seen[key]
        if isinstance(found, NixmoxError):
            raise found
        return found


def _wire(value: Any) -> Any:
    """Python values as the API wants them: booleans are 0/1."""
    if isinstance(value, bool):
        return int(value)
    return value


def _reason(response: Any) -> str:
    """PVE's error text: the status line, plus per-parameter errors (printable only)."""
    return printable(_raw_reason(response))


def _raw_reason(response: Any) -> str:
    text = str(response.reason or "")
    try:
        body = response.json()
    except ValueError:
        return text
    errors = body.get("errors") if isinstance(body, dict) else None
    if isinstance(errors, dict) and errors:
        text += " (" + "; ".join(f"{k}: {str(v).strip()}" for k, v in errors.items()) + ")"
    message = body.get("message") if isinstance(body, dict) else None
    if isinstance(message, str) and message.strip() and message.strip() not in text:
        text += f": {message.strip()}"
    return text


def failure(
    conn: Connection, exc: BaseException, what: str, timeout: float, connect: float
) -> ProxmoxError:
    """One plain line for a request that got no answer (``what``: ``GET /version``;
    ``timeout`` its read timeout, ``connect`` the one for TCP and the TLS handshake)."""
    # Writes fail with requests' exceptions, reads (sent on urllib3's pool
    # directly) with urllib3's; requests' wrap urllib3's, so the chain tells both.
    requests, urllib3, _ = _http()
    errors = urllib3.exceptions
    chain = _chain(exc)
    if any(isinstance(e, (requests.exceptions.SSLError, errors.SSLError)) for e in chain):
        return _tls_failure(conn, exc)
    if any(
        isinstance(e, errors.ConnectTimeoutError) and not isinstance(e, errors.NewConnectionError)
        for e in chain
    ):
        return NoAnswer(f"cannot connect to {conn.url}: no answer within {_secs(connect)}")
    if any("handshake" in str(e) for e in chain):
        return NoAnswer(
            f"cannot connect to {conn.url}: the TLS handshake got no answer within {_secs(connect)}"
        )
    if any(isinstance(e, (requests.exceptions.Timeout, errors.ReadTimeoutError)) for e in chain):
        return NoAnswer(
            f"{conn.url} accepted the connection but did not answer {what} within {_secs(timeout)}"
        )
    return Unreachable(mask(f"cannot connect to {conn.url}: {_connect_reason(conn, exc)}"))


def _secs(seconds: float) -> str:
    return f"{seconds:g} s"


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and everything it wraps (requests -> urllib3 -> socket)."""
    seen: list[BaseException] = []
    todo: list[object] = [exc]
    while todo:
        item = todo.pop(0)
        if not isinstance(item, BaseException) or any(item is s for s in seen):
            continue
        seen.append(item)
        todo += [getattr(item, "reason", None), item.__cause__, item.__context__, *item.args]
    return seen


def _connect_reason(conn: Connection, exc: BaseException) -> str:
    chain = _chain(exc)
    for item in chain:
        if isinstance(item, ConnectionRefusedError):
            return "connection refused"
        if isinstance(item, socket.gaierror):
            return f"the name {conn.host} does not resolve"
    for item in chain:
        if isinstance(item, (http.client.RemoteDisconnected, ConnectionResetError)):
            return "the server closed the connection without answering"
        if isinstance(item, OSError) and item.strerror:
            return item.strerror[:1].lower() + item.strerror[1:]
    return _short(exc)


def peer_fingerprint(host: str, port: int, timeout: float = 5.0) -> str | None:
    """The SHA-256 of the certificate the server shows, ``AA:BB:...``; None if it shows none.

    Only the TLS handshake happens (no request, no credential is sent), so the
    certificate is read without verifying it: it is what an error message
    shows the user, who decides whether it is their server's."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=host) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
    except (OSError, ValueError):
        return None
    if not der:
        return None
    return ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())


def _tls_failure(conn: Connection, exc: BaseException) -> TlsError:
    """Why the certificate did not verify, with the SHA-256 of the one the server showed."""
    peer = peer_fingerprint(conn.host, conn.port)
    shown = f"its SHA-256 is {peer}" if peer else "it could not be read again"
    cert = f"the certificate of {conn.url}"
    verify = next((e for e in _chain(exc) if isinstance(e, ssl.SSLCertVerificationError)), None)
    code = verify.verify_code if verify is not None else None
    detail = str(verify.verify_message) if verify is not None else _short(exc)
    by = f"CA file {conn.ca_file}" if conn.ca_file else "any CA of the system trust store"
    if conn.fingerprint:
        text = f"{cert} does not match the pinned SHA-256 {conn.fingerprint}; {shown}"
    elif code == 10:
        text = f"{cert} has expired; {shown}"
    elif code == 62 or "Hostname mismatch" in detail:
        text = f"{cert} is not issued for the name {conn.host}; {shown}"
    elif code in (2, 18, 19, 20, 21):
        text = f"{cert} is not signed by {by}; {shown}"
    elif verify is not None:
        text = f"{cert} did not verify against {by} ({detail}); {shown}"
    else:
        text = f"TLS with {conn.url} failed: {printable(detail)}"
    return TlsError(f"{text}; nothing was sent")


class _Watch:
    """Says, once, which requests have waited NOTICE_AFTER seconds for an answer.

    One daemon thread for all requests (a timer per request would cost a thread
    each on a plan's thousands of reads); it sleeps while nothing is open."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[int, tuple[float, str, float]] = {}
        self._wake = threading.Event()
        self._count = 0
        self._thread: threading.Thread | None = None

    def start(self, what: str, timeout: float) -> int:
        with self._lock:
            self._count += 1
            self._open[self._count] = (time.monotonic(), what, timeout)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="nixmox-api-wait", daemon=True
                )
                self._thread.start()
            self._wake.set()
            return self._count

    def done(self, key: int) -> None:
        with self._lock:
            self._open.pop(key, None)

    def _run(self) -> None:
        while True:
            self._wake.wait()
            time.sleep(0.5)
            now = time.monotonic()
            with self._lock:
                due = [k for k, (t, _, _) in self._open.items() if now - t >= NOTICE_AFTER]
                said = [self._open.pop(k) for k in due]
                if not self._open:
                    self._wake.clear()
            for _started, what, timeout in said:
                log.info(
                    "waiting for %s: no answer after %s (giving up after %s)",
                    what,
                    _secs(NOTICE_AFTER),
                    _secs(timeout),
                )


_WATCH = _Watch()


def _short(exc: BaseException) -> str:
    """The innermost reason of a requests error, without the retry noise."""
    text = str(exc)
    for marker in ("(Caused by ", "Caused by "):
        if marker in text:
            text = text.split(marker, 1)[1]
    return text.rstrip(")").strip()


class _Signed:
    """The part of a request an auth object signs: its headers (a read)."""

    method = "GET"

    def __init__(self, headers: dict[str, str]) -> None:
        self.headers = headers
        self.cert: Any = None


@dataclass(frozen=True)
class _Answer:
    """A read's answer, shaped like the part of a requests response used here."""

    status_code: int
    reason: str
    content: bytes

    def json(self) -> Any:
        return json.loads(self.content)


class _TicketAuth:
    """Password login: a ticket cookie plus the CSRF header, renewed after an hour
    (tickets expire after two), through the same verified connection."""

    RENEW_AFTER = 3600.0

    def __init__(self, api: Proxmox, user: str, password: str) -> None:
        self.api = api
        self.user = user.split("!", 1)[0]
        self.password = password
        self.verify_ssl = api.verify
        self.timeout = api.timeouts.read
        self.ticket = ""
        self.csrf = ""
        self.born = 0.0
        self._lock = threading.Lock()

    def get_cookies(self) -> Any:
        from requests.cookies import RequestsCookieJar

        return RequestsCookieJar()

    def _login(self) -> None:
        requests, _, _ = _http()
        # A renewal presents the current ticket instead of the password.
        secret = self.ticket or self.password
        timeout = self.api.timeouts.login
        waiting = _WATCH.start(f"{self.api.conn.url}: POST /access/ticket", timeout)
        try:
            response = requests.Session.request(
                self.api.session,
                "POST",
                f"{self.api.base}/access/ticket",
                data={"username": self.user, "password": secret},
                timeout=(min(self.api.timeouts.connect, timeout), timeout),
                verify=self.api.verify,
                auth=lambda r: r,
            )
        except requests.exceptions.RequestException as exc:
            connect = min(self.api.timeouts.connect, timeout)
            raise failure(self.api.conn, exc, "POST /access/ticket", timeout, connect) from None
        finally:
            _WATCH.done(waiting)
        if response.status_code != 200 and secret is not self.password:
            # The ticket was not accepted for renewal: log in afresh.
            self.ticket = ""
            return self._login()
        if response.status_code == 401:
            raise AuthError(self.api.conn, "POST", "/access/ticket", 401, _reason(response))
        if response.status_code != 200:
            raise ApiError("POST", "/access/ticket", response.status_code, "login failed")
        data = response.json()["data"]
        self.ticket = data["ticket"]
        self.csrf = data["CSRFPreventionToken"]
        register_secret(self.ticket)
        register_secret(self.csrf)
        self.born = self.api.clock.monotonic()

    def __call__(self, request: Any) -> Any:
        with self._lock:
            if not self.ticket or self.api.clock.monotonic() - self.born >= self.RENEW_AFTER:
                self._login()
        request.headers["Cookie"] = f"PVEAuthCookie={self.ticket}"
        if request.method != "GET":
            request.headers["CSRFPreventionToken"] = self.csrf
        return request
