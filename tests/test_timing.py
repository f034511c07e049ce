"""inference.time_interleaved, the one timing loop (issue 14 item 4), with fake callables.

A fake clock advances only when a fake callable runs, by the cost the test
gives it, so every figure here is exact arithmetic, never a real speed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from inference import Laps, Timing, time_interleaved


class FakeClock:
    """Seconds that pass only inside the fakes' calls."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def fakes(
    costs_ms: dict[str, list[float] | float], clock: FakeClock, log: list[str]
) -> dict[str, Callable[[], None]]:
    """One callable per name; call k costs costs[name][k] ms (a float: every call)."""
    calls = dict.fromkeys(costs_ms, 0)

    def make(name: str) -> Callable[[], None]:
        def fn() -> None:
            cost = costs_ms[name]
            ms = cost[calls[name]] if isinstance(cost, list) else cost
            calls[name] += 1
            clock.now += ms / 1000.0
            log.append(name)

        return fn

    return {name: make(name) for name in costs_ms}


@pytest.mark.parametrize(
    ("runs", "block", "warmup", "settle", "rotate", "order"),
    [
        # warm-up a, a, b, b; then rounds of (settle + block) per fn, rotating
        (4, 2, 2, 1, True, "aabb" + "aaabbb" + "bbbaaa"),
        (4, 2, 0, 0, False, "aabb" + "aabb"),
        (3, 2, 0, 1, True, "aaabbb" + "bbaa"),  # the last round tops up to 3
        (2, 5, 1, 0, True, "ab" + "aabb"),  # one round when block > runs
    ],
)
def test_interleaving_order(
    runs: int, block: int, warmup: int, settle: int, rotate: bool, order: str
) -> None:
    clock, log = FakeClock(), []
    fns = fakes({"a": 1.0, "b": 2.0}, clock, log)
    timings = time_interleaved(
        [fns["a"], fns["b"]],
        runs=runs,
        block=block,
        warmup=warmup,
        settle=settle,
        rotate=rotate,
        clock=clock,
    )
    assert "".join(log) == order
    assert [len(t.samples_ms) for t in timings] == [runs, runs]


def test_riders_take_one_untimed_turn_per_round() -> None:
    clock, log = FakeClock(), []
    f = fakes({"a": 1.0, "r": 100.0}, clock, log)
    (timing,) = time_interleaved([f["a"]], runs=4, block=2, settle=0, riders=[f["r"]], clock=clock)
    assert "".join(log) == "aar" + "raa"  # round 2 starts at the rider
    assert timing.samples_ms == pytest.approx(
        (1.0, 1.0, 1.0, 1.0)
    )  # the rider's 100 ms is in no sample


@pytest.mark.parametrize(
    ("costs", "warmup", "settle", "samples"),
    [
        # the first call (50 ms, e.g. XNNPack packing weights) is warm-up: left out
        ([50.0, 1.0, 2.0, 3.0], 1, 0, (1.0, 2.0, 3.0)),
        ([50.0, 1.0, 2.0, 3.0], 0, 0, (50.0, 1.0, 2.0)),
        # settle: the first call of each block (after another fn ran) is left out
        ([50.0, 1.0, 2.0, 3.0], 0, 1, (1.0, 2.0, 3.0)),
    ],
)
def test_warmup_and_settle_calls_are_not_timed(
    costs: list[float], warmup: int, settle: int, samples: tuple[float, ...]
) -> None:
    clock, log = FakeClock(), []
    f = fakes({"a": costs}, clock, log)
    (timing,) = time_interleaved(
        [f["a"]], runs=3, block=3, warmup=warmup, settle=settle, clock=clock
    )
    assert timing.samples_ms == pytest.approx(samples)


@pytest.mark.parametrize(
    ("samples", "median", "p95", "spread"),
    [
        ((1.0, 2.0, 3.0), 2.0, 2.9, 1.0),
        ((4.0, 1.0, 3.0, 2.0), 2.5, 3.85, 1.5),  # order does not matter; even count
        ((5.0,), 5.0, 5.0, 0.0),
        ((1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 101.0), 1.0, 56.0, 0.0),
    ],
)
def test_timing_statistics(
    samples: tuple[float, ...], median: float, p95: float, spread: float
) -> None:
    timing = Timing(samples)
    assert timing.median_ms == pytest.approx(median)
    assert timing.p95_ms == pytest.approx(p95)
    assert timing.spread_ms == pytest.approx(spread)


def test_each_fn_gets_its_own_samples() -> None:
    clock, log = FakeClock(), []
    f = fakes({"a": 1.0, "b": [3.0, 5.0, 7.0, 9.0, 11.0]}, clock, log)
    a, b = time_interleaved([f["a"], f["b"]], runs=2, block=1, settle=1, clock=clock)
    assert a.samples_ms == pytest.approx((1.0, 1.0))
    # b: settle 3, time 5 | settle 7, time 9 (round 2 starts with b)
    assert b.samples_ms == pytest.approx((5.0, 9.0)) and b.median_ms == pytest.approx(7.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fns": []}, "`fns` or `riders` must hold a callable"),
        ({"runs": 0}, "`runs` must be an int >= 1. Received: runs=0"),
        ({"block": 0}, "`block` must be an int >= 1. Received: block=0"),
        ({"warmup": -1}, "`warmup` must be an int >= 0. Received: warmup=-1"),
        ({"settle": 1.5}, "`settle` must be an int >= 0. Received: settle=1.5"),
        ({"runs": True}, "`runs` must be an int >= 1. Received: runs=True"),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {"fns": [lambda: None], "runs": 3, **kwargs}
    with pytest.raises(ValueError, match=message.replace("`", "`").replace("(", r"\(")):
        time_interleaved(args.pop("fns"), **args)


def test_a_failing_fn_raises_unchanged() -> None:
    def boom() -> None:
        raise RuntimeError("interpreter failed")

    with pytest.raises(RuntimeError, match="interpreter failed"):
        time_interleaved([boom], runs=1)


@pytest.mark.parametrize(
    ("ticks", "steps", "expected"),
    [
        # clock readings (s): creation, then one per lap; laps are the differences, in ms
        ([10.0, 10.5, 10.75], ["decode", "inference"], {"decode": 500.0, "inference": 250.0}),
        ([0.0, 0.001], ["parse"], {"parse": 1.0}),
        ([1.0, 2.0, 2.0], ["fetch", "fetch"], {"fetch": 0.0}),  # a repeated step: the last lap
    ],
)
def test_laps_store_the_time_since_the_previous_lap(
    ticks: list[float], steps: list[str], expected: dict[str, float]
) -> None:
    clock = iter(ticks)
    shared = {"earlier": 3.0}  # a handler's dict, filled on by the classifier's steps
    laps = Laps(shared, clock=lambda: next(clock))
    for step in steps:
        laps.lap(step)
    assert laps.ms is shared
    assert shared == {"earlier": 3.0, **expected}


def test_laps_without_a_dict_make_their_own() -> None:
    clock = iter([0.0, 0.002])
    laps = Laps(clock=lambda: next(clock))
    laps.lap("decode")
    assert laps.ms == {"decode": 2.0}
