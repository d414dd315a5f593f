"""What a finished command produced, wherever it ran.

One type for a command run here or over ssh (the runner), inside a guest through
its agent, or through ``pct exec``: the callers read the same exit code and
output whichever way the command went. A Proxmox task is a different thing (an
``exitstatus`` word and a log, see :class:`nixmox.adapters.proxmox.tasks.TaskResult`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class CommandResult:
    """A finished command (or, under --dry-run, a skipped one: ``skipped``, exit 0)."""

    returncode: int
    stdout: str
    stderr: str
    argv: tuple[str, ...] = ()
    seconds: float = 0.0
    skipped: bool = False
    #: The guest agent cut the output short (it keeps only so much).
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def why(self) -> str:
        """The last line of stderr (or stdout), for a one-line report."""
        for text in (self.stderr, self.stdout):
            lines = [line for line in text.strip().splitlines() if line.strip()]
            if lines:
                return lines[-1].strip()
        return f"exit {self.returncode}"


def result_word(ok: bool) -> str:
    """The journal's word for a run: ``ok`` or ``failed``."""
    return "ok" if ok else "failed"


class _HasOk(Protocol):
    @property
    def ok(self) -> bool: ...


class AllPartsOk(ABC):
    """A run's summary made of parts (guests, targets, pools) that each say ``ok``:
    the run is ok when every part is."""

    @abstractmethod
    def parts(self) -> Iterable[_HasOk]:
        """The parts whose ``ok`` decides the run's."""

    @property
    def ok(self) -> bool:
        return all(p.ok for p in self.parts())

    @property
    def result(self) -> str:
        return result_word(self.ok)
