"""Capacity on paper: Lambda cost, concurrency and back-fill time from measured figures.

    python -m bench.capacity                                   # the newest bench/results/*.json
    python -m bench.capacity --from bench/results/2026-11-28.json --output runs/capacity
    python -m bench.capacity --ms-per-image 15.5 --cold-start-s 0.33
    python -m bench.capacity --io-ms 30 --batch-size 50 --concurrency-limit 500

Inputs, from a `python -m bench` report (or the flags):
    inference ms per image at 1 and 2 threads (the latency rows of the bundle the
    report's cold start used), the handler's other per-image work (its warm base64
    figure less inference: decode, preprocess, parsing, the log line), and the
    cold start of the function's process (awslambdaric, first answer).

Model (each assumption is printed under the table):
    - Lambda gives CPU in proportion to memory, one vCPU at 1,769 MB ("Memory
      and computing power", Lambda developer guide). Below one vCPU the CPU-bound
      work stretches by 1769 / MB; above it only inference gains, from the measured
      1 -> 2 thread speed-up, interpolated linearly between 1 and 2 vCPUs.
    - This machine's core (Xeon, AVX-512) stands in for Lambda's x86_64; arm64
      (Graviton) is not measured: `--arm64-slowdown` scales its time (default 1.0).
    - `--io-ms` adds waiting time per image (an S3 GET, a URL fetch): billed, not
      CPU-bound. Default 0: the measured figures read the image from memory.
    - Billing: duration rounded up to 1 ms per invocation, GB = MB / 1024, plus
      the per-request price; cold starts are billed too (INIT phase) and counted
      once per execution environment in the back-fill line.
    - Concurrency for a request rate: Little's law, L = lambda x W (Little 1961):
      rate x warm duration, rounded up.
    - Back-fill: `--photos` at `--concurrency-limit` environments, each busy with
      batches of `--batch-size`: photos x ms / limit, plus one cold start, plus
      Lambda's scaling ramp (1,000 more concurrent executions every 10 s per
      function, "Lambda scaling behavior", Lambda developer guide).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"

# Prices, US East (N. Virginia), on-demand, first monthly tier (6 billion GB-s for
# x86_64, 7.5 billion for arm64). Sources: https://aws.amazon.com/lambda/pricing/,
# the AWS Compute Blog "Introducing tiered pricing for AWS Lambda", the whitepaper
# "How AWS Pricing Works" (Lambda), https://aws.amazon.com/step-functions/pricing/.
# Taken on 2026-11-29 from stored copies of those pages (the Lambda pricing page's
# rate table was not in its copy: the GB-s rates are the blog's, the request price the
# whitepaper's); rerun with --price-* flags when they change.
PRICE_DATE = "2026-11-29"
PRICE_GB_S = {"x86_64": 0.0000166667, "arm64": 0.0000133334}
PRICE_PER_REQUEST = 0.20 / 1_000_000
PRICE_PER_TRANSITION = 0.025 / 1_000  # Step Functions Standard workflows

MB_PER_VCPU = 1769  # one vCPU at 1,769 MB (Lambda developer guide, "Memory and computing power")
SCALING_STEP = 1000  # concurrent executions added per SCALING_PERIOD_S, per function
SCALING_PERIOD_S = 10.0
# A Distributed Map child workflow per batch: its start and its one Task state
# (assumed; Step Functions bills each state transition, retries included).
TRANSITIONS_PER_BATCH = 2


@dataclass(frozen=True)
class Measured:
    """Per-image figures from one machine (ms, s), and where they came from."""

    inference_ms_1t: float
    inference_ms_2t: float | None  # None: no 2-thread figure, no gain above one vCPU
    other_ms: float  # decode, preprocess, handler code: single-threaded
    cold_start_s: float
    source: str

    def __post_init__(self) -> None:
        for name in ("inference_ms_1t", "other_ms", "cold_start_s"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not 0 <= value < 1e6 or math.isnan(value):
                raise ValueError(f"`{name}` must be a number >= 0. Received: {name}={value!r}")
        if self.inference_ms_1t <= 0:
            raise ValueError(
                f"`inference_ms_1t` must be > 0. Received: inference_ms_1t={self.inference_ms_1t}"
            )
        two = self.inference_ms_2t
        if two is not None and not 0 < two <= self.inference_ms_1t * 4:
            raise ValueError(
                f"`inference_ms_2t` must be > 0 (and not 4x the 1-thread time). Received: {two}"
            )


@dataclass(frozen=True)
class Assumptions:
    """What the table is computed for; each field is a flag of the command."""

    memories_mb: tuple[int, ...] = (1024, 2048, 3008)
    architectures: tuple[str, ...] = ("x86_64", "arm64")
    rates_per_s: tuple[float, ...] = (100.0, 1000.0)
    photos: int = 1_000_000
    batch_size: int = 50  # template.yaml's BatchSize default
    concurrency_limit: int = 1000  # an account's default concurrency quota per Region
    io_ms: float = 0.0
    arm64_slowdown: float = 1.0
    price_gb_s_x86: float = PRICE_GB_S["x86_64"]
    price_gb_s_arm: float = PRICE_GB_S["arm64"]
    price_per_request: float = PRICE_PER_REQUEST

    def price_gb_s(self, architecture: str) -> float:
        return self.price_gb_s_arm if architecture == "arm64" else self.price_gb_s_x86


# ---------------------------------------------------------------------------
# The arithmetic (unit-tested in tests/test_capacity.py against hand-computed values).


def vcpus(memory_mb: float) -> float:
    """Lambda's CPU share at a memory setting: memory / 1769 MB vCPUs."""
    return memory_mb / MB_PER_VCPU


