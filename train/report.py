"""Numbers and pictures of a run: accuracy, per-class precision/recall,
confusion matrix, learning curves, sweep comparison, reliability diagram,
risk-coverage curve."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display (CI, servers)
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from train.calibrate import CalibrationResult, ReliabilityBins
from train.fit import History


def classification_metrics(
    logits: np.ndarray, targets: np.ndarray, labels: Sequence[str]
) -> dict[str, Any]:
    """Accuracy, per-class precision/recall/F1 and the confusion matrix.

    Args:
        logits: float array of shape (n, C); the predicted class is the argmax.
        targets: int array of shape (n,), true class indices in [0, C).
        labels: sequence of C str, the class names in logit order.

    Returns:
        dict with accuracy (float; 0.0 when n is 0), n (int), per_class
        ({label: precision, recall, f1, support}; 0.0 where undefined) and
        confusion_matrix (C x C list of int; rows true, columns predicted).
    """
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
    """Accuracy and loss per epoch, training and validation, kept epoch marked.

    Args:
        history: History of the fit.
        path: Path of the PNG to write (overwritten).
        title: str, the figure title; "" gives "Learning curves".
    """
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
    """The confusion matrix as an annotated heat map.

    Args:
        matrix: C x C counts (rows true class, columns predicted).
        labels: sequence of C str, the class names.
        path: Path of the PNG to write (overwritten).
        title: str, the figure title.
    """
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


def plot_reliability_diagram(
    before: ReliabilityBins, after: ReliabilityBins, path: Path, *, title: str
) -> None:
    """Reliability diagram (Guo et al. 2017, fig. 1): per-bin accuracy against
    confidence, before and after temperature scaling; the diagonal is calibrated."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.8), sharey=True)
    for ax, bins, name in ((axes[0], before, "before"), (axes[1], after, "after")):
        width = float(bins.edges[1] - bins.edges[0])
        used = bins.counts > 0
        centers = bins.edges[:-1] + width / 2
        ax.bar(centers[used], bins.accuracy[used], width=width, edgecolor="black", label="accuracy")
        ax.bar(
            centers[used],
            (bins.confidence - bins.accuracy)[used],
            bottom=bins.accuracy[used],
            width=width,
            color="tab:red",
            alpha=0.3,
            edgecolor="tab:red",
            label="gap to confidence",
        )
        ax.plot([0, 1], [0, 1], "--", color="grey", label="calibrated")
        for x, n in zip(centers[used], bins.counts[used], strict=True):
            ax.text(x, 0.02, str(int(n)), ha="center", fontsize=7, rotation=90)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence (max probability)")
        ax.set_title(f"{name} temperature scaling: ECE {bins.ece:.3f}")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=8)
    axes[0].set_ylabel("accuracy (bar labels: images per bin)")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_risk_coverage(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
    path: Path,
    *,
    goal: float,
    points: Mapping[str, tuple[float, float]],
    title: str,
) -> None:
    """Answered accuracy against coverage (Geifman and El-Yaniv 2017), one line
    per split, the goal as a line and each split's chosen threshold as a dot.

    curves: name -> (coverage, risk) from `train.calibrate.risk_coverage`;
    points: name -> (coverage, answered accuracy) at the threshold.
    """
    fig, ax = plt.subplots(figsize=(7.5, 5))
    for i, (name, (coverage, risk)) in enumerate(curves.items()):
        (line,) = ax.plot(coverage, 1 - risk, label=name)
        if name in points:
            cov, acc = points[name]
            ax.plot([cov], [acc], "o", color=line.get_color())
            ax.annotate(
                f"{name}: {cov:.0%} answered, {acc:.1%} right",
                (cov, acc),
                fontsize=8,
                xytext=(6, 8 if i % 2 == 0 else -14),  # one above, the next below
                textcoords="offset points",
            )
    ax.axhline(goal, color="grey", linestyle=":", label=f"goal {goal:.0%}")
    ax.set_xlim(0, 1)
    ax.set_ylim(max(0.0, min(0.5, goal - 0.3)), 1.005)
    ax.set_xlabel("coverage (share answered, most confident first)")
    ax.set_ylabel("accuracy of the answered share")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


RELIABILITY_PNG = "reliability_diagram.png"
RISK_COVERAGE_PNG = "risk_coverage.png"


def plot_calibration(result: CalibrationResult, directory: Path, *, title: str) -> None:
    """reliability_diagram.png (the test split when there is one) and risk_coverage.png."""
    shown = result.shown
    plot_reliability_diagram(
        result.bins[f"{shown}_before"],
        result.bins[f"{shown}_after"],
        directory / RELIABILITY_PNG,
        title=f"{title}: reliability on {shown}, T = {result.temperature:.2f} "
        f"(fit on {result.fitted_on_text})",
    )
    points = {}
    for name in result.curves:
        info = result.unsure[name]
        if info["answered_accuracy"] is not None:
            points[name] = (info["coverage"], info["answered_accuracy"])
    plot_risk_coverage(
        result.curves,
        directory / RISK_COVERAGE_PNG,
        goal=result.goal,
        points=points,
        title=f"{title}: threshold {result.threshold:.3f} (chosen on {result.fitted_on_text})",
    )
