"""`multipart/form-data` bodies (an HTML form, `curl -F file=@pants.jpg`), via python-multipart.

    form = parse_form_data(body, "multipart/form-data; boundary=xyz", max_file_bytes=10 << 20)
    form.image    # bytes of the first file part (None if the form sent no file)
    form.fields   # text fields, first value of each name: {"top_k": "3", "url": ""}

python-multipart (the parser of Starlette and FastAPI; pure Python, a 33 kB wheel)
does the RFC 7578 parsing; this module only bounds it and picks the parts:
the image is the first part that is a file (a `filename` in its
Content-Disposition, as browsers and curl send for `<input type=file>` and
`-F name=@file`) or is declared `image/*`; a file part a browser sends for an
empty file input (no name, no bytes) is skipped. Later file parts are
ignored. Text fields are decoded as UTF-8.

Errors: InvalidRequestError (no boundary, malformed or unterminated body),
PayloadTooLargeError (the image over `max_file_bytes`, a text field over
`max_field_bytes`, more than `max_parts` parts), UnsupportedFormatError when
python-multipart is not installed (it is in the `serve` extra).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from inference._errors import InvalidRequestError, PayloadTooLargeError, UnsupportedFormatError

# python-multipart logs each parse error as a warning; the typed error is our
# answer, and Lambda's log gets one line per request (lambda_function.log).
logging.getLogger("python_multipart").addHandler(logging.NullHandler())

# A form with a file input, a URL input, top_k and a few more fields has under
# 10 parts; 16 leaves room and bounds the work on a body of thousands of parts.
MAX_PARTS = 16
# A text field holds at most a URL (4096 characters, inference._url_policy) or a number.
MAX_FIELD_BYTES = 8 * 1024
# RFC 2046 section 5.1.1: a boundary is 1 to 70 characters.
MAX_BOUNDARY = 70


@dataclass(frozen=True)
class FormData:
    """A parsed form: the first image part's bytes and the text fields."""

    image: bytes | None
    filename: str | None = None
    fields: Mapping[str, str] = field(default_factory=dict)


def is_form_data(content_type: str) -> bool:
    """True for a `multipart/form-data` Content-Type (any case, any parameters)."""
    return content_type.split(";", 1)[0].strip().lower() == "multipart/form-data"


def parse_form_data(
    body: bytes,
    content_type: str,
    *,
    max_file_bytes: int,
    max_field_bytes: int = MAX_FIELD_BYTES,
    max_parts: int = MAX_PARTS,
) -> FormData:
    """Parse a multipart/form-data body; raise a typed error if it is bad or too big."""
    try:
        from python_multipart.exceptions import MultipartParseError
        from python_multipart.multipart import MultipartParser, parse_options_header
    except ImportError:
        raise UnsupportedFormatError(
            "multipart/form-data bodies need python-multipart (the `serve` extra); "
            'or send the image as the whole body, or JSON {"image": "<base64>"}.'
        ) from None
    _, options = parse_options_header(content_type)
    boundary = options.get(b"boundary", b"")
    if not boundary or len(boundary) > MAX_BOUNDARY:
        raise InvalidRequestError(
            "A multipart/form-data body needs a `boundary` of 1-70 characters in its "
            f"Content-Type. Received: boundary of {len(boundary)} characters"
        )
    collector = _Collector(max_file_bytes, max_field_bytes, max_parts)
    parser = MultipartParser(boundary, collector.callbacks())
    try:
        parser.write(body)
        parser.finalize()
    except MultipartParseError:
        raise InvalidRequestError(
            "The multipart/form-data body is malformed (it does not follow its boundary)."
        ) from None
    if not collector.ended:
        raise InvalidRequestError(
            "The multipart/form-data body ends before its closing boundary (cut short?)."
        )
    return FormData(collector.image, collector.filename, collector.fields)


class _Collector:
    """python-multipart callbacks: keeps the first image part and the text fields."""

    def __init__(self, max_file_bytes: int, max_field_bytes: int, max_parts: int) -> None:
        self.limits = (max_file_bytes, max_field_bytes, max_parts)
        self.image: bytes | None = None
        self.filename: str | None = None
        self.fields: dict[str, str] = {}
        self.ended = False
        self.parts = 0
        self._headers: dict[str, str] = {}
        self._name = self._value = b""
        self._data: list[bytes] = []
        self._size = 0
        self._kind = "skip"  # "file" | "field" | "skip" for the current part

    def callbacks(self) -> Any:
        return {
            "on_part_begin": self.part_begin,
            "on_header_field": lambda d, s, e: self._add_name(d[s:e]),
            "on_header_value": lambda d, s, e: self._add_value(d[s:e]),
            "on_header_end": self.header_end,
            "on_headers_finished": self.headers_finished,
            "on_part_data": lambda d, s, e: self.part_data(d[s:e]),
            "on_part_end": self.part_end,
            "on_end": self.end,
        }

    def _add_name(self, data: bytes) -> None:
        self._name += data

    def _add_value(self, data: bytes) -> None:
        self._value += data

    def part_begin(self) -> None:
        self.parts += 1
        if self.parts > self.limits[2]:
            raise PayloadTooLargeError(
                f"The form has more than {self.limits[2]} parts; send the image and a few fields."
            )
        self._headers, self._data, self._size = {}, [], 0

    def header_end(self) -> None:
        name = self._name.decode("latin-1").strip().lower()
        self._headers[name] = self._value.decode("latin-1").strip()  # bytes kept as they are
        self._name = self._value = b""

    def headers_finished(self) -> None:
        from python_multipart.multipart import parse_options_header

        _, options = parse_options_header(self._headers.get("content-disposition", ""))
        self._field = options.get(b"name", b"").decode("utf-8", "replace")
        filename = options.get(b"filename")
        content_type = self._headers.get("content-type", "").lower()
        is_file = filename is not None or content_type.startswith("image/")
        if is_file:
            self._kind = "file" if self.image is None else "skip"
            self._filename = None if filename is None else filename.decode("utf-8", "replace")
        else:  # a text part without a name (RFC 7578 requires one) is no field: skipped
            self._kind = "field" if self._field and self._field not in self.fields else "skip"

    def part_data(self, data: bytes) -> None:
        if self._kind == "skip":
            return
        self._size += len(data)
        limit = self.limits[0] if self._kind == "file" else self.limits[1]
        if self._size > limit:
            what = "image" if self._kind == "file" else f"form field {self._field[:40]!r}"
            raise PayloadTooLargeError(f"The {what} is over the limit of {limit} bytes.")
        self._data.append(data)

    def part_end(self) -> None:
        data = b"".join(self._data)
        if self._kind == "file" and data:  # an empty file input sends a part with no bytes
            self.image, self.filename = data, self._filename
        elif self._kind == "field":
            self.fields[self._field] = data.decode("utf-8", "replace")
        self._kind, self._data = "skip", []

    def end(self) -> None:
        self.ended = True
