"""`run_bench`: every measurement of `python -m bench`, in order, into one result.

    machine -> training comparison -> model (train, convert, check; or reuse)
    -> multiply-adds -> latency (+ GEMM peak) -> serve venv -> cold start
    -> install size -> Lambda -> bench/results/<date>[-quick].json + .md

The training comparison and the model are needed by what follows, so their
failure stops the run; any later measurement that fails is recorded under
`errors` (and in the report) and the run goes on, exiting non-zero at the end.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from bench._coldstart import cold_start_json, measure_cold_start
from bench._config import REPO, BenchConfig
from bench._flops import PUBLISHED_XCEPTION_299_MACS, count_macs, xception_macs
from bench._lambda import lambda_figures
from bench._latency import measure_latency
from bench._machine import describe_machine, load_average
from bench._model import BenchModel, prepare_model
from bench._report import write_result
from bench._size import install_sizes, serve_venv
from train.output import KERAS_FILENAME

# The sample photo bench/serve.py also uses, when the data has it.
SAMPLE_IMAGE = Path("test/pants/4aabd82c-82e1-4181-a84d-d0c6e550d26d.jpg")
PUBLISHED_SOURCE = "Tan & Le 2019, EfficientNet, table 2"


class BenchError(ValueError):
    """Bad input for the benchmark (missing data or weights)."""


@dataclass(frozen=True)
class BenchOutput:
    result: dict[str, Any]
    json_path: Path
    md_path: Path

    @property
    def ok(self) -> bool:
        return not self.result["errors"]


class _Log:
    def __init__(self) -> None:
        self.start = time.perf_counter()

    def __call__(self, message: str) -> None:
        print(f"[bench {time.perf_counter() - self.start:6.0f}s] {message}", file=sys.stderr)


def check_inputs(config: BenchConfig) -> None:
    if not (config.data_dir / "train").is_dir() or not (config.data_dir / "test").is_dir():
        raise BenchError(
            f"`data_dir` must be a dataset folder with train/, validation/ and test/. "
            f"Received: data_dir={str(config.data_dir)!r}. Pass --data-dir or set "
            "CLOTHING_DATA_DIR."
        )
    weights = config.base_weights
    if weights not in ("imagenet", "none") and not Path(weights).expanduser().is_file():
        raise BenchError(
            f"`base_weights` must be 'imagenet' or an existing weights file. "
            f"Received: base_weights={weights!r}. Pass --base-weights or set XCEPTION_WEIGHTS."
        )


def run_bench(config: BenchConfig, *, command: str) -> BenchOutput:
    check_inputs(config)
    log = _Log()
    now = datetime.now().astimezone()
    effort = config.effort
    result: dict[str, Any] = {
        "schema": 1,
        "created_at": now.isoformat(timespec="seconds"),
        "date": now.date().isoformat(),
        "mode": config.mode,
        "command": command,
        "config": _config_json(config),
        "errors": {},
        "phases_s": {},
    }
    phases: dict[str, float] = result["phases_s"]

    @contextlib.contextmanager
    def phase(name: str, *, required: bool = False) -> Iterator[None]:
        log(f"{name} ...")
        start = time.perf_counter()
        try:
            yield
        except Exception as exc:
            if required:
                raise
            traceback.print_exc(file=sys.stderr)
            result["errors"][name] = f"{type(exc).__name__}: {exc}"
            log(f"{name} FAILED: {type(exc).__name__}: {exc}")
        finally:
            phases[name] = time.perf_counter() - start

    machine = describe_machine()
    machine["load_average_start"] = load_average()
    result["machine"] = machine
    log(
        f"{config.mode} run on {machine['cpu_model']}, {machine['usable_cores']} cores, "
        f"load {machine['load_average_start'][0]}"
    )

    from bench._training import measure_training  # imports TensorFlow

    features = {}
    result["training"] = {}
    with phase("training", required=True):
        for size in config.training_sizes:
            log(f"training comparison at {size} px")
            training, features[size] = measure_training(
                data_dir=config.data_dir,
                base_weights=config.base_weights,
                image_size=size,
                per_class=effort.per_class if size == config.image_size else effort.large_per_class,
                head_epochs=effort.head_epochs,
                verbose=False,
            )
            result["training"][str(size)] = training.to_json()
            log(
                f"  seed epoch {training.seed_epoch_s:.1f} s, head epoch "
                f"{training.head_epoch_s:.2f} s, extraction {training.extraction_s:.1f} s"
            )

    with phase("model", required=True):
        model = prepare_model(config, features=lambda: features[config.image_size], log=log)
    result["model"] = _model_json(model)
    result["accuracy"] = _accuracy_json(model)

    compute: dict[str, Any] = {}
    with phase("macs"):
        import keras

        compute["xception_299_macs"] = xception_macs(image_size=299).macs
        compute["published_299_macs"] = PUBLISHED_XCEPTION_299_MACS
        compute["published_source"] = PUBLISHED_SOURCE
        counted = count_macs(keras.models.load_model(model.train_dir / KERAS_FILENAME))
        compute.update(
            image_size=config.image_size,
            macs=counted.macs,
            macs_by_kind=counted.by_kind,
            other_ops=counted.other_ops,
            other_fraction=counted.other_fraction,
            uncounted=list(counted.uncounted),
        )
    if "macs" not in result["errors"]:
        result["compute"] = compute

    image = _sample_image(config.data_dir)
    variants = tuple(v["variant"] for v in result["accuracy"]["variants"])
    with phase("latency"):
        latency = measure_latency(
            train_dir=model.train_dir,
            bundles_dir=model.bundles_dir,
            variants=variants,
            image=image,
            image_size=config.image_size,
            threads=config.threads,
            effort=effort,
            log=log,
        )
        result["latency"] = latency.to_json()
        compute["gemm"] = {str(t): dataclasses.asdict(p) for t, p in latency.gemm.items()}
        compute["int8_gemm"] = {str(t): dataclasses.asdict(p) for t, p in latency.int8_gemm.items()}

    serve_python: Path | None = None
    with phase("serve_venv"):
        serve_python = serve_venv(config.work_dir, log=log)

    shipped = _shipped_variant()
    with phase("cold_start"):
        cold = measure_cold_start(
            bundle=model.bundle(shipped),
            keras_model=model.train_dir / KERAS_FILENAME,
            image=image,
            image_size=config.image_size,
            serve_python=serve_python,
            runs=effort.cold_runs,
            warmup=not config.quick,
        )
        result["cold_start"] = {
            **cold_start_json(cold),
            "bundle_variant": shipped,
            "warmup": not config.quick,
        }

    with phase("install"):
        if serve_python is None:
            raise RuntimeError("no serve venv (see the serve_venv error)")
        result["install"] = install_sizes(serve_python=serve_python)

    with phase("lambda"):
        result["lambda"] = lambda_figures(
            bundle=model.bundle(shipped),
            python=serve_python or Path(sys.executable),
            repeat=effort.lambda_repeat,
            cold_runs=effort.lambda_cold_runs,
        )

    machine["load_average_end"] = load_average()
    result["wall_s"] = time.perf_counter() - log.start
    json_path, md_path = write_result(result, out_dir=config.out_dir)
    log(f"wrote {md_path} and {json_path.name}")
    return BenchOutput(result=result, json_path=json_path, md_path=md_path)


def _config_json(config: BenchConfig) -> dict[str, Any]:
    data = dataclasses.asdict(config)
    for key, value in data.items():
        if isinstance(value, Path):
            data[key] = str(value)
    data["threads"] = list(config.threads)
    data["effort"] = dataclasses.asdict(config.effort)
    return data


def _model_json(model: BenchModel) -> dict[str, Any]:
    return {
        "directory": str(model.directory),
        "image_size": model.image_size,
        "subset": model.subset,
        "reused": model.reused,
        "seconds": model.seconds,
        "val_accuracy": model.metrics.get("val_accuracy"),
        "test_accuracy": model.metrics.get("test_accuracy"),
    }


def _accuracy_json(model: BenchModel) -> dict[str, Any]:
    report = model.check_report
    return {
        "images_dir": report["images_dir"],
        "n_images": report["n_images"],
        "keras_accuracy_pct": report["keras_accuracy_pct"],
        # calibrated answers (absent in reports from before calibration)
        "temperature": report.get("temperature"),
        "unsure_threshold": report.get("unsure_threshold"),
        "keras_unsure_pct": report.get("keras_unsure_pct"),
        "keras_answered_accuracy_pct": report.get("keras_answered_accuracy_pct"),
        "passed": report["passed"],
        "variants": [
            {
                "variant": v["variant"],
                "runtime": v["runtime"],
                "size_bytes": v["size_bytes"],
                "accuracy_pct": v["accuracy_pct"],
                "accuracy_delta_pts": v["accuracy_delta_pts"],
                "agreement_pct": v["agreement_pct"],
                "max_abs_logit_diff": v["max_abs_logit_diff"],
                "unsure_pct": v.get("unsure_pct"),
                "answered_accuracy_pct": v.get("answered_accuracy_pct"),
                "decision_changes": v.get("decision_changes"),
                "loads_with": [x["runtime"] for x in v["loads_with"] if x["status"] == "ok"],
                "passed": v["passed"],
                "failures": v["failures"],
                "check_latency": v["latency"],  # the convert check's own (not interleaved)
            }
            for v in report["variants"]
        ],
    }


def _sample_image(data_dir: Path) -> Path:
    sample = data_dir / SAMPLE_IMAGE
    if sample.is_file():
        return sample
    return min(p for p in (data_dir / "test").rglob("*.jpg"))


def _shipped_variant() -> str:
    """The bundle the Dockerfile ships (ARG BUNDLE=bundles/<variant>), else int8."""
    try:
        from tests.support.dockerfile import parse_dockerfile

        bundle = parse_dockerfile(REPO / "Dockerfile").args.get("BUNDLE", "")
    except (OSError, ValueError):
        return "int8"
    name = Path(bundle).name
    from convert import VARIANTS

    return name if name in VARIANTS else "int8"
