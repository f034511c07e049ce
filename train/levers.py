"""Accuracy levers and input sizes, measured on the validation split only.

Usage:
    # each lever added to the seed recipe in turn, then each removed from the
    # default recipe; mean and spread over seeds; JSON + PNG + a table
    python -m train levers --image-size 150 --seeds 1 2 3 --output runs/levers_150

    # the default recipe (and the seed recipe) at several input sizes, with
    # the Keras latency of one image (one base pass) and of test-time flip (two),
    # and each set of those sizes as one ensemble (logits averaged)
    python -m train sizes --sizes 150 224 299 --seeds 1 2 --output runs/sizes

Every head trains on cached features (train.features): each image's plain and
augmented-view features are computed once per size, so a lever costs a head fit
(seconds), not a base pass. The test split is never read here: settings are
chosen on validation, and `python -m train` reports test once per profile.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import matplotlib
import numpy as np

from inference import staging_dir
from train.config import SEED_RECIPE, TRAIN_VIEWS, TrainConfig
from train.data import load_dataset
from train.fit import validation_scores
from train.model import build_base, build_full_model, build_head, head_logits
from train.run import CachedFeatures, add_views, prepare_features, train_head

matplotlib.use("Agg")  # files only, no display (CI, servers)
import matplotlib.pyplot as plt

# Cumulative steps from the seed recipe: each row adds one lever to the row above.
STEPS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("seed recipe", {}),
    ("+ keep the min val-loss epoch", {"monitor": "val_loss"}),
    ("+ label smoothing 0.1", {"label_smoothing": 0.1}),
    ("+ AdamW weight decay 0.004", {"weight_decay": 0.004}),
    ("+ views flip", {"views": ("flip",)}),
    ("+ views flip, crop", {"views": ("flip", "crop")}),
    ("+ ensemble of 5 heads", {"ensemble": 5}),
)
# Levers also worth a row on their own on top of the default recipe.
EXTRAS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("default + dropout 0.5", {"droprate": 0.5}),
    ("default + every view", {"views": TRAIN_VIEWS}),
)
# Single levers on top of the seed recipe (each measured alone).
SEED_EXTRAS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("seed + ensemble of 5 heads", {"ensemble": 5}),
    ("seed + views flip, crop + ensemble of 5", {"views": ("flip", "crop"), "ensemble": 5}),
    ("seed + weight decay + ensemble of 5", {"weight_decay": 0.004, "ensemble": 5}),
)
# Test-time flip: the ensemble's logits averaged over the photo and its mirror.
TTA_VIEW = "flip"


@dataclass(frozen=True)
class Row:
    """One row of the levers table: a recipe measured over several seeds.

    Attributes:
        name: str, the recipe's label.
        overrides: dict of TrainConfig fields changed from the default recipe.
        val_accuracy: list of float, validation accuracy per seed.
        val_loss: list of float, validation NLL per seed, in nats.
        best_epoch: list of int, the kept (1-based) epoch per seed.
        seconds: list of float, training time per seed, in seconds.
        tta_val_accuracy: list of float or None, validation accuracy with
            test-time flip (logits averaged over photo and mirror) per seed.
    """

    name: str
    overrides: dict[str, Any]
    val_accuracy: list[float]  # one per seed
    val_loss: list[float]
    best_epoch: list[int]
    seconds: list[float]
    tta_val_accuracy: list[float] | None = None

    def to_json(self) -> dict[str, Any]:
        """The row as JSON, with means and sample sd over the seeds.

        Returns:
            dict: the fields (tuples as lists) plus val_accuracy_mean,
            val_accuracy_sd, val_loss_mean and, when measured, tta_val_accuracy_mean.
        """
        data = dataclasses.asdict(self)
        data["overrides"] = {
            k: list(v) if isinstance(v, tuple) else v for k, v in self.overrides.items()
        }
        data["val_accuracy_mean"] = statistics.fmean(self.val_accuracy)
        data["val_accuracy_sd"] = _sd(self.val_accuracy)
        data["val_loss_mean"] = statistics.fmean(self.val_loss)
        if self.tta_val_accuracy:
            data["tta_val_accuracy_mean"] = statistics.fmean(self.tta_val_accuracy)
        return data


def _sd(values: Sequence[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def recipes(default: TrainConfig) -> list[tuple[str, dict[str, Any]]]:
    """(name, TrainConfig overrides) for every row: cumulative steps, the default
    recipe, the default less each lever, and the extras."""
    rows: list[tuple[str, dict[str, Any]]] = []
    acc: dict[str, Any] = dict(SEED_RECIPE)
    for name, change in STEPS:
        acc = {**acc, **change}
        rows.append((name, dict(acc)))
    defaults = {k: getattr(default, k) for k in SEED_RECIPE}
    # The views the default trains on at this size (None would hide that at 299 px
    # "default - views" trains the default again).
    defaults["views"] = default.train_views
    defaults["droprate"] = default.droprate
    if {**rows[-1][1], "droprate": default.droprate} == defaults:
        rows[-1] = (f"{rows[-1][0]} = default recipe", rows[-1][1])
    else:
        rows.append(("default recipe", dict(defaults)))
    for key, seed_value in SEED_RECIPE.items():
        # "+ keep the min val-loss epoch" above already measures the monitor alone.
        if defaults[key] != seed_value and key != "monitor":
            rows.append((f"default - {key}", {**defaults, key: seed_value}))
    rows.extend((name, {**defaults, **change}) for name, change in EXTRAS)
    rows.extend((name, {**SEED_RECIPE, **change}) for name, change in SEED_EXTRAS)
    return _unique(rows, droprate=default.droprate)


def _unique(
    rows: list[tuple[str, dict[str, Any]]], *, droprate: float
) -> list[tuple[str, dict[str, Any]]]:
    """Drop a row that trains the same recipe as an earlier one (no fit twice)."""
    seen: list[dict[str, Any]] = []
    kept = []
    for name, overrides in rows:
        full = {"droprate": droprate, **overrides}
        if full not in seen:
            seen.append(full)
            kept.append((name, overrides))
    return kept


def measure_levers(
    config: TrainConfig,
    *,
    seeds: Sequence[int],
    views: Sequence[str] = TRAIN_VIEWS,
    only: Sequence[str] = (),
) -> dict[str, Any]:
    """Train every row of `recipes(config)` once per seed on cached features.

    views: the augmented views to extract for the train split (each costs one
    base pass per image, once); rows needing others are left out and listed.
    only: row names to measure (default: every row).
    -> {"image_size", "seeds", "rows": [Row.to_json()...], "left_out", "n_images"};
    every row carries its test-time-flip validation accuracy too.
    """
    _check_seeds(seeds)
    views = tuple(views)
    for view in views:
        if view not in TRAIN_VIEWS:
            raise ValueError(f"`views` must be a subset of {TRAIN_VIEWS}. Received: views={views}")
    wanted = recipes(config)
    unknown = sorted(set(only) - {name for name, _ in wanted})
    if unknown:
        raise ValueError(
            f"`only` must name rows of the table {[n for n, _ in wanted]}. Received: {unknown}"
        )
    wanted = [(n, o) for n, o in wanted if not only or n in only]
    # A row's views: its own, or (None) the default for this input size.
    kept = [
        (n, o) for n, o in wanted if set(dataclasses.replace(config, **o).train_views) <= set(views)
    ]
    left_out = [n for n, o in wanted if (n, o) not in kept]
    dataset = load_dataset(config.data_dir, max_per_class=config.max_per_class, seed=config.seed)
    dataset = dataclasses.replace(
        dataset, splits={k: v for k, v in dataset.splits.items() if k != "test"}
    )
    base = build_base(image_size=config.image_size, base_weights=config.base_weights)
    features = prepare_features(dataset, base, dataclasses.replace(config, views=()))
    features = add_views(features, config, views=views, splits=("train",))
    features = add_views(features, config, views=(TTA_VIEW,), splits=("validation",))
    rows = [_measure(name, overrides, features, config, seeds=seeds) for name, overrides in kept]
    return {
        "image_size": config.image_size,
        "seeds": list(seeds),
        "views_extracted": list(views),
        "left_out": left_out,
        "n_images": {name: len(split) for name, split in dataset.splits.items()},
        "rows": [r.to_json() for r in rows],
    }


def _measure(
    name: str,
    overrides: dict[str, Any],
    features: CachedFeatures,
    config: TrainConfig,
    *,
    seeds: Sequence[int],
    logits: list[np.ndarray] | None = None,
) -> Row:
    """Train `overrides` once per seed; append each seed's (n_val, k) validation
    logits to `logits` when given (for the ensemble across input sizes)."""
    accuracy, loss, epochs, seconds, tta = [], [], [], [], []
    for seed in seeds:
        run = dataclasses.replace(config, **overrides, seed=seed, verbose=False)
        t0 = time.perf_counter()
        trained = train_head(features, run)
        seconds.append(time.perf_counter() - t0)
        scores = validation_scores(trained.logits["validation"], trained.targets["validation"])
        accuracy.append(scores["val_accuracy"])
        loss.append(scores["val_loss"])
        if logits is not None:
            logits.append(trained.logits["validation"])
        epochs.append(trained.history.best_epoch)
        head = trained.head if trained.head is not None else trained.model
        flipped = head_logits(head, features.views[TTA_VIEW]["validation"])
        both = (trained.logits["validation"] + flipped) / 2
        tta.append(
            validation_scores(both, features.view_targets[TTA_VIEW]["validation"])["val_accuracy"]
        )
    row = Row(name, overrides, accuracy, loss, epochs, seconds, tta)
    print(
        f"{name:<40} val_acc {statistics.fmean(accuracy):.4f} ± {_sd(accuracy):.4f}  "
        f"val_loss {statistics.fmean(loss):.4f}  tta {statistics.fmean(tta):.4f}  "
        f"epochs {epochs}  {statistics.fmean(seconds):.1f} s/fit",
        file=sys.stderr,
    )
    return row


def measure_sizes(
    config: TrainConfig, *, sizes: Sequence[int], seeds: Sequence[int], latency_runs: int = 20
) -> dict[str, Any]:
    """The seed and the default recipe at each input size, on validation, with the
    Keras CPU latency (median ms over `latency_runs`) of one image and of two
    (the photo and its mirror, for test-time flip); with two or more sizes, also
    `size_ensembles` (each set of sizes' default heads, logits averaged)."""
    _check_seeds(seeds)
    dataset = load_dataset(config.data_dir, max_per_class=config.max_per_class, seed=config.seed)
    dataset = dataclasses.replace(
        dataset, splits={k: v for k, v in dataset.splits.items() if k != "test"}
    )
    results = []
    default_logits: dict[int, list[np.ndarray]] = {}  # size -> per-seed validation logits
    targets: dict[int, np.ndarray] = {}
    latency: dict[int, float] = {}
    for size in sizes:
        run = dataclasses.replace(config, image_size=size)
        # A second Xception in one session gets uniquified names for its unnamed
        # layers (conv2d_4...), hence another weights fingerprint and a cold cache.
        keras.backend.clear_session()
        base = build_base(image_size=size, base_weights=config.base_weights)
        features = prepare_features(dataset, base, run)
        features = add_views(features, run, views=(TTA_VIEW,), splits=("validation",))
        seed_row = _measure(f"{size} px seed recipe", dict(SEED_RECIPE), features, run, seeds=seeds)
        default_logits[size] = []
        default_row = _measure(
            f"{size} px default recipe", {}, features, run, seeds=seeds, logits=default_logits[size]
        )
        targets[size] = features.targets["validation"]
        one, two = _latency(base, runs=latency_runs)
        latency[size] = one
        results.append(
            {
                "image_size": size,
                "seed": seed_row.to_json(),
                "default": default_row.to_json(),
                "latency_ms": one,
                "tta_latency_ms": two,
            }
        )
    return {
        "seeds": list(seeds),
        "sizes": results,
        "size_ensembles": size_ensembles(default_logits, targets, latency_ms=latency),
    }


def size_ensembles(
    logits: dict[int, list[np.ndarray]],
    targets: dict[int, np.ndarray],
    *,
    latency_ms: dict[int, float],
) -> list[dict[str, Any]]:
    """Each set of two or more input sizes as one ensemble: the default recipes'
    validation logits averaged over the sizes, seed by seed.

    Every member sees the photo preprocessed at its own size from the original
    (as it was trained), so a model that serves it takes one input per size.

    Args:
        logits: size -> per-seed (n_val, k) validation logits of the default recipe.
        targets: size -> (n_val,) int targets; the sizes must agree (else no rows,
            and a warning).
        latency_ms: size -> Keras ms per image, summed for the ensemble's cost.

    Returns:
        [{"sizes", "val_accuracy" (per seed), "val_accuracy_mean", "val_accuracy_sd",
        "latency_ms"}], fewest sizes first.

    Raises:
        ValueError: the sizes hold different numbers of seeds.
    """
    sizes = sorted(logits)
    seeds = {s: len(logits[s]) for s in sizes}
    if len(set(seeds.values())) > 1:
        raise ValueError(f"`logits` must hold one entry per seed at every size. Received: {seeds}")
    if len(sizes) < 2:
        return []
    if any(not np.array_equal(targets[s], targets[sizes[0]]) for s in sizes):
        # An image unreadable at one size only: the rows would not be the same photos.
        print(
            f"warning: no ensembles across sizes {sizes}: their validation images differ",
            file=sys.stderr,
        )
        return []
    rows = []
    for k in range(2, len(sizes) + 1):
        for members in itertools.combinations(sizes, k):
            accuracy = [
                validation_scores(
                    np.mean([logits[s][i] for s in members], axis=0), targets[sizes[0]]
                )["val_accuracy"]
                for i in range(len(logits[sizes[0]]))
            ]
            rows.append(
                {
                    "sizes": list(members),
                    "val_accuracy": accuracy,
                    "val_accuracy_mean": statistics.fmean(accuracy),
                    "val_accuracy_sd": _sd(accuracy),
                    "latency_ms": sum(latency_ms[s] for s in members),
                }
            )
    return rows


def _latency(base: keras.Model, *, runs: int) -> tuple[float, float]:
    """Median ms of the full model (base + a 10-class head) on 1 and on 2 images."""
    size = base.input_shape[1]
    model = build_full_model(base, build_head(n_classes=10, size_inner=100, droprate=0.2))
    out = []
    for batch in (1, 2):
        x = np.zeros((batch, size, size, 3), np.float32)
        model.predict_on_batch(x)  # trace
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            model.predict_on_batch(x)
            times.append((time.perf_counter() - t0) * 1000)
        out.append(statistics.median(times))
    return out[0], out[1]


def _check_seeds(seeds: Sequence[int]) -> None:
    if not seeds:
        raise ValueError(f"`seeds` must name at least one seed. Received: seeds={list(seeds)}")


def format_levers(result: dict[str, Any]) -> str:
    """The levers result as a markdown table.

    Args:
        result: dict from `measure_levers` (image_size, n_images, seeds, rows).

    Returns:
        str, a markdown table: one line per recipe (val accuracy mean ± sd,
        val NLL in nats, test-time flip accuracy, kept epochs).
    """
    lines = [
        f"Levers at {result['image_size']} px, validation ({result['n_images']['validation']} "
        f"images), seeds {result['seeds']}",
        "",
        "| recipe | val acc (mean ± sd) | val NLL | + test-time flip | kept epochs |",
        "|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['name']} | {r['val_accuracy_mean']:.4f} ± {r['val_accuracy_sd']:.4f} | "
            f"{r['val_loss_mean']:.4f} | {r.get('tta_val_accuracy_mean', float('nan')):.4f} | "
            f"{r['best_epoch']} |"
        )
    return "\n".join(lines)


def format_sizes(result: dict[str, Any]) -> str:
    """The input-size result as a markdown table.

    Args:
        result: dict from `measure_sizes` (seeds, sizes).

    Returns:
        str, a markdown table: one line per input size (val accuracy of the seed
        and default recipes, with test-time flip, Keras latency in ms per image).
    """
    lines = [
        f"Input size, validation, seeds {result['seeds']}",
        "",
        "| size | seed recipe val acc | default val acc | + test-time flip | "
        "Keras ms/image | with flip (2 passes) |",
        "|---|---|---|---|---|---|",
    ]
    for s in result["sizes"]:
        lines.append(
            f"| {s['image_size']} | {s['seed']['val_accuracy_mean']:.4f} | "
            f"{s['default']['val_accuracy_mean']:.4f} | "
            f"{s['default']['tta_val_accuracy_mean']:.4f} | {s['latency_ms']:.1f} | "
            f"{s['tta_latency_ms']:.1f} |"
        )
    for e in result.get("size_ensembles", []):
        lines.append(
            f"| {' + '.join(map(str, e['sizes']))} (default heads, logits averaged) | | "
            f"{e['val_accuracy_mean']:.4f} | | {e['latency_ms']:.1f} | |"
        )
    return "\n".join(lines)


def plot_levers(result: dict[str, Any], path: Path) -> None:
    """Bar chart of validation accuracy (mean ± sd over seeds) per recipe.

    Args:
        result: dict from `measure_levers`.
        path: Path of the PNG to write (overwritten).
    """
    rows = result["rows"]
    fig, ax = plt.subplots(figsize=(9, 0.4 * len(rows) + 1.5))
    y = np.arange(len(rows))[::-1]
    means = [r["val_accuracy_mean"] for r in rows]
    ax.barh(y, means, xerr=[r["val_accuracy_sd"] for r in rows], color="tab:blue", alpha=0.8)
    ax.set_yticks(y, [r["name"] for r in rows])
    low = min(means) - 0.03
    ax.set_xlim(low, min(1.0, max(means) + 0.03))
    ax.set_xlabel(f"validation accuracy (mean ± sd over seeds {result['seeds']})")
    ax.set_title(f"Accuracy levers, {result['image_size']} px")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_sizes(result: dict[str, Any], path: Path) -> None:
    """Validation accuracy against Keras CPU latency (ms per image), one point
    per input size, one line per recipe.

    Args:
        result: dict from `measure_sizes`.
        path: Path of the PNG to write (overwritten).
    """
    fig, ax = plt.subplots(figsize=(7, 5))
    for key, marker in (("seed", "o"), ("default", "s")):
        xs = [s["latency_ms"] for s in result["sizes"]]
        ys = [s[key]["val_accuracy_mean"] for s in result["sizes"]]
        ax.plot(xs, ys, marker=marker, label=f"{key} recipe")
        for s, x, yv in zip(result["sizes"], xs, ys, strict=True):
            ax.annotate(
                f"{s['image_size']} px", (x, yv), textcoords="offset points", xytext=(5, -12)
            )
    ax.set_xlabel("Keras CPU latency, ms per image (median)")
    ax.set_ylabel("validation accuracy")
    ax.set_title("Input size: accuracy against latency")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_result(result: dict[str, Any], out: Path, *, stem: str) -> None:
    """JSON + PNG + markdown table, staged in a temp folder, then moved into place."""
    with staging_dir(out) as staging:
        (staging / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
        table = format_levers(result) if stem == "levers" else format_sizes(result)
        (staging / f"{stem}.md").write_text(table + "\n")
        (plot_levers if stem == "levers" else plot_sizes)(result, staging / f"{stem}.png")
