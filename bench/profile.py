"""Which ops take the time: each variant's time per op kind, against the GEMM peaks.

    python -m bench.profile --bundles runs/bundles                       # float32 dynamic int8
    python -m bench.profile --bundles runs/bundles --variants int8 onnx-int8 --rounds 3
    python -m bench.profile --bundles runs/bundles --out runs/profile    # also profile.md/.json

TFLite variants (ai-edge-litert has no Python profiler): every op of the
served graph rebuilt as a one-op model of the same shapes and timed alone
(bench/_ops.py says how, and its limits); the whole bundle is timed in the
same rounds, so "sum of the ops" against "whole model" shows how much of
the time is between the ops (weights and activations coming from memory
rather than cache: the one-op runs keep theirs hot). ONNX variants (onnx,
onnx-int8): onnxruntime's own profiler (`enable_profiling`), per node, summed
per op type. Both at --threads (default 1). The float32 and int8 GEMM peaks
(bench/_flops.py) take a turn in every timing round; a group's
"% of peak" is its GFLOP/s (2 x multiply-adds / time) over the peak of its
arithmetic (float32 for float32/float16/onnx, int8 for dynamic/int8/onnx-int8).

Needs the train extra (TensorFlow converts the one-op models) and, for the
int8 peak and ONNX bundles, the onnx extra. About 1-2 min per TFLite variant
on 2 cores. Exit status: 0 done; 2 bad usage or input.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench._flops import GEMM_SIZE, gemm_peak, gemm_worker, int8_gemm_worker
from bench._worker import Worker
from inference import quiet_tensorflow

TFLITE_VARIANTS = ("float32", "float16", "dynamic", "int8")
ONNX_VARIANTS = ("onnx", "onnx-int8")
FLOAT_MATH = ("float32", "float16", "onnx")  # the rest run int8 GEMMs
GEMM_RUNS = 2  # products per round per peak, as `python -m bench` (bench/_config.py)


class _Peaks:
    """The float32 and int8 GEMM peak workers; `turn()` times each once, in the rounds."""

    def __init__(self, *, threads: int, log: Callable[[str], None]) -> None:
        self.threads = threads
        self.workers: dict[str, Worker] = {}
        self.seconds: dict[str, list[float]] = {}
        for dtype, make in (("float32", gemm_worker), ("int8", int8_gemm_worker)):
            worker: Worker = make(threads=threads)
            try:
                worker.wait_ready()
            except RuntimeError as exc:
                log(f"{dtype} GEMM peak not measured: {str(exc).strip().splitlines()[-1]}")
                worker.close()
                continue
            self.workers[dtype], self.seconds[dtype] = worker, []

    def turn(self) -> None:
        for dtype, worker in self.workers.items():
            self.seconds[dtype].extend(worker.request(f"run {GEMM_RUNS}")["seconds"])

    def gflops(self) -> dict[str, float]:
        """GFLOP/s (GOP/s for int8): the median product of every turn."""
        return {
            dtype: gemm_peak(seconds, threads=self.threads, dtype=dtype).gflops
            for dtype, seconds in self.seconds.items()
            if seconds
        }

    def close(self) -> None:
        for worker in self.workers.values():
            worker.close()


def profile_tflite(
    bundles: Path,
    variant: str,
    *,
    threads: int,
    rounds: int,
    log: Callable[[str], None],
    each_round: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Per op group: count, multiply-adds, summed one-op time; and the whole model's time."""
    from bench._ops import graph_ops, overhead_model, single_op_models, time_models

    graph = bundles / "float32" / "model.tflite"
    if not graph.is_file():
        graph = bundles / variant / "model.tflite"
    ops = graph_ops(graph)
    log(f"{variant}: {len(ops)} ops, {len(set(ops))} distinct shapes; converting one-op models")
    models: dict[Any, bytes] = dict(single_op_models(ops, variant=variant, log=log))
    models["overhead"] = overhead_model()
    models["whole"] = (bundles / variant / "model.tflite").read_bytes()
    log(f"{variant}: timing {len(models)} models, {rounds} interleaved rounds")
    seconds = time_models(models, threads=threads, rounds=rounds, each_round=each_round)
    overhead, whole = seconds.pop("overhead"), seconds.pop("whole")
    groups: dict[str, dict[str, float]] = defaultdict(lambda: {"ops": 0, "macs": 0, "ms": 0.0})
    for op in ops:
        group = groups[op.group]
        group["ops"] += 1
        group["macs"] += op.macs
        group["ms"] += 1000 * max(0.0, seconds[op] - overhead)
    return {
        "variant": variant,
        "runtime": "ai-edge-litert",
        "method": "one-op models",
        "whole_ms": 1000 * whole,
        "overhead_us": 1e6 * overhead,
        "macs": sum(op.macs for op in ops),
        "groups": dict(groups),
    }


