"""Could an `onnx-int8` variant pass int8's bar? onnxruntime's static quantization, measured.

    python -m bench.onnx_int8 runs/acc/fast_150 --out runs/onnx_int8
    python -m bench.onnx_int8 runs/acc/fast_150 --out runs/onnx_int8 --activations uint8

Exports the model with tf2onnx (convert/_onnx.py), quantizes it with
`quantize_int8` for each --activations kind (QDQ, per-channel int8 weights,
MinMax ranges from --calibration-size train images), and measures each
against Keras on the **validation** split: top-1 agreement, accuracy change,
and 1-thread latency. The test split is never read: this chooses whether a
variant ships, so it must not be what measures it (issue 13).

int8's bar (issue 13): agreement >= 98.5% and accuracy drop <= 0.5 points.
Writes OUT/onnx_int8.json and .md (printed). Exit status: 0 measured (whether
or not a recipe passes); 2 bad usage or input.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

if __name__ == "__main__":
    from inference import quiet_tensorflow

    quiet_tensorflow(sys.argv, os.environ)

import numpy as np

from bench._cli import run_dir_parser, write_results
from convert import ConvertError
from convert._onnx import onnx_bytes, quantize_int8
from convert._source import (
    keras_logits,
    labeled_arrays,
    list_images,
    load_keras_model,
    read_train_output,
    required_splits,
    sample_images,
)
from inference import preprocess_file

MIN_AGREEMENT_PCT, MAX_DROP_PTS = 98.5, 0.5  # int8's bar, issue 13


def _session(content: bytes, *, threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    return ort.InferenceSession(content, options, providers=["CPUExecutionProvider"])


def evaluate(
    content: bytes, x: np.ndarray, reference: np.ndarray, truth: np.ndarray, *, runs: int
) -> dict[str, float]:
    """Agreement with `reference` (Keras logits of `x`) and accuracy against `truth` (%)
    on `x` (n, H, W, 3); median 1-thread latency (ms)."""
    session = _session(content, threads=1)
    logits = np.concatenate([session.run(None, {"input": row[None]})[0] for row in x])
    times = []
    for i in range(runs + 3):  # 3 warm-up runs
        start = time.perf_counter()
        session.run(None, {"input": x[:1]})
        if i >= 3:
            times.append(1000 * (time.perf_counter() - start))
    return {
        "agreement_pct": float(100 * np.mean(logits.argmax(1) == reference.argmax(1))),
        "accuracy_pct": float(100 * np.mean(logits.argmax(1) == truth)),
        "max_abs_logit_diff": float(np.max(np.abs(logits - reference))),
        "latency_1t_ms": statistics.median(times),
        "size_mb": len(content) / 1e6,
    }


def _bar(passes: bool | None) -> str:
    return "—" if passes is None else ("pass" if passes else "**fail**")  # None: the float model


def to_markdown(result: dict[str, Any]) -> str:
    lines = [
        f"`{result['command']}`",
        "",
        f"{result['n_images']} validation images; Keras accuracy "
        f"{result['keras_accuracy_pct']:.2f}%; calibration: {result['calibration_images']} "
        "train images. Bar: agreement >= 98.5%, accuracy drop <= 0.5 points.",
        "",
        "| recipe | size (MB) | agreement | Δ acc (pts) | max \\|Δ logit\\| | 1 thread p50 (ms) "
        "| bar |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in result["recipes"].items():
        lines.append(
            f"| {name} | {r['size_mb']:.1f} | {r['agreement_pct']:.2f}% | "
            f"{r['accuracy_pct'] - result['keras_accuracy_pct']:+.2f} | "
            f"{r['max_abs_logit_diff']:.1e} | {r['latency_1t_ms']:.1f} | "
            f"{_bar(r.get('passes'))} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = run_dir_parser(prog="python -m bench.onnx_int8", description=__doc__)
    p.add_argument("--activations", nargs="+", default=["uint8", "int8"], choices=["uint8", "int8"])
    p.add_argument("--calibration-size", type=int, default=200, help="train images")
    p.add_argument("--runs", type=int, default=30, help="timed 1-thread runs per recipe")
    p.add_argument("--verbose", action="store_true", help="also TensorFlow's C++ log lines")
    args = p.parse_args(argv)
    if args.calibration_size < 1 or args.runs < 1:
        p.error(
            "`--calibration-size` and `--runs` must be >= 1. "
            f"Received: calibration_size={args.calibration_size}, runs={args.runs}"
        )
    try:
        train = read_train_output(args.train_dir)
        train_split, validation = required_splits(train, "train", "validation")
        model = load_keras_model(train)
    except ConvertError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    size = train.image_size
    images = list_images(validation)
    x, truth = labeled_arrays(images, image_size=size, labels=train.labels)
    reference = keras_logits(model, x)
    chosen = sample_images(list_images(train_split), size=args.calibration_size, seed=1)
    calibration = [preprocess_file(path, image_size=size) for path in chosen]
    print(f"exporting; calibrating on {len(calibration)} train images", file=sys.stderr)
    content = onnx_bytes(model, variant="onnx", image_size=size)
    keras_accuracy = float(100 * np.mean(reference.argmax(1) == truth))
    recipes = {"float32 (onnx)": evaluate(content, x, reference, truth, runs=args.runs)}
    for kind in args.activations:
        name = f"int8 QDQ per-channel, {kind} activations, MinMax"
        print(f"quantizing: {name}", file=sys.stderr)
        r = evaluate(
            quantize_int8(content, calibration, activations=kind),
            x,
            reference,
            truth,
            runs=args.runs,
        )
        r["passes"] = (
            r["agreement_pct"] >= MIN_AGREEMENT_PCT
            and keras_accuracy - r["accuracy_pct"] <= MAX_DROP_PTS
        )
        recipes[name] = r
    result = {
        "command": "python -m bench.onnx_int8 " + " ".join(argv),
        "n_images": len(images),
        "keras_accuracy_pct": keras_accuracy,
        "calibration_images": len(calibration),
        "recipes": recipes,
    }
    write_results(args.out, "onnx_int8", result, to_markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
