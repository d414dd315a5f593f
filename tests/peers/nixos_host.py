"""A fake NixOS guest: a throwaway sshd whose sessions see a NixOS-shaped system.

The sshd runs in a private mount namespace (``unshare --mount``) where
``/nix/var/nix/profiles`` is a temp dir holding ``system -> system-41-link``
and ``/run`` is a tmpfs with ``current-system`` and ``booted-system``: the
product reads and switches the real paths, this machine's own profiles and
``/run`` are never touched.

Sessions get a ``PATH`` (sshd ``SetEnv``) starting with recording stand-ins for
``nixos-rebuild``, ``switch-to-configuration``, ``systemctl``, ``systemd-run``,
``nix-env`` and ``pct``: each appends its argv to ``log`` and behaves as the
files in ``script/`` say. ``nix`` is the real nix 2.8 (Debian's ``nix-bin``)
behind a wrapper that keeps it on an isolated store and an empty registry.

Scripted behaviour (files under ``script/``, ``SYS`` = a system's directory
name, ``system-41`` or ``new-system``):

- ``build-fails``: ``nixos-rebuild build`` fails;
- ``new-kernel``: the built system has another kernel (a reboot is needed);
- ``same-system``: the build yields the running system again;
- ``state.SYS``: what ``systemctl is-system-running`` answers on that system
  (one line per call when there are several, the last one repeated);
- ``failed.SYS``: the lines of ``systemctl list-units --state=failed``;
- ``inactive.SYS``: units ``systemctl is-active`` calls inactive;
- ``kill-sshd.SYS``: switching to that system stops the sshd (guest lost);
- ``deadman-fires``: the dead-man timer elapses during the health checks (its
  command, as given to ``systemd-run``, runs at the first ``is-system-running``).

``systemd-run`` without ``--on-active`` runs its command at once and returns its
exit status (what ``--wait`` does); ``systemctl`` accepts anything else (``stop``,
``reset-failed``) with exit 0.

:class:`NixosGuestAgent` is a real ``qemu-ga`` entered into the same mount
namespace (``nsenter``), so commands through the agent see the same fake
system; each system's ``sw/bin`` holds the stand-ins, the nix wrapper and a
shell, as ``/run/current-system/sw/bin`` does on NixOS.
"""

from __future__ import annotations

import os
import pwd
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

from tests.peers._proc import die_with_parent, wait_until
from tests.peers.nix import NixSandbox
from tests.peers.qga import QemuGuestAgent
from tests.peers.sshd import Sshd

GENERATION = 41
NAMESPACE = ("unshare", "--mount", "--propagation", "private")

_RECORD = 'printf "%s\\n" "$(basename "$0") $*" >> {log}\n'

