"""How a job asks before it changes something it cannot take back.

A job receives a :data:`Confirm` and calls it with its question and the
sentence to refuse with when nobody can be asked; the CLI decides how the
question is asked (``nixmox.cli.prompt``), so jobs never read a terminal.
"""

from __future__ import annotations

from collections.abc import Callable

#: ``confirm(question, refusal)``: True to go on, False when the answer is no;
#: raises :class:`nixmox.core.errors.NotConfirmed` with ``refusal`` when it cannot ask.
Confirm = Callable[[str, str], bool]
