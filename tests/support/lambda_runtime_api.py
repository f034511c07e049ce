"""A small local Lambda Runtime API, to run the real `awslambdaric` without AWS.

Lambda's runtime interface client (`python -m awslambdaric module.handler`)
long-polls `AWS_LAMBDA_RUNTIME_API` for events and posts the results back. This
module implements the part of that API the client uses, on 127.0.0.1:

    GET  /2018-06-01/runtime/invocation/next             -> the next event
    POST /2018-06-01/runtime/invocation/{id}/response    <- the handler's answer
    POST /2018-06-01/runtime/invocation/{id}/error       <- an unhandled exception
    POST /2018-06-01/runtime/init/error                  <- the handler failed to import

    with RuntimeAPI() as api:
        cmd = [sys.executable, "-m", "awslambdaric", "lambda_function.lambda_handler"]
        proc = subprocess.Popen(cmd, env={..., "AWS_LAMBDA_RUNTIME_API": api.address})
        result = api.invoke({"url": "https://..."})   # blocks until the process answers
        result.kind, result.payload                   # "response" | "error", parsed JSON

The tests (tests/test_lambda_runtime.py) and `python -m bench.serve` use it.
It is a test double: one client, one invocation at a time, loopback only.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PREFIX = "/2018-06-01/runtime"
FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:clothing-classifier"


@dataclass
class InvocationResult:
    request_id: str
    kind: str  # "response" | "error" | "init_error"
    payload: Any  # the posted body, parsed as JSON when it is JSON
    headers: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0  # from being queued to the answer


@dataclass
class _Invocation:
    request_id: str
    body: bytes
    timeout_s: float
    queued_at: float
    done: threading.Event = field(default_factory=threading.Event)
    result: InvocationResult | None = None


class RuntimeAPI:
    """The emulator: an HTTP server in a background thread plus an event queue."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._pending: queue.Queue[_Invocation] = queue.Queue()
        self._by_id: dict[str, _Invocation] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self.init_errors: list[InvocationResult] = []
        self.next_calls = 0
        self._server = _QuietServer((host, port), _make_handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def address(self) -> str:
        """The value for AWS_LAMBDA_RUNTIME_API: `host:port`."""
        host, port = self._server.server_address[:2]
        return f"{host!s}:{port}"

    def start(self) -> RuntimeAPI:
        self._thread.start()
        return self

    def close(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> RuntimeAPI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def submit(self, event: Any, *, timeout_s: float = 30.0, raw: bytes | None = None) -> str:
        """Queue an event (any JSON value, or `raw` bytes); return its request id."""
        body = raw if raw is not None else json.dumps(event).encode()
        inv = _Invocation(str(uuid.uuid4()), body, timeout_s, time.perf_counter())
        with self._lock:
            self._by_id[inv.request_id] = inv
        self._pending.put(inv)
        return inv.request_id

    def wait(self, request_id: str, *, timeout: float = 60.0) -> InvocationResult:
        inv = self._by_id[request_id]
        if not inv.done.wait(timeout):
            raise TimeoutError(f"No answer to invocation {request_id} within {timeout} s.")
        assert inv.result is not None
        return inv.result

    def invoke(
        self, event: Any, *, timeout: float = 60.0, raw: bytes | None = None
    ) -> InvocationResult:
        """Queue an event and wait for the function's response or error."""
        return self.wait(self.submit(event, raw=raw), timeout=timeout)

    # Called from the server threads.

    def _next(self) -> _Invocation | None:
        with self._lock:
            self.next_calls += 1
        while not self._stopping.is_set():
            try:
                return self._pending.get(timeout=0.2)
            except queue.Empty:
                continue
        return None

    def _is_open(self, request_id: str) -> bool:
        inv = self._by_id.get(request_id)
        return inv is not None and not inv.done.is_set()

    def _finish(self, request_id: str, kind: str, body: bytes, headers: dict[str, str]) -> None:
        inv = self._by_id[request_id]
        inv.result = InvocationResult(
            request_id=request_id,
            kind=kind,
            payload=_parse(body),
            headers=headers,
            seconds=time.perf_counter() - inv.queued_at,
        )
        inv.done.set()


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # the client process is killed mid-connection at the end of every run


def _parse(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return body


def _make_handler(api: RuntimeAPI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # the client keeps its connection open
        disable_nagle_algorithm = True  # headers and body go out in two writes

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: the test output is for the function's logs

        def _reply(
            self, status: int, body: bytes = b"{}", headers: dict[str, str] | None = None
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path != f"{PREFIX}/invocation/next":
                self._reply(404, b'{"errorMessage": "not found"}')
                return
            inv = api._next()
            if inv is None:  # shutting down: the client is about to be killed
                self._reply(500, b'{"errorMessage": "emulator stopping"}')
                return
            deadline_ms = int((time.time() + inv.timeout_s) * 1000)
            trace_id = f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]}"
            self._reply(
                200,
                inv.body,
                {
                    "Lambda-Runtime-Aws-Request-Id": inv.request_id,
                    "Lambda-Runtime-Deadline-Ms": str(deadline_ms),
                    "Lambda-Runtime-Invoked-Function-Arn": FUNCTION_ARN,
                    "Lambda-Runtime-Trace-Id": trace_id,
                },
            )

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k: v for k, v in self.headers.items()}
            parts = self.path.removeprefix(PREFIX).strip("/").split("/")
            if parts == ["init", "error"]:
                api.init_errors.append(InvocationResult("", "init_error", _parse(body), headers))
                self._reply(202, b'{"status": "OK"}')
                return
            if len(parts) == 3 and parts[0] == "invocation" and parts[2] in ("response", "error"):
                if not api._is_open(parts[1]):
                    self._reply(400, b'{"errorMessage": "unknown or finished request id"}')
                    return
                # Answer first: once the result is in, the caller may kill the client.
                self._reply(202, b'{"status": "OK"}')
                api._finish(parts[1], parts[2], body, headers)
                return
            self._reply(404, b'{"errorMessage": "not found"}')

    return Handler
