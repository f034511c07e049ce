"""Time every crafted input: is each one answered (classified or a typed error) quickly?

    python -m bench.inputs                          # corpus + heavy cases, decode + preprocess
    python -m bench.inputs --model runs/bundles/dynamic   # through inference.handle_event
    python -m bench.inputs --bound 2.0 --json out.json

The inputs are tests/images/corpus/ (one file per kind of fault, issue 11)
plus `build_heavy()` from tests/images/corpus.py: worst cases near each limit
(a 49 MP deflate bomb, 49 MP JPEGs with 16 and 20,000 scans, a million 1-byte
PNG IDAT chunks, 20,000 GIF frames, an RLE BMP...). Each input runs once after
a warm-up; the table lists the answer and the seconds, slowest first. Exit
status 1 when an input raised something untyped or took longer than --bound.
"""

from __future__ import annotations

import argparse
import base64
import importlib
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_BOUND_S = 2.0  # issue 11: every crafted input answered in under 2 s
PREPROCESS_SIZE = 150  # the shipped model's input size


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.inputs",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", type=Path, default=None, help="bundle: time the handler")
    parser.add_argument("--bound", type=float, default=DEFAULT_BOUND_S, help="seconds per input")
    parser.add_argument("--no-heavy", action="store_true", help="the corpus only")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    return parser


def load_inputs(*, heavy: bool) -> dict[str, bytes]:
    """name -> bytes: the committed corpus, then the heavy cases built in memory."""
    sys.path.insert(0, str(REPO))
    # The generator lives with the tests (tests/images/corpus.py), outside mypy's files.
    corpus: Any = importlib.import_module("tests.images.corpus")

    inputs = {
        p.name: p.read_bytes()
        for p in sorted(corpus.CORPUS.iterdir())
        if p.suffix not in (".json", ".npy")
    }
    if heavy:
        inputs.update(corpus.build_heavy())
    return inputs


def make_runner(model: Path | None) -> Callable[[bytes], str]:
    """-> a function answering one input: "ok" or the error code; raises on a bug."""
    from inference import InferenceError, decode_image, preprocess_image

    if model is None:

        def decode(data: bytes) -> str:
            try:
                preprocess_image(decode_image(data), image_size=PREPROCESS_SIZE)
            except InferenceError as exc:
                return exc.code
            return "ok"

        return decode
    from inference import Classifier, FetchConfig, handle_event

    classifier = Classifier.load(model)
    config = FetchConfig(max_bytes=10 * 1024 * 1024)

    def handler(data: bytes) -> str:
        event = {"image": base64.b64encode(data).decode()}
        outcome = handle_event(event, classifier=classifier, fetch_config=config)
        return "ok" if outcome.error is None else outcome.error.code

    return handler


def run(inputs: dict[str, bytes], runner: Callable[[bytes], str]) -> list[dict[str, Any]]:
    runner(inputs[next(iter(inputs))])  # warm-up: imports, plugin registration
    rows = []
    for name, data in inputs.items():
        start, cpu_start = time.perf_counter(), time.process_time()
        try:
            answer = runner(data)
        except Exception as exc:  # a bug: reported, never hidden
            answer = f"RAISED {type(exc).__name__}: {exc}"
        seconds = time.perf_counter() - start
        # CPU seconds of this process: what the input costs, whatever else runs
        # on the machine (wall time is what a caller waits).
        cpu = time.process_time() - cpu_start
        rows.append(
            {"input": name, "bytes": len(data), "answer": answer, "seconds": seconds, "cpu": cpu}
        )
        print(f"{seconds:7.3f} s  {len(data):>10,} B  {answer:<20} {name}", file=sys.stderr)
    return sorted(rows, key=lambda r: -r["seconds"])


def format_table(rows: list[dict[str, Any]], *, bound: float) -> str:
    lines = ["| input | bytes | answer | wall s | CPU s |", "|---|---:|---|---:|---:|"]
    for r in rows:
        mark = " **over**" if r["seconds"] > bound else ""
        lines.append(
            f"| {r['input']} | {r['bytes']:,} | {r['answer']} | {r['seconds']:.3f}{mark} "
            f"| {r['cpu']:.3f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.bound <= 0:
        print(f"error: `--bound` must be > 0. Received: bound={args.bound}", file=sys.stderr)
        return 2
    if args.model is not None and not args.model.is_dir():
        print(f"error: --model: bundle folder not found: {args.model}", file=sys.stderr)
        return 2
    if args.json is not None and (args.json.is_dir() or not args.json.parent.is_dir()):
        print(f"error: --json must be a file in an existing folder: {args.json}", file=sys.stderr)
        return 2
    from inference import InferenceError

    inputs = load_inputs(heavy=not args.no_heavy)
    try:
        runner = make_runner(args.model)
    except InferenceError as exc:  # a folder that is not a bundle
        print(f"error: --model: {exc}", file=sys.stderr)
        return 2
    rows = run(inputs, runner)
    print(format_table(rows, bound=args.bound))
    slow = [r for r in rows if r["seconds"] > args.bound]
    raised = [r for r in rows if r["answer"].startswith("RAISED")]
    where = "handler" if args.model else "decode + preprocess"
    print(
        f"\n{len(rows)} inputs through the {where}; slowest {rows[0]['input']} "
        f"{rows[0]['seconds']:.3f} s; {len(slow)} over {args.bound:g} s; {len(raised)} raised"
    )
    if args.json is not None:
        args.json.write_text(json.dumps({"bound_s": args.bound, "rows": rows}, indent=1) + "\n")
    return 1 if slow or raised else 0


if __name__ == "__main__":
    sys.exit(main())
