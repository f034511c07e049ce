"""Batches: {"items": [...]}, Step Functions' ItemBatcher input, and template.yaml's Map.

Every test runs the real handler (`lambda_function.lambda_handler`, settings
from env) with boto3 against moto's S3 server and URLs on a local image
server, under the network guard: nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import lambda_function
from inference import DEFAULT_MAX_BATCH_ITEMS, Classifier, InvalidRequestError
from inference._events import item_event, parse_batch
from inference._s3 import s3_client
from tests.support.lambda_context import LambdaContext
from tests.support.net import JPEG, ImageServer, NetGuard, jpeg_bytes, net_guard
from tests.support.s3_server import (
    ALLOWED_BUCKET,
    MAX_BYTES,
    LocalS3,
    fake_aws_env,
    golden_objects,
    local_s3,
)
from tests.support.state_machine import SAMPLE_SUBSTITUTIONS, definition, load_template

REPO = Path(__file__).resolve().parent.parent
EVENTS = REPO / "tests" / "events"
OBJECTS = golden_objects(JPEG, jpeg_bytes(size=(120, 90), color=(50, 60, 220)))


@pytest.fixture(scope="module")
def s3_server() -> Iterator[LocalS3]:
    with local_s3() as server:
        for key, data in OBJECTS.items():
            server.put(ALLOWED_BUCKET, key, data)
        yield server


@pytest.fixture(scope="module")
def image_server() -> Iterator[ImageServer]:
    server = ImageServer().start()
    yield server
    server.close()


@pytest.fixture(scope="module")
def classifier(tiny_bundle: Path) -> Classifier:
    return Classifier.load(tiny_bundle)


@pytest.fixture
def handler(
    tiny_bundle: Path, s3_server: LocalS3, monkeypatch: pytest.MonkeyPatch
) -> Iterator[NetGuard]:
    """lambda_function.lambda_handler as deployed, S3 and URLs on 127.0.0.1."""
    fake_aws_env(monkeypatch, s3_server.endpoint_url)
    monkeypatch.setenv("MODEL_DIR", str(tiny_bundle))
    monkeypatch.setenv("S3_ALLOWED_BUCKETS", ALLOWED_BUCKET)
    monkeypatch.setenv("FETCH_MAX_BYTES", str(MAX_BYTES))
    monkeypatch.setenv("FETCH_ALLOW_LOOPBACK", "1")
    monkeypatch.delenv("MAX_BATCH_ITEMS", raising=False)
    lambda_function._state.cache_clear()
    s3_client.cache_clear()
    with net_guard(monkeypatch) as guard:
        guard.names["127.0.0.1"] = ["127.0.0.1"]
        yield guard
    lambda_function._state.cache_clear()
    s3_client.cache_clear()


def invoke(event: Any, context: LambdaContext | None = None) -> dict[str, Any]:
    response = lambda_function.lambda_handler(event, context or LambdaContext(remaining_ms=60_000))
    json.dumps(response, allow_nan=False)
    return response


def load_event(name: str, server: ImageServer) -> Any:
    """A golden event, its http://images.test/ URLs pointed at the local image server."""
    base = server.url("/", host="images.test")
    return json.loads((EVENTS / name).read_text().replace("http://images.test/", base))


def codes(body: dict[str, Any]) -> list[str]:
    return [item["error"]["code"] if "error" in item else "OK" for item in body["items"]]


# ---------------------------------------------------------------------------
# Golden batch events: tests/events/items_*.json

OK = "OK"
# file: the code of each item in order, or the envelope's own error code (a str)
GOLDEN: dict[str, list[str] | str] = {
    "items_mixed.json": [
        OK,  # s3, allowed bucket
        "S3_OBJECT_NOT_FOUND",
        OK,  # base64 image, top_k 5
        OK,  # url
        "S3_BUCKET_NOT_ALLOWED",
        "CORRUPT_IMAGE",  # truncated JPEG in S3
        "INVALID_REQUEST",  # a bare string, not an event
        "INVALID_REQUEST",  # top_k 0
        "PAYLOAD_TOO_LARGE",  # S3 object over FETCH_MAX_BYTES
    ],
    "items_empty.json": [],
    "items_itembatcher_selector.json": [OK, OK, "UNSUPPORTED_FORMAT"],
    "items_itembatcher_listing.json": [OK, "S3_OBJECT_NOT_FOUND", "CORRUPT_IMAGE"],
    "items_itembatcher_csv_urls.json": [OK, "FETCH_FAILED", "URL_NOT_ALLOWED"],
    "items_bad_listing_without_bucket.json": ["INVALID_REQUEST"],
    "items_bad_too_many.json": "TOO_MANY_ITEMS",
    "items_bad_not_array.json": "INVALID_REQUEST",
    "items_bad_with_url.json": "INVALID_REQUEST",
    "items_bad_both_forms.json": "INVALID_REQUEST",
    "items_bad_batch_input.json": "INVALID_REQUEST",
    "items_bad_nested.json": [OK, "INVALID_REQUEST", "INVALID_REQUEST"],
}


