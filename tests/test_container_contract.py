"""The Dockerfile's contract, checked without Docker.

The packages the Dockerfile installs go into a fresh virtual environment
(no TensorFlow, nothing from this one), the files it copies go into a folder
laid out like the image's /var/task, and the handler must serve from there
exactly as it does here. Needs the package index (pip); about a minute.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import tomllib
from pathlib import Path

import pytest

from inference import Classifier
from tests.support.dockerfile import (
    layout_task_root,
    make_venv,
    parse_dockerfile,
    site_packages_sizes,
)
from tests.support.net import JPEG

REPO = Path(__file__).resolve().parents[1]
EVENTS = Path(__file__).parent / "events"
TRAINING_ONLY = {"tensorflow", "tensorflow-cpu", "keras", "tf-keras", "torch", "matplotlib"}

DRIVER = r"""
import importlib.util, json, sys
for name in ("tensorflow", "keras", "torch"):
    assert importlib.util.find_spec(name) is None, name + " is installed"
import lambda_function
events = json.load(open(sys.argv[1]))
answers = [lambda_function.lambda_handler(event, None) for event in events]
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras"))
print(json.dumps({"answers": answers, "heavy": heavy, "file": lambda_function.__file__}))
"""


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
    print(f"\nserve install: {sum(sizes.values()) / 2**20:.1f} MiB in site-packages")

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
    assert Path(result["file"]).resolve() == (task / "lambda_function.py").resolve()
    by_image, by_http, refused, invalid = result["answers"]
    expected = Classifier.load(tiny_bundle).predict_bytes(JPEG).to_dict()
    assert by_image["scores"] == pytest.approx(expected["scores"], abs=1e-6)
    assert by_image["label"] == expected["label"]
    assert by_http["statusCode"] == 200
    assert json.loads(by_http["body"])["model"] == by_image["model"]
    assert refused["error"]["code"] == "URL_NOT_ALLOWED"
    assert invalid["error"]["code"] == "INVALID_REQUEST"
