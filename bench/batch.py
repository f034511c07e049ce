"""Throughput of `python -m inference batch`: images/s per workers x threads, and the scaling.

    python -m bench.batch --model runs/bundles/dynamic     # 372 test photos; plans 1x1, 1x2, 2x1
    python -m bench.batch --model runs/bundles/float32 --images 600 --repeat 3
    python -m bench.batch --model DIR --plan 1x1 2x1 4x1 --out runs/bench-batch

Each run is `inference.run_batch` on a list of real photos (CLOTHING_DATA_DIR's
test split, then validation and train when --images asks for more) into a
fresh .jsonl, exactly as the CLI runs it (spawned workers, files read and
decoded in the workers). Plans (WORKERSxTHREADS) are interleaved round by
round (--repeat), so background load hits them alike; the table gives medians.
"images/s" counts the whole run (worker start-up included); "steady" leaves
out the start-up (time to the first row: spawning, imports, model loads).
Scaling is the steady rate over the first plan's (default 1 worker x 1 thread);
the issue's target is >= 1.8x with 2 workers on a 2-core machine. "CPU ms /
image" is the CPU time of the parent and the workers (start-up included) per
image: with other jobs on the machine it shows what the work costs, not what
the machine had free.
Writes OUT/batch.json, batch.md and batch.png (bars per plan).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from inference import IMAGE_SUFFIXES, BatchConfig, InferenceConfig, run_batch

DEFAULT_PLAN = ("1x1", "1x2", "2x1")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.batch",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", type=Path, required=True, help="bundle folder")
    parser.add_argument("--images", type=int, default=372, help="photos per run (default 372)")
    parser.add_argument(
        "--plan", nargs="+", default=list(DEFAULT_PLAN), help="WORKERSxTHREADS per run"
    )
    parser.add_argument("--repeat", type=int, default=1, help="interleaved rounds (median)")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("CLOTHING_DATA_DIR", "clothing-dataset-small")),
        help="dataset root (env CLOTHING_DATA_DIR)",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="default: runs/bench-batch/<bundle folder name>"
    )
    return parser


def parse_plan(text: str) -> tuple[int, int]:
    """ "2x1" -> (2 workers, 1 thread each); ValueError naming --plan otherwise."""
    workers, sep, threads = text.partition("x")
    if not (sep and workers.isdigit() and threads.isdigit() and int(workers) and int(threads)):
        raise ValueError(f"`--plan` entries must be WORKERSxTHREADS, e.g. 2x1. Received: {text!r}")
    return int(workers), int(threads)


def photo_list(data_dir: Path, n: int) -> list[str]:
    """The first `n` photos of test, then validation, then train (sorted in each)."""
    photos: list[str] = []
    for split in ("test", "validation", "train"):
        found = sorted(
            p for p in (data_dir / split).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES
        )
        photos += [str(p) for p in found]
        if len(photos) >= n:
            return photos[:n]
    raise ValueError(
        f"`--images` asks for {n} photos; {data_dir} has {len(photos)}. Received: --images={n}"
    )


def run_once(model: Path, listing: Path, workers: int, threads: int) -> dict[str, Any]:
    """One batch into a fresh output; its summary plus the steady rate."""
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        config = BatchConfig(
            source=str(listing),
            output=Path(tmp) / "rows.jsonl",
            inference=InferenceConfig.from_env(model_dir=model),
            workers=workers,
            threads_per_worker=threads,
            progress_every_s=3600.0,
        )
        before = _cpu_s()
        summary = run_batch(config).to_dict()
        summary["cpu_ms_per_image"] = 1000 * (_cpu_s() - before) / max(1, summary["written"])
    steady_s = summary["elapsed_s"] - summary["startup_s"]
    summary["steady_images_per_s"] = (summary["written"] - 1) / steady_s if steady_s > 0 else 0.0
    return summary


def _cpu_s() -> float:
    """CPU seconds of this process and its reaped children (the workers, once shut down)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def measure(
    model: Path, photos: list[str], plans: list[tuple[int, int]], repeat: int
) -> list[dict[str, Any]]:
    """Median figures per plan over `repeat` interleaved rounds."""
    runs: dict[tuple[int, int], list[dict[str, Any]]] = {plan: [] for plan in plans}
    with tempfile.TemporaryDirectory(prefix="bench-batch-list-") as tmp:
        listing = Path(tmp) / "photos.txt"
        listing.write_text("\n".join(photos) + "\n")
        for round_ in range(repeat):
            for workers, threads in plans:
                r = run_once(model, listing, workers, threads)
                runs[(workers, threads)].append(r)
                print(
                    f"round {round_ + 1}/{repeat}: {workers} worker(s) x {threads} thread(s): "
                    f"{r['images_per_s']:.1f} images/s, steady {r['steady_images_per_s']:.1f}, "
                    f"start-up {r['startup_s']:.2f} s, CPU {r['cpu_ms_per_image']:.1f} ms/image, "
                    f"errors {r['errors']}",
                    file=sys.stderr,
                    flush=True,
                )
    rows = []
    for (workers, threads), results in runs.items():
        rows.append(
            {
                "workers": workers,
                "threads_per_worker": threads,
                "images": results[0]["written"],
                "errors": results[0]["errors"],
                "images_per_s": statistics.median(r["images_per_s"] for r in results),
                "steady_images_per_s": statistics.median(r["steady_images_per_s"] for r in results),
                "startup_s": statistics.median(r["startup_s"] for r in results),
                "cpu_ms_per_image": statistics.median(r["cpu_ms_per_image"] for r in results),
                "runs": [r["steady_images_per_s"] for r in results],
            }
        )
    base = rows[0]["steady_images_per_s"]
    for row in rows:
        row["scaling"] = row["steady_images_per_s"] / base if base else 0.0
    return rows


