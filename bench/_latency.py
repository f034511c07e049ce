"""Inference latency, batch 1, side by side: Keras vs every TFLite variant and runtime.

    result = measure_latency(train_dir=..., bundles_dir=..., variants=VARIANTS,
                             image=Path("x.jpg"), image_size=150, threads=(1, 2),
                             effort=FULL, log=print)

Configurations:
- Keras, `model(x, training=False)` (eager), `model.predict(x, verbose=0)` and
  `tf.function(model)` (the compiled graph, what a TensorFlow server runs), one
  worker process per thread count (bench/_keras_worker.py: TensorFlow's
  thread pools are sized once per process);
- TFLite, each variant under each installed runtime that loads it
  (ai-edge-litert, tflite-runtime, tf.lite), via `inference.Classifier` with
  `num_threads` set, in this process.

Every configuration runs `latency_runs` predictions per round, the order of
configurations rotating each round, for `latency_rounds` rounds
(`inference.time_interleaved`, the timing loop the conversion check and
`python -m inference bench` use too): a colleague's job that starts mid-run
slows all of them alike, so the ratios hold even when the absolute times drift.
Each one times the same preprocessed image to logits (numpy in, numpy out):
preprocessing is the same code for both and left out.
Throughput = 1000 / median ms (one image per call).

The float32 GEMM peak of each thread count (bench/_flops.py, one worker per
thread count) takes its turn in the same rounds, so the "fraction of peak" of
the compute floor compares figures measured under the same load; so does the
int8 GEMM peak (onnxruntime MatMulInteger), for the integer variants, when
onnxruntime is installed.
"""

from __future__ import annotations

import functools
import sys
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench._config import REPO, Effort
from bench._flops import GemmPeak, gemm_peak, gemm_worker, int8_gemm_worker
from bench._worker import Worker
from inference import (
    FORMAT_RUNTIMES,
    Classifier,
    InferenceError,
    Timing,
    preprocess_file,
    read_bundle,
    time_interleaved,
)
from train.output import KERAS_FILENAME

# bench._keras_worker's answer keys -> the names in the report.
KERAS_METHODS = {"call": "model(x)", "predict": "predict", "graph": "tf.function"}


@dataclass(frozen=True)
class LatencyRow:
    engine: str  # "keras" | "tflite"
    method: str  # "model(x)" | "predict" | "tf.function" | "invoke"
    variant: str  # "keras" or a TFLite variant
    runtime: str  # "name version"
    threads: int
    median_ms: float
    p95_ms: float
    runs: int

    @property
    def throughput(self) -> float:
        """Images per second, one image per call."""
        return 1000.0 / self.median_ms

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "throughput_per_s": self.throughput}


@dataclass(frozen=True)
class LatencyResult:
    image: str
    image_size: int
    rounds: int
    runs_per_round: int
    warmup: int
    rows: tuple[LatencyRow, ...]
    gemm: dict[int, GemmPeak]  # threads -> float32 GEMM peak, measured in the same rounds
    not_measured: tuple[str, ...] = field(default=())  # runtimes that did not load, and why
    keras_threads: dict[int, tuple[int, int]] = field(default_factory=dict)  # (intra, inter)
    int8_gemm: dict[int, GemmPeak] = field(default_factory=dict)  # threads -> int8 GEMM peak

    def to_json(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "image_size": self.image_size,
            "rounds": self.rounds,
            "runs_per_round": self.runs_per_round,
            "warmup": self.warmup,
            "rows": [r.to_json() for r in self.rows],
            "not_measured": list(self.not_measured),
            "keras_threads": {str(t): list(v) for t, v in self.keras_threads.items()},
        }


def _keras_worker(
    *, model: Path, image: Path, image_size: int, threads: int, warmup: int
) -> Worker:
    command = [
        sys.executable,
        "-m",
        "bench._keras_worker",
        f"--model={model}",
        f"--image={image}",
        f"--image-size={image_size}",
        f"--threads={threads}",
        f"--warmup={warmup}",
    ]
    return Worker(command, name=f"Keras {threads}-thread latency", cwd=REPO)