STANDINS = {
    "nixos-rebuild": """\
if [ -e {script}/build-fails ]; then
  echo "error: builder for '/nix/store/x-nixos-system' failed" >&2; exit 1
fi
if [ -e {script}/same-system ]; then ln -sfn {root}/store/system-41 result; exit 0; fi
new={root}/store/new-system
rm -rf "$new"; mkdir -p "$new/bin"
ln -s {bin}/switch-to-configuration "$new/bin/switch-to-configuration"
ln -s {root}/sw "$new/sw"
if [ -e {script}/new-kernel ]; then ln -s {root}/store/kernel-2 "$new/kernel"
else ln -s {root}/store/kernel-1 "$new/kernel"; fi
ln -sfn "$new" result
""",
    "switch-to-configuration": """\
sys=$(cd "$(dirname "$0")/.." && pwd -P)
name=$(basename "$sys")
printf "%s\\n" "switched-to $name" >> {log}
ln -sfn "$sys" /run/current-system
if [ -e {script}/kill-sshd.$name ]; then kill "$(cat {pidfile})"; fi
exit 0
""",
    "systemctl": """\
cur=$(basename "$(readlink -f /run/current-system)")
case "$1" in
  is-system-running)
    if [ -e {root}/deadman.sh ]; then
      sh {root}/deadman.sh > /dev/null 2>&1; rm -f {root}/deadman.sh
      cur=$(basename "$(readlink -f /run/current-system)")
    fi
    s=running
    if [ -e {script}/state.$cur ]; then
      s=$(head -n 1 {script}/state.$cur)
      # Several lines: one answer per call, the last one for ever after.
      [ "$(wc -l < {script}/state.$cur)" -gt 1 ] && sed -i 1d {script}/state.$cur
    fi
    echo "$s"; [ "$s" = running ];;
  list-units) [ -e {script}/failed.$cur ] && cat {script}/failed.$cur; exit 0;;
  is-active)
    shift; rc=0
    for u in "$@"; do
      if grep -qx "$u" {script}/inactive.$cur 2>/dev/null; then echo inactive; rc=3
      else echo active; fi
    done
    exit $rc;;
  *) exit 0;;
esac
""",
    "systemd-run": """\
# Without --on-active: a service run now; with --wait, its exit status is ours.
case " $* " in *" --on-active="*) ;; *)
  while [ $# -gt 0 ]; do case "$1" in -*) shift;; *) break;; esac; done
  exec "$@";;
esac
# deadman-fires: keep the command; the next `systemctl is-system-running` runs it.
if [ -e {script}/deadman-fires ]; then
  for a in "$@"; do last=$a; done
  printf "%s\\n" "$last" > {root}/deadman.sh
fi
for a in "$@"; do
  case "$a" in --unit=*) echo "Running timer as unit: ${{a#--unit=}}.timer";; esac
done
""",
    "nix-env": """\
profile= target= gen=
while [ $# -gt 0 ]; do
  case "$1" in
    -p) profile=$2; shift 2;;
    --set) target=$2; shift 2;;
    --switch-generation) gen=$2; shift 2;;
    *) shift;;
  esac
done
dir=$(dirname "$profile"); base=$(basename "$profile")
if [ -n "$target" ]; then
  n=$(ls "$dir" | sed -n "s/^$base-\\([0-9]*\\)-link$/\\1/p" | sort -n | tail -1)
  n=$((n + 1))
  ln -s "$target" "$dir/$base-$n-link"
  ln -sfn "$base-$n-link" "$profile"
  echo "switching profile from version $((n - 1)) to $n" >&2
elif [ -n "$gen" ]; then
  [ -e "$dir/$base-$gen-link" ] || {{ echo "error: generation $gen does not exist" >&2; exit 1; }}
  ln -sfn "$base-$gen-link" "$profile"
fi
""",
    # pct exec VMID -- CMD...: the "container" is this same fake host.
    "pct": """\
[ "$1" = exec ] || exit 0
shift 2; [ "$1" = -- ] && shift
exec "$@"
""",
}


