"""Real-world inputs (issue 11): the corpus in tests/images/corpus/ through every entry point.

Each file is one kind of fault with its right answer (tests/images/corpus.py
writes them and cases.json): classified with known pixels, or a typed error
with a stable code. The same files go through `decode_image`, the CLI, the
Lambda handler (direct invoke and each HTTP event kind, multipart included)
and training's loader. Timing is measured by `python -m bench.inputs`, not here.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from inference import (
    Classifier,
    FetchConfig,
    InferenceError,
    decode_image,
    handle_event,
    parse_form_data,
)
from inference.__main__ import main as inference_main
from inference._sniff import accepted_formats

CORPUS = Path(__file__).parent / "images" / "corpus"
CASES: dict[str, dict[str, Any]] = json.loads((CORPUS / "cases.json").read_text())
STATUS = {"UNSUPPORTED_FORMAT": 415, "IMAGE_TOO_LARGE": 422, "CORRUPT_IMAGE": 422}
# What no answer may hold: object reprs, addresses, file paths.
LEAKS = re.compile(r"\b0x[0-9a-f]{6,}|<[\w.]+ object|/tmp/|/work/|/home/|\\.py\b")


def answer(name: str) -> dict[str, Any]:
    """The case's answer on this installation (AVIF/HEIF depend on what is installed)."""
    case = CASES[name]
    requires = case.get("requires")
    if requires and requires not in accepted_formats():
        word = {"HEIF": "heic", "AVIF": "AVIF"}[requires]
        return {"code": "UNSUPPORTED_FORMAT", "contains": [word]}
    return case


def expected_pixels(name: str) -> np.ndarray:
    return np.load(CORPUS / f"{name}.expected.npy")


@pytest.fixture(scope="module")
def classifier(tiny_bundle: Path) -> Classifier:
    return Classifier.load(tiny_bundle)


def test_corpus_covers_every_kind() -> None:
    files = {p.name for p in CORPUS.iterdir() if p.suffix not in (".json", ".npy")}
    assert files == set(CASES)
    codes = {case["code"] for case in CASES.values()}
    assert codes == {None, "CORRUPT_IMAGE", "IMAGE_TOO_LARGE", "UNSUPPORTED_FORMAT"}
    assert {"AVIF", "HEIF"} <= {case.get("requires") for case in CASES.values()}


@pytest.mark.parametrize("name", sorted(CASES))
def test_decode(name: str) -> None:
    case = answer(name)
    data = (CORPUS / name).read_bytes()
    if case["code"] is None:
        rgb = np.asarray(decode_image(data))
        assert rgb.shape == expected_pixels(name).shape
        assert np.array_equal(rgb, expected_pixels(name))
        return
    with pytest.raises(InferenceError) as info:
        decode_image(data)
    assert info.value.code == case["code"]
    for word in case["contains"]:
        assert word in str(info.value)
    assert not LEAKS.search(str(info.value)), str(info.value)


# ---------------------------------------------------------------------------
# The handler: direct invoke and each HTTP event kind.

BOUNDARY = "------------------------d74496d66958873e"


