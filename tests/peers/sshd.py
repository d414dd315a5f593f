"""A throwaway OpenSSH server on 127.0.0.1, and a client config that reaches it.

nixmox runs remote commands with the system ``ssh`` client, so tests hand it
``-F ssh_config`` and the host alias ``host``: the config pins the port, the
client key and the server's host key (``StrictHostKeyChecking yes``), and
``BatchMode yes`` makes any prompt an immediate failure instead of a hang.

A new SSH connection costs a key exchange and a login, a good fraction of a
second on a busy two-core machine. A test that runs dozens of commands can ask
for ``multiplex=True``: its ``ssh_config`` then shares one master connection
(``ControlMaster``, as many users' own configs do), and ``direct_ssh_config``
still makes a fresh connection per command, for tests where the server goes
away under the client.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

from tests.peers._proc import Daemon, PeerError, die_with_parent, stop_process, wait_until


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the caller retries on a race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class Sshd(Daemon):
    """``sshd -D`` with temp keys on a free loopback port.

    Context manager (or ``start()``/``stop()``). After ``start()``: ``port``,
    ``pid``, ``ssh_config`` (client config file), ``host`` (its alias),
    ``client_key``, ``known_hosts``, and ``ssh(*cmd)`` to run a remote command.
    """

    host = "nixmox-test"
    name = "sshd"
    tmp_prefix = "sshd"

    def __init__(
        self,
        *,
        sshd: str = "/usr/sbin/sshd",
        ssh: str = "ssh",
        ssh_keygen: str = "ssh-keygen",
        start_timeout: float = 10.0,
        multiplex: bool = False,
    ) -> None:
        super().__init__()
        self.multiplex = multiplex
        self.sshd = sshd
        self.ssh_bin = ssh
        self.ssh_keygen = ssh_keygen
        self.start_timeout = start_timeout
        self.port = 0
        self._host_key_line = ""

    @property
    def ssh_config(self) -> Path:
        """Client config for ``ssh -F``; defines ``Host nixmox-test`` (multiplexed if asked)."""
        return self._tmp / "ssh_config"

    @property
    def direct_ssh_config(self) -> Path:
        """Client config like ``ssh_config``, but one new connection per command."""
        return self._tmp / "ssh_config.direct"

    @property
    def client_key(self) -> Path:
        """Private key the client logs in with (as root)."""
        return self._tmp / "client_key"

    @property
    def known_hosts(self) -> Path:
        """known_hosts file holding the server's host key."""
        return self._tmp / "known_hosts"

    @property
    def log_path(self) -> Path:
        """sshd's stderr (``-e``): startup and per-connection messages."""
        return self._tmp / "sshd.log"

    def _start(self) -> None:
        """Generate keys, start sshd, wait for "Server listening"."""
        self._keys()
        # sshd -D insists on its privilege-separation directory.
        Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)
        # free_port() can race with another process taking the port; a
        # new port is cheap, so retry a few times before giving up.
        for attempt in range(3):
            self.port = free_port()
            self._write_configs()
            try:
                self._launch()
                break
            except PeerError:
                if attempt == 2 or "Address already in use" not in self._log():
                    raise
                stop_process(self.proc)
                self.proc = None

    def _keys(self) -> None:
        for key in (self._tmp / "host_key", self.client_key):
            subprocess.run(
                [self.ssh_keygen, "-q", "-t", "ed25519", "-N", "", "-C", self.host, "-f", str(key)],
                check=True,
                timeout=30,
                stdin=subprocess.DEVNULL,
            )
        public = (self._tmp / "host_key.pub").read_text().split()
        self._host_key_line = f"{public[0]} {public[1]}"
        shutil.copy(self._tmp / "client_key.pub", self._tmp / "authorized_keys")

    def _write_configs(self) -> None:
        t = self._tmp
        (t / "sshd_config").write_text(
            f"Port {self.port}\n"
            "ListenAddress 127.0.0.1\n"
            f"HostKey {t / 'host_key'}\n"
            f"PidFile {t / 'sshd.pid'}\n"
            f"AuthorizedKeysFile {t / 'authorized_keys'}\n"
            # No PAM: it would need the system's PAM stack and a password.
            "UsePAM no\n"
            # The temp dir's modes are not what sshd demands of ~/.ssh.
            "StrictModes no\n"
            "PermitRootLogin prohibit-password\n"
            "PubkeyAuthentication yes\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            "PrintMotd no\n"
            "PrintLastLog no\n"
            "LogLevel INFO\n"
            "Subsystem sftp internal-sftp\n"
            # The default post-quantum exchange costs ~0.1 s of CPU per connection;
            # nothing here needs it.
            "KexAlgorithms curve25519-sha256\n"
        )
        # A non-default port makes ssh look the key up as "[host]:port".
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {self._host_key_line}\n")
        direct = (
            f"Host {self.host}\n"
            "  HostName 127.0.0.1\n"
            f"  Port {self.port}\n"
            "  User root\n"
            f"  IdentityFile {self.client_key}\n"
            "  IdentitiesOnly yes\n"
            f"  UserKnownHostsFile {self.known_hosts}\n"
            "  GlobalKnownHostsFile /dev/null\n"
            "  StrictHostKeyChecking yes\n"
            "  BatchMode yes\n"
            "  ConnectTimeout 10\n"
            "  LogLevel ERROR\n"
        )
        self.direct_ssh_config.write_text(direct)
        shared = (
            # %C: a hash of host, port and user, so several hosts' configs can be joined.
            f"  ControlMaster auto\n  ControlPath {self._tmp}/cm-%C\n  ControlPersist 60\n"
        )
        self.ssh_config.write_text(direct + (shared if self.multiplex else ""))

    def stop(self) -> None:
        """End the shared master connection (it outlives the listener), then stop sshd."""
        if self.multiplex and self.tmp is not None and self.ssh_config.exists():
            subprocess.run(
                [self.ssh_bin, "-F", str(self.ssh_config), "-O", "exit", self.host],
                capture_output=True,
                timeout=10,
                stdin=subprocess.DEVNULL,
            )
        super().stop()

    def _launch(self) -> None:
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [self.sshd, "-D", "-e", "-f", str(self._tmp / "sshd_config")],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
            )
        wait_until(
            lambda: "Server listening" in self._log(),
            timeout=self.start_timeout,
            what="sshd",
            proc=self.proc,
            log=self.log_path,
        )

    def _log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def ssh(
        self, *command: str, check: bool = False, timeout: float = 30.0
    ) -> subprocess.CompletedProcess[str]:
        """Run ``ssh -F ssh_config nixmox-test COMMAND...``; output captured."""
        return subprocess.run(
            [self.ssh_bin, "-F", str(self.ssh_config), self.host, *command],
            capture_output=True,
            text=True,
            check=check,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
