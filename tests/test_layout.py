"""One owner per concern (issue 14): the training output format (train/output.py),
the label and calibration rules shared with the bundle manifest, the layering."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from inference import BundleError, Manifest, check_calibration, check_labels
from train.output import (
    KERAS_FILENAME,
    METRICS_FILENAME,
    TrainOutputError,
    check_metrics,
    read_metrics,
    read_train_output,
    write_metrics,
)

REPO = Path(__file__).resolve().parents[1]
GOOD = {"labels": ["hat", "pants"], "image_size": 71}


def fake_run(folder: Path, metrics: Any = GOOD, *, keras_file: bool = True) -> Path:
    """A training output folder without Keras: an (empty) zip as model.keras."""
    folder.mkdir(parents=True, exist_ok=True)
    if keras_file:
        with zipfile.ZipFile(folder / KERAS_FILENAME, "w") as z:
            z.writestr("config.json", "{}")
    if metrics is not None:
        text = metrics if isinstance(metrics, str) else json.dumps(metrics)
        (folder / METRICS_FILENAME).write_text(text)
    return folder


@pytest.mark.parametrize(
    ("metrics", "fields"),
    [
        (GOOD, {"labels": ("hat", "pants"), "image_size": 71, "temperature": None}),
        (
            {**GOOD, "temperature": 1.5, "unsure_threshold": 0.4, "unsure_goal": 0.97},
            {"temperature": 1.5, "unsure_threshold": 0.4, "unsure_goal": 0.97},
        ),
        ({**GOOD, "data_dir": "/data/x"}, {"data_dir": Path("/data/x")}),
        ({**GOOD, "data_dir": ""}, {"data_dir": None}),
    ],
)
def test_read_train_output_fields(tmp_path: Path, metrics: Any, fields: dict[str, Any]) -> None:
    run = read_train_output(fake_run(tmp_path / "run", metrics))
    for name, value in fields.items():
        assert getattr(run, name) == value
    assert run.model_path == tmp_path / "run" / KERAS_FILENAME
    assert run.metrics == metrics


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda p: None, "Training output folder not found"),
        (lambda p: fake_run(p, keras_file=False), f"No {KERAS_FILENAME} in"),
        (lambda p: fake_run(p, metrics=None), f"No {METRICS_FILENAME} in"),
        (lambda p: fake_run(p, metrics="{nope"), "not valid JSON"),
        (lambda p: fake_run(p, metrics=[1, 2]), "must be a JSON object"),
        (lambda p: fake_run(p, {**GOOD, "labels": ["a"]}), "`labels` must be a list of >= 2"),
        (lambda p: fake_run(p, {**GOOD, "labels": ["a", "a"]}), "unique"),
        (lambda p: fake_run(p, {**GOOD, "labels": "ab"}), "Received: labels='ab'"),
        (lambda p: fake_run(p, {**GOOD, "image_size": "71"}), "`image_size` must be an int >= 1"),
        (lambda p: fake_run(p, {**GOOD, "image_size": True}), "Received: image_size=True"),
        (lambda p: fake_run(p, {**GOOD, "temperature": 0}), "`temperature` must be a number in (0"),
        (lambda p: fake_run(p, {**GOOD, "unsure_threshold": 2}), "`unsure_threshold`"),
        (lambda p: fake_run(p, {**GOOD, "unsure_goal": "high"}), "`unsure_goal`"),
    ],
)
def test_read_train_output_refuses(tmp_path: Path, setup: Any, message: str) -> None:
    setup(tmp_path / "run")
    with pytest.raises(TrainOutputError, match=message.replace("(", r"\(")):
        read_train_output(tmp_path / "run")


def test_a_non_zip_model_file_is_refused(tmp_path: Path) -> None:
    run = fake_run(tmp_path / "run", keras_file=False)
    (run / KERAS_FILENAME).write_text("not a zip")
    with pytest.raises(TrainOutputError, match="not a Keras model file"):
        read_train_output(run)


def test_write_metrics_checks_before_writing_and_round_trips(tmp_path: Path) -> None:
    fake_run(tmp_path, {**GOOD, "val_accuracy": 0.5})
    with pytest.raises(TrainOutputError):
        write_metrics(tmp_path, {"labels": ["x"], "image_size": 71})
    assert read_metrics(tmp_path)["val_accuracy"] == 0.5  # the old file, untouched
    write_metrics(tmp_path, {**GOOD, "temperature": 2.0})
    assert read_metrics(tmp_path) == {**GOOD, "temperature": 2.0}
    assert (tmp_path / METRICS_FILENAME).read_text().endswith("}\n")


# The same label and calibration rule for metrics.json and the bundle manifest.
LABELS_CASES = [
    (["a", "b"], True),
    (("a", "b"), False),  # JSON gives lists; a tuple means a caller skipped the JSON
    (["a"], False),
    (["a", ""], False),
    (["a", "a"], False),
    (["a", 1], False),
    (None, False),
]


@pytest.mark.parametrize(("labels", "ok"), LABELS_CASES)
def test_metrics_and_manifest_share_the_label_rule(
    labels: Any, ok: bool, tiny_manifest_json: dict[str, Any]
) -> None:
    outcomes = []
    for check in (
        lambda: check_labels(labels, source="x"),
        lambda: check_metrics({**GOOD, "labels": labels}, source="x"),
        lambda: Manifest.from_json({**tiny_manifest_json, "labels": labels}, source="x"),
    ):
        try:
            check()
            outcomes.append(True)
        except (ValueError, BundleError) as exc:
            assert "`labels` must be a list of >= 2 unique non-empty strings" in str(exc)
            outcomes.append(False)
    assert outcomes == [ok, ok, ok]


@pytest.mark.parametrize(
    ("field", "value", "ok"),
    [
        ("temperature", 1.0, True),
        ("temperature", 0.0, False),
        ("temperature", float("inf"), False),
        ("unsure_threshold", 0.0, True),
        ("unsure_threshold", 1.01, False),
        ("unsure_goal", True, False),
        ("unsure_goal", None, True),
    ],
)
def test_metrics_and_manifest_share_the_calibration_rule(
    field: str, value: Any, ok: bool, tiny_manifest_json: dict[str, Any]
) -> None:
    outcomes = []
    for check in (
        lambda: check_calibration({field: value}, source="x"),
        lambda: check_metrics({**GOOD, field: value}, source="x"),
        lambda: Manifest.from_json({**tiny_manifest_json, field: value}, source="x"),
    ):
        try:
            check()
            outcomes.append(True)
        except (ValueError, BundleError):
            outcomes.append(False)
    assert outcomes == [ok, ok, ok]


@pytest.fixture
def tiny_manifest_json() -> dict[str, Any]:
    return Manifest(
        labels=("a", "b"), image_size=71, variant="float32", model_sha256="0" * 64
    ).to_json()


# --- layering ---------------------------------------------------------------------


def test_train_output_and_inference_import_without_keras() -> None:
    """convert/ and bench/ read training outputs without paying for TensorFlow."""
    code = (
        "import sys, inference, inference.env, train.output, train.config; "
        "print(sorted(m for m in ('keras', 'tensorflow') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("inference", {"train", "convert", "bench", "tensorflow", "keras"}),
        ("train", {"convert", "bench"}),
        ("convert", {"bench"}),
    ],
)
def test_layers_import_only_downwards(package: str, forbidden: set[str]) -> None:
    offenders = {
        str(p.relative_to(REPO)): sorted(_imports(p) & forbidden)
        for p in sorted((REPO / package).rglob("*.py"))
        if _imports(p) & forbidden
    }
    # inference/_runtime.py loads tf.lite as the last-resort runtime, by name (importlib).
    assert offenders == {}


# The one file that spells the training output's file names.
NAME_OWNERS = {"train/output.py"}


def test_only_train_output_spells_the_file_names() -> None:
    spelled = {}
    for package in ("train", "convert", "bench", "examples", "inference"):
        for path in sorted((REPO / package).rglob("*.py")):
            rel = str(path.relative_to(REPO))
            tree = ast.parse(path.read_text(encoding="utf-8"))
            docstrings = {
                id(node.body[0].value)
                for node in ast.walk(tree)
                if isinstance(node, ast.Module | ast.FunctionDef | ast.ClassDef)
                and node.body
                and isinstance(node.body[0], ast.Expr)
            }
            for node in ast.walk(tree):
                if (
                    isinstance(node, ast.Constant)
                    and node.value in (KERAS_FILENAME, METRICS_FILENAME, "train/model.keras")
                    and id(node) not in docstrings
                    and rel not in NAME_OWNERS
                ):
                    spelled.setdefault(rel, []).append(node.lineno)
    assert spelled == {}


def test_the_url_policy_does_no_io() -> None:
    """inference/_url_policy.py decides; inference/_fetch.py connects (issue 14 item 7)."""
    imported = _imports(REPO / "inference" / "_url_policy.py")
    assert imported & {"socket", "ssl", "http", "threading", "urllib3", "requests"} == set()
    assert "_url_policy" in (REPO / "inference" / "_fetch.py").read_text(encoding="utf-8")


def _package_imports(path: Path, package: str) -> set[str]:
    """Modules of `package` that `path` imports, anywhere in it (lazy imports too).

    `from convert import X` names the package itself (its __init__), and so does
    `from convert._x import Y` (importing a submodule runs the package first);
    both are edges, since either can close a loop when that module is loaded.
    """
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == package and len(parts) <= 2:
                found.add(name if len(parts) == 2 else package)
    return found


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import loop of `graph` (module -> modules it imports), or None; depth-first."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)) is not None:
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)) is not None:
            return found
    return None


def _module_graph(package: str) -> dict[str, set[str]]:
    """Submodule -> the package's submodules it imports; the package's __init__ left out.

    Every submodule import runs `package/__init__.py` first, so the __init__ is
    no edge of its own: the loops that matter are between submodules (as
    convert/_check.py <-> convert/_report.py was).
    """
    graph = {}
    for path in sorted((REPO / package).glob("*.py")):
        if path.name in ("__init__.py", "__main__.py"):
            continue
        name = f"{package}.{path.stem}"
        graph[name] = {m for m in _package_imports(path, package) if m != package} - {name}
    return graph


@pytest.mark.parametrize(
    ("graph", "loop"),
    [
        ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
        ({"a": {"b"}, "b": {"a"}}, ["a", "b", "a"]),
        ({"a": {"b"}, "b": {"c"}, "c": {"b"}}, ["b", "c", "b"]),
        ({"a": {"b", "c"}, "b": {"c"}, "c": set()}, None),
    ],
)
def test_cycle_finder(graph: dict[str, set[str]], loop: list[str] | None) -> None:
    assert _cycle(graph) == loop


def test_import_graph_sees_lazy_imports(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from convert._report import write_report\n")
    assert _package_imports(module, "convert") == {"convert._report"}


# train/ is left out: train/calibrate.py and train/report.py import each other
# (lazily), outside this item's scope.
@pytest.mark.parametrize("package", ["convert", "inference"])
def test_no_import_cycle_inside_a_package(package: str) -> None:
    """Issue 14 item 3: results <- measuring, results <- writing; no module loops back."""
    graph = _module_graph(package)
    assert len(graph) > 3  # the walk found the package's modules
    assert _cycle(graph) is None


def test_check_report_imports_results_only() -> None:
    """convert/_report.py writes what convert/_results.py holds, and measures nothing."""
    imported = _package_imports(REPO / "convert" / "_report.py", "convert")
    assert imported == {"convert._results"}


def _report(**changes: Any) -> Any:
    from convert import CheckReport, Latency, RuntimeLoad, Threshold, VariantResult

    result = VariantResult(
        variant="int8",
        bundle=Path("/b/int8"),
        runtime="ai-edge-litert 2.0",
        size_bytes=10,
        n_images=4,
        agreement_pct=75.0,
        max_abs_logit_diff=0.5,
        accuracy_pct=None,
        accuracy_delta_pts=None,
        load_ms=1.5,
        latency=(Latency("ai-edge-litert 2.0", 1, 3.0, 4.0),),
        reference_latency=(),
        loads_with=(RuntimeLoad("tensorflow", "error", "2.1", "no"),),
        failures=("agreement 75.00% < 98.5%",),
        unsure_pct=25.0,
    )
    fields: dict[str, Any] = {
        "train_dir": Path("/t"),
        "out_dir": Path("/b"),
        "source_model_sha256": "ab" * 32,
        "images_dir": Path("/i"),
        "n_images": 4,
        "n_labeled": 0,
        "keras_accuracy_pct": None,
        "thresholds": {"int8": Threshold(98.5, min_speedup_1thread=2.5)},
        "results": (result,),
        "environment": {"cpus_usable": 2},
        "temperature": 1.5,
    }
    return CheckReport(**{**fields, **changes})


@pytest.mark.parametrize("changes", [{}, {"results": ()}, {"temperature": None}])
def test_check_report_json_round_trip(changes: dict[str, Any]) -> None:
    from convert import report_from_json, report_to_json

    report = _report(**changes)
    data = json.loads(json.dumps(report_to_json(report)))
    back = report_from_json(data)
    assert back == report
    assert data["passed"] is back.passed is ("results" in changes)  # the int8 row fails


@pytest.mark.parametrize(
    "data", [{}, {"variants": [{"variant": "x"}]}, {"variants": "no", "thresholds": {}}]
)
def test_report_from_json_refuses_other_json(data: dict[str, Any]) -> None:
    from convert import report_from_json

    with pytest.raises(ValueError, match="Not a check report"):
        report_from_json(data)


def _missing_docstrings(package: str) -> tuple[int, list[str]]:
    """Public definitions of `package` (public modules, public classes' public
    methods) without a docstring: (how many public, which lack one)."""
    public, missing = 0, []
    for path in sorted((REPO / package).glob("*.py")):
        if path.name.startswith("_") and path.name not in ("__init__.py", "__main__.py"):
            continue
        todo: list[tuple[str, list[ast.stmt]]] = [("", ast.parse(path.read_text()).body)]
        while todo:
            prefix, body = todo.pop()
            for node in body:
                if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                    continue
                if node.name.startswith("_"):
                    continue
                public += 1
                if ast.get_docstring(node) is None:
                    missing.append(f"{package}/{path.name}:{node.lineno} {prefix}{node.name}")
                if isinstance(node, ast.ClassDef):
                    todo.append((f"{prefix}{node.name}.", node.body))
    return public, missing


@pytest.mark.parametrize("package", ["inference", "train"])
def test_public_definitions_have_docstrings(package: str) -> None:
    """Issue 14 item 8: every public function, class and method says what it does."""
    public, missing = _missing_docstrings(package)
    assert public > 0
    assert missing == []


def test_readme_links_and_images_exist() -> None:
    """README is the front door: every relative link and image it shows is in the repo."""
    import re

    text = (REPO / "README.md").read_text()
    targets = {m.split("#")[0] for m in re.findall(r"\]\(([^)\s]+)\)", text)}
    local = sorted(t for t in targets if t and not re.match(r"[a-z]+:", t))
    assert local, "README links no file: the pattern no longer matches its links"
    missing = [t for t in local if not (REPO / t).is_file()]
    assert missing == [], f"README links files that do not exist: {missing}"


def _write_npz(folder: Path, **arrays: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "out_of_fold_logits.npz", **arrays)
    return folder


def _good_oof() -> dict[str, Any]:
    rng = np.random.default_rng(0)
    return {"logits": rng.normal(size=(6, 2)).astype(np.float32), "targets": np.arange(6) % 2}


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda a: {**a, "logits": a["logits"][:, :1]}, "logits must be (n, 2)"),
        (lambda a: {**a, "targets": a["targets"][:5]}, "Received: logits (6, 2), targets (5,)"),
        (lambda a: {"logits": a["logits"][:0], "targets": a["targets"][:0]}, "n >= 1"),
        (lambda a: {**a, "logits": a["logits"].astype(int)}, "logits must be floats"),
        (
            lambda a: {**a, "logits": np.where(np.eye(6, 2) > 0, np.nan, a["logits"])},
            "logits must be finite. Received: 2 NaN or infinite values",
        ),
        (lambda a: {**a, "logits": a["logits"] * np.inf}, "must be finite"),
        (lambda a: {**a, "targets": a["targets"] + 1}, "targets must be class indices in [0, 2)"),
        (lambda a: {**a, "targets": a["targets"] * 0.5}, "Received: dtype float64"),
        (lambda a: {"logits": a["logits"]}, "not a readable out-of-fold file"),
    ],
)
def test_out_of_fold_file_is_refused_when_it_cannot_be_fitted_on(
    tmp_path: Path, edit: Any, message: str
) -> None:
    from train.output import read_out_of_fold

    folder = _write_npz(tmp_path / "run", **edit(_good_oof()))
    with pytest.raises(TrainOutputError) as info:
        read_out_of_fold(folder, n_classes=2)
    assert message in str(info.value)


@pytest.mark.parametrize("damage", ["truncate", "not a zip", "pickled", "npy"])
def test_a_damaged_out_of_fold_file_is_an_error_not_a_traceback(
    tmp_path: Path, damage: str
) -> None:
    from train.output import read_out_of_fold

    folder = _write_npz(tmp_path / "run", **_good_oof())
    path = folder / "out_of_fold_logits.npz"
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "not a zip":
        path.write_bytes(b"hello" * 100)
    elif damage == "pickled":
        np.savez(path, logits=np.array([object()]), targets=np.array([0]))
    else:
        with path.open("wb") as f:  # one array saved as .npy under the .npz name
            np.save(f, np.zeros((6, 2)))
    with pytest.raises(TrainOutputError, match="not a readable out-of-fold file"):
        read_out_of_fold(folder, n_classes=2)


def test_out_of_fold_file_round_trips_with_its_digest(tmp_path: Path) -> None:
    from train.output import out_of_fold_record, read_out_of_fold, write_out_of_fold

    good = _good_oof()
    # float64 logits and int32 targets: written as float32 / int64, the same digest
    write_out_of_fold(tmp_path, good["logits"].astype(np.float64), good["targets"].astype(np.int32))
    logits, targets = read_out_of_fold(tmp_path, n_classes=2) or (None, None)
    record = out_of_fold_record(good["logits"], good["targets"], folds=3)
    assert record == {**record, "n": 6, "folds": 3, "file": "out_of_fold_logits.npz"}
    assert out_of_fold_record(logits, targets, folds=3) == record
    shuffled = out_of_fold_record(good["logits"], good["targets"][::-1], folds=3)
    assert shuffled["sha256"] != record["sha256"]