def image_ms(
    measured: Measured, memory_mb: float, *, io_ms: float = 0.0, slowdown: float = 1.0
) -> float:
    """Warm handler time for one image at `memory_mb` (ms), per the module's model.

    share = memory / 1769. At share <= 1 all CPU work takes (inference_1t + other) / share.
    Above, inference takes inference_1t / s, s = 1 + (speedup_2t - 1) * (min(share, 2) - 1),
    speedup_2t = inference_1t / inference_2t; `other` stays single-threaded.
    """
    share = vcpus(memory_mb)
    if share <= 1:
        cpu = (measured.inference_ms_1t + measured.other_ms) / share
    else:
        speedup = 1.0
        if measured.inference_ms_2t is not None:
            speedup = measured.inference_ms_1t / measured.inference_ms_2t
        gain = 1 + (speedup - 1) * (min(share, 2.0) - 1)
        cpu = measured.inference_ms_1t / gain + measured.other_ms
    return cpu * slowdown + io_ms


def cost_per_million(
    ms_per_image: float,
    memory_mb: float,
    *,
    batch_size: int,
    price_gb_s: float,
    price_per_request: float = PRICE_PER_REQUEST,
) -> float:
    """USD for 1,000,000 images sent `batch_size` per invocation.

    invocations = 1e6 / batch_size; each billed ceil(batch_size x ms) ms
    x (memory / 1024) GB x price_gb_s, plus price_per_request.
    """
    invocations = 1_000_000 / batch_size
    billed_s = math.ceil(ms_per_image * batch_size) / 1000
    return invocations * (billed_s * memory_mb / 1024 * price_gb_s + price_per_request)


def concurrency_for(rate_per_s: float, ms_per_request: float) -> int:
    """Little's law: executions in flight = arrival rate x time in the system, rounded up."""
    return math.ceil(rate_per_s * ms_per_request / 1000 - 1e-9)


def scaling_ramp_s(concurrency_limit: int) -> float:
    """Time until `concurrency_limit` environments may run: the first 1,000 at once,
    then 1,000 more every 10 s (an upper bound: environments start during the ramp)."""
    steps = math.ceil(concurrency_limit / SCALING_STEP) - 1
    return max(steps, 0) * SCALING_PERIOD_S


def backfill_s(
    photos: int, ms_per_image: float, *, concurrency_limit: int, cold_start_s: float
) -> float:
    """Wall time to classify `photos` with `concurrency_limit` busy environments (s)."""
    work_s = photos * ms_per_image / 1000 / concurrency_limit
    return work_s + cold_start_s + scaling_ramp_s(concurrency_limit)


