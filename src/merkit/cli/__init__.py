"""The `merkit` command. Each command lives in a small module and is a thin call into the API.

User errors (MerkitError, bad options) print one line and exit 2; nothing prints a traceback
for them.
"""

from __future__ import annotations

import sys

import typer
from typer._click.exceptions import ClickException  # typer 0.29 vendors click

from merkit.cli.app import app, err_console, say
from merkit.errors import MerkitError

# Importing the command modules registers their commands on `app`, in the order `--help` lists
# them: one module per command, named after it.
from merkit.cli import datasets, inspect, prepare  # noqa: E402,F401  isort: skip
from merkit.cli import train, audit, report, score  # noqa: E402,F401  isort: skip
from merkit.cli import import_, evaluate, models  # noqa: E402,F401  isort: skip
from merkit.cli import fit, predict, export, spot  # noqa: E402,F401  isort: skip
from merkit.cli import demo, serve  # noqa: E402,F401  isort: skip

__all__ = ["app", "main"]


INTERRUPTED = 130  # the shell's code for a run stopped by Ctrl-C (128 + SIGINT)


def os_error_text(exc: OSError) -> str:
    """`path: cannot write or read it (reason)`, naming the file the system refused."""
    path = exc.filename if exc.filename is not None else "a file"
    reason = exc.strerror or type(exc).__name__
    if isinstance(exc, NotADirectoryError):
        reason += ": a part of the path is a file, not a folder"
    return f"{path}: cannot be written or read ({reason})"


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    try:
        # Outside standalone mode typer returns an exit code instead of raising it: Ctrl-C
        # arrives here as 130, `--help` as 0; a command itself returns None.
        code = app(args=argv, standalone_mode=False)
    except MerkitError as exc:
        say("error:", "bold red", str(exc))
        sys.exit(exc.exit_code)
    except OSError as exc:  # a file the command had to write or read: name it, no traceback
        say("error:", "bold red", os_error_text(exc))
        sys.exit(MerkitError.exit_code)
    except ClickException as exc:  # bad options or arguments: click's own message, exit 2
        exc.show()
        sys.exit(exc.exit_code)
    except typer.Abort:
        err_console.print("aborted")
        sys.exit(INTERRUPTED)
    if code == INTERRUPTED:
        err_console.print(
            "interrupted: what was already written is kept, and rerunning the same "
            "prepare, train, audit or demo command resumes from it"
        )
    if code:
        sys.exit(code)
