"""`pip install .[serve]` into a fresh venv: no TensorFlow, and the CLI works there."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from inference import Classifier
from tests.conftest import REPO, make_image

pytestmark = pytest.mark.integration


def _size_mb(path: Path) -> float:
    return (
        sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink()) / 1e6
    )


@pytest.fixture(scope="module")
def serve_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    env_dir = tmp_path_factory.mktemp("serve") / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-cache-dir",
            f"{REPO}[serve]",
        ],
        check=True,
        capture_output=True,
        text=True,
        cwd=env_dir.parent,
    )
    return env_dir


def test_serve_extra_has_no_tensorflow(serve_venv: Path) -> None:
    python = serve_venv / "bin" / "python"
    listed = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=json"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    names = {p["name"].lower() for p in json.loads(listed)}
    assert {"ai-edge-litert", "keras-image-helper", "pillow", "numpy", "awslambdaric"} <= names
    assert not names & {"tensorflow", "tensorflow-cpu", "keras", "jax", "torch"}
    size = _size_mb(serve_venv)
    print(f"\nserve venv size: {size:.0f} MB")  # the figure; bench reports it too
    assert size < 300, f"serve venv grew to {size:.0f} MB"


def test_cli_predicts_in_the_serve_venv(
    serve_venv: Path, tiny_bundle: Path, tmp_path: Path
) -> None:
    image = make_image(tmp_path / "a.jpg", color=(30, 160, 90))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [
            str(serve_venv / "bin" / "python"),
            "-m",
            "inference",
            "predict",
            str(image),
            "--model",
            str(tiny_bundle),
            "--json",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,  # cwd: not the repo, so the venv's copy runs
    )
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["runtime"]["name"] == "ai-edge-litert"
    expected = Classifier.load(tiny_bundle).predict_file(image).to_dict()
    got = answer["results"][0]
    assert got["label"] == expected["label"]
    assert got["logits"] == pytest.approx(expected["logits"], abs=1e-5)
    assert sys.executable != str(serve_venv / "bin" / "python")
