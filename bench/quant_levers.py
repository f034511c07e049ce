"""Post-training quantization levers measured against the shipped recipes, on validation.

    python -m bench.quant_levers runs/acc/fast_150_v2 --out runs/quant_levers
    python -m bench.quant_levers runs/acc/fast_150_v2 --out runs/quant_levers --alphas 0.5 \\
        --x16-stride 10

Three questions about `python -m convert`'s quantized variants, each answered
against the run's Keras logits (top-1 agreement, and the RMS logit difference:
the smoother of the two, since on 341 validation images one changed answer is
0.29 points of agreement):

1. **Activation equalization.** Each separable convolution's depthwise output
   is quantized per tensor (int8: statically, dynamic: on the fly), so its
   channels with a small range lose the most to rounding. Scaling channel c of
   the depthwise kernel by 1/s_c and row c of the pointwise kernel by s_c leaves
   the function unchanged and moves range from the activation into the weights,
   which are quantized per channel: s_c = a_c^alpha / w_c^(1 - alpha), a_c the
   channel's largest |activation| on the calibration photos and w_c the row's
   largest |weight| (SmoothQuant, Xiao et al. 2023, eq. 4; cross-layer
   equalization, Nagel et al. 2019). Each `--alphas` value, for int8 and dynamic
   with every block quantized and with `--int8-float-blocks` /
   `--dynamic-float-blocks` float (default: `python -m convert`'s; dynamic keeps
   its depthwise convolutions float). 'alpha none' is never equalized, so its
   dynamic rows are not `python -m convert`'s (which equalizes at 0.5); no row
   is bias-corrected (`--dynamic-bias-correction yes`, off by default:
   `python -m bench.bias_correction` measures it).
2. **16x8** (int16 activations, int8 weights; TFLite's
   EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8): agreement on
   every `--x16-stride`-th validation photo, and 1-thread latency against
   float32 timed interleaved.
3. **Selecting on the train photos**, a set eight times larger than validation:
   the second recipes' agreement on the train photos outside the calibration
   sample, next to validation's. The head was fit on those photos.

Calibration (int8 and 16x8 ranges, and the equalization's a_c): the train
split's sample that `python -m convert` uses (200 photos, seed 1;
`--calibration-size`). The test split is never read.

A model that cannot be built or loaded is a row with its error. Writes
OUT/quant_levers.json and .md (printed). Exit status: 0 measured; 2 bad usage
or input.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path
from typing import Any

if __name__ == "__main__":
    from inference import quiet_tensorflow

    quiet_tensorflow(sys.argv, os.environ)

import numpy as np

from bench._cli import add_float_blocks, float_blocks, run_dir_parser, write_results
from bench._latency import tflite_invoker
from convert import ConvertError
from convert._convert import DEFAULT_CALIBRATION_SIZE
from convert._equalize import FLOOR, depthwise_ranges, equalized
from convert._export import tflite_bytes
from convert._quantize import (
    DEFAULT_RECIPES,
    calibrate,
    dynamic_range,
    quantize_calibrated,
    run_converter,
    tflite_logits,
)
from convert._source import (
    keras_logits,
    load_keras_model,
    read_train_output,
    require_images,
    required_splits,
    sample_images,
)
from inference import InferenceError, preprocess_file, time_interleaved

DEFAULT_ALPHAS = (0.25, 0.5)
DYNAMIC_OPS = DEFAULT_RECIPES["dynamic"].float_ops  # depthwise float, as `python -m convert`
VARIANTS = ("int8", "dynamic")


def int16x8(model: Any, calibration: np.ndarray) -> bytes:
    """TFLite 16x8: int16 activations, int8 weights, float in/out.

    Raises:
        ConvertError: the converter failed.
    """
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([x[np.newaxis]] for x in calibration)
    converter.target_spec.supported_ops = [
        tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
    ]
    return run_converter(converter, failure="16x8 conversion failed")


def compare(logits: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Top-1 agreement (%) and RMS logit difference of (n, k) `logits` against `reference`."""
    return {
        "agreement_pct": float(100 * np.mean(logits.argmax(1) == reference.argmax(1))),
        "rms_logit_diff": float(np.sqrt(np.mean((logits - reference) ** 2))),
    }


