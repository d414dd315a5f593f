"""The one task waiter: every asynchronous Proxmox call ends here.

Polls adaptively (0.25 s, rising to 2 s), checks ``exitstatus`` (``OK``
succeeds, ``WARNINGS: N`` succeeds with warnings that are reported, anything
else fails with the end of the task log), and gives up with a typed timeout.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from nixmox.adapters.proxmox.client import Proxmox
from nixmox.core import interrupt
from nixmox.core.clock import SYSTEM_CLOCK, Clock
from nixmox.core.errors import ProxmoxError
from nixmox.core.text import printable
from nixmox.core.words import plural

log = logging.getLogger("nixmox.task")


@dataclass(frozen=True)
class TaskResult:
    """How a Proxmox task ended.

    Not a :class:`~nixmox.core.results.CommandResult`: a task is PVE's own job,
    named by its UPID, and ends with an ``exitstatus`` word (``OK``,
    ``WARNINGS: n``, or the error) and a log on the node, not with an exit code
    and output streams of a program nixmox started."""

    upid: str
    node: str
    exitstatus: str
    warnings: int = 0
    log: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.exitstatus == "OK" or self.exitstatus.startswith("WARNINGS")


class TaskFailed(ProxmoxError):
    """A task ended with an error; ``log`` holds its last lines."""

    def __init__(self, result: TaskResult, what: str) -> None:
        self.result = result
        tail = "; ".join(line for line in result.log[-3:] if line.strip())
        super().__init__(f"{what} failed: {result.exitstatus}" + (f" ({tail})" if tail else ""))


class TaskTimeout(ProxmoxError):
    """A task was still running when nixmox stopped waiting (it may still finish)."""


def node_of(upid: str) -> str:
    """``UPID:pve1:...`` -> ``pve1``."""
    parts = upid.split(":")
    if len(parts) < 3 or parts[0] != "UPID":
        raise ProxmoxError(f"not a task id: {upid!r}")
    return parts[1]


def warnings_of(exitstatus: str) -> int:
    """``WARNINGS: 3`` -> 3: the task succeeded, with warnings worth reporting."""
    if not exitstatus.startswith("WARNINGS"):
        return 0
    digits = exitstatus.split(":", 1)[-1].strip()
    return int(digits) if digits.isdigit() else 1


def task_log(api: Proxmox, upid: str, limit: int = 500, start: int = 0) -> list[str]:
    """The task's log lines from line ``start`` (the API numbers them; the text is all
    nixmox needs)."""
    rows = api.get(f"/nodes/{node_of(upid)}/tasks/{upid}/log", start=start, limit=limit) or []
    # Task logs carry what guests and hook scripts print: printable text only.
    return [printable(str(r.get("t", ""))) for r in rows]


def wait(
    api: Proxmox,
    upid: str,
    *,
    what: str = "task",
    timeout: float = 3600.0,
    clock: Clock = SYSTEM_CLOCK,
    watch: Callable[[], None] | None = None,
) -> TaskResult:
    """Wait for task ``upid``: its result, or :class:`TaskFailed` / :class:`TaskTimeout`.

    ``watch`` is called after each look at a task still running (to read its
    log as it grows, say)."""
    node = node_of(upid)
    deadline = clock.monotonic() + timeout
    delay = 0.25
    # Not seen to end (a timeout, the API gone, a second Ctrl-C): the report names the UPID.
    with interrupt.server_task(upid, what):
        while True:
            status = api.get(f"/nodes/{node}/tasks/{upid}/status")
            if status.get("status") == "stopped":
                break
            if clock.monotonic() >= deadline:
                raise TaskTimeout(f"{what}: still running after {timeout:g} s ({upid})")
            if watch is not None:
                watch()
            clock.sleep(delay)
            delay = min(delay * 1.5, 2.0)
    exitstatus = printable(str(status.get("exitstatus", "")))
    warnings = warnings_of(exitstatus)
    lines = task_log(api, upid) if exitstatus != "OK" else []
    result = TaskResult(upid, node, exitstatus, warnings, lines)
    if not result.ok:
        raise TaskFailed(result, what)
    if warnings:
        log.warning(
            "%s finished with %s: %s",
            what,
            plural(warnings, "warning"),
            "; ".join(line for line in lines if "WARN" in line) or exitstatus,
        )
    return result
