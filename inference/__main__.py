"""Classify images on a device with a TFLite bundle; no TensorFlow needed.

Usage:
    python -m inference predict shirt.jpg hat.png --model bundles/int8 --top-k 3
    python -m inference predict shirt.jpg --model bundles/int8 --json
    python -m inference predict shirt.jpg --unsure-threshold 0.9   # answer only when >= 90%
    python -m inference bench --model bundles/int8 --threads 1 2 4 --runs 50
    python -m inference serve --model bundles/int8 --port 8080   # the listing page + API
    python -m inference batch photos/ --model bundles/int8 --output labels.jsonl --workers 2
    python -m inference batch urls.csv --column image_url --output labels.csv --per-host 2 --rate 5
    find photos -name '*.jpg' | python -m inference batch - --output labels.jsonl   # stdin

Env vars: MODEL_DIR (default of --model), INFERENCE_RUNTIME (ai-edge-litert,
tflite-runtime or tensorflow; onnxruntime for ONNX bundles; unset: from the
bundle's format), INFERENCE_THREADS, MAX_IMAGE_PIXELS,
UNSURE_THRESHOLD (default of --unsure-threshold; unset: the bundle's).
Scores are calibrated probabilities; below the unsure threshold an image is
printed as "unsure" with its suggestions (JSON: "label": null, "unsure": true).
Exit codes: 0 all images classified, 1 some image failed, 2 bad model/usage.
batch: 0 every input has a row (bad inputs are rows with their error code),
1 the workers kept dying, 2 bad model/usage, 130 interrupted (rerun the same
command to continue: inputs that have a row are skipped).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from inference._batch import BatchConfig, WorkersDiedError, run_batch
from inference._bench import bench_model, format_bench
from inference._classifier import Classifier, InferenceConfig
from inference._errors import InferenceError
from inference._serve import run as serve_run


def build_parser() -> argparse.ArgumentParser:
    """The CLI's parser: subcommands predict, bench and serve."""
    parser = argparse.ArgumentParser(
        prog="python -m inference",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    predict = sub.add_parser("predict", help="classify image files")
    predict.add_argument("images", nargs="+", type=Path)
    predict.add_argument("--top-k", type=int, default=3)
    predict.add_argument("--json", action="store_true", help="one JSON document on stdout")
    predict.add_argument(
        "--unsure-threshold",
        type=float,
        default=None,
        help="answer 'unsure' below this top score, 0..1; 0: always answer "
        "(env UNSURE_THRESHOLD; default: the bundle's)",
    )
    bench = sub.add_parser("bench", help="load time, latency, peak memory")
    bench.add_argument("--runs", type=int, default=50)
    bench.add_argument(
        "--image", type=Path, default=None, help="image to time (default: generated)"
    )
    serve = sub.add_parser("serve", help="the listing page and the API over HTTP (local)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0: all)")
    serve.add_argument("--port", type=int, default=8080, help="0: a free port")
    serve.add_argument("--model", type=Path, default=None, help="bundle folder (env MODEL_DIR)")
    batch = sub.add_parser(
        "batch", help="classify a folder or a list of paths/URLs into a .jsonl or .csv file"
    )
    _add_batch_arguments(batch)
    for p in (predict, bench, batch):
        p.add_argument("--model", type=Path, default=None, help="bundle folder (env MODEL_DIR)")
        p.add_argument(
            "--runtime",
            default=None,
            help="ai-edge-litert | tflite-runtime | tensorflow (TFLite bundles) | "
            "onnxruntime (ONNX bundles); default: from the bundle's format",
        )
        p.add_argument("--max-pixels", type=int, default=None)
    predict.add_argument("--threads", type=int, default=None)
    bench.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI on `argv` (None: sys.argv[1:]).

    Returns:
        The exit status: 0 when every image was classified (or the bench ran);
        1 when some image could not be (each one's error is in the output);
        2 with an "error: ..." line on stderr for a bad setting or bundle
        (`InferenceError`, ValueError, OSError). argparse exits with 2 on bad
        arguments; `serve` returns the server's status.
    """
    args = build_parser().parse_args(argv)
    if args.command == "batch":
        return _batch(args)
    if args.command == "serve":
        model = None if args.model is None else str(args.model)
        return serve_run(model_dir=model, host=args.host, port=args.port)
    try:
        if args.command == "bench":
            config = InferenceConfig.from_env(
                model_dir=args.model, runtime=args.runtime, max_pixels=args.max_pixels
            )
            result = bench_model(config, threads=args.threads, runs=args.runs, image=args.image)
            print(format_bench(result))
            return 0
        config = InferenceConfig.from_env(
            model_dir=args.model,
            runtime=args.runtime,
            num_threads=args.threads,
            max_pixels=args.max_pixels,
            unsure_threshold=args.unsure_threshold,
        )
        if args.top_k < 1:
            raise ValueError(f"`top_k` must be >= 1. Received: top_k={args.top_k}")
        classifier = Classifier.from_config(config)
        n_classes = len(classifier.manifest.labels)
        if args.top_k > n_classes:  # as the Lambda handler's `top_k`
            raise ValueError(
                f"`top_k` must be from 1 to {n_classes} (the bundle's classes). "
                f"Received: top_k={args.top_k}"
            )
    except (InferenceError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return _predict(classifier, args.images, top_k=args.top_k, as_json=args.json)


def _add_batch_arguments(batch: argparse.ArgumentParser) -> None:
    batch.add_argument(
        "input", metavar="INPUT", help="a folder, a .txt/.csv list of paths or URLs, or -"
    )
    batch.add_argument(
        "--output", type=Path, required=True, help="FILE.jsonl, .csv or .parquet; rerun to resume"
    )
    batch.add_argument("--column", default=None, help="CSV column of paths/URLs")
    batch.add_argument(
        "--workers", type=int, default=None, help="processes (env BATCH_WORKERS; default: CPUs)"
    )
    batch.add_argument(
        "--threads-per-worker", type=int, default=None, help="default: CPUs / workers"
    )
    batch.add_argument(
        "--per-host", type=int, default=None, help="URL fetches at once per host (default 2)"
    )
    batch.add_argument(
        "--rate", type=float, default=None, help="URL requests/s per host, 0: no limit (default 5)"
    )
    batch.add_argument(
        "--progress-every", type=float, default=None, help="seconds between progress lines (10)"
    )
    batch.add_argument("--unsure-threshold", type=float, default=None)


def _batch(args: argparse.Namespace) -> int:
    # Ctrl-C, and SIGTERM (kill, a scheduler's stop), end the run the same way: rows
    # flushed, exit 130. Set both: a shell starts background jobs with SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        config = BatchConfig.from_env(
            source=args.input,
            output=args.output,
            column=args.column,
            workers=args.workers,
            threads_per_worker=args.threads_per_worker,
            per_host=args.per_host,
            rate=args.rate,
            progress_every_s=args.progress_every,
            inference=InferenceConfig.from_env(
                model_dir=args.model,
                runtime=args.runtime,
                max_pixels=args.max_pixels,
                unsure_threshold=args.unsure_threshold,
            ),
        )
        summary = run_batch(config)
    except KeyboardInterrupt:
        print(
            "interrupted: rows written so far are kept; run the same command again to continue",
            file=sys.stderr,
        )
        return 130
    except WorkersDiedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (InferenceError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary.to_dict()))
    done = summary.skipped + summary.written
    if summary.interrupted:
        print(
            f"interrupted: {done} of {summary.inputs} inputs have a row in {summary.output}; "
            "run the same command again to continue",
            file=sys.stderr,
        )
        return 130
    print(
        f"batch: {summary.written} rows written ({summary.errors} bad inputs), "
        f"{summary.skipped} already there ({summary.skipped_errors} of them errors, not "
        f"retried), in {summary.elapsed_s:.1f} s: "
        f"{summary.images_per_s:.1f} images/s with {summary.workers} worker(s) x "
        f"{summary.threads_per_worker} thread(s) -> {summary.output}",
        file=sys.stderr,
    )
    return 0


def _predict(classifier: Classifier, images: list[Path], *, top_k: int, as_json: bool) -> int:
    results: list[dict[str, Any]] = []
    for path in images:
        try:
            prediction = classifier.predict_file(path, top_k=top_k)
            results.append({"image": str(path), **prediction.to_dict()})
        except (InferenceError, OSError) as exc:
            code = exc.code if isinstance(exc, InferenceError) else "FILE_NOT_FOUND"
            results.append({"image": str(path), "error": {"code": code, "message": str(exc)}})
    if as_json:
        runtime = {"name": classifier.runtime.name, "version": classifier.runtime.version}
        model = {
            "variant": classifier.manifest.variant,
            "sha256": classifier.manifest.model_sha256,
            "temperature": classifier.temperature,
            "calibrated": classifier.manifest.calibrated,
        }
        text = json.dumps({"model": model, "runtime": runtime, "results": results}, indent=2)
    else:
        text = "\n".join(_format_result(r) for r in results)
    try:
        print(text, flush=True)
    except OSError as exc:  # stdout full or closed (`> /dev/full`, `| head` that quit)
        # Point fd 1 at /dev/null, so that the interpreter's last flush of the
        # same buffer does not fail again with a traceback (Python docs, "signal",
        # note on SIGPIPE).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        print(f"error: cannot write the results to stdout: {exc}", file=sys.stderr)
        return 2
    failed = sum("error" in r for r in results)
    if failed:
        print(f"{failed} of {len(results)} image(s) could not be classified", file=sys.stderr)
    return 1 if failed else 0


def _format_result(result: dict[str, Any]) -> str:
    if "error" in result:
        return f"{result['image']}\n  error {result['error']['code']}: {result['error']['message']}"
    if result["unsure"]:
        head = (
            f"{result['image']}: unsure (top score {result['confidence']:.1%} < threshold "
            f"{result['unsure_threshold']:.1%}); suggestions:"
        )
    else:
        head = f"{result['image']}: {result['label']} ({result['confidence']:.1%})"
    lines = [head]
    for item in result["top"]:
        lines.append(f"  {item['label']:<12} {item['score']:7.2%}   logit {item['logit']:8.3f}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
