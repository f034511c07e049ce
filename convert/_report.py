"""A `CheckReport` as report.json (for programs) and report.md (a table for people).

Imports the results only (convert/_results.py), never the measuring code:
`check_bundles` returns the report, its caller writes it with `write_report`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from convert._results import CheckReport, Latency, VariantResult, report_to_json
from inference import write_atomic, write_json_atomic
from train.output import KERAS_FILENAME

REPORT_JSON = "report.json"
REPORT_MD = "report.md"


def report_to_markdown(report: CheckReport) -> str:
    """`report` as report.md's text: table, changed answers, comparisons, refusals, thresholds."""
    threads = [lat.threads for lat in report.results[0].latency] if report.results else []
    header = [
        "variant",
        "runtime",
        "size (MB)",
        "load (ms)",
        "accuracy",
        "Δ acc (pts)",
        "agreement",
        "max \\|Δ logit\\|",
        "max \\|Δ score\\|",
        "unsure",
        "answered acc",
        "decision changes",
        *[f"{t} thread{'s' if t > 1 else ''} p50 / p95 (ms)" for t in threads],
        "loads with",
        "result",
    ]
    rows = []
    for r in report.results:
        rows.append(
            [
                r.variant,
                r.runtime,
                f"{r.size_bytes / 1e6:.1f}",
                f"{r.load_ms:.0f}",
                _pct(r.accuracy_pct),
                "—" if r.accuracy_delta_pts is None else f"{r.accuracy_delta_pts:+.2f}",
                _pct(r.agreement_pct),
                f"{r.max_abs_logit_diff:.1e}",
                f"{r.max_abs_score_diff:.1e}",
                _pct(r.unsure_pct),
                _pct(r.answered_accuracy_pct),
                f"{r.decision_changes} ({r.decision_change_pct:.2f}%)",
                *[_latency(lat) for lat in r.latency],
                ", ".join(x.runtime for x in r.loads_with if x.status == "ok") or "none",
                "pass" if r.passed else "**FAIL**: " + "; ".join(r.failures),
            ]
        )
        if r.reference_latency:
            rows.append(
                [
                    r.variant,
                    r.reference_latency[0].runtime,
                    f"{r.size_bytes / 1e6:.1f}",
                    *["—"] * 9,
                    *[_latency(lat) for lat in r.reference_latency],
                    "",
                    "latency only",
                ]
            )
    lines = [
        "# Conversion check",
        "",
        f"Keras model `{report.train_dir / KERAS_FILENAME}` "
        f"(sha256 `{report.source_model_sha256[:12]}…`), "
        f"{report.n_images} images from `{report.images_dir}` ({report.n_labeled} labeled); "
        f"Keras accuracy {_pct(report.keras_accuracy_pct)}.",
        "",
        _calibration_line(report),
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
        *["| " + " | ".join(row) + " |" for row in rows],
        "",
        *_changed_answers(report),
        *_comparisons(report),
        *_refusals(report.results),
        "Thresholds: "
        + "; ".join(
            f"{name} agreement >= {t.min_agreement_pct:g}%"
            + (
                f", max \\|Δ logit\\| <= {t.max_abs_logit_diff:g}"
                if t.max_abs_logit_diff is not None
                else ""
            )
            + (
                f", accuracy drop <= {t.max_accuracy_drop_pts:g} pts"
                if t.max_accuracy_drop_pts is not None
                else ""
            )
            + (
                f", 1-thread speedup over float32 >= {t.min_speedup_1thread:g}x"
                if t.min_speedup_1thread is not None
                else ""
            )
            for name, t in report.thresholds.items()
        )
        + ".",
        "",
        f"Measured {report.created_at} on {_machine(report.environment)}.",
        "",
        f"**Result: {'PASS' if report.passed else 'FAIL'}**",
        "",
    ]
    return "\n".join(lines)


