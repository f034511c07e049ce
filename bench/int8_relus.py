"""int8 with the residual ReLUs fused into ADDs, or not: agreement and speed, on validation.

    python -m bench.int8_relus runs/acc/fast_150_v2 --out runs/int8_relus
    python -m bench.int8_relus runs/acc/fast_150_v2 --out runs/int8_relus --blocks block2 block1

Keras Xception's residual sums each feed a ReLU and the next residual add, so the
TFLite converter leaves those ReLUs as RELU ops of their own, and XNNPACK takes
no int8 RELU: each one splits the delegated graph and runs on TFLite's reference
kernel. convert/_fuse.py rewires the sums (same function) so that each ReLU
fuses into an ADD. This bench builds int8 from the same 200 calibration photos
as `python -m convert` (train split, seed 1) with every block quantized and with
`--blocks` float, each without and with the rewiring, and measures each against
Keras on the **validation** split: top-1 agreement, accuracy change, RMS logit
difference (smoother than agreement: on 341 photos one answer is 0.29 points),
size, XNNPACK partitions and RELU ops in the graph, and the 1-thread latency
timed against float32 in the same interleaved rounds. The test split is never
read: this chooses a recipe.

Writes OUT/int8_relus.json and .md (printed). Exit status: 0 measured; 2 bad
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
from bench.dynamic_ops import measure
from convert import ConvertError
from convert._convert import DEFAULT_CALIBRATION_SIZE
from convert._export import tflite_bytes
from convert._quantize import BLOCKS, DEFAULT_RECIPES, QuantRecipe
from convert._source import (
    keras_logits,
    labeled_arrays,
    list_images,
    load_keras_model,
    read_train_output,
    require_images,
    required_splits,
    sample_images,
)
from inference import InferenceError, preprocess_file

DEFAULT_BLOCKS = DEFAULT_RECIPES["int8"].float_blocks


def recipes(blocks: Sequence[str]) -> dict[str, QuantRecipe]:
    """Row name -> int8 recipe: all quantized and `blocks` float, each without and
    with the ReLUs fused."""
    named = ", ".join(b.removeprefix("block") for b in blocks)
    out = {}
    for name, float_blocks in (("all blocks int8", ()), (f"blocks {named} float", tuple(blocks))):
        out[name] = QuantRecipe(float_blocks=float_blocks)
        out[f"{name}, ReLUs fused"] = QuantRecipe(float_blocks=float_blocks, fuse_relus=True)
    return out


def graph_counts(content: bytes) -> dict[str, int]:
    """XNNPACK partitions (DELEGATE nodes) and RELU ops of a TFLite model, as loaded
    by ai-edge-litert with its default delegate."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=content, num_threads=1)
    interpreter.allocate_tensors()
    names = [op["op_name"] for op in interpreter._get_ops_details()]
    return {"xnnpack_partitions": names.count("DELEGATE"), "relu_ops": names.count("RELU")}


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
        "| recipe | size (MB) | agreement | Δ acc (pts) | RMS Δ logit | XNNPACK partitions "
        "| RELU ops | 1 thread p50 (ms) | vs float32 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {r['size_mb']:.1f} | {r['agreement_pct']:.2f}% | "
            f"{r['accuracy_pct'] - result['keras_accuracy_pct']:+.2f} | {r['rms_logit']:.3f} | "
            f"{r['xnnpack_partitions']} | {r['relu_ops']} | "
            f"{r['latency_1t_ms']:.1f} | {float32_ms / r['latency_1t_ms']:.2f}x |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = run_dir_parser(prog="python -m bench.int8_relus", description=__doc__)
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
        train_split, validation = required_splits(train, "train", "validation")
        model = load_keras_model(train)
        images = require_images(validation)
        x, truth = labeled_arrays(images, image_size=train.image_size, labels=train.labels)
        chosen = sample_images(list_images(train_split), size=DEFAULT_CALIBRATION_SIZE, seed=1)
        calibration = [preprocess_file(path, image_size=train.image_size) for path in chosen]
        models = {"float32": tflite_bytes(model, variant="float32")}
        for name, recipe in recipes(args.blocks).items():
            print(f"quantizing: {name}", file=sys.stderr)
            models[name] = tflite_bytes(
                model,
                variant="int8",
                representative_dataset=lambda: ([a[np.newaxis]] for a in calibration),
                recipe=recipe,
            )
    # ValueError: a class folder of the split that the model does not know
    except (ConvertError, InferenceError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    reference = keras_logits(model, x)
    rows = measure(models, x, reference, truth, runs=args.runs)
    for name, content in models.items():
        rows[name].update(graph_counts(content))
    result = {
        "command": "python -m bench.int8_relus " + " ".join(argv),
        "n_images": len(images),
        "keras_accuracy_pct": float(100 * np.mean(reference.argmax(1) == truth)),
        "calibration_images": len(calibration),
        "runs": args.runs,
        "recipes": rows,
    }
    write_results(args.out, "int8_relus", result, to_markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
