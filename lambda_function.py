"""AWS Lambda entry point: `lambda_function.lambda_handler` (README: "Serving on AWS Lambda").

Events
    Direct invoke: {"url": "https://..."}, {"image": "<base64>"} or
    {"s3": {"bucket": "...", "key": "..."}} (buckets in S3_ALLOWED_BUCKETS only), optional
    "top_k" (1 to the number of classes, default 3), optional "unsure_threshold"
    (0 to 1: answer "unsure" below this top score; default: the bundle's, or
    env UNSURE_THRESHOLD; 0: always answer).
    HTTP (API Gateway REST and HTTP APIs, Lambda function URLs): the same JSON
    object as the request body, the image itself as a binary body, or a
    multipart/form-data body (an HTML form, `curl -F file=@pants.jpg`): the
    first file part is the image, text fields `url`, `top_k`... as in JSON
    (`top_k` also from the query string); see inference.parse_form_data.
    Function URLs also get the listing page on GET / (inference/_routes.py).
    Batches (direct invoke only): {"items": [<direct event>, ...]} or Step Functions'
    ItemBatcher input {"Items": [...], "BatchInput": {...}}, at most MAX_BATCH_ITEMS
    items; README "Bulk classification on AWS".

Answers
    {"label": "pants",                              # null when "unsure" is true
     "unsure": false,                               # top score < unsure_threshold
     "confidence": 0.93, "unsure_threshold": 0.83,  # the top score and the threshold used
     "scores": {"dress": 0.01, "hat": 0.0, ...},    # calibrated probabilities, all classes
     "logits": {"dress": -1.2, "hat": -3.4, ...},   # the model's raw outputs
     "top": [{"label": "pants", "score": 0.93, "logit": 4.1}, ...],  # kept when unsure
     "model": {"variant": "int8", "sha256": "...", "temperature": 1.9}}
    HTTP events get {"statusCode": 200, "headers": {...}, "body": "<that, as JSON>"}.
    Batches get {"items": [<answer or {"error": ...}>, ...]}, one per item, in order.

Errors
    Bad input never raises: the answer is {"error": {"code": ..., "message": ...}}
    (HTTP events: with the code's status, see inference/_errors.py). Only bugs
    raise, so Lambda's Errors metric counts bugs; a broken model bundle is one.
    Answers carry no stack traces, addresses or paths: the details go to the log.

Logs
    One JSON line per invocation on stdout (CloudWatch), with the request id,
    the outcome and the time spent in each step (fetch, decode, preprocess,
    inference).

State
    The classifier and the settings are loaded on the first invocation and kept
    for the life of the process (`_state`, cached): Lambda sends a process one
    event at a time, and a warm process answers without reloading. Settings
    come from env vars: MODEL_DIR (default: `model/` beside this file, the
    bundle the Dockerfile copies in), INFERENCE_THREADS, MAX_IMAGE_PIXELS
    (inference.InferenceConfig), FETCH_* (inference.FetchConfig),
    S3_ALLOWED_BUCKETS (inference.S3Config) and MAX_BATCH_ITEMS.
    In Lambda (AWS_LAMBDA_FUNCTION_NAME set) the request settings (FETCH_*,
    S3_ALLOWED_BUCKETS, MAX_BATCH_ITEMS: `read_settings`) are read when the
    module is imported, Lambda's init phase, so a bad value fails the function
    once, at init, with a message naming the variable; elsewhere `_state`
    reads them before loading the model.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime
import functools
import json
import os
import re
import sys
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inference import (
    BundleError,
    Classifier,
    FetchConfig,
    FormData,
    InferenceConfig,
    InferenceError,
    InvalidRequestError,
    Laps,
    PayloadTooLargeError,
    RouteConfig,
    S3Config,
    S3Ref,
    check_unsure_threshold,
    fetch_url,
    is_form_data,
    parse_form_data,
    parse_s3_ref,
    read_s3_object,
    request_header,
    route,
)
from inference.env import env_int

# Time kept back from the function's remaining time for decoding, inference
# and answering, so that a slow URL fails with FETCH_TIMEOUT, not a Lambda timeout.
RESPONSE_MARGIN_S = 1.0
DEFAULT_TOP_K = 3
# Room for the JSON around a base64 image in a request body.
BODY_OVERHEAD_BYTES = 64 * 1024
HERE = Path(__file__).resolve().parent


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


@dataclass
class Outcome:
    """What `handle` did: the answer, plus what goes to the log only."""

    http: bool
    status: int
    payload: dict[str, Any]
    request: Request | None = None
    error: InferenceError | None = None
    n_bytes: int | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)

    def response(self) -> dict[str, Any]:
        """The handler's return value: the payload, or an HTTP response around it."""
        if not self.http:
            return self.payload
        return {
            "statusCode": self.status,
            "headers": {"Content-Type": "application/json", "Cache-Control": "no-store"},
            "body": json.dumps(self.payload, allow_nan=False),
            "isBase64Encoded": False,
        }

    def log_record(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "level": "INFO" if self.error is None else "WARNING",
            "message": "classified" if self.error is None else "rejected",
            "event_type": "http" if self.http else "direct",
            "status": self.status,
        }
        if self.request is not None:
            record["source"] = self.request.source
            if self.request.url is not None:
                record["url_host"] = _url_host(self.request.url)
            if self.request.s3 is not None:
                record["s3_bucket"] = self.request.s3.bucket
        if self.n_bytes is not None:
            record["bytes"] = self.n_bytes
        if self.error is None:
            record["label"] = self.payload["label"]
            record["unsure"] = self.payload["unsure"]
        else:
            record["code"] = self.error.code
            record["detail"] = str(self.error)
            cause = self.error.__cause__
            if cause is not None:
                record["cause"] = f"{type(cause).__name__}: {cause}"
        record["timings_ms"] = {k: round(v, 3) for k, v in self.timings_ms.items()}
        return record


