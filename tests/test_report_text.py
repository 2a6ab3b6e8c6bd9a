"""Report text a reader sees: no TeX markup shown raw (the offline reports carry no MathJax)."""

from __future__ import annotations

import json

import pytest

from sdofm.reports.browser import raw_tex
from tests.conftest import ROOT

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_raw_tex_is_found_and_prices_are_not():
    assert raw_tex("1 sfu = 10$^{-22}$ W m$^{-2}$ and HMI B$_z$") == [
        "$^{-22}$",
        "$^{-2}$",
        "$_z$",
    ]
    assert raw_tex("costs $5 or $10 a month; 10⁻²² W m⁻² Hz⁻¹; B<sub>z</sub>") == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_markdown_cells_hold_no_tex(path):
    """Markdown cells become HTML as written; figure labels (code) go through mathtext."""
    cells = json.loads(path.read_text())["cells"]
    for cell in cells:
        if cell["cell_type"] == "markdown":
            assert raw_tex("".join(cell["source"])) == [], path.name


def test_eve_lines_are_labelled_by_ion_and_wavelength():
    from sdofm.sources.sdoml_layout import eve_line_label

    assert eve_line_label("He II_2") == "He II 30.38 nm"  # not the store's key
    assert eve_line_label("Fe XVIII") == "Fe XVIII 9.39 nm"
    assert eve_line_label("custom") == "custom"
