"""S3 object references: the real handler and real boto3 against moto's S3 server.

The server (tests/support/s3_server.py) listens on 127.0.0.1 at a random port;
boto3 finds it through AWS_ENDPOINT_URL_S3 with fake credentials, and the
network guard (tests/support/net.py) lets no connection leave loopback.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

import lambda_function
from inference import (
    Classifier,
    FetchConfig,
    FetchTimeoutError,
    InvalidRequestError,
    PayloadTooLargeError,
    S3AccessDeniedError,
    S3BucketNotAllowedError,
    S3Config,
    S3ObjectNotFoundError,
    S3ReadError,
    S3Ref,
    handle_batch,
    parse_s3_ref,
    read_s3_object,
)
from inference._s3 import _client_error, s3_client
from tests.support.faulty_s3 import faulty_s3
from tests.support.lambda_context import ANSWER_KEYS, LambdaContext
from tests.support.net import JPEG, NetGuard, jpeg_bytes, net_guard
from tests.support.s3_server import (
    ALLOWED_BUCKET,
    DELETED_BUCKET,
    MAX_BYTES,
    LocalS3,
    fake_aws_env,
    golden_objects,
    local_s3,
)

EVENTS = Path(__file__).parent / "events"
OTHER_JPEG = jpeg_bytes(size=(120, 90), color=(50, 60, 220))
OBJECTS = golden_objects(JPEG, OTHER_JPEG)


@pytest.fixture(scope="module")
def s3_server() -> Iterator[LocalS3]:
    with local_s3() as server:
        for key, data in OBJECTS.items():
            server.put(ALLOWED_BUCKET, key, data)
        server.put("someone-elses-bucket", "listings/pants.jpg", JPEG)
        yield server


@pytest.fixture(scope="module")
def classifier(tiny_bundle: Path) -> Classifier:
    return Classifier.load(tiny_bundle)


@pytest.fixture
def net(monkeypatch: pytest.MonkeyPatch) -> Iterator[NetGuard]:
    with net_guard(monkeypatch) as guard:
        guard.names["127.0.0.1"] = ["127.0.0.1"]  # the S3 endpoint is an address literal
        yield guard


@pytest.fixture
def handler(
    tiny_bundle: Path, s3_server: LocalS3, monkeypatch: pytest.MonkeyPatch, net: NetGuard
) -> Iterator[NetGuard]:
    """lambda_function.lambda_handler as deployed: settings from env, boto3 to the local S3."""
    fake_aws_env(monkeypatch, s3_server.endpoint_url)
    monkeypatch.setenv("MODEL_DIR", str(tiny_bundle))
    monkeypatch.setenv("S3_ALLOWED_BUCKETS", f"{ALLOWED_BUCKET}, {DELETED_BUCKET}")
    monkeypatch.setenv("FETCH_MAX_BYTES", str(MAX_BYTES))
    monkeypatch.setenv("FETCH_ALLOW_LOOPBACK", "1")
    lambda_function._state.cache_clear()
    s3_client.cache_clear()
    yield net
    lambda_function._state.cache_clear()
    s3_client.cache_clear()


def invoke(event: Any) -> dict[str, Any]:
    response = lambda_function.lambda_handler(event, LambdaContext())
    json.dumps(response, allow_nan=False)  # what Lambda will serialize
    return response


# ---------------------------------------------------------------------------
# Golden events: tests/events/s3_*.json through the handler.

# file: (error code or None, top_k, key whose bytes the answer must match)
GOLDEN: dict[str, tuple[str | None, int, str | None]] = {
    "s3_ok.json": (None, 3, "listings/pants.jpg"),
    "s3_ok_top_k.json": (None, 5, "listings/2026/11/shoe photo (1).jpg"),
    "s3_bad_bucket_not_allowed.json": ("S3_BUCKET_NOT_ALLOWED", 0, None),
    "s3_bad_missing_key.json": ("S3_OBJECT_NOT_FOUND", 0, None),
    "s3_bad_missing_bucket.json": ("S3_OBJECT_NOT_FOUND", 0, None),
    "s3_bad_too_large.json": ("PAYLOAD_TOO_LARGE", 0, None),
    "s3_bad_corrupt.json": ("CORRUPT_IMAGE", 0, None),
    "s3_bad_empty_object.json": ("CORRUPT_IMAGE", 0, None),
    "s3_bad_not_an_image.json": ("UNSUPPORTED_FORMAT", 0, None),
    "s3_bad_empty_key.json": ("INVALID_REQUEST", 0, None),
    "s3_bad_long_key.json": ("INVALID_REQUEST", 0, None),
    "s3_bad_bucket_name.json": ("INVALID_REQUEST", 0, None),
    "s3_bad_not_object.json": ("INVALID_REQUEST", 0, None),
    "s3_bad_with_url.json": ("INVALID_REQUEST", 0, None),
}


def test_every_s3_golden_file_is_in_the_table() -> None:
    assert sorted(p.name for p in EVENTS.glob("s3_*.json")) == sorted(GOLDEN)


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_s3_events(name: str, handler: NetGuard, classifier: Classifier) -> None:
    code, top_k, key = GOLDEN[name]
    body = invoke(json.loads((EVENTS / name).read_text()))
    if code is None:
        assert key is not None
        assert set(body) == ANSWER_KEYS
        assert len(body["top"]) == top_k
        expected = classifier.predict_bytes(OBJECTS[key]).to_dict()
        assert body["scores"] == expected["scores"]  # the object's own bytes were classified
    else:
        assert set(body) == {"error"}, body
        assert body["error"]["code"] == code
        assert body["error"]["message"]
    handler.assert_no_connection_except("127.0.0.1")


@pytest.mark.parametrize(
    ("name", "connects"),
    [("s3_bad_bucket_not_allowed.json", False), ("s3_bad_empty_key.json", False),
     ("s3_ok.json", True)],
)  # fmt: skip
def test_refused_references_never_reach_s3(name: str, connects: bool, handler: NetGuard) -> None:
    invoke(json.loads((EVENTS / name).read_text()))
    assert bool(handler.connections) is connects


def test_s3_over_http_is_refused(handler: NetGuard) -> None:
    body = {"s3": {"bucket": ALLOWED_BUCKET, "key": "listings/pants.jpg"}}
    event = {
        "version": "2.0",
        "routeKey": "POST /predict",
        "rawPath": "/predict",
        "headers": {"content-type": "application/json"},
        "requestContext": {"http": {"method": "POST", "path": "/predict"}},
        "body": json.dumps(body),
        "isBase64Encoded": False,
    }
    response = invoke(event)
    assert response["statusCode"] == 400
    assert json.loads(response["body"])["error"]["code"] == "INVALID_REQUEST"
    assert handler.connections == []


def test_empty_allowlist_refuses_every_bucket(
    handler: NetGuard, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("S3_ALLOWED_BUCKETS", "")
    lambda_function._state.cache_clear()
    body = invoke(json.loads((EVENTS / "s3_ok.json").read_text()))
    assert body["error"]["code"] == "S3_BUCKET_NOT_ALLOWED"
    assert handler.connections == []


def test_log_line_names_the_bucket(handler: NetGuard, capsys: pytest.CaptureFixture[str]) -> None:
    invoke(json.loads((EVENTS / "s3_bad_missing_key.json").read_text()))
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert record["source"] == "s3"
    assert record["s3_bucket"] == ALLOWED_BUCKET
    assert record["code"] == "S3_OBJECT_NOT_FOUND"
    assert "NoSuchKey" in record["cause"]  # S3's own code, for the log only


# ---------------------------------------------------------------------------
# read_s3_object: the byte cap is a ranged read, not a read-then-check.


def test_oversize_object_is_never_downloaded(s3_server: LocalS3, handler: NetGuard) -> None:
    client = s3_server.client()
    received: list[int] = []

    def count(http_response: Any, **kwargs: Any) -> None:
        received.append(int(http_response.headers.get("content-length", -1)))

    client.meta.events.register("after-call.s3.GetObject", count)
    config = S3Config(allowed_buckets=(ALLOWED_BUCKET,), max_bytes=MAX_BYTES)
    with pytest.raises(PayloadTooLargeError):
        read_s3_object(S3Ref(ALLOWED_BUCKET, "listings/huge.jpg"), config=config, client=client)
    assert len(OBJECTS["listings/huge.jpg"]) > MAX_BYTES + 100_000
    assert received == [MAX_BYTES + 1]  # one GET, of the cap plus one byte


@pytest.mark.parametrize("max_bytes", [len(JPEG), len(JPEG) - 1])
def test_cap_is_inclusive(s3_server: LocalS3, handler: NetGuard, max_bytes: int) -> None:
    config = S3Config(allowed_buckets=(ALLOWED_BUCKET,), max_bytes=max_bytes)
    ref = S3Ref(ALLOWED_BUCKET, "listings/pants.jpg")
    if max_bytes >= len(JPEG):
        assert read_s3_object(ref, config=config, client=s3_server.client()) == JPEG
    else:
        with pytest.raises(PayloadTooLargeError):
            read_s3_object(ref, config=config, client=s3_server.client())


class FakeClock:
    """Stands in for `inference._s3.time`: monotonic() is what the test says it is."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


