"""Docstrings cross-reference the way the documentation site renders them.

The site (MkDocs with mkdocstrings, docs/api.md) prints a Sphinx role (``:func:`segment```) as
literal text, and fails ``mkdocs build --strict`` on a cross-reference to an object it does not
document. So: no Sphinx roles anywhere in ``client/`` and ``export/``, and every mkdocstrings
cross-reference (``[`segment`][skoots_client.segment]``) names an object of ``skoots_client``'s
public API, which the site documents. Docstrings are read with ``ast``: modules, classes,
functions and the string after an attribute.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import skoots_client

ROOT = Path(__file__).resolve().parent.parent
FILES = sorted(p for folder in ("client", "export") for p in (ROOT / folder).rglob("*.py"))
SPHINX_ROLE = re.compile(r":(?:py:)?(?:func|class|meth|attr|mod|data|exc|obj|const|ref):`")
AUTOREF = re.compile(r"\]\[([A-Za-z_][\w.]*)\]")


def _docstrings(path: Path) -> list[tuple[int, str]]:
    """``(line, text)`` of every docstring-like string in ``path``: a string standing alone as a statement."""
    return [(node.lineno, node.value.value) for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)]


def _documented(target: str) -> bool:
    """Whether the API page documents ``target``: a name of ``skoots_client.__all__`` defined in
    ``skoots_client`` (a re-export from ``skoots_export`` is not rendered), or one of its members."""
    package, _, rest = target.partition(".")
    name, _, member = rest.partition(".")
    if package != "skoots_client" or name not in skoots_client.__all__:
        return False
    obj = getattr(skoots_client, name)
    if not getattr(obj, "__module__", "").startswith("skoots_client"):
        return False
    return not member or hasattr(obj, member)


def test_the_checks_see_a_role_and_a_reference() -> None:
    assert SPHINX_ROLE.search("Runs :func:`segment` then :class:`~x.Plan`.")
    assert not SPHINX_ROLE.search("Runs [`segment`][skoots_client.segment] on ``x: int``.")
    assert AUTOREF.findall("See [`segment`][skoots_client.segment]; table[\"voxels\"][0].") == ["skoots_client.segment"]
    assert _documented("skoots_client.Segmentation.labels")
    assert not _documented("skoots_client.SkootsError")  # re-exported from skoots_export: not on the page
    assert not _documented("skoots_client.plan.prepare")


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_docstrings_use_no_sphinx_roles(path: Path) -> None:
    found = [f"{path.relative_to(ROOT)}:{line}" for line, text in _docstrings(path) if SPHINX_ROLE.search(text)]
    assert not found, f"Sphinx roles print as literal text on the site; use [`name`][skoots_client.name] or `name`: {found}"


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_cross_references_name_documented_objects(path: Path) -> None:
    missing = [f"{path.relative_to(ROOT)}:{line}: {target}" for line, text in _docstrings(path)
               for target in AUTOREF.findall(text) if not _documented(target)]
    assert not missing, f"not on the API page (mkdocs build --strict fails): {missing}; write `name` instead"
