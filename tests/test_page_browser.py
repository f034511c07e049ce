"""Integration: the listing page in headless Chromium with a real bundle.

The local server runs lambda_function.lambda_handler on a free port (as
`python -m inference serve` does) with a bundle converted from the real-data
model (`real_train_output`); real test images go through the file input.
Chromium and chromium-driver are Debian packages (.ci/run installs them): if
they are missing these tests fail, they do not skip.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from inference._page import MESSAGES, NAMES
from tests.conftest import DATA_DIR, LABELS, REPO
from tests.support.browser import (
    BrowserMissingError,
    PageServer,
    chromium,
    console_errors,
    page_server,
    read_result,
    set_viewport,
    upload,
)

pytestmark = pytest.mark.integration

# One photo per class shape: tall dress-like, wide shoes, square hats...
PHOTOS = ("pants", "shoes", "t-shirt", "hat", "dress")


def test_photo(label: str, index: int = 0) -> Path:
    return sorted((DATA_DIR / "test" / label).glob("*.jpg"))[index]


test_photo.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


@pytest.fixture(scope="module")
def real_bundle(real_train_output: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from convert import ConvertConfig, convert_model

    out = tmp_path_factory.mktemp("page_bundle") / "bundles"
    convert_model(ConvertConfig(train_dir=real_train_output, out_dir=out, variants=("float32",)))
    return out / "float32"


@pytest.fixture(scope="module")
def server(real_bundle: Path) -> Iterator[PageServer]:
    with page_server(real_bundle) as srv:
        yield srv


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        with chromium() as driver:
            yield driver
    except BrowserMissingError as exc:
        pytest.fail(str(exc))


@pytest.fixture
def driver(browser: Any) -> Iterator[Any]:
    """The module's browser, at desktop size, its console log emptied."""
    set_viewport(browser, width=1024, height=768, mobile=False)
    console_errors(browser)
    yield browser


def predict_cli(bundle: Path, files: list[Path]) -> list[dict[str, Any]]:
    argv = [sys.executable, "-m", "inference", "predict", *map(str, files)]
    argv += ["--model", str(bundle), "--json"]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    results: list[dict[str, Any]] = json.loads(done.stdout)["results"]
    return results


def test_suggestion_equals_predict_on_the_uploaded_bytes(
    driver: Any, server: PageServer, real_bundle: Path, tmp_path: Path
) -> None:
    # A phone-size photo too: 4x a test image, so the page really downscales it.
    big = tmp_path / "big.jpg"
    with Image.open(test_photo("skirt")) as img:
        img.resize((img.width * 4, img.height * 4), Image.Resampling.BICUBIC).save(big, quality=95)
    photos = [test_photo(label) for label in PHOTOS] + [big]
    shown, sent = [], []
    for i, photo in enumerate(photos):
        shown.append(upload(driver, server.url, photo))
        content_type, body = server.last_upload()
        assert content_type == "image/jpeg"
        sent.append(tmp_path / f"sent_{i}.jpg")
        sent[-1].write_bytes(body)
    expected = predict_cli(real_bundle, sent)
    for page, cli, file in zip(shown, expected, sent, strict=True):
        assert page.state in ("result", "unsure"), page
        top = [t["label"] for t in cli["top"]]
        assert list(page.suggestions) == top  # same top 3, same order
        if page.state == "result":
            assert page.checked == top[0]  # the best one preselected
        score = cli["top"][0].get("score", cli["top"][0].get("probability"))
        assert page.percents[0] in (f"{round(score * 100)}%", "<1%")
        assert sorted(page.all_labels) == sorted(LABELS)  # all 10 reachable
        with Image.open(file) as img:
            assert img.format == "JPEG" and max(img.size) <= 1000
    with Image.open(sent[-1]) as img:
        assert max(img.size) == 1000  # the phone-size photo was downscaled
    assert console_errors(driver) == []


def test_manual_pick_by_mouse_and_keyboard(driver: Any, server: PageServer) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    shown = upload(driver, server.url, test_photo("pants"))
    other = next(label for label in LABELS if label not in shown.suggestions)
    driver.find_element(By.CSS_SELECTOR, "#result summary").click()
    driver.find_element(By.CSS_SELECTOR, f'#result input[value="{other}"]').click()
    assert read_result(driver).checked == other
    assert NAMES[other] in driver.find_element(By.ID, "chosen").text
    # Keyboard: focus the first suggestion, arrow down picks the next one.
    first = driver.find_element(By.CSS_SELECTOR, "#result .choices input")
    first.send_keys(Keys.SPACE)
    assert read_result(driver).checked == shown.suggestions[0]
    first.send_keys(Keys.ARROW_DOWN)
    assert read_result(driver).checked == shown.suggestions[1]
    assert NAMES[shown.suggestions[1]] in driver.find_element(By.ID, "chosen").text
    assert console_errors(driver) == []


