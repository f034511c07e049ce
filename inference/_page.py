"""The listing page: one self-contained HTML document (inline CSS and JS, no
external loads) and its server-rendered result for browsers without JS.

The page's markup, style and script live in inference/page/ and are inlined
here once per process; the CSP allows exactly that script and that style by
their sha256 (CSP Level 3, "hash-source"), so nothing else can run.

Usage:
    from inference._page import render_page, page_csp
    html = render_page()                                   # the idle page
    html = render_page(answer={"label": "pants", ...})     # the no-JS result
    html = render_page(error_code="CORRUPT_IMAGE")         # the no-JS error
"""

from __future__ import annotations

import base64
import functools
import hashlib
import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PAGE_DIR = Path(__file__).resolve().parent / "page"
# Longest side of the photo the page uploads, and its JPEG quality. 1000 px is
# 6-7x the 150 px model input (and 3x the 299 px one), so the server's resize
# still has the detail it needs; a 1000 px JPEG at 0.9 is 100-400 KB, far under
# Lambda's 6 MB synchronous payload limit (AWS Lambda quotas), which a 3-12 MB
# phone photo is not.
MAX_SIDE_PX = 1000
JPEG_QUALITY = 0.9
# What the page refuses to upload itself: Lambda's 6 MB request limit, less the
# base64 growth (4/3) a function URL applies to binary bodies, less headroom.
UPLOAD_LIMIT_BYTES = 4 * 1024 * 1024
TOP_K = 3

# One sentence a seller understands for every error code (the JS page and the
# no-JS result page both use these). "UNAVAILABLE" is the network or a 5xx.
MESSAGES: dict[str, str] = {
    "UNSUPPORTED_FORMAT": (
        "We can't read this type of file. Please use a JPEG, PNG or WebP photo. "
        "iPhone photos in HEIC format: set Settings > Camera > Formats to "
        "\u201cMost Compatible\u201d, or share the photo as JPEG first."
    ),
    "PAYLOAD_TOO_LARGE": (
        "This photo is too large to upload. Please choose a smaller one, "
        "or take it again at a lower resolution."
    ),
    "IMAGE_TOO_LARGE": (
        "This photo has too many pixels for us to check. Please choose a smaller one."
    ),
    "CORRUPT_IMAGE": (
        "We couldn't read this photo: the file seems damaged or incomplete. "
        "Please choose it again or take a new one."
    ),
    "INVALID_REQUEST": "We didn't receive a photo. Please choose one and try again.",
    "UNAVAILABLE": "The service isn't available right now. Please try again in a minute.",
    "DEFAULT": "Something went wrong with this photo. Please try again or pick another one.",
}
# Error codes that are the service's fault, not the photo's.
UNAVAILABLE_CODES = frozenset({"FETCH_FAILED", "FETCH_TIMEOUT", "INTERNAL_ERROR"})

# How the product's labels read on the page (values sent stay the labels).
NAMES: dict[str, str] = {
    "dress": "Dress",
    "hat": "Hat",
    "longsleeve": "Long-sleeve top",
    "outwear": "Outerwear",
    "pants": "Pants",
    "shirt": "Shirt",
    "shoes": "Shoes",
    "shorts": "Shorts",
    "skirt": "Skirt",
    "t-shirt": "T-shirt",
}

TEXT: dict[str, str] = {
    "busy": "Looking at your photo\u2026",
    "title": "Suggested categories",
    "legend": "Pick the category for your listing",
    "more": "Another category",
    "unsure": "We're not sure what this is. Please pick the category yourself.",
    "pick": "Please pick a category.",
    "chosen": "Category:",
}


@dataclass(frozen=True)
class Assets:
    """The page's parts, read once: markup template, style, script and their CSP hashes."""

    template: str
    css: str
    js: str

    @property
    def csp(self) -> str:
        """Content-Security-Policy allowing this page's inline script and style only.

        No external loads (`default-src 'none'`), uploads only to this origin
        (`connect-src`/`form-action 'self'`), previews from blob: URLs, no framing.
        """
        return (
            "default-src 'none'; "
            f"script-src '{_sha256_source(self.js)}'; "
            f"style-src '{_sha256_source(self.css)}'; "
            "img-src 'self' blob: data:; connect-src 'self'; form-action 'self'; "
            "base-uri 'none'; frame-ancestors 'none'"
        )


