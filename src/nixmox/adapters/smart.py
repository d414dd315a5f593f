"""The one adapter for ``smartctl`` (smartmontools): a disk's SMART data as JSON.

Only ``smartctl --json -a DEVICE`` is run: it reads, never writes to the disk
(no self-test is started, nothing is enabled). smartctl's exit status is a
bit mask in which most bits report what it *found* (a failing disk, errors in
the log), not that it failed to run; so the JSON is read whatever the exit
status, and only a device smartctl could not open or read (bits 0-2, with no
device data in the JSON) becomes an error.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from nixmox.adapters.runner import Runner, split_remote
from nixmox.core.errors import NixmoxError

#: Bits 0-2 of smartctl's exit status: bad command line, device not opened,
#: a command to the disk failed. The others describe the disk.
_COULD_NOT_READ = 0b111


class SmartError(NixmoxError):
    """smartctl could not read the disk (or is missing)."""


class Smartctl:
    """``smartctl`` through the runner; ``command`` is its argv prefix."""

    def __init__(self, runner: Runner, command: Sequence[str] = ("smartctl",)) -> None:
        remote, self.command = split_remote(command)
        self.runner = runner.on(remote) if remote is not None else runner

    def read(self, device: str) -> Mapping[str, Any]:
        """``smartctl --json -a DEVICE`` as parsed JSON; :class:`SmartError` when
        smartctl printed no JSON or could not read the device at all."""
        argv = [*self.command, "--json", "-a", device]
        result = self.runner.run(argv, changes=False, check=False)
        try:
            doc = json.loads(result.stdout)
        except ValueError:
            said = result.stderr.strip().splitlines()
            raise SmartError(
                f"smartctl printed no JSON for {device}"
                + (f": {said[0]}" if said else f" (exit status {result.returncode})")
            ) from None
        if not isinstance(doc, dict):
            raise SmartError(f"smartctl printed no JSON object for {device}")
        status = doc.get("smartctl", {}).get("exit_status", result.returncode)
        if isinstance(status, int) and status & _COULD_NOT_READ and "device" not in doc:
            raise SmartError(f"smartctl cannot read {device}: {_messages(doc) or status}")
        return doc


def _messages(doc: Mapping[str, Any]) -> str:
    messages = doc.get("smartctl", {}).get("messages", [])
    texts = [str(m.get("string")) for m in messages if isinstance(m, dict) and m.get("string")]
    return "; ".join(texts)
