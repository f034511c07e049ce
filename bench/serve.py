"""Figures for the Lambda function: `python -m bench.serve --model bundles/int8`.

    warm       the handler in-process on a local image, sent as base64 and as a
               URL on a local HTTP server: median time in fetch (URL download
               or base64 decoding), decode, preprocess and inference, and the
               handler's overhead: its whole time less inference (and less
               fetch), and "glue", the handler's own code (parsing, the answer,
               the log line) outside those four steps
    cold       `python -m awslambdaric lambda_function.lambda_handler` started
               against the local Runtime API (tests/support/lambda_runtime_api.py) with
               an event waiting: process start to first answer, then one warm
               round trip
    install    (--install-size) the Dockerfile's pip packages in a fresh venv:
               site-packages size, biggest packages first

These are this machine's numbers (2 cores, no Docker): Lambda's CPU share
grows with the memory setting, so measure there too before sizing it.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SAMPLE = (
    REPO.parent
    / "shared/data/clothing-dataset-small/test/pants/4aabd82c-82e1-4181-a84d-d0c6e550d26d.jpg"
)
STAGES = ("fetch", "decode", "preprocess", "inference")


class _Context:
    def __init__(self, remaining_ms: int = 30_000) -> None:
        self.aws_request_id = "bench"
        self._end = time.monotonic() + remaining_ms / 1000

    def get_remaining_time_in_millis(self) -> int:
        return int((self._end - time.monotonic()) * 1000)


def _serve_bytes(data: bytes) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _image_bytes(path: str | None) -> tuple[bytes, str]:
    if path:
        return Path(path).read_bytes(), path
    if SAMPLE.is_file():
        return SAMPLE.read_bytes(), f"{SAMPLE.name} (clothing test split)"
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (534, 400, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buf, format="JPEG", quality=90)
    return buf.getvalue(), "generated 400x534 JPEG"


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def measure_warm(model: Path, data: bytes, repeat: int) -> dict[str, dict[str, float]]:
    os.environ["MODEL_DIR"] = str(model)
    os.environ["FETCH_ALLOW_LOOPBACK"] = "1"
    import lambda_function

    lambda_function._state.cache_clear()
    server = _serve_bytes(data)
    port = server.server_address[1]
    events = {
        "base64": {"image": base64.b64encode(data).decode()},
        "url": {"url": f"http://127.0.0.1:{port}/image.jpg"},
    }
    results: dict[str, dict[str, float]] = {}
    try:
        for name, event in events.items():
            rows: list[dict[str, float]] = []
            for i in range(repeat + 3):  # 3 warm-up calls, not counted
                sink = io.StringIO()
                with contextlib.redirect_stdout(sink):  # the JSON log lines
                    start = time.perf_counter()
                    answer = lambda_function.lambda_handler(event, _Context())
                    wall = (time.perf_counter() - start) * 1000
                if "error" in answer:
                    raise SystemExit(f"the handler refused the image: {answer}")
                timings = json.loads(sink.getvalue().splitlines()[-1])["timings_ms"]
                if i >= 3:
                    inside = sum(timings[s] for s in STAGES)
                    rows.append(
                        {
                            **{s: timings[s] for s in STAGES},
                            "handler": wall,
                            "overhead": wall - timings["inference"],
                            "overhead_no_fetch": wall - timings["inference"] - timings["fetch"],
                            "glue": wall - inside,
                        }
                    )
            results[name] = {key: _median([r[key] for r in rows]) for key in rows[0]}
    finally:
        server.shutdown()
        server.server_close()
    return results


def measure_cold(model: Path, data: bytes, runs: int) -> dict[str, float]:
    from tests.support.lambda_runtime_api import RuntimeAPI

    env = {**os.environ, "MODEL_DIR": str(model), "PYTHONUNBUFFERED": "1"}
    event = {"image": base64.b64encode(data).decode()}
    cold, warm = [], []
    for _ in range(runs):
        with RuntimeAPI() as api:
            request_id = api.submit(event)
            start = time.perf_counter()
            proc = subprocess.Popen(
                [sys.executable, "-m", "awslambdaric", "lambda_function.lambda_handler"],
                cwd=REPO,
                env={**env, "AWS_LAMBDA_RUNTIME_API": api.address},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                first = api.wait(request_id, timeout=300)
                cold.append(time.perf_counter() - start)
                if first.kind != "response" or "error" in first.payload:
                    raise SystemExit(f"the function failed: {first.payload}")
                start = time.perf_counter()
                api.invoke(event, timeout=60)
                warm.append(time.perf_counter() - start)
            finally:
                proc.kill()
                proc.wait()
    return {
        "cold_s": _median(cold),
        "cold_max_s": max(cold),
        "warm_round_trip_ms": _median(warm) * 1000,
    }


def measure_install() -> dict[str, Any]:
    from tests.support.dockerfile import make_venv, parse_dockerfile, site_packages_sizes

    spec = parse_dockerfile(REPO / "Dockerfile")
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        python = make_venv(spec, Path(tmp) / "venv")
        seconds = time.perf_counter() - start
        sizes = site_packages_sizes(python)
    biggest = sorted(sizes.items(), key=lambda kv: -kv[1])[:6]
    return {
        "total_mib": sum(sizes.values()) / 2**20,
        "install_s": seconds,
        "biggest_mib": {name: size / 2**20 for name, size in biggest},
        "packages": list(spec.pip_packages),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.serve", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--model", default=os.environ.get("MODEL_DIR"), help="bundle folder")
    parser.add_argument("--image", help="a local image (default: a clothing test photo)")
    parser.add_argument("--repeat", type=int, default=30, help="warm invocations per source")
    parser.add_argument("--cold-runs", type=int, default=3, help="process starts to time")
    parser.add_argument("--install-size", action="store_true", help="also build the serve venv")
    parser.add_argument("--json", help="also write the figures to this file")
    from inference import BundleError, read_bundle

    args = parser.parse_args(argv)
    for name in ("repeat", "cold_runs"):
        if getattr(args, name) < 1:
            flag = "--" + name.replace("_", "-")
            parser.error(f"`{flag}` must be >= 1. Received: {name}={getattr(args, name)}")
    if not args.model or not Path(args.model).is_dir():
        parser.error("--model must be a bundle folder (model.tflite + manifest.json)")
    model = Path(args.model).resolve()
    try:
        read_bundle(model, verify=False)
    except BundleError as exc:
        parser.error(f"--model: {exc}")
    data, image_name = _image_bytes(args.image)
    manifest = json.loads((model / "manifest.json").read_text())

    figures: dict[str, Any] = {
        "model": {
            "dir": str(model),
            "variant": manifest["variant"],
            "image_size": manifest["image_size"],
        },
        "image": {"name": image_name, "bytes": len(data)},
        "warm_ms": measure_warm(model, data, args.repeat),
        "cold": measure_cold(model, data, args.cold_runs),
    }
    if args.install_size:
        figures["install"] = measure_install()

    size = manifest["image_size"]
    print(f"model {manifest['variant']} {size}px ({model})")
    print(f"image {image_name}, {len(data)} bytes")
    print(f"\nwarm invocation, median of {args.repeat} (ms):\n")
    columns = (
        "fetch | decode | preprocess | inference | handler | handler - inference"
        " | handler - inference - fetch | glue"
    )
    print(f"| source | {columns} |")
    print("|---" + "|---:" * 8 + "|")
    for source, row in figures["warm_ms"].items():
        keys = (*STAGES, "handler", "overhead", "overhead_no_fetch", "glue")
        cells = " | ".join(f"{row[k]:.2f}" for k in keys)
        print(f"| {source} | {cells} |")
    cold = figures["cold"]
    print(
        f"\ncold start, awslambdaric process start to first answer: {cold['cold_s']:.2f} s "
        f"(median of {args.cold_runs}, max {cold['cold_max_s']:.2f} s); "
        f"next invocation round trip {cold['warm_round_trip_ms']:.1f} ms"
    )
    if "install" in figures:
        install = figures["install"]
        biggest = ", ".join(f"{k} {v:.1f}" for k, v in install["biggest_mib"].items())
        print(
            f"\nserve install (Dockerfile packages, fresh venv): {install['total_mib']:.1f} MiB "
            f"site-packages; biggest (MiB): {biggest}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
