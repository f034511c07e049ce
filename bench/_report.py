"""A benchmark result (a JSON-able dict) -> the markdown report, and both files on disk.

    md = render_markdown(result)
    json_path, md_path = write_result(result, out_dir=Path("bench/results"))

The markdown is built from the JSON alone, so an old result renders again
the same way; sections whose measurement failed or was skipped say so.
Files are `<YYYY-MM-DD>[-quick].json/.md`; a second run on the same day gets
`-2`, `-3`, ... so that no result is overwritten and regressions stay visible.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from inference import write_atomic, write_json_atomic

VARIANT_ORDER = ("keras", "float32", "float16", "dynamic", "int8", "onnx")
# inference's DEFAULT_ORDER, then the ONNX bundles' runtime
RUNTIME_ORDER = ("ai-edge-litert", "tflite-runtime", "tensorflow", "onnxruntime")


# --- files -----------------------------------------------------------------


def result_stem(out_dir: Path, *, date: str, quick: bool) -> str:
    """`<date>[-quick]`, or with `-N` appended when that name is taken."""
    base = f"{date}-quick" if quick else date
    stem, n = base, 1
    while (out_dir / f"{stem}.json").exists() or (out_dir / f"{stem}.md").exists():
        n += 1
        stem = f"{base}-{n}"
    return stem


def previous_result(out_dir: Path, *, quick: bool, before: str) -> dict[str, Any] | None:
    """The latest result of the same mode (full or quick) created before `before` (ISO time)."""
    found: list[dict[str, Any]] = []
    for path in out_dir.glob("*.json"):
        try:
            data: dict[str, Any] = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict) or (data.get("mode") == "quick") != quick:
            continue
        if str(data.get("created_at", "")) < before:
            data["_stem"] = path.stem
            found.append(data)
    return max(found, key=lambda d: str(d["created_at"])) if found else None


def write_result(result: dict[str, Any], *, out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = result_stem(out_dir, date=result["date"], quick=result["mode"] == "quick")
    result["stem"] = stem
    previous = previous_result(
        out_dir, quick=result["mode"] == "quick", before=result["created_at"]
    )
    json_path, md_path = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    write_json_atomic(json_path, result)
    write_atomic(md_path, render_markdown(result, previous=previous))
    return json_path, md_path


# --- headline figures -------------------------------------------------------


def latency_row(
    result: dict[str, Any], *, variant: str, threads: int, method: str | None = None
) -> dict[str, Any] | None:
    """The latency row of a variant ("keras" or a TFLite one) at a thread count.

    TFLite: the first runtime in inference's default order (ai-edge-litert first).
    Keras: `method` ("model(x)", "predict", "tf.function"), else the fastest.
    """
    rows: list[dict[str, Any]] = [
        r
        for r in result.get("latency", {}).get("rows", [])
        if r["variant"] == variant
        and r["threads"] == threads
        and (method is None or r["method"] == method)
    ]
    if not rows:
        return None
    if variant == "keras":
        return min(rows, key=lambda r: float(r["median_ms"]))
    return min(rows, key=lambda r: _runtime_rank(str(r["runtime"])))


def headline(result: dict[str, Any]) -> dict[str, float]:
    """The side-by-side ratios (baseline / this toolchain; > 1 means ours is better)."""
    figures: dict[str, float] = {}
    size = str(result.get("config", {}).get("image_size", ""))
    training = result.get("training", {}).get(size)
    if training:
        figures[f"training epoch speed-up, {size} px"] = training["speedup"]
    for t in result.get("config", {}).get("threads", []):
        keras = latency_row(result, variant="keras", threads=t)
        for variant in ("float32", "int8"):
            tflite = latency_row(result, variant=variant, threads=t)
            if keras and tflite:
                figures[f"latency speed-up, TFLite {variant} vs Keras, {t}T"] = (
                    keras["median_ms"] / tflite["median_ms"]
                )
    cold = result.get("cold_start", {})
    if "serve" in cold and "keras" in cold:
        figures["cold start speed-up"] = cold["keras"]["total_s"] / cold["serve"]["total_s"]
    install = result.get("install", {})
    if "serve_mib" in install:
        figures["install size ratio"] = install["training_mib"] / install["serve_mib"]
    return figures


# --- markdown ---------------------------------------------------------------


def render_markdown(result: dict[str, Any], *, previous: dict[str, Any] | None = None) -> str:
    mode = result["mode"]
    lines = [
        f"# Benchmark {result['date']} ({mode} run)",
        "",
        *_preamble(result),
        "",
        "## Side by side",
        "",
        *_side_by_side(result),
        "",
        *_section("Inference latency", _latency, result, "latency"),
        *_section("Accuracy per variant", _accuracy, result, "accuracy"),
        *_section("Training cost", _training, result, "training"),
        *_section(
            "Cold start", _cold_start, result, "cold_start", steps=("serve_venv", "cold_start")
        ),
        *_section("Install size", _install, result, "install"),
        *_section("Compute floor", _compute, result, "compute", steps=("gemm", "macs")),
        *_section("Lambda function (bench/serve.py)", _lambda, result, "lambda"),
        *_changes(result, previous),
        "## How this was measured",
        "",
        *_method(result),
        "",
    ]
    return "\n".join(lines)


def _section(
    title: str, render: Any, result: dict[str, Any], key: str, *, steps: tuple[str, ...] = ()
) -> list[str]:
    """A titled section; `steps`: the run's phases whose failure it reports (default `key`)."""
    errors = result.get("errors", {})
    body = [
        f"Measurement `{step}` failed: `{_one_line(errors[step])}`"
        for step in steps or (key,)
        if step in errors
    ]
    if key in result:
        body += ([""] if body else []) + render(result)
    elif not body:
        body = ["Not measured in this run."]
    return [f"## {title}", "", *body, ""]


