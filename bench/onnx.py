"""ONNX Runtime against ai-edge-litert: one model, the same images, one run.

    # convert runs/acc/fast_150 to float32 (.tflite) and onnx, then measure both
    python -m bench.onnx runs/acc/fast_150 --out runs/onnx_bench

    # reuse bundles `python -m convert` wrote (float32 and onnx of the same model)
    python -m bench.onnx runs/acc/fast_150 --out runs/onnx_bench --bundles runs/bundles

Measured side by side, so the ratios share the machine's conditions:

- fidelity, on the test split (or --images) through the serving path: top-1
  agreement with Keras, max |logit difference|, accuracy (`python -m convert
  check`'s own code, `check_bundles`);
- latency at each --threads count, batch 1, median and p95: the check's
  interleaved phase, so a neighbour's load slows both runtimes alike;
- cold start: a new process to its first prediction (import inference, load
  the bundle, classify one image), the two runtimes alternating run by run
  after one untimed run each (bench/_coldstart.py);
- install size: the files each runtime's wheel installs, and with the
  dependencies the serve install would not otherwise have (numpy, which every
  serve install has, left out), from the installed distributions' RECORDs.

Writes OUT/onnx_vs_litert.json, .md and .png (latency and cold start bars);
the markdown is printed. Exit status: 0 measured; 2 bad usage or input.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import re
import statistics
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

if __name__ == "__main__":
    from inference import quiet_tensorflow

    quiet_tensorflow(sys.argv, os.environ)

from bench._cli import run_dir_parser, write_results
from bench._coldstart import _SERVE, _run_once
from convert import (
    CheckConfig,
    CheckReport,
    ConvertConfig,
    ConvertError,
    VariantResult,
    check_bundles,
    convert_model,
    log_to_stderr,
)
from inference import IMAGE_SUFFIXES

# The two bundles compared: float32 .tflite under ai-edge-litert, float32 ONNX
# under onnxruntime. Both are the same Keras function up to float rounding.
PAIR = {"float32": "ai-edge-litert", "onnx": "onnxruntime"}
# Every serve install has numpy (both runtimes need it): not either runtime's cost.
SHARED_DEPENDENCIES = frozenset({"numpy"})
RESULT_NAME = "onnx_vs_litert"
MIB = 2**20


@dataclass(frozen=True)
class InstallSize:
    """Bytes the distribution's files take, alone and with its own dependencies."""

    distribution: str
    version: str
    own_bytes: int
    with_dependencies_bytes: int
    dependencies: tuple[str, ...]


def distribution_bytes(name: str) -> int:
    """Total size in bytes of the files an installed distribution lists in its RECORD.

    Raises:
        importlib.metadata.PackageNotFoundError: `name` is not installed.
    """
    dist = importlib.metadata.distribution(name)
    total = 0
    for file in dist.files or ():
        path = Path(str(dist.locate_file(file)))
        if path.is_file():
            total += path.stat().st_size
    return total


def _requirements(name: str) -> list[str]:
    """Names of `name`'s unconditional requirements (extras and markers left out)."""
    names = []
    for line in importlib.metadata.requires(name) or []:
        if ";" in line:  # extras and platform markers: not part of a plain install
            continue
        match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", line)
        if match:
            names.append(match.group(0).lower().replace("_", "-"))
    return names


def install_size(name: str) -> InstallSize:
    """The distribution's size, and with its dependency closure minus `SHARED_DEPENDENCIES`.

    Raises:
        importlib.metadata.PackageNotFoundError: `name` is not installed.
    """
    seen: set[str] = set()
    todo = _requirements(name)
    while todo:
        dep = todo.pop()
        if dep in seen or dep in SHARED_DEPENDENCIES:
            continue
        seen.add(dep)
        try:
            todo += _requirements(dep)
        except importlib.metadata.PackageNotFoundError:
            continue
    deps = tuple(sorted(d for d in seen if _installed(d)))
    own = distribution_bytes(name)
    return InstallSize(
        distribution=name,
        version=importlib.metadata.version(name),
        own_bytes=own,
        with_dependencies_bytes=own + sum(distribution_bytes(d) for d in deps),
        dependencies=deps,
    )


