"""segment()'s docstring documents only parameters its signature has: griffe (what mkdocstrings
reads the docstrings with) fails ``mkdocs build --strict`` on a documented name the signature
lacks, as the old ``**other`` entry did with a fresh ``pip install ".[docs]"``."""

from __future__ import annotations

import inspect
import re

import skoots_client
from skoots_client import api


def documented_parameters(function) -> list[str]:
    """The names of the numpydoc Parameters section (``a, b : type`` lines; ``**name`` kept)."""
    doc = inspect.getdoc(function) or ""
    section = re.search(r"^Parameters\n-+\n(.*?)(?=^\S[^\n]*\n-+\n|\Z)", doc, re.S | re.M)
    assert section, "segment() has no Parameters section"
    names = []
    for line in section.group(1).splitlines():
        if line and not line[0].isspace():
            names += [name.strip() for name in line.split(" : ")[0].split(",")]
    return names


def test_every_documented_parameter_of_segment_is_in_its_signature() -> None:
    signature = inspect.signature(api.segment).parameters
    documented = documented_parameters(api.segment)
    assert "volume" in documented and "roi" in documented  # the parser reads the section
    missing = [name for name in documented if name.lstrip("*") not in signature]
    assert not missing, f"documented but not in segment()'s signature: {missing}"


def test_the_prose_states_the_option_rule_without_sending_readers_to_help() -> None:
    prose = inspect.getdoc(skoots_client.segment).split("Parameters\n----------")[0]
    assert "option of the same name" in prose and "(z, y, x)" in prose
    assert "--help" not in inspect.getdoc(skoots_client.segment)