def _preamble(result: dict[str, Any]) -> list[str]:
    m = result.get("machine", {})
    packages = ", ".join(f"{k} {v}" for k, v in m.get("packages", {}).items())
    start = m.get("load_average_start", [math.nan])[0]
    end = m.get("load_average_end", [math.nan])[0]
    cores = m.get("usable_cores") or m.get("logical_cores")
    lines = [
        f"Machine: {m.get('cpu_model', '?')}, {m.get('logical_cores', '?')} logical cores "
        f"({m.get('usable_cores', '?')} usable, {m.get('physical_cores', '?')} physical), "
        f"{m.get('memory_gib', '?')} GiB; {', '.join(m.get('simd', []))}; "
        f"{m.get('platform', '?')}; Python {m.get('python', '?')}.",
        "",
        f"Libraries: {packages}.",
        "",
        f"Load average (1 min): {start:.1f} before the run (other jobs), {end:.1f} at its end "
        f"(this run included), on {cores} usable cores"
        + (
            ": other jobs shared the machine, so absolute times are inflated; the ratios "
            "compare measurements interleaved in the same run."
            if isinstance(cores, int) and start > 0.5 * cores
            else "."
        ),
        "",
        f"Command: `{result.get('command', 'python -m bench')}`, "
        f"{result.get('wall_s', math.nan) / 60:.1f} min wall time.",
    ]
    model = result.get("model")
    if model:
        built = "reused from the work dir" if model.get("reused") else "built by this run"
        subset = model.get("subset")
        trained_on = (
            "the full train split" if subset is None else f"{subset} images per class (quick)"
        )
        lines += [
            "",
            f"Model: Xception + head at {model['image_size']} px, trained on {trained_on}, "
            f"{built} (`{model['directory']}`).",
        ]
    if mode_note := _mode_note(result):
        lines += ["", mode_note]
    return lines


def _mode_note(result: dict[str, Any]) -> str:
    if result["mode"] != "quick":
        return ""
    return (
        "**Quick run**: few repeats, training times extrapolated from a subset — a smoke "
        "check of the pipeline, not figures to quote."
    )


