"""Read an image from S3 that an event names: `read_s3_object(ref, config=...)`.

    ref = parse_s3_ref({"bucket": "photos", "key": "listings/123.jpg"})
    data = read_s3_object(ref, config=S3Config.from_env())   # bytes, at most config.max_bytes

The event chooses the bucket and key, so three rules hold before a byte is read:

1. The reference is checked: a bucket name as S3 names them (3-63 characters,
   lower-case letters, digits, `.` and `-`), a key of 1 to 1024 UTF-8 bytes
   (S3's own limit, "Naming Amazon S3 objects" in the S3 user guide).
2. The bucket must be in `allowed_buckets` (env S3_ALLOWED_BUCKETS). Empty
   means S3 references are refused, so a function whose role can read some
   bucket does not lend that right to whoever can invoke it.
3. One ranged GET (`Range: bytes=0-<max_bytes>`) reads at most one byte past
   the cap, and the body is read with the same bound, so an object of any size
   costs at most `max_bytes + 1` bytes of memory. One request, not HeadObject
   then GetObject, so the object cannot change between the two.

A `deadline` (the Lambda handler's fetch deadline) bounds the read as a
whole, so that a slow read ends in FETCH_TIMEOUT rather than in Lambda's
timeout, which in a batch would lose every item's answer:
- it is checked before the request, and before each 64 KiB body chunk, whose
  socket reads may then wait no longer than the time left;
- when less time is left than botocore's retries could take (3 attempts of
  2 s connect + 5 s read, plus backoff), the GET gets one attempt, with
  timeouts that fit the time left (`_short_client`).
A body that keeps trickling bytes is checked between chunks only; S3 is an
allow-listed AWS service, not a host an event chooses.

boto3 is imported on first use: the Lambda Python base image ships it
("Lambda runtimes" in the Lambda developer guide), and the serve install does
not (its install-size budget), so `import inference` never needs it. The
endpoint is boto3's: env AWS_ENDPOINT_URL_S3 (or AWS_ENDPOINT_URL), which
botocore reads itself ("Service-specific endpoints" in the AWS SDKs and Tools
reference guide), is how the tests point it at a local S3 server.

Errors are the runtime's typed errors, each with a stable code; the S3 error
code behind one is chained as `__cause__` for the log, never in the message.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from inference._errors import (
    FetchTimeoutError,
    InferenceError,
    InvalidRequestError,
    PayloadTooLargeError,
)
from inference.env import env_list

# S3's limits ("Bucket naming rules", "Naming Amazon S3 objects" in the S3 user guide).
MAX_KEY_BYTES = 1024
_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
DEFAULT_MAX_BYTES = 10 * 1024 * 1024  # FETCH_MAX_BYTES' default: one cap for every source
# Body reads between deadline checks: 64 KiB, the size urllib3 streams by default.
_CHUNK_BYTES = 64 * 1024
S3_BUCKETS_ENV = "S3_ALLOWED_BUCKETS"  # read by S3Config.from_env


class S3BucketNotAllowedError(InferenceError):
    """The bucket is not in S3_ALLOWED_BUCKETS (or the list is empty): HTTP 403."""

    code = "S3_BUCKET_NOT_ALLOWED"
    http_status = 403


class S3ObjectNotFoundError(InferenceError):
    """No such key (or no such bucket): HTTP 404."""

    code = "S3_OBJECT_NOT_FOUND"
    http_status = 404


class S3AccessDeniedError(InferenceError):
    """S3 refused the function's role (no s3:GetObject, a bucket policy, KMS): HTTP 403."""

    code = "S3_ACCESS_DENIED"
    http_status = 403


class S3ReadError(InferenceError):
    """Any other S3 failure: connection, timeout, throttling past the retries (HTTP 502)."""

    code = "S3_READ_FAILED"
    http_status = 502


@dataclass(frozen=True)
class S3Ref:
    """An object named by an event: `{"s3": {"bucket": "photos", "key": "a/b.jpg"}}`."""

    bucket: str
    key: str


