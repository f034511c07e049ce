"""One way to time a model: interleaved rounds of back-to-back calls.

    a, b = time_interleaved([lambda: f32.logits(x), lambda: i8.logits(x)], runs=50, warmup=5)
    a.median_ms, a.p95_ms, a.spread_ms  # float32's; b: int8's

Used by `python -m inference bench` (inference/_bench.py), the conversion
check's latency phase (convert/_latency.py) and `python -m bench`
(bench/_latency.py), so the three report the same statistic of the same loop.

Why interleaved: on a shared machine a neighbour's job that starts mid-run
slows whatever runs at that moment. Taking turns in blocks of `block` calls,
the order rotating every round, spreads that load over every callable alike,
so their ratios hold even when the absolute times drift. Within a block the
callable runs back to back, as a server does; each block starts with `settle`
untimed calls, because the previous callable left its own weights in the caches.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np


class Laps:
    """A stopwatch for the steps of one request: each `lap(step)` stores the wall
    time since the previous lap (or since creation) in `ms[step]`, in milliseconds.

    `into`: the dict to fill (shared between a handler and the classifier it calls,
    so one dict holds every step); None: a new one. `clock` returns seconds.
    """

    def __init__(
        self,
        into: dict[str, float] | None = None,
        *,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.ms: dict[str, float] = {} if into is None else into
        self._clock = clock
        self._last = clock()

    def lap(self, step: str) -> None:
        """Record the time since the last lap under `step`, and restart."""
        now = self._clock()
        self.ms[step] = (now - self._last) * 1000
        self._last = now


@dataclass(frozen=True)
class Timing:
    """One callable's timed calls: wall time in milliseconds, in the order taken."""

    samples_ms: tuple[float, ...]

    @property
    def median_ms(self) -> float:
        """The median call (ms): the figure every report quotes."""
        return float(np.median(self.samples_ms))

    @property
    def p95_ms(self) -> float:
        """95th percentile (ms, numpy's linear interpolation)."""
        return float(np.percentile(self.samples_ms, 95))

    @property
    def spread_ms(self) -> float:
        """Interquartile range, p75 - p25 (ms): how much the calls varied."""
        p25, p75 = np.percentile(self.samples_ms, [25, 75])
        return float(p75 - p25)


def _check_count(name: str, value: object, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"`{name}` must be an int >= {minimum}. Received: {name}={value!r}")


def time_interleaved(
    fns: Sequence[Callable[[], object]],
    *,
    runs: int,
    block: int = 10,
    warmup: int = 0,
    settle: int = 1,
    riders: Sequence[Callable[[], object]] = (),
    rotate: bool = True,
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[Timing, ...]:
    """Time each of `fns` `runs` times, all of them taking turns; one `Timing` per fn.

    First `warmup` untimed calls of each fn (e.g. XNNPack packs its weights on
    the first invoke). Then ceil(runs / block) rounds; in each, every fn in
    turn makes `settle` untimed calls and up to `block` timed ones (the last
    round tops each fn up to exactly `runs`), and every rider is called once.
    With `rotate`, round r starts at unit r (mod the number of fns + riders).

    Args:
        fns: callables to time (e.g. `lambda: clf.logits(x)`); their results
            are ignored. Timed with `clock` (seconds), reported in ms.
        runs: timed calls per fn (>= 1).
        block: timed calls per fn per round (>= 1).
        warmup: untimed calls per fn before the first round (>= 0).
        settle: untimed calls at the start of each block (>= 0).
        riders: callables that take one turn per round, untimed here (they
            time themselves, e.g. a worker process that runs its own loop), so
            they run under the same load as `fns`.
        rotate: rotate the order every round (False: always `fns` then `riders`).
        clock: seconds as a float; `time.perf_counter` (tests pass a fake).

    Returns:
        One `Timing` per fn, in the order of `fns`, each with `runs` samples.

    Raises:
        ValueError: `fns` and `riders` are both empty, or a count is not an int in range.
        Whatever a fn or rider raises, unchanged.
    """
    if not fns and not riders:
        raise ValueError(
            f"`fns` or `riders` must hold a callable. Received: fns={fns!r}, riders={riders!r}"
        )
    _check_count("runs", runs, 1)
    _check_count("block", block, 1)
    _check_count("warmup", warmup, 0)
    _check_count("settle", settle, 0)
    for fn in fns:
        for _ in range(warmup):
            fn()
    samples: list[list[float]] = [[] for _ in fns]
    units: list[tuple[int | None, Callable[[], object]]] = [
        *enumerate(fns),
        *((None, rider) for rider in riders),
    ]
    for r in range(math.ceil(runs / block)):
        shift = r % len(units) if rotate else 0
        for index, fn in units[shift:] + units[:shift]:
            if index is None:
                fn()
                continue
            timed = samples[index]
            for _ in range(settle):
                fn()
            for _ in range(min(block, runs - len(timed))):
                start = clock()
                fn()
                timed.append(1000.0 * (clock() - start))
    return tuple(Timing(tuple(s)) for s in samples)