def _side_by_side(result: dict[str, Any]) -> list[str]:
    rows: list[list[str]] = []
    size = str(result.get("config", {}).get("image_size", ""))
    training = result.get("training", {}).get(size)
    if training:
        note = " (extrapolated)" if training.get("extrapolated") else ""
        rows.append(
            [
                f"training, s per epoch, {size} px{note}",
                f"seed recipe, fit on images: {training['seed_epoch_s']:.1f}",
                f"head on the feature cache: {training['head_epoch_s']:.2f}",
                f"**{training['speedup']:.0f}x** faster",
            ]
        )
        rows.append(
            [
                f"one-time feature extraction, {size} px{note}",
                "—",
                f"{training['extraction_s']:.1f} s, once",
                f"repaid after {training['break_even_epochs']:.1f} epochs",
            ]
        )
    for t in result.get("config", {}).get("threads", []):
        keras = latency_row(result, variant="keras", threads=t)
        if keras is None:
            continue
        for variant in ("float32", "int8"):
            tflite = latency_row(result, variant=variant, threads=t)
            if tflite is None:
                continue
            rows.append(
                [
                    f"latency, batch 1, {t} thread{'s' * (t > 1)} (ms)",
                    f"Keras {keras['method']}: {keras['median_ms']:.1f}",
                    f"TFLite {variant} ({tflite['runtime'].split()[0]}): {tflite['median_ms']:.1f}",
                    f"**{keras['median_ms'] / tflite['median_ms']:.1f}x** faster",
                ]
            )
    cold = result.get("cold_start", {})
    if "serve" in cold and "keras" in cold:
        rows.append(
            [
                "cold start: new process to first prediction (s)",
                f"TensorFlow + Keras model: {cold['keras']['total_s']:.2f}",
                f"serve runtime, {cold.get('bundle_variant', '?')} bundle: "
                f"{cold['serve']['total_s']:.2f}",
                f"**{cold['keras']['total_s'] / cold['serve']['total_s']:.1f}x** faster",
            ]
        )
    install = result.get("install", {})
    if "serve_mib" in install:
        rows.append(
            [
                "install size, site-packages (MiB)",
                f"training env: {install['training_mib']:.0f} "
                f"(TensorFlow {install['tensorflow_mib']:.0f})",
                f"serve env: {install['serve_mib']:.0f}",
                f"**{install['training_mib'] / install['serve_mib']:.1f}x** smaller",
            ]
        )
    accuracy = result.get("accuracy", {})
    by_variant = {v["variant"]: v for v in accuracy.get("variants", [])}
    shipped = result.get("cold_start", {}).get("bundle_variant", "int8")
    if shipped in by_variant and accuracy.get("keras_accuracy_pct") is not None:
        v = by_variant[shipped]
        rows.append(
            [
                f"test accuracy ({accuracy.get('n_images', '?')} images)",
                f"Keras: {accuracy['keras_accuracy_pct']:.1f}%",
                f"TFLite {shipped}: {_pct(v['accuracy_pct'])}",
                f"{_pts(v['accuracy_delta_pts'])} pts",
            ]
        )
    if not rows:
        return ["No side-by-side figures: see the errors below."]
    return _table(["figure", "baseline", "this toolchain", "ratio"], rows)


