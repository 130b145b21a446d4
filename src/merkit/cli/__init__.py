"""The `merkit` command. Each command lives in a small module and is a thin call into the API.

User errors (MerkitError, bad options) print one line and exit 2; nothing prints a traceback
for them.
"""

from __future__ import annotations

import sys

import typer
from typer._click.exceptions import ClickException  # typer 0.29 vendors click

from merkit.cli.app import app, err_console
from merkit.errors import MerkitError

# Importing the command modules registers their commands on `app`.
from merkit.cli import commands_data, commands_eval, commands_prepare  # noqa: E402,F401  isort: skip
from merkit.cli import commands_train  # noqa: E402,F401  isort: skip
from merkit.cli import commands_models  # noqa: E402,F401  isort: skip
from merkit.cli import commands_use  # noqa: E402,F401  isort: skip
from merkit.cli import commands_demo  # noqa: E402,F401  isort: skip
from merkit.cli import commands_audit  # noqa: E402,F401  isort: skip
from merkit.cli import commands_serve  # noqa: E402,F401  isort: skip

__all__ = ["app", "main"]


INTERRUPTED = 130  # the shell's code for a run stopped by Ctrl-C (128 + SIGINT)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    try:
        # Outside standalone mode typer returns an exit code instead of raising it: Ctrl-C
        # arrives here as 130, `--help` as 0; a command itself returns None.
        code = app(args=argv, standalone_mode=False)
    except MerkitError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
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