class SlowBody:
    """A GetObject body whose every read takes `delay_s` on `clock`, as a slow S3 read would."""

    def __init__(self, data: bytes, delay_s: float, clock: FakeClock) -> None:
        self.data, self.delay_s, self.clock = data, delay_s, clock
        self.reads, self.closed = 0, False

    def read(self, amt: int) -> bytes:
        self.reads += 1
        self.clock.now += self.delay_s
        chunk, self.data = self.data[:amt], self.data[amt:]
        return chunk

    def close(self) -> None:
        self.closed = True


class FakeS3:
    """A client whose get_object answers with one SlowBody (and counts its calls)."""

    def __init__(self, body: SlowBody) -> None:
        self.body, self.calls = body, 0

    def get_object(self, **kwargs: Any) -> dict[str, Any]:
        self.calls += 1
        return {"Body": self.body}


SLOW_DATA = bytes(range(256)) * 1024  # 256 KiB: four 64 KiB reads


# (seconds per body read, deadline from now (None: no deadline), GET sent, read whole)
@pytest.mark.parametrize(
    ("delay_s", "deadline_in_s", "requested", "whole"),
    [
        (0.0, None, True, True),
        (0.0, 60.0, True, True),
        (10.0, None, True, True),  # slow, but no deadline: botocore's timeouts only
        (1.0, 4.5, True, True),  # 4 chunks and the end: the last read starts at 4 s
        (1.0, 2.5, True, False),  # the deadline passes between body reads
        (0.0, -1.0, False, False),  # already past: no request at all
        (0.0, 0.0, False, False),
    ],
)
def test_deadline_bounds_the_whole_s3_read(
    delay_s: float,
    deadline_in_s: float | None,
    requested: bool,
    whole: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = FakeClock()
    monkeypatch.setattr("inference._s3.time", clock)
    client = FakeS3(SlowBody(SLOW_DATA, delay_s, clock))
    config = S3Config(allowed_buckets=(ALLOWED_BUCKET,), max_bytes=len(SLOW_DATA))
    deadline = None if deadline_in_s is None else clock.now + deadline_in_s
    ref = S3Ref(ALLOWED_BUCKET, "listings/slow.jpg")
    if whole:
        assert read_s3_object(ref, config=config, client=client, deadline=deadline) == SLOW_DATA
    else:
        with pytest.raises(FetchTimeoutError, match=f"s3://{ALLOWED_BUCKET}/listings/slow.jpg"):
            read_s3_object(ref, config=config, client=client, deadline=deadline)
        assert client.body.reads < 4  # stopped before the end
    assert client.calls == int(requested)
    assert client.body.closed is requested  # the connection goes back, whatever happened


# What a misbehaving S3 gets (tests/support/faulty_s3.py), 1 s before the deadline; the
# clients' own read timeout is 30 s, so only the deadline can end "stall" and "silent" soon.
@pytest.mark.parametrize(
    ("mode", "own_client", "error"),
    [
        ("stall", True, FetchTimeoutError),  # socket reads cut to the time left
        ("silent", False, FetchTimeoutError),  # one attempt, timeouts within the time left
        ("short", True, S3ReadError),  # botocore's Content-Length check, not a short image
    ],
)
def test_misbehaving_s3_is_a_typed_error_by_the_deadline(
    mode: str,
    own_client: bool,
    error: type[Exception],
    net: NetGuard,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = S3Config(allowed_buckets=(ALLOWED_BUCKET,), read_timeout_s=30.0)
    with faulty_s3(mode) as endpoint_url:
        fake_aws_env(monkeypatch, endpoint_url)
        s3_client.cache_clear()
        client = None
        if own_client:
            import boto3
            from botocore.config import Config

            client = boto3.client("s3", config=Config(read_timeout=30, retries={"max_attempts": 1}))
        start = time.monotonic()
        with pytest.raises(error):
            read_s3_object(
                S3Ref(ALLOWED_BUCKET, "a.jpg"), config=config, client=client, deadline=start + 1
            )
        assert time.monotonic() - start < 10  # 30 s if the deadline did not bound it
    s3_client.cache_clear()


def test_handler_answers_fetch_timeout_when_no_time_is_left_for_s3(handler: NetGuard) -> None:
    # 0.5 s left is under RESPONSE_MARGIN_S (1 s): the S3 read's deadline has passed.
    event = json.loads((EVENTS / "s3_ok.json").read_text())
    answer = lambda_function.lambda_handler(event, LambdaContext(remaining_ms=500))
    assert answer["error"]["code"] == "FETCH_TIMEOUT"
    assert handler.connections == []  # refused before any request


def test_a_key_that_is_not_utf8_fails_its_item_not_the_batch(handler: NetGuard) -> None:
    bad = {"s3": {"bucket": ALLOWED_BUCKET, "key": "listings/\ud800.jpg"}}
    good = {"s3": {"bucket": ALLOWED_BUCKET, "key": "listings/pants.jpg"}}
    answer = invoke({"items": [bad, good]})
    assert answer["items"][0]["error"]["code"] == "INVALID_REQUEST"
    assert "label" in answer["items"][1]


@pytest.mark.parametrize("event", [None, [], "items", 5])
def test_handle_batch_refuses_what_is_not_an_object(event: Any, classifier: Classifier) -> None:
    outcome = handle_batch(event, classifier=classifier, fetch_config=FetchConfig())
    assert outcome.error is not None and outcome.error.code == "INVALID_REQUEST"
    assert outcome.response()["error"]["code"] == "INVALID_REQUEST"


def test_missing_boto3_is_a_typed_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "boto3", None)  # import boto3 -> ImportError
    s3_client.cache_clear()
    config = S3Config(allowed_buckets=(ALLOWED_BUCKET,))
    with pytest.raises(S3ReadError, match="boto3"):
        read_s3_object(S3Ref(ALLOWED_BUCKET, "a.jpg"), config=config)
    s3_client.cache_clear()


# S3's error codes (real botocore ClientError objects, as botocore raises them).
@pytest.mark.parametrize(
    ("s3_code", "error"),
    [
        ("NoSuchKey", S3ObjectNotFoundError),
        ("NoSuchBucket", S3ObjectNotFoundError),
        ("404", S3ObjectNotFoundError),
        ("AccessDenied", S3AccessDeniedError),
        ("403", S3AccessDeniedError),
        ("KMS.AccessDeniedException", S3AccessDeniedError),
        ("SlowDown", S3ReadError),
        ("InternalError", S3ReadError),
        ("InvalidObjectState", S3ReadError),
    ],
)
def test_s3_error_codes(s3_code: str, error: type[Exception]) -> None:
    exc = ClientError({"Error": {"Code": s3_code, "Message": "..."}}, "GetObject")
    mapped = _client_error(exc, S3Ref(ALLOWED_BUCKET, "a.jpg"))
    assert type(mapped) is error
    assert s3_code not in str(mapped)  # the S3 code goes to the log, as __cause__
    assert mapped.http_status == {S3ObjectNotFoundError: 404, S3AccessDeniedError: 403}.get(
        error, 502
    )


# ---------------------------------------------------------------------------
# Parsing and settings.


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ({"bucket": "photos", "key": "a.jpg"}, True),
        ({"bucket": "my.photos-2", "key": "dir/sub dir/ü.jpg"}, True),
        ({"bucket": "photos", "key": "k" * 1024}, True),
        ({"bucket": "photos", "key": "é" * 512}, True),  # 1024 UTF-8 bytes
        ({"bucket": "photos", "key": "é" * 513}, False),  # 1026 bytes
        ({"bucket": "photos", "key": "k" * 1025}, False),
        ({"bucket": "photos", "key": ""}, False),
        ({"bucket": "photos", "key": 5}, False),
        ({"bucket": "photos"}, False),
        ({"key": "a.jpg"}, False),
        ({"bucket": "ab", "key": "a.jpg"}, False),  # 3 characters at least
        ({"bucket": "b" * 64, "key": "a.jpg"}, False),
        ({"bucket": "Photos", "key": "a.jpg"}, False),
        ({"bucket": "photos/other", "key": "a.jpg"}, False),
        ({"bucket": "-photos", "key": "a.jpg"}, False),
        ("s3://photos/a.jpg", False),
        ({"bucket": "photos", "key": "a\ud800.jpg"}, False),  # valid JSON, not UTF-8
        (["photos", "a.jpg"], False),
    ],
)
def test_parse_s3_ref(value: Any, ok: bool) -> None:
    if ok:
        ref = parse_s3_ref(value)
        assert (ref.bucket, ref.key) == (value["bucket"], value["key"])
    else:
        with pytest.raises(InvalidRequestError):
            parse_s3_ref(value)