def _latency(result: dict[str, Any]) -> list[str]:
    latency = result["latency"]
    compute = result.get("compute", {})
    macs = compute.get("macs")
    peaks = compute.get("gemm", {})
    int8_peaks = compute.get("int8_gemm", {})
    rows = []
    ordered = sorted(
        latency["rows"],
        key=lambda r: (
            _variant_rank(r["variant"]),
            r["method"],
            _runtime_rank(r["runtime"]),
            r["threads"],
        ),
    )
    for r in ordered:
        keras = latency_row(result, variant="keras", threads=r["threads"])
        gflops = 2 * macs / (r["median_ms"] / 1000) / 1e9 if macs else math.nan
        # float16 computes in fp32; onnx is the float32 model under onnxruntime
        float_math = r["variant"] in ("keras", "float32", "float16", "onnx")
        # dynamic, int8 and onnx-int8 run integer GEMMs: against the int8 GEMM peak
        peak = (peaks if float_math else int8_peaks).get(str(r["threads"]), {}).get("gflops")
        dtype = "float32" if float_math else "int8"
        rows.append(
            [
                "Keras" if r["engine"] == "keras" else _engine_label(r["variant"]),
                r["variant"] if r["engine"] == "tflite" else r["method"],
                r["runtime"],
                str(r["threads"]),
                f"{r['median_ms']:.1f}",
                f"{r['p95_ms']:.1f}",
                f"{r['throughput_per_s']:.1f}",
                f"{keras['median_ms'] / r['median_ms']:.2f}x" if keras else "—",
                f"{gflops:.0f}" if macs else "—",
                f"{100 * gflops / peak:.0f}% of {dtype}" if peak and macs else "—",
            ]
        )
    header = [
        "engine",
        "variant / call",
        "runtime",
        "threads",
        "p50 (ms)",
        "p95 (ms)",
        "img/s",
        "vs fastest Keras",
        "GFLOP/s",
        "% of GEMM peak",
    ]
    lines = [
        f"Batch 1, {latency['image_size']} px, one preprocessed test image to logits; "
        f"{latency['rounds']} interleaved rounds x {latency['runs_per_round']} runs per "
        f"configuration after {latency['warmup']} warm-up runs. img/s = 1000 / p50.",
        "",
        *_table(header, rows),
    ]
    if latency.get("not_measured"):
        lines += ["", "Not measured (runtime not installed or refused the model):"]
        lines += [f"- {_one_line(x)}" for x in latency["not_measured"]]
    lines += [
        "",
        "GFLOP/s = 2 x multiply-adds / p50 (GOP/s for the integer rows); % of peak is "
        "against the GEMM peak measured in the same rounds at the same thread count: float "
        "rows against the float32 peak (numpy sgemm), dynamic, int8 and onnx-int8 against "
        "the int8 peak (onnxruntime MatMulInteger, VNNI); see the compute floor.",
    ]
    return lines


def _accuracy(result: dict[str, Any]) -> list[str]:
    accuracy = result["accuracy"]
    rows = [
        [
            "Keras (model.keras)",
            "—",
            _pct(accuracy.get("keras_accuracy_pct")),
            "—",
            "—",
            "—",
            _pct(accuracy.get("keras_unsure_pct")),
            _pct(accuracy.get("keras_answered_accuracy_pct")),
            "—",
            "—",
            "—",
        ]
    ]
    for v in accuracy["variants"]:
        rows.append(
            [
                f"{_engine_label(v['variant'])} {v['variant']}",
                f"{v['size_bytes'] / 1e6:.1f}",
                _pct(v["accuracy_pct"]),
                _pts(v["accuracy_delta_pts"]),
                _pct(v["agreement_pct"]),
                f"{v['max_abs_logit_diff']:.1e}",
                _pct(v.get("unsure_pct")),
                _pct(v.get("answered_accuracy_pct")),
                "—" if v.get("decision_changes") is None else str(v["decision_changes"]),
                ", ".join(v["loads_with"]) or "none",
                "pass" if v["passed"] else "FAIL: " + "; ".join(v["failures"]),
            ]
        )
    header = [
        "model",
        "size (MB)",
        "accuracy",
        "Δ vs Keras (pts)",
        "top-1 agreement",
        "max \\|Δ logit\\|",
        "unsure",
        "answered acc",
        "decision changes vs Keras",
        "loads with",
        "convert check",
    ]
    return [
        f"{accuracy['n_images']} images of `{accuracy['images_dir']}`, from the conversion "
        "check (`check_bundles`, convert/report.json). " + _calibration_note(accuracy),
        "",
        *_table(header, rows),
    ]


def _calibration_note(accuracy: dict[str, Any]) -> str:
    """How the scores behind "unsure" and "answered acc" were computed."""
    t, threshold = accuracy.get("temperature"), accuracy.get("unsure_threshold")
    if t is None:
        return "Scores: uncalibrated softmax (a model trained before calibration)."
    note = f"Scores: softmax(logits / {t:.3f}) (temperature fitted on validation)"
    if threshold is None:
        return note + "; no unsure threshold."
    return (
        f"{note}; unsure below a top score of {threshold:.3f}; answered acc: accuracy of "
        "the images not unsure; decision changes: images answered by one of Keras and the "
        "variant, unsure by the other."
    )


