"""MkDocs hook: the command-line reference, generated from the typer apps themselves.

A page holding ``<!-- cli-reference: MODULE:APP PROGRAM -->`` gets, in its place, one section per
command of that app: its help, usage and a table of its arguments and options with their
defaults. Generated at build time, so the reference cannot drift from the code.
"""

from __future__ import annotations

import importlib
import re
from enum import Enum
from pathlib import PurePath

import typer

MARKER = re.compile(r"<!-- cli-reference: (?P<target>[\w.]+:\w+) (?P<program>[\w-]+) -->")


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _default(param) -> str:  # a typer (vendored click) parameter
    value = param.default
    if value is None or value == () or value == [] or callable(value):
        return ""
    if getattr(param, "is_flag", False) and not param.secondary_opts:
        return "off" if not value else "on"
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, PurePath):
        value = str(value)
    return f"`{value}`"


def _names(param) -> str:
    if param.param_type_name == "argument":
        return f"`{param.name.upper()}`"
    names = ", ".join(f"`{o}`" for o in [*param.opts, *param.secondary_opts])
    if not getattr(param, "is_flag", False) and param.metavar:
        names += f" `{param.metavar}`"
    return names


def _command(program: str, name: str, command) -> str:
    params = [p for p in command.params if not getattr(p, "hidden", False) and p.name != "help"]
    usage = " ".join(command.collect_usage_pieces(command.context_class(command, info_name=name)))
    usage = re.sub(r"\{(\w+)\}", lambda m: m[1].upper(), usage)
    lines = [f"### `{program} {name}`", "", (command.help or "").strip(), "", f"```\n{program} {name} {usage}\n```", ""]
    lines += ["| argument / option | default | meaning |", "| --- | --- | --- |"]
    for p in params:
        lines.append(f"| {_names(p)} | {_default(p)} | {_cell(getattr(p, 'help', None) or '')} |")
    return "\n".join(lines) + "\n"


def reference(target: str, program: str) -> str:
    """The markdown reference of every command of the typer app ``MODULE:APP``."""
    module, attribute = target.split(":")
    group = typer.main.get_command(getattr(importlib.import_module(module), attribute))
    commands = getattr(group, "commands", None) or {program: group}
    return "\n".join(_command(program, name, command) for name, command in commands.items() if not command.hidden)


def on_page_markdown(markdown: str, **_: object) -> str:
    return MARKER.sub(lambda m: reference(m["target"], m["program"]), markdown)
