"""Doctor checks as plain data, and the pure verdict over them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    """How one check came out; UNKNOWN when it could not be decided."""

    PASS = "PASS"
    INFO = "INFO"
    WARN = "WARN"
    FAIL = "FAIL"
    UNKNOWN = "UNKNOWN"


@dataclass(frozen=True)
class Check:
    """One check result: a stable id, what it looked at, and how to fix it."""

    id: str
    status: Status
    subject: str
    message: str
    fix: str = ""

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = self.status.value
        return data


#: Nagios-style exit codes: 0 all pass, 1 warn, 2 fail, 3 unknown.
_SEVERITY = {Status.PASS: 0, Status.INFO: 0, Status.WARN: 1, Status.FAIL: 2, Status.UNKNOWN: 3}


def exit_code(checks: Iterable[Check]) -> int:
    """FAIL beats UNKNOWN beats WARN: a known failure is the most useful news."""
    seen = {c.status for c in checks}
    if Status.FAIL in seen:
        return 2
    if Status.UNKNOWN in seen:
        return 3
    return max((_SEVERITY[s] for s in seen), default=0)


def totals(checks: Iterable[Check]) -> dict[str, int]:
    """How many checks ended in each status (every status present, 0 if none)."""
    counted = Counter(c.status for c in checks)
    return {s.value: counted.get(s, 0) for s in Status}