def step_functions_cost(photos: int, batch_size: int) -> float:
    """USD of the Distributed Map's state transitions: TRANSITIONS_PER_BATCH per batch."""
    return math.ceil(photos / batch_size) * TRANSITIONS_PER_BATCH * PRICE_PER_TRANSITION


# ---------------------------------------------------------------------------
# The table


def rows(measured: Measured, assumptions: Assumptions) -> list[dict[str, Any]]:
    """One row per architecture and memory setting."""
    out = []
    for arch in assumptions.architectures:
        slowdown = assumptions.arm64_slowdown if arch == "arm64" else 1.0
        price = assumptions.price_gb_s(arch)
        for memory in assumptions.memories_mb:
            ms = image_ms(measured, memory, io_ms=assumptions.io_ms, slowdown=slowdown)
            batched_ms = assumptions.batch_size * ms
            envs = assumptions.concurrency_limit
            init_cost = envs * measured.cold_start_s * memory / 1024 * price
            out.append(
                {
                    "architecture": arch,
                    "memory_mb": memory,
                    "vcpus": vcpus(memory),
                    "ms_per_image": ms,
                    "cost_per_million_single": cost_per_million(
                        ms,
                        memory,
                        batch_size=1,
                        price_gb_s=price,
                        price_per_request=assumptions.price_per_request,
                    ),
                    "cost_per_million_batched": cost_per_million(
                        ms,
                        memory,
                        batch_size=assumptions.batch_size,
                        price_gb_s=price,
                        price_per_request=assumptions.price_per_request,
                    ),
                    "concurrency": {
                        str(rate): concurrency_for(rate, ms) for rate in assumptions.rates_per_s
                    },
                    "batch_ms": batched_ms,
                    "backfill_s": backfill_s(
                        assumptions.photos,
                        ms,
                        concurrency_limit=envs,
                        cold_start_s=measured.cold_start_s,
                    ),
                    "backfill_init_cost": init_cost,
                }
            )
    return out


def markdown(measured: Measured, assumptions: Assumptions, table: list[dict[str, Any]]) -> str:
    a = assumptions
    rates = " | ".join(f"concurrency at {r:g}/s" for r in a.rates_per_s)
    lines = [
        f"| arch | memory (MB) | vCPU | ms / image | $ per 1M, 1 per call | "
        f"$ per 1M, {a.batch_size} per call | {rates} | "
        f"{a.photos:,} photos at {a.concurrency_limit:,} concurrent |",
        "|---|---|---|---|---|---|" + "---|" * len(a.rates_per_s) + "---|",
    ]
    for r in table:
        conc = " | ".join(f"{n:,}" for n in r["concurrency"].values())
        lines.append(
            f"| {r['architecture']} | {r['memory_mb']} | {r['vcpus']:.2f} | "
            f"{r['ms_per_image']:.1f} | {r['cost_per_million_single']:.2f} | "
            f"{r['cost_per_million_batched']:.2f} | {conc} | {_duration(r['backfill_s'])} |"
        )
    two = (
        f"{measured.inference_ms_2t:.1f} ms at 2 threads"
        if measured.inference_ms_2t is not None
        else "no 2-thread figure (no gain above 1 vCPU)"
    )
    sfn = step_functions_cost(a.photos, a.batch_size)
    lines += [
        "",
        f"Measured ({measured.source}): inference {measured.inference_ms_1t:.1f} ms at 1 thread, "
        f"{two}; other per-image work {measured.other_ms:.1f} ms; cold start "
        f"{measured.cold_start_s:.2f} s. Per-image waiting (S3 GET, URL): {a.io_ms:g} ms.",
        f"Prices (US East, first tier, taken {PRICE_DATE}): ${a.price_gb_s_x86:.10f} per GB-s "
        f"x86_64, ${a.price_gb_s_arm:.10f} arm64, "
        f"${a.price_per_request * 1e6:.2f} per 1M requests. "
        f"arm64 time = x86_64 time x {a.arm64_slowdown:g} (not measured).",
        f"A {a.photos:,}-photo back-fill through template.yaml's Distributed Map adds about "
        f"${sfn:.2f} of Step Functions state transitions ({TRANSITIONS_PER_BATCH} per batch of "
        f"{a.batch_size}), and its {a.concurrency_limit:,} cold starts cost "
        f"${min(r['backfill_init_cost'] for r in table):.2f}-"
        f"${max(r['backfill_init_cost'] for r in table):.2f}.",
    ]
    return "\n".join(lines) + "\n"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


