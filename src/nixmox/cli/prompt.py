"""The one confirmation: ask on a terminal, refuse without one unless --yes."""

from __future__ import annotations

import sys
from collections.abc import Callable

from nixmox.core.confirm import Confirm
from nixmox.core.errors import NotConfirmed


def confirmer(yes: bool, ask: Callable[[str], bool] | None = None) -> Confirm:
    """A :data:`~nixmox.core.confirm.Confirm` for a command given ``--yes`` or not.

    ``--yes`` answers yes without asking; otherwise the question goes to
    ``ask`` (tests) or to the terminal, and without a terminal the job's
    refusal is raised as :class:`NotConfirmed` (one line, exit 1).
    """

    def confirm(question: str, refusal: str) -> bool:
        if yes:
            return True
        if ask is not None:
            return ask(question)
        if not sys.stdin.isatty():
            raise NotConfirmed(refusal)
        import typer

        return typer.confirm(question, default=False)

    return confirm
