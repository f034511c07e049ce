"""Headless Chromium driving the listing page, for `python -m bench.page` and
the browser tests (tests/test_page_browser.py).

Chromium and its driver are the Debian packages `chromium` and `chromium-driver`
(.ci/run installs them); Selenium is given the driver's path, so nothing
downloads a browser (selenium-manager never runs).

Usage:
    with page_server(model_dir) as server, chromium() as driver:
        shown = upload(driver, server.url, Path("shirt.jpg"))
        shown.checked, server.last_upload()     # the suggestion, the bytes sent
"""

from __future__ import annotations

import base64
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
# No sandbox (CI runs as root), and nothing that reaches the network on its
# own: background networking, component updates, sync, QUIC.
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
)


class BrowserMissingError(RuntimeError):
    """Chromium or chromium-driver is not installed."""


@contextmanager
def chromium(*, width: int = 1280, height: int = 900, javascript: bool = True) -> Iterator[Any]:
    """A fresh headless Chromium (its own profile folder) with a readable console log.

    Raises BrowserMissingError when /usr/bin/chromium or /usr/bin/chromedriver is missing.
    """
    if not CHROMIUM.is_file() or not CHROMEDRIVER.is_file():
        raise BrowserMissingError(
            f"Chromium is not installed ({CHROMIUM}, {CHROMEDRIVER}): "
            "apt-get install -y chromium chromium-driver (.ci/run does)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="page-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        options.add_argument(flag)
    if not javascript:
        options.add_experimental_option(
            "prefs", {"profile.managed_default_content_settings.javascript": 2}
        )
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def set_viewport(driver: Any, *, width: int, height: int, mobile: bool) -> None:
    """Emulate a device viewport (headless windows cannot be narrower than 500 px)."""
    metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)


def console_errors(driver: Any) -> list[str]:
    """SEVERE console messages since the last call (CSP violations, failed loads, JS errors)."""
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


class PageServer:
    """The local server (`python -m inference serve`'s) on a free port, in a thread,
    recording the body of each POST so a test can classify the same bytes."""

    def __init__(self, handler: Any) -> None:
        from inference import make_server

        self._lock = threading.Lock()
        self._uploads: list[tuple[str, bytes]] = []
        self._handler = handler
        self.server = make_server(port=0, handler=self._record)
        self.url = self.server.url

    def _record(self, event: dict[str, Any], context: Any) -> Any:
        if event["requestContext"]["http"]["method"] == "POST":
            body = event.get("body") or ""
            raw = base64.b64decode(body) if event.get("isBase64Encoded") else body.encode()
            with self._lock:
                self._uploads.append((event["headers"].get("content-type", ""), raw))
        return self._handler(event, context)

    def last_upload(self) -> tuple[str, bytes]:
        """(content type, body) of the latest POST."""
        with self._lock:
            return self._uploads[-1]

    def start(self) -> PageServer:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def page_server(model_dir: Path, *, handler: Any = None) -> Iterator[PageServer]:
    """Serve `model_dir` through lambda_function.lambda_handler (or `handler`)."""
    import lambda_function

    previous = os.environ.get("MODEL_DIR")
    os.environ["MODEL_DIR"] = str(model_dir)
    lambda_function._state.cache_clear()
    server = PageServer(handler or lambda_function.lambda_handler).start()
    try:
        yield server
    finally:
        server.close()
        lambda_function._state.cache_clear()
        if previous is None:
            os.environ.pop("MODEL_DIR", None)
        else:
            os.environ["MODEL_DIR"] = previous


@dataclass(frozen=True)
class Shown:
    """What the page shows after an upload."""

    state: str  # "result" | "unsure" | "error"
    suggestions: tuple[str, ...] = ()  # the top choices, in order (values = labels)
    percents: tuple[str, ...] = ()
    checked: str | None = None  # the checked radio's label
    all_labels: tuple[str, ...] = ()  # every category a seller can pick
    code: str | None = None  # error code (data-code) of an error
    message: str = ""


def upload(driver: Any, url: str, image: Path, *, timeout_s: float = 30.0) -> Shown:
    """Open the page, give `image` to the file input, wait for the answer, read it."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    driver.find_element(By.ID, "photo").send_keys(str(image.resolve()))
    WebDriverWait(driver, timeout_s).until(
        lambda d: (
            d.find_element(By.ID, "result").get_attribute("aria-busy") == "false"
            and d.find_elements(By.CSS_SELECTOR, "#result fieldset, #result .error")
        )
    )
    return read_result(driver)


def read_result(driver: Any) -> Shown:
    """Read the result section as a user (or assistive technology) would."""
    from selenium.webdriver.common.by import By

    errors = driver.find_elements(By.CSS_SELECTOR, "#result .error")
    if errors:
        return Shown(
            state="error", code=errors[0].get_attribute("data-code"), message=errors[0].text
        )
    top = driver.find_elements(By.CSS_SELECTOR, "#result .choices:not(.all) input")
    every = driver.find_elements(By.CSS_SELECTOR, "#result input[name=category]")
    checked = [r.get_attribute("value") for r in every if r.is_selected()]
    percents = driver.find_elements(By.CSS_SELECTOR, "#result .pct")
    unsure = bool(driver.find_elements(By.ID, "unsure"))
    return Shown(
        state="unsure" if unsure else "result",
        suggestions=tuple(r.get_attribute("value") for r in top),
        percents=tuple(p.get_attribute("textContent") for p in percents),
        checked=checked[0] if checked else None,
        all_labels=tuple(r.get_attribute("value") for r in every),
    )
