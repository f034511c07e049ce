"""Which dynamic-range recipe: depthwise convolutions float or not, with and without float blocks.

    python -m bench.dynamic_ops runs/acc/fast_150 --out runs/dynamic_ops
    python -m bench.dynamic_ops runs/acc/fast_150 --out runs/dynamic_ops --blocks block1 block3

Builds four dynamic-range models of the same float32 TFLite model with Google's
AI Edge Quantizer (convert/_quantize.py `dynamic_range`): every op quantized;
DEPTHWISE_CONV_2D kept float (`--dynamic-float-ops`); `--blocks` kept float;
both. Each is measured against Keras on the **validation** split (top-1
agreement, accuracy change) and timed at 1 thread against float32 in the same
interleaved rounds (`inference.time_interleaved`), so the speed-ups compare
under the same load. The test split is never read: this chooses a recipe.

Why the op matters: XNNPACK takes no depthwise convolution with int8 weights in
a dynamic-range model, so each one leaves the delegate for TFLite's hybrid
kernel (README "Closer to the machine's limit").

Writes OUT/dynamic_ops.json and .md (printed). Exit status: 0 measured; 2 bad
usage or input.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

if __name__ == "__main__":
    from inference import quiet_tensorflow

    quiet_tensorflow(sys.argv, os.environ)

import numpy as np

from bench._cli import run_dir_parser, write_results
from bench._latency import tflite_invoker
from convert import ConvertError
from convert._export import tflite_bytes
from convert._quantize import BLOCKS, DEFAULT_RECIPES, FLOAT_OPS, dynamic_range, tflite_logits
from convert._source import (
    keras_logits,
    labeled_arrays,
    load_keras_model,
    read_train_output,
    require_images,
    required_splits,
)
from inference import InferenceError, time_interleaved

# The default dynamic recipe's float blocks, for the comparison rows. They were
# chosen with the recipe's activation equalization on; these rows measure the op
# lever without it (bench.quant_levers measures the equalization).
DEFAULT_BLOCKS = DEFAULT_RECIPES["dynamic"].float_blocks


def recipes(blocks: Sequence[str]) -> dict[str, dict[str, tuple[str, ...]]]:
    """Recipe name -> `dynamic_range` keyword arguments, for the four rows."""
    named = ", ".join(b.removeprefix("block") for b in blocks)
    return {
        "all ops quantized": {"float_blocks": (), "float_ops": ()},
        "depthwise float": {"float_blocks": (), "float_ops": FLOAT_OPS},
        f"blocks {named} float": {"float_blocks": tuple(blocks), "float_ops": ()},
        f"blocks {named} float + depthwise float": {
            "float_blocks": tuple(blocks),
            "float_ops": FLOAT_OPS,
        },
    }


def measure(
    models: dict[str, bytes],
    x: np.ndarray,
    reference: np.ndarray,
    truth: np.ndarray,
    *,
    runs: int,
) -> dict[str, dict[str, float]]:
    """Per model: agreement with `reference` (the Keras logits of `x`, (n, k)) and
    accuracy against `truth` (%) on `x` (n, H, W, 3) float32, the RMS difference of
    its logits from `reference`, size (MB), and median 1-thread latency (ms), all
    models timed in the same interleaved rounds."""
    timings = time_interleaved(
        [tflite_invoker(content, x[:1]) for content in models.values()], runs=runs, warmup=3
    )
    out = {}
    for (name, content), timing in zip(models.items(), timings, strict=True):
        logits = tflite_logits(content, x)
        out[name] = {
            "agreement_pct": float(100 * np.mean(logits.argmax(1) == reference.argmax(1))),
            "accuracy_pct": float(100 * np.mean(logits.argmax(1) == truth)),
            "rms_logit": float(np.sqrt(np.mean((logits - reference) ** 2))),
            "size_mb": len(content) / 1e6,
            "latency_1t_ms": timing.median_ms,
        }
    return out


def to_markdown(result: dict[str, Any]) -> str:
    """The result as a table, speed-ups against the float32 row."""
    rows = result["recipes"]
    float32_ms = rows["float32"]["latency_1t_ms"]
    lines = [
        f"`{result['command']}`",
        "",
        f"{result['n_images']} validation images; Keras accuracy "
        f"{result['keras_accuracy_pct']:.2f}%. 1-thread medians of {result['runs']} runs, "
        "timed interleaved.",
        "",
        "| recipe | size (MB) | agreement | Δ acc (pts) | 1 thread p50 (ms) | vs float32 |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {r['size_mb']:.1f} | {r['agreement_pct']:.2f}% | "
            f"{r['accuracy_pct'] - result['keras_accuracy_pct']:+.2f} | "
            f"{r['latency_1t_ms']:.1f} | {float32_ms / r['latency_1t_ms']:.2f}x |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = run_dir_parser(prog="python -m bench.dynamic_ops", description=__doc__)
    p.add_argument(
        "--blocks",
        nargs="+",
        default=list(DEFAULT_BLOCKS),
        choices=BLOCKS,
        metavar="BLOCK",
        help=f"blocks kept float in the last two rows (default {' '.join(DEFAULT_BLOCKS)})",
    )
    p.add_argument("--runs", type=int, default=30, help="timed 1-thread runs per model")
    p.add_argument("--verbose", action="store_true", help="also TensorFlow's C++ log lines")
    args = p.parse_args(argv)
    if args.runs < 1:
        p.error(f"`--runs` must be >= 1. Received: runs={args.runs}")
    try:
        train = read_train_output(args.train_dir)
        (validation,) = required_splits(train, "validation")
        model = load_keras_model(train)
        images = require_images(validation)
        x, truth = labeled_arrays(images, image_size=train.image_size, labels=train.labels)
        float32 = tflite_bytes(model, variant="float32")
        models = {"float32": float32}
        for name, kwargs in recipes(args.blocks).items():
            print(f"quantizing: {name}", file=sys.stderr)
            models[name] = dynamic_range(float32, **kwargs)
    # ValueError: a class folder of the split that the model does not know
    except (ConvertError, InferenceError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    reference = keras_logits(model, x)
    result = {
        "command": "python -m bench.dynamic_ops " + " ".join(argv),
        "n_images": len(images),
        "keras_accuracy_pct": float(100 * np.mean(reference.argmax(1) == truth)),
        "runs": args.runs,
        "recipes": measure(models, x, reference, truth, runs=args.runs),
    }
    write_results(args.out, "dynamic_ops", result, to_markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
