"""A throwaway host to reach over SSH: the real sshd, its own /boot and /run,
and recording stand-ins first on its ``PATH``.

``StandInHost`` is :class:`~tests.peers.sshd.Sshd` started inside a private
mount namespace where temp directories are bound over ``/boot`` and ``/run``:
what a command run over SSH writes there (a new kernel image, the
``/run/reboot-required`` flag) lands in the test's directories, never on the
machine. ``stand_in(name, script)`` puts an executable into ``bin_dir``, which
sshd's ``SetEnv PATH`` puts ahead of the system directories. Root's own shell
start-up file is hidden inside the namespace: bash reads it for every command
run over SSH, and a slow one (pyenv and the like) would slow every session.
Each instance answers to its own host alias, so two of them are two nodes.
"""

from __future__ import annotations

import os
import pwd
import re
import shlex
import subprocess
from pathlib import Path

from tests.peers._proc import die_with_parent, wait_until
from tests.peers.sshd import Sshd

SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class StandInHost(Sshd):
    """An sshd in its own mount namespace, reached as ``alias`` with ``ssh -F ssh_config``."""

    name = "test host"
    tmp_prefix = "host"

    def __init__(
        self,
        alias: str,
        *,
        sshd: str = "/usr/sbin/sshd",
        ssh: str = "ssh",
        ssh_keygen: str = "ssh-keygen",
        unshare: str = "unshare",
        multiplex: bool = False,
    ) -> None:
        super().__init__(sshd=sshd, ssh=ssh, ssh_keygen=ssh_keygen, multiplex=multiplex)
        self.host = alias
        self.unshare = unshare

    @property
    def bin_dir(self) -> Path:
        """First on the host's PATH: the stand-ins."""
        return self._tmp / "bin"

    @property
    def boot_dir(self) -> Path:
        """The host's /boot."""
        return self._tmp / "boot"

    @property
    def run_dir(self) -> Path:
        """The host's /run."""
        return self._tmp / "run"

    @property
    def osrelease(self) -> Path:
        """What the host sees as /proc/sys/kernel/osrelease: the kernel it "runs"."""
        return self._tmp / "osrelease"

    def _start(self) -> None:
        for d in (self.bin_dir, self.boot_dir, self.run_dir):
            d.mkdir()
        # It starts out running this machine's kernel.
        self.osrelease.write_text(Path("/proc/sys/kernel/osrelease").read_text())
        super()._start()

    def boot_newest(self) -> str:
        """A reboot as a boot loader does it: run the newest kernel in /boot from now on."""
        kernels = [f.name.removeprefix("vmlinuz-") for f in self.boot_dir.glob("vmlinuz-*")]
        if kernels:
            self.osrelease.write_text(max(kernels, key=_version_key) + "\n")
        return self.osrelease.read_text().strip()

    def _write_configs(self) -> None:
        super()._write_configs()
        config = self._tmp / "sshd_config"
        config.write_text(config.read_text() + f"SetEnv PATH={self.bin_dir}:{SYSTEM_PATH}\n")

    def _launch(self) -> None:
        rc = shlex.quote(str(Path(pwd.getpwuid(os.getuid()).pw_dir) / ".bashrc"))
        binds = (
            f"mount --bind {shlex.quote(str(self.boot_dir))} /boot && "
            f"mount --bind {shlex.quote(str(self.run_dir))} /run && "
            f"mount --bind {shlex.quote(str(self.osrelease))} /proc/sys/kernel/osrelease && "
            # sshd's privilege separation directory, now inside the host's own /run.
            "mkdir -p -m 0755 /run/sshd && "
            f"if [ -f {rc} ]; then mount --bind /dev/null {rc}; fi && "
            'exec "$@"'
        )
        sshd = [self.sshd, "-D", "-e", "-f", str(self._tmp / "sshd_config")]
        namespace = [self.unshare, "--mount", "--propagation", "private"]
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [*namespace, "sh", "-c", binds, "sh", *sshd],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
            )
        wait_until(
            lambda: "Server listening" in self._log(),
            timeout=self.start_timeout,
            what=self.name,
            proc=self.proc,
            log=self.log_path,
        )

    def stand_in(self, name: str, script: str) -> Path:
        """Install an executable ``name`` (``script`` is its whole text) on the host's PATH."""
        path = self.bin_dir / name
        path.write_text(script)
        path.chmod(0o755)
        return path


def _version_key(release: str) -> list[tuple[int, str]]:
    """Order kernel releases the way their numbers read (6.8.12-10 after 6.8.12-4)."""
    return [(int(p), "") if p.isdigit() else (-1, p) for p in re.split(r"(\d+)", release) if p]