# ---------------------------------------------------------------------------
# Reading a bench report


def newest_report(results: Path = RESULTS) -> Path:
    """The newest full `python -m bench` report (quick runs only when there is no other)."""
    reports = sorted(results.glob("*.json"))
    full = [p for p in reports if not p.stem.endswith("-quick")]
    if not (full or reports):
        raise FileNotFoundError(
            f"No bench report in {results}: run `python -m bench`, or give "
            "--ms-per-image and --cold-start-s."
        )
    return (full or reports)[-1]


def measured_from_report(report: dict[str, Any], *, source: str) -> Measured:
    """Per-image and cold-start figures from a `python -m bench` report.

    Raises:
        ValueError: the report lacks a figure (the message names it).
    """
    try:
        variant = report["cold_start"]["bundle_variant"]
        one = _latency_ms(report, variant=variant, threads=1)
        two = _latency_ms(report, variant=variant, threads=2)
        warm = report["lambda"]["figures"]["warm_ms"]["base64"]
        other = float(warm["handler"]) - float(warm["inference"])
        cold = float(report["lambda"]["figures"]["cold"]["cold_s"])
    except (KeyError, TypeError) as exc:
        raise ValueError(
            f"{source} lacks a figure this command needs ({exc}); give --ms-per-image and "
            "--cold-start-s instead."
        ) from None
    if one is None:
        raise ValueError(f"{source} has no 1-thread latency row for the {variant} bundle.")
    return Measured(one, two, max(other, 0.0), cold, source=f"{source}, {variant} bundle")


def _latency_ms(report: dict[str, Any], *, variant: str, threads: int) -> float | None:
    """The TFLite latency row's median (ai-edge-litert first, as the runtime picks)."""
    rows_ = [
        r
        for r in report.get("latency", {}).get("rows", [])
        if r.get("engine") == "tflite" and r["variant"] == variant and r["threads"] == threads
    ]
    rows_.sort(key=lambda r: not str(r["runtime"]).startswith("ai-edge-litert"))
    return float(rows_[0]["median_ms"]) if rows_ else None


# ---------------------------------------------------------------------------
# CLI


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.capacity",
        description="Lambda cost, concurrency and back-fill time from measured figures.",
    )
    p.add_argument("--from", dest="report", type=Path, help="a `python -m bench` JSON report")
    p.add_argument("--ms-per-image", type=float, help="warm ms per image at 1 vCPU (all work)")
    p.add_argument("--two-thread-ms", type=float, help="with --ms-per-image: ms at 2 threads")
    p.add_argument("--cold-start-s", type=float, help="process start to first answer (s)")
    p.add_argument("--memory-mb", type=int, nargs="+", default=[1024, 2048, 3008])
    p.add_argument("--rates", type=float, nargs="+", default=[100.0, 1000.0], help="req/s")
    p.add_argument("--photos", type=int, default=1_000_000)
    p.add_argument("--batch-size", type=int, default=50, help="photos per invocation (Map)")
    p.add_argument("--concurrency-limit", type=int, default=1000)
    p.add_argument("--io-ms", type=float, default=0.0, help="waiting per image (S3 GET, URL)")
    p.add_argument("--arm64-slowdown", type=float, default=1.0)
    p.add_argument("--price-gb-s-x86", type=float, default=PRICE_GB_S["x86_64"])
    p.add_argument("--price-gb-s-arm", type=float, default=PRICE_GB_S["arm64"])
    p.add_argument("--price-per-million-requests", type=float, default=PRICE_PER_REQUEST * 1e6)
    p.add_argument("--output", type=Path, help="folder for capacity.md, .json and .png")
    return p