# ---------------------------------------------------------------------------
# Events -> Request


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


def _url_host(url: str) -> str:
    try:
        return (urllib.parse.urlsplit(url).hostname or "")[:255]
    except ValueError:
        return ""


# ---------------------------------------------------------------------------
# Request -> Outcome


def handle(
    event: Any,
    *,
    classifier: Classifier,
    fetch_config: FetchConfig,
    s3_config: S3Config | None = None,
    deadline: float | None = None,
) -> Outcome:
    """Answer one event; bad input gives an error outcome, bugs raise.

    s3_config: the bucket allowlist for `s3` references (default: none allowed).
    deadline: a `time.monotonic()` value the URL fetch must end by.
    """
    http = is_http_event(event)
    timings: dict[str, float] = {}
    request: Request | None = None
    n_bytes: int | None = None
    lap = Laps(timings).lap

    try:
        request = parse_event(
            event, max_bytes=fetch_config.max_bytes, n_labels=len(classifier.manifest.labels)
        )
        lap("parse")
        if request.url is not None:
            data = fetch_url(request.url, config=fetch_config, deadline=deadline)
        elif request.s3 is not None:
            # One byte cap for every source: uploads, URLs and S3 objects.
            config = dataclasses.replace(s3_config or S3Config(), max_bytes=fetch_config.max_bytes)
            data = read_s3_object(request.s3, config=config)
        elif request.image_b64 is not None:
            data = decode_base64(request.image_b64, max_bytes=fetch_config.max_bytes)
        else:
            assert request.image is not None
            data = request.image
        n_bytes = len(data)
        lap("fetch")
        prediction = classifier.predict_bytes(
            data,
            top_k=request.top_k,
            unsure_threshold=request.unsure_threshold,
            timings_ms=timings,
        )
    except BundleError:
        raise  # the deployment is broken: a bug, not bad input
    except InferenceError as exc:
        return Outcome(
            http=http,
            status=exc.http_status,
            payload={"error": {"code": exc.code, "message": str(exc)}},
            request=request,
            error=exc,
            n_bytes=n_bytes,
            timings_ms=timings,
        )
    payload = prediction.to_dict()
    payload["model"] = {
        "variant": classifier.manifest.variant,
        "sha256": classifier.manifest.model_sha256,
        "temperature": classifier.temperature,
    }
    return Outcome(
        http=http, status=200, payload=payload, request=request, n_bytes=n_bytes, timings_ms=timings
    )


# ---------------------------------------------------------------------------
# Batches: {"items": [...]} and Step Functions' ItemBatcher {"Items": [...], "BatchInput": {...}}

# 100 items: a batch's answer (1.3 KB per item, 1.8 KB with top_k 10: 175 KB)
# stays under the 256 KiB Step Functions allows a state's output ("Quotas related to
# state machine executions" in the Step Functions developer guide), and 100
# sequential URL fetches at their 5 s deadline (FETCH_TIMEOUT_S) still end
# inside Lambda's 900 s maximum timeout.
DEFAULT_MAX_BATCH_ITEMS = 100
MAX_BATCH_ITEMS_LIMIT = 10_000  # the largest MAX_BATCH_ITEMS accepted


