"""What a user reads when the Proxmox API cannot be used: a refused token, a
closed port, a certificate from another CA, a server that never answers. Each
is one plain line (no Python reprs), and a refused token is never called
"unreachable". Against the lab and real sockets on loopback."""

from __future__ import annotations

import hashlib
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fakepve.certs import make_cert

from nixmox.adapters.proxmox import client as client_module
from nixmox.adapters.proxmox.client import NoAnswer, Proxmox, Timeouts, TlsError, Unreachable
from nixmox.adapters.proxmox.settings import Connection
from nixmox.cli.main import run
from tests.lab.serving import RunningLab

EXAMPLE = str(Path(__file__).resolve().parent.parent / "examples" / "homelab.toml")
REPRS = ("Error(", "HTTPSConnection", "[Errno", "[SSL", "Caused by", "Traceback")


@pytest.fixture
def lab_env(lab: RunningLab, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> RunningLab:
    for key, value in lab.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("NIXMOX_STATE_DIR", str(tmp_path / "state"))
    return lab


def doctor_checks(
    capsys: pytest.CaptureFixture[str], *extra: str
) -> tuple[int, list[dict[str, str]]]:
    code = run(["doctor", "--config", EXAMPLE, "--json", "--only", "proxmox", *extra])
    return code, json.loads(capsys.readouterr().out)["checks"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sha256_of(pem_file: str) -> str:
    der = ssl.PEM_cert_to_DER_cert(Path(pem_file).read_text())
    return ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())


# -- a refused token ---------------------------------------------------------------------


def test_wrong_token_names_the_token_and_where_its_secret_came_from(
    lab_env: RunningLab, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NIXMOX_PVE_TOKEN", "00000000-dead-beef-0000-000000000000")
    code, checks = doctor_checks(capsys)
    assert code == 2
    by_id = {c["id"]: c for c in checks}
    assert by_id["proxmox-reachable"]["status"] == "PASS"
    token = by_id["proxmox-token"]
    assert token["status"] == "FAIL" and token["subject"] == lab_env.token_id
    assert lab_env.token_id in token["message"] and "HTTP 401" in token["message"]
    assert "the environment (NIXMOX_PVE_TOKEN)" in token["message"]
    assert "pveum user token list root@pam" in token["fix"]
    assert "unreachable" not in json.dumps(checks).lower()

    # plan: one line with the same words; status: "refused", not "unreachable".
    assert run(["plan", "--config", EXAMPLE]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"refused the API token {lab_env.token_id}" in err[0]
    assert run(["status", "--config", EXAMPLE]) == 2
    out = capsys.readouterr().out
    assert "REFUSED THE CREDENTIALS" in out and "UNREACHABLE" not in out
    run(["status", "--json", "--config", EXAMPLE])
    api = json.loads(capsys.readouterr().out)["api"]
    assert api["reachable"] is True and api["authenticated"] is False


def test_wrong_token_from_a_token_file_names_the_file(
    lab_env: RunningLab,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("NIXMOX_PVE_TOKEN")
    secret_file = tmp_path / "token"
    secret_file.write_text("not-the-secret\n")
    secret_file.chmod(0o600)
    inv = tmp_path / "n.toml"
    inv.write_text(f'[proxmox]\ntoken_file = "{secret_file}"\n')
    assert run(["plan", "--config", str(inv)]) == 1
    err = capsys.readouterr().err
    assert f"with the secret from proxmox.token_file {secret_file}" in err
    assert "not-the-secret" not in err


# -- no connection -----------------------------------------------------------------------


def test_connection_refused_is_one_plain_line_and_retries_show_only_at_v(
    lab_env: RunningLab, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"https://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("NIXMOX_PVE_URL", url)
    assert run(["plan", "--config", EXAMPLE]) == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [f"nixmox: cannot connect to {url}: connection refused"]
    assert run(["-v", "plan", "--config", EXAMPLE]) == 1
    verbose = capsys.readouterr().err
    assert "retrying GET" in verbose and not any(r in verbose for r in REPRS)
    code, checks = doctor_checks(capsys)
    [reach] = [c for c in checks if c["id"] == "proxmox-reachable"]
    assert code == 2
    assert reach["status"] == "FAIL" and reach["message"].endswith("connection refused")
    assert "8006" in reach["fix"]


def test_a_name_that_does_not_resolve_says_so() -> None:
    conn = Connection("https://nixmox-test.invalid:8006", "root@pam!x", "s", secret_source="x")
    api = Proxmox(conn, timeouts=Timeouts(connect=2))
    api.retry = client_module.Retry(attempts=1)
    with pytest.raises(Unreachable) as caught:
        api.get("/version")
    assert str(caught.value) == (
        "cannot connect to https://nixmox-test.invalid:8006: "
        "the name nixmox-test.invalid does not resolve"
    )


# -- TLS -----------------------------------------------------------------------------------


def test_certificate_of_another_ca_shows_the_servers_sha256_and_sends_nothing(
    lab_env: RunningLab,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    other_ca, _key, _der = make_cert(str(tmp_path), name="other", hosts=("127.0.0.1",))
    monkeypatch.setenv("NIXMOX_PVE_CA_FILE", other_ca)
    before = len(lab_env.pve.requests)
    assert run(["plan", "--config", EXAMPLE]) == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    # The lab's certificate is its own CA: its SHA-256 is the one the server shows.
    assert line == (
        f"nixmox: the certificate of {lab_env.url} is not signed by CA file {other_ca}; "
        f"its SHA-256 is {sha256_of(lab_env.ca_file)}; nothing was sent"
    )
    assert len(lab_env.pve.requests) == before
    code, checks = doctor_checks(capsys)
    [reach] = [c for c in checks if c["id"] == "proxmox-reachable"]
    assert (
        code == 2
        and "proxmox.fingerprint" in reach["fix"]
        and not any(r in reach["message"] for r in REPRS)
    )


def test_wrong_pin_names_both_fingerprints(lab_env: RunningLab) -> None:
    pin = ":".join(["AB"] * 32)
    api = Proxmox(Connection(lab_env.url, lab_env.token_id, lab_env.token, None, pin))
    with pytest.raises(TlsError) as caught:
        api.get("/version")
    assert str(caught.value) == (
        f"the certificate of {lab_env.url} does not match the pinned SHA-256 {pin}; "
        f"its SHA-256 is {sha256_of(lab_env.ca_file)}; nothing was sent"
    )


# -- a server that never answers ----------------------------------------------------------


@contextmanager
def silent_server(tls_cert: tuple[str, str] | None = None) -> Iterator[int]:
    """A loopback port that accepts connections (and with ``tls_cert`` completes the
    TLS handshake) and then never answers; its port."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        context = None
        if tls_cert is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*tls_cert)
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            if context is not None:
                conn = context.wrap_socket(conn, server_side=True)
            held.append(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join(5)
        for conn in held:
            conn.close()
        listener.close()


def test_a_server_that_never_answers_is_bounded_and_says_what_it_waits_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    cert, key, _der = make_cert(str(tmp_path), name="silent", hosts=("127.0.0.1",))
    monkeypatch.setattr(client_module, "NOTICE_AFTER", 0.5)
    caplog.set_level("INFO", logger="nixmox.api")
    with silent_server((cert, key)) as port:
        url = f"https://127.0.0.1:{port}"
        api = Proxmox(
            Connection(url, "root@pam!x", "s", cert), timeouts=Timeouts(read=1.5, write=3.0)
        )
        started = time.monotonic()
        with pytest.raises(NoAnswer) as caught:
            api.get("/cluster/resources")
        took = time.monotonic() - started
    # One wait of the read timeout: a silent server is not asked again.
    assert 1.4 < took < 2.5
    assert str(caught.value) == (
        f"{url} accepted the connection but did not answer GET /cluster/resources within 1.5 s"
    )
    said = [r.getMessage() for r in caplog.records if r.name == "nixmox.api"]
    assert said == [
        f"waiting for {url}: GET /cluster/resources: no answer after 0.5 s (giving up after 1.5 s)"
    ]


def test_a_silent_handshake_is_bounded_by_the_connect_timeout(tmp_path: Path) -> None:
    with silent_server() as port:  # accepts TCP, never starts TLS
        url = f"https://127.0.0.1:{port}"
        api = Proxmox(
            Connection(url, "root@pam!x", "s", None, ":".join(["AB"] * 32)),
            timeouts=Timeouts(read=5.0, connect=1.0),
        )
        started = time.monotonic()
        with pytest.raises(NoAnswer) as caught:
            api.get("/version")
        took = time.monotonic() - started
    assert took < 2.5
    assert str(caught.value) == (
        f"cannot connect to {url}: the TLS handshake got no answer within 1 s"
    )


def test_a_task_starting_post_waits_longer_than_a_read(tmp_path: Path) -> None:
    cert, key, _der = make_cert(str(tmp_path), name="silent", hosts=("127.0.0.1",))
    with silent_server((cert, key)) as port:
        url = f"https://127.0.0.1:{port}"
        api = Proxmox(
            Connection(url, "root@pam!x", "s", cert), timeouts=Timeouts(read=0.5, write=1.5)
        )
        started = time.monotonic()
        with pytest.raises(NoAnswer, match=r"did not answer POST /nodes/pve1/qemu within 1.5 s"):
            api.post("/nodes/pve1/qemu", vmid=100)
        assert 1.4 < time.monotonic() - started < 2.5


# -- doctor off the node -------------------------------------------------------------------


def test_doctor_off_the_node_skips_the_host_areas_and_says_why(
    lab_env: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    # This machine is not pve1, the example's node.
    run(["doctor", "--config", EXAMPLE, "--json"])
    report = json.loads(capsys.readouterr().out)
    ids = {c["id"] for c in report["checks"]}
    [skipped] = [c for c in report["checks"] if c["id"] == "host-areas"]
    assert skipped["status"] == "INFO" and "not a declared node (pve1)" in skipped["message"]
    assert "--host-root" in skipped["fix"]
    assert not ids & {"host-cpu", "host-cpu-allocation", "pool-health", "snapshot-fresh"}
