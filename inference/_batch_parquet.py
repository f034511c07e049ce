"""Parquet output of `python -m inference batch`, only where pyarrow happens to be installed.

    if parquet_available():
        rows_log = parquet_log(Path("labels.parquet"))     # labels.parquet.rows.jsonl
        ...append rows to rows_log (resumable, like any .jsonl output)...
        write_parquet(rows_log, Path("labels.parquet"), labels=labels)

pyarrow is not a dependency (it is ~150 MB installed, for one output format).
A Parquet file cannot be appended to, so the rows go to a JSON Lines log
beside it (the resumable record, kept) and the whole `.parquet` is rewritten
from it at the end of every run that finishes, atomically (`write_atomic`).
Columns are the CSV output's: input, label, unsure, confidence, error_code,
error_message, model, score_<label> per class (nulls where there is no value).
"""

from __future__ import annotations

import importlib.util
import io
import json
from pathlib import Path
from typing import Any

from inference._publish import write_atomic


def parquet_available() -> bool:
    """True when `pyarrow` can be imported (it is never installed by this project)."""
    return importlib.util.find_spec("pyarrow") is not None


def parquet_log(path: Path) -> Path:
    """The JSON Lines log rows go to before `path` is written: `path` + `.rows.jsonl`."""
    return path.with_name(path.name + ".rows.jsonl")


def parquet_models(path: Path) -> set[str] | None:
    """The `model` values of an existing Parquet output (None: there is no file).

    Raises:
        ValueError: `path` exists but is not this command's output (pyarrow
            cannot read it, or it lacks our columns); the file is left as it is.
    """
    import pyarrow.parquet as pq

    if not path.exists():
        return None
    ours = ("input", "label", "unsure", "confidence", "error_code", "error_message", "model")
    try:
        names = pq.read_schema(path).names
        if not set(ours) <= set(names):
            raise ValueError("other columns")
        models = pq.read_table(path, columns=["model"]).column("model").to_pylist()
    except Exception:  # pyarrow's errors vary (ArrowInvalid, OSError, ...): not our file
        raise ValueError(
            "`--output` is not a Parquet file of this command (another file, or other "
            f"columns); give a new --output. Received: --output={str(path)!r}"
        ) from None
    return {str(m) for m in models}


def flat_record(row: dict[str, Any], labels: tuple[str, ...]) -> dict[str, Any]:
    """A JSONL row as one flat record: the CSV's columns, typed (None for no value)."""
    error = row.get("error") or {}
    scores = row.get("scores") or {}
    return {
        "input": row["input"],
        "label": row.get("label"),
        "unsure": row.get("unsure"),
        "confidence": row.get("confidence"),
        "error_code": error.get("code"),
        "error_message": error.get("message"),
        "model": row.get("model"),
        **{f"score_{label}": scores.get(label) for label in labels},
    }


def write_parquet(rows_log: Path, path: Path, *, labels: tuple[str, ...]) -> int:
    """Write every row of `rows_log` to `path` (replaced in one step); -> rows written.

    Raises:
        ImportError: pyarrow is not installed (check `parquet_available` first).
        OSError: `path` cannot be written; the previous file, if any, is unchanged.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    with rows_log.open(encoding="utf-8") as f:
        records = [flat_record(json.loads(line), labels) for line in f if line.strip()]
    fields = [
        pa.field("input", pa.string()),
        pa.field("label", pa.string()),
        pa.field("unsure", pa.bool_()),
        pa.field("confidence", pa.float64()),
        pa.field("error_code", pa.string()),
        pa.field("error_message", pa.string()),
        pa.field("model", pa.string()),
        *(pa.field(f"score_{label}", pa.float64()) for label in labels),
    ]
    table = pa.Table.from_pylist(records, schema=pa.schema(fields))
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    write_atomic(path, buffer.getvalue())
    return len(records)