@pytest.mark.parametrize(
    ("raw", "buckets"),
    [
        ("", ()),
        ("photos", ("photos",)),
        (" photos , archive.2026 ,", ("photos", "archive.2026")),
        ("Photos", None),
        ("photos,s3://archive", None),
        ("*", None),
    ],
)
def test_allowed_buckets_from_env(raw: str, buckets: tuple[str, ...] | None) -> None:
    if buckets is None:
        with pytest.raises(ValueError, match="S3_ALLOWED_BUCKETS"):
            S3Config.from_env({"S3_ALLOWED_BUCKETS": raw})
    else:
        assert S3Config.from_env({"S3_ALLOWED_BUCKETS": raw}).allowed_buckets == buckets


@pytest.mark.parametrize(
    ("allowed", "bucket", "refused"),
    [((), "photos", True), (("photos",), "photos", False), (("photos",), "photos2", True)],
)
def test_allowlist_is_checked_before_any_request(
    allowed: tuple[str, ...], bucket: str, refused: bool
) -> None:
    class NoClient:
        def get_object(self, **kwargs: Any) -> Any:
            raise AssertionError("S3 was called")

    config = S3Config(allowed_buckets=allowed)
    if refused:
        with pytest.raises(S3BucketNotAllowedError):
            read_s3_object(S3Ref(bucket, "a.jpg"), config=config, client=NoClient())
    else:
        with pytest.raises(AssertionError, match="S3 was called"):
            read_s3_object(S3Ref(bucket, "a.jpg"), config=config, client=NoClient())
