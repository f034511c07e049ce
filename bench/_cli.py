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


def add_float_blocks(parser: argparse.ArgumentParser, variant: str, *, purpose: str) -> None:
    """`--VARIANT-float-blocks BLOCK... | none`, defaulting to `python -m convert`'s recipe.

    Args:
        variant: "int8" or "dynamic".
        purpose: what the blocks are for, the start of the help text.
    """
    from convert._quantize import BLOCKS, DEFAULT_RECIPES  # deferred: the serve benches

    default = DEFAULT_RECIPES[variant].float_blocks
    parser.add_argument(
        f"--{variant}-float-blocks",
        nargs="+",
        choices=[*BLOCKS, "none"],
        default=list(default),
        metavar="BLOCK",
        help=f"{purpose} (default {' '.join(default)}, `python -m convert`'s)",
    )


def float_blocks(
    parser: argparse.ArgumentParser, args: argparse.Namespace, variant: str
) -> tuple[str, ...]:
    """The parsed `--VARIANT-float-blocks` (`add_float_blocks`) as blocks; `none` is none.

    Exits 2 (`parser.error`) when `none` stands beside block names.
    """
    values: list[str] = getattr(args, f"{variant}_float_blocks")
    if "none" in values and len(values) > 1:
        parser.error(
            f"`--{variant}-float-blocks`: none must stand alone. "
            f"Received: {variant}_float_blocks={values}"
        )
    return () if values == ["none"] else tuple(values)


def write_results(out: Path, name: str, result: dict[str, Any], markdown: str) -> None:
    """Write `out/<name>.json` (the result) and `out/<name>.md` (its table), creating
    `out`, and print the table: what every bench over one run leaves behind."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / f"{name}.md").write_text(markdown)
    print(markdown)
