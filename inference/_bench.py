"""`python -m inference bench`: the numbers a device owner asks for."""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from inference._classifier import Classifier, InferenceConfig
from inference._timing import time_interleaved


@dataclass(frozen=True)
class ThreadResult:
    """One thread count's timings, in milliseconds (wall clock, `time.perf_counter`)."""

    threads: int
    load_ms: float
    first_ms: float
    median_ms: float
    p95_ms: float


@dataclass(frozen=True)
class BenchResult:
    """`bench_model`'s answer: the bundle, the runtime, one row per thread count,
    and the process's peak resident memory in MB (ru_maxrss)."""

    model_dir: str
    variant: str
    runtime: str
    runtime_version: str
    runs: int
    rows: tuple[ThreadResult, ...]
    peak_rss_mb: float


def _sample_image(size: int) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), "RGB")


def bench_model(
    config: InferenceConfig, *, threads: list[int], runs: int, image: Path | None
) -> BenchResult:
    """Per thread count: load, first prediction, then `runs` timed predictions (ms).

    The timed predictions go through `inference.time_interleaved` (median and
    p95 as the conversion check and `python -m bench` compute them).

    With `image`, each run is the full path (read, decode, preprocess, invoke);
    without, a preprocessed random image is invoked (interpreter time only).
    """
    if runs < 1:
        raise ValueError(f"`runs` must be >= 1. Received: runs={runs}")
    rows = []
    classifier: Classifier | None = None
    for n in threads:
        t0 = time.perf_counter()
        classifier = Classifier.load(
            config.model_dir, num_threads=n, runtime=config.runtime, max_pixels=config.max_pixels
        )
        load_ms = (time.perf_counter() - t0) * 1000
        run_once = _runner(classifier, image)
        first_ms = _time_ms(run_once)
        # One thread count at a time, so that peak RSS is one interpreter's; the
        # timing loop and statistics are those of the check and `python -m bench`.
        (timing,) = time_interleaved([run_once], runs=runs, block=runs, settle=0)
        rows.append(ThreadResult(n, load_ms, first_ms, timing.median_ms, timing.p95_ms))
    if classifier is None:
        raise ValueError("`threads` must name at least one thread count. Received: threads=[]")
    # ru_maxrss is in KiB on Linux.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return BenchResult(
        str(config.model_dir),
        classifier.manifest.variant,
        classifier.runtime.name,
        classifier.runtime.version,
        runs,
        tuple(rows),
        peak,
    )


def _runner(classifier: Classifier, image: Path | None) -> Callable[[], object]:
    if image is not None:
        return lambda: classifier.predict_file(image)
    x = classifier.preprocess(_sample_image(classifier.manifest.image_size))
    return lambda: classifier.predict_array(x)


def _time_ms(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000


def format_bench(result: BenchResult) -> str:
    """A plain-text table of `result`: one line per thread count, times in ms."""
    lines = [
        f"model {result.model_dir} ({result.variant}), "
        f"runtime {result.runtime} {result.runtime_version}, {result.runs} runs",
        f"{'threads':>7} {'load ms':>8} {'first ms':>9} {'median ms':>10} {'p95 ms':>8}",
    ]
    for r in result.rows:
        lines.append(
            f"{r.threads:>7} {r.load_ms:8.1f} {r.first_ms:9.1f} {r.median_ms:10.2f} {r.p95_ms:8.2f}"
        )
    lines.append(f"peak RSS {result.peak_rss_mb:.1f} MB")
    return "\n".join(lines)
