"""What the ``skoots`` and ``skoots-client`` commands share at the edge: ``--version``, and a
malformed command line as one ``error:`` line with exit 2, like every other user mistake
(click would print a usage box)."""

from __future__ import annotations

import importlib.metadata
import re
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

__all__ = ["DISTRIBUTION", "version_text", "VersionOption", "run"]

DISTRIBUTION = "skoots-triton"

# typer vendors click in recent versions and depends on it in older ones: reach its base class
# through a public name rather than a module path.
_ClickException: Any = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


def version_text() -> str:
    """``skoots-triton VERSION``: the installed distribution's, else (a source checkout run
    without installing) the version its pyproject.toml declares."""
    try:
        return f"{DISTRIBUTION} {importlib.metadata.version(DISTRIBUTION)}"
    except importlib.metadata.PackageNotFoundError:
        pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
        text = pyproject.read_text() if pyproject.is_file() else ""
        match = re.search(r'^version\s*=\s*"([^"]+)"', text, re.MULTILINE)
        return f"{DISTRIBUTION} {match.group(1)} (not installed)" if match else f"{DISTRIBUTION} (version unknown: not installed)"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(version_text())
        raise typer.Exit()


# The ``--version`` parameter of an app's callback.
VersionOption = Annotated[bool, typer.Option("--version", help="Print the version and exit.", callback=_print_version, is_eager=True)]


def run(app: typer.Typer, prog_name: str) -> NoReturn:
    """Run ``app``; exit with its code, 2 after one ``error:`` line for a malformed command line."""
    try:
        code = app(prog_name=prog_name, standalone_mode=False)
    except _ClickException as e:
        if type(e).__name__ == "NoArgsIsHelpError":  # the bare command: show the help
            typer.echo(e.format_message())
            sys.exit(0)
        ctx = getattr(e, "ctx", None)
        command = ctx.command_path if ctx is not None else prog_name
        message = e.format_message().rstrip(".").replace("Value error, ", "")  # typer's validation prefix
        typer.echo(f"error: {message} — see {command} --help", err=True)
        sys.exit(2)
    except typer.Abort:
        typer.echo("error: interrupted", err=True)
        sys.exit(130)
    sys.exit(code or 0)
