"""The Dockerfile's contract, checked without Docker.

The packages the Dockerfile installs go into a fresh virtual environment
(no TensorFlow, nothing from this one), the files it copies go into a folder
laid out like the image's /var/task, and the handler must serve from there
exactly as it does here. Needs the package index (pip); about a minute.

The install is pruned as the image's is (docker/prune_site_packages.py, run
by `make_venv` because the Dockerfile runs it): the handler's answers through
the pruned install must equal this environment's, and it must fit the
150 MiB budget (issue 13).
"""

from __future__ import annotations

import base64
import importlib.util
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from inference import Classifier
from tests.support.dockerfile import (
    DockerfileSpec,
    layout_task_root,
    make_venv,
    parse_dockerfile,
    site_packages_sizes,
)
from tests.support.net import JPEG

REPO = Path(__file__).resolve().parents[1]
EVENTS = Path(__file__).parent / "events"
TRAINING_ONLY = {"tensorflow", "tensorflow-cpu", "keras", "tf-keras", "torch", "matplotlib"}
BUDGET_MIB = 150  # the Lambda image's Python packages (issue 13)
PRUNE_SCRIPT = REPO / "docker" / "prune_site_packages.py"


def _load_prune() -> Any:
    spec = importlib.util.spec_from_file_location("prune_site_packages", PRUNE_SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses and pickling look the module up by name
    spec.loader.exec_module(module)
    return module


prune_site_packages = _load_prune()

DRIVER = r"""
import importlib.util, json, sys
for name in ("tensorflow", "keras", "torch"):
    assert importlib.util.find_spec(name) is None, name + " is installed"
import lambda_function
events = json.load(open(sys.argv[1]))
answers = [lambda_function.lambda_handler(event, None) for event in events]
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras"))
tops = sorted({m.split(".")[0] for m in sys.modules})
print(json.dumps({"answers": answers, "heavy": heavy, "tops": tops,
                  "file": lambda_function.__file__}))
"""
# Top-level modules of the distributions the prune removes whole.
PRUNED_MODULES = {"google", "ml_dtypes", "flatbuffers", "tqdm", "backports"}


def name_of(requirement: str) -> str:
    return re.split(r"[=<>!~\[; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_dockerfile_shape() -> None:
    spec = parse_dockerfile(REPO / "Dockerfile")
    base = re.fullmatch(
        r"public\.ecr\.aws/lambda/python:3\.(\d+)\.[\d.]+(-x86_64|-arm64)?", spec.base_image
    )
    assert base and int(base.group(1)) >= 12, spec.base_image  # AL2023: glibc >= 2.27
    assert spec.cmd == ("lambda_function.lambda_handler",)
    assert "--no-cache-dir" in spec.pip_options
    assert all(re.fullmatch(r"[A-Za-z0-9_.\-]+==[\w.]+", p) for p in spec.pip_packages)  # pinned
    installed = {name_of(p) for p in spec.pip_packages}
    assert not installed & TRAINING_ONLY
    serve = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]["serve"]
    # Everything the serve extra names, except the runtime client the base image ships.
    assert {name_of(r) for r in serve} - {"awslambdaric"} <= installed
    sources = {source for source, _ in spec.copies}
    assert sources == {"inference/", "lambda_function.py", "${BUNDLE}/"}
    # The prune runs in the pip install's own RUN, so no layer keeps the removed files.
    assert spec.build_scripts == ("docker/prune_site_packages.py",)
    [install] = [run for run in spec.runs if "pip install" in run]
    assert "python /tmp/prune_site_packages.py" in install
    ignored = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()}
    assert not {"inference", "lambda_function.py", "bundles"} & ignored