def _training(result: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    for size, t in result["training"].items():
        n = t["n_images"]
        measured = t["measured_images"]
        how = (
            f"extrapolated from {measured['train']} train / {measured['validation']} validation "
            f"/ {measured['test']} test images to the full splits"
            if t["extrapolated"]
            else "measured on the full splits"
        )
        epochs = ", ".join(f"{x:.2f}" for x in t["head_epochs_s"])
        rows = [
            [
                "seed recipe: frozen Xception + head, `model.fit` on image files",
                f"{t['seed_epoch_s']:.1f}",
                f"train {t['seed_train_s']:.1f} + validation {t['seed_validation_s']:.1f}; "
                f"1 epoch; tracing {t['seed_trace_s']:.1f} s once, not included",
            ],
            [
                "head on the feature cache (`python -m train`)",
                f"{t['head_epoch_s']:.2f}",
                f"median of {len(t['head_epochs_s'])} epochs ({epochs}); "
                f"first epoch with tracing {t['head_trace_s']:.2f} s",
            ],
            [
                "one-time extraction into a cold cache (all splits)",
                f"{t['extraction_s']:.1f}",
                f"{sum(n.values())} images, tracing {t['extraction_trace_s']:.1f} s included",
            ],
            [
                "reading the warm cache back (all splits)",
                f"{t['cache_read_s']:.2f}",
                "what each later run pays instead",
            ],
        ]
        lines += [
            f"### {size} px",
            "",
            f"{n['train']} train + {n['validation']} validation images per epoch, batch "
            f"{t['batch_size']}; {how}.",
            "",
            *_table(["", "seconds", "detail"], rows),
            "",
            f"Speed-up per epoch: **{t['speedup']:.0f}x**; the extraction is repaid after "
            f"{t['break_even_epochs']:.1f} epochs (`python -m train` runs 20 by default). "
            "The seed epoch and the extraction are one run each, minutes apart, not "
            "interleaved: of all the figures here they move most between runs on a shared "
            "machine (the break-even point above all). Load average (1 min) after each phase: "
            + ", ".join(f"{k} {v[0]:.1f}" for k, v in t["load_average"].items())
            + ".",
            "",
        ]
    return lines[:-1]


def _cold_start(result: dict[str, Any]) -> list[str]:
    cold = result["cold_start"]
    rows = []
    for name, title in (
        ("keras", "import tensorflow + keras, load model.keras, predict"),
        ("serve", f"import inference, load the {cold.get('bundle_variant', '?')} bundle, predict"),
    ):
        c = cold[name]
        s = c["split_s"]
        rows.append(
            [
                title,
                f"{c['total_s']:.2f}",
                ", ".join(f"{x:.2f}" for x in c["runs_s"]),
                f"{s['startup_s']:.2f}",
                f"{s['import_s']:.2f}",
                f"{s['load_s']:.2f}",
                f"{s['predict_s']:.2f}",
                f"`{c['python']}`",
            ]
        )
    header = [
        "process",
        "median (s)",
        "runs (s)",
        "interpreter",
        "imports",
        "load",
        "first prediction",
        "python",
    ]
    return [
        "New process to its first prediction on a test image (decode + preprocess + "
        "predict), process exit not counted; the runs alternate, after one untimed run "
        "of each (warm page cache)."
        if cold.get("warmup")
        else "New process to its first prediction on a test image, one run each (quick).",
        "",
        *_table(header, rows),
    ]


def _install(result: dict[str, Any]) -> list[str]:
    s = result["install"]
    rows = [
        [
            "serve: `pip install .[serve]`, fresh venv",
            f"{s['serve_mib']:.0f}",
            _biggest(s["serve_biggest_mib"]),
        ],
        [
            "training: this venv (train + serve + dev extras)",
            f"{s['training_mib']:.0f}",
            _biggest(s["training_biggest_mib"]),
        ],
        ["  of which TensorFlow (tensorflow-cpu's own files)", f"{s['tensorflow_mib']:.0f}", ""],
        [
            f"  of which dev tools ({', '.join(s['dev_tools'])}; own files only)",
            f"{s['dev_tools_mib']:.0f}",
            "",
        ],
        ["training without the dev tools", f"{s['training_without_dev_mib']:.0f}", ""],
    ]
    return [
        "Bytes in site-packages (pip and setuptools left out), MiB.",
        "",
        *_table(["environment", "MiB", "biggest entries (MiB)"], rows),
        "",
        f"Ratio training / serve: {s['training_mib'] / s['serve_mib']:.1f}x; without the dev "
        f"tools {s['training_without_dev_mib'] / s['serve_mib']:.1f}x.",
    ]


def _compute(result: dict[str, Any]) -> list[str]:
    c = result["compute"]
    error = c["xception_299_macs"] / c["published_299_macs"] - 1
    gemm = c.get("gemm", {})
    lines = [
        f"- Multiply-adds of one {c['image_size']} px image through the benchmarked model, "
        f"counted layer by layer: **{c['macs'] / 1e9:.2f} G** "
        + "("
        + ", ".join(f"{k} {v / 1e9:.2f} G" for k, v in c["macs_by_kind"].items())
        + "). BatchNorm, ReLU, Add and pooling add "
        f"{c['other_ops'] / 1e6:.0f} M elementwise ops ({100 * c['other_fraction']:.1f}%), "
        "negligible and not counted.",
        f"- Check: the same counter gives Xception at 299 px "
        f"{c['xception_299_macs'] / 1e9:.2f} G multiply-adds; published "
        f"{c['published_299_macs'] / 1e9:.1f} G ({c['published_source']}): {100 * error:+.1f}%.",
    ]
    for t, g in gemm.items():
        floor_ms = 2 * c["macs"] / (g["gflops"] * 1e9) * 1000
        row = latency_row(result, variant="float32", threads=int(t))
        reached = ""
        if row:
            fraction = floor_ms / row["median_ms"]
            reached = (
                f"; TFLite float32 takes {row['median_ms']:.1f} ms: **{100 * fraction:.0f}%** "
                "of peak"
                + (" (over 100%: other jobs slowed the GEMM more than the model)" * (fraction > 1))
            )
        lines.append(
            f"- {t} thread{'s' * (int(t) > 1)}: measured GEMM peak **{g['gflops']:.0f} GFLOP/s** "
            f"(numpy float32 {g['size']}x{g['size']} matmul, median of {g['runs']} in the "
            f"latency rounds; best {g.get('best_gflops', math.nan):.0f}) -> compute floor "
            f"{floor_ms:.1f} ms per image{reached}."
        )
    lines += _int8_peak_lines(result)
    return lines


INTEGER_VARIANTS = ("dynamic", "int8", "onnx-int8")  # their GEMMs run int8 x int8 -> int32


def _int8_peak_lines(result: dict[str, Any]) -> list[str]:
    """One line per thread count: the int8 GEMM peak and each integer variant's share of it."""
    c = result["compute"]
    lines = []
    for t, g in c.get("int8_gemm", {}).items():
        floor_ms = 2 * c["macs"] / (g["gflops"] * 1e9) * 1000
        reached = []
        for variant in INTEGER_VARIANTS:
            row = latency_row(result, variant=variant, threads=int(t))
            if row:
                share = 100 * floor_ms / row["median_ms"]
                reached.append(f"{variant} {row['median_ms']:.1f} ms: **{share:.0f}%**")
        lines.append(
            f"- {t} thread{'s' * (int(t) > 1)}: measured int8 GEMM peak "
            f"**{g['gflops']:.0f} GOP/s** (onnxruntime MatMulInteger, uint8 x int8 -> int32, "
            f"{g['size']}x{g['size']}, median of {g['runs']} in the latency rounds; best "
            f"{g.get('best_gflops', math.nan):.0f}) "
            f"-> integer floor {floor_ms:.1f} ms per image"
            + (f"; {', '.join(reached)} of that peak." if reached else ".")
        )
    if c.get("gemm") and not c.get("int8_gemm"):
        lines.append(
            "- int8 GEMM peak: not measured (needs onnxruntime, the `onnx` extra), so the "
            "integer variants get no fraction of peak."
        )
    return lines


def _lambda(result: dict[str, Any]) -> list[str]:
    data = result["lambda"]
    if "skipped" in data:
        return [f"Skipped: {_one_line(data['skipped'])}"]
    figures = data["figures"]
    stages = ("fetch", "decode", "preprocess", "inference", "handler", "overhead")
    rows = [
        [source, *[f"{row.get(k, math.nan):.2f}" for k in stages]]
        for source, row in figures.get("warm_ms", {}).items()
    ]
    cold = figures.get("cold", {})
    model = figures.get("model", {})
    return [
        f"`{data['command']}` ({model.get('variant', '?')} bundle, {model.get('image_size', '?')}"
        f" px): warm invocations in-process, median of {data['repeat']} (ms):",
        "",
        *_table(["event", *stages[:-1], "handler - inference"], rows),
        "",
        f"Emulated cold start (`awslambdaric` against a local Runtime API, process start to "
        f"first answer): {cold.get('cold_s', math.nan):.2f} s, median of {data['cold_runs']}; "
        f"next invocation round trip {cold.get('warm_round_trip_ms', math.nan):.1f} ms.",
    ]


def _changes(result: dict[str, Any], previous: dict[str, Any] | None) -> list[str]:
    if previous is None:
        return []
    now, before = headline(result), headline(previous)
    rows = []
    for name, value in now.items():
        if name in before and before[name] > 0:
            rows.append(
                [
                    name,
                    f"{before[name]:.2f}",
                    f"{value:.2f}",
                    f"{100 * (value / before[name] - 1):+.0f}%",
                ]
            )
    if not rows:
        return []
    return [
        f"## Change since {previous['_stem']}",
        "",
        "Ratios (higher is better for this toolchain); a drop of more than the noise between "
        "runs (about 10-20% on a loaded machine) is worth a look.",
        "",
        *_table(["figure", previous["_stem"], result.get("stem", "now"), "change"], rows),
        "",
    ]


def _method(result: dict[str, Any]) -> list[str]:
    return [
        "- Every figure above comes from the same run; ratios compare measurements "
        "interleaved in time (latency rounds rotate over every configuration and the GEMM "
        "peak workers; cold starts alternate).",
        "- The Keras baseline is its fastest call: `model(x)` runs eagerly op by op and "
        "`predict` sets up a data pipeline per call, so `tf.function(model)` (the compiled "
        "graph, as a TensorFlow server would run it) is the fair comparison.",
        "- Keras latency runs in one subprocess per thread count (TF_NUM_INTRAOP_THREADS and "
        "`tf.config.threading` intra-op = threads, inter-op = 1, set before TensorFlow "
        "starts); TFLite runs through `inference.Classifier(num_threads=...)`.",
        "- Training epochs include validation, as `model.fit(validation_data=...)` does; "
        "the seed pipeline decodes and preprocesses every image each epoch with the "
        "project's one preprocessing path (`train.features.load_preprocessed`).",
        "- The feature extraction runs into a fresh temporary cache, so it is always cold.",
        "- Phases (s): "
        + ", ".join(f"{k} {v:.0f}" for k, v in result.get("phases_s", {}).items())
        + ".",
    ]


# --- helpers ----------------------------------------------------------------


def _table(header: list[str], rows: Iterable[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
        *["| " + " | ".join(row) + " |" for row in rows],
    ]


def _runtime_rank(runtime: str) -> int:
    name = runtime.split()[0]
    return RUNTIME_ORDER.index(name) if name in RUNTIME_ORDER else len(RUNTIME_ORDER)


def _engine_label(variant: str) -> str:
    """The engine label of a variant: ONNX for the ONNX bundles (onnxruntime), else TFLite."""
    return "ONNX" if variant.startswith("onnx") else "TFLite"


def _variant_rank(variant: str) -> int:
    return VARIANT_ORDER.index(variant) if variant in VARIANT_ORDER else len(VARIANT_ORDER)


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}%"


def _pts(value: float | None) -> str:
    return "—" if value is None else f"{value:+.1f}"


def _biggest(sizes: dict[str, float]) -> str:
    return ", ".join(f"{_short(k)} {v:.0f}" for k, v in sizes.items())


def _short(name: str, limit: int = 24) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"


def _one_line(text: str) -> str:
    return " ".join(str(text).split())[:300]