def _calibration_line(report: CheckReport) -> str:
    """Scores and the unsure decision, as the runtime computes them."""
    if report.temperature is None:
        return (
            "Scores: uncalibrated softmax (metrics.json has no temperature: trained before "
            "calibration); no unsure threshold."
        )
    text = f"Scores: softmax(logits / {report.temperature:.3f}), calibrated by training."
    if report.unsure_threshold is None:
        return text + " No unsure threshold."
    return (
        f"{text} Unsure below a top score of {report.unsure_threshold:.3f}: Keras answers "
        f"unsure on {_pct(report.keras_unsure_pct)} of the images, and is right on "
        f"{_pct(report.keras_answered_accuracy_pct)} of those it answers. "
        "Decision changes: images one of the variant and Keras answers and the other calls unsure."
    )


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}%"


def _latency(lat: Latency) -> str:
    return f"{lat.median_ms:.1f} / {lat.p95_ms:.1f}"


# More gaps than this make the line unreadable; the smallest ones tell the story.
_MAX_GAPS_SHOWN = 10


def _changed_answers(report: CheckReport) -> list[str]:
    """A bullet per variant that changed any top-1 answer, with Keras's own gaps there.

    Keras's top-1 minus top-2 logit on those images, beside its median over all
    images, so a near-tie reads apart from a real disagreement.
    """
    lines = [
        _changed_answers_line(result=r, median_gap=report.keras_median_top2_gap, n=report.n_images)
        for r in report.results
        if r.changed_answer_gaps
    ]
    return [*lines, ""] if lines else []


def _changed_answers_line(*, result: VariantResult, median_gap: float | None, n: int) -> str:
    gaps = result.changed_answer_gaps
    count = len(gaps)
    shown = ", ".join(f"{g:.3f}" for g in gaps[:_MAX_GAPS_SHOWN])
    if count > _MAX_GAPS_SHOWN:
        shown += f", ... and {count - _MAX_GAPS_SHOWN} more"
    # None: a report.json from before the median was recorded.
    median = "" if median_gap is None else f" (median gap over all {n} images: {median_gap:.3f})"
    verb = "answer differs" if count == 1 else "answers differ"
    return (
        f"- {result.variant}: {count} {verb} from Keras; "
        f"Keras top-2 logit gaps of those images: {shown}{median}"
    )


def _comparisons(report: CheckReport) -> list[str]:
    """The figures the issue sets targets for: int8 speed-up, runtime vs tf.lite."""
    by_variant = {r.variant: r for r in report.results}
    lines = []
    base = by_variant.get("float32")
    if base is not None:
        for other in ("float16", "dynamic", "int8"):
            if other in by_variant:
                ratios = ", ".join(
                    f"{b.median_ms / o.median_ms:.2f}x at {b.threads}T"
                    for b, o in zip(base.latency, by_variant[other].latency, strict=True)
                )
                lines.append(f"- {other} speed-up over float32 (median): {ratios}")
        if base.reference_latency:
            ratios = ", ".join(
                f"{100 * (b.median_ms / r.median_ms - 1):+.1f}% at {b.threads}T"
                for b, r in zip(base.latency, base.reference_latency, strict=True)
            )
            lines.append(
                f"- float32 under {base.runtime} vs {base.reference_latency[0].runtime} "
                f"(median latency): {ratios}"
            )
    return [*lines, ""] if lines else []


def _refusals(results: tuple[VariantResult, ...]) -> list[str]:
    lines = []
    for r in results:
        for load in r.loads_with:
            if load.status != "ok":
                detail = load.error.splitlines()[0] if load.error else ""
                version = f" {load.version}" if load.version else ""
                lines.append(
                    f"- {r.variant} / {load.runtime}{version}: {load.status}"
                    + (f" — `{detail}`" if detail else "")
                )
    return ["Runtimes that cannot load a bundle:", "", *lines, ""] if lines else []


def _machine(env: dict[str, Any]) -> str:
    other = env.get("other_cpu_load_during_timing")
    busy = "" if other is None else f"; other processes kept {other:.2f} CPUs busy during timing"
    return f"{env.get('processor', '?')}, {env.get('cpus_usable', '?')} usable CPUs{busy}"


def write_report(report: CheckReport, out_dir: str | Path) -> None:
    """Write `out_dir/report.json` and `report.md`, each atomically (inference.write_atomic).

    Raises:
        OSError: `out_dir` cannot be written (no half-written file is left).
    """
    out_dir = Path(out_dir)
    write_json_atomic(out_dir / REPORT_JSON, report_to_json(report))
    write_atomic(out_dir / REPORT_MD, report_to_markdown(report))