def test_every_items_golden_file_is_in_the_table() -> None:
    assert sorted(p.name for p in EVENTS.glob("items_*.json")) == sorted(GOLDEN)


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_batches(name: str, handler: NetGuard, image_server: ImageServer) -> None:
    expected = GOLDEN[name]
    body = invoke(load_event(name, image_server))
    if isinstance(expected, str):
        assert set(body) == {"error"}, body
        assert body["error"]["code"] == expected
    else:
        assert set(body) == {"items"}
        assert codes(body) == expected
    handler.assert_no_connection_except("127.0.0.1")


@pytest.mark.parametrize(
    "name",
    ["items_mixed.json", "items_itembatcher_selector.json", "items_itembatcher_listing.json"],
)
def test_each_item_is_answered_as_its_own_event(
    name: str, handler: NetGuard, image_server: ImageServer
) -> None:
    """An item's answer in a batch is the answer the same event gets alone."""
    event = load_event(name, image_server)
    batch = parse_batch(event, max_items=100)
    answers = invoke(event)["items"]
    assert len(answers) == len(batch.items)
    for item, answer in zip(batch.items, answers, strict=True):
        try:
            single = item_event(item, batch)
        except InvalidRequestError:
            assert answer["error"]["code"] == "INVALID_REQUEST"
            continue
        assert invoke(single) == answer


@pytest.mark.parametrize(
    ("envelope", "expected"),
    [
        ({"Items": [], "BatchInput": {"top_k": 2}}, [2, 4]),
        ({"items": [], "top_k": 5}, [5, 4]),
        ({"items": [], "top_k": 5, "BatchInput": {"top_k": 2}}, [5, 4]),  # the envelope's wins
        ({"items": []}, [3, 4]),
        ({"items": [], "top_k": 0}, ["INVALID_REQUEST", 4]),  # checked as the item's own
    ],
)
def test_defaults_yield_to_the_item(
    envelope: dict[str, Any], expected: list[Any], handler: NetGuard
) -> None:
    item = {"s3": {"bucket": ALLOWED_BUCKET, "key": "listings/pants.jpg"}}
    name = "Items" if "Items" in envelope else "items"
    body = invoke({**envelope, name: [item, {**item, "top_k": 4}]})
    got = [a["error"]["code"] if "error" in a else len(a["top"]) for a in body["items"]]
    assert got == expected


def test_one_log_line_per_item_and_one_per_batch(
    handler: NetGuard, image_server: ImageServer, capsys: pytest.CaptureFixture[str]
) -> None:
    invoke(load_event("items_mixed.json", image_server))
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    items = [r for r in records if "batch_index" in r]
    assert [r["batch_index"] for r in items] == list(range(len(GOLDEN["items_mixed.json"])))
    assert [r.get("code", OK) for r in items] == GOLDEN["items_mixed.json"]
    summary = records[-1]
    assert summary["message"] == "batch"
    assert summary["items"] == 9
    assert summary["outcomes"] == {
        OK: 3,
        "S3_OBJECT_NOT_FOUND": 1,
        "S3_BUCKET_NOT_ALLOWED": 1,
        "CORRUPT_IMAGE": 1,
        "INVALID_REQUEST": 2,
        "PAYLOAD_TOO_LARGE": 1,
    }


# ---------------------------------------------------------------------------
# The cap (MAX_BATCH_ITEMS) and the deadline.