class TooManyItemsError(InvalidRequestError):
    """A batch has more items than MAX_BATCH_ITEMS (HTTP 400)."""

    code = "TOO_MANY_ITEMS"


class DeadlineExceededError(InferenceError):
    """The function's time ran out before this batch item's turn (HTTP 504)."""

    code = "DEADLINE_EXCEEDED"
    http_status = 504


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


def parse_batch(event: dict[str, Any], *, max_items: int) -> Batch:
    """Check a batch's envelope; the items themselves are checked one by one later.

    Raises:
        InvalidRequestError: both or neither of `items`/`Items`, a `url`/`image`/`s3`
            beside them, items that are not an array, a BatchInput that is not an object.
        TooManyItemsError: more than `max_items` items.
    """
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
    under its own fields; anything else is left for `handle` to refuse.

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


@dataclass
class BatchOutcome:
    """What `handle_batch` did: one Outcome per item, or the envelope's own error."""

    outcomes: list[Outcome]
    error: InferenceError | None = None

    def response(self) -> dict[str, Any]:
        if self.error is not None:
            return {"error": {"code": self.error.code, "message": str(self.error)}}
        return {"items": [outcome.payload for outcome in self.outcomes]}


def handle_batch(
    event: dict[str, Any],
    *,
    classifier: Classifier,
    fetch_config: FetchConfig,
    s3_config: S3Config | None = None,
    deadline: float | None = None,
    max_items: int = DEFAULT_MAX_BATCH_ITEMS,
) -> BatchOutcome:
    """Answer every item of a batch event, in order; one bad item never fails the others.

    deadline: a `time.monotonic()` value; items whose turn comes after it are
        answered DEADLINE_EXCEEDED instead of running into Lambda's timeout.
    """
    try:
        batch = parse_batch(event, max_items=max_items)
    except InferenceError as exc:
        return BatchOutcome(outcomes=[], error=exc)
    outcomes = []
    for item in batch.items:
        try:
            if deadline is not None and time.monotonic() >= deadline:
                raise DeadlineExceededError(
                    "The function's time ran out before this item; send it again."
                )
            single = item_event(item, batch)
        except InferenceError as exc:
            outcomes.append(_error_outcome(exc))
            continue
        outcomes.append(
            handle(
                single,
                classifier=classifier,
                fetch_config=fetch_config,
                s3_config=s3_config,
                deadline=deadline,
            )
        )
    return BatchOutcome(outcomes=outcomes)


def _error_outcome(exc: InferenceError) -> Outcome:
    payload = {"error": {"code": exc.code, "message": str(exc)}}
    return Outcome(http=False, status=exc.http_status, payload=payload, error=exc)


# ---------------------------------------------------------------------------
# The Lambda handler


@dataclass(frozen=True)
class State:
    classifier: Classifier
    fetch_config: FetchConfig
    s3_config: S3Config = field(default_factory=S3Config)
    max_batch_items: int = DEFAULT_MAX_BATCH_ITEMS


@dataclass(frozen=True)
class Settings:
    """The request settings: FETCH_*, S3_ALLOWED_BUCKETS and MAX_BATCH_ITEMS."""

    fetch_config: FetchConfig
    s3_config: S3Config
    max_batch_items: int


def read_settings(environ: Mapping[str, str] = os.environ) -> Settings:
    """Read the request settings from `environ`.

    Raises:
        ValueError: a bad value; the message names the variable and echoes its value.
    """
    fetch_config = FetchConfig.from_env(environ)
    return Settings(
        fetch_config,
        S3Config.from_env(environ, max_bytes=fetch_config.max_bytes),
        max_batch_items(environ),
    )


# Set at the end of this module, in Lambda's init phase.
_INIT_SETTINGS: Settings | None = None


