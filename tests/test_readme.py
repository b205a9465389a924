"""The README stays a newcomer's page: short, with every link landing on a file of the tree."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def test_the_readme_fits_on_a_few_screens() -> None:
    assert README.stat().st_size <= 12_000, "the README is for newcomers: move reference text to docs/"


def test_every_relative_link_in_the_readme_lands_on_a_file() -> None:
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", README.read_text())
    relative = [t for t in targets if "://" not in t]
    assert relative, "the README links into docs/"
    missing = [t for t in relative if not (ROOT / t).exists()]
    assert not missing, f"README links to missing files: {missing}"
