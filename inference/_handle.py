"""Answer an event: parse it, get the image's bytes (URL, S3, base64, body),
classify them, and return an `Outcome`: the answer, and what goes to the log.

Bad input is an error outcome with its stable code and HTTP status
(inference/_errors.py); only bugs raise, and a broken model bundle is one.
`lambda_function.py` is the handler over these plain functions.
"""

from __future__ import annotations

import dataclasses
import json
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from inference._classifier import Classifier
from inference._errors import BundleError, DeadlineExceededError, InferenceError
from inference._events import (
    DEFAULT_MAX_BATCH_ITEMS,
    Request,
    decode_base64,
    is_http_event,
    item_event,
    parse_batch,
    parse_event,
)
from inference._fetch import FetchConfig, fetch_url
from inference._s3 import S3Config, read_s3_object
from inference._timing import Laps


@dataclass
class Outcome:
    """What `handle_event` did: the answer, plus what goes to the log only."""

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


def _url_host(url: str) -> str:
    try:
        return (urllib.parse.urlsplit(url).hostname or "")[:255]
    except ValueError:
        return ""


def handle_event(
    event: Any,
    *,
    classifier: Classifier,
    fetch_config: FetchConfig,
    s3_config: S3Config | None = None,
    deadline: float | None = None,
) -> Outcome:
    """Answer one event (direct or HTTP); bad input gives an error outcome, bugs raise.

    A batch event ({"items": [...]}) goes to `handle_batch` (`is_batch_event`);
    here it is refused as an event without `url`, `image` or `s3`.

    s3_config: the bucket allowlist for `s3` references (default: none allowed).
    deadline: a `time.monotonic()` value the URL fetch or S3 read must end by.
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
            data = read_s3_object(request.s3, config=config, deadline=deadline)
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
    event: Any,
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
            handle_event(
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