def test_handler_serves_from_the_dockerfile_install(tiny_bundle: Path, tmp_path: Path) -> None:
    spec = parse_dockerfile(REPO / "Dockerfile")
    task = layout_task_root(
        spec, repo=REPO, dest=tmp_path / "task", args={"BUNDLE": str(tiny_bundle)}
    )
    assert sorted(p.name for p in task.iterdir()) == ["inference", "lambda_function.py", "model"]
    assert (task / "model" / "model.tflite").is_file()
    python = make_venv(spec, tmp_path / "venv")
    sizes = site_packages_sizes(python)
    total_mib = sum(sizes.values()) / 2**20
    print(f"\nserve install, pruned: {total_mib:.1f} MiB in site-packages")
    assert total_mib < BUDGET_MIB, sorted(sizes.items(), key=lambda kv: -kv[1])[:5]
    site = next((tmp_path / "venv" / "lib").glob("python3*/site-packages"))
    assert not (site / "ai_edge_litert" / "tools").exists()
    assert not (site / "google").exists()  # protobuf, removed whole

    http_event = json.loads((EVENTS / "http_api_v2_image_binary.json").read_text())
    events = [
        {"image": base64.b64encode(JPEG).decode()},
        http_event,
        {"url": "http://169.254.169.254/latest/meta-data/"},
        {"image": "not base64!"},
    ]
    (tmp_path / "events.json").write_text(json.dumps(events))
    done = subprocess.run(
        [str(python), "-c", DRIVER, str(tmp_path / "events.json")],
        cwd=task,  # like /var/task; MODEL_DIR unset: the handler finds model/ beside itself
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["heavy"] == []
    assert not PRUNED_MODULES & set(result["tops"])
    assert {"ai_edge_litert", "numpy", "PIL"} <= set(result["tops"])
    assert Path(result["file"]).resolve() == (task / "lambda_function.py").resolve()
    by_image, by_http, refused, invalid = result["answers"]
    expected = Classifier.load(tiny_bundle).predict_bytes(JPEG).to_dict()
    assert by_image["scores"] == pytest.approx(expected["scores"], abs=1e-6)
    assert by_image["label"] == expected["label"]
    assert by_http["statusCode"] == 200
    assert json.loads(by_http["body"])["model"] == by_image["model"]
    assert refused["error"]["code"] == "URL_NOT_ALLOWED"
    assert invalid["error"]["code"] == "INVALID_REQUEST"


def _fake_site_packages(root: Path, *, skip: str = "") -> Path:
    """A folder shaped like site-packages with one match for every prune rule."""
    site = root / "site-packages"
    keep = ("ai_edge_litert/libLiteRt.so", "ai_edge_litert/interpreter.py", "numpy/__init__.py")
    files = [
        *keep,
        "ai_edge_litert/libLiteRtWebGpuAccelerator.so",
        "ai_edge_litert/vendors/qualcomm/plugin.so",
        "ai_edge_litert/aot/aot_compile.py",
        "ai_edge_litert/tools/apply_plugin_main",
        "numpy/_core/tests/test_a.py",
        "numpy/tests/test_b.py",
        "numpy/_core/include/numpy/ndarrayobject.h",
        "numpy/f2py/__init__.py",
        "numpy/__init__.pyi",
    ]
    for name in files:
        if skip and name.startswith(skip):
            continue
        (site / name).parent.mkdir(parents=True, exist_ok=True)
        (site / name).write_bytes(b"x" * 1000)
    for dist, _ in prune_site_packages.DISTRIBUTIONS:
        module = dist.replace(".", "_")
        info = site / f"{module}-1.0.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
        (site / module / "sub").mkdir(parents=True)
        (site / module / "sub" / "m.py").write_text("x = 1\n")
        record = [f"{module}/sub/m.py,,", f"{info.name}/METADATA,,", f"{info.name}/RECORD,,"]
        (info / "RECORD").write_text("\n".join(record) + "\n")
    return site


@pytest.mark.parametrize("dry_run", [False, True])
def test_prune_removes_every_rule_and_keeps_the_runtime(tmp_path: Path, dry_run: bool) -> None:
    site = _fake_site_packages(tmp_path)
    sizes = {str(p.relative_to(site)): p.stat().st_size for p in site.rglob("*") if p.is_file()}
    freed = prune_site_packages.prune(site, dry_run=dry_run)
    after = sorted(str(p.relative_to(site)) for p in site.rglob("*") if p.is_file())
    kept = ["ai_edge_litert/interpreter.py", "ai_edge_litert/libLiteRt.so", "numpy/__init__.py"]
    assert freed == sum(size for name, size in sizes.items() if name not in kept)
    if dry_run:
        assert after == sorted(sizes)
        return
    assert after == kept
    assert sorted(p.name for p in site.iterdir()) == ["ai_edge_litert", "numpy"]  # no dist-info


@pytest.mark.parametrize(
    ("skip", "message"),
    [
        ("ai_edge_litert/tools", "'ai_edge_litert/tools' matched nothing"),
        ("numpy/f2py", "'numpy/f2py' matched nothing"),
    ],
)
def test_prune_refuses_a_stale_rule_and_deletes_nothing(
    tmp_path: Path, skip: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    site = _fake_site_packages(tmp_path, skip=skip)
    before = sorted(site.rglob("*"))
    code = prune_site_packages.main(["--site-packages", str(site)])
    assert code == 1
    assert message in capsys.readouterr().err
    assert sorted(site.rglob("*")) == before


def test_prune_refuses_a_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(prune_site_packages.PruneError, match="site_packages="):
        prune_site_packages.prune(tmp_path / "nope")


def test_dockerfile_reader_refuses_unknown_shell_in_run(tmp_path: Path) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM x\nRUN pip install a==1 ; rm -rf /\n")
    with pytest.raises(ValueError, match="not understood"):
        parse_dockerfile(dockerfile)
    assert isinstance(parse_dockerfile(REPO / "Dockerfile"), DockerfileSpec)


def test_size_table_per_package_before_and_after() -> None:
    from bench.size import table

    mib = 2**20
    figures = {
        "before": {"numpy": 68 * mib, "protobuf": 2 * mib, "pillow": 21 * mib},
        "after": {"numpy": 51 * mib, "pillow": 21 * mib},
    }
    rows = table(figures)
    assert rows[2] == "| numpy | 68.0 | 51.0 | 17.0 |"  # biggest first
    assert rows[3] == "| pillow | 21.0 | 21.0 |  |"
    assert rows[4] == "| protobuf | 2.0 | removed | 2.0 |"
    assert rows[-1] == "| **total** | **91.0** | **72.0** | 19.0 |"


@pytest.mark.parametrize("budget", ["0", "-5"])
def test_size_cli_refuses_a_bad_budget(budget: str, capsys: pytest.CaptureFixture[str]) -> None:
    from bench.size import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--budget", budget])
    assert exit_info.value.code == 2
    assert f"Received: --budget={float(budget)}" in capsys.readouterr().err