@functools.cache
def _state() -> State:
    """Load the model and settings once per process (a failure is retried next time)."""
    start = time.perf_counter()
    settings = _INIT_SETTINGS or read_settings()  # before the model: a bad setting fails fast
    # Unset MODEL_DIR: the bundle the Dockerfile copies in beside this file.
    bundled = None if os.environ.get("MODEL_DIR") else HERE / "model"
    config = InferenceConfig.from_env(os.environ, model_dir=bundled)
    state = State(
        Classifier.from_config(config),
        settings.fetch_config,
        settings.s3_config,
        settings.max_batch_items,
    )
    manifest = state.classifier.manifest
    log(
        {
            "level": "INFO",
            "message": "model_loaded",
            "variant": manifest.variant,
            "sha256": manifest.model_sha256,
            "runtime": f"{state.classifier.runtime.name} {state.classifier.runtime.version}",
            "load_ms": round((time.perf_counter() - start) * 1000, 3),
        }
    )
    return state


def max_batch_items(environ: Mapping[str, str] = os.environ) -> int:
    """MAX_BATCH_ITEMS: the most items one batch event may carry (default 100).

    Raises:
        ValueError: not an integer from 1 to 10000; the message names the variable
            and echoes its value (inference.env).
    """
    value = env_int(environ, "MAX_BATCH_ITEMS", minimum=1, maximum=MAX_BATCH_ITEMS_LIMIT)
    return DEFAULT_MAX_BATCH_ITEMS if value is None else value


def fetch_deadline(context: Any) -> float | None:
    """The monotonic time a fetch must end by: the function's remaining time less a margin."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if remaining is None:
        return None
    remaining_s = float(remaining()) / 1000
    return time.monotonic() + remaining_s - RESPONSE_MARGIN_S


def log(record: dict[str, Any]) -> None:
    """Write one structured JSON line to stdout (CloudWatch Logs in Lambda)."""
    stamp = datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")
    line = json.dumps({"timestamp": stamp, **record}, default=str)
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    """The function: see the module docstring for events and answers.

    HTTP events go through the router (inference/_routes.py: the listing page
    on GET /, the API on POST /, 404/405, security and CORS headers), which
    calls `answer` for the API; direct invocations get `answer` itself.
    """
    if is_http_event(event):
        return route(event, api=lambda http_event: answer(http_event, context), config=_routes())
    return answer(event, context)


@functools.cache
def _routes() -> RouteConfig:
    """Router settings (CORS_ALLOWED_ORIGINS), read once per process."""
    return RouteConfig.from_env()


def warm_up() -> None:
    """Load the model and settings now rather than on the first request (local server);
    a bad bundle or setting raises here."""
    _state()
    _routes()


def answer(event: Any, context: Any) -> dict[str, Any]:
    """Classify one event (direct or HTTP) and log it: the API behind the router."""
    start = time.perf_counter()
    state = _state()
    if is_batch_event(event):
        return answer_batch(event, context, state=state, start=start)
    outcome = handle(
        event,
        classifier=state.classifier,
        fetch_config=state.fetch_config,
        s3_config=state.s3_config,
        deadline=fetch_deadline(context),
    )
    response = outcome.response()
    record = outcome.log_record()
    record["aws_request_id"] = getattr(context, "aws_request_id", None)
    record["timings_ms"]["total"] = round((time.perf_counter() - start) * 1000, 3)
    log(record)
    return response


def answer_batch(
    event: dict[str, Any], context: Any, *, state: State, start: float
) -> dict[str, Any]:
    """Classify a batch event: one log line per item, then one for the batch."""
    outcome = handle_batch(
        event,
        classifier=state.classifier,
        fetch_config=state.fetch_config,
        s3_config=state.s3_config,
        deadline=fetch_deadline(context),
        max_items=state.max_batch_items,
    )
    request_id = getattr(context, "aws_request_id", None)
    codes: dict[str, int] = {}
    for index, item in enumerate(outcome.outcomes):
        record = item.log_record()
        record.update(aws_request_id=request_id, batch_index=index)
        log(record)
        code = "OK" if item.error is None else item.error.code
        codes[code] = codes.get(code, 0) + 1
    summary: dict[str, Any] = {
        "level": "INFO" if outcome.error is None else "WARNING",
        "message": "batch" if outcome.error is None else "batch_rejected",
        "aws_request_id": request_id,
        "items": len(outcome.outcomes),
        "outcomes": codes,
        "total_ms": round((time.perf_counter() - start) * 1000, 3),
    }
    if outcome.error is not None:
        summary.update(code=outcome.error.code, detail=str(outcome.error))
    log(summary)
    return outcome.response()


# Lambda's init phase (the import): a bad setting fails the function here, once,
# naming the variable, rather than on every request.
if os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):
    _INIT_SETTINGS = read_settings()
