"""Real ZFS for tests: ``zfs-fuse`` in a private mount namespace.

zfs-fuse keeps its control socket, pool cache and lock at fixed paths
(``/run/zfs``, ``/var/lib/zfs``, ``/run/lock/zfs``). Running it inside its own
mount namespace with private directories bound over those paths means each
instance (one per pytest session or xdist worker, or another worktree's run)
has its own daemon and pools and cannot see or disturb any other. Commands
reach it through ``nsenter``; the wrapper scripts in ``bin_dir`` do that, so
product code that runs plain ``zfs``/``zpool`` from ``PATH`` works unchanged.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import uuid
from pathlib import Path

from tests.peers._proc import Daemon, PeerError, die_with_parent, wait_until

# The fixed paths zfs-fuse uses; each gets a private directory bound over it.
_BIND_TARGETS = {"run": "/run/zfs", "lib": "/var/lib/zfs", "lock": "/run/lock/zfs"}


class ZfsFuse(Daemon):
    """One zfs-fuse daemon in its own mount namespace, with its pools.

    Use as a context manager (or ``start()``/``stop()``). After ``start()``:
    ``pid`` is the daemon, ``bin_dir`` holds ``zfs``/``zpool`` wrappers,
    ``env()`` is an environment with ``bin_dir`` first on ``PATH``.
    """

    name = "zfs-fuse"
    tmp_prefix = "zfs"
    # zfs-fuse needs about 4 s to exit on SIGTERM (pools or not), so allow it
    # well over that before falling back to SIGKILL.
    stop_timeout = 15.0

    def __init__(
        self,
        *,
        zfs_fuse: str = "/usr/sbin/zfs-fuse",
        zfs: str = "/usr/sbin/zfs",
        zpool: str = "/usr/sbin/zpool",
        start_timeout: float = 15.0,
    ) -> None:
        super().__init__()
        self.zfs_fuse = zfs_fuse
        # Absolute paths on purpose: the wrappers run these inside the
        # namespace, where a bare "zfs" could resolve to the wrapper itself
        # (bin_dir early on PATH) and recurse through nsenter forever.
        self.zfs_path = zfs
        self.zpool_path = zpool
        self.start_timeout = start_timeout
        self.pools: dict[str, Path] = {}

    # -- lifecycle ---------------------------------------------------------

    @property
    def bin_dir(self) -> Path:
        """Directory with the ``zfs`` and ``zpool`` wrapper scripts."""
        return self._tmp / "bin"

    @property
    def log_path(self) -> Path:
        """zfs-fuse's own stdout/stderr."""
        return self._tmp / "zfs-fuse.log"

    def _start(self) -> None:
        """Start the daemon and wait until ``zpool list`` answers.

        Its PID (``pid``) is also the mount namespace to enter.
        """
        binds = []
        for name, target in _BIND_TARGETS.items():
            (self._tmp / name).mkdir()
            # A bind mount needs an existing target; an empty directory on the
            # host is harmless, so create it and leave it for other instances.
            Path(target).mkdir(parents=True, exist_ok=True)
            src = shlex.quote(str(self._tmp / name))
            binds.append(f"mount --bind {src} {target}")
        (self._tmp / "pools").mkdir()
        script = " && ".join(
            [*binds, f"exec {shlex.quote(self.zfs_fuse)} --no-daemon --no-kstat-mount"]
        )
        with self.log_path.open("wb") as log:
            # unshare and sh both exec, so the Popen PID is zfs-fuse itself:
            # the namespace to enter and the process to stop are one PID.
            self.proc = subprocess.Popen(
                ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd="/",
                preexec_fn=die_with_parent,
            )
        self._write_wrappers()
        wait_until(
            lambda: self.run("zpool", "list", check=False, timeout=5).returncode == 0,
            timeout=self.start_timeout,
            what="zfs-fuse",
            proc=self.proc,
            log=self.log_path,
            interval=0.1,
        )

    def _write_wrappers(self) -> None:
        self.bin_dir.mkdir()
        for name, real in (("zfs", self.zfs_path), ("zpool", self.zpool_path)):
            wrapper = self.bin_dir / name
            # nsenter -m starts the command in "/", so carry the caller's
            # working directory over: relative paths (send/recv files,
            # pool files) must mean the same as without the wrapper.
            wrapper.write_text(
                "#!/bin/sh\n"
                f'exec nsenter -t {self.pid} -m --wd="$(pwd -P)" {shlex.quote(real)} "$@"\n'
            )
            wrapper.chmod(0o755)

    def stop(self) -> None:
        """Destroy every pool, stop the daemon, remove the temp files."""
        try:
            super().stop()
        finally:
            self.pools.clear()

    def _before_stop(self) -> None:
        """Destroy every pool while the daemon still answers."""
        # Ask the daemon rather than trusting self.pools: a test may have
        # created or renamed pools behind our back.
        listed = self.run("zpool", "list", "-H", "-o", "name", check=False, timeout=15)
        names = set(listed.stdout.split()) | set(self.pools)
        for name in sorted(names):
            self.run("zpool", "destroy", "-f", name, check=False, timeout=30)

    # -- commands ----------------------------------------------------------

    def run(
        self,
        *args: str,
        check: bool = True,
        input: str | None = None,
        timeout: float = 60.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``zfs ...`` or ``zpool ...`` (first arg) inside the namespace.

        Any other first argument runs that command in the namespace as is.
        """
        if not args:
            raise ValueError("run() needs a command")
        real = {"zfs": self.zfs_path, "zpool": self.zpool_path}.get(args[0], args[0])
        return subprocess.run(
            ["nsenter", "-t", str(self.pid), "-m", f"--wd={os.getcwd()}", real, *args[1:]],
            input=input,
            capture_output=True,
            text=True,
            check=check,
            timeout=timeout,
        )

    def zfs(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Shorthand for ``run("zfs", ...)``."""
        return self.run("zfs", *args, check=check)

    def zpool(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Shorthand for ``run("zpool", ...)``."""
        return self.run("zpool", *args, check=check)

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """``base`` (default: this process's environment) with the wrappers first on PATH."""
        env = dict(os.environ if base is None else base)
        env["PATH"] = f"{self.bin_dir}{os.pathsep}{env.get('PATH', os.defpath)}"
        return env

    # -- pools -------------------------------------------------------------

    def create_pool(self, name: str | None = None, size: str = "256M") -> str:
        """Create a pool on a sparse file; return its name.

        ``-m none`` keeps every dataset unmounted: zfs-fuse refuses to destroy
        a mounted dataset the first time ("busy"), and no FUSE mount is left
        behind if a test dies. Without ``name`` a unique one is chosen.
        """
        name = name or unique_pool_name()
        image = self._tmp / "pools" / f"{name}.img"
        subprocess.run(["truncate", "-s", size, str(image)], check=True, timeout=10)
        try:
            self.run("zpool", "create", "-m", "none", name, str(image))
        except subprocess.CalledProcessError as e:
            image.unlink(missing_ok=True)
            raise PeerError(f"zpool create {name} failed: {e.stderr.strip()}") from e
        self.pools[name] = image
        return name

    def destroy_pool(self, name: str) -> None:
        """Destroy a pool (forcefully) and delete its backing file."""
        self.run("zpool", "destroy", "-f", name, check=False, timeout=30)
        image = self.pools.pop(name, None)
        if image is not None:
            image.unlink(missing_ok=True)


def unique_pool_name(prefix: str = "nxt") -> str:
    """A pool name no other test uses (pool names must start with a letter)."""
    return f"{prefix}{uuid.uuid4().hex[:10]}"
