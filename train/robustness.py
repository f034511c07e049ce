"""Test accuracy of a trained model when the test photos are re-encoded or resized.

Usage:
    python -m train robustness runs/xception_299 --output runs/robustness_299
    python -m train robustness runs/xception_150 --max-drop 1.0 --quality 60 --max-side 1000

Variants of each test photo, made in memory with Pillow, then served the one
decode -> preprocess path (train.features / inference):

- `original`: the file as it is;
- `jpeg_q<Q>`: re-encoded as JPEG quality Q (default 60: a heavily compressed upload);
- `page_<N>px`: what the listing page uploads (inference/_page.py): the longest
  side shrunk to at most N px (default 1000, never enlarged), JPEG quality 90.

Writes robustness.json and robustness.md; exits 1 when a variant costs more
than --max-drop accuracy points (default 1.0, issue 10), 2 on bad input.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from inference import InferenceError, decode_image, preprocess_image, staging_dir
from inference.env import data_dir_from_env
from train.data import load_dataset
from train.output import TrainOutput, TrainOutputError, read_train_output

PAGE_JPEG_QUALITY = 90  # inference/_page.py JPEG_QUALITY = 0.9


def jpeg(data: bytes, *, quality: int) -> bytes:
    """Re-encode image bytes as baseline JPEG at `quality` (1-95, Pillow's scale)."""
    img = decode_image(data)
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=quality)
    return out.getvalue()


def page_upload(data: bytes, *, max_side: int) -> bytes:
    """Longest side shrunk to <= max_side (Lanczos, never enlarged), JPEG quality 90."""
    img = decode_image(data)
    img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=PAGE_JPEG_QUALITY)
    return out.getvalue()


def variants(*, quality: int, max_side: int) -> dict[str, Callable[[bytes], bytes]]:
    """The test-split variants to measure, by name.

    Args:
        quality: int, JPEG quality (1-95, Pillow's scale) of the re-encoding.
        max_side: int, longest side in pixels of the listing page's upload.

    Returns:
        dict of name -> function from image bytes to image bytes: "original"
        (unchanged), "jpeg_q<quality>" (`jpeg`) and "page_<max_side>px"
        (`page_upload`).
    """
    return {
        "original": lambda data: data,
        f"jpeg_q{quality}": lambda data: jpeg(data, quality=quality),
        f"page_{max_side}px": lambda data: page_upload(data, max_side=max_side),
    }


def measure_robustness(
    model_dir: Path,
    *,
    data_dir: Path | None,
    quality: int,
    max_side: int,
    batch_size: int = 32,
    progress: bool = True,
) -> dict[str, Any]:
    """Accuracy of `model_dir`/model.keras on each variant of the test split.

    -> {"variants": {name: {"accuracy", "drop_points", "changed_pixels_images"}}, ...}.
    Raises ValueError (bad arguments, no test split), OSError (unreadable model).
    """
    if not 1 <= quality <= 95:
        raise ValueError(f"`quality` must be in [1, 95]. Received: quality={quality!r}")
    if max_side < 1:
        raise ValueError(f"`max_side` must be >= 1. Received: max_side={max_side!r}")
    run = _read_run(model_dir)
    metrics = run.metrics
    root = Path(data_dir or metrics.get("data_dir") or data_dir_from_env())
    split = load_dataset(root).test
    if split is None:
        raise ValueError(f"`data_dir` must have a test/ split. Received: data_dir={str(root)!r}")
    size = int(metrics["image_size"])
    model = run.load_model()
    results: dict[str, Any] = {}
    reference: np.ndarray | None = None
    for name, make in variants(quality=quality, max_side=max_side).items():
        t0 = time.perf_counter()
        images, keep, resized = [], [], 0
        for path in tqdm(split.paths, desc=name, unit="img", disable=not progress, file=sys.stderr):
            raw = path.read_bytes()
            try:
                data = make(raw)
                img = decode_image(data)
            except (InferenceError, OSError):
                keep.append(False)
                continue
            resized += int(img.size != decode_image(raw).size)
            images.append(preprocess_image(img, image_size=size))
            keep.append(True)
        mask = np.array(keep)
        logits = np.asarray(model.predict(np.stack(images), batch_size=batch_size, verbose=0))
        predicted = logits.argmax(axis=1)
        accuracy = float((predicted == split.targets[mask]).mean())
        if reference is None:
            reference = predicted
        results[name] = {
            "accuracy": accuracy,
            "images": int(mask.sum()),
            "resized_images": resized,
            "agreement_with_original": float((predicted == reference).mean())
            if len(predicted) == len(reference)
            else None,
            "seconds": time.perf_counter() - t0,
        }
    base = results["original"]["accuracy"]
    for r in results.values():
        r["drop_points"] = 100 * (base - r["accuracy"])
    return {
        "model_dir": str(model_dir),
        "image_size": size,
        "data_dir": str(root),
        "quality": quality,
        "max_side": max_side,
        "variants": results,
    }


