"""The call-down sheet as a PDF, for the teams to print or carry when the network is down.

WeasyPrint lays out the sheet's own HTML with the console's stylesheet under ``@media print``
(A4 landscape, one zone a page, headers repeated); right-to-left pages follow ``dir``. It
reaches nothing outside: the only resources it may load are the console's static files, read
from the package. Glyphs come from the system's fonts (Noto covers Hebrew, Arabic, Ethiopic and
Cyrillic; see ``.ci/apt-packages``).
"""

from __future__ import annotations

import logging
import mimetypes

from hosen.console.texts import STATIC

log = logging.getLogger(__name__)
BASE = "https://console.invalid/"
STATIC_URL = f"{BASE}console/static/"


class PdfUnavailable(Exception):
    """WeasyPrint, or the Pango library it loads, is not installed on this server."""


def sheet_pdf(html: str) -> bytes:
    """The sheet's HTML as a PDF document, or :class:`PdfUnavailable`."""
    # Imported on first use: loading Pango costs the other pages nothing, and a server without
    # it still serves every other page (and the printable sheet).
    try:
        from weasyprint import HTML
        from weasyprint.urls import URLFetcher, URLFetcherResponse
    except (ImportError, OSError) as exc:
        log.warning("console: no PDF sheets on this server: %s", exc)
        raise PdfUnavailable from exc

    class StaticOnly(URLFetcher):  # type: ignore[misc]
        """The console's static files, read from the package; any other URL stops the PDF."""

        def fetch(self, url: str, headers: object = None) -> URLFetcherResponse:
            name = url.removeprefix(STATIC_URL)
            path = STATIC / name
            if name == url or "/" in name or not path.is_file():
                raise ValueError(f"not a console static file: {url}")
            kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            return URLFetcherResponse(url, path.read_bytes(), {"Content-Type": kind})

    fetcher = StaticOnly(fail_on_errors=True)
    pdf = HTML(string=html, base_url=BASE, url_fetcher=fetcher).write_pdf()
    assert isinstance(pdf, bytes)
    return pdf