def _sha256_source(text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return "sha256-" + base64.b64encode(digest).decode("ascii")


@functools.cache
def assets() -> Assets:
    """Read inference/page/ once per process (the files ship inside the package)."""
    return Assets(
        template=(PAGE_DIR / "page.html").read_text(encoding="utf-8"),
        css=(PAGE_DIR / "page.css").read_text(encoding="utf-8"),
        js=(PAGE_DIR / "page.js").read_text(encoding="utf-8"),
    )


def page_csp() -> str:
    """The Content-Security-Policy header value for pages from `render_page`."""
    return assets().csp


def _settings_json() -> str:
    settings = {
        "messages": MESSAGES,
        "names": NAMES,
        "maxSide": MAX_SIDE_PX,
        "quality": JPEG_QUALITY,
        "uploadLimit": UPLOAD_LIMIT_BYTES,
        "topK": TOP_K,
        **TEXT,
    }
    # Inside <script type="application/json">: "<" escaped, so no text can close it.
    return json.dumps(settings, ensure_ascii=False).replace("<", "\\u003c")


def render_page(*, answer: dict[str, Any] | None = None, error_code: str | None = None) -> str:
    """The whole page as HTML text: idle, or with a server-rendered result.

    answer: a prediction answer ({"label", "unsure", "scores", "top", ...}).
    error_code: an error code of the API (`MESSAGES` gives its sentence).
    Every value from the answer is escaped: labels are text, never markup.
    """
    parts = assets()
    if error_code is not None:
        result = _error_html(error_code)
    elif answer is not None:
        result = _answer_html(answer)
    else:
        result = ""
    replacements = {
        "{{css}}": parts.css,
        "{{js}}": parts.js,
        "{{settings}}": _settings_json(),
        "{{result_hidden}}": "" if result else " hidden",
        "{{result}}": result,
    }
    page = parts.template
    for marker, value in replacements.items():
        page = page.replace(marker, value)
    return page


def message_for(code: str, *, status: int = 400) -> str:
    """The seller's sentence for an API error code (a 5xx without one: unavailable)."""
    if code in MESSAGES:
        return MESSAGES[code]
    if code in UNAVAILABLE_CODES or status >= 500:
        return MESSAGES["UNAVAILABLE"]
    return MESSAGES["DEFAULT"]


def _error_html(code: str) -> str:
    text = html.escape(message_for(code))
    return f'<p class="error" role="alert" data-code="{html.escape(code)}">{text}</p>'


def _name(label: str) -> str:
    return html.escape(NAMES.get(label, label))


def _choice_html(label: str, score: float | None, *, checked: bool) -> str:
    pct = ""
    if score is not None:
        shown = "<1%" if score < 0.005 else f"{round(score * 100)}%"
        pct = f'<span class="pct">{html.escape(shown)}</span>'
    return (
        f'<label class="choice"><input type="radio" name="category" '
        f'value="{html.escape(label)}"{" checked" if checked else ""}>'
        f'<span class="name">{_name(label)}</span>{pct}</label>'
    )


def _score(item: dict[str, Any]) -> float:
    """A top entry's probability: "score" (calibrated answers) or "probability"."""
    value = item.get("score", item.get("probability"))
    return float(value) if isinstance(value, int | float) else 0.0


def _answer_html(answer: dict[str, Any]) -> str:
    unsure = answer.get("unsure") is True or answer.get("label") is None
    top = [t for t in answer.get("top", []) if isinstance(t, dict)][:TOP_K]
    shown = {str(t.get("label")) for t in top}
    rows = [
        _choice_html(str(t.get("label")), _score(t), checked=not unsure and i == 0)
        for i, t in enumerate(top)
    ]
    others = [
        _choice_html(str(label), None, checked=False)
        for label in answer.get("scores", {})
        if str(label) not in shown
    ]
    note = f'<p class="note" id="unsure">{html.escape(TEXT["unsure"])}</p>' if unsure else ""
    if unsure or not top:
        chosen = html.escape(TEXT["pick"])
    else:
        chosen = f"{html.escape(TEXT['chosen'])} <strong>{_name(str(top[0]['label']))}</strong>"
    return (
        f"<h2>{html.escape(TEXT['title'])}</h2>{note}"
        f"<fieldset><legend>{html.escape(TEXT['legend'])}</legend>"
        f'<div class="choices">{"".join(rows)}</div>'
        f"<details><summary>{html.escape(TEXT['more'])}</summary>"
        f'<div class="choices all">{"".join(others)}</div></details></fieldset>'
        f'<p class="chosen" id="chosen">{chosen}</p>'
    )
