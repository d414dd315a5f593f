"""Prometheus, node_exporter and prometheus-pve-exporter, each on 127.0.0.1.

node_exporter runs only its textfile collector on one directory; pve-exporter
reads a Proxmox API (the lab) with an API token and checks its certificate
against a given CA; Prometheus scrapes both at a short interval into a scratch
TSDB and answers PromQL over its HTTP API (:class:`PromQL`).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, ClassVar

from tests.peers._proc import Daemon, PeerError, die_with_parent, wait_until

HOST = "127.0.0.1"
START_TIMEOUT = 30.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(resp.status == 200)
    except (OSError, urllib.error.URLError):
        return False


class _Listener(Daemon):
    """A daemon that serves HTTP on 127.0.0.1:``port``; ready when ``ready_path`` answers 200."""

    ready_path: ClassVar[str] = "/"

    def __init__(self) -> None:
        super().__init__()
        self.port = 0

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def _spawn(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        log = self._tmp / "log"
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                preexec_fn=die_with_parent,
            )
        wait_until(
            lambda: _answers(f"http://{self.address}{self.ready_path}"),
            timeout=START_TIMEOUT,
            what=self.name,
            proc=self.proc,
            log=log,
        )


class NodeExporter(_Listener):
    """``prometheus-node-exporter`` with only the textfile collector, on ``directory``."""

    name = "prometheus-node-exporter"
    tmp_prefix = "node-exporter"
    ready_path = "/metrics"

    def __init__(self, binary: str, directory: Path) -> None:
        super().__init__()
        self.binary = binary
        self.directory = directory

    def _start(self) -> None:
        self.port = free_port()
        self._spawn(
            [
                self.binary,
                f"--web.listen-address={self.address}",
                "--collector.disable-defaults",
                "--collector.textfile",
                f"--collector.textfile.directory={self.directory}",
            ]
        )


class PveExporter(_Listener):
    """prometheus-pve-exporter against one Proxmox API, its certificate checked with ``ca_file``."""

    name = "pve_exporter"
    tmp_prefix = "pve-exporter"

    def __init__(self, binary: str, *, token_id: str, token: str, ca_file: str) -> None:
        super().__init__()
        self.binary = binary
        self.token_id = token_id
        self.token = token
        self.ca_file = ca_file

    def _start(self) -> None:
        user, _, token_name = self.token_id.partition("!")
        config = self._tmp / "pve.yml"
        # YAML is a superset of JSON: no YAML writer needed. verify_ssl goes to requests'
        # `verify`, so the lab's certificate is really checked against its CA.
        module = {
            "user": user,
            "token_name": token_name,
            "token_value": self.token,
            "verify_ssl": self.ca_file,
        }
        config.write_text(json.dumps({"default": module}))
        config.chmod(0o600)
        # A CA bundle from the environment would win over verify_ssl (psf/requests#3829).
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE")
        }
        self.port = free_port()
        self._spawn(
            [
                self.binary,
                f"--config.file={config}",
                f"--web.listen-address={self.address}",
                # The lab's /nodes/{node}/replication answer crashes this collector.
                "--no-collector.replication",
            ],
            env,
        )


class Prometheus(_Listener):
    """Prometheus scraping node_exporter and pve-exporter every ``interval``."""

    name = "prometheus"
    tmp_prefix = "prometheus"
    ready_path = "/-/ready"

    def __init__(self, binary: str, *, node: str, pve: str, pve_target: str, interval: str) -> None:
        super().__init__()
        self.binary = binary
        self.node = node
        self.pve = pve
        self.pve_target = pve_target
        self.interval = interval

    def _start(self) -> None:
        config = {
            "global": {"scrape_interval": self.interval, "evaluation_interval": self.interval},
            "scrape_configs": [
                {"job_name": "node", "static_configs": [{"targets": [self.node]}]},
                {
                    # As prometheus-pve-exporter's README shows: the PVE host is the
                    # target parameter, the exporter the address scraped.
                    "job_name": "pve",
                    "metrics_path": "/pve",
                    "params": {"module": ["default"], "cluster": ["1"], "node": ["1"]},
                    "static_configs": [{"targets": [self.pve_target]}],
                    "relabel_configs": [
                        {"source_labels": ["__address__"], "target_label": "__param_target"},
                        {"source_labels": ["__param_target"], "target_label": "instance"},
                        {"target_label": "__address__", "replacement": self.pve},
                    ],
                },
            ],
        }
        path = self._tmp / "prometheus.yml"
        path.write_text(json.dumps(config))
        self.port = free_port()
        self._spawn(
            [
                self.binary,
                f"--config.file={path}",
                f"--storage.tsdb.path={self._tmp / 'tsdb'}",
                f"--web.listen-address={self.address}",
                "--log.level=warn",
            ]
        )

    @property
    def api(self) -> PromQL:
        return PromQL(f"http://{self.address}")


class PromQL:
    """Prometheus's HTTP query API."""

    def __init__(self, base: str) -> None:
        self.base = base

    def _get(self, path: str, **params: str) -> dict[str, Any]:
        url = f"{self.base}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                body: dict[str, Any] = json.load(resp)
        except urllib.error.HTTPError as exc:  # 400 bad_data, 422 execution errors
            body = json.load(exc)
        return body

    def query(self, expr: str, at: float | None = None) -> dict[str, Any]:
        """The whole answer to an instant query (``status``, ``data`` or ``errorType``)."""
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        return self._get("/api/v1/query", **params)

    def query_range(self, expr: str, start: float, end: float, step: str) -> dict[str, Any]:
        """The whole answer to a range query."""
        return self._get(
            "/api/v1/query_range", query=expr, start=f"{start:.3f}", end=f"{end:.3f}", step=step
        )

    def vector(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result series; PeerError when it is not a success."""
        answer = self.query(expr)
        if answer.get("status") != "success":
            raise PeerError(f"{expr}: {answer}")
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result