def _measured(content: Callable[[], bytes], x: np.ndarray, reference: np.ndarray) -> dict[str, Any]:
    """`compare` of the model `content()` builds; a model the runtime cannot load
    (or the converter cannot build) is a row with its error, not a crash."""
    try:
        return compare(tflite_logits(content(), x), reference)
    except (ConvertError, InferenceError) as exc:
        return {"error": _first_line(exc)}


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def recipes(
    model: Any, calibration: np.ndarray, *, float_blocks: dict[str, tuple[str, ...]]
) -> dict[str, Callable[[], bytes]]:
    """'<variant> <recipe>' -> a call that quantizes `model` so: int8 and dynamic,
    every block quantized and `float_blocks[variant]` float (dynamic with its
    depthwise convolutions float, as `python -m convert`; no equalization). The
    calls share one calibration and one float32 export; the first call makes them,
    and each call's model is kept."""
    made: dict[str, bytes] = {}

    def calibrated() -> bytes:
        if "int8" not in made:
            made["int8"] = calibrate(model, lambda: ([c[np.newaxis]] for c in calibration))
        return made["int8"]

    def float32() -> bytes:
        if "float32" not in made:
            made["float32"] = tflite_bytes(model, variant="float32")
        return made["float32"]

    def quantized(variant: str, blocks: tuple[str, ...]) -> Callable[[], bytes]:
        if variant == "int8":
            return cache(lambda: quantize_calibrated(calibrated(), float_blocks=blocks))
        return cache(lambda: dynamic_range(float32(), float_blocks=blocks, float_ops=DYNAMIC_OPS))

    calls: dict[str, Callable[[], bytes]] = {}
    for variant in VARIANTS:
        for blocks in ((), float_blocks[variant]):
            calls[_recipe_name(variant, blocks)] = quantized(variant, blocks)
    return calls


def _recipe_name(variant: str, float_blocks: tuple[str, ...]) -> str:
    """'int8 all blocks quantized', 'dynamic blocks 1, 3, 2 float'."""
    if not float_blocks:
        return f"{variant} all blocks quantized"
    return f"{variant} blocks {', '.join(b.removeprefix('block') for b in float_blocks)} float"


def equalization_rows(
    model: Any,
    calibration: np.ndarray,
    x: np.ndarray,
    reference: np.ndarray,
    *,
    ranges: Sequence[np.ndarray],
    alphas: Sequence[float],
    unchanged: dict[str, Callable[[], bytes]],
    float_blocks: dict[str, tuple[str, ...]],
) -> dict[str, dict[str, Any]]:
    """'<variant> <recipe>, alpha <a>' -> `compare` on `x`; alpha 'none' is
    `unchanged`, the `recipes` of the model as it is; `ranges` from `depthwise_ranges`
    on `calibration`."""
    rows: dict[str, dict[str, Any]] = {}
    for alpha in (None, *alphas):
        label = "none" if alpha is None else f"{alpha:g}"
        print(f"equalization alpha {label}", file=sys.stderr)
        calls = (
            unchanged
            if alpha is None
            else recipes(
                equalized(model, ranges, alpha=alpha), calibration, float_blocks=float_blocks
            )
        )
        for name, content in calls.items():
            rows[f"{name}, alpha {label}"] = _measured(content, x, reference)
    return rows


def held_in(train_photos: Sequence[Path], calibration: Sequence[Path]) -> list[Path]:
    """The train photos outside the calibration sample (which int8's ranges were fit on)."""
    excluded = set(calibration)
    return [p for p in train_photos if p not in excluded]


