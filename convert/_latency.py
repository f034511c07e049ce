"""The check's latency phase: every (variant, runtime, threads) timed in one interleaved phase.

results = with_latencies(results, sample, threads=(1, 2), runtime=None,
                         reference_runtime="tensorflow", runs=50, warmup=5)
"""

from __future__ import annotations

import dataclasses
import functools
import logging

import numpy as np

from convert._portability import load_classifier, serving_runtime
from convert._results import Latency, VariantResult
from inference import time_interleaved

log = logging.getLogger("convert")
# Timed invokes per job per round of the interleaved latency phase.
LATENCY_BLOCK = 10


def with_latencies(
    results: list[VariantResult],
    sample: np.ndarray,
    *,
    threads: tuple[int, ...],
    runtime: str | None,
    reference_runtime: str | None,
    runs: int,
    warmup: int,
) -> list[VariantResult]:
    """`results` with `latency` (and float32's `reference_latency`) filled in, in ms.

    `inference.time_interleaved`, the one timing loop: rounds of `LATENCY_BLOCK`
    timed invokes per job, all jobs in turn (the order rotating), so that a
    neighbour's load on a shared machine slows every variant alike instead of
    whichever one happened to run then; within a block the model runs back to
    back, as it does when serving. Each block starts with one untimed invoke
    (the previous job left its own weights in the caches).

    Args:
        results: the fidelity results, one per bundle (`bundle`, `model_format`,
            `runtime`, `loads_with` are read).
        sample: one preprocessed image, float32 (1, size, size, 3) or (size, size, 3).
        threads: interpreter thread counts, one job per count.
        runtime: the serving runtime (None: each format's default).
        reference_runtime: float32 is also timed under this runtime when it
            loads the bundle (None: not).
        runs: timed invokes per job; `warmup`: untimed invokes per job first.
    """
    jobs: list[tuple[int, str | None, int]] = []  # (result index, runtime, threads)
    serving: list[str | None] = []  # per result: runtime, or None for another format
    for i, result in enumerate(results):
        serving.append(serving_runtime(runtime, result.model_format))
        jobs += [(i, serving[i], t) for t in threads]
        if result.variant == "float32" and reference_runtime not in (
            None,
            result.runtime.split()[0],
        ):
            loads = {x.runtime: x.status for x in result.loads_with}
            if loads.get(reference_runtime) == "ok":
                jobs += [(i, reference_runtime, t) for t in threads]
            else:
                log.warning(
                    "no reference latency: %s cannot load the float32 bundle", reference_runtime
                )
    classifiers = [
        load_classifier(results[i].bundle, threads=t, runtime=name) for i, name, t in jobs
    ]
    timings = time_interleaved(
        [functools.partial(clf.logits, sample) for clf in classifiers],
        runs=runs,
        block=LATENCY_BLOCK,
        warmup=warmup,
    )
    latencies: dict[tuple[int, bool], list[Latency]] = {}
    for (i, name, t), clf, timing in zip(jobs, classifiers, timings, strict=True):
        key = (i, name != serving[i])  # (result, is the reference runtime)
        latencies.setdefault(key, []).append(
            Latency(
                runtime=f"{clf.runtime.name} {clf.runtime.version}",
                threads=t,
                median_ms=timing.median_ms,
                p95_ms=timing.p95_ms,
            )
        )
    return [
        dataclasses.replace(
            result,
            latency=tuple(latencies.get((i, False), ())),
            reference_latency=tuple(latencies.get((i, True), ())),
        )
        for i, result in enumerate(results)
    ]
