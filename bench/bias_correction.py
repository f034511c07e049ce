"""Bias correction for the dynamic variant, measured on validation.

    python -m bench.bias_correction runs/acc/fast_150_cv --out runs/bias_correction
    python -m bench.bias_correction runs/acc/prod_299_cv --out runs/bias_correction_299

Quantizing a layer's weights moves its output, on average, by eps . E[x] (eps:
the int8 rounding of the weights, E[x]: the layer input's mean on the
calibration photos); convert/_bias.py subtracts that from each quantized
operator's bias (Nagel et al. 2019, sec. 4.2). This bench converts the dynamic
variant with `python -m convert`'s recipe (`--dynamic-float-blocks`, default
its own), with and without the correction, and compares each with the run's
Keras logits on the validation split: top-1 agreement; the RMS logit
difference; and the RMS error of the margin between Keras' top two logits,
what an answer flips on. The last two move smoothly, where one changed answer
is 0.29 points of agreement on 341 photos. The test split is never read.

Calibration: the train split's sample that `python -m convert` uses (200 photos,
seed 1; `--calibration-size`). Writes OUT/bias_correction.json and .md
(printed). Exit status: 0 measured; 2 bad usage or input.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Sequence
from typing import Any

if __name__ == "__main__":
    from inference import quiet_tensorflow

    quiet_tensorflow(sys.argv, os.environ)

import numpy as np

from bench._cli import add_float_blocks, float_blocks, run_dir_parser, write_results
from bench.quant_levers import compare as agreement_and_rms
from convert import ConvertError
from convert._convert import DEFAULT_CALIBRATION_SIZE
from convert._export import tflite_bytes
from convert._quantize import DEFAULT_RECIPES, tflite_logits
from convert._source import (
    keras_logits,
    load_keras_model,
    read_train_output,
    require_images,
    required_splits,
    sample_images,
)
from inference import InferenceError, preprocess_file


def compare(logits: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Top-1 agreement (%), RMS logit difference, and RMS error of the margin between
    `reference`'s top two classes, of (n, k) `logits` against `reference`.

    The margin is what an answer flips on: a photo's answer changes when its error
    exceeds the margin, so its RMS error ranks recipes by flips to come, smoothly.
    """
    rows = np.arange(len(reference))
    top2 = np.argsort(-reference, axis=1)[:, :2]

    def margin(z: np.ndarray) -> np.ndarray:
        return np.asarray(z[rows, top2[:, 0]] - z[rows, top2[:, 1]])

    margin_error = margin(logits) - margin(reference)
    return {
        **agreement_and_rms(logits, reference),
        "rms_margin_diff": float(np.sqrt(np.mean(margin_error**2))),
    }


def measure(
    model: Any,
    calibration: np.ndarray,
    x: np.ndarray,
    *,
    float_blocks: tuple[str, ...],
) -> dict[str, dict[str, float]]:
    """{"without": ..., "with": ...} `compare` rows of the dynamic variant on `x`.

    Args:
        model: the loaded Keras model.
        calibration: (n, H, W, 3) float32 photos for the recipe's equalization and
            the correction's input means.
        x: (m, H, W, 3) float32 validation photos.
        float_blocks: the blocks the recipe keeps float.
    """
    reference = keras_logits(model, x)
    rows = {}
    for name, correct in (("without", False), ("with", True)):
        recipe = dataclasses.replace(
            DEFAULT_RECIPES["dynamic"], float_blocks=float_blocks, bias_correction=correct
        )
        print(f"dynamic, {name} bias correction", file=sys.stderr)
        content = tflite_bytes(
            model,
            variant="dynamic",
            recipe=recipe,
            representative_dataset=lambda: ([v[np.newaxis]] for v in calibration),
        )
        rows[name] = compare(tflite_logits(content, x), reference)
    return rows


def to_markdown(result: dict[str, Any]) -> str:
    """The table of `result` (bias_correction.json)."""
    lines = [
        f"`{result['command']}`",
        "",
        f"dynamic, float blocks {', '.join(result['float_blocks']) or 'none'}; "
        f"{result['n_validation']} validation photos, {result['calibration_images']} "
        "calibration photos.",
        "",
        "| bias correction | agreement | RMS logit diff | RMS top-2 margin diff |",
        "|---|---|---|---|",
    ]
    for name, row in result["rows"].items():
        lines.append(
            f"| {name} | {row['agreement_pct']:.2f}% | {row['rms_logit_diff']:.4f} "
            f"| {row['rms_margin_diff']:.4f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = run_dir_parser(prog="python -m bench.bias_correction", description=__doc__)
    add_float_blocks(p, "dynamic", purpose="blocks kept float")
    p.add_argument(
        "--calibration-size",
        type=int,
        default=DEFAULT_CALIBRATION_SIZE,
        help=f"train photos the recipe is calibrated on (default {DEFAULT_CALIBRATION_SIZE})",
    )
    p.add_argument("--verbose", action="store_true", help="also TensorFlow's C++ log lines")
    args = p.parse_args(argv)
    if args.calibration_size < 1:
        p.error(f"`--calibration-size` must be >= 1. Received: {args.calibration_size}")
    blocks = float_blocks(p, args, "dynamic")
    try:
        train = read_train_output(args.train_dir)
        train_split, validation = required_splits(train, "train", "validation")
        model = load_keras_model(train)
        chosen = sample_images(require_images(train_split), size=args.calibration_size, seed=1)
        size = train.image_size
        calibration = np.stack([preprocess_file(p, image_size=size) for p in chosen])
        x = np.stack([preprocess_file(p, image_size=size) for p in require_images(validation)])
        rows = measure(model, calibration, x, float_blocks=blocks)
    except (ConvertError, InferenceError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    result = {
        "command": "python -m bench.bias_correction " + " ".join(argv),
        "n_validation": len(x),
        "calibration_images": len(calibration),
        "float_blocks": list(blocks),
        "rows": rows,
    }
    write_results(args.out, "bias_correction", result, to_markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
