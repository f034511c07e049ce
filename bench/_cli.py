"""The argument parser the benches over one training run share:
`python -m bench.NAME TRAIN_OUTPUT_DIR --out DIR [their own flags]`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def out_dir_arg(value: str) -> Path:
    """argparse type of `--out`: a results folder, created later if missing; a path
    that exists and is not a folder is refused now, before any measuring.

    Raises:
        argparse.ArgumentTypeError: `value` names a file (or anything but a folder).
    """
    path = Path(value)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(
            f"must be a folder (created if missing), not a file. Received: {value!r}"
        )
    return path


def run_dir_parser(*, prog: str, description: str | None) -> argparse.ArgumentParser:
    """A parser with the positional TRAIN_OUTPUT_DIR (`train_dir`) and a required
    `--out` results folder; `description` (the module's docstring) is shown as written.

    Args:
        prog: the command as typed, e.g. "python -m bench.onnx".
        description: the help text above the flags.
    """
    parser = argparse.ArgumentParser(
        prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("train_dir", type=Path, metavar="TRAIN_OUTPUT_DIR")
    parser.add_argument("--out", type=out_dir_arg, required=True, help="results folder (created)")
    return parser


def write_results(out: Path, name: str, result: dict[str, Any], markdown: str) -> None:
    """Write `out/<name>.json` (the result) and `out/<name>.md` (its table), creating
    `out`, and print the table: what every bench over one run leaves behind."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / f"{name}.md").write_text(markdown)
    print(markdown)
