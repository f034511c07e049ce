"""Fine-tune a trained run's last Xception blocks on cached activations: the CPU's stand-in
for `python -m train --fine-tune N --augment`, measured on validation.

    python -m bench.finetune_cached runs/acc/prod_299 --out runs/finetune_cached --blocks 2
    python -m bench.finetune_cached runs/acc/prod_299 --out runs/ft_b1 --blocks 1 --flip \\
        --learning-rate 3e-5 --epochs 6
    python -m bench.finetune_cached runs/acc/prod_299_cv --out runs/ft_views --blocks 2 \\
        --views flip crop flip_crop --epochs 4

Why it can run on a CPU: below the blocks being tuned, the base is frozen and its
BatchNorm is in inference mode, so what it hands block 15 - N (at 299 px, block
13's input is (19, 19, 728); block 14's (10, 10, 1024)) is the same every epoch.
It is computed once per photo and cached as float16 under CACHE_DIR/activations/,
keyed by the base's weights fingerprint, the input size and N. An epoch then
runs only the last N blocks and the head: about 40 s (N = 1) to 140 s (N = 2)
for 3,068 photos at 299 px on this project's 2 cores, where a pass through the
whole base per photo and epoch needs a GPU. The price: no random augmentation
of the photos themselves. Two stand-ins:
- `--views flip crop flip_crop` (any of train's cached views, `train.features.VIEWS`)
  adds each training photo's activations under those fixed transforms of the
  photo, computed and cached once per view like the plain ones (a base pass per
  photo and view, once), so an epoch sees 1 + len(views) times the photos;
- `--flip` mirrors the cached activation maps, cheaper, but not the
  activations of a mirrored photo.

Starts from the run's model.keras (its trained head, logits averaged over an
ensemble's heads) and trains the layers of blocks 15 - N .. 14 and the head
with Adam on the cross-entropy of the model's logits. Validation accuracy and
negative log-likelihood (nats) are printed after each epoch, epoch 0 being the
run as trained (from the float16 cache: it can differ from the run's own
validation figures in the last digits, or by a photo at a near-tie). The test
split is never read: this decides whether the lever helps, it does not measure
a product.

Writes OUT/finetune_cached.json, .md (printed) and .png (validation accuracy and
NLL per epoch). Exit status: 0 measured; 2 bad usage or input.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __name__ == "__main__":
    from inference import quiet_tensorflow

    # Its imports load Keras (train.model), --help too: preload TensorFlow silenced.
    quiet_tensorflow(sys.argv, os.environ, help_without_tensorflow=False)

import numpy as np

from bench._cli import run_dir_parser, write_results
from convert import ConvertError
from convert._source import load_keras_model, require_images, required_splits
from inference import InferenceError, preprocess_file, write_atomic
from inference.env import cache_dir_from_env
from train.features import VIEWS, load_preprocessed, view_params
from train.fit import cross_entropy, one_hot
from train.model import split_base, unfreeze_last_blocks, weights_fingerprint
from train.output import TrainOutputError, read_train_output

# Blocks 12-14 at most: below the exit flow every middle block's input is the
# same (19, 19, 728) at 299 px, so caching deeper only makes each epoch dearer.
MAX_BLOCKS = 3


def split_model(model: Any, *, blocks: int) -> tuple[Any, Any, Any]:
    """A trained run's image -> logits model as (base, trunk, tuned).

    tuned: cached activations -> logits, the last `blocks` blocks then the run's
    own pooling and head. Which of their layers train is `unfreeze_last_blocks`'
    choice (BatchNorm stays frozen, so it runs in inference mode).

    Raises:
        ValueError: `blocks` is not in [1, MAX_BLOCKS], or the model holds no
            nested Xception base.
    """
    import keras

    if not 1 <= blocks <= MAX_BLOCKS:
        raise ValueError(f"`blocks` must be in [1, {MAX_BLOCKS}]. Received: blocks={blocks!r}")
    base = next((layer for layer in model.layers if isinstance(layer, keras.Model)), None)
    if base is None:
        raise ValueError(
            "the run's model must hold its Xception base as a nested model "
            "(as `python -m train` saves it). Received: layers "
            f"{[layer.name for layer in model.layers][:8]}"
        )
    trunk, top = split_base(base, n_blocks=blocks)
    features = base._inbound_nodes[-1].output_tensors[0]  # the base's output in `model`
    head = keras.Model(features, model.output)
    inputs = keras.Input(shape=tuple(trunk.output.shape[1:]), name="activations")
    tuned = keras.Model(inputs, head(top(inputs, training=False)), name="tuned")
    return base, trunk, tuned


def cached_activations(
    trunk: Any,
    paths: Sequence[Path],
    *,
    image_size: int,
    cache: Path,
    view: str = "plain",
    batch_size: int = 32,
) -> tuple[np.ndarray, bool]:
    """(n, H, W, C) float16 trunk activations of `paths`, from `cache` or computed into it.

    The file is `cache` with a digest of the photos (path, size, mtime) in its
    name, so another list of photos, or a photo changed in place, gets its own
    file, and the name is never true of other contents. `view` (a key of
    `train.features.VIEWS`) transforms each decoded photo first and is part of
    the name, with the numbers its transform reads. A cached file that cannot be
    read, or holds another count or shape of maps, is computed again. Returns
    (activations, computed).

    Raises:
        InferenceError, OSError: a photo cannot be read or decoded.
    """
    digest = hashlib.sha256()
    for path in paths:
        stat = path.stat()
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    if view != "plain":
        digest.update(f"{view}\0{sorted(view_params(view).items())}".encode())
    stem = cache.stem if view == "plain" else f"{cache.stem}-{view}"
    cache = cache.with_name(f"{stem}-{digest.hexdigest()[:16]}.npy")
    expected = (len(paths), *(int(d) for d in trunk.output.shape[1:]))
    cached = _read_cached(cache, shape=expected)
    if cached is not None:
        return cached, False
    started, parts = time.perf_counter(), []
    for i in range(0, len(paths), batch_size):
        batch = np.stack(
            [_load(p, image_size=image_size, view=view) for p in paths[i : i + batch_size]]
        )
        parts.append(np.asarray(trunk.predict_on_batch(batch)).astype(np.float16))
        done = min(i + batch_size, len(paths))
        print(
            f"  {cache.stem}: {done}/{len(paths)} photos, {time.perf_counter() - started:.0f} s",
            file=sys.stderr,
        )
    acts = np.concatenate(parts)
    cache.parent.mkdir(parents=True, exist_ok=True)
    body = io.BytesIO()
    np.save(body, acts)
    # atomic, as the feature cache's entries: a killed run leaves no half-written file
    write_atomic(cache, body.getvalue(), durable=False)
    return acts, True


def _read_cached(path: Path, *, shape: tuple[int, ...]) -> np.ndarray | None:
    # Writes are atomic, so a bad file was damaged from outside: recompute, never stop.
    try:
        acts: np.ndarray = np.load(path)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, EOFError) as exc:  # truncated, empty, not an .npy
        print(f"  {path.name}: unreadable ({exc}), computing it again", file=sys.stderr)
        return None
    if acts.shape != shape or acts.dtype != np.float16:
        print(
            f"  {path.name}: {acts.dtype} {acts.shape}, not float16 {shape}; computing it again",
            file=sys.stderr,
        )
        return None
    return acts


def split_activations(
    trunk: Any,
    paths: Sequence[Path],
    classes: np.ndarray,
    *,
    views: Sequence[str],
    image_size: int,
    cache: Path,
) -> tuple[np.ndarray, np.ndarray, bool]:
    """The cached activations of `paths` under each of `views`, stacked view after view.

    Returns (x, y, computed): x (len(views) * n, H, W, C) float16, rows
    k * n .. (k + 1) * n - 1 being views[k] of paths in order; y (len(views) * n,)
    `classes` repeated once per view; computed, whether any view missed the cache.
    Each view is loaded, copied into x and dropped before the next one, so the
    peak memory is x plus one view (at 299 px with four views: 6.4 + 1.6 GB).

    Raises:
        InferenceError, OSError: a photo cannot be read or decoded.
    """
    x: np.ndarray | None = None
    computed, n = False, len(paths)
    for k, view in enumerate(views):
        acts, fresh = cached_activations(
            trunk, paths, image_size=image_size, cache=cache, view=view
        )
        computed = computed or fresh
        if len(views) == 1:
            return acts, classes, computed
        if x is None:
            x = np.empty((len(views) * n, *acts.shape[1:]), dtype=acts.dtype)
        x[k * n : (k + 1) * n] = acts
        del acts
    assert x is not None  # views is not empty
    return x, np.tile(classes, len(views)), computed


def _load(path: Path, *, image_size: int, view: str) -> np.ndarray:
    if view == "plain":  # serving's own path, as the run's validation figures
        return preprocess_file(path, image_size=image_size)
    return load_preprocessed(path, image_size=image_size, view=view)


def classes_of(paths: Sequence[Path], labels: Sequence[str]) -> np.ndarray:
    """(n,) int64 class indices from each photo's folder name.

    Raises:
        ValueError: a folder is not one of `labels`.
    """
    index = {name: i for i, name in enumerate(labels)}
    unknown = sorted({p.parent.name for p in paths} - set(index))
    if unknown:
        raise ValueError(f"class folders {unknown} are not in the run's labels {list(labels)}")
    return np.array([index[p.parent.name] for p in paths], dtype=np.int64)


def _validation_scores(tuned: Any, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    logits = np.concatenate(
        [
            np.asarray(tuned.predict_on_batch(x[i : i + 64].astype(np.float32)))
            for i in range(0, len(x), 64)
        ]
    )
    return {
        "val_accuracy": float(np.mean(logits.argmax(axis=1) == y)),
        "val_nll": cross_entropy(logits, y),
    }


def finetune(
    tuned: Any,
    train: tuple[np.ndarray, np.ndarray],
    validation: tuple[np.ndarray, np.ndarray],
    *,
    epochs: int,
    learning_rate: float,
    batch_size: int,
    flip: bool,
    seed: int,
) -> list[dict[str, Any]]:
    """Adam on the cross-entropy of `tuned`'s logits; one row per epoch, epoch 0 first.

    Args:
        tuned: from `split_model`, its trainable layers already chosen.
        train, validation: (activations (n, H, W, C) float16, classes (n,) int).
        flip: mirror a random half of each batch's activation maps (axis W).

    Returns:
        [{"epoch", "loss" (train, nats; None at epoch 0), "val_accuracy", "val_nll", "seconds"}].
    """
    import keras

    keras.utils.set_random_seed(seed)
    tuned.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss=keras.losses.CategoricalCrossentropy(from_logits=True),
    )
    x, y = train
    targets = one_hot(y, int(tuned.output.shape[-1]))
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = [
        {"epoch": 0, "loss": None, **_validation_scores(tuned, *validation), "seconds": 0.0}
    ]
    for epoch in range(1, epochs + 1):
        started, losses, order = time.perf_counter(), [], rng.permutation(len(x))
        for i in range(0, len(x), batch_size):
            picked = order[i : i + batch_size]
            batch = x[picked].astype(np.float32)
            if flip:
                mirror = rng.random(len(picked)) < 0.5
                batch[mirror] = batch[mirror][:, :, ::-1, :]
            losses.append(float(tuned.train_on_batch(batch, targets[picked])))
        rows.append(
            {
                "epoch": epoch,
                "loss": float(np.mean(losses)),
                **_validation_scores(tuned, *validation),
                "seconds": time.perf_counter() - started,
            }
        )
        r = rows[-1]
        print(
            f"epoch {epoch:2d}  loss {r['loss']:.4f}  val_acc {r['val_accuracy']:.4f}  "
            f"val_nll {r['val_nll']:.4f}  {r['seconds']:.0f} s",
            file=sys.stderr,
        )
    return rows


def to_markdown(result: dict[str, Any]) -> str:
    """The per-epoch table, epoch 0 being the run as trained."""
    lines = [
        f"`{result['command']}`",
        "",
        f"Fine-tuned: the last {result['blocks']} block(s) and the head "
        f"({result['trainable_params']:,} weights) on cached activations "
        f"{tuple(result['activation_shape'])} of {result['n_train']} training maps "
        f"(views: {', '.join(['plain', *result['views']])}"
        f"{'; maps mirrored at random' if result['flip'] else ''}); "
        f"validation, {result['n_validation']} photos.",
        "",
        "| epoch | train loss | val accuracy | val NLL | seconds |",
        "|---|---|---|---|---|",
    ]
    for r in result["epochs"]:
        loss = "—" if r["loss"] is None else f"{r['loss']:.4f}"
        lines.append(
            f"| {r['epoch']} | {loss} | {100 * r['val_accuracy']:.2f}% | "
            f"{r['val_nll']:.4f} | {r['seconds']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: Path) -> None:
    """Validation accuracy and NLL per epoch, side by side, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in result["epochs"]]
    fig, (acc, nll) = plt.subplots(1, 2, figsize=(9, 3.5))
    acc.plot(epochs, [100 * r["val_accuracy"] for r in result["epochs"]], marker="o")
    acc.set(xlabel="epoch (0: as trained)", ylabel="validation accuracy (%)")
    nll.plot(epochs, [r["val_nll"] for r in result["epochs"]], marker="o", color="tab:red")
    nll.set(xlabel="epoch (0: as trained)", ylabel="validation NLL (nats)")
    fig.suptitle(f"last {result['blocks']} block(s) fine-tuned on cached activations")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _parser() -> argparse.ArgumentParser:
    p = run_dir_parser(prog="python -m bench.finetune_cached", description=__doc__)
    p.add_argument(
        "--blocks",
        type=int,
        default=2,
        choices=range(1, MAX_BLOCKS + 1),
        help="how many of Xception's last blocks to tune (default 2)",
    )
    p.add_argument("--epochs", type=int, default=5, help="default 5")
    p.add_argument(
        "--learning-rate",
        type=float,
        default=3e-5,
        help="Adam's, default 3e-5 (fine-tuning takes a small one: Keras transfer-learning guide)",
    )
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--flip", action="store_true", help="mirror half of each batch's maps")
    p.add_argument(
        "--views",
        nargs="+",
        default=[],
        choices=sorted(set(VIEWS) - {"plain"}),
        metavar="VIEW",
        help="also train on the activations of these views of each training photo, "
        f"cached once per view ({', '.join(sorted(set(VIEWS) - {'plain'}))}); default none",
    )
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="activation cache root (default: env CLOTHING_CACHE_DIR, else "
        "~/.cache/clothing-classifier)",
    )
    p.add_argument("--verbose", action="store_true", help="also TensorFlow's C++ log lines")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = _parser()
    args = p.parse_args(argv)
    for name in ("epochs", "batch_size"):
        if getattr(args, name) < 1:
            p.error(
                f"`--{name.replace('_', '-')}` must be >= 1. Received: {name}={getattr(args, name)}"
            )
    if not args.learning_rate > 0:
        p.error(f"`--learning-rate` must be > 0. Received: learning_rate={args.learning_rate}")
    try:
        run = read_train_output(args.train_dir)
        names = ("train", "validation")
        folders = dict(zip(names, required_splits(run, *names), strict=True))
        # Both folders are made before any work, so a bad path fails in seconds.
        cache_root = (args.cache_dir or cache_dir_from_env()) / "activations"
        cache_root.mkdir(parents=True, exist_ok=True)
        args.out.mkdir(parents=True, exist_ok=True)
        model = load_keras_model(run)
        base, trunk, tuned = split_model(model, blocks=args.blocks)
        key = f"{weights_fingerprint(base)[:16]}-{run.image_size}px-last{args.blocks}"
        data: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        computed = False
        for name, folder in folders.items():
            paths = require_images(folder)
            classes = classes_of(paths, run.labels)
            # a view named twice is cached and used once
            views = list(dict.fromkeys(["plain", *(args.views if name == "train" else [])]))
            x, y, fresh = split_activations(
                trunk,
                paths,
                classes,
                views=views,
                image_size=run.image_size,
                cache=cache_root / key / f"{name}.npy",
            )
            data[name], computed = (x, y), computed or fresh
    # ValueError: a class folder the run does not know, or no Xception base
    except (ConvertError, TrainOutputError, InferenceError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    unfreeze_last_blocks(base, args.blocks)
    rows = finetune(
        tuned,
        data["train"],
        data["validation"],
        epochs=args.epochs,
        learning_rate=args.learning_rate,
        batch_size=args.batch_size,
        flip=args.flip,
        seed=args.seed,
    )
    result = {
        "command": "python -m bench.finetune_cached " + " ".join(argv),
        "blocks": args.blocks,
        "activation_shape": list(data["train"][0].shape[1:]),
        "trainable_params": int(sum(np.prod(w.shape) for w in tuned.trainable_weights)),
        "n_train": len(data["train"][1]),
        "n_validation": len(data["validation"][1]),
        "activations_computed": computed,
        "flip": args.flip,
        "views": list(dict.fromkeys(args.views)),
        "learning_rate": args.learning_rate,
        "epochs": rows,
        "best_epoch": max(rows, key=lambda r: r["val_accuracy"])["epoch"],
    }
    write_results(args.out, "finetune_cached", result, to_markdown(result))
    plot(result, args.out / "finetune_cached.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