class NixosHost(Sshd):
    """:class:`Sshd` in a private mount namespace, dressed up as a NixOS guest.

    After ``start()``: ``root`` (the fake's files), ``script`` (behaviour
    files), ``log_lines()`` (what the stand-ins recorded), ``profiles`` (the
    directory seen as ``/nix/var/nix/profiles``), ``generation()`` (where the
    system profile points now).
    """

    name = "nixos-host"
    tmp_prefix = "nixos-host"

    def __init__(self, nix: NixSandbox, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.nix = nix

    @property
    def root(self) -> Path:
        return self._tmp / "guest"

    @property
    def script(self) -> Path:
        return self.root / "script"

    @property
    def profiles(self) -> Path:
        return self.root / "profiles"

    @property
    def log_file(self) -> Path:
        return self.root / "log"

    def log_lines(self) -> list[str]:
        """Every stand-in call so far, ``NAME ARGS...`` per line."""
        return self.log_file.read_text().splitlines() if self.log_file.exists() else []

    def calls(self, name: str) -> list[str]:
        """The recorded calls of stand-in ``name``."""
        return [line for line in self.log_lines() if line.split(" ", 1)[0] == name]

    def generation(self) -> str:
        """The system profile's link target now (``system-42-link``)."""
        return os.readlink(self.profiles / "system")

    def _start(self) -> None:
        self._fake_system()
        super()._start()

    def _fake_system(self) -> None:
        root = self.root
        for d in ("bin", "script", "profiles", "store", "run", "varlib"):
            (root / d).mkdir(parents=True)
        values = {
            "root": root,
            "bin": root / "bin",
            "script": self.script,
            "log": self.log_file,
            "pidfile": self._tmp / "sshd.pid",
        }
        for name, body in STANDINS.items():
            path = root / "bin" / name
            path.write_text("#!/bin/sh\n" + _RECORD.format(**values) + body.format(**values))
            path.chmod(0o755)
        self._nix_wrapper()
        store = root / "store"
        (store / "kernel-1").write_text("kernel 1\n")
        (store / "kernel-2").write_text("kernel 2\n")
        system = store / f"system-{GENERATION}"
        (system / "bin").mkdir(parents=True)
        (system / "bin" / "switch-to-configuration").symlink_to(
            root / "bin" / "switch-to-configuration"
        )
        (system / "kernel").symlink_to(store / "kernel-1")
        (system / "sw").symlink_to(root / "sw")
        # /run/current-system/sw/bin: what the guest agent finds (stand-ins, nix, a shell).
        (root / "sw" / "bin").mkdir(parents=True)
        for name in (*STANDINS, "nix"):
            (root / "sw" / "bin" / name).symlink_to(root / "bin" / name)
        (root / "sw" / "bin" / "sh").symlink_to("/bin/sh")
        (self.profiles / f"system-{GENERATION}-link").symlink_to(system)
        (self.profiles / "system").symlink_to(f"system-{GENERATION}-link")

    def _nix_wrapper(self) -> None:
        n = self.nix
        keep = ("HOME", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME")
        exports = "".join(f"export {k}={shlex.quote(n.env[k])}\n" for k in keep)
        # Absolute: a bare "nix" would find this wrapper again on the session's PATH.
        args = shlex.join([shutil.which(n.nix_bin) or n.nix_bin, *n.args])
        path = self.root / "bin" / "nix"
        path.write_text(
            "#!/bin/sh\n"
            + _RECORD.format(log=self.log_file)
            + "unset NIX_PATH NIX_REMOTE NIX_CONF_DIR NIX_USER_CONF_FILES NIX_CONFIG\n"
            + exports
            + f'exec {args} "$@"\n'
        )
        path.chmod(0o755)

    def _write_configs(self) -> None:
        super()._write_configs()
        config = self._tmp / "sshd_config"
        path = f"{self.root / 'bin'}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
        config.write_text(config.read_text() + f"SetEnv PATH={path}\n")

    def _launch(self) -> None:
        root = self.root
        system = root / "store" / f"system-{GENERATION}"
        rc = shlex.quote(str(Path(pwd.getpwuid(os.getuid()).pw_dir) / ".bashrc"))
        # unshare execs sh, sh execs sshd: the process started here is sshd itself.
        setup = (
            # The mount point exists wherever nix-bin set up /nix; a bare install may lack it.
            "mkdir -p /nix/var/nix/profiles && "
            f"mount --bind {root / 'profiles'} /nix/var/nix/profiles && "
            # nixmox's own record in the guest (an empty mount point on the real machine).
            f"mkdir -p /var/lib/nixmox && mount --bind {root / 'varlib'} /var/lib/nixmox && "
            "mount -t tmpfs tmpfs /run && mkdir -p /run/sshd && "
            # Root's own shell start-up (pyenv and the like) would slow every session.
            f"if [ -f {rc} ]; then mount --bind /dev/null {rc}; fi && "
            f"ln -s {system} /run/current-system && ln -s {system} /run/booted-system && "
            'exec "$@"'
        )
        sshd = [self.sshd, "-D", "-e", "-f", str(self._tmp / "sshd_config")]
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [*NAMESPACE, "/bin/sh", "-c", setup, "sh", *sshd],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
            )
        wait_until(
            lambda: "Server listening" in self._log(),
            timeout=self.start_timeout,
            what="sshd (fake NixOS guest)",
            proc=self.proc,
            log=self.log_path,
        )


class NixosGuestAgent(QemuGuestAgent):
    """A real qemu-ga inside ``host``'s mount namespace (dangerous commands blocked).

    Its commands get the ``PATH`` a NixOS login environment would give (the
    stand-ins first), which is what ``/etc/set-environment`` provides there.
    """

    tmp_prefix = "nixos-qga"

    def __init__(self, host: NixosHost, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.host = host

    def _start(self) -> None:
        real = self.qemu_ga
        path = f"{self.host.root / 'bin'}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
        # qemu-ga is started through nsenter + env; the wrapper is what Daemon runs.
        wrapper = self._tmp / "qemu-ga-in-guest"
        wrapper.write_text(
            "#!/bin/sh\n"
            f"exec nsenter -t {self.host.pid} -m env PATH={shlex.quote(path)} "
            f'{shlex.quote(real)} "$@"\n'
        )
        wrapper.chmod(0o755)
        self.qemu_ga = str(wrapper)
        try:
            super()._start()
        finally:
            self.qemu_ga = real
