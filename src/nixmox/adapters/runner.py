"""The one door through which nixmox runs external commands.

Locally or on another machine over SSH (the system ``ssh`` client, so the
user's ``~/.ssh/config``, agent and known_hosts apply), the same way. Where a
command runs is a :class:`Remote`, made in one place: :func:`node_remote` for a
Proxmox node's ``address``, :func:`split_remote` for a configured command such
as ``[zfs] command = ["ssh", "root@pve1", "zfs"]``; :meth:`Runner.on` binds a
runner to it. No other module builds an ``ssh`` command line. On every run:
every command is logged with secrets masked, ``--dry-run`` skips commands that
change things while still running the ones that only read, a hung command is
stopped after its timeout, and failures become typed errors that keep stderr.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import selectors
import shlex
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import PurePath

from nixmox.core.environment import child_environment
from nixmox.core.errors import CommandError, CommandNotFound, CommandTimeout, ConfigError
from nixmox.core.log import mask
from nixmox.core.results import CommandResult
from nixmox.inventory.model import Node

log = logging.getLogger("nixmox.run")

DEFAULT_TIMEOUT = 600.0
#: How long a pipe may go without a byte before it counts as hung.
DEFAULT_STALL = 600.0
#: What a pipe moves per read: big enough that copying costs little.
_CHUNK = 1 << 20


_DESTINATION = re.compile(
    r"([a-z_][a-z0-9_.-]*\$?@)?([A-Za-z0-9_][A-Za-z0-9_.-]*|\[[0-9A-Fa-f:.]+\])"
)


@dataclass(frozen=True)
class Remote:
    """A machine reached with ``ssh DESTINATION`` (``user@host`` or a config alias)."""

    destination: str
    options: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # The inventory validates destinations; this is the last line of defence
        # against one that ssh would read as an option (-oProxyCommand=...).
        if not _DESTINATION.fullmatch(self.destination):
            raise ConfigError(f"{self.destination!r} is not an ssh destination [USER@]HOST")

    @classmethod
    def to(cls, destination: str, environ: Mapping[str, str] | None = None) -> Remote:
        """``destination`` (``[USER@]HOST[:PORT]``) with the ssh config file named by
        ``NIXMOX_SSH_CONFIG``, if set (``ssh -F FILE``; otherwise the user's own
        ``~/.ssh/config`` applies)."""
        env = os.environ if environ is None else environ
        config = env.get("NIXMOX_SSH_CONFIG")
        options: tuple[str, ...] = ("-F", config) if config else ()
        host, port = destination, None
        found = re.fullmatch(r"(.*):([0-9]{1,5})", destination)
        if found and not destination.endswith("]"):
            host, port = found.group(1), found.group(2)
        return cls(host, (*options, "-p", port) if port else options)

    def wrap(self, argv: Sequence[str], env: Mapping[str, str] | None) -> list[str]:
        """The local argv that runs ``argv`` on this machine."""
        remote = shlex.join(argv)
        if env:
            remote = shlex.join(["env", *(f"{k}={v}" for k, v in env.items())]) + " " + remote
        # BatchMode: never stop and wait for a password prompt in a timer job.
        # "--" first: nothing after it, the destination included, is an option.
        return ["ssh", "-o", "BatchMode=yes", *self.options, "--", self.destination, remote]


def node_remote(node: Node) -> Remote:
    """A Proxmox node over SSH (``ssh_user@address``; ``NIXMOX_SSH_CONFIG`` applies)."""
    return Remote.to(f"{node.ssh_user}@{node.address}")


# ssh(1)'s options that take an argument (``-p 22``, ``-oX=Y``, ``-F file``, ...).
_SSH_ARGUMENT = frozenset("BbcDEeFIiJLlmOoPpQRSWw")


def split_remote(command: Sequence[str]) -> tuple[Remote | None, list[str]]:
    """A configured command prefix as where it runs and what runs there.

    ``ssh [OPTIONS] DESTINATION PROGRAM...`` is ``PROGRAM...`` on ``DESTINATION``
    (with ``OPTIONS``); any other prefix (``zfs``, ``sudo zfs``) runs here as it is.
    """
    argv = list(command)
    if not argv or PurePath(argv[0]).name != "ssh":
        return None, argv
    options: list[str] = []
    i = 1
    while i < len(argv) and argv[i].startswith("-") and argv[i] != "--":
        word = argv[i]
        options.append(word)
        i += 1
        for at, letter in enumerate(word[1:], start=1):
            if letter in _SSH_ARGUMENT:
                if at == len(word) - 1 and i < len(argv):  # "-p 22": the next word
                    options.append(argv[i])
                    i += 1
                break
    if i < len(argv) and argv[i] == "--":
        i += 1
    if len(argv) <= i + 1:
        raise ConfigError(
            f"{shlex.join(argv)}: an ssh command needs a destination and the program to run there"
        )
    return Remote(argv[i], tuple(options)), argv[i + 1 :]


@dataclass
class Runner:
    """Runs commands; one instance per nixmox invocation.

    ``dry_run`` makes every command that changes state (``changes=True``, the
    default) log what it would do and return an empty success instead.
    ``remote``: where commands run unless a call names another machine (``None``:
    here), e.g. a runner for an adapter that works on one Proxmox node.
    """

    dry_run: bool = False
    default_timeout: float = DEFAULT_TIMEOUT
    history: list[CommandResult] = field(default_factory=list)
    remote: Remote | None = None

    def on(self, remote: Remote | None) -> Runner:
        """This runner bound to ``remote`` (``None``: here); same --dry-run, timeout and history."""
        return replace(self, remote=remote)

    def run(
        self,
        argv: Sequence[str],
        *,
        remote: Remote | None = None,
        changes: bool = True,
        check: bool = True,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
        cwd: str | None = None,
    ) -> CommandResult:
        """Run ``argv`` (on ``remote`` if given) and return its result.

        Raises :class:`CommandError` on a non-zero exit when ``check`` is set,
        :class:`CommandNotFound` and :class:`CommandTimeout` otherwise.
        ``cwd``: the local working directory (e.g. where ``nixos-rebuild`` links ``result``).
        """
        argv = list(argv)
        remote = remote or self.remote
        full = remote.wrap(argv, env) if remote is not None else argv
        where = f"[{remote.destination}] " if remote is not None else ""
        shown = mask(where + shlex.join(argv))
        if self.dry_run and changes:
            log.debug("would run: %s", shown)  # the job prints its own plan
            result = CommandResult(0, "", "", tuple(argv), skipped=True)
            self.history.append(result)
            return result
        log.debug("$ %s", shown)
        # Never the secrets nixmox read from its own environment (core.environment).
        local_env = child_environment(env if remote is None else None)
        started = time.monotonic()
        try:
            proc = subprocess.Popen(
                full,
                stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=local_env,
                cwd=cwd,
                text=True,
                # Own process group: a timeout stops the command and its children.
                start_new_session=True,
            )
        except FileNotFoundError:
            raise CommandNotFound(f"`{full[0]}` not found on PATH (needed for: {shown})") from None
        except PermissionError:
            raise CommandNotFound(f"`{full[0]}` is not executable (needed for: {shown})") from None
        limit = self.default_timeout if timeout is None else timeout
        try:
            stdout, stderr = proc.communicate(input, timeout=limit)
        except subprocess.TimeoutExpired:
            _stop_group(proc)
            raise CommandTimeout(f"stopped after {limit:g} s without finishing: {shown}") from None
        result = CommandResult(
            proc.returncode, stdout, mask(stderr), tuple(argv), time.monotonic() - started
        )
        self.history.append(result)
        log.debug("exit %d in %.2f s", result.returncode, result.seconds)
        if remote is not None and result.returncode == 255 and check:
            raise CommandError(
                [f"ssh {remote.destination}", *argv], 255, result.stdout, result.stderr
            )
        if check and not result.ok:
            raise CommandError(argv, result.returncode, result.stdout, result.stderr)
        return result

    def pipe(
        self,
        source: Sequence[str],
        sink: Sequence[str],
        *,
        source_remote: Remote | None = None,
        sink_remote: Remote | None = None,
        changes: bool = True,
        progress: Progress | None = None,
        stall: float = DEFAULT_STALL,
    ) -> Piped:
        """Run ``source | sink`` (each on its remote, if given) and return what went through.

        Logged, masked and skipped by --dry-run like :meth:`run`; either end
        failing raises :class:`CommandError` with both ends' stderr. There is no
        overall timeout (a large stream takes what it takes), only ``stall``:
        that long without a byte stops both ends (:class:`CommandTimeout`).
        """
        return Pipe(self, source, sink).run(
            source_remote=source_remote if source_remote is not None else self.remote,
            sink_remote=sink_remote,
            changes=changes,
            progress=progress,
            stall=stall,
        )


@dataclass(frozen=True)
class Piped:
    """A finished pipe ``SOURCE | SINK``: what went through, how long it took, both ends."""

    bytes: int
    seconds: float
    source: CommandResult
    sink: CommandResult

    @property
    def skipped(self) -> bool:
        return self.sink.skipped


#: Called as a pipe runs (about once a second): bytes so far, seconds so far.
Progress = Callable[[int, float], None]


class Pipe:
    """``SOURCE | SINK`` where each end may run on its own machine (``Runner.pipe``).

    nixmox copies the stream itself between the two processes, so it can
    count the bytes, report progress and notice a stream that stopped moving.
    """

    def __init__(self, runner: Runner, source: Sequence[str], sink: Sequence[str]) -> None:
        self.runner = runner
        self.source = list(source)
        self.sink = list(sink)

    def run(
        self,
        *,
        source_remote: Remote | None,
        sink_remote: Remote | None,
        changes: bool,
        progress: Progress | None,
        stall: float,
    ) -> Piped:
        def shown_of(remote: Remote | None, argv: list[str]) -> str:
            where = f"[{remote.destination}] " if remote is not None else ""
            return where + shlex.join(argv)

        shown = mask(f"{shown_of(source_remote, self.source)} | {shown_of(sink_remote, self.sink)}")
        if self.runner.dry_run and changes:
            log.debug("would run: %s", shown)
            src = CommandResult(0, "", "", tuple(self.source), skipped=True)
            dst = CommandResult(0, "", "", tuple(self.sink), skipped=True)
            self.runner.history += [src, dst]
            return Piped(0, 0.0, src, dst)
        log.debug("$ %s", shown)
        source_argv = source_remote.wrap(self.source, None) if source_remote else self.source
        sink_argv = sink_remote.wrap(self.sink, None) if sink_remote else self.sink
        started = time.monotonic()
        with tempfile.TemporaryFile() as source_err, tempfile.TemporaryFile() as sink_err:
            procs: list[subprocess.Popen[bytes]] = []
            try:
                for argv, stdin, stdout, err in (
                    (source_argv, subprocess.DEVNULL, subprocess.PIPE, source_err),
                    (sink_argv, subprocess.PIPE, subprocess.DEVNULL, sink_err),
                ):
                    procs.append(
                        subprocess.Popen(
                            argv,
                            stdin=stdin,
                            stdout=stdout,
                            stderr=err,
                            env=child_environment(None),
                            start_new_session=True,
                        )
                    )
            except (FileNotFoundError, PermissionError):
                for proc in procs:
                    _stop_group(proc)
                missing = source_argv[0] if not procs else sink_argv[0]
                raise CommandNotFound(
                    f"`{missing}` not found or not executable (needed for: {shown})"
                ) from None
            source, sink = procs
            try:
                moved = _copy(source, sink, progress, started, stall)
            except CommandTimeout:
                _stop_group(source)
                _stop_group(sink)
                raise CommandTimeout(
                    f"stopped after {stall:g} s without a byte moving: {shown}"
                ) from None
            except BaseException:
                # A second signal ends nixmox at once: take both ends down with it.
                _stop_group(source)
                _stop_group(sink)
                raise
            source.wait()
            sink.wait()
            seconds = time.monotonic() - started
            results = []
            for proc, argv, err in ((source, self.source, source_err), (sink, self.sink, sink_err)):
                err.seek(0)
                text = mask(err.read().decode(errors="replace"))
                results.append(CommandResult(proc.returncode, "", text, tuple(argv), seconds))
        src, dst = results
        self.runner.history += [src, dst]
        log.debug(
            "exit %d | %d, %d bytes in %.2f s", src.returncode, dst.returncode, moved, seconds
        )
        if not (src.ok and dst.ok):
            # Both sides' words: the sink's is usually the reason, the source's the cause.
            said = "\n".join(
                f"{side}: {r.why()}"
                for side, r in (("send", src), ("receive", dst))
                if not r.ok or r.stderr.strip()
            )
            failed = dst if not dst.ok else src
            raise CommandError(
                [*self.source, "|", *self.sink],
                failed.returncode,
                "",
                f"{src.stderr}\n{dst.stderr}\n{said}",
            )
        return Piped(moved, seconds, src, dst)


def _copy(
    source: subprocess.Popen[bytes],
    sink: subprocess.Popen[bytes],
    progress: Progress | None,
    started: float,
    stall: float,
) -> int:
    """Move the source's stdout into the sink's stdin; the byte count.

    Raises :class:`CommandTimeout` when nothing arrives for ``stall`` seconds, or
    when the sink takes nothing for as long (alive but no longer reading: a hung
    ``zfs receive`` or ssh). A sink that exits ends the copy (the source then sees
    a broken pipe).
    """
    assert source.stdout is not None and sink.stdin is not None
    reader, writer = source.stdout.fileno(), sink.stdin
    moved = 0
    reported = started
    with selectors.DefaultSelector() as sel, selectors.DefaultSelector() as out:
        sel.register(reader, selectors.EVENT_READ)
        out.register(writer.fileno(), selectors.EVENT_WRITE)
        os.set_blocking(writer.fileno(), False)
        try:
            while True:
                if not sel.select(timeout=stall):
                    raise CommandTimeout("stalled")
                chunk = os.read(reader, _CHUNK)
                if not chunk:
                    break
                if not _deliver(writer.fileno(), chunk, out, stall):
                    break
                moved += len(chunk)
                now = time.monotonic()
                if progress is not None and now - reported >= 1.0:
                    reported = now
                    progress(moved, now - started)
        finally:
            source.stdout.close()
            with contextlib.suppress(BrokenPipeError):
                writer.close()
    return moved


def _deliver(fd: int, chunk: bytes, ready: selectors.BaseSelector, stall: float) -> bool:
    """Write all of ``chunk`` to the non-blocking ``fd``; False once the reader is gone.
    Raises :class:`CommandTimeout` when the reader takes nothing for ``stall`` seconds."""
    view = memoryview(chunk)
    while view:
        if not ready.select(timeout=stall):
            raise CommandTimeout("stalled")
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            continue
        except BrokenPipeError:
            return False
    return True


def _stop_group(proc: subprocess.Popen[str] | subprocess.Popen[bytes]) -> None:
    """SIGTERM the command's process group, then SIGKILL if it lingers."""
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        # Drain what is still open (a child blocked on a full pipe would not die of
        # SIGTERM's handler); a pipe's ends are closed by then: only wait.
        streams = (proc.stdin, proc.stdout, proc.stderr)
        drain = any(f is not None and not f.closed for f in streams)
        try:
            if drain:
                proc.communicate(timeout=wait)
            else:
                proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue
