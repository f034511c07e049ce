"""The CLIs' quiet default (inference/_quiet.py): TensorFlow's C++ log lines off
unless --verbose or CLOTHING_VERBOSE=1."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from inference._quiet import native_stderr_silenced, quiet_tensorflow, wants_verbose


@pytest.mark.parametrize(
    ("argv", "environ", "verbose"),
    [
        (["python -m train"], {}, False),
        (["x", "--verbose"], {}, True),
        (["x"], {"CLOTHING_VERBOSE": "1"}, True),
        (["x"], {"CLOTHING_VERBOSE": "0"}, False),
        (["x", "--verbose-ish"], {}, False),
    ],
)
def test_wants_verbose(argv: list[str], environ: dict[str, str], verbose: bool) -> None:
    assert wants_verbose(argv, environ) is verbose


@pytest.mark.parametrize(
    ("argv", "environ", "quieted", "after"),
    [
        (["x"], {}, True, {"TF_CPP_MIN_LOG_LEVEL": "3"}),
        # a level the user set wins
        (["x"], {"TF_CPP_MIN_LOG_LEVEL": "1"}, True, {"TF_CPP_MIN_LOG_LEVEL": "1"}),
        # verbose: nothing silenced, and worker processes inherit the choice
        (["x", "--verbose"], {}, False, {"CLOTHING_VERBOSE": "1"}),
        (["x"], {"CLOTHING_VERBOSE": "1"}, False, {"CLOTHING_VERBOSE": "1"}),
    ],
)
def test_quiet_tensorflow_env(
    argv: list[str], environ: dict[str, str], quieted: bool, after: dict[str, str]
) -> None:
    assert quiet_tensorflow(argv, environ, preload=False) is quieted
    assert environ == after


def test_native_stderr_silenced_drops_fd2_writes_only_inside(
    capfd: pytest.CaptureFixture[str],
) -> None:
    with native_stderr_silenced():
        os.write(2, b"native line inside\n")
    os.write(2, b"native line after\n")
    err = capfd.readouterr().err
    assert "inside" not in err
    assert "native line after" in err


@pytest.mark.parametrize(
    ("argv", "help_without_tensorflow", "loaded"),
    [
        (["x", "--help"], True, False),
        (["x", "select", "-h"], True, False),
        (["x", "--help"], False, True),  # train/__main__.py: its parser imports Keras
        (["x"], True, True),
    ],
)
def test_help_skips_the_tensorflow_preload(
    argv: list[str], help_without_tensorflow: bool, loaded: bool
) -> None:
    code = (
        "import os, sys; from inference._quiet import quiet_tensorflow; "
        f"quiet_tensorflow({argv!r}, dict(os.environ), "
        f"help_without_tensorflow={help_without_tensorflow}); "
        "print('tensorflow' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == str(loaded)


# Every CLI but train's (whose parser needs Keras: its preload is the case above).
CLIS = [
    "convert",
    "convert select",
    "convert check",
    "inference",
    *(
        f"bench{name}"
        for name in (
            "", ".batch", ".bias_correction", ".capacity", ".dynamic_ops", ".finetune_cached",
            ".fuzz", ".inputs", ".int8_relus", ".onnx", ".onnx_int8", ".page", ".profile",
            ".quant_levers", ".serve", ".size",
        )
    ),
]  # fmt: skip


@pytest.mark.parametrize("cli", CLIS)
def test_help_prints_no_tensorflow_log_line(cli: str) -> None:
    """`--help` either skips TensorFlow or loads it silenced: a module that imports
    it for its parser must ask for the preload (help_without_tensorflow=False)."""
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL",)}
    env.pop("CLOTHING_VERBOSE", None)
    done = subprocess.run(
        [sys.executable, "-m", *cli.split(), "--help"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert done.returncode == 0 and "usage:" in done.stdout, done.stderr[-2000:]
    assert done.stderr == "", done.stderr[-2000:]