def test_unsure_answer_asks_the_seller_to_pick(real_bundle: Path, driver: Any) -> None:
    """An answer with unsure=true (issue 10's contract): suggestions shown, none chosen."""
    import lambda_function

    def unsure_handler(event: dict[str, Any], context: Any) -> Any:
        response = lambda_function.lambda_handler(event, context)
        if event["requestContext"]["http"]["method"] == "POST":
            answer = json.loads(response["body"])
            response["body"] = json.dumps({**answer, "label": None, "unsure": True})
        return response

    with page_server(real_bundle, handler=unsure_handler) as srv:
        shown = upload(driver, srv.url, test_photo("shirt"))
    assert shown.state == "unsure" and shown.checked is None
    assert len(shown.suggestions) == 3 and sorted(shown.all_labels) == sorted(LABELS)
    from selenium.webdriver.common.by import By

    assert "not sure" in driver.find_element(By.ID, "unsure").text
    assert console_errors(driver) == []


HEIC = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(200)


@pytest.mark.parametrize(
    ("name", "data", "codes"),
    [
        # Chromium cannot decode HEIC, so the page sends the bytes as they are: without
        # the `heic` extra the server refuses the format (with the HEIC hint); with it,
        # these made-up bytes are a HEIC it cannot decode.
        ("photo.heic", HEIC, ("UNSUPPORTED_FORMAT", "CORRUPT_IMAGE")),
        ("broken.jpg", b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4, ("CORRUPT_IMAGE",)),
        ("notes.txt", b"not a photo at all", ("UNSUPPORTED_FORMAT",)),
    ],
)
def test_bad_files_show_their_sentence(
    name: str, data: bytes, codes: tuple[str, ...], driver: Any, server: PageServer, tmp_path: Path
) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    shown = upload(driver, server.url, path)
    assert shown.state == "error" and shown.code in codes
    assert shown.message == MESSAGES[str(shown.code)]
    if shown.code == "UNSUPPORTED_FORMAT":
        assert "HEIC" in shown.message
    # Only Chromium's own line for the 4xx answer, no script or CSP error.
    assert all("the server responded with a status of 4" in e for e in console_errors(driver))


def test_a_real_heic_photo(driver: Any, server: PageServer) -> None:
    """An iPhone's HEIC: Chromium cannot draw it, so the page uploads it as it is;
    a server with the `heic` extra classifies it, one without explains HEIC."""
    from inference._sniff import heif_available

    heic = REPO / "tests/images/corpus/photo.heic"
    shown = upload(driver, server.url, heic)
    assert server.last_upload() == ("application/octet-stream", heic.read_bytes())
    if heif_available():
        assert shown.state in ("result", "unsure") and len(shown.suggestions) == 3
        assert console_errors(driver) == []
    else:
        assert shown.code == "UNSUPPORTED_FORMAT" and "HEIC" in shown.message


def test_narrow_phone_viewport_has_no_horizontal_scroll(driver: Any, server: PageServer) -> None:
    from selenium.webdriver.common.by import By

    set_viewport(driver, width=360, height=740, mobile=True)
    shown = upload(driver, server.url, test_photo("t-shirt"))
    driver.find_element(By.CSS_SELECTOR, "#result summary").click()
    widths = driver.execute_script(
        "return [document.documentElement.scrollWidth, document.documentElement.clientWidth,"
        " window.innerWidth]"
    )
    assert widths[2] == 360 and widths[0] <= widths[1], widths
    result = driver.find_element(By.ID, "result")
    assert result.is_displayed() and result.rect["x"] + result.rect["width"] <= 360
    assert shown.state in ("result", "unsure")
    assert console_errors(driver) == []


def test_form_without_javascript(server: PageServer, real_bundle: Path) -> None:
    """The plain <form> posts multipart and gets the HTML result page."""
    from selenium.webdriver.common.by import By

    photo = test_photo("shoes")
    with chromium(javascript=False) as nojs:
        nojs.get(server.url)
        assert not nojs.find_element(By.ID, "camera-button").is_displayed()  # JS-only
        nojs.find_element(By.ID, "photo").send_keys(str(photo))
        nojs.find_element(By.ID, "send").click()
        shown = read_result(nojs)
        assert nojs.find_element(By.ID, "result").get_attribute("aria-live") == "polite"
        errors = console_errors(nojs)
    content_type, body = server.last_upload()
    assert content_type.startswith("multipart/form-data")
    assert photo.read_bytes() in body  # the original file, not downscaled
    expected = predict_cli(real_bundle, [photo])[0]  # the original file: no JS, no downscale
    assert shown.suggestions == tuple(t["label"] for t in expected["top"])
    if shown.state == "result":
        assert shown.checked == expected["top"][0]["label"]
    assert sorted(shown.all_labels) == sorted(LABELS)
    assert errors == []
