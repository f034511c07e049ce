"""AWS Lambda entry point: `lambda_function.lambda_handler` (README: "Serving on AWS Lambda").

A thin handler over plain functions: `inference.handle_event` and
`inference.handle_batch` parse an event (inference/_events.py), get the
image, classify it and return an outcome; this module holds the settings, the
model loaded once per process, and the log lines.

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

import datetime
import functools
import json
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inference import (
    DEFAULT_MAX_BATCH_ITEMS,
    MAX_BATCH_ITEMS_LIMIT,
    Classifier,
    FetchConfig,
    InferenceConfig,
    RouteConfig,
    S3Config,
    handle_batch,
    handle_event,
    is_batch_event,
    is_http_event,
    route,
)
from inference.env import env_int

# Time kept back from the function's remaining time for decoding, inference
# and answering, so that a slow URL or S3 read fails with FETCH_TIMEOUT, not a
# Lambda timeout.
RESPONSE_MARGIN_S = 1.0
HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class State:
    """What a warm process keeps: the classifier and the request settings."""

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
    outcome = handle_event(
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
