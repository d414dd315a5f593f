"""Helpers for the observe tests: an inventory variant, journal runs, an HTTP receiver."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from nixmox.adapters.journal import job_run

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "homelab.toml"


def inventory(tmp: Path, *, textfile: Path | None, urls: list[str], on: str = "") -> Path:
    """The example inventory with its [metrics] textfile (None: no [metrics]) and [notify] urls."""
    text = EXAMPLE.read_text()
    line = 'textfile = "/var/lib/prometheus/node-exporter/nixmox.prom"'
    if textfile is None:
        text = text.replace("[metrics]\n" + line, "")
    else:
        text = text.replace(line, f'textfile = "{textfile}"')
    text = text.replace('urls = ["ntfy://ntfy.home.arpa/homelab"]', f"urls = {json.dumps(urls)}")
    if on:
        text = text.replace('on = ["failure", "recovery"]', f"on = {on}")
    path = tmp / "nixmox.toml"
    path.write_text(text)
    return path


def record(state: Path, command: str, result: str, summary: dict[str, Any]) -> None:
    """Journal one finished run of ``command``."""
    with job_run(state, command) as run:
        run.result = result
        run.summary = summary


class Receiver:
    """What a loopback HTTP endpoint received: one JSON body per POST."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.bodies: list[dict[str, Any]] = []

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.port}/hook"


@contextmanager
def receiver() -> Iterator[Receiver]:
    """A real HTTP server on 127.0.0.1 collecting POSTed JSON (apprise's json://)."""
    got: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            body["_path"] = self.path
            body["_auth"] = self.headers.get("Authorization")
            got.append(body)
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    rec = Receiver(server.server_address[1])
    rec.bodies = got
    try:
        yield rec
    finally:
        server.shutdown()
        server.server_close()
