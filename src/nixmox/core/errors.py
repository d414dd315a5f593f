"""The errors nixmox raises on purpose.

Every failure a user can cause or meet (bad input, an unreachable API, a
command that failed) is a :class:`NixmoxError`. The CLI turns one into a single
clear line and an exit code; only ``-vv`` shows a traceback.
"""

from __future__ import annotations

from nixmox.core.text import printable


class NixmoxError(Exception):
    """Base of every error nixmox reports to the user as one line."""

    exit_code: int = 1


class ConfigError(NixmoxError):
    """The inventory (or a flag) is wrong; the message says where."""


class UsageError(NixmoxError):
    """A command line nixmox cannot parse (exit 2, like the other usage errors)."""

    exit_code = 2


class NotConfirmed(NixmoxError):
    """The user did not confirm a change (or could not: no terminal and no --yes)."""


class CommandError(NixmoxError):
    """An external command failed; stderr is kept for the report."""

    def __init__(self, argv: list[str], returncode: int, stdout: str, stderr: str) -> None:
        self.argv = argv
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        # The output may come from a guest: no terminal escapes in the message.
        cleaned = printable(stderr).strip()
        detail = cleaned.splitlines()[-1] if cleaned else "no error output"
        super().__init__(f"`{argv[0]}` exited with {returncode}: {detail}")


class CommandNotFound(NixmoxError):
    """The program to run does not exist on PATH (or on the remote host)."""


class CommandTimeout(NixmoxError):
    """An external command did not finish in time and was stopped."""


class LockBusy(NixmoxError):
    """Another nixmox run holds the state lock."""


class ProxmoxError(NixmoxError):
    """The Proxmox API refused a request or could not be reached."""
