"""Numbers and pictures of a run: accuracy, per-class precision/recall,
confusion matrix, learning curves, sweep comparison."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display (CI, servers)
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from train.fit import History


def classification_metrics(
    logits: np.ndarray, targets: np.ndarray, labels: Sequence[str]
) -> dict[str, Any]:
    n = len(labels)
    predicted = np.argmax(logits, axis=1)
    matrix = np.zeros((n, n), dtype=np.int64)  # rows: true class, columns: predicted
    np.add.at(matrix, (targets, predicted), 1)
    per_class: dict[str, dict[str, float | int]] = {}
    for i, label in enumerate(labels):
        tp = int(matrix[i, i])
        predicted_i, actual_i = int(matrix[:, i].sum()), int(matrix[i, :].sum())
        precision = tp / predicted_i if predicted_i else 0.0
        recall = tp / actual_i if actual_i else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[label] = {"precision": precision, "recall": recall, "f1": f1, "support": actual_i}
    return {
        "accuracy": float(np.trace(matrix) / max(1, matrix.sum())),
        "n": int(matrix.sum()),
        "per_class": per_class,
        "confusion_matrix": matrix.tolist(),
    }


def plot_learning_curves(history: History, path: Path, *, title: str = "") -> None:
    epochs = np.arange(1, len(history.epochs) + 1)
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(11, 4))
    for key, style in (("accuracy", "-"), ("val_accuracy", "-o")):
        ax_acc.plot(epochs, [e[key] for e in history.epochs], style, label=key, markersize=3)
    for key, style in (("loss", "-"), ("val_loss", "-o")):
        ax_loss.plot(epochs, [e[key] for e in history.epochs], style, label=key, markersize=3)
    ax_acc.axvline(
        history.best_epoch, color="grey", linestyle=":", label=f"kept: epoch {history.best_epoch}"
    )
    for ax, name in ((ax_acc, "accuracy"), (ax_loss, "loss")):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title or "Learning curves")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_confusion_matrix(
    matrix: Sequence[Sequence[int]], labels: Sequence[str], path: Path, *, title: str
) -> None:
    m = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(7.5, 6.5))
    ax.imshow(m, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    threshold = m.max() / 2 if m.size else 0
    for (i, j), value in np.ndenumerate(m):
        ax.text(
            j,
            i,
            str(value),
            ha="center",
            va="center",
            fontsize=8,
            color="white" if value > threshold else "black",
        )
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_sweep(curves: Mapping[str, Sequence[float]], path: Path, *, param: str) -> None:
    """Validation accuracy per epoch, one line per swept value (the seed's dropout plot)."""
    fig, ax = plt.subplots(figsize=(8, 5))
    for value, accuracies in curves.items():
        ax.plot(np.arange(1, len(accuracies) + 1), accuracies, label=f"{param}={value}")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy")
    ax.set_title(f"Sweep over {param}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