def _installed(name: str) -> bool:
    try:
        importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def cold_starts(bundles: dict[str, Path], *, image: Path, runs: int) -> dict[str, dict[str, float]]:
    """variant -> median seconds from Popen to the first prediction, and its split.

    The variants alternate run by run after one untimed run each (the page
    cache then holds both models, as a warm container's disk would).
    """
    samples: dict[str, list[tuple[float, dict[str, float]]]] = {v: [] for v in bundles}
    for i in range(runs + 1):
        for variant, bundle in bundles.items():
            timed = _run_once([sys.executable, "-c", _SERVE, str(bundle), str(image)])
            if i:
                samples[variant].append(timed)
    return {
        variant: {
            "total_s": statistics.median(total for total, _ in rows),
            **{key: statistics.median(split[key] for _, split in rows) for key in rows[0][1]},
        }
        for variant, rows in samples.items()
    }


def _by_variant(report: CheckReport) -> dict[str, VariantResult]:
    return {r.variant: r for r in report.results}


def summarize(
    report: CheckReport,
    cold: dict[str, dict[str, float]],
    sizes: dict[str, InstallSize],
) -> dict[str, Any]:
    """The JSON result: per runtime its fidelity, latency, cold start and size; the winner."""
    results = _by_variant(report)
    runtimes: dict[str, Any] = {}
    for variant, runtime in PAIR.items():
        r = results[variant]
        runtimes[runtime] = {
            "variant": variant,
            "runtime": r.runtime,
            "bundle": str(r.bundle),
            "size_bytes": r.size_bytes,
            "agreement_pct": r.agreement_pct,
            "max_abs_logit_diff": r.max_abs_logit_diff,
            "accuracy_pct": r.accuracy_pct,
            "load_ms": r.load_ms,
            "latency": [asdict(x) for x in r.latency],
            "cold_start": cold[variant],
            "install": asdict(sizes[runtime]),
        }
    fewest = min(x.threads for r in results.values() for x in r.latency)
    one_thread = {
        name: next(x["median_ms"] for x in data["latency"] if x["threads"] == fewest)
        for name, data in runtimes.items()
    }
    faster = min(one_thread, key=lambda name: one_thread[name])
    slower = max(one_thread, key=lambda name: one_thread[name])
    return {
        "images": str(report.images_dir),
        "n_images": report.n_images,
        "keras_accuracy_pct": report.keras_accuracy_pct,
        "other_cpu_load_during_timing": report.environment.get("other_cpu_load_during_timing"),
        "environment": report.environment,
        "runtimes": runtimes,
        "faster_at_fewest_threads": faster,
        "speedup_at_fewest_threads": one_thread[slower] / one_thread[faster],
    }


