"""The function under the real Lambda runtime client, without Docker or AWS.

`python -m awslambdaric <handler>` (the program the Lambda base image runs) is
started as a subprocess against tests/support/lambda_runtime_api.py, a local
implementation of the Lambda Runtime API. One warm process then answers many
invocations, good and bad, including a real bug, and keeps serving.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.lambda_context import ANSWER_KEYS
from tests.support.lambda_runtime_api import InvocationResult, RuntimeAPI
from tests.support.net import JPEG, ImageServer, png_bomb_header

REPO = Path(__file__).resolve().parents[1]
EVENTS = Path(__file__).parent / "events"
MAX_BYTES = 100_000


@dataclass
class Function:
    api: RuntimeAPI
    proc: subprocess.Popen[bytes]
    log_path: Path
    cold_start_s: float

    def invoke(self, event: Any, **kwargs: Any) -> InvocationResult:
        assert self.proc.poll() is None, "the function process exited"
        return self.api.invoke(event, timeout=60, **kwargs)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_function(
    handler: str, api: RuntimeAPI, tmp: Path, env: dict[str, str], first_event: Any
) -> tuple[subprocess.Popen[bytes], Path, InvocationResult, float]:
    """Start awslambdaric with `first_event` already queued; time to its answer."""
    log_path = tmp / f"{handler}.log"
    request_id = api.submit(first_event)
    start = time.perf_counter()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "awslambdaric", handler],
            cwd=REPO,
            env={**os.environ, **env, "AWS_LAMBDA_RUNTIME_API": api.address},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        first = api.wait(request_id, timeout=120)
    except TimeoutError:
        proc.kill()
        raise AssertionError(f"no first answer; log:\n{log_path.read_text()}") from None
    return proc, log_path, first, time.perf_counter() - start


def function_env(tiny_bundle: Path) -> dict[str, str]:
    return {
        "MODEL_DIR": str(tiny_bundle),
        "FETCH_ALLOW_LOOPBACK": "1",  # the image server is on 127.0.0.1
        "FETCH_TIMEOUT_S": "0.5",
        "FETCH_MAX_BYTES": str(MAX_BYTES),
        "AWS_LAMBDA_FUNCTION_NAME": "clothing-classifier",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "2048",
        "PYTHONUNBUFFERED": "1",
    }


@pytest.fixture(scope="module")
def server() -> Iterator[ImageServer]:
    srv = ImageServer().start()
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def function(
    tiny_bundle: Path, server: ImageServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Function]:
    tmp = tmp_path_factory.mktemp("runtime")
    with RuntimeAPI() as api:
        proc, log_path, first, cold = start_function(
            "tests.support.buggy_handler.lambda_handler",
            api,
            tmp,
            function_env(tiny_bundle),
            {"url": server.url("/pants.jpg")},
        )
        assert first.kind == "response", first.payload
        print(f"\ncold start to first answer: {cold:.2f} s")
        try:
            yield Function(api, proc, log_path, cold)
        finally:
            proc.kill()
            proc.wait(timeout=10)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def assert_answer(result: InvocationResult) -> dict[str, Any]:
    assert result.kind == "response", result.payload
    body = result.payload
    assert set(body) == ANSWER_KEYS
    assert len(body["scores"]) == 10
    assert (body["label"] is None) is body["unsure"]  # null exactly when unsure
    return dict(body)


def test_one_warm_process_serves_good_and_bad_invocations(
    function: Function, server: ImageServer
) -> None:
    pid = function.proc.pid
    by_url = assert_answer(function.invoke({"url": server.url("/pants.jpg"), "top_k": 4}))
    assert len(by_url["top"]) == 4
    by_image = assert_answer(function.invoke({"image": b64(JPEG)}))
    assert by_image["scores"] == by_url["scores"]

    http_event = json.loads((EVENTS / "http_api_v2_image_binary.json").read_text())
    http = function.invoke(http_event)
    assert http.kind == "response"
    assert http.payload["statusCode"] == 200
    assert json.loads(http.payload["body"])["model"] == by_url["model"]

    bad: dict[str, Any] = {
        "INVALID_REQUEST": {"top_k": 2},
        "URL_NOT_ALLOWED": {"url": "http://169.254.169.254/latest/meta-data/"},
        "PAYLOAD_TOO_LARGE": {"image": b64(b"\xff\xd8\xff" + bytes(MAX_BYTES))},
        "UNSUPPORTED_FORMAT": {"url": server.url("/html.jpg")},
        "IMAGE_TOO_LARGE": {"image": b64(png_bomb_header())},
        "CORRUPT_IMAGE": {"image": b64(JPEG[:300])},
        "FETCH_FAILED": {"url": server.url("/status/404")},
        "FETCH_TIMEOUT": {"url": server.url("/drip")},
    }
    for code, event in bad.items():
        result = function.invoke(event)
        assert result.kind == "response", (code, result.payload)  # handled, not raised
        assert result.payload == {
            "error": {"code": code, "message": result.payload["error"]["message"]}
        }

    http_bad = function.invoke({**http_event, "body": "{not json", "isBase64Encoded": False})
    assert http_bad.kind == "response"
    assert http_bad.payload["statusCode"] == 400
    assert json.loads(http_bad.payload["body"])["error"]["code"] == "INVALID_REQUEST"
    for event in ([1, 2], "a string", None):
        result = function.invoke(event)
        assert result.kind == "response" and result.payload["error"]["code"] == "INVALID_REQUEST"

    # A real bug goes to the error endpoint...
    bug = function.invoke({"__deliberate_bug__": True})
    assert bug.kind == "error"
    assert bug.payload["errorType"] == "ZeroDivisionError"
    assert bug.payload["errorMessage"] == "division by zero"
    # ...and so does a payload that is not JSON (the runtime client refuses it).
    unmarshal = function.invoke(None, raw=b"{not json")
    assert unmarshal.kind == "error" and unmarshal.payload["errorType"] == "Runtime.UnmarshalError"

    # The same process keeps serving.
    again = assert_answer(function.invoke({"url": server.url("/redirect/1")}))
    assert again["scores"] == by_url["scores"]
    assert function.proc.poll() is None and function.proc.pid == pid


def test_logs_are_json_lines_with_request_ids(function: Function) -> None:
    ok = function.invoke({"image": b64(JPEG)})
    refused = function.invoke({"url": "http://0xa9fea9fe/"})
    time.sleep(0.2)  # let the log reach the file
    records = {}
    for line in function.logs().splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            records[record.get("aws_request_id")] = record
    assert records[ok.request_id]["message"] == "classified"
    assert set(records[ok.request_id]["timings_ms"]) >= {
        "fetch",
        "decode",
        "preprocess",
        "inference",
    }
    assert records[refused.request_id]["code"] == "URL_NOT_ALLOWED"
    assert "169.254.169.254" in records[refused.request_id]["cause"]
    assert "169.254.169.254" not in json.dumps(refused.payload)
    assert sum(1 for r in records.values() if r.get("message") == "model_loaded") == 1


def test_the_dockerfile_handler_name_serves(
    tiny_bundle: Path, server: ImageServer, tmp_path: Path
) -> None:
    # The CMD of the Dockerfile, exactly; a cold process to its first answer.
    cmd = [
        line for line in (REPO / "Dockerfile").read_text().splitlines() if line.startswith("CMD")
    ]
    handler = json.loads(cmd[-1].removeprefix("CMD").strip())[0]
    assert handler == "lambda_function.lambda_handler"
    with RuntimeAPI() as api:
        proc, _, first, cold = start_function(
            handler, api, tmp_path, function_env(tiny_bundle), {"image": b64(JPEG)}
        )
        try:
            assert_answer(first)
            assert api.init_errors == []
        finally:
            proc.kill()
            proc.wait(timeout=10)
    print(f"\ncold start to first answer ({handler}): {cold:.2f} s")


def test_warm_process_answers_right_after_every_bad_input(function: Function) -> None:
    """Issue 11: each real-world input (tests/images/corpus/) gets its answer, and
    the next good request still gets the right one from the same process."""
    from tests.test_inputs import CASES, CORPUS, answer, event

    def scores() -> Any:
        good = function.invoke({"image": b64(JPEG)})
        assert good.kind == "response" and len(good.payload["scores"]) == 10, good.payload
        return good.payload["scores"]

    reference = scores()
    pid = function.proc.pid
    for name in sorted(CASES):
        data = (CORPUS / name).read_bytes()
        want = answer(name)["code"] if len(data) <= MAX_BYTES else "PAYLOAD_TOO_LARGE"
        for kind in ("direct", "url_form"):
            result = function.invoke(event(kind, data, name))
            assert result.kind == "response", (name, kind, result.payload)  # never raised
            body = result.payload if kind == "direct" else json.loads(result.payload["body"])
            got = body["error"]["code"] if "error" in body else None
            assert got == want, (name, kind, body)
            assert scores() == reference, (name, kind)
    assert function.proc.poll() is None and function.proc.pid == pid
