"""Every option of ``segment`` is described once (client/options.py): the command line's options,
the API's keywords and the specs' fields are the same names with the same defaults, every
keyword is documented, and the few that are one-sided are listed here, each with its reason."""

from __future__ import annotations

import dataclasses
import inspect
from enum import Enum
from pathlib import Path
from typing import Any

import typer.main
from test_api_docstring import documented_parameters  # tests/client is on sys.path (rootdir-less test modules)

from skoots_client import api, plan
from skoots_client.cli import app
from skoots_client.options import OPTIONS

API_ONLY = {"progress", "cancel", "warn", "note"}  # callbacks and an event: only a program can give them
NO_SPEC_FIELD = {
    "url": "ModelSpec.urls, a tuple of one or more",
    "ssl": "ModelSpec.tls", "root_cert": "ModelSpec.tls", "private_key": "ModelSpec.tls", "cert_chain": "ModelSpec.tls",
    "unit": "folded into InputSpec.voxel_size",
    "quiet": "the run's Watch, not a spec",
    "s3_endpoint": "read into the store URLs of the input and out",
}
SPEC_ONLY = {  # spec fields no option gives by that name
    ("InputSpec", "source"): "the volume, segment's first argument",
    ("ModelSpec", "urls"): "url", ("ModelSpec", "tls"): "ssl and the certificates",
    ("ClusterSpec", "memory_available"): "the machine's memory; tests set it",
}
SPECS = (plan.InputSpec, plan.OutputSpec, plan.ModelSpec, plan.ResumeSpec, plan.ClusterSpec)


def same(a: Any, b: Any) -> bool:
    """Defaults compared as values: an enum as its text, a Path as its text."""
    def plain(v: Any) -> Any:
        return str(v.value) if isinstance(v, Enum) else str(v) if isinstance(v, Path) else v

    return plain(a) == plain(b)


def cli_options(command: str) -> dict[str, Any]:
    click = typer.main.get_command(app).commands[command]
    return {p.name: p for p in click.params if p.param_type_name == "option" and p.name != "help"}


def test_the_command_lines_options_are_the_registry() -> None:
    options = cli_options("segment")
    assert set(options) == set(OPTIONS)
    for name, param in options.items():
        described = OPTIONS[name]
        assert param.opts == [described.flag, *([described.short] if described.short else [])], name
        assert same(param.default, described.default), (name, param.default, described.default)
        assert param.help == described.help, name
        assert param.is_flag == described.boolean, name


def test_the_apis_keywords_are_the_registry_with_the_same_defaults() -> None:
    keywords = dict(inspect.signature(api.segment).parameters)
    keywords.pop("volume")
    assert set(keywords) - set(OPTIONS) == API_ONLY
    assert set(OPTIONS) - set(keywords) == set()
    for name, described in OPTIONS.items():
        assert same(keywords[name].default, described.default), (name, keywords[name].default, described.default)


def test_the_spec_fields_are_the_registry_with_the_same_defaults() -> None:
    fields = {(spec.__name__, f.name): f for spec in SPECS for f in dataclasses.fields(spec)}
    for name, described in OPTIONS.items():
        if described.spec is None:
            assert name in NO_SPEC_FIELD, f"{name} fills no spec field: say which, in NO_SPEC_FIELD"
            continue
        field = fields.get((described.spec, name))
        assert field is not None, f"{described.spec} has no field {name}"
        assert same(field.default, described.default), (name, field.default, described.default)
    filled = {(o.spec, o.name) for o in OPTIONS.values() if o.spec is not None}
    assert set(fields) - filled == set(SPEC_ONLY)


def test_every_keyword_is_documented_and_the_docstring_stands_alone() -> None:
    for function in (api.segment, api.measure):
        keywords = set(inspect.signature(function).parameters)
        documented = set(documented_parameters(function))
        assert keywords == documented, (function.__name__, keywords ^ documented)
        assert "--help" not in inspect.getdoc(function)


def test_measures_options_match_its_keywords() -> None:
    options = cli_options("measure")
    keywords = dict(inspect.signature(api.measure).parameters)
    assert set(options) - set(keywords) == set()
    assert set(keywords) - set(options) == {"labels", "warn", "s3_endpoint"}  # the argument; a callback; no flag yet
    for name, param in options.items():
        if name != "out":  # the command line requires it; the API keeps the table in memory without it
            assert same(param.default, keywords[name].default), name


def test_the_specs_are_public() -> None:
    import skoots_client

    for spec in SPECS:
        assert getattr(skoots_client, spec.__name__) is spec and spec.__name__ in skoots_client.__all__