@pytest.mark.parametrize(
    ("cap", "n_items", "code"),
    [(None, 100, None), (None, 101, "TOO_MANY_ITEMS"), ("2", 2, None), ("2", 3, "TOO_MANY_ITEMS"),
     ("1", 0, None)],
)  # fmt: skip
def test_max_batch_items(
    cap: str | None, n_items: int, code: str | None, handler: NetGuard,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    if cap is not None:
        monkeypatch.setenv("MAX_BATCH_ITEMS", cap)
    items = [{"image": "not base64!"}] * n_items  # cheap items: each is answered INVALID_REQUEST
    body = invoke({"items": items})
    if code is None:
        assert codes(body) == ["INVALID_REQUEST"] * n_items
    else:
        assert body["error"]["code"] == code
        assert f"at most {cap or 100} items" in body["error"]["message"]
        assert handler.connections == []  # refused before any item is read


@pytest.mark.parametrize("raw", ["0", "-1", "abc", "1.5", "10001", "²"])
def test_bad_max_batch_items_stops_the_function(raw: str) -> None:
    rule = "must be an integer from 1 to 10000"
    expected = f"Env var MAX_BATCH_ITEMS {rule}. Received: MAX_BATCH_ITEMS={raw!r}"
    with pytest.raises(ValueError, match=f"^{re.escape(expected)}$"):
        lambda_function.max_batch_items({"MAX_BATCH_ITEMS": raw})


@pytest.mark.parametrize(
    ("name", "raw", "rule"),
    [
        ("MAX_BATCH_ITEMS", "0", "must be an integer from 1 to 10000"),
        ("S3_ALLOWED_BUCKETS", "Photos", "must be a comma-separated list of S3 bucket names"),
        ("FETCH_MAX_BYTES", "0", "must be an integer >= 1"),
    ],
)
def test_a_bad_setting_fails_lambdas_init_once(name: str, raw: str, rule: str) -> None:
    """In Lambda the request settings are read at import (the init phase), not per request."""
    env = {"PATH": "/usr/bin:/bin", "AWS_LAMBDA_FUNCTION_NAME": "classify", name: raw}
    done = subprocess.run(
        [sys.executable, "-c", "import lambda_function"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"ValueError: Env var {name} {rule}")
    assert last.endswith(f"Received: {name}={raw!r}")
    assert last.count("Received:") == 1


def test_settings_read_at_init_are_not_read_again(
    handler: NetGuard, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = lambda_function.read_settings()
    monkeypatch.setattr(lambda_function, "_INIT_SETTINGS", settings)
    monkeypatch.setenv("S3_ALLOWED_BUCKETS", "Not A Bucket")  # an error if it were read again
    lambda_function._state.cache_clear()
    item = {"s3": {"bucket": ALLOWED_BUCKET, "key": "listings/pants.jpg"}}
    assert codes(invoke({"items": [item]})) == [OK]
    assert "top" in invoke(item)


def test_items_past_the_deadline_are_answered_not_lost(handler: NetGuard) -> None:
    item = {"s3": {"bucket": ALLOWED_BUCKET, "key": "listings/pants.jpg"}}
    # 0.5 s left: less than the 1 s margin kept for answering, so no item may start.
    body = invoke({"items": [item, item]}, LambdaContext(remaining_ms=500))
    assert codes(body) == ["DEADLINE_EXCEEDED", "DEADLINE_EXCEEDED"]
    assert handler.connections == []


def test_http_events_are_not_batches(handler: NetGuard) -> None:
    event = {
        "version": "2.0",
        "routeKey": "POST /predict",
        "rawPath": "/predict",
        "headers": {"content-type": "application/json"},
        "requestContext": {"http": {"method": "POST", "path": "/predict"}},
        "body": json.dumps({"items": [{"image": "x"}]}),
        "isBase64Encoded": False,
    }
    response = invoke(event)
    assert response["statusCode"] == 400
    error = json.loads(response["body"])["error"]
    assert error["code"] == "INVALID_REQUEST"
    assert "are accepted in direct invocations only" in error["message"]


def test_nested_batches_are_refused_per_item(handler: NetGuard, image_server: ImageServer) -> None:
    body = invoke(load_event("items_bad_nested.json", image_server))
    messages = [item["error"]["message"] for item in body["items"][1:]]
    assert all("nested batches (`items`, `Items`) are not allowed" in m for m in messages), messages


def test_answer_size_leaves_room_under_the_step_functions_limit(handler: NetGuard) -> None:
    """DEFAULT_MAX_BATCH_ITEMS answers (all 10 classes listed) fit in the 256 KiB a
    Step Functions state may output, with a quarter of it to spare."""
    item = {"s3": {"bucket": ALLOWED_BUCKET, "key": "listings/pants.jpg"}, "top_k": 10}
    one = len(json.dumps(invoke({"items": [item]})))
    assert one * DEFAULT_MAX_BATCH_ITEMS < 256 * 1024 * 3 / 4


# ---------------------------------------------------------------------------
# template.yaml: the Distributed Map sends events the function accepts.


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template(REPO / "template.yaml")


def test_template_passes_cfn_lint() -> None:
    result = subprocess.run(
        [str(Path(sys.executable).with_name("cfn-lint")), str(REPO / "template.yaml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_substitutions_cover_every_placeholder(template: dict[str, Any]) -> None:
    """The sample values .ci/run validates with (asl-validator) name every substitution."""
    names = template["Resources"]["BulkClassifier"]["Properties"]["DefinitionSubstitutions"]
    assert set(names) == set(SAMPLE_SUBSTITUTIONS)
    assert "${" not in json.dumps(definition(template, SAMPLE_SUBSTITUTIONS))


def test_state_machine_is_well_formed(template: dict[str, Any]) -> None:
    """What cfn-lint does not check inside a SAM Definition: every transition names a
    state, both Maps are distributed, batched, bounded and write their results."""
    states = definition(template)["States"]
    assert definition(template)["StartAt"] in states
    nested = [n for s in states.values() for n in s.get("ItemProcessor", {}).get("States", {})]
    assert len(set(nested) | set(states)) == len(nested) + len(states)  # names unique overall
    targets = [s.get("Next") for s in states.values()] + [
        c["Next"] for s in states.values() for c in s.get("Choices", [])
    ] + [states["Source"]["Default"]]  # fmt: skip
    assert all(t in states for t in targets if t is not None)
    for name in ("ClassifyPrefix", "ClassifyManifest"):
        state = states[name]
        assert state["ItemProcessor"]["ProcessorConfig"]["Mode"] == "DISTRIBUTED"
        assert state["ItemBatcher"]["MaxItemsPerBatchPath"] == "$.settings.batch_size"
        assert state["ResultWriter"]["Resource"] == "arn:aws:states:::s3:putObject"
        task = state["ItemProcessor"]["States"][state["ItemProcessor"]["StartAt"]]
        assert task["Parameters"] == {"FunctionName": "${FunctionArn}", "Payload.$": "$"}


def test_template_limits_agree_with_the_function(template: dict[str, Any]) -> None:
    params = template["Parameters"]
    function = template["Resources"]["ClassifierFunction"]["Properties"]
    cap = int(function["Environment"]["Variables"]["MAX_BATCH_ITEMS"])
    assert cap == DEFAULT_MAX_BATCH_ITEMS
    assert params["BatchSize"]["MaxValue"] <= cap  # a batch never hits TOO_MANY_ITEMS
    assert function["Environment"]["Variables"]["S3_ALLOWED_BUCKETS"] == {"Ref": "InputBucket"}
    settings = definition(template)["States"]["Settings"]["Parameters"]
    fields = [
        ("batch_size.$", "BatchSize"),
        ("max_concurrency.$", "MaxConcurrency"),
        ("tolerated_failure_percentage.$", "ToleratedFailurePercentage"),
    ]
    for field, param in fields:
        assert settings[field] == f"States.StringToJson('${{{param}}}')"
        # What States.StringToJson makes of the substituted default: a JSON number.
        assert isinstance(json.loads(str(params[param]["Default"])), int)


def select(item_selector: dict[str, Any], value: dict[str, Any], bucket: str) -> dict[str, Any]:
    """Step Functions' ItemSelector for the two forms the template uses: a literal
    (after DefinitionSubstitutions) and `key.$: $$.Map.Item.Value.<field>`."""
    out: dict[str, Any] = {}
    for key, spec in item_selector.items():
        if isinstance(spec, dict):
            out[key] = select(spec, value, bucket)
        elif key.endswith(".$"):
            prefix = "$$.Map.Item.Value."
            assert spec.startswith(prefix), spec
            out[key[:-2]] = value[spec[len(prefix) :]]
        else:
            out[key] = spec.replace("${InputBucket}", bucket)
    return out


@pytest.mark.parametrize(
    ("state", "reader_items"),
    [
        (
            "ClassifyPrefix",  # ListObjectsV2 items, as ItemReader gives them
            [{"Etag": '"9b2cf535f27731c974343645a3985328"', "Key": key, "LastModified": 1764403200,
              "Size": len(OBJECTS[key]), "StorageClass": "STANDARD"}
             for key in ("listings/pants.jpg", "listings/2026/11/shoe photo (1).jpg")],
        ),
        (
            "ClassifyManifest",  # CSV rows with a header row: key,listing_id
            [{"key": "listings/pants.jpg", "listing_id": "17"},
             {"key": "listings/missing.jpg", "listing_id": "18"}],
        ),
    ],
)  # fmt: skip
def test_map_items_reach_the_function_as_s3_events(
    state: str,
    reader_items: list[dict[str, Any]],
    template: dict[str, Any],
    handler: NetGuard,
    classifier: Classifier,
) -> None:
    selector = definition(template)["States"][state]["ItemSelector"]
    batch = {"Items": [select(selector, item, ALLOWED_BUCKET) for item in reader_items]}
    answers = invoke(batch)["items"]
    for item, answer in zip(reader_items, answers, strict=True):
        key = item.get("Key") or item["key"]
        if key in OBJECTS:
            assert answer["scores"] == classifier.predict_bytes(OBJECTS[key]).to_dict()["scores"]
        else:
            assert answer["error"]["code"] == "S3_OBJECT_NOT_FOUND"