def measure_latency(
    *,
    train_dir: Path,
    bundles_dir: Path,
    variants: tuple[str, ...],
    image: Path,
    image_size: int,
    threads: tuple[int, ...],
    effort: Effort,
    log: Callable[[str], None],
) -> LatencyResult:
    """Every configuration, interleaved; the GEMM peak per thread count rides along."""
    x = preprocess_file(image, image_size=image_size)
    keras_workers = {
        t: _keras_worker(
            model=train_dir / KERAS_FILENAME,
            image=image,
            image_size=image_size,
            threads=t,
            warmup=effort.latency_warmup,
        )
        for t in threads
    }
    gemm_workers = {t: gemm_worker(threads=t) for t in threads}
    int8_workers = {t: int8_gemm_worker(threads=t) for t in threads}
    workers = [*keras_workers.values(), *gemm_workers.values(), *int8_workers.values()]
    samples: dict[_Key, list[float]] = {}
    gemm_seconds: dict[int, list[float]] = {t: [] for t in threads}
    int8_seconds: dict[int, list[float]] = {t: [] for t in threads}
    try:
        interpreters, not_measured = _load_tflite(bundles_dir, variants, threads)
        info = {t: worker.wait_ready() for t, worker in keras_workers.items()}
        for worker in gemm_workers.values():
            worker.wait_ready()
        int8_workers = _ready_or_dropped(int8_workers, not_measured)
        keras_runtime = f"tensorflow {info[threads[0]]['tensorflow']}"
        log(
            f"latency: {len(interpreters)} TFLite and {len(KERAS_METHODS) * len(threads)} Keras "
            "configurations "
            f"and the GEMM peak, {effort.latency_rounds} rounds x {effort.latency_runs} runs"
        )
        # The workers time themselves (their own processes): riders that take a
        # turn in every round of the one timing loop, under the same load.
        riders: list[Callable[[], None]] = []
        for t, worker in keras_workers.items():
            riders.append(_keras_unit(worker, t, keras_runtime, effort.latency_runs, samples))
        for t, worker in gemm_workers.items():
            riders.append(_gemm_unit(worker, effort.gemm_runs, gemm_seconds[t]))
        for t, worker in int8_workers.items():
            riders.append(_gemm_unit(worker, effort.gemm_runs, int8_seconds[t]))
        timings = time_interleaved(
            [functools.partial(clf.logits, x) for clf in interpreters.values()],
            runs=effort.latency_rounds * effort.latency_runs,
            block=effort.latency_runs,
            warmup=effort.latency_warmup,
            riders=riders,
        )
        for key, timing in zip(interpreters, timings, strict=True):
            samples[key] = list(timing.samples_ms)
    finally:
        for worker in workers:
            worker.close()
    rows = tuple(
        LatencyRow(
            engine=engine,
            method=method,
            variant=variant,
            runtime=runtime,
            threads=t,
            median_ms=Timing(tuple(times)).median_ms,
            p95_ms=Timing(tuple(times)).p95_ms,
            runs=len(times),
        )
        for (engine, method, variant, runtime, t), times in samples.items()
    )
    return LatencyResult(
        image=str(image),
        image_size=image_size,
        rounds=effort.latency_rounds,
        runs_per_round=effort.latency_runs,
        warmup=effort.latency_warmup,
        rows=rows,
        gemm={t: gemm_peak(seconds, threads=t) for t, seconds in gemm_seconds.items()},
        not_measured=tuple(not_measured),
        keras_threads={t: (i["intra_op"], i["inter_op"]) for t, i in info.items()},
        int8_gemm={
            t: gemm_peak(seconds, threads=t, dtype="int8")
            for t, seconds in int8_seconds.items()
            if seconds
        },
    )


def _ready_or_dropped(workers: dict[int, Worker], not_measured: list[str]) -> dict[int, Worker]:
    """The int8 GEMM workers that started; the reason once when they did not (no onnxruntime)."""
    ready: dict[int, Worker] = {}
    for t, worker in workers.items():
        try:
            worker.wait_ready()
        except RuntimeError as exc:
            reason = str(exc).strip().splitlines()[-1]
            note = f"int8 GEMM peak (onnxruntime MatMulInteger, the `onnx` extra): {reason}"
            if note not in not_measured:
                not_measured.append(note)
            continue
        ready[t] = worker
    return ready


_Key = tuple[str, str, str, str, int]  # engine, method, variant, runtime, threads


def _keras_unit(
    worker: Worker, threads: int, runtime: str, runs: int, samples: dict[_Key, list[float]]
) -> Callable[[], None]:
    def unit() -> None:
        timed = worker.request(f"run {runs}")
        for method, name in KERAS_METHODS.items():
            key = ("keras", name, "keras", runtime, threads)
            samples.setdefault(key, []).extend(timed[method])

    return unit


def _gemm_unit(worker: Worker, runs: int, seconds: list[float]) -> Callable[[], None]:
    def unit() -> None:
        seconds.extend(worker.request(f"run {runs}")["seconds"])

    return unit


def _load_tflite(
    bundles_dir: Path, variants: tuple[str, ...], threads: tuple[int, ...]
) -> tuple[dict[_Key, Classifier], list[str]]:
    """Every (variant, runtime, threads) that loads; and what did not load."""
    loaded: dict[_Key, Classifier] = {}
    not_measured: dict[str, None] = {}  # ordered, without repeats
    for variant in variants:
        # The runtimes of the bundle's format: TFLite ones for .tflite, onnxruntime for ONNX.
        model_format = read_bundle(bundles_dir / variant, verify=False).manifest.format
        for runtime in FORMAT_RUNTIMES[model_format]:
            for t in threads:
                try:
                    with warnings.catch_warnings():  # tf.lite.Interpreter's deprecation notice
                        warnings.simplefilter("ignore")
                        clf = Classifier.load(bundles_dir / variant, num_threads=t, runtime=runtime)
                except InferenceError as exc:
                    reason = str(exc).splitlines()[-1].strip()
                    if "cannot be imported" in reason:  # not installed: once, not per variant
                        not_measured[f"{runtime}: {reason}"] = None
                    else:
                        not_measured[f"{variant} on {runtime}: {reason}"] = None
                    break  # the same for every thread count
                name = f"{clf.runtime.name} {clf.runtime.version}"
                loaded[("tflite", "invoke", variant, name, t)] = clf
    return loaded, list(not_measured)


def tflite_invoker(content: bytes, image: Any, *, threads: int = 1) -> Callable[[], object]:
    """A TFLite model as a no-argument call on one preprocessed image, for
    `time_interleaved` (the quantization benches time recipes side by side).

    Args:
        content: the .tflite flatbuffer.
        image: (1, H, W, 3) float32, preprocessed.
        threads: interpreter threads.

    Raises:
        InferenceError: no runtime loads the model (`inference.make_interpreter`).
    """
    from inference import make_interpreter

    interpreter, _ = make_interpreter(content, num_threads=threads)
    index = interpreter.get_input_details()[0]["index"]

    def invoke() -> object:
        interpreter.set_tensor(index, image)
        interpreter.invoke()
        return None

    return invoke