def markdown(rows: list[dict[str, Any]], *, model: Path, load: str) -> str:
    """The table README quotes."""
    first = rows[0]
    lines = [
        f"`{model}`, {first['images']} photos per run, load average before: {load}",
        "",
        "| workers x threads | images/s (whole run) | steady images/s | start-up (s) "
        f"| scaling vs {first['workers']}x{first['threads_per_worker']} | CPU ms / image |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['workers']} x {r['threads_per_worker']} | {r['images_per_s']:.1f} "
            f"| {r['steady_images_per_s']:.1f} | {r['startup_s']:.2f} | {r['scaling']:.2f}x "
            f"| {r['cpu_ms_per_image']:.1f} |"
        )
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], path: Path, *, model: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    names = [f"{r['workers']}w x {r['threads_per_worker']}t" for r in rows]
    bars = ax.bar(names, [r["steady_images_per_s"] for r in rows])
    ax.bar_label(
        bars, labels=[f"{r['steady_images_per_s']:.0f} ({r['scaling']:.2f}x)" for r in rows]
    )
    ax.set_ylabel("steady images/s")
    ax.set_title(f"inference batch: {model.name}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    """Measure, print the table, write OUT/batch.{json,md,png}; 2 on bad usage."""
    args = build_parser().parse_args(argv)
    try:
        plans = [parse_plan(p) for p in args.plan]
        if args.repeat < 1:
            raise ValueError(f"`--repeat` must be >= 1. Received: --repeat={args.repeat}")
        photos = photo_list(args.data_dir, args.images)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    rows = measure(args.model, photos, plans, args.repeat)
    table = markdown(rows, model=args.model, load=load)
    print(table)
    out = args.out or Path("runs/bench-batch") / args.model.resolve().name
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    doc = {"created": stamp, "model": str(args.model), "load_before": load, "rows": rows}
    (out / "batch.json").write_text(json.dumps(doc, indent=2) + "\n")
    (out / "batch.md").write_text(table + "\n")
    plot(rows, out / "batch.png", model=args.model)
    return 0


if __name__ == "__main__":
    sys.exit(main())
