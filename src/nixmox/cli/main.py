"""Entry point of the ``nixmox`` command.

Kept free of heavy imports: ``nixmox --version`` answers before typer, rich or
pydantic load, ``nixmox --help`` prints its pre-rendered text (``cli/usage.py``)
and ``config check`` runs without typer (an editor or a pre-commit hook runs it
on every save). Everything else goes through :func:`run`, the one place where
errors become a single line and an exit code (tracebacks only with ``-vv``).
"""

from __future__ import annotations

import os
import sys


def _verbosity(args: list[str]) -> int:
    """Count -v/-vv/-q among the global options (before the command)."""
    level = 0
    for arg in args:
        if not arg.startswith("-"):
            break
        if arg == "-q" or arg == "--quiet":
            level = -1
        elif arg in ("-v", "--verbose"):
            level += 1
        elif arg == "-vv":
            level += 2
    return level


def _command(args: list[str]) -> int | None:
    """Index of the command name, after the global options."""
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--config":
            i += 2
        elif arg.startswith("-"):
            i += 1
        else:
            return i
    return None


_GLOBAL_FLAGS = {"--json", "-v", "-vv", "--verbose", "-q", "--quiet"}


def _config_check(args: list[str]) -> tuple[str | None, bool] | None:
    """(``--config``, ``--json``) when ``args`` are ``config check`` with nothing but
    those two and the verbosity flags, in the forms typer takes; else ``None``:
    typer parses (and words any mistake) as for every other command."""
    before: str | None = None  # --config given before the command
    after: str | None = None  # and after it, which wins
    as_json = False
    words: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if len(words) == 1 and arg != "check":
            return None  # `config` takes no options of its own
        if arg == "--config" or arg.startswith("--config="):
            if arg == "--config":
                if i + 1 == len(args):
                    return None
                i += 1
                value = args[i]
            else:
                value = arg.removeprefix("--config=")
            # typer refuses a directory or an unreadable file with its own words.
            if not value or value.startswith("-") or os.path.isdir(value):
                return None
            if os.path.exists(value) and not os.access(value, os.R_OK):
                return None
            if words:
                after = value
            else:
                before = value
        elif arg == "--json":
            as_json = True
        elif arg in _GLOBAL_FLAGS and not words:
            pass
        elif arg in ("config", "check") and len(words) < 2:
            words.append(arg)
        else:
            return None
        i += 1
    if words != ["config", "check"]:
        return None
    return after or before, as_json


def _columns() -> int:
    """The help's width the way click measures it (``shutil.get_terminal_size``,
    without importing shutil and the compression modules it loads)."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


def run(argv: list[str] | None = None) -> int:
    """Run nixmox with ``argv`` (default: the process arguments); return the exit code."""
    args = sys.argv[1:] if argv is None else argv
    # The inventory is validated by nixmox's model alone: no third-party pydantic
    # plugin hooks into it, and looking for one reads the metadata of every
    # installed package (a tenth of `config check`).
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    if args == ["--version"]:
        from nixmox import __version__

        print(f"nixmox {__version__}")
        return 0
    if args in ([], ["--help"], ["-h"]) and _columns() >= 80:
        # typer's own text, rendered by scripts/gen_reference.py (click wraps
        # help at 78 columns on any terminal at least 80 wide).
        from nixmox.cli.usage import HELP

        print(HELP)
        return 0

    verbosity = _verbosity(args)
    from nixmox.core import log

    log.setup(verbosity)
    from nixmox.core import progress

    progress.configure(verbosity)
    from nixmox.core import interrupt
    from nixmox.core.errors import NixmoxError

    interrupt.reset()
    try:
        check = _config_check(args)
        if check is not None:
            from pathlib import Path

            from nixmox.cli import config as config_command

            config, as_json = check
            code = config_command.check(None if config is None else Path(config), as_json=as_json)
            return interrupt.exit_code() or code
        command = _command(args)
        if command is not None and args[command] == "prune-sim":
            # A filter over possibly 100,000 lines: skip loading typer and rich.
            from nixmox.cli import prune_sim

            return prune_sim.main(args[command + 1 :], as_json="--json" in args[:command])
        from nixmox.cli.app import invoke

        code = invoke(args)
        _tell_still_running()
        # A run stopped by SIGINT/SIGTERM says so in its exit status (130/143).
        return interrupt.exit_code() or code
    except NixmoxError as exc:
        _tell_still_running()
        if verbosity >= 2:
            return _traceback(exc.exit_code)
        from nixmox.inventory.load import InventoryInvalid

        # Inventory problems are already FILE:LINE:COL lines; others get our name.
        prefix = "" if isinstance(exc, InventoryInvalid) else "nixmox: "
        from nixmox.core.text import printable

        for line in printable(str(exc)).splitlines() or [type(exc).__name__]:
            print(log.mask(prefix + line), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("nixmox: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if verbosity >= 2:
            return _traceback(1)
        print(
            log.mask(
                f"nixmox: internal error: {type(exc).__name__}: {_printable(exc)} "
                "(run with -vv for the traceback, and please report it)"
            ),
            file=sys.stderr,
        )
        return 1


def _tell_still_running() -> None:
    """What the run started on the server and did not see end: the user must know."""
    from nixmox.core import interrupt

    for line in interrupt.still_running_lines():
        print(f"nixmox: {line}", file=sys.stderr)


def _traceback(code: int) -> int:
    """Print the exception being handled with its traceback (-vv), secrets masked
    like every log line; ``code``."""
    import traceback

    from nixmox.core import log

    print(log.mask(traceback.format_exc()).rstrip(), file=sys.stderr)
    return code


def _printable(exc: BaseException) -> str:
    from nixmox.core.text import printable

    return printable(str(exc))


def main() -> None:
    """Console-script entry point."""
    from nixmox.core.environment import take_secrets

    # Secrets given in the environment stop here: no child process inherits them.
    take_secrets()
    sys.exit(run())


if __name__ == "__main__":
    main()