def _check_args(args: argparse.Namespace) -> None:
    positive = {
        "--photos": args.photos,
        "--batch-size": args.batch_size,
        "--concurrency-limit": args.concurrency_limit,
        "--arm64-slowdown": args.arm64_slowdown,
    }
    for flag, value in positive.items():
        if not value > 0:
            raise ValueError(f"`{flag}` must be > 0. Received: {value}")
    for memory in args.memory_mb:
        if not 128 <= memory <= 10240:  # Lambda's memory range
            raise ValueError(f"`--memory-mb` must be from 128 to 10240. Received: {memory}")
    if any(not r > 0 for r in args.rates) or args.io_ms < 0:
        raise ValueError(f"`--rates` must be > 0 and `--io-ms` >= 0. Received: {args.rates}")
    if args.two_thread_ms is not None and args.ms_per_image is None:
        raise ValueError("`--two-thread-ms` needs `--ms-per-image`.")


def _measured(args: argparse.Namespace) -> Measured:
    if args.ms_per_image is not None and args.cold_start_s is not None and args.report is None:
        return Measured(
            args.ms_per_image, args.two_thread_ms, 0.0, args.cold_start_s, source="flags"
        )
    path = args.report or newest_report()
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"Cannot read the report {path}: {exc}") from None
    measured = measured_from_report(report, source=str(_relative(path)))
    if args.ms_per_image is not None:  # a flag overrides the report's figure
        measured = Measured(args.ms_per_image, args.two_thread_ms, 0.0, measured.cold_start_s,
                            source=f"{measured.source}, --ms-per-image")  # fmt: skip
    if args.cold_start_s is not None:
        measured = Measured(**{**asdict(measured), "cold_start_s": args.cold_start_s})
    return measured


def _relative(path: Path) -> Path:
    try:
        return path.resolve().relative_to(REPO)
    except ValueError:
        return path


def _plot(table: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for arch in dict.fromkeys(r["architecture"] for r in table):
        mine = [r for r in table if r["architecture"] == arch]
        ax.plot([r["memory_mb"] for r in mine], [r["cost_per_million_batched"] for r in mine],
                marker="o", label=f"{arch}, batched")  # fmt: skip
        ax.plot([r["memory_mb"] for r in mine], [r["cost_per_million_single"] for r in mine],
                marker="x", linestyle="--", label=f"{arch}, 1 per call")  # fmt: skip
    ax.set_xlabel("Lambda memory (MB)")
    ax.set_ylabel("USD per 1M classifications")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _write(path: Path, text: str) -> None:
    """Write a whole file or nothing: a temp file beside it, renamed into place."""
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as f:
        f.write(text)
    os.replace(f.name, path)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        _check_args(args)
        measured = _measured(args)
        assumptions = Assumptions(
            memories_mb=tuple(args.memory_mb),
            rates_per_s=tuple(args.rates),
            photos=args.photos,
            batch_size=args.batch_size,
            concurrency_limit=args.concurrency_limit,
            io_ms=args.io_ms,
            arm64_slowdown=args.arm64_slowdown,
            price_gb_s_x86=args.price_gb_s_x86,
            price_gb_s_arm=args.price_gb_s_arm,
            price_per_request=args.price_per_million_requests / 1e6,
        )
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    table = rows(measured, assumptions)
    text = markdown(measured, assumptions, table)
    print(text, end="")
    if args.output is not None:
        args.output.mkdir(parents=True, exist_ok=True)
        record = {"measured": asdict(measured), "assumptions": asdict(assumptions), "rows": table}
        _write(args.output / "capacity.json", json.dumps(record, indent=2) + "\n")
        _write(args.output / "capacity.md", text)
        with tempfile.TemporaryDirectory(dir=args.output) as tmp:
            _plot(table, Path(tmp) / "capacity.png")
            os.replace(Path(tmp) / "capacity.png", args.output / "capacity.png")
        print(f"wrote {args.output}/capacity.md, capacity.json, capacity.png", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
