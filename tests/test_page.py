"""The listing page, its routes and headers, and the local server (no browser).

Golden HTTP events of the routes are in tests/events/page/; the handler runs
in-process with the tiny bundle. tests/test_page_browser.py drives the page in
headless Chromium with a real bundle.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import lambda_function
from inference import Classifier, RouteConfig, is_http_event, make_server, render_page, route
from inference._page import MESSAGES, NAMES, message_for
from inference._serve import from_response, to_event
from tests.conftest import LABELS, REPO, make_image
from tests.support.lambda_context import LambdaContext

EVENTS = Path(__file__).parent / "events" / "page"
CSP_SCRIPT = re.compile(r"script-src '(sha256-[A-Za-z0-9+/=]+)'")
CSP_STYLE = re.compile(r"style-src '(sha256-[A-Za-z0-9+/=]+)'")


@pytest.fixture
def handler(tiny_bundle: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("MODEL_DIR", str(tiny_bundle))
    monkeypatch.delenv("CORS_ALLOWED_ORIGINS", raising=False)
    lambda_function._state.cache_clear()
    lambda_function._routes.cache_clear()
    yield lambda event: lambda_function.lambda_handler(event, LambdaContext(request_id="req-page"))
    lambda_function._state.cache_clear()
    lambda_function._routes.cache_clear()


def load(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return event


def json_body(response: dict[str, Any]) -> dict[str, Any]:
    assert response["headers"]["Content-Type"] == "application/json"
    body: dict[str, Any] = json.loads(response["body"])
    return body


def sha256_source(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


def inline(tag: str, page: str) -> list[str]:
    return re.findall(rf"<{tag}>(.*?)</{tag}>", page, flags=re.S)


# ---------------------------------------------------------------------------
# Routes: golden function URL events through lambda_handler.

ROUTES: dict[str, tuple[int, str | None]] = {
    # file: (status, error code or None)
    "function_url_get_page.json": (200, None),
    "function_url_head_page.json": (200, None),
    "function_url_cors_preflight.json": (204, None),
    "bad_function_url_not_found.json": (404, "NOT_FOUND"),
    "bad_function_url_wrong_path_post.json": (404, "NOT_FOUND"),
    "bad_function_url_put.json": (405, "METHOD_NOT_ALLOWED"),
    "bad_function_url_delete.json": (405, "METHOD_NOT_ALLOWED"),
}


def test_every_page_event_is_in_the_table() -> None:
    assert sorted(p.name for p in EVENTS.glob("*.json")) == sorted(ROUTES)


@pytest.mark.parametrize("name", sorted(ROUTES))
def test_routes(name: str, handler: Any) -> None:
    status, code = ROUTES[name]
    response = handler(load(name))
    headers = response["headers"]
    assert response["statusCode"] == status
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert "Access-Control-Allow-Origin" not in headers  # CORS is off by default
    if code is not None:
        assert json_body(response) == {
            "error": {"code": code, "message": json_body(response)["error"]["message"]}
        }
    if status == 405:
        assert headers["Allow"] == "GET, HEAD, POST, OPTIONS"
    if name == "function_url_get_page.json":
        assert headers["Content-Type"] == "text/html; charset=utf-8"
        assert response["body"].startswith("<!doctype html>")
    if name == "function_url_head_page.json":
        assert headers["Content-Type"] == "text/html; charset=utf-8" and response["body"] == ""


def test_get_page_does_not_load_the_model(handler: Any) -> None:
    handler(load("function_url_get_page.json"))
    assert lambda_function._state.cache_info().currsize == 0  # cold start stays cheap


def fu_post(body: bytes, content_type: str, **headers: str) -> dict[str, Any]:
    event = load("function_url_get_page.json")
    event["requestContext"]["http"]["method"] = "POST"
    event["headers"] = {**event["headers"], "content-type": content_type, **headers}
    event["body"] = base64.b64encode(body).decode()
    event["isBase64Encoded"] = True
    return event


def test_post_root_is_the_api(handler: Any, tmp_path: Path, tiny_bundle: Path) -> None:
    image = make_image(tmp_path / "a.jpg", color=(200, 40, 40)).read_bytes()
    response = handler(fu_post(image, "image/jpeg", accept="application/json"))
    assert response["statusCode"] == 200
    answer = json_body(response)
    expected = Classifier.load(tiny_bundle).predict_bytes(image).to_dict()
    assert answer["scores"] == pytest.approx(expected["scores"], abs=1e-6)
    assert answer["top"][0]["label"] == expected["top"][0]["label"]
    assert response["headers"]["X-Content-Type-Options"] == "nosniff"


def test_gateway_routes_stay_the_api(handler: Any) -> None:
    """API Gateway `POST /predict` routes were routed by API Gateway: the API, as before."""
    event = json.loads((REPO / "tests/events/http_api_v2_image_binary.json").read_text())
    response = handler(event)
    assert response["statusCode"] == 200 and len(json_body(response)["top"]) == 10
    event = json.loads((REPO / "tests/events/bad_http_api_v2_get_no_body.json").read_text())
    assert json_body(handler(event))["error"]["code"] == "INVALID_REQUEST"


def test_direct_invocations_are_unchanged(handler: Any, tmp_path: Path) -> None:
    image = make_image(tmp_path / "a.jpg", color=(40, 200, 60)).read_bytes()
    answer = handler({"image": base64.b64encode(image).decode()})
    assert "statusCode" not in answer and set(answer["scores"]) == set(LABELS)


# ---------------------------------------------------------------------------
# The page itself.


def test_page_is_self_contained_and_small() -> None:
    page = render_page()
    assert len(page.encode()) < 30 * 1024
    # No absolute URL, CDN, external font or protocol-relative load.
    assert not re.search(r"(https?:)?//[a-z0-9]", page, flags=re.I), "external URL in page"
    assert not re.search(r"@import|url\(", page)
    assert '<input id="camera" type="file" accept="image/*" capture="environment"' in page
    assert 'aria-live="polite"' in page
    for control in ("photo",):
        assert f'<label for="{control}">' in page


def test_csp_allows_exactly_the_inline_script_and_style() -> None:
    from inference._page import page_csp

    page, csp = render_page(), page_csp()
    scripts = [s for s in inline("script", page)]
    styles = inline("style", page)
    assert len(scripts) == 1 and len(styles) == 1  # the JSON data block has a type attribute
    assert CSP_SCRIPT.findall(csp) == [sha256_source(scripts[0])]
    assert CSP_STYLE.findall(csp) == [sha256_source(styles[0])]
    assert "'unsafe-inline'" not in csp and "http" not in csp
    assert "connect-src 'self'" in csp and "form-action 'self'" in csp


ANSWER = {
    "label": "pants",
    "unsure": False,
    "scores": {label: (0.7 if label == "pants" else 0.3 / 9) for label in LABELS},
    "top": [
        {"label": "pants", "score": 0.7},
        {"label": "shorts", "score": 0.3 / 9},
        {"label": "skirt", "score": 0.3 / 9},
    ],
}


def radios(page: str) -> list[tuple[str, bool]]:
    found = re.findall(r'<input type="radio" name="category" value="([^"]*)"( checked)?>', page)
    return [(value, bool(checked)) for value, checked in found]


@pytest.mark.parametrize(
    ("answer", "checked", "unsure"),
    [
        (ANSWER, ["pants"], False),
        ({**ANSWER, "label": None, "unsure": True}, [], True),
        ({**ANSWER, "unsure": True}, [], True),  # unsure wins even with a label
        ({k: v for k, v in ANSWER.items() if k != "unsure"}, ["pants"], False),  # older answer
    ],
)
def test_result_page(answer: dict[str, Any], checked: list[str], unsure: bool) -> None:
    page = render_page(answer=answer)
    found = radios(page)
    assert [v for v, _ in found[:3]] == ["pants", "shorts", "skirt"]  # top 3 first
    assert sorted(v for v, _ in found) == sorted(LABELS)  # all 10 reachable
    assert [v for v, c in found if c] == checked
    assert ('id="unsure"' in page) is unsure
    assert ">70%<" in page


def test_answer_text_is_escaped() -> None:
    evil = '<img src=x onerror="alert(1)">'
    answer = {"label": evil, "scores": {evil: 1.0}, "top": [{"label": evil, "score": 1.0}]}
    page = render_page(answer=answer)
    assert evil not in page and "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in page


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        ("UNSUPPORTED_FORMAT", 415, "HEIC"),
        ("PAYLOAD_TOO_LARGE", 413, "too large"),
        ("IMAGE_TOO_LARGE", 422, "too many pixels"),
        ("CORRUPT_IMAGE", 422, "couldn't read this photo"),
        ("INVALID_REQUEST", 400, "didn't receive a photo"),
        ("FETCH_FAILED", 502, "isn't available"),
        ("SOMETHING_NEW", 503, "isn't available"),
        ("SOMETHING_NEW", 400, "Something went wrong"),
    ],
)
def test_every_error_code_has_a_sentence(code: str, status: int, expected: str) -> None:
    message = message_for(code, status=status)
    assert expected in message and code not in message
    assert "_" not in message  # a sentence, not a code


def test_every_label_has_a_name() -> None:
    assert set(NAMES) == set(LABELS) and set(MESSAGES) >= {"UNAVAILABLE", "DEFAULT"}


# ---------------------------------------------------------------------------
# The no-JS form and CORS, on the router with a stub API.


def stub_api(status: int, payload: dict[str, Any]) -> Any:
    def api(event: dict[str, Any]) -> dict[str, Any]:
        return {
            "statusCode": status,
            "headers": {"Content-Type": "application/json"},
            "body": json.dumps(payload),
        }

    return api


@pytest.mark.parametrize(
    ("content_type", "accept", "html"),
    [
        ("multipart/form-data; boundary=x", "text/html,application/xhtml+xml,*/*;q=0.8", True),
        ("multipart/form-data; boundary=x", "*/*", False),
        ("multipart/form-data; boundary=x", "", False),
        ("multipart/form-data; boundary=x", "application/json", False),
        ("image/jpeg", "text/html", False),
        ("application/json", "", False),
    ],
)
def test_form_posts_get_html(content_type: str, accept: str, html: bool) -> None:
    event = fu_post(b"--x--", content_type, accept=accept)
    response = route(event, api=stub_api(200, ANSWER), config=RouteConfig())
    assert response["statusCode"] == 200
    is_html = response["headers"]["Content-Type"].startswith("text/html")
    assert is_html is html
    if html:
        assert radios(response["body"])[0] == ("pants", True)
        assert response["headers"]["Cache-Control"] == "no-store"


def test_form_post_error_keeps_its_status_and_gets_a_sentence() -> None:
    error = {"error": {"code": "UNSUPPORTED_FORMAT", "message": "HEIF is not supported"}}
    event = fu_post(b"--x--", "multipart/form-data; boundary=x")
    response = route(event, api=stub_api(415, error), config=RouteConfig())
    assert response["statusCode"] == 415
    assert MESSAGES["UNSUPPORTED_FORMAT"].split(".")[0] in response["body"].replace("&#x27;", "'")


SHOP = "https://shop.example.com"


@pytest.mark.parametrize(
    ("origins", "origin", "allowed"),
    [
        ((), SHOP, False),
        ((SHOP,), SHOP, True),
        ((SHOP,), "https://evil.example.com", False),
        ((SHOP, "http://localhost:3000"), "http://localhost:3000", True),
        ((SHOP,), SHOP + ".evil.com", False),
        # settings in another case or with the default port: browsers send neither
        (("https://Shop.Example.com",), SHOP, True),
        ((SHOP + ":443",), SHOP, True),
        (("http://localhost:80",), "http://localhost", True),
        ((SHOP + ":8443",), SHOP, False),
        (("http://shop.example.com:443",), "http://shop.example.com", False),
    ],
)
def test_cors(origins: tuple[str, ...], origin: str, allowed: bool) -> None:
    config = RouteConfig(cors_origins=origins)
    post = fu_post(b"{}", "application/json", origin=origin)
    response = route(post, api=stub_api(200, ANSWER), config=config)
    assert (response["headers"].get("Access-Control-Allow-Origin") == origin) is allowed
    preflight = load("function_url_cors_preflight.json")
    preflight["headers"]["origin"] = origin
    answer = route(preflight, api=stub_api(500, {}), config=config)
    assert answer["statusCode"] == 204
    assert ("Access-Control-Allow-Methods" in answer["headers"]) is allowed


@pytest.mark.parametrize(
    "value", ["*", "shop.example.com", "https://shop.example.com/path", "ftp://x.com"]
)
def test_cors_env_refuses_what_is_not_an_origin(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CORS_ALLOWED_ORIGINS", value)
    with pytest.raises(ValueError, match="CORS_ALLOWED_ORIGINS") as info:
        RouteConfig.from_env()
    assert repr(value) in str(info.value)


def test_cors_env_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORS_ALLOWED_ORIGINS", f" {SHOP}/ , http://localhost:3000")
    assert RouteConfig.from_env().cors_origins == (SHOP, "http://localhost:3000")


# ---------------------------------------------------------------------------
# The local server: requests become function URL events.


def test_to_event_is_a_function_url_event() -> None:
    event = to_event(
        method="POST",
        target="/?top_k=2&a=1&a=2",
        headers=[("Content-Type", "image/jpeg"), ("X-A", "1"), ("x-a", "2"), ("Cookie", "s=1")],
        body=b"\xff\xd8\xff",
        client_ip="127.0.0.1",
    )
    assert is_http_event(event)
    assert event["routeKey"] == "$default" and event["rawPath"] == "/"
    assert event["queryStringParameters"] == {"top_k": "2", "a": "1,2"}
    assert event["headers"]["x-a"] == "1,2" and event["cookies"] == ["s=1"]
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == b"\xff\xd8\xff"
    text = to_event(
        method="POST",
        target="/",
        headers=[("Content-Type", "application/json")],
        body=b'{"a": 1}',
        client_ip="::1",
    )
    assert text["isBase64Encoded"] is False and text["body"] == '{"a": 1}'


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ({"statusCode": 201, "headers": {"A": "b"}, "body": "hi"}, (201, [("A", "b")], b"hi")),
        (
            {
                "statusCode": 200,
                "body": base64.b64encode(b"\x00").decode(),
                "isBase64Encoded": True,
            },
            (200, [], b"\x00"),
        ),
        ({"label": "x"}, (200, [("Content-Type", "application/json")], b'{"label": "x"}')),
    ],
)
def test_from_response(response: dict[str, Any], expected: Any) -> None:
    assert from_response(response) == expected


@pytest.fixture
def local_server(handler: Any) -> Iterator[str]:
    server = make_server(port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.url
    server.shutdown()
    server.server_close()


def http(url: str, *, method: str = "GET", data: bytes | None = None, **headers: str) -> Any:
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_local_server_serves_page_and_routes(local_server: str) -> None:
    status, headers, body = http(local_server)
    assert status == 200 and body.startswith(b"<!doctype html>")
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "script-src 'sha256-" in headers["Content-Security-Policy"]
    assert http(local_server + "nope")[0] == 404
    assert http(local_server, method="DELETE")[0] == 405
    status, headers, body = http(local_server, method="HEAD")
    assert status == 200 and body == b""
    assert "Content-Length" not in headers  # not 0: the page is not empty (RFC 9110 8.6)


def test_local_server_refuses_huge_bodies_unread(local_server: str) -> None:
    status, _, body = http(local_server, method="POST", data=b"x", **{"Content-Length": str(10**9)})
    assert status == 413 and json.loads(body)["error"]["code"] == "PAYLOAD_TOO_LARGE"


def test_concurrent_clients_get_their_own_answers(local_server: str, tmp_path: Path) -> None:
    colors = [(200, 40, 40), (40, 200, 60), (50, 60, 220), (220, 220, 40), (200, 40, 200)]
    images = [
        make_image(tmp_path / f"{i}.jpg", color=colors[i % 5], seed=i).read_bytes()
        for i in range(12)
    ]

    def ask(image: bytes) -> dict[str, Any]:
        status, _, body = http(
            local_server, method="POST", data=image, **{"Content-Type": "image/jpeg"}
        )
        assert status == 200
        answer: dict[str, Any] = json.loads(body)
        return answer["scores"]

    alone = [ask(image) for image in images]
    with ThreadPoolExecutor(max_workers=8) as pool:
        together = list(pool.map(ask, images * 2))
    assert together == alone * 2
    assert len({json.dumps(s, sort_keys=True) for s in alone}) > 1  # answers differ per image


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize(
    "preexec",
    [None, _ignore_sigint],  # the second: started by a non-interactive shell in the background
    ids=["foreground", "sigint-ignored-by-parent"],
)
def test_serve_command_starts_and_stops_on_ctrl_c(
    tiny_bundle: Path, preexec: Callable[[], None] | None
) -> None:
    argv = [sys.executable, "-m", "inference", "serve", "--model", str(tiny_bundle), "--port", "0"]
    proc = subprocess.Popen(
        argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=preexec
    )
    try:
        assert proc.stderr is not None
        lines = []  # stdout has the JSON log lines; stderr the runtime's and ours
        while not (url := re.search(r"Serving .* on (http://\S+/)", "".join(lines))):
            lines.append(proc.stderr.readline().decode())
            assert lines[-1] and len(lines) < 20, lines
        assert http(url.group(1))[0] == 200
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0, err.decode()
    assert b"Traceback" not in err and b"Stopped." in err


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["--model", "/nonexistent/bundle"], {}, "nonexistent"),
        (["--port", "70000"], {}, "port"),
        ([], {"CORS_ALLOWED_ORIGINS": "*"}, "CORS_ALLOWED_ORIGINS"),
        (["--host", "192.0.2.1"], {}, "error: cannot listen on 192.0.2.1 port 8080: "),
    ],
)
def test_serve_command_bad_settings(
    args: list[str], env: dict[str, str], expected: str, tiny_bundle: Path
) -> None:
    import os

    argv = [sys.executable, "-m", "inference", "serve", "--model", str(tiny_bundle), *args]
    done = subprocess.run(
        argv, cwd=REPO, capture_output=True, text=True, env={**os.environ, **env}, timeout=60
    )
    assert done.returncode == 2, done.stderr
    assert expected in done.stderr and "Traceback" not in done.stderr


# ---------------------------------------------------------------------------
# The local server against requests the standard library refuses itself.


def raw_http(url: str, request: bytes, *, timeout: float = 10) -> bytes:
    """Send raw bytes to the local server and read its answer until it closes."""
    host, port = urllib.parse.urlsplit(url).netloc.split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize(
    ("request_bytes", "status", "code"),
    [
        # methods with no route: the router's 405, not http.server's HTML 501
        (b"TRACE / HTTP/1.1\r\nHost: x\r\n\r\n", 405, "METHOD_NOT_ALLOWED"),
        (b"get / HTTP/1.1\r\nHost: x\r\n\r\n", 405, "METHOD_NOT_ALLOWED"),
        (b"BREW / HTTP/1.1\r\nHost: x\r\n\r\n", 405, "METHOD_NOT_ALLOWED"),
        # a Content-Length that str.isdigit() accepts and int() does not
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: \xb2\r\n\r\nab", 400, "INVALID_REQUEST"),
        # a Content-Length that is there but not a byte count: 400, not 411 (Length Required)
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400, "INVALID_REQUEST"),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1e3\r\n\r\n", 400, "INVALID_REQUEST"),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\n", 400, "INVALID_REQUEST"),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n",
            413,
            "PAYLOAD_TOO_LARGE",
        ),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            411,
            "INVALID_REQUEST",
        ),
        (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n", 414, "INVALID_REQUEST"),
        (b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 200 + b"\r\n", 431, "INVALID_REQUEST"),
        # request lines the standard library cannot parse: still a status line
        (b"GET / HTTP/1.1 extra\r\n\r\n", 400, "INVALID_REQUEST"),
        (b"GET / HTTP/2.0\r\n\r\n", 505, "INVALID_REQUEST"),
        (b"garbage\r\n\r\n", 400, "INVALID_REQUEST"),
        # two lengths: which one frames the body is ambiguous (request smuggling)
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 40\r\n\r\n"
            b"{}GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
            400,
            "INVALID_REQUEST",
        ),
    ],
)
def test_local_server_answers_bad_http_with_json_errors(
    local_server: str, request_bytes: bytes, status: int | None, code: str
) -> None:
    answer = raw_http(local_server, request_bytes)
    head, _, body = answer.partition(b"\r\n\r\n") if status is not None else (b"", b"", answer)
    error = json.loads(body)["error"]
    assert error["code"] == code and "<" not in error["message"]
    assert "('" not in error["message"]  # no Python repr: "Unsupported method ('TRACE')"
    if status is not None:
        lines = head.decode("latin-1").split("\r\n")
        assert lines[0].startswith(f"HTTP/1.1 {status} ")
        headers = dict(line.split(": ", 1) for line in lines[1:])
        assert headers["Content-Type"] == "application/json"
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Content-Security-Policy"] == "default-src 'none'; frame-ancestors 'none'"
        if code == "METHOD_NOT_ALLOWED":
            assert headers["Allow"] == "GET, HEAD, POST, OPTIONS"
    assert http(local_server)[0] == 200  # and it goes on serving


def test_local_server_drops_a_body_cut_short(local_server: str) -> None:
    request = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n" + b'{"url"'
    host, port = urllib.parse.urlsplit(local_server).netloc.split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)  # the client gives up before its body ends
        assert sock.recv(65536) == b""  # not answered as if the 6 bytes were the body
    assert http(local_server)[0] == 200


def test_local_server_answers_502_when_the_handler_raises() -> None:
    calls = []

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        calls.append(event)
        if len(calls) == 1:
            raise RuntimeError("a bug at /secret/path")
        return {"statusCode": 200, "headers": {}, "body": "fine"}

    server = make_server(port=0, handler=handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        status, headers, body = http(server.url)
        assert status == 502 and headers["X-Content-Type-Options"] == "nosniff"
        assert json.loads(body)["error"]["code"] == "INTERNAL_ERROR"
        assert b"secret" not in body and b"Traceback" not in body
        assert http(server.url)[:3:2] == (200, b"fine")
    finally:
        server.shutdown()
        server.server_close()


def test_local_server_queues_a_burst_of_connections() -> None:
    """socketserver's listen backlog of 5 dropped (or, with SYN cookies, reset)
    clients connecting while the server was busy."""
    server = make_server(port=0, handler=lambda event, context: {"statusCode": 204})
    host, port = server.server_address[:2]
    socks = []
    try:
        for _ in range(40):  # nothing accepts yet: the kernel's queue holds them all
            socks.append(socket.create_connection((str(host), port), timeout=0.5))
        for sock in socks:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        threading.Thread(target=server.serve_forever, daemon=True).start()
        for sock in socks:
            sock.settimeout(20)
            assert sock.recv(65536).startswith(b"HTTP/1.1 204 ")
        server.shutdown()
    finally:
        for sock in socks:
            sock.close()
        server.server_close()


@pytest.mark.parametrize(
    ("parts", "status", "code"),
    [
        # a part with no headers at all: no name, so no field (was 413 "form field ''")
        ([b"\r\n" + b"x" * 10_000], 400, "INVALID_REQUEST"),
        ([b"Content-Disposition: form-data\r\n\r\n" + b"x" * 10_000], 400, "INVALID_REQUEST"),
        ([b'Content-Disposition: form-data; name="url"\r\n\r\n' + b"x" * 10_000], 413, None),
    ],
)
def test_form_parts_without_a_name_are_skipped(
    handler: Any, parts: list[bytes], status: int, code: str | None
) -> None:
    body = b"".join(b"--B\r\n" + part + b"\r\n" for part in parts) + b"--B--\r\n"
    event = fu_post(body, "multipart/form-data; boundary=B", accept="application/json")
    response = handler(event)
    assert response["statusCode"] == status
    assert json_body(response)["error"]["code"] == (code or "PAYLOAD_TOO_LARGE")


def test_local_server_listens_on_ipv6(handler: Any) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 here")
    try:
        server = make_server(host="::1", port=0)
    except OSError:
        pytest.skip("::1 cannot be bound here")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        assert server.url.startswith("http://[::1]:")
        assert http(server.url)[0] == 200
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("stage", "raw_path", "status"),
    [
        ("prod", "/prod/", 200),  # an HTTP API's named stage leads its rawPath
        ("prod", "/prod", 200),
        ("prod", "/prod/nope", 404),
        ("prod", "/production/", 404),
        ("$default", "/prod/", 404),
        ("$default", "/", 200),
    ],
)
def test_http_api_named_stage(stage: str, raw_path: str, status: int) -> None:
    event = load("function_url_get_page.json")
    event["rawPath"] = raw_path
    event["requestContext"]["stage"] = stage
    response = route(event, api=stub_api(500, {}), config=RouteConfig())
    assert response["statusCode"] == status
