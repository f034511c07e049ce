"""Lambda events -> a `Request`: where the image comes from and what to answer.

The events are those `lambda_function.lambda_handler` receives (its docstring
lists them): direct invocations ({"url": ...}, {"image": "<base64>"},
{"s3": {...}}, batches of these) and HTTP events (API Gateway REST and HTTP
APIs, Lambda function URLs; the local server sends the same). A bad event
raises a typed `InferenceError` (inference/_errors.py) whose message names the
field and echoes what was received. Nothing here fetches an image or decodes
one; `decode_base64` runs in the step timed as the fetch (inference/_handle.py).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import re
from dataclasses import dataclass
from typing import Any

from inference._classifier import check_unsure_threshold
from inference._errors import InvalidRequestError, PayloadTooLargeError, TooManyItemsError
from inference._form import FormData, is_form_data, parse_form_data
from inference._routes import request_header
from inference._s3 import S3Ref, parse_s3_ref

DEFAULT_TOP_K = 3
# Room for the JSON around a base64 image in a request body.
BODY_OVERHEAD_BYTES = 64 * 1024

# Batches ({"items": [...]}, Step Functions' ItemBatcher {"Items": [...], "BatchInput": {...}}):
# 100 items by default, as a batch's answer (1.3 KB per item, 1.8 KB with top_k 10: 175 KB)
# stays under the 256 KiB Step Functions allows a state's output ("Quotas related to
# state machine executions" in the Step Functions developer guide), and 100
# sequential URL fetches at their 5 s deadline (FETCH_TIMEOUT_S) still end
# inside Lambda's 900 s maximum timeout.
DEFAULT_MAX_BATCH_ITEMS = 100
MAX_BATCH_ITEMS_LIMIT = 10_000  # the largest MAX_BATCH_ITEMS accepted


@dataclass(frozen=True)
class Request:
    """A parsed event: where the image comes from and how many classes to list."""

    source: str  # "url" | "image" (base64) | "s3" | "body" (binary HTTP body) | "form" (multipart)
    url: str | None = None
    s3: S3Ref | None = None
    image_b64: str | None = None  # decoded (and size-checked) in the fetch step
    image: bytes | None = None
    top_k: int = DEFAULT_TOP_K
    unsure_threshold: float | None = None  # None: the classifier's (bundle, env)


def is_http_event(event: Any) -> bool:
    """API Gateway REST (v1), HTTP API (v1, v2) and function URL events."""
    return (
        isinstance(event, dict)
        and isinstance(event.get("requestContext"), dict)
        and any(key in event for key in ("httpMethod", "routeKey", "rawPath"))
    )


def parse_event(event: Any, *, max_bytes: int, n_labels: int) -> Request:
    """Validate an event (direct or HTTP); raise a typed error if it is bad.

    A base64 `image` is checked and decoded later, by `decode_base64`, in the
    step timed as "fetch" (getting the image's bytes). `s3` references are
    accepted in direct events only: whoever may call `lambda:InvokeFunction`
    was let in by IAM, while a public function URL would let anyone read the
    classes of the allowed buckets' objects.
    """
    if is_http_event(event):
        return _parse_http(event, max_bytes=max_bytes, n_labels=n_labels)
    if not isinstance(event, dict):
        raise InvalidRequestError(
            'The event must be a JSON object like {"url": "https://..."} or {"image": "<base64>"}. '
            f"Received: {_json_type(event)}"
        )
    return _parse_fields(event, n_labels=n_labels, allow_s3=True)


def _parse_fields(fields: dict[str, Any], *, n_labels: int, allow_s3: bool = False) -> Request:
    if not allow_s3 and ("items" in fields or "Items" in fields):
        raise InvalidRequestError(
            "Batches (`items`, or Step Functions' `Items`) are accepted in direct invocations "
            "only (lambda:InvokeFunction), not over HTTP."
        )
    if not allow_s3 and fields.get("s3") is not None:
        raise InvalidRequestError(
            "`s3` references are accepted in direct invocations only (lambda:InvokeFunction), "
            "not over HTTP."
        )
    url, image, s3 = fields.get("url"), fields.get("image"), fields.get("s3")
    given = [
        name for name, value in (("url", url), ("image", image), ("s3", s3)) if value is not None
    ]
    if len(given) != 1:
        received = " and ".join(given) if given else "neither"
        choices = "`url` (an image URL) or `image` (base64)"
        if allow_s3:
            choices = "`url` (an image URL), `image` (base64) or `s3` (bucket and key)"
        raise InvalidRequestError(f"Send exactly one of {choices}. Received: {received}")
    top_k = _parse_top_k(fields.get("top_k"), n_labels=n_labels)
    threshold = _parse_unsure_threshold(fields.get("unsure_threshold"))
    if s3 is not None:
        return Request(source="s3", s3=parse_s3_ref(s3), top_k=top_k, unsure_threshold=threshold)
    if url is not None:
        if not isinstance(url, str):
            raise InvalidRequestError(f"`url` must be a string. Received: {_json_type(url)}")
        return Request(source="url", url=url, top_k=top_k, unsure_threshold=threshold)
    if not isinstance(image, str):
        raise InvalidRequestError(f"`image` must be a base64 string. Received: {_json_type(image)}")
    return Request(source="image", image_b64=image, top_k=top_k, unsure_threshold=threshold)


# A plain decimal such as "0.9" or ".85", as query strings and form fields send it.
_DECIMAL = re.compile(r"[0-9]{1,3}(\.[0-9]{0,12})?|\.[0-9]{1,12}")


def _parse_unsure_threshold(value: Any) -> float | None:
    """A number from 0 to 1 (a string too: query strings, form fields); None when absent."""
    if value is None:
        return None
    if isinstance(value, str) and _DECIMAL.fullmatch(value):
        value = float(value)
    try:
        return check_unsure_threshold(value)
    except ValueError:
        raise InvalidRequestError(
            "`unsure_threshold` must be a number from 0 to 1. "
            f"Received: unsure_threshold={_short(value)}"
        ) from None


def _parse_top_k(value: Any, *, n_labels: int) -> int:
    if value is None:
        return min(DEFAULT_TOP_K, n_labels)
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 6:
        value = int(value)  # from a query string
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= n_labels:
        raise InvalidRequestError(
            f"`top_k` must be an integer from 1 to {n_labels}. Received: top_k={_short(value)}"
        )
    return value


def _parse_http(event: dict[str, Any], *, max_bytes: int, n_labels: int) -> Request:
    body = event.get("body")
    if body is None or body == "":
        raise InvalidRequestError(
            'The request body is empty. Send JSON {"url": "https://..."} or {"image": "<base64>"}, '
            "or the image itself."
        )
    if not isinstance(body, str):
        raise InvalidRequestError(
            f"The request body must be a string. Received: {_json_type(body)}"
        )
    body_cap = _base64_length(max_bytes) + BODY_OVERHEAD_BYTES
    if event.get("isBase64Encoded") is True:
        raw = decode_base64(body, max_bytes=body_cap, name="body")
    else:
        if len(body) > body_cap:
            raise PayloadTooLargeError(
                f"The request body is {len(body)} characters, over the limit of {body_cap}."
            )
        raw = body.encode("utf-8", errors="surrogatepass")
    content_type = request_header(event, "content-type").lower()
    if is_form_data(content_type):
        form = parse_form_data(raw, request_header(event, "content-type"), max_file_bytes=max_bytes)
        return _parse_form(form, event, n_labels=n_labels)
    if "json" in content_type or raw.lstrip()[:1] == b"{":
        return _parse_fields(_json_object(raw), n_labels=n_labels)
    if event.get("isBase64Encoded") is not True:
        raise InvalidRequestError(
            "The request body must be a JSON object or an image sent as binary. "
            f"Received: a text body of type {content_type or 'unknown'!r}"
        )
    if len(raw) > max_bytes:
        raise PayloadTooLargeError(f"The image is {len(raw)} bytes, over the limit of {max_bytes}.")
    query = event.get("queryStringParameters") or {}
    query = query if isinstance(query, dict) else {}
    return Request(
        source="body",
        image=raw,
        top_k=_parse_top_k(query.get("top_k"), n_labels=n_labels),
        unsure_threshold=_parse_unsure_threshold(query.get("unsure_threshold")),
    )


def _parse_form(form: FormData, event: dict[str, Any], *, n_labels: int) -> Request:
    """A multipart form (HTML form, `curl -F`): its text fields are read like a JSON
    body's fields (`url`, `top_k`...; `top_k` also from the query string), and
    the first file part is the image."""
    fields: dict[str, Any] = {k: v for k, v in form.fields.items() if v.strip() and k != "image"}
    query = event.get("queryStringParameters")
    if "top_k" not in fields and isinstance(query, dict) and query.get("top_k") is not None:
        fields["top_k"] = query["top_k"]
    if form.image is None:
        if "url" not in fields:
            raise InvalidRequestError(
                "The form has no image file and no `url` field. Attach a photo "
                '(<input type="file">, `curl -F file=@photo.jpg`) or give its address in `url`.'
            )
        return _parse_fields(fields, n_labels=n_labels)
    if "url" in fields:
        raise InvalidRequestError(
            "Send either an image file or a `url` in the form, not both. Received: both"
        )
    request = _parse_fields({**fields, "image": ""}, n_labels=n_labels)  # checks the fields
    return dataclasses.replace(request, source="form", image_b64=None, image=form.image)


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise InvalidRequestError("The request body is not valid JSON.") from None
    if not isinstance(value, dict):
        raise InvalidRequestError(
            f"The request body must be a JSON object. Received: {_json_type(value)}"
        )
    return value


def _base64_length(n_bytes: int) -> int:
    return 4 * -(-n_bytes // 3)


def decode_base64(text: Any, *, max_bytes: int, name: str = "image") -> bytes:
    """Decode standard or URL-safe base64 (line breaks and a `data:...;base64,`
    prefix allowed), refusing it from its length alone if it is over `max_bytes`."""
    if not isinstance(text, str):
        raise InvalidRequestError(f"`{name}` must be a base64 string. Received: {_json_type(text)}")
    # A cheap bound first, before copying anything: line breaks at most double it.
    if len(text) > 2 * _base64_length(max_bytes) + 1024:
        raise PayloadTooLargeError(f"`{name}` is over the limit of {max_bytes} bytes.")
    if text.startswith("data:") and ";base64," in text[:200]:
        text = text.split(";base64,", 1)[1]
    compact = "".join(text.split())
    if not compact:
        raise InvalidRequestError(f"`{name}` is empty.")
    padding = len(compact) - len(compact.rstrip("="))
    if len(compact) * 3 // 4 - padding > max_bytes:
        raise PayloadTooLargeError(f"`{name}` decodes to over the limit of {max_bytes} bytes.")
    if len(compact) % 4:
        compact += "=" * (-len(compact) % 4)
    try:
        return base64.b64decode(compact.translate(_URLSAFE), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequestError(f"`{name}` is not valid base64.") from None


_URLSAFE = str.maketrans("-_", "+/")


def _json_type(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number" if isinstance(value, int | float) else "other")


def _short(value: Any) -> str:
    try:
        text = repr(value)
    except ValueError:  # an int too long to print (sys.set_int_max_str_digits)
        return f"<{_json_type(value)}>"
    return text if len(text) <= 40 else text[:37] + "..."


# ---------------------------------------------------------------------------
# Batch envelopes


@dataclass(frozen=True)
class Batch:
    """A parsed batch event: its items, and what BatchInput adds to each."""

    items: list[Any]
    defaults: dict[str, Any]  # top_k / unsure_threshold of the envelope or BatchInput
    bucket: str | None  # BatchInput's bucket, for S3 listing items {"Key": ...}


def is_batch_event(event: Any) -> bool:
    """A direct event carrying `items` (ours) or `Items` (Step Functions' ItemBatcher)."""
    return (
        isinstance(event, dict)
        and not is_http_event(event)
        and ("items" in event or "Items" in event)
    )


def parse_batch(event: Any, *, max_items: int) -> Batch:
    """Check a batch's envelope; the items themselves are checked one by one later.

    Raises:
        InvalidRequestError: both or neither of `items`/`Items`, a `url`/`image`/`s3`
            beside them, items that are not an array, a BatchInput that is not an object.
        TooManyItemsError: more than `max_items` items.
    """
    if not isinstance(event, dict):
        raise InvalidRequestError(
            f"A batch event must be a JSON object with `items`. Received: {_json_type(event)}"
        )
    names = [name for name in ("items", "Items") if name in event]
    mixed = [name for name in ("url", "image", "s3") if event.get(name) is not None]
    if len(names) != 1 or mixed:
        raise InvalidRequestError(
            "A batch event has `items` (or Step Functions' `Items`) and no `url`, `image` "
            f"or `s3` of its own. Received: {', '.join(names + mixed)}"
        )
    items = event[names[0]]
    if not isinstance(items, list):
        raise InvalidRequestError(
            f"`{names[0]}` must be an array of events. Received: {_json_type(items)}"
        )
    if len(items) > max_items:
        raise TooManyItemsError(
            f"A batch holds at most {max_items} items (MAX_BATCH_ITEMS). "
            f"Received: {len(items)} items"
        )
    batch_input = event.get("BatchInput")
    batch_input = {} if batch_input is None else batch_input
    if not isinstance(batch_input, dict):
        raise InvalidRequestError(
            f"`BatchInput` must be an object. Received: {_json_type(batch_input)}"
        )
    bucket = batch_input.get("bucket")
    if bucket is not None and not isinstance(bucket, str):
        raise InvalidRequestError(
            f"`BatchInput.bucket` must be a string. Received: {_json_type(bucket)}"
        )
    # top_k / unsure_threshold for every item without its own: the envelope's, else BatchInput's.
    defaults = {
        k: source[k]
        for source in (batch_input, event)
        for k in ("top_k", "unsure_threshold")
        if source.get(k) is not None
    }
    return Batch(items=items, defaults=defaults, bucket=bucket)


def item_event(item: Any, batch: Batch) -> Any:
    """The direct event a batch item stands for.

    An S3 listing item as Step Functions' ItemReader gives it without an
    ItemSelector ({"Key": ..., "Size": ..., "Etag": ...}) becomes an `s3`
    reference into BatchInput's bucket; an object gets BatchInput's defaults
    under its own fields; anything else is left for `handle_event` to refuse.

    Raises:
        InvalidRequestError: an HTTP event as an item, a nested batch, a listing item
            without a bucket.
    """
    if not isinstance(item, dict):
        return item
    if is_http_event(item):
        raise InvalidRequestError("A batch item must be a direct event, not an HTTP event.")
    if "items" in item or "Items" in item:
        raise InvalidRequestError(
            "A batch item must be one event (`url`, `image` or `s3`): nested batches "
            "(`items`, `Items`) are not allowed."
        )
    if "Key" in item and not any(k in item for k in ("url", "image", "s3")):
        if batch.bucket is None:
            raise InvalidRequestError(
                'An S3 listing item {"Key": ...} needs `BatchInput.bucket`, or an ItemSelector '
                'that makes it {"s3": {"bucket": ..., "key": ...}} (template.yaml).'
            )
        item = {"s3": {"bucket": batch.bucket, "key": item["Key"]}}
    return {**batch.defaults, **item}
