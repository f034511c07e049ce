"""`python -m bench`: measure the toolchain against its baselines, side by side.

    # the full run (< 20 min on 2 cores): writes bench/results/<date>.json + .md
    python -m bench

    # a smoke check (< 2 min once the work dir holds a model): <date>-quick.json + .md
    python -m bench --quick

    # also compare training at 299 px; other data, weights or output folder
    python -m bench --with-299 --data-dir clothing-dataset-small \\
        --base-weights xception_imagenet_notop.weights.h5 --out /tmp/results

Measured in one run, so the ratios share the machine's conditions: training
(the seed recipe's epoch on images vs a head epoch on the feature cache, and
the one-time extraction), inference latency and throughput (Keras vs every
TFLite variant and runtime, 1 and 2 threads, batch 1), cold start (serve
runtime vs TensorFlow + Keras), install size (serve vs training environment),
accuracy per variant, the compute floor (Xception's multiply-adds against the
measured GEMM peak) and the machine itself. The markdown report is the table
for README; older results stay in --out, and the report compares the new
headline ratios with the previous run of the same mode.

The model is trained (`train_model`), converted to float32, float16, dynamic
and int8 (`convert_model`) and checked (`check_bundles`) once, into
--work-dir (default ~/.cache/clothing-classifier/bench, with the serve venv),
and reused by later runs; --retrain builds it again.

Defaults: --data-dir from CLOTHING_DATA_DIR, else ../shared/data/clothing-dataset-small;
--base-weights from XCEPTION_WEIGHTS, else ../shared/models/xception_imagenet_notop.weights.h5
(else "imagenet", a download).

Exit status: 0 all measured; 1 some measurement failed (the report says which);
2 bad usage or input.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

if __name__ == "__main__":
    # The CLI, before TensorFlow loads (the training comparison, the Keras
    # workers inherit the env): its C++ log lines off unless --verbose or env
    # CLOTHING_VERBOSE=1 (inference/_quiet.py).
    from inference import quiet_tensorflow

    quiet_tensorflow(sys.argv, os.environ)

from bench._config import DEFAULT_OUT_DIR, LARGE_IMAGE_SIZE, BenchConfig

EXIT_OK, EXIT_MEASUREMENT_FAILED, EXIT_USAGE = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="few repeats, training on a subset")
    p.add_argument(
        "--image-size", type=int, default=150, help="model input size in px (default 150)"
    )
    p.add_argument(
        "--with-299",
        action="store_true",
        help=f"also compare training at {LARGE_IMAGE_SIZE} px (adds ~4x the 150 px time)",
    )
    p.add_argument("--work-dir", type=Path, help="model, bundles and serve venv kept between runs")
    p.add_argument("--data-dir", type=Path, help="dataset root with train/ validation/ test/")
    p.add_argument("--base-weights", help="'imagenet' or an Xception no-top .weights.h5 file")
    p.add_argument(
        "--out", type=Path, default=DEFAULT_OUT_DIR, help="results folder (default bench/results)"
    )
    p.add_argument("--retrain", action="store_true", help="rebuild the model and bundles")
    p.add_argument(
        "--verbose",
        action="store_true",
        help="also TensorFlow's C++ log lines (env CLOTHING_VERBOSE=1 does the same)",
    )
    return p


def _config(args: argparse.Namespace) -> BenchConfig:
    overrides = {
        "work_dir": args.work_dir,
        "data_dir": args.data_dir,
        "base_weights": args.base_weights,
    }
    return BenchConfig(
        quick=args.quick,
        image_size=args.image_size,
        with_299=args.with_299,
        out_dir=args.out,
        retrain=args.retrain,
        **{k: v for k, v in overrides.items() if v is not None},
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    args = parser.parse_args(argv)  # exits 2 on bad usage
    try:
        config = _config(args)
    except ValueError as exc:  # BenchConfig's own validation
        parser.error(str(exc))

    from bench._run import BenchError, run_bench  # imports TensorFlow

    try:
        output = run_bench(config, command=shlex.join(["python", "-m", "bench", *argv]))
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(output.md_path.read_text())
    print(f"results: {output.md_path} and {output.json_path}", file=sys.stderr)
    if not output.ok:
        print(f"failed measurements: {', '.join(output.result['errors'])}", file=sys.stderr)
        return EXIT_MEASUREMENT_FAILED
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
