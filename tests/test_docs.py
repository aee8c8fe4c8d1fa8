"""The README and docs/ name real things: every ``wmdd_hf.<name>`` they cite resolves, every relative link exists."""

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]


def _resolve(dotted: str):
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):  # the longest importable module, then attributes
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError:
            continue
        for name in parts[i:]:
            obj = getattr(obj, name)
        return obj
    raise ModuleNotFoundError(dotted)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_cited_library_name_exists(page):
    text = page.read_text()
    names = sorted(set(re.findall(r"\bwmdd_hf(?:\.[A-Za-z_][A-Za-z0-9_]*)+", text)) - {"wmdd_hf.json"})  # a file
    missing = []
    for name in names:
        try:
            _resolve(name)
        except (AttributeError, ModuleNotFoundError):
            missing.append(name)
    assert not missing, f"{page.name} cites names the library does not have: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_exists(page):
    links = re.findall(r"\]\(([^)#:]+)\)", page.read_text())
    missing = [link for link in links if not (page.parent / link).exists()]
    assert not missing, f"{page.name} links to missing files: {missing}"


def test_the_readme_fits_on_two_screens_and_the_package_exports_what_it_shows():
    import wmdd_hf

    assert len((ROOT / "README.md").read_text().splitlines()) <= 170
    for name in ("Distiller", "DistillationArguments", "evaluate_distilled", "load_distilled", "load_fashion_mnist"):
        assert name in wmdd_hf.__all__ and hasattr(wmdd_hf, name)