def to_markdown(result: dict[str, Any]) -> str:
    """The three tables of `result` (quant_levers.json)."""

    def _ms(row: dict[str, Any]) -> str:
        return f"{row['latency_1t_ms']:.1f}" if "latency_1t_ms" in row else "—"

    def cells(row: dict[str, Any]) -> str:
        if "error" in row:
            return f"— | — ({row['error']})"
        return f"{row['agreement_pct']:.2f}% | {row['rms_logit_diff']:.4f}"

    x16 = result["int16x8"]
    lines = [
        f"`{result['command']}`",
        "",
        f"## Activation equalization ({result['n_validation']} validation photos)",
        "",
        "| variant, recipe, alpha | agreement | RMS logit diff |",
        "|---|---|---|",
        *(f"| {name} | {cells(row)} |" for name, row in result["equalization"].items()),
        "",
        f"## 16x8 ({x16['n_images']} validation photos: one in {x16['stride']})",
        "",
        f"1-thread medians of {result['runs']} runs, timed interleaved.",
        "",
        "| model | agreement | RMS logit diff | 1 thread p50 (ms) |",
        "|---|---|---|---|",
        *(
            f"| {name} | {cells(row)} | {_ms(row)} |"
            for name, row in (("float32", x16["float32"]), ("16x8", x16["int16x8"]))
        ),
        "",
        f"## Agreement on validation and on {result['n_train']} train photos "
        "(not the calibration sample)",
        "",
        "| variant, recipe | validation | train |",
        "|---|---|---|",
    ]
    for name, row in result["selection_photos"].items():
        if "error" in row:
            lines.append(f"| {name} | — | — ({row['error']}) |")
            continue
        lines.append(
            f"| {name} | {row['validation_agreement_pct']:.2f}% | "
            f"{row['train_agreement_pct']:.2f}% |"
        )
    return "\n".join(lines) + "\n"