def multipart(data: bytes, filename: str) -> bytes:
    return (
        (
            f"--{BOUNDARY}\r\n"
            f'Content-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )


def event(kind: str, data: bytes, name: str) -> dict[str, Any]:
    """One event of each kind AWS sends (shapes as in tests/events/)."""
    if kind == "direct":
        return {"image": base64.b64encode(data).decode(), "top_k": 3}
    body, content_type = data, "application/octet-stream"
    if kind.endswith("form"):
        body, content_type = multipart(data, name), f"multipart/form-data; boundary={BOUNDARY}"
    encoded = base64.b64encode(body).decode()
    if kind.startswith("rest"):
        return {
            "resource": "/predict",
            "path": "/predict",
            "httpMethod": "POST",
            "headers": {"Content-Type": content_type, "Accept": "application/json"},
            "requestContext": {"httpMethod": "POST", "stage": "prod"},
            "body": encoded,
            "isBase64Encoded": True,
        }
    return {
        "version": "2.0",
        "routeKey": "$default" if kind.startswith("url") else "POST /predict",
        "rawPath": "/" if kind.startswith("url") else "/predict",
        "headers": {"content-type": content_type, "accept": "application/json"},
        "requestContext": {"http": {"method": "POST", "path": "/"}},
        "body": encoded,
        "isBase64Encoded": True,
    }


KINDS = ["direct", "rest_binary", "rest_form", "v2_binary", "v2_form", "url_binary", "url_form"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", sorted(CASES))
def test_handler(name: str, kind: str, classifier: Classifier) -> None:
    case = answer(name)
    outcome = handle_event(
        event(kind, (CORPUS / name).read_bytes(), name),
        classifier=classifier,
        fetch_config=FetchConfig(),
    )
    response = outcome.response()
    body = response if kind == "direct" else json.loads(response["body"])
    if case["code"] is None:
        assert outcome.status == 200, body
        x = classifier.preprocess(Image.fromarray(expected_pixels(name)))
        expected = classifier.predict_array(x, top_k=3).to_dict()
        assert body["scores"] == pytest.approx(expected["scores"], abs=1e-6)
        assert body["label"] == expected["label"]
        return
    assert body["error"]["code"] == case["code"]
    if kind != "direct":
        assert response["statusCode"] == STATUS[case["code"]]
    assert not LEAKS.search(body["error"]["message"]), body["error"]["message"]


# ---------------------------------------------------------------------------
# The CLI: good images around bad ones are all answered, in one JSON document.


def test_cli_classifies_good_images_around_bad_ones(
    tiny_bundle: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    names = sorted(CASES)
    paths = []
    for name in names:  # names that say nothing of the content, as on a phone
        paths.append(tmp_path / f"IMG_{len(paths):04d}.jpg")
        shutil.copy(CORPUS / name, paths[-1])
    code = inference_main(["predict", *map(str, paths), "--model", str(tiny_bundle), "--json"])
    results = json.loads(capsys.readouterr().out)["results"]
    assert [r["image"] for r in results] == list(map(str, paths))
    for name, result in zip(names, results, strict=True):
        want = answer(name)["code"]
        got = result["error"]["code"] if "error" in result else None
        assert got == want, (name, result)
        if got is None:
            assert result["label"] in result["scores"]
    assert code == 1  # some failed, every one answered


# ---------------------------------------------------------------------------
# Training: every corpus file in a class folder; the bad ones skipped with the count.


def test_training_reads_the_corpus(tmp_path: Path, tiny_dataset: Path) -> None:
    from tests.test_train import tiny_config
    from train.run import train_model

    folder = tiny_dataset / "train" / "hat"
    for name in CASES:
        shutil.copy(CORPUS / name, folder / f"x_{name}")
    metrics = train_model(tiny_config(tmp_path, tiny_dataset, epochs=1))
    bad = {f"x_{n}" for n in CASES if answer(n)["code"] is not None}
    assert {Path(s["path"]).name for s in metrics["skipped"]} == bad
    assert metrics["n_images"]["train"] == 18 + len(CASES)  # files found; the bad ones skipped


# ---------------------------------------------------------------------------
# multipart/form-data parsing (the public function the page's form also uses)


def form_body(*parts: tuple[str, str | None, bytes]) -> bytes:
    out = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        out += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode()
        out += data + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode()


CT = f"multipart/form-data; boundary={BOUNDARY}"


@pytest.mark.parametrize(
    ("parts", "image", "fields"),
    [
        ([("file", "a.jpg", b"IMG")], b"IMG", {}),
        ([("top_k", None, b"5"), ("file", "a.jpg", b"IMG")], b"IMG", {"top_k": "5"}),
        (
            [("file", "", b""), ("url", None, b"http://x.test/a.jpg")],
            None,
            {"url": "http://x.test/a.jpg"},
        ),
        ([("a", "1.jpg", b"ONE"), ("b", "2.jpg", b"TWO")], b"ONE", {}),  # first file wins
        ([("top_k", None, b"1"), ("top_k", None, b"2")], None, {"top_k": "1"}),  # first value
        ([("note", None, "hosen ä".encode())], None, {"note": "hosen ä"}),
    ],
)
def test_parse_form_data(
    parts: list[tuple[str, str | None, bytes]], image: bytes | None, fields: dict[str, str]
) -> None:
    form = parse_form_data(form_body(*parts), CT, max_file_bytes=100)
    assert form.image == image
    assert dict(form.fields) == fields


@pytest.mark.parametrize(
    ("body", "content_type", "code"),
    [
        (form_body(("file", "a.jpg", b"x" * 101)), CT, "PAYLOAD_TOO_LARGE"),
        (form_body(("url", None, b"x" * 9000)), CT, "PAYLOAD_TOO_LARGE"),
        (form_body(*[(f"f{i}", None, b"1") for i in range(17)]), CT, "PAYLOAD_TOO_LARGE"),
        (form_body(("file", "a.jpg", b"IMG")), "multipart/form-data", "INVALID_REQUEST"),
        (form_body(("file", "a.jpg", b"IMG"))[:-20], CT, "INVALID_REQUEST"),
        (b"not a form at all", CT, "INVALID_REQUEST"),
        (b"", CT, "INVALID_REQUEST"),
    ],
)
def test_parse_form_data_refuses(body: bytes, content_type: str, code: str) -> None:
    with pytest.raises(InferenceError) as info:
        parse_form_data(body, content_type, max_file_bytes=100)
    assert info.value.code == code


# ---------------------------------------------------------------------------
# Golden multipart events (tests/events/multipart/): each HTTP event kind.

FORM_EVENTS = Path(__file__).parent / "events" / "multipart"
FORM_GOLDEN: dict[str, tuple[int, str | None, int]] = {
    # file: (status, error code or None, top_k)
    "apigw_rest_form_image.json": (200, None, 5),  # curl -F file=@pants.jpg '...?top_k=5'
    "http_api_v2_form_image.json": (200, None, 2),  # a browser form: file + empty url + top_k
    "function_url_form_image.json": (200, None, 3),  # a phone photo with broken EXIF
    "function_url_form_url.json": (200, None, 4),  # no file chosen, a pasted URL
    "bad_http_api_v2_form_no_boundary.json": (400, "INVALID_REQUEST", 0),
    "bad_function_url_form_no_file.json": (400, "INVALID_REQUEST", 0),
    "bad_apigw_rest_form_cut_short.json": (400, "INVALID_REQUEST", 0),
    "bad_apigw_rest_form_top_k.json": (400, "INVALID_REQUEST", 0),
}


def test_every_form_event_is_in_the_table() -> None:
    assert sorted(p.name for p in FORM_EVENTS.glob("*.json")) == sorted(FORM_GOLDEN)


@pytest.mark.parametrize("name", sorted(FORM_GOLDEN))
def test_form_golden_events(
    name: str, classifier: Classifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.support.net import ImageServer, net_guard

    status, code, top_k = FORM_GOLDEN[name]
    event = json.loads((FORM_EVENTS / name).read_text())
    server = ImageServer().start()
    try:
        with net_guard(monkeypatch):
            base = server.url("/", host="images.test").encode()
            body = base64.b64decode(event["body"]).replace(b"http://images.test/", base)
            event["body"] = base64.b64encode(body).decode()
            outcome = handle_event(
                event, classifier=classifier, fetch_config=FetchConfig(allow_loopback=True)
            )
    finally:
        server.close()
    response = outcome.response()
    body = json.loads(response["body"])
    assert response["statusCode"] == status, body
    if code is None:
        assert len(body["top"]) == top_k
        assert outcome.request is not None
        assert outcome.request.source == ("url" if name.endswith("_url.json") else "form")
    else:
        assert body["error"]["code"] == code
