"""Issue 27 (7): rich (typer's help) reads ``[lowercase …]`` as markup and drops it, so help
texts escape it; ``segment --help`` shows the store prefixes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import typer

CLIENT = str(Path(sys.executable).parent / "skoots-client")


def test_segment_help_shows_the_store_prefixes() -> None:
    done = subprocess.run([CLIENT, "segment", "--help"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "200"})
    assert done.returncode == 0, done.stderr
    assert "([n5:// | precomputed:// | zarr://] then a path" in done.stdout


def test_no_help_text_holds_unescaped_markup() -> None:
    """Every option and argument of every command: a ``[`` that rich takes as a tag is escaped."""
    from skoots_client.cli import app

    tag = re.compile(r"(?<!\\)\[[a-z#/@][^\[]*?\]")
    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    helps = [(name, p.name, getattr(p, "help", None) or "") for name, command in commands.items() for p in command.params]
    assert len(helps) > 20
    assert [(name, param) for name, param, text in helps if tag.search(text)] == []
