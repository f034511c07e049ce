"""`check_bundles`: prove each bundle predicts like the Keras model it came from.

For every variant, on held-out images (the test split by default):

- fidelity: top-1 agreement with Keras, max |logit difference|, accuracy and
  its change against Keras. The TFLite side runs the serving path itself
  (`inference.Classifier.predict_file`: file -> decode -> preprocess ->
  interpreter); the Keras side preprocesses the same files with the same
  `inference.preprocess_file` and predicts in batches.
- cost: file size, interpreter load time, median and p95 single-image latency
  for each thread count (float32 also under `reference_runtime`, tf.lite by
  default, the yardstick for "the runtime is not slower than TensorFlow's").
- portability: which installed runtimes load it, with each refusal's message.
- calibrated answers: with the manifest's temperature and unsure threshold,
  the largest change of a calibrated score against Keras, the share answered
  "unsure", the accuracy of the answered share, and how many images change
  decision (answered by one, unsure by the other) against Keras.
- near-ties: for each image whose top-1 answer changed, how far apart Keras's
  own top-1 and top-2 logits were, beside the median of that gap over all
  images (information only: pass/fail does not use it).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType

import numpy as np

from convert._errors import ConvertError
from convert._export import VARIANTS, check_variants
from convert._latency import with_latencies
from convert._machine import OtherLoad, environment
from convert._portability import load_classifier, loads_with, serving_runtime
from convert._results import CheckReport as CheckReport
from convert._results import Latency as Latency
from convert._results import RuntimeLoad as RuntimeLoad
from convert._results import Threshold as Threshold
from convert._results import VariantResult as VariantResult
from convert._results import speedup_1thread as speedup_1thread
from convert._source import (
    TrainOutput,
    load_keras_model,
    read_train_output,
    require_images,
    sample_images,
    source_sha256,
)
from inference import (
    FORMAT_RUNTIMES,
    MANIFEST_FILENAME,
    RUNTIMES,
    Bundle,
    Classifier,
    InferenceError,
    preprocess_file,
    read_bundle,
)
from train.output import METRICS_FILENAME

log = logging.getLogger("convert")


# The acceptance bar of issue 3. float32 should be the same function up to
# float rounding; float16 weights move logits a little; int8 trades ~1 point.
DEFAULT_THRESHOLDS: Mapping[str, Threshold] = MappingProxyType(
    {
        "float32": Threshold(min_agreement_pct=100.0, max_abs_logit_diff=1e-4),
        "float16": Threshold(min_agreement_pct=99.5),
        # Issue 13: a quantized variant must keep the model's answers. int8 must
        # also be worth its accuracy risk: >= 2.5x float32's speed at 1 thread.
        "dynamic": Threshold(min_agreement_pct=99.0, max_accuracy_drop_pts=1.5),
        "int8": Threshold(
            min_agreement_pct=98.5, max_accuracy_drop_pts=0.5, min_speedup_1thread=2.5
        ),
        # ONNX float32 (tf2onnx) is the same function as Keras: float32's bar.
        "onnx": Threshold(min_agreement_pct=100.0, max_abs_logit_diff=1e-4),
    }
)


@dataclass(frozen=True)
class CheckConfig:
    """What to check and how hard; `python -m convert check` flags override these."""

    train_dir: Path
    out_dir: Path
    variants: tuple[str, ...] | None = None  # None: every bundle found in out_dir
    images_dir: Path | None = None  # None: the test split of metrics.json's data_dir
    max_images: int | None = None  # None: all; else a seeded sample of this many
    seed: int = 1
    thresholds: Mapping[str, Threshold] = field(default_factory=lambda: DEFAULT_THRESHOLDS)
    threads: tuple[int, ...] = (1, 2)
    # 50 timed invokes after 5 warm-ups: p95 then rests on the 3 slowest runs;
    # XNNPack packs weights on the first invoke, which the warm-up absorbs.
    latency_runs: int = 50
    warmup_runs: int = 5
    runtime: str | None = None  # serving runtime; None: inference's default order
    reference_runtime: str | None = "tensorflow"  # float32 latency also under this one
    batch_size: int = 32  # Keras-side batch

    def __post_init__(self) -> None:
        object.__setattr__(self, "train_dir", Path(self.train_dir))
        object.__setattr__(self, "out_dir", Path(self.out_dir))
        if self.images_dir is not None:
            object.__setattr__(self, "images_dir", Path(self.images_dir))
        check_variants(self.variants, optional=True)
        if self.max_images is not None and (
            not isinstance(self.max_images, int) or self.max_images < 1
        ):
            raise ValueError(
                "`max_images` must be None or an int >= 1. "
                f"Received: max_images={self.max_images!r}"
            )
        if not self.threads or not all(isinstance(t, int) and t >= 1 for t in self.threads):
            raise ValueError(
                "`threads` must be a non-empty tuple of ints >= 1. "
                f"Received: threads={self.threads!r}"
            )
        for name in ("latency_runs", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be an int >= 1. Received: {name}={value!r}")
        if not isinstance(self.warmup_runs, int) or self.warmup_runs < 0:
            raise ValueError(
                f"`warmup_runs` must be an int >= 0. Received: warmup_runs={self.warmup_runs!r}"
            )
        for name in ("runtime", "reference_runtime"):
            value = getattr(self, name)
            if value is not None and value not in RUNTIMES:
                raise ValueError(
                    f"`{name}` must be None or one of {sorted(RUNTIMES)}. "
                    f"Received: {name}={value!r}"
                )
        unknown = sorted(set(self.thresholds) - set(VARIANTS))
        if unknown:
            raise ValueError(
                f"`thresholds` keys must be variant names from {list(VARIANTS)}. "
                f"Received: {unknown}"
            )


def check_bundles(config: CheckConfig) -> CheckReport:
    """Measure every bundle in `config.out_dir` against the Keras model.

    Each bundle classifies the check images (held-out photos, decoded and
    preprocessed as in serving) and is compared with the Keras model in
    `config.train_dir`: top-1 agreement (%), max |logit difference|, calibrated
    score differences and answered/unsure decisions; then interpreter latency
    (ms, median and p95 per thread count, after warm-up runs) and which
    runtimes load it. `config.thresholds` decide pass/fail per variant.

    Args:
        config: what to check (`train_dir`, `out_dir`, `variants`, `images_dir`,
            `max_images`, thresholds, thread counts, runs, runtimes).

    Returns:
        The `CheckReport` (one `VariantResult` per bundle; `passed` is False if
        any threshold failed). Nothing is written: `convert.write_report`
        saves it as `out_dir/report.json` and `report.md` (the CLI does).

    Raises:
        ConvertError: the training output is missing or malformed, the bundle
            folder or every bundle is missing, a bundle is invalid or was
            converted from a different model (sha256, labels, image_size), there
            are no check images, or a check image cannot be read or predicted.
    """
    machine = environment()
    train = read_train_output(config.train_dir)
    source_hash = source_sha256(train)
    bundles = _find_bundles(config, train, source_hash)
    images_dir, images = _check_images(config, train)
    truth = np.array([_label_index(p, train.labels) for p in images])
    labeled = truth >= 0
    log.info("checking %s on %d images from %s", list(bundles), len(images), images_dir)

    keras_logits = _keras_logits(train, images, batch_size=config.batch_size)
    keras_top1 = keras_logits.argmax(axis=1)
    keras_accuracy = _accuracy(keras_top1, truth, labeled)
    keras_answers = _answers(keras_logits, train.temperature, train.unsure_threshold)
    keras_median_gap = float(np.median(top2_gaps(logits=keras_logits)))

    results = [
        _check_variant(
            config, variant, bundle, images, keras_logits, keras_accuracy, truth, labeled
        )
        for variant, bundle in bundles.items()
    ]
    sample = _preprocess(images[0], train.image_size)
    with OtherLoad() as other_load:
        results = with_latencies(
            results,
            sample,
            threads=config.threads,
            runtime=config.runtime,
            reference_runtime=config.reference_runtime,
            runs=config.latency_runs,
            warmup=config.warmup_runs,
        )
    machine["other_cpu_load_during_timing"] = other_load.cores
    results = _with_speed_failures(config, results)
    for result in results:
        log.info(
            "%s: agreement %.2f%%, max |logit diff| %.2e, %s",
            result.variant,
            result.agreement_pct,
            result.max_abs_logit_diff,
            "PASS" if result.passed else "FAIL: " + "; ".join(result.failures),
        )
    report = CheckReport(
        train_dir=train.directory,
        out_dir=config.out_dir,
        source_model_sha256=source_hash,
        images_dir=images_dir,
        n_images=len(images),
        n_labeled=int(labeled.sum()),
        keras_accuracy_pct=keras_accuracy,
        thresholds=config.thresholds,
        results=tuple(results),
        environment=machine,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        temperature=train.temperature,
        unsure_threshold=train.unsure_threshold,
        keras_unsure_pct=keras_answers.unsure_pct,
        keras_answered_accuracy_pct=keras_answers.answered_accuracy_pct(truth, labeled),
        keras_median_top2_gap=keras_median_gap,
    )
    return report


def _find_bundles(config: CheckConfig, train: TrainOutput, source_hash: str) -> dict[str, Bundle]:
    out_dir = config.out_dir
    if not out_dir.is_dir():
        raise ConvertError(f"Bundle folder not found: {str(out_dir)!r}")
    names = config.variants or tuple(
        v for v in VARIANTS if (out_dir / v / MANIFEST_FILENAME).is_file()
    )
    if not names:
        raise ConvertError(f"No bundles ({'/'.join(VARIANTS)} folders) in {str(out_dir)!r}.")
    bundles = {}
    for name in names:
        try:
            bundle = read_bundle(out_dir / name)
        except InferenceError as exc:
            raise ConvertError(str(exc)) from None
        manifest = bundle.manifest
        if manifest.source_model_sha256 != source_hash:
            raise ConvertError(
                f"Bundle {str(bundle.directory)!r} was converted from a different model "
                f"(source_model_sha256 {manifest.source_model_sha256[:12]}..., but "
                f"{train.model_path} is {source_hash[:12]}...)."
            )
        if manifest.labels != train.labels or manifest.image_size != train.image_size:
            raise ConvertError(
                f"Bundle {str(bundle.directory)!r} labels/image_size disagree with "
                f"{train.directory / METRICS_FILENAME}."
            )
        bundles[name] = bundle
    return bundles


def _check_images(config: CheckConfig, train: TrainOutput) -> tuple[Path, list[Path]]:
    directory = config.images_dir or train.split("test")
    if directory is None:
        raise ConvertError(
            "No check images: pass --images (images_dir=) a folder of held-out images; "
            "metrics.json records no data_dir with a test split."
        )
    images = require_images(directory)
    if config.max_images is not None:
        images = sample_images(images, size=config.max_images, seed=config.seed)
    return directory, images


def _label_index(path: Path, labels: tuple[str, ...]) -> int:
    """The true class from an `<label>/<file>` layout; -1 when the folder is no label."""
    name = path.parent.name
    return labels.index(name) if name in labels else -1


def _accuracy(top1: np.ndarray, truth: np.ndarray, labeled: np.ndarray) -> float | None:
    if not labeled.any():
        return None
    return float(100.0 * np.mean(top1[labeled] == truth[labeled]))


def _preprocess(path: Path, image_size: int) -> np.ndarray:
    try:
        return preprocess_file(path, image_size=image_size)
    except (InferenceError, OSError) as exc:
        raise ConvertError(f"Cannot read check image {str(path)!r}: {exc}") from None


@dataclass(frozen=True)
class _Answers:
    """Calibrated scores softmax(logits / T) and the answered/unsure decision."""

    scores: np.ndarray  # (n, k)
    answered: np.ndarray  # (n,) bool
    threshold: float | None

    @property
    def unsure_pct(self) -> float | None:
        return None if self.threshold is None else float(100.0 * np.mean(~self.answered))

    def answered_accuracy_pct(self, truth: np.ndarray, labeled: np.ndarray) -> float | None:
        if self.threshold is None:
            return None
        mask = self.answered & labeled
        if not mask.any():
            return None
        return float(100.0 * np.mean(self.scores[mask].argmax(axis=1) == truth[mask]))


def _answers(logits: np.ndarray, temperature: float | None, threshold: float | None) -> _Answers:
    z = logits.astype(np.float64) / (1.0 if temperature is None else temperature)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    scores = e / e.sum(axis=1, keepdims=True)
    answered = np.ones(len(z), dtype=bool) if threshold is None else scores.max(axis=1) >= threshold
    return _Answers(scores, answered, threshold)


def _keras_logits(train: TrainOutput, images: list[Path], *, batch_size: int) -> np.ndarray:
    model = load_keras_model(train)
    chunks = []
    for start in range(0, len(images), batch_size):
        batch = np.stack(
            [_preprocess(p, train.image_size) for p in images[start : start + batch_size]]
        )
        chunks.append(np.asarray(model.predict_on_batch(batch), dtype=np.float32))
    return np.concatenate(chunks)


def _check_variant(
    config: CheckConfig,
    variant: str,
    bundle: Bundle,
    images: list[Path],
    keras_logits: np.ndarray,
    keras_accuracy: float | None,
    truth: np.ndarray,
    labeled: np.ndarray,
) -> VariantResult:
    runtime = serving_runtime(config.runtime, bundle.manifest.format)
    try:
        load_ms, clf = _timed_load(bundle.directory, threads=max(config.threads), runtime=runtime)
    except InferenceError as exc:  # e.g. no runtime installed for this bundle's format
        raise ConvertError(f"{variant}: cannot load the bundle: {exc}") from None
    try:
        logits = np.stack([np.asarray(clf.predict_file(p).logits) for p in images])
    except InferenceError as exc:
        raise ConvertError(f"{variant}: cannot predict a check image: {exc}") from None
    top1 = logits.argmax(axis=1)
    changed = top1 != keras_logits.argmax(axis=1)
    agreement = float(100.0 * np.mean(~changed))
    changed_gaps = np.sort(top2_gaps(logits=keras_logits)[changed])
    max_diff = float(np.max(np.abs(logits - keras_logits)))
    accuracy = _accuracy(top1, truth, labeled)
    delta = None if accuracy is None or keras_accuracy is None else accuracy - keras_accuracy

    failures = _failures(
        config.thresholds.get(variant), agreement=agreement, max_diff=max_diff, delta=delta
    )
    # The bundle's own temperature and threshold; Keras's answers use the same ones.
    m = bundle.manifest
    ours = _answers(logits, m.temperature, m.unsure_threshold)
    theirs = _answers(keras_logits, m.temperature, m.unsure_threshold)
    changes = int(np.sum(ours.answered != theirs.answered))
    return VariantResult(
        variant=variant,
        bundle=bundle.directory,
        runtime=f"{clf.runtime.name} {clf.runtime.version}",
        size_bytes=len(bundle.model_bytes),
        n_images=len(images),
        agreement_pct=agreement,
        max_abs_logit_diff=max_diff,
        accuracy_pct=accuracy,
        accuracy_delta_pts=delta,
        load_ms=load_ms,
        latency=(),  # filled in by _with_latencies
        reference_latency=(),
        loads_with=tuple(
            loads_with(name, bundle.model_bytes) for name in FORMAT_RUNTIMES[m.format]
        ),
        failures=failures,
        max_abs_score_diff=float(np.max(np.abs(ours.scores - theirs.scores))),
        unsure_pct=ours.unsure_pct,
        answered_accuracy_pct=ours.answered_accuracy_pct(truth, labeled),
        decision_changes=changes,
        decision_change_pct=float(100.0 * changes / len(images)),
        model_format=m.format,
        changed_answer_gaps=tuple(float(g) for g in changed_gaps),
    )


def top2_gaps(logits: np.ndarray) -> np.ndarray:
    """Each row's largest minus second-largest logit: how decided its top-1 answer is.

    A gap near 0 is a near-tie: a tiny change of the logits (float16 weights,
    quantization) can swap the top-1 class without the model really disagreeing.

    Args:
        logits: (n, k) float logits, k >= 2 classes (any float or int dtype).

    Returns:
        (n,) float64 gaps, >= 0, in logit units.

    Raises:
        ValueError: `logits` is not 2-D or has fewer than 2 columns.
    """
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim != 2 or z.shape[1] < 2:
        raise ValueError(f"`logits` must be 2-D (n, k) with k >= 2. Received: shape {z.shape}")
    # A partial sort is enough: only the two largest of each row matter.
    top = np.partition(z, kth=-2, axis=1)
    return top[:, -1] - top[:, -2]


def _timed_load(directory: Path, *, threads: int, runtime: str | None) -> tuple[float, Classifier]:
    """Median wall time of three loads (read, sha256, interpreter, allocate), and the last."""
    times = []
    for _ in range(3):
        start = time.perf_counter()
        clf = load_classifier(directory, threads=threads, runtime=runtime)
        times.append(1000.0 * (time.perf_counter() - start))
    return float(np.median(times)), clf


def _with_speed_failures(config: CheckConfig, results: list[VariantResult]) -> list[VariantResult]:
    """Add a failure to each variant slower than its `min_speedup_1thread` bar."""
    out = []
    for result in results:
        threshold = config.thresholds.get(result.variant)
        bar = None if threshold is None else threshold.min_speedup_1thread
        speedup = speedup_1thread(result, results)
        if bar is not None and speedup is not None and speedup < bar:
            failure = f"1-thread speedup over float32 {speedup:.2f}x < {bar:g}x"
            result = dataclasses.replace(result, failures=(*result.failures, failure))
        out.append(result)
    return out


def _failures(
    threshold: Threshold | None, *, agreement: float, max_diff: float, delta: float | None
) -> tuple[str, ...]:
    if threshold is None:
        return ()
    failures = []
    # 1e-9 absorbs float rounding in the percentage (e.g. 100 * 372 / 372).
    if agreement < threshold.min_agreement_pct - 1e-9:
        failures.append(f"agreement {agreement:.2f}% < {threshold.min_agreement_pct:g}%")
    if threshold.max_abs_logit_diff is not None and max_diff > threshold.max_abs_logit_diff:
        failures.append(f"max |logit diff| {max_diff:.2e} > {threshold.max_abs_logit_diff:g}")
    drop_limit = threshold.max_accuracy_drop_pts
    if drop_limit is not None and delta is not None and -delta > drop_limit + 1e-9:
        failures.append(f"accuracy drop {-delta:.2f} pts > {threshold.max_accuracy_drop_pts:g}")
    return tuple(failures)
