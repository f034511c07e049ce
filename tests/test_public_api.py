"""inference's public API: `__all__` is pinned, and only inference/ reaches its private modules.

httpx does the same (tests/test_exported_members.py): a name added to or removed
from the package's surface must be a deliberate edit of this list. convert/,
train/, bench/, examples/ and lambda_function.py are users of the runtime like
any other and import only these names. The test suite itself may reach private
modules to test them directly, so tests/ (outside tests/support/) is not scanned.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import inference

REPO = Path(__file__).resolve().parent.parent

EXPECTED_ALL = [
    "ALLOWED_FORMATS",
    "DEFAULT_MAX_BATCH_ITEMS",
    "DEFAULT_MAX_PIXELS",
    "FORMAT_RUNTIMES",
    "IMAGE_SUFFIXES",
    "MANIFEST_FILENAME",
    "MAX_BATCH_ITEMS_LIMIT",
    "MIN_IMAGE_SIZE",
    "MODEL_FILENAME",
    "PREPROCESSING",
    "RESIZE",
    "RUNTIMES",
    "RUNTIME_ORDER",
    "SCHEMA_VERSION",
    "BatchConfig",
    "BatchOutcome",
    "BatchSummary",
    "Bundle",
    "BundleError",
    "Classifier",
    "CorruptImageError",
    "DeadlineExceededError",
    "FetchConfig",
    "FetchError",
    "FetchTimeoutError",
    "FormData",
    "ImageTooLargeError",
    "InferenceConfig",
    "InferenceError",
    "InvalidRequestError",
    "Laps",
    "LocalServer",
    "Manifest",
    "Outcome",
    "PayloadTooLargeError",
    "Prediction",
    "RouteConfig",
    "RuntimeInfo",
    "RuntimeUnavailableError",
    "S3AccessDeniedError",
    "S3BucketNotAllowedError",
    "S3Config",
    "S3ObjectNotFoundError",
    "S3ReadError",
    "S3Ref",
    "Timing",
    "TooManyItemsError",
    "URLNotAllowedError",
    "UnsupportedFormatError",
    "accepted_formats",
    "check_calibration",
    "check_image_size",
    "check_labels",
    "check_unsure_threshold",
    "decode_image",
    "fetch_url",
    "handle_batch",
    "handle_event",
    "interpreter_class",
    "is_batch_event",
    "is_form_data",
    "is_http_event",
    "load_image",
    "make_interpreter",
    "make_server",
    "parse_form_data",
    "parse_s3_ref",
    "preprocess_file",
    "preprocess_image",
    "publish_dir",
    "quiet_tensorflow",
    "read_bundle",
    "read_s3_object",
    "register_heif",
    "render_page",
    "request_header",
    "route",
    "run_batch",
    "sha256_file",
    "softmax",
    "staging_dir",
    "time_interleaved",
    "to_rgb",
    "write_atomic",
    "write_json_atomic",
]

# Everything outside inference/ that ships or runs from the checkout.
SCANNED = ["convert", "train", "bench", "examples", "tests/support", "lambda_function.py"]


def test_all_is_pinned() -> None:
    assert inference.__all__ == EXPECTED_ALL


@pytest.mark.parametrize("name", EXPECTED_ALL)
def test_exported_name_exists(name: str) -> None:
    assert hasattr(inference, name), f"inference.__all__ names {name!r}, which is missing"


def private_imports(source: str) -> list[str]:
    """The `inference._*` modules (or `from inference import _x` names) that `source` imports."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("inference._")]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.startswith("inference._"):
                found.append(node.module)
            elif node.module == "inference":
                found += [f"inference.{a.name}" for a in node.names if a.name.startswith("_")]
    return found


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from inference._runtime import RUNTIMES", ["inference._runtime"]),
        ("import inference._quiet", ["inference._quiet"]),
        ("def f():\n    from inference import _sniff", ["inference._sniff"]),
        ("from inference import RUNTIMES, Classifier", []),
        ("import inference.preprocess", []),
        ("from inference_extra._x import y", []),
    ],
)
def test_private_imports_finds_them(source: str, expected: list[str]) -> None:
    assert private_imports(source) == expected


def _python_files() -> list[Path]:
    files: list[Path] = []
    for entry in SCANNED:
        path = REPO / entry
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return files


def test_no_private_inference_imports_outside_inference() -> None:
    files = _python_files()
    assert len(files) > 20, f"scanned too few files: {files}"
    offenders = {
        str(path.relative_to(REPO)): found
        for path in files
        if (found := private_imports(path.read_text(encoding="utf-8")))
    }
    assert offenders == {}