def _arrays(paths: Sequence[Path], image_size: int) -> np.ndarray:
    return np.stack([preprocess_file(p, image_size=image_size) for p in paths])


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = run_dir_parser(prog="python -m bench.quant_levers", description=__doc__)
    p.add_argument(
        "--alphas",
        type=float,
        nargs="+",
        default=list(DEFAULT_ALPHAS),
        help="equalization strengths in (0, 1] (default 0.25 0.5)",
    )
    for variant in VARIANTS:
        add_float_blocks(p, variant, purpose=f"{variant}: the blocks the second recipe keeps float")
    p.add_argument("--x16-stride", type=int, default=3, help="16x8 on every Nth validation photo")
    p.add_argument(
        "--calibration-size",
        type=int,
        default=DEFAULT_CALIBRATION_SIZE,
        help="train photos int8, 16x8 and the equalization are calibrated on "
        f"(default {DEFAULT_CALIBRATION_SIZE})",
    )
    p.add_argument("--runs", type=int, default=10, help="timed 1-thread runs, float32 and 16x8")
    p.add_argument("--verbose", action="store_true", help="also TensorFlow's C++ log lines")
    args = p.parse_args(argv)
    for name in ("x16_stride", "runs", "calibration_size"):
        if getattr(args, name) < 1:
            p.error(
                f"`--{name.replace('_', '-')}` must be >= 1. Received: {name}={getattr(args, name)}"
            )
    blocks = {variant: float_blocks(p, args, variant) for variant in VARIANTS}
    if not all(0 < a <= 1 for a in args.alphas) or len({f"{a:g}" for a in args.alphas}) != len(
        args.alphas
    ):
        p.error(f"`--alphas` must be distinct values in (0, 1]. Received: alphas={args.alphas}")
    try:
        train = read_train_output(args.train_dir)
        train_split, validation = required_splits(train, "train", "validation")
        model = load_keras_model(train)
        val_paths, train_paths = require_images(validation), require_images(train_split)
        chosen = sample_images(train_paths, size=args.calibration_size, seed=1)
        held = held_in(train_paths, chosen)
        if not held:
            raise ConvertError(
                f"All {len(train_paths)} train photos are in the calibration sample: pass a "
                f"--calibration-size below {len(train_paths)}."
            )
        calibration = _arrays(chosen, train.image_size)
        x = _arrays(val_paths, train.image_size)
        x_train = _arrays(held, train.image_size)
        ranges = depthwise_ranges(model, calibration)
    # ValueError: a model without an Xception-like separable convolution (depthwise_ranges)
    except (ConvertError, InferenceError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    reference = keras_logits(model, x)
    unchanged = recipes(model, calibration, float_blocks=blocks)
    equalization = equalization_rows(
        model,
        calibration,
        x,
        reference,
        ranges=ranges,
        alphas=args.alphas,
        unchanged=unchanged,
        float_blocks=blocks,
    )
    result = {
        "command": "python -m bench.quant_levers " + " ".join(argv),
        "n_validation": len(x),
        "n_train": len(x_train),
        "calibration_images": len(calibration),
        "alphas": args.alphas,
        "floor": FLOOR,
        "runs": args.runs,
        "equalization": equalization,
        "int16x8": _int16x8_rows(
            model, calibration, x, reference, stride=args.x16_stride, runs=args.runs
        ),
        "selection_photos": _selection_rows(
            model, unchanged, equalization, x_train, float_blocks=blocks
        ),
    }
    write_results(args.out, "quant_levers", result, to_markdown(result))
    return 0


def _int16x8_rows(
    model: Any,
    calibration: np.ndarray,
    x: np.ndarray,
    reference: np.ndarray,
    *,
    stride: int,
    runs: int,
) -> dict[str, Any]:
    """float32 and 16x8 on every `stride`-th photo of `x`, timed at 1 thread in the
    same interleaved rounds; a model that cannot be built or loaded is its error."""
    print("16x8", file=sys.stderr)
    subset = slice(None, None, stride)
    rows: dict[str, dict[str, Any]] = {}
    invokers = {}
    for name, build in (
        ("float32", lambda: tflite_bytes(model, variant="float32")),
        ("int16x8", lambda: int16x8(model, calibration)),
    ):
        try:
            content = build()
            invokers[name] = tflite_invoker(content, x[:1])
            rows[name] = compare(tflite_logits(content, x[subset]), reference[subset])
        except (ConvertError, InferenceError) as exc:
            rows[name] = {"error": _first_line(exc)}
            invokers.pop(name, None)
    timings = time_interleaved(list(invokers.values()), runs=runs, warmup=2) if invokers else ()
    for name, timing in zip(invokers, timings, strict=True):
        rows[name]["latency_1t_ms"] = timing.median_ms
    return {"stride": stride, "n_images": len(x[subset]), **rows}


def _selection_rows(
    model: Any,
    unchanged: dict[str, Callable[[], bytes]],
    equalization: dict[str, dict[str, Any]],
    x_train: np.ndarray,
    *,
    float_blocks: dict[str, tuple[str, ...]],
) -> dict[str, dict[str, Any]]:
    """The `float_blocks` recipes' agreement on the held-in train photos, beside their
    validation agreement (the equalization table's 'alpha none' rows)."""
    print("default recipes on the train photos", file=sys.stderr)
    train_reference = keras_logits(model, x_train)
    rows: dict[str, dict[str, Any]] = {}
    for variant in VARIANTS:
        name = _recipe_name(variant, float_blocks[variant])
        validation = equalization[f"{name}, alpha none"]
        if "error" in validation:
            rows[name] = validation
            continue
        train = _measured(unchanged[name], x_train, train_reference)
        rows[name] = (
            train
            if "error" in train
            else {
                "validation_agreement_pct": validation["agreement_pct"],
                "train_agreement_pct": train["agreement_pct"],
            }
        )
    return rows


if __name__ == "__main__":
    sys.exit(main())