def _read_run(model_dir: Path) -> TrainOutput:
    try:
        return read_train_output(model_dir)
    except TrainOutputError as exc:
        raise ValueError(
            f"`model_dir` must hold model.keras and metrics.json from `python -m train`. "
            f"Received: model_dir={str(model_dir)!r} ({exc})"
        ) from None


def format_table(result: dict[str, Any]) -> str:
    """The robustness result as a markdown table.

    Args:
        result: dict from `measure_robustness`.

    Returns:
        str, a markdown table: one line per variant (images resized, test
        accuracy, drop in percentage points, agreement with the original).
    """
    lines = [
        f"Test split, {result['image_size']} px model {result['model_dir']}",
        "",
        "| variant | images resized | test accuracy | drop (points) | agreement with original |",
        "|---|---|---|---|---|",
    ]
    for name, r in result["variants"].items():
        agree = r["agreement_with_original"]
        lines.append(
            f"| {name} | {r['resized_images']} / {r['images']} | {r['accuracy']:.4f} | "
            f"{r['drop_points']:+.2f} | {'—' if agree is None else f'{agree:.4f}'} |"
        )
    return "\n".join(lines)


def add_robustness_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `python -m train robustness` arguments to `parser`.

    Args:
        parser: argparse.ArgumentParser to extend in place (model_dir,
            --data-dir, --output, --quality, --max-side, --max-drop, --quiet).
    """
    parser.add_argument("model_dir", type=Path, help="a `python -m train` output folder")
    parser.add_argument(
        "--data-dir", type=Path, default=None, help="default: the one in metrics.json"
    )
    parser.add_argument("--output", type=Path, default=None, help="folder for the JSON + table")
    parser.add_argument("--quality", type=int, default=60, help="JPEG quality of the re-encoding")
    parser.add_argument(
        "--max-side", type=int, default=1000, help="the listing page's longest side"
    )
    parser.add_argument(
        "--max-drop", type=float, default=1.0, help="exit 1 above this accuracy drop (points)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run_robustness(args: argparse.Namespace) -> int:
    """CLI body: measure, print, write; 1 when a variant drops more than --max-drop."""
    result = measure_robustness(
        args.model_dir,
        data_dir=args.data_dir,
        quality=args.quality,
        max_side=args.max_side,
        progress=not args.quiet,
    )
    table = format_table(result)
    print(table)
    if args.output is not None:
        with staging_dir(args.output) as staging:
            (staging / "robustness.json").write_text(json.dumps(result, indent=2) + "\n")
            (staging / "robustness.md").write_text(table + "\n")
        print(f"\nwrote {args.output}/robustness.json, robustness.md")
    worst = max(r["drop_points"] for r in result["variants"].values())
    if worst > args.max_drop:
        print(f"FAIL: a variant costs {worst:.2f} points (> {args.max_drop})", file=sys.stderr)
        return 1
    return 0
