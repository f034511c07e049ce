"""Inputs and outputs of `python -m inference batch`: what to classify, where rows go.

    inputs = read_inputs("photos/", column=None)          # ["photos/a/1.jpg", ...]
    with RowWriter.open("out.jsonl", labels=labels, model="ba59966c61a4") as out:
        done = out.done                                    # inputs already in the file
        out.write(row)                                     # one complete row, one write(2)

Inputs: a folder (recursive, files whose suffix is in `IMAGE_SUFFIXES`, sorted),
a text file (one path or URL per line; blank lines and `#` comments skipped),
a CSV file (`--column` names the column; a one-column CSV needs no name), or
`-` for stdin (text, or CSV with `--column`). Relative paths are relative to
the working directory, as a shell would read them. An input given twice is
classified once.

Outputs, by extension: `.jsonl` (one JSON object a line) and `.csv` (a header,
then one line a row; the scores are one `score_<label>` column per class);
`.parquet` where pyarrow is installed (`_batch_parquet.py`: rows go to a
`.jsonl` log, the Parquet file is written from it at the end).
Exactly once, across kills: a row is encoded in full and appended with one
`write(2)` on an `O_APPEND` file, so a process killed by Ctrl-C or SIGKILL
leaves whole rows only (the kernel finishes a write to a regular file once it
started; only a power cut can leave part of one). On open, an existing file is
read back: a trailing partial row (no final newline) is cut off, every
complete row's input is "done" and will not be classified again. A complete
line that is not one of our rows stops the run instead: the file is someone
else's and is left as it is.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

from inference._batch_parquet import parquet_available
from inference._decode import IMAGE_SUFFIXES

FORMATS = {".jsonl": "jsonl", ".csv": "csv"}
Row = dict[str, Any]


def output_format(path: str | Path) -> str:
    """ "jsonl", "csv" or "parquet" from the output file's extension (case-insensitive).

    Raises:
        ValueError: any other extension, or `.parquet` where pyarrow is not
            installed (it is not a dependency of this project).
    """
    suffix = Path(path).suffix.lower()
    if suffix in FORMATS:
        return FORMATS[suffix]
    if suffix == ".parquet":
        if parquet_available():
            return "parquet"
        raise ValueError(
            "`--output` .parquet needs pyarrow, which is not installed (and not a dependency "
            "of this project): `pip install pyarrow`, or write .jsonl or .csv. "
            f"Received: --output={str(path)!r}"
        )
    raise ValueError(
        f"`--output` must end in .jsonl, .csv or .parquet. Received: --output={str(path)!r}"
    )


def check_output(path: Path) -> str:
    """The output's format, after the checks that need no model: extension,
    folder, and an existing file's first line (`.parquet`: its columns).

    Raises:
        ValueError: see `output_format`; a missing folder; an existing file
            that is not this command's output (left as it is). Rows of another
            model are found later, by `RowWriter.open` / `parquet_models`.
    """
    fmt = output_format(path)
    if not path.parent.is_dir():
        raise ValueError(f"`--output`'s folder does not exist. Received: --output={str(path)!r}")
    if path.exists() and not path.is_file():  # a device, a FIFO (links followed): no resume
        raise ValueError(
            "`--output` must be a regular file (or not exist yet). "
            f"Received: --output={str(path)!r}"
        )
    if fmt == "parquet":
        from inference._batch_parquet import parquet_models

        parquet_models(path)
        return fmt
    try:
        with path.open("rb") as f:
            first = f.readline(1 << 20).decode("utf-8", "surrogateescape")
    except FileNotFoundError:
        return fmt
    except OSError as exc:
        raise ValueError(
            f"`--output` cannot be read ({exc.strerror}). Received: --output={str(path)!r}"
        ) from None
    if first.endswith("\n"):
        ours = (
            _parse_json_row(first) is not None
            if fmt == "jsonl"
            else first.startswith(",".join(CSV_FIELDS) + ",")
        )
        if not ours:
            raise ValueError(
                "`--output` line 1 is not a row of this command (another file, "
                f"or other columns); give a new --output. Received: --output={str(path)!r}"
            )
    return fmt


# ---------------------------------------------------------------------------
# Inputs.


def is_url(item: str) -> bool:
    """True for `scheme://...` (the fetcher then decides which schemes it allows)."""
    head, sep, _ = item.partition("://")
    return bool(sep) and head.isascii() and head[:1].isalpha() and head.replace("+", "").isalnum()


def read_inputs(
    source: str, *, column: str | None = None, stdin: TextIO | None = None
) -> list[str]:
    """The inputs to classify, in order, each once.

    Args:
        source: a folder, a text or CSV file, or "-" for stdin.
        column: the CSV column holding paths or URLs; given, the file (or
            stdin) is read as CSV whatever its name.
        stdin: the stream "-" reads (None: `sys.stdin`).

    Returns:
        Paths and URLs as given (folder entries as `source/relative/path`),
        duplicates dropped (the first one is kept).

    Raises:
        ValueError: `source` does not exist, is an image itself, is not UTF-8
            text, or its CSV has no such `column` (the message lists the
            columns); the message names INPUT or `--column`.
    """
    if source == "-":
        text = (sys.stdin if stdin is None else stdin).read()
        items = _csv_items(text, column, "stdin") if column else _text_items(text)
    else:
        path = Path(source)
        if path.is_dir():
            items = _folder_items(path)
        elif not path.is_file():
            raise ValueError(f"INPUT must be a folder, a file or -. Received: INPUT={source!r}")
        elif path.suffix.lower() in IMAGE_SUFFIXES:
            raise ValueError(
                "INPUT must be a folder of images or a list of them, not an image "
                "(`python -m inference predict` classifies single files). "
                f"Received: INPUT={source!r}"
            )
        else:
            text = _read_text(path)
            as_csv = column is not None or path.suffix.lower() == ".csv"
            items = _csv_items(text, column, source) if as_csv else _text_items(text)
    return list(dict.fromkeys(items))


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"INPUT must be UTF-8 text (byte {exc.start} is not). Received: INPUT={str(path)!r}"
        ) from None
    except OSError as exc:
        raise ValueError(
            f"INPUT cannot be read ({exc.strerror}). Received: INPUT={str(path)!r}"
        ) from None


def _folder_items(root: Path) -> list[str]:
    found = (p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    return [str(p) for p in sorted(found)]


def _text_items(text: str) -> list[str]:
    lines = (line.strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def _csv_items(text: str, column: str | None, where: str) -> list[str]:
    # strict: an unclosed quote is an error, not a field that swallows the rest of the file
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
    try:
        return _csv_column(reader, column, where)
    except csv.Error as exc:  # a field over csv's 128 KiB limit, an unclosed quote...
        raise ValueError(
            f"INPUT is not valid CSV ({where}, line {reader.reader.line_num}: {exc})."
        ) from None


def _csv_column(reader: csv.DictReader[str], column: str | None, where: str) -> list[str]:
    fields = list(reader.fieldnames or [])
    if column is None:
        if len(fields) != 1:
            raise ValueError(
                f"`--column` is needed: {where} has columns {fields}. Received: --column=None"
            )
        column = fields[0]
    if column not in fields:
        raise ValueError(
            f"`--column` must be one of {fields} ({where}). Received: --column={column!r}"
        )
    values = ((row.get(column) or "").strip() for row in reader)
    return [v for v in values if v]


# ---------------------------------------------------------------------------
# Rows and the output file.

CSV_FIELDS = ("input", "label", "unsure", "confidence", "error_code", "error_message", "model")


def csv_header(labels: Iterable[str]) -> list[str]:
    """The CSV columns: `CSV_FIELDS`, then `score_<label>` per class in manifest order."""
    return [*CSV_FIELDS, *(f"score_{label}" for label in labels)]


def _csv_record(row: Row, labels: tuple[str, ...]) -> list[str]:
    error = row.get("error") or {}
    scores: Mapping[str, float] = row.get("scores") or {}

    def text(value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        # Messages stay on one line, so a row is one line unless a path holds a newline.
        return str(value).replace("\r", " ").replace("\n", " ")

    return [
        row["input"],
        text(row.get("label")),
        text(row.get("unsure")),
        text(row.get("confidence")),
        text(error.get("code")),
        text(error.get("message")),
        text(row.get("model")),
        *(text(scores.get(label)) for label in labels),
    ]


class RowWriter:
    """Append-only row file with resume; see the module docstring.

    Attributes:
        path: the output file.
        done: inputs that already have a row (read back on open).
        done_errors: those of `done` whose row is an error (not retried).
        dropped_bytes: size of the partial last row cut off on open (0: none).
    """

    def __init__(self, path: Path, *, fmt: str, labels: tuple[str, ...], model: str) -> None:
        self.path = path
        self.fmt = fmt
        self.labels = labels
        self.model = model
        self.done: set[str] = set()
        self.done_errors: set[str] = set()  # of `done`, those whose row is an error
        self.dropped_bytes = 0
        self._fd = -1

    @classmethod
    def open(cls, path: str | Path, *, labels: tuple[str, ...], model: str) -> RowWriter:
        """Open (or create) `path` for appending, after reading back its rows.

        Args:
            path: `.jsonl` or `.csv`; its folder must exist.
            labels: the bundle's labels, in manifest order (CSV score columns).
            model: the model's id written in every row (sha256 prefix); rows of
                another model in an existing file stop the run.

        Raises:
            ValueError: a bad extension (see `output_format`), a missing
                folder, or an existing file that holds other lines than this
                command's rows (other columns, another model, not JSON).
        """
        path = Path(path)
        fmt = output_format(path)
        if fmt not in ("jsonl", "csv"):  # run_batch appends Parquet's rows to a .jsonl log
            raise ValueError(f"`path` must be .jsonl or .csv. Received: path={str(path)!r}")
        writer = cls(path, fmt=fmt, labels=labels, model=model)
        if not path.parent.is_dir():
            raise ValueError(
                f"`--output`'s folder does not exist. Received: --output={str(path)!r}"
            )
        writer._resume()
        try:
            writer._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        except OSError as exc:  # read-only or virtual file systems (/proc), permissions
            raise ValueError(
                f"`--output` cannot be written ({exc.strerror}). Received: --output={str(path)!r}"
            ) from None
        if writer.fmt == "csv" and path.stat().st_size == 0:
            writer._append(_encode_csv(csv_header(labels)))
        return writer

    def _resume(self) -> None:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise ValueError(
                f"`--output` cannot be read ({exc.strerror}). Received: --output={str(self.path)!r}"
            ) from None
        text = data.decode("utf-8", "surrogateescape")
        good = self._valid_prefix(text)
        tail = text[good:]
        if not self._is_partial_row(tail):  # complete lines we did not write: not ours to cut
            line = text[:good].count("\n") + 1
            raise ValueError(
                f"`--output` line {line} is not a row of this command (another file, "
                "or other columns); give a new --output. "
                f"Received: --output={str(self.path)!r}"
            )
        if tail:
            keep = len(text[:good].encode("utf-8", "surrogateescape"))
            self.dropped_bytes = len(data) - keep
            os.truncate(self.path, keep)

    def _is_partial_row(self, tail: str) -> bool:
        """True when `tail` is empty or one row cut short (no final newline)."""
        if not tail:
            return True
        if self.fmt == "jsonl":
            return "\n" not in tail
        try:
            records = list(csv.reader(io.StringIO(tail, newline=""), strict=True))
        except csv.Error:  # cut inside a quoted field, which may hold a newline (a path's)
            return len(list(csv.reader(io.StringIO(tail, newline="")))) <= 1
        return len(records) <= 1 and not tail.endswith("\n")

    def _valid_prefix(self, text: str) -> int:
        """Characters of `text` made of whole rows we could have written."""
        if self.fmt == "jsonl":
            pos = 0
            while (end := text.find("\n", pos)) >= 0:  # not splitlines: U+2028 is no row end
                line = text[pos : end + 1]
                row = _parse_json_row(line)
                if row is None:
                    break
                self._check_model(row.get("model"))
                self.done.add(row["input"])
                if row.get("error"):
                    self.done_errors.add(row["input"])
                pos += len(line)
            return pos
        # CSV: a row is valid when writing it again gives the same characters.
        header = csv_header(self.labels)
        pos = 0
        for i, record in enumerate(csv.reader(io.StringIO(text, newline=""))):
            encoded = _encode_csv(record).decode("utf-8", "surrogateescape")
            if not text.startswith(encoded, pos):
                break
            if i == 0:
                if record != header:
                    raise ValueError(
                        f"`--output` has other columns than this command writes "
                        f"({record[:8]}...); give a new --output. "
                        f"Received: --output={str(self.path)!r}"
                    )
            elif len(record) == len(header):
                self._check_model(record[CSV_FIELDS.index("model")])
                self.done.add(record[0])
                if record[CSV_FIELDS.index("error_code")]:
                    self.done_errors.add(record[0])
            else:
                break
            pos += len(encoded)
        return pos

    def _check_model(self, model: Any) -> None:
        if model != self.model:
            raise ValueError(
                f"`--output` holds rows of model {model!r}, but --model is {self.model!r}; "
                f"give a new --output to classify with this model. "
                f"Received: --output={str(self.path)!r}"
            )

    def write(self, row: Row) -> None:
        """Append one row (`input`, `label`, `unsure`, `confidence`, `scores`,
        `error`, `model`) with a single write(2); no fsync (see `sync`)."""
        if self.fmt == "jsonl":
            self._append(_encode_json(row))
        else:
            self._append(_encode_csv(_csv_record(row, self.labels)))
        self.done.add(row["input"])

    def _append(self, data: bytes) -> None:
        written = os.write(self._fd, data)
        while written < len(data):  # a short write (disk full is an OSError instead)
            written += os.write(self._fd, data[written:])

    def sync(self) -> None:
        """fsync: rows written so far survive a power cut too (a kill needs no fsync)."""
        if self._fd >= 0:
            os.fsync(self._fd)

    def close(self) -> None:
        """fsync and close; a second call does nothing."""
        if self._fd >= 0:
            try:
                self.sync()
            finally:
                os.close(self._fd)
                self._fd = -1

    def __enter__(self) -> RowWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _parse_json_row(line: str) -> Row | None:
    try:
        row = json.loads(line)
    except ValueError:
        return None
    if isinstance(row, dict) and isinstance(row.get("input"), str):
        return row
    return None


def _encode_json(row: Row) -> bytes:
    text = json.dumps(row, ensure_ascii=False, allow_nan=False) + "\n"
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # a file name that is not UTF-8 (surrogate escapes)
        return (json.dumps(row, allow_nan=False) + "\n").encode("ascii")


def _encode_csv(record: list[str]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(record)
    return buf.getvalue().encode("utf-8", "surrogateescape")
