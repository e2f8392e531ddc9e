"""A form with one file, read as it streams: its size and time bounded, its CSRF token checked
before a byte of the file is kept, the file written to a private temporary file.

The ASGI app's edge limits (:mod:`hosen.limits`) hold every other request body in memory, at
most 256 KiB; an upload route is let through unread (``EdgeLimits.streamed``) and bounds its own
body here. The form's fields come before its file, as a browser sends them in the page's order:
a file whose CSRF field has not been seen yet is refused unread.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, BinaryIO

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

MAX_FIELDS = 16
MAX_FIELD_BYTES = 1024
FORM_OVERHEAD = 64 * 1024  # the fields and the parts' headers around the file
DRAIN_FACTOR = 4  # a body up to this many times the limit is read to its end (and dropped)


class UploadRefused(Exception):
    """The upload is not taken: ``status`` and a catalog ``key`` (with ``params``) say why."""

    def __init__(self, status: int, key: str, /, **params: object) -> None:
        super().__init__(key)
        self.status = status
        self.key = key
        self.params = params


@dataclass
class Upload:
    """A form's fields and its one file, kept in a temporary file that is the caller's to
    delete (:meth:`discard`)."""

    fields: dict[str, str] = field(default_factory=dict)
    path: Path | None = None
    filename: str = ""
    size: int = 0

    def discard(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)
            self.path = None


def plain_name(filename: str) -> str:
    """The file's own name, whatever path a browser (or someone else) sent with it."""
    name = PureWindowsPath(PurePosixPath(filename).name).name
    return "".join(c for c in name if c.isprintable())[:100]


class _Reader:
    """The multipart parser's callbacks: fields to memory, the file to disk."""

    def __init__(self, csrf_ok: Callable[[str | None], bool], directory: str | None) -> None:
        self.csrf_ok = csrf_ok
        self.directory = directory
        self.upload = Upload()
        self.checked = False
        self.headers: dict[str, str] = {}
        self._field: bytes = b""
        self._value = bytearray()
        self._name = ""
        self._file: BinaryIO | None = None
        self._in_file = False
        self.pending: list[bytes] = []  # file data parsed, not written yet

    def callbacks(self) -> dict[str, Callable[..., None]]:
        return {
            "on_part_begin": self.part_begin,
            "on_header_field": self.header_field,
            "on_header_value": self.header_value,
            "on_header_end": self.header_end,
            "on_headers_finished": self.headers_finished,
            "on_part_data": self.part_data,
            "on_part_end": self.part_end,
        }

    def part_begin(self) -> None:
        self.headers, self._field, self._value = {}, b"", bytearray()

    def header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]
        if len(self._value) > MAX_FIELD_BYTES:
            raise UploadRefused(400, "console.import.bad_form")

    def header_end(self) -> None:
        name = self._field.decode("latin-1").lower()
        self.headers[name] = bytes(self._value).decode("utf-8", "replace")
        self._field, self._value = b"", bytearray()

    def headers_finished(self) -> None:
        _, options = parse_options_header(self.headers.get("content-disposition", ""))
        self._name = options.get(b"name", b"").decode("utf-8", "replace")
        filename = options.get(b"filename")
        self._in_file = filename is not None
        self._value = bytearray()
        if filename is None:
            if len(self.upload.fields) >= MAX_FIELDS:
                raise UploadRefused(400, "console.import.bad_form")
            return
        if not self.checked:
            raise UploadRefused(403, "console.csrf")
        if self.upload.path is not None:
            raise UploadRefused(400, "console.import.bad_form")
        handle, path = tempfile.mkstemp(prefix="hosen-import-", dir=self.directory)
        self._file = os.fdopen(handle, "wb")  # mkstemp: readable by this user only
        self.upload.path = Path(path)
        self.upload.filename = plain_name(filename.decode("utf-8", "replace"))

    def part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file:
            self.pending.append(data[start:end])
            return
        self._value += data[start:end]
        if len(self._value) > MAX_FIELD_BYTES:
            raise UploadRefused(400, "console.import.bad_form")

    def part_end(self) -> None:
        if self._in_file:
            self._in_file = False
            return
        value = bytes(self._value).decode("utf-8", "replace")
        self.upload.fields.setdefault(self._name, value)
        if self._name == "csrf":
            if not self.csrf_ok(value):
                raise UploadRefused(403, "console.csrf")
            self.checked = True

    def write_pending(self) -> int:
        """Write the file data parsed so far (in a worker thread); how many bytes."""
        written = 0
        if self._file is not None:
            for chunk in self.pending:
                self._file.write(chunk)
                written += len(chunk)
        self.pending = []
        return written

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


async def receive_upload(
    request: Request,
    *,
    limit: int,
    seconds: float,
    csrf_ok: Callable[[str | None], bool],
    directory: str | None = None,
) -> Upload:
    """The request's form and file; :class:`UploadRefused` when it is not a form, its CSRF token
    is wrong, it has no file, or its file is larger than ``limit`` bytes or takes longer than
    ``seconds`` to arrive. Nothing of a refused upload is kept."""
    kind, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise UploadRefused(400, "console.import.bad_form")
    megabytes = limit // (1024 * 1024)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit + FORM_OVERHEAD:
        await _drain(request, int(declared), limit, seconds)
        raise UploadRefused(413, "console.import.too_large", megabytes=megabytes)
    reader = _Reader(csrf_ok, directory)
    parser = MultipartParser(boundary, reader.callbacks())  # type: ignore[arg-type]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    received = 0
    try:
        chunks = request.stream().__aiter__()
        while True:
            try:
                chunk = await asyncio.wait_for(chunks.__anext__(), deadline - loop.time())
            except StopAsyncIteration:
                break
            except TimeoutError:
                raise UploadRefused(408, "console.import.too_slow") from None
            received += len(chunk)
            if received > limit + FORM_OVERHEAD:
                raise UploadRefused(413, "console.import.too_large", megabytes=megabytes)
            parser.write(chunk)
            if reader.pending:
                reader.upload.size += await run_in_threadpool(reader.write_pending)
                if reader.upload.size > limit:
                    raise UploadRefused(413, "console.import.too_large", megabytes=megabytes)
        parser.finalize()
        if reader.upload.path is None or not reader.upload.size:
            raise UploadRefused(400, "console.import.no_file")
    except MultipartParseError:
        reader.close()
        reader.upload.discard()
        raise UploadRefused(400, "console.import.bad_form") from None
    except BaseException:
        reader.close()
        reader.upload.discard()
        raise
    reader.close()
    return reader.upload


async def _drain(request: Request, declared: int, limit: int, seconds: float) -> None:
    """Read a too large body to its end (not a byte kept) when it is not far too large, so that
    a browser still uploading sees the page that says why rather than a broken connection."""
    if declared > limit * DRAIN_FACTOR:
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    chunks: Any = request.stream().__aiter__()
    while True:
        try:
            await asyncio.wait_for(chunks.__anext__(), deadline - loop.time())
        except (StopAsyncIteration, TimeoutError):
            return
