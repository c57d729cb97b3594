"""multipart/related bodies (RFC 2387), as STOW-RS sends them: parsed from a buffer into
parts without copying their bodies."""

from __future__ import annotations

import mmap
from dataclasses import dataclass


class MultipartError(ValueError):
    """A body that is not a well-formed multipart message for its boundary."""


@dataclass(frozen=True)
class Part:
    headers: dict[str, str]
    body: memoryview

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def split_parts(body: memoryview | bytes | mmap.mmap, boundary: str) -> list[Part]:
    """Every part of `body`; raises MultipartError unless the body is a complete message
    (opening delimiter, parts with headers, closing delimiter)."""
    if not boundary or len(boundary) > 200:
        raise MultipartError("the Content-Type has no usable boundary")
    data = memoryview(body)
    raw = data.obj if isinstance(data.obj, (bytes, mmap.mmap)) else bytes(data)
    delimiter = b"--" + boundary.encode("latin-1")
    start = raw.find(delimiter)
    if start < 0 or (start > 0 and raw[start - 2 : start] != b"\r\n"):
        raise MultipartError("the body does not start with the boundary")
    parts: list[Part] = []
    position = start + len(delimiter)
    while True:
        if raw[position : position + 2] == b"--":
            return parts if parts else _fail("the body has no parts")
        line_end = raw.find(b"\r\n", position)
        if line_end < 0 or raw[position:line_end].strip(b" \t"):
            raise MultipartError("a boundary line is not followed by CRLF")
        header_end = raw.find(b"\r\n\r\n", line_end)
        next_delimiter = raw.find(b"\r\n" + delimiter, line_end)
        if next_delimiter < 0:
            raise MultipartError("the body ends before its closing boundary")
        if header_end < 0 or header_end > next_delimiter:
            if raw[line_end + 2 : line_end + 4] == b"\r\n" or line_end + 2 == next_delimiter:
                header_end = line_end  # a part with no headers
            else:
                raise MultipartError("a part's headers do not end with an empty line")
        headers = _headers(raw[line_end + 2 : header_end])
        parts.append(Part(headers, data[header_end + 4 : next_delimiter]))
        position = next_delimiter + 2 + len(delimiter)


def _headers(block: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in block.split(b"\r\n"):
        if not line:
            continue
        name, sep, value = line.partition(b":")
        if not sep:
            raise MultipartError("a part header has no colon")
        headers[name.decode("latin-1").strip().lower()] = value.decode("latin-1").strip()
    return headers


def _fail(message: str) -> list[Part]:
    raise MultipartError(message)