def to_markdown(result: dict[str, Any], *, command: str) -> str:
    """The side-by-side table for README, one row per runtime, and the recommendation."""
    runtimes = result["runtimes"]
    threads = sorted({x["threads"] for data in runtimes.values() for x in data["latency"]})
    head = ["runtime", "bundle", "model MB", "agreement", "max \\|Δ logit\\|", "accuracy"]
    head += [f"{t} thread{'s' if t > 1 else ''} p50 / p95 (ms)" for t in threads]
    head += ["load (ms)", "cold start (s)", "install MiB (own / with deps)"]
    lines = [
        f"`{command}`",
        "",
        f"{result['n_images']} images from {result['images']}; Keras accuracy "
        f"{result['keras_accuracy_pct']:.2f}%; other processes kept "
        f"{result['other_cpu_load_during_timing']} cores busy while timing.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for data in runtimes.values():
        latency = {x["threads"]: x for x in data["latency"]}
        install = data["install"]
        cells = [
            data["runtime"],
            data["variant"],
            f"{data['size_bytes'] / 1e6:.1f}",
            f"{data['agreement_pct']:.2f}%",
            f"{data['max_abs_logit_diff']:.1e}",
            f"{data['accuracy_pct']:.2f}%" if data["accuracy_pct"] is not None else "—",
        ]
        cells += [
            f"{latency[t]['median_ms']:.1f} / {latency[t]['p95_ms']:.1f}" if t in latency else "—"
            for t in threads
        ]
        cells += [
            f"{data['load_ms']:.0f}",
            f"{data['cold_start']['total_s']:.2f}",
            f"{install['own_bytes'] / MIB:.1f} / {install['with_dependencies_bytes'] / MIB:.1f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Faster at {threads[0]} thread{'s' if threads[0] > 1 else ''}: "
        f"**{result['faster_at_fewest_threads']}**, "
        f"{result['speedup_at_fewest_threads']:.2f}x.",
    ]
    for data in runtimes.values():
        deps = ", ".join(data["install"]["dependencies"]) or "none"
        lines.append(f"- {data['install']['distribution']} dependencies counted: {deps}")
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: Path) -> None:
    """Bars: median latency per thread count, and cold start, per runtime."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runtimes = result["runtimes"]
    fig, (ax_latency, ax_cold) = plt.subplots(1, 2, figsize=(9, 3.5))
    names = list(runtimes)
    threads = sorted({x["threads"] for data in runtimes.values() for x in data["latency"]})
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        latency = {x["threads"]: x["median_ms"] for x in runtimes[name]["latency"]}
        xs = [j + i * width for j in range(len(threads))]
        ax_latency.bar(xs, [latency.get(t, 0.0) for t in threads], width, label=name)
    ax_latency.set_xticks([j + width * (len(names) - 1) / 2 for j in range(len(threads))])
    ax_latency.set_xticklabels([f"{t} thread{'s' if t > 1 else ''}" for t in threads])
    ax_latency.set_ylabel("median latency, batch 1 (ms)")
    ax_latency.legend(loc="lower center")
    colors = [f"C{i}" for i in range(len(names))]  # the same colour per runtime in both panels
    ax_cold.bar(names, [runtimes[n]["cold_start"]["total_s"] for n in names], color=colors)
    ax_cold.set_ylabel("cold start to first prediction (s)")
    fig.suptitle("float32, same model and images")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _parser() -> argparse.ArgumentParser:
    p = run_dir_parser(prog="python -m bench.onnx", description=__doc__)
    p.add_argument("--bundles", type=Path, help="existing bundles (float32 + onnx) to reuse")
    p.add_argument("--images", type=Path, help="held-out images (default: the test split)")
    p.add_argument("--max-images", type=int, help="a seeded sample of this many images")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts")
    p.add_argument("--latency-runs", type=int, default=50, help="timed invokes per measurement")
    p.add_argument("--cold-runs", type=int, default=5, help="timed cold starts per runtime")
    p.add_argument("--verbose", action="store_true", help="also TensorFlow's C++ log lines")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    args = parser.parse_args(argv)
    if args.cold_runs < 1:
        parser.error(f"`--cold-runs` must be >= 1. Received: cold_runs={args.cold_runs}")
    bundles_dir = args.bundles or args.out / "bundles"
    log_to_stderr()
    try:
        check = CheckConfig(
            train_dir=args.train_dir,
            out_dir=bundles_dir,
            variants=tuple(PAIR),
            images_dir=args.images,
            max_images=args.max_images,
            threads=tuple(args.threads),
            latency_runs=args.latency_runs,
            reference_runtime=None,
        )
    except ValueError as exc:
        parser.error(str(exc))
    try:
        sizes = {runtime: install_size(runtime) for runtime in PAIR.values()}
    except importlib.metadata.PackageNotFoundError as exc:
        print(f"error: not installed: {exc} (pip install '.[serve,onnx]')", file=sys.stderr)
        return 2
    try:
        if args.bundles is None:
            convert_model(
                ConvertConfig(
                    train_dir=args.train_dir, out_dir=bundles_dir, variants=tuple(PAIR), force=True
                )
            )
        report = check_bundles(check)
    except ConvertError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    image = min(p for p in report.images_dir.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    print(f"cold start: {args.cold_runs} runs per runtime on {image}", file=sys.stderr)
    cold = cold_starts({v: bundles_dir / v for v in PAIR}, image=image, runs=args.cold_runs)
    result = summarize(report, cold, sizes)
    command = "python -m bench.onnx " + " ".join(argv)
    result["command"] = command
    write_results(args.out, RESULT_NAME, result, to_markdown(result, command=command))
    plot(result, args.out / f"{RESULT_NAME}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