def profile_onnx(
    bundles: Path,
    variant: str,
    *,
    threads: int,
    rounds: int,
    log: Callable[[str], None],
    each_round: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """onnxruntime's profiler: per op type, the kernel time per run (warm-up runs left out)."""
    import numpy as np
    import onnxruntime as ort

    warmup, runs = 3, 10 * rounds
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as tmp:
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        options.enable_profiling = True
        options.profile_file_prefix = os.path.join(tmp, "ort")
        options.log_severity_level = 3
        session = ort.InferenceSession(
            str(bundles / variant / "model.onnx"), options, providers=["CPUExecutionProvider"]
        )
        feed = session.get_inputs()[0]
        shape = [d if isinstance(d, int) else 1 for d in feed.shape]
        x = np.random.default_rng(0).uniform(-1, 1, shape).astype(np.float32)
        log(f"{variant}: onnxruntime profiler, {warmup} + {runs} runs")
        for i in range(warmup + runs):
            session.run(None, {feed.name: x})
            if each_round is not None and i % 10 == 9:
                each_round()
        events: list[dict[str, Any]] = json.loads(Path(session.end_profiling()).read_text())
    model_runs = sorted((e for e in events if e.get("name") == "model_run"), key=lambda e: e["ts"])
    timed = model_runs[warmup:]
    return {
        "variant": variant,
        "runtime": f"onnxruntime {ort.__version__}",
        "method": "onnxruntime profiler",
        "whole_ms": statistics.median(e["dur"] for e in timed) / 1000,
        "overhead_us": 0.0,
        "macs": _float32_graph_macs(bundles),
        "groups": _ort_groups(events, runs=timed),
    }


def _float32_graph_macs(bundles: Path) -> int:
    """The model's multiply-adds, from the float32 TFLite bundle's graph (0 when absent)."""
    from bench._ops import graph_ops

    graph = bundles / "float32" / "model.tflite"
    return sum(op.macs for op in graph_ops(graph)) if graph.is_file() else 0


def _ort_groups(
    events: list[dict[str, Any]], *, runs: list[dict[str, Any]]
) -> dict[str, dict[str, float]]:
    """Kernel events ("<node>_kernel_time") summed per op type within each run's
    window; the median over `runs` (the "model_run" events), like the whole model's."""
    kernels = [
        e
        for e in events
        if e.get("cat") == "Node" and str(e.get("name", "")).endswith("_kernel_time")
    ]
    per_run: dict[str, list[float]] = defaultdict(lambda: [0.0] * len(runs))
    nodes: dict[str, set[str]] = defaultdict(set)
    for event in kernels:
        op_type = event.get("args", {}).get("op_name", "?")
        for i, run in enumerate(runs):
            if run["ts"] <= event["ts"] <= run["ts"] + run["dur"]:
                per_run[op_type][i] += event["dur"] / 1000
                nodes[op_type].add(event["name"])
                break
    return {
        op_type: {"ops": len(nodes[op_type]), "macs": 0, "ms": statistics.median(ms)}
        for op_type, ms in per_run.items()
        if nodes[op_type]
    }


def render(profiles: list[dict[str, Any]], peaks: dict[str, float], threads: int) -> list[str]:
    """Markdown: one table per variant, groups by time, with GFLOP/s and % of peak."""
    lines = [
        f"Threads: {threads}. GEMM peaks measured in this run ({GEMM_SIZE}^3 products): "
        + ", ".join(
            f"{k} {v:.0f} G{'FLOP' if k == 'float32' else 'OP'}/s" for k, v in peaks.items()
        )
        + ".",
    ]
    for p in profiles:
        dtype = "float32" if p["variant"] in FLOAT_MATH else "int8"
        peak = peaks.get(dtype)
        total = sum(g["ms"] for g in p["groups"].values())
        lines += [
            "",
            f"### {p['variant']} ({p['runtime']}, {p['method']})",
            "",
            f"Whole model: **{p['whole_ms']:.1f} ms**; sum of the ops: {total:.1f} ms "
            f"({100 * total / p['whole_ms']:.0f}% of the whole)"
            + (
                f"; one invoke's own overhead {p['overhead_us']:.1f} us, taken off each op."
                if p["overhead_us"]
                else "."
            ),
            "",
            f"| op | ops | G multiply-adds | ms | share of the ops | GOP/s | % of {dtype} peak |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for name, g in sorted(p["groups"].items(), key=lambda kv: -kv[1]["ms"]):
            gops = 2 * g["macs"] / (g["ms"] / 1000) / 1e9 if g["macs"] and g["ms"] else 0.0
            share = f"{100 * gops / peak:.0f}%" if peak and gops else "—"
            lines.append(
                f"| {name} | {int(g['ops'])} | {g['macs'] / 1e9:.3f} | {g['ms']:.2f} | "
                f"{100 * g['ms'] / total:.1f}% | {gops:.0f} | {share} |"
                if total
                else f"| {name} | {int(g['ops'])} | — | — | — | — | — |"
            )
        macs = p["macs"]
        if peak and macs:
            floor = 2 * macs / (peak * 1e9) * 1000
            lines.append(
                f"\nWhole model at {2 * macs / (p['whole_ms'] / 1000) / 1e9:.0f} GOP/s: "
                f"**{100 * floor / p['whole_ms']:.0f}%** of the {dtype} peak "
                f"(floor {floor:.1f} ms)."
            )
    return lines


def main(argv: list[str] | None = None) -> int:
    quiet_tensorflow(sys.argv if argv is None else argv, os.environ)
    parser = argparse.ArgumentParser(
        prog="python -m bench.profile", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--bundles", type=Path, required=True, help="`python -m convert --out`")
    parser.add_argument("--variants", nargs="+", default=["float32", "dynamic", "int8"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds")
    parser.add_argument("--out", type=Path, help="folder for profile.md and profile.json")
    args = parser.parse_args(argv)
    if args.threads < 1 or args.rounds < 1:
        parser.error(
            f"`--threads` and `--rounds` must be >= 1. "
            f"Received: --threads={args.threads}, --rounds={args.rounds}"
        )
    known = TFLITE_VARIANTS + ONNX_VARIANTS
    for variant in args.variants:
        if variant not in known:
            parser.error(f"`--variants` must be among {known}. Received: {variant!r}")
        if not (args.bundles / variant / "manifest.json").is_file():
            parser.error(f"No {variant} bundle in --bundles. Received: --bundles={args.bundles}")

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    profiles = []
    gemm = _Peaks(threads=args.threads, log=log)
    try:
        for variant in args.variants:
            profile = profile_onnx if variant in ONNX_VARIANTS else profile_tflite
            profiles.append(
                profile(
                    args.bundles,
                    variant,
                    threads=args.threads,
                    rounds=args.rounds,
                    log=log,
                    each_round=gemm.turn,
                )
            )
    finally:
        gemm.close()
    peaks = gemm.gflops()
    text = "\n".join(render(profiles, peaks, args.threads)) + "\n"
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "profile.md").write_text(text)
        payload = {"threads": args.threads, "peaks": peaks, "profiles": profiles}
        (args.out / "profile.json").write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