@dataclass(frozen=True)
class S3Config:
    """Limits of `read_s3_object`; `from_env` reads S3_ALLOWED_BUCKETS.

    allowed_buckets: the only buckets an event may name; empty refuses every S3 reference.
    max_bytes: the largest object read (the Lambda handler passes FETCH_MAX_BYTES).
    connect_timeout_s, read_timeout_s, max_attempts: botocore's; standard retry
        mode retries throttling and 5xx answers with backoff (botocore "Retries" guide).
    """

    allowed_buckets: tuple[str, ...] = ()
    max_bytes: int = DEFAULT_MAX_BYTES
    connect_timeout_s: float = 2.0
    read_timeout_s: float = 5.0
    max_attempts: int = 3

    def __post_init__(self) -> None:
        for bucket in self.allowed_buckets:
            if not isinstance(bucket, str) or not _BUCKET_NAME.fullmatch(bucket):
                raise ValueError(
                    "`allowed_buckets` entries must be S3 bucket names (3-63 characters: "
                    f"a-z, 0-9, '.', '-'). Received: {bucket!r}"
                )
        if not isinstance(self.max_bytes, int) or self.max_bytes < 1:
            raise ValueError(
                f"`max_bytes` must be an int >= 1. Received: max_bytes={self.max_bytes!r}"
            )
        for name in ("connect_timeout_s", "read_timeout_s"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not 0 < value < 900:
                raise ValueError(f"`{name}` must be a number in (0, 900). Received: {value!r}")
        if not isinstance(self.max_attempts, int) or not 1 <= self.max_attempts <= 10:
            raise ValueError(
                f"`max_attempts` must be an int from 1 to 10. Received: {self.max_attempts!r}"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ, **overrides: Any) -> S3Config:
        """Buckets from env S3_ALLOWED_BUCKETS (comma-separated; unset or empty refuses
        S3); `overrides` that are not None win.

        Raises:
            ValueError: a listed name is not a bucket name; the message names the env
                var and echoes its value.
        """
        raw = environ.get(S3_BUCKETS_ENV, "")
        try:
            config = cls(allowed_buckets=env_list(environ, S3_BUCKETS_ENV))
        except ValueError:
            raise ValueError(
                f"Env var {S3_BUCKETS_ENV} must be a comma-separated list of S3 bucket names "
                "(3-63 characters: a-z, 0-9, '.', '-'). "
                f"Received: {S3_BUCKETS_ENV}={raw!r}"
            ) from None
        return dataclasses.replace(config, **{k: v for k, v in overrides.items() if v is not None})


def parse_s3_ref(value: Any) -> S3Ref:
    """Check an event's `s3` field: `{"bucket": str, "key": str}`.

    Raises:
        InvalidRequestError: not an object, a missing or non-string field, a bucket
            that is not a bucket name, an empty key, one over 1024 UTF-8 bytes or one
            that is not UTF-8 text (a lone surrogate).
    """
    if not isinstance(value, dict):
        raise InvalidRequestError(
            '`s3` must be an object like {"bucket": "photos", "key": "a/b.jpg"}. '
            f"Received: {type(value).__name__}"
        )
    bucket, key = value.get("bucket"), value.get("key")
    if not isinstance(bucket, str) or not _BUCKET_NAME.fullmatch(bucket):
        raise InvalidRequestError(
            "`s3.bucket` must be an S3 bucket name (3-63 characters: a-z, 0-9, '.', '-'). "
            f"Received: bucket={_short(bucket)}"
        )
    if not isinstance(key, str) or not key:
        raise InvalidRequestError(
            f"`s3.key` must be a non-empty string. Received: key={_short(key)}"
        )
    try:
        n_bytes = len(key.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate ("\ud800"): valid JSON, not a UTF-8 key
        raise InvalidRequestError(
            f"`s3.key` must be UTF-8 text (S3 keys are). Received: key={_short(key)}"
        ) from None
    if n_bytes > MAX_KEY_BYTES:
        raise InvalidRequestError(
            f"`s3.key` must be at most {MAX_KEY_BYTES} UTF-8 bytes (S3's limit). "
            f"Received: {n_bytes} bytes"
        )
    return S3Ref(bucket=bucket, key=key)


def check_bucket_allowed(ref: S3Ref, *, config: S3Config) -> None:
    """Raise `S3BucketNotAllowedError` unless `ref.bucket` is in `config.allowed_buckets`."""
    if not config.allowed_buckets:
        raise S3BucketNotAllowedError(
            "S3 references are turned off: the function's S3_ALLOWED_BUCKETS is empty."
        )
    if ref.bucket not in config.allowed_buckets:
        raise S3BucketNotAllowedError(
            f"Bucket {ref.bucket!r} is not in the function's S3_ALLOWED_BUCKETS."
        )


def read_s3_object(
    ref: S3Ref, *, config: S3Config, client: Any = None, deadline: float | None = None
) -> bytes:
    """The object's bytes, read with one ranged GET of at most `config.max_bytes + 1` bytes.

    Args:
        ref: the bucket and key (from `parse_s3_ref`).
        config: the allowlist and limits.
        client: a boto3 S3 client; default one per process (`s3_client(config)`), or,
            when less time is left than botocore's retries could take, a client of
            one attempt within the time left.
        deadline: a `time.monotonic()` value the read must end by; None: botocore's
            connect and read timeouts (and its retries) only.

    Returns:
        The object's bytes (length <= config.max_bytes); an empty object gives b"".

    Raises:
        S3BucketNotAllowedError: the bucket is not allowed (checked before any request).
        PayloadTooLargeError: the object is over `config.max_bytes`.
        FetchTimeoutError: no time was left for the request, or it ran out while reading.
        S3ObjectNotFoundError, S3AccessDeniedError, S3ReadError: what S3 answered, or a
            connection that failed, stalled or ended before the object did.
    """
    check_bucket_allowed(ref, config=config)
    where = f"s3://{ref.bucket}/{_short_key(ref.key)}"
    left = _time_left(deadline, where)
    short = False  # a client of one attempt within the time left
    if client is None and left is not None and left < _retry_schedule_s(config):
        client, short = _short_client(config, left), True
    s3 = s3_client(config) if client is None else client
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        ConnectTimeoutError,
        ReadTimeoutError,
    )
    from urllib3.exceptions import HTTPError

    try:
        answer = s3.get_object(Bucket=ref.bucket, Key=ref.key, Range=f"bytes=0-{config.max_bytes}")
        body = answer["Body"]  # botocore's StreamingBody: it checks Content-Length at the end
        try:
            total = _total_size(answer)
            if total is not None and total > config.max_bytes:
                raise PayloadTooLargeError(
                    f"The S3 object is {total} bytes, over the limit of {config.max_bytes}."
                )
            # Bounded even if the range was ignored.
            data = _read_body(
                body, limit=config.max_bytes + 1, deadline=deadline, config=config, where=where
            )
        finally:
            body.close()
    except ClientError as exc:
        if _error_code(exc) == "InvalidRange":  # a ranged GET of an empty object: S3 answers 416
            return b""
        raise _client_error(exc, ref) from exc
    except (BotoCoreError, HTTPError) as exc:  # HTTPError: urllib3's, e.g. TLS mid-body
        timed_out = short and isinstance(exc, ReadTimeoutError | ConnectTimeoutError)
        if timed_out or (deadline is not None and time.monotonic() >= deadline):
            raise FetchTimeoutError(_TIMEOUT_MESSAGE.format(where=where)) from exc
        raise S3ReadError(f"Reading {where} failed.") from exc
    if len(data) > config.max_bytes:
        raise PayloadTooLargeError(f"The S3 object is over the limit of {config.max_bytes} bytes.")
    return data


_TIMEOUT_MESSAGE = "Reading {where} did not end within the time left to answer."


def _time_left(deadline: float | None, where: str) -> float | None:
    """Seconds until `deadline` (None: no deadline); FetchTimeoutError when none are left."""
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise FetchTimeoutError(_TIMEOUT_MESSAGE.format(where=where))
    return left


def _read_body(
    body: Any, *, limit: int, deadline: float | None, config: S3Config, where: str
) -> bytes:
    """At most `limit` bytes of a StreamingBody; before each chunk the deadline is
    checked and the socket's read timeout cut to the time left."""
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        left = _time_left(deadline, where)
        if left is not None:
            _wait_at_most(body, min(config.read_timeout_s, left))
        chunk = body.read(min(_CHUNK_BYTES, limit - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _wait_at_most(body: Any, seconds: float) -> None:
    """Bound each socket read of `body` by `seconds` (StreamingBody.set_socket_timeout).

    Once urllib3 has read the response to its end it lets the socket go, and
    botocore's method would log an error for the missing socket: nothing is left
    to wait for then, so that case is skipped.
    """
    raw = getattr(body, "_raw_stream", None)
    if raw is not None and not raw.closed:
        body.set_socket_timeout(seconds)


def _retry_schedule_s(config: S3Config) -> float:
    """The longest botocore's standard retries can take: every attempt's connect and
    read timeouts, plus the backoffs between attempts, rand(0, 1) * min(2 ** i, 20) s
    at most (botocore.retries.standard.ExponentialBackoff, throttling scale)."""
    backoffs = sum(min(2.0**i, 20.0) for i in range(config.max_attempts - 1))
    return config.max_attempts * (config.connect_timeout_s + config.read_timeout_s) + backoffs


def _short_client(config: S3Config, left: float) -> Any:
    """A client of one attempt whose connect and read timeouts fit the time left
    (a timeout of its own is then FETCH_TIMEOUT).

    Built for this read only (tens of ms): it is needed in the last seconds of a
    function's time, and caching one per time left would not pay.
    """
    connect = min(config.connect_timeout_s, left / 2)
    short = dataclasses.replace(
        config,
        connect_timeout_s=max(connect, 0.001),
        read_timeout_s=max(min(config.read_timeout_s, left - connect), 0.001),
        max_attempts=1,
    )
    return _new_client(short)


def _total_size(answer: dict[str, Any]) -> int | None:
    """The object's full size from `Content-Range: bytes 0-N/TOTAL` (None when absent)."""
    match = re.fullmatch(r"bytes \d+-\d+/(\d+)", str(answer.get("ContentRange") or ""))
    return int(match.group(1)) if match else None


_NOT_FOUND = frozenset({"NoSuchKey", "NoSuchBucket", "NotFound", "404"})
_DENIED = frozenset({"AccessDenied", "AllAccessDisabled", "403", "KMS.AccessDeniedException"})


def _error_code(exc: Any) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _client_error(exc: Any, ref: S3Ref) -> InferenceError:
    code = _error_code(exc)
    where = f"s3://{ref.bucket}/{_short_key(ref.key)}"
    if code in _NOT_FOUND:
        return S3ObjectNotFoundError(f"There is no object {where}.")
    if code in _DENIED:
        return S3AccessDeniedError(f"The function may not read {where}.")
    return S3ReadError(f"Reading {where} failed.")


@functools.cache
def s3_client(config: S3Config = S3Config()) -> Any:  # frozen, so hashable: one client per config
    """One boto3 S3 client per process and config (clients are thread-safe, slow to build).

    Raises:
        S3ReadError: boto3 is not installed (the serve install leaves it out; the
            Lambda base image has it).
    """
    return _new_client(config)


def _new_client(config: S3Config) -> Any:
    """A boto3 S3 client with `config`'s timeouts and retries (see `s3_client`)."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError as exc:
        raise S3ReadError(
            "S3 references need boto3, which is not installed here (the Lambda base image has it)."
        ) from exc
    return boto3.client(
        "s3",
        config=Config(
            connect_timeout=config.connect_timeout_s,
            read_timeout=config.read_timeout_s,
            retries={"max_attempts": config.max_attempts, "mode": "standard"},
        ),
    )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _short_key(key: str) -> str:
    return key if len(key) <= 80 else key[:77] + "..."
