"""An isolated, offline Nix (Debian's ``nix-bin``) for flake and eval tests.

Everything nix writes goes under one temp dir: a chroot store (``--store``),
``HOME`` and the XDG dirs (fetcher and eval caches), and an empty flake
registry so no name like ``nixpkgs`` is ever resolved over the network.
No daemon is involved: the store is local and owned by the test.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

from tests.peers._proc import PeerError

# Variables that would point nix at the real store, daemon, channels or user
# config instead of the sandbox.
_SCRUBBED_ENV = (
    "NIX_PATH",
    "NIX_REMOTE",
    "NIX_STORE_DIR",
    "NIX_STATE_DIR",
    "NIX_CONF_DIR",
    "NIX_USER_CONF_FILES",
    "NIX_CONFIG",
    "XDG_CONFIG_DIRS",
)

# A stand-in for nixpkgs, used through --override-input so that a flake naming
# github:NixOS/nixpkgs locks and evaluates offline. Just enough "lib" for
# module-shaped expressions (mkOption, mkIf, ...); the values are marked so a
# test can see which branch it got.
STUB_NIXPKGS_FLAKE = """\
{
  description = "nixmox test stub for nixpkgs";
  outputs = { self }: {
    lib = rec {
      id = x: x;
      mkOption = attrs: attrs // { _type = "option"; };
      mkEnableOption = name: mkOption { type = "bool"; default = false; description = name; };
      mkIf = condition: content: { _type = "if"; inherit condition content; };
      mkDefault = value: { _type = "override"; priority = 1000; content = value; };
      mkForce = value: { _type = "override"; priority = 50; content = value; };
      optionalString = cond: s: if cond then s else "";
      optional = cond: x: if cond then [ x ] else [ ];
      concatStringsSep = builtins.concatStringsSep;
      types = {
        bool = "bool"; str = "str"; int = "int"; port = "port"; path = "path";
        listOf = t: "listOf ${t}"; attrsOf = t: "attrsOf ${t}";
        nullOr = t: "nullOr ${t}"; enum = xs: "enum";
      };
      version = "stub";
    };
  };
}
"""


class NixError(subprocess.CalledProcessError):
    """A failed nix command whose message includes nix's stderr.

    CalledProcessError's own message omits stderr, which is where nix
    explains itself; without it a failing test says nothing useful.
    """

    def __str__(self) -> str:
        return f"{super().__str__()}\n{self.stderr}"


def write_stub_nixpkgs(directory: Path | str) -> Path:
    """Write the stub nixpkgs flake into ``directory``; return the directory.

    Use it as ``--override-input nixpkgs path:DIR``.
    """
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    (path / "flake.nix").write_text(STUB_NIXPKGS_FLAKE)
    return path


class NixSandbox:
    """A temp dir with its own store, HOME and empty flake registry.

    Context manager (or ``cleanup()``). ``env`` is the environment to run nix
    with; ``args`` are the options that keep it isolated and offline, for
    any ``nix`` / ``nix-instantiate`` command line; ``nix()`` and
    ``instantiate()`` run those with both applied.
    """

    def __init__(self, *, nix: str = "nix", nix_instantiate: str = "nix-instantiate") -> None:
        self.nix_bin = nix
        self.nix_instantiate_bin = nix_instantiate
        self.root = Path(tempfile.mkdtemp(prefix="nixmox-nix-"))
        self.store = self.root / "store"
        self.home = self.root / "home"
        self.registry = self.root / "empty-registry.json"
        self.home.mkdir()
        self.registry.write_text('{"flakes":[],"version":2}\n')
        self.args: list[str] = [
            "--store", str(self.store),
            "--option", "flake-registry", str(self.registry),
            "--extra-experimental-features", "nix-command flakes",
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}
        env.update(
            HOME=str(self.home),
            XDG_CACHE_HOME=str(self.home / ".cache"),
            XDG_CONFIG_HOME=str(self.home / ".config"),
            XDG_DATA_HOME=str(self.home / ".local" / "share"),
            XDG_STATE_HOME=str(self.home / ".local" / "state"),
            # Git (for git+file inputs) must not read the user's config either.
            GIT_CONFIG_NOSYSTEM="1",
            GIT_AUTHOR_NAME="nixmox-test",
            GIT_AUTHOR_EMAIL="test@nixmox.invalid",
            GIT_COMMITTER_NAME="nixmox-test",
            GIT_COMMITTER_EMAIL="test@nixmox.invalid",
        )
        self.env: dict[str, str] = env

    def nix(
        self, *args: str, check: bool = True, cwd: Path | str | None = None, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        """Run ``nix ARGS`` with the sandbox options and environment."""
        return self._run(self.nix_bin, args, check=check, cwd=cwd, timeout=timeout)

    def instantiate(
        self, *args: str, check: bool = True, cwd: Path | str | None = None, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        """Run ``nix-instantiate ARGS`` with the sandbox options and environment."""
        return self._run(self.nix_instantiate_bin, args, check=check, cwd=cwd, timeout=timeout)

    def _run(
        self,
        program: str,
        args: tuple[str, ...],
        *,
        check: bool,
        cwd: Path | str | None,
        timeout: float,
    ) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                [program, *self.args, *args],
                env=self.env,
                cwd=cwd,
                capture_output=True,
                text=True,
                check=check,
                timeout=timeout,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.CalledProcessError as e:
            raise NixError(e.returncode, e.cmd, e.output, e.stderr) from None

    def version(self) -> tuple[int, ...]:
        """nix's version as numbers, e.g. ``(2, 8, 0)``."""
        out = self.nix("--version").stdout
        found = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", out)
        if found is None:
            raise PeerError(f"cannot parse nix version from {out!r}")
        return tuple(int(g) for g in found.groups() if g is not None)

    def write_stub_nixpkgs(self, directory: Path | str | None = None) -> Path:
        """Write the stub nixpkgs flake (default: ``root/stub-nixpkgs``)."""
        return write_stub_nixpkgs(directory or self.root / "stub-nixpkgs")

    def cleanup(self) -> None:
        """Remove the temp dir, store included."""
        if not self.root.exists():
            return
        # Store paths are made read-only by nix; without write permission on
        # the directories rmtree fails for non-root users.
        for dirpath, dirnames, _ in os.walk(self.root):
            for name in dirnames:
                p = Path(dirpath) / name
                if not p.is_symlink():
                    p.chmod(p.stat().st_mode | stat.S_IWUSR)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> NixSandbox:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()
