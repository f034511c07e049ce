"""The local server behind `python -m inference serve`: each HTTP request becomes
a Lambda function URL event (payload format 2.0, AWS docs "Invoking Lambda
function URLs") for the very handler Lambda runs, `lambda_function.lambda_handler`,
and its response dict becomes the HTTP response. What works here works on Lambda.

Usage:
    server = make_server(port=8080)          # handler: lambda_function.lambda_handler
    server.serve_forever()                   # Ctrl-C: KeyboardInterrupt, then server.server_close()

Threads read and write the requests (slow clients do not block others); the
handler answers one event at a time, as one Lambda execution environment does,
because the TFLite interpreter it holds is not thread-safe.
"""

from __future__ import annotations

import base64
import datetime
import json
import socket
import sys
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from inference._routes import ALLOWED_METHODS, BASE_HEADERS, JSON_CSP

Handler = Callable[[dict[str, Any], Any], Any]

# Bodies over this are refused before reading: the API's own cap (10 MiB by
# default, FETCH_MAX_BYTES) in base64 plus room for a multipart envelope.
MAX_BODY_BYTES = 16 * 1024 * 1024
# The deadline a context reports, like a function configured with a 30 s timeout.
TIMEOUT_S = 30.0
# A client silent this long (an idle keep-alive connection, a body that never
# arrives) is disconnected, so it cannot hold a thread for ever.
SOCKET_TIMEOUT_S = 60.0
# Requests refused before they become events (bad HTTP, the standard library's
# send_error): status, stable code, message. Anything else: 400 INVALID_REQUEST.
_PROTOCOL_ERRORS: dict[int, tuple[int, str, str]] = {
    HTTPStatus.REQUEST_URI_TOO_LONG: (414, "INVALID_REQUEST", "The request's address is too long."),
    HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE: (
        431,
        "INVALID_REQUEST",
        "The request has too many headers, or one that is too long.",
    ),
    HTTPStatus.HTTP_VERSION_NOT_SUPPORTED: (
        505,
        "INVALID_REQUEST",
        "Send the request as HTTP/1.0 or HTTP/1.1.",
    ),
}
# Content types a function URL passes as text; anything else arrives base64-encoded.
_TEXT_TYPES = ("text/", "application/json", "application/xml", "application/javascript")
_TEXT_SUFFIXES = ("+json", "+xml", "x-www-form-urlencoded")


