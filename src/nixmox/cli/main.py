"""Entry point of the ``nixmox`` command.

Kept free of heavy imports: ``nixmox --version`` answers before typer, rich or
pydantic load. Everything else goes through :func:`run`, the one place where
errors become a single line and an exit code (tracebacks only with ``-vv``).
"""

from __future__ import annotations

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


def run(argv: list[str] | None = None) -> int:
    """Run nixmox with ``argv`` (default: the process arguments); return the exit code."""
    args = sys.argv[1:] if argv is None else argv
    if args == ["--version"]:
        from nixmox import __version__

        print(f"nixmox {__version__}")
        return 0

    verbosity = _verbosity(args)
    from nixmox.core import log

    log.setup(verbosity)
    from nixmox.core import interrupt
    from nixmox.core.errors import NixmoxError

    interrupt.reset()
    try:
        command = _command(args)
        if command is not None and args[command] == "prune-sim":
            # A filter over possibly 100,000 lines: skip loading typer and rich.
            from nixmox.cli import prune_sim

            return prune_sim.main(args[command + 1 :], as_json="--json" in args[:command])
        from nixmox.cli.app import invoke

        code = invoke(args)
        # A run stopped by SIGINT/SIGTERM says so in its exit status (130/143).
        return interrupt.exit_code() or code
    except NixmoxError as exc:
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