class LocalContext:
    """The parts of the Lambda context object the handler reads."""

    function_name = "clothing-classifier-local"
    memory_limit_in_mb = 2048

    def __init__(self, *, timeout_s: float = TIMEOUT_S) -> None:
        self.aws_request_id = str(uuid.uuid4())
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the local timeout (>= 0), like Lambda's context."""
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def to_event(
    *, method: str, target: str, headers: list[tuple[str, str]], body: bytes, client_ip: str
) -> dict[str, Any]:
    """An HTTP request -> a function URL event (payload format version 2.0).

    target: the request line's path and query ("/?top_k=3").
    Headers are lower-cased, repeats joined with commas; binary bodies are base64.
    """
    split = urllib.parse.urlsplit(target)
    joined: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in headers:
        key = name.lower()
        if key == "cookie":
            cookies.extend(c.strip() for c in value.split(";") if c.strip())
            continue
        joined[key] = f"{joined[key]},{value}" if key in joined else value
    query: dict[str, str] = {}
    for key, value in urllib.parse.parse_qsl(split.query, keep_blank_values=True):
        query[key] = f"{query[key]},{value}" if key in query else value
    content_type = joined.get("content-type", "").lower()
    is_text = content_type.startswith(_TEXT_TYPES) or content_type.endswith(_TEXT_SUFFIXES)
    text_body = is_text and _is_utf8(body)
    now = datetime.datetime.now(datetime.UTC)
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": split.path or "/",
        "rawQueryString": split.query,
        "headers": joined,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "local",
            "domainName": joined.get("host", "localhost"),
            "domainPrefix": "local",
            "http": {
                "method": method,
                "path": split.path or "/",
                "protocol": "HTTP/1.1",
                "sourceIp": client_ip,
                "userAgent": joined.get("user-agent", ""),
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": "$default",
            "stage": "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp() * 1000),
        },
        "isBase64Encoded": bool(body) and not text_body,
    }
    if cookies:
        event["cookies"] = cookies
    if query:
        event["queryStringParameters"] = query
    if body:
        event["body"] = body.decode("utf-8") if text_body else base64.b64encode(body).decode()
    return event


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def from_response(response: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    """A handler's return value -> (status, headers, body), as a function URL reads it:
    a dict without `statusCode` is a 200 JSON answer."""
    if not isinstance(response, dict) or "statusCode" not in response:
        body = json.dumps(response).encode()
        return 200, [("Content-Type", "application/json")], body
    headers = [(str(k), str(v)) for k, v in (response.get("headers") or {}).items()]
    headers += [("Set-Cookie", str(c)) for c in response.get("cookies") or []]
    raw = response.get("body") or ""
    body = base64.b64decode(raw) if response.get("isBase64Encoded") else str(raw).encode()
    return int(response["statusCode"]), headers, body


class LocalServer(ThreadingHTTPServer):
    """A threading HTTP server that hands every request to one Lambda handler."""

    daemon_threads = True  # Ctrl-C does not wait for a client that never finishes
    block_on_close = False
    # Connections waiting to be accepted. socketserver's default, 5, overflows
    # when a dozen clients connect at once: Linux then drops them, or with SYN
    # cookies resets them ("Connection reset by peer" before any answer).
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], handler: Handler) -> None:
        if ":" in address[0]:  # an IPv6 address ("::1", "::")
            self.address_family = socket.AF_INET6
        super().__init__(address, _RequestHandler)
        self.handler = handler
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        """The server's base URL, e.g. "http://127.0.0.1:8080/" (IPv6 hosts bracketed)."""
        host, port = self.server_address[:2]
        host = f"[{host!s}]" if ":" in str(host) else str(host)
        return f"http://{host}:{port}/"

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away mid-answer is not worth a traceback; anything else is."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class _RequestHandler(BaseHTTPRequestHandler):
    server: LocalServer
    protocol_version = "HTTP/1.1"
    server_version = "clothing-classifier"
    sys_version = ""
    timeout = SOCKET_TIMEOUT_S
    # A request line the standard library cannot parse leaves the version at this
    # default; its own "HTTP/0.9" would answer the error with no status line.
    default_request_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._dispatch()

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_GET

    def _dispatch(self) -> None:
        lengths = self.headers.get_all("Content-Length") or ["0"]
        if len(lengths) > 1:  # which one frames the body? (RFC 9112 6.3: an error, close)
            message = f"Send one Content-Length header. Received: {len(lengths)}"
            self._send_json(400, "INVALID_REQUEST", message)
            return
        length = lengths[0].strip()
        if "Transfer-Encoding" in self.headers:
            message = (
                "Send the body with a Content-Length header (chunked uploads are not supported)."
            )
            self._send_json(411, "INVALID_REQUEST", message)  # answered without reading the body
            return
        # ASCII digits only: str.isdigit() also accepts "²", which int() refuses.
        if not (length.isascii() and length.isdigit()):
            message = f"The Content-Length header must be a byte count. Received: {length[:20]!r}"
            self._send_json(400, "INVALID_REQUEST", message)
            return
        if int(length) > MAX_BODY_BYTES:
            message = f"The request body is {length} bytes, over the limit of {MAX_BODY_BYTES}."
            self._send_json(413, "PAYLOAD_TOO_LARGE", message)
            return
        body = self.rfile.read(int(length))
        if len(body) < int(length):  # the client closed before sending its whole body
            self.close_connection = True
            return
        event = to_event(
            method=self.command,
            target=self.path,
            headers=list(self.headers.items()),
            body=body,
            client_ip=self.client_address[0],
        )
        try:
            with self.server.lock:
                response = self.server.handler(event, LocalContext())
            status, headers, payload = from_response(response)
        except Exception:
            # The function raised (a bug, or a broken bundle): Lambda's function
            # URL answers 502 then; the traceback goes to the console, not the client.
            self.server.handle_error(self.request, self.client_address)
            message = "The function failed; its traceback is in the server's log."
            self._send_json(502, "INTERNAL_ERROR", message)
            return
        self.send_response(status)
        for name, value in headers:
            if name.lower() not in ("content-length", "connection"):
                self.send_header(name, value)
        if self.command != "HEAD" or payload:
            # A HEAD answer's Content-Length must be the GET's, or absent (RFC 9110
            # 8.6): the router leaves the page's body out, so it is left out.
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The standard library's answer to a request it cannot parse (bad request
        line, unknown method, too many headers...), in the API's JSON error shape
        instead of its HTML page."""
        allow = None
        if code == HTTPStatus.NOT_IMPLEMENTED:  # a method with no do_<METHOD>
            status, error = 405, "METHOD_NOT_ALLOWED"
            text = f"Use GET for the page or POST for the API. Received: {self.command[:20]}"
            allow = ", ".join(ALLOWED_METHODS)
        else:
            status, error, text = _PROTOCOL_ERRORS.get(
                int(code), (400, "INVALID_REQUEST", "The request is not valid HTTP/1.1.")
            )
        self._send_json(status, error, text, allow=allow)

    def _send_json(self, status: int, code: str, message: str, *, allow: str | None = None) -> None:
        """An error answered by the server itself (the handler never saw the request),
        with the headers the router gives every response; the connection is closed."""
        payload = json.dumps({"error": {"code": code, "message": message}}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Cache-Control", "no-store")
        for name, value in BASE_HEADERS.items():
            self.send_header(name, value)
        self.send_header("Content-Security-Policy", JSON_CSP)
        if allow is not None:
            self.send_header("Allow", allow)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)
        self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the handler writes one JSON log line per request already


def make_server(
    *, host: str = "127.0.0.1", port: int = 8080, handler: Handler | None = None
) -> LocalServer:
    """Bind the local server (port 0: a free port; see `server.url`).

    handler: the Lambda handler to call; default `lambda_function.lambda_handler`,
    imported here so that `inference` itself never depends on it.
    Raises OSError when the address cannot be bound.
    """
    if handler is None:
        import lambda_function

        handler = lambda_function.lambda_handler
    return LocalServer((host, port), handler)


def run(*, model_dir: str | None, host: str, port: int) -> int:
    """`python -m inference serve`: load the bundle, serve until Ctrl-C (or SIGTERM).

    Returns the exit code: 0 after a clean stop, 2 when the bundle, the
    settings or the address are bad (the message says which).
    """
    import os
    import signal
    import sys

    from inference._errors import InferenceError

    if not 0 <= port <= 65535:
        print(f"error: `port` must be from 0 to 65535. Received: port={port}", file=sys.stderr)
        return 2
    if model_dir is not None:
        os.environ["MODEL_DIR"] = model_dir  # read by the handler, as on Lambda
    try:
        import lambda_function

        lambda_function.warm_up()  # a bad bundle or CORS_ALLOWED_ORIGINS fails now
    except (InferenceError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        server = make_server(host=host, port=port, handler=lambda_function.lambda_handler)
    except OSError as exc:  # "[Errno 98] Address already in use" -> its words only
        reason = exc.strerror or str(exc)
        print(f"error: cannot listen on {host} port {port}: {reason}", file=sys.stderr)
        return 2

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    # SIGINT too: a process started in the background by a non-interactive shell
    # (CI, nohup, `cmd &`) inherits SIGINT as ignored, and Python then installs
    # no KeyboardInterrupt handler of its own, so Ctrl-C / `kill -INT` did nothing.
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    # stdout carries the handler's JSON log lines (as CloudWatch would); people read stderr.
    print(f"Serving the listing page and the API on {server.url} (Ctrl-C stops)", file=sys.stderr)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    print("Stopped.", file=sys.stderr, flush=True)
    return 0
