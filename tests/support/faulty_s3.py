"""An S3 endpoint that misbehaves, for the read deadline tests (tests/test_s3.py).

    with faulty_s3("stall") as endpoint_url:   # http://127.0.0.1:<random port>
        client = boto3.client("s3", endpoint_url=endpoint_url, ...)

Every GET is answered the same way, by `mode`:
- "stall": 206 headers announcing SIZE bytes, the first 1000, then nothing until closed;
- "short": 206 headers announcing SIZE bytes, half of them, then the connection closes;
- "silent": the request is read and never answered.
moto (tests/support/s3_server.py) cannot do these: it always answers in full.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

SIZE = 200_000
MODES = ("stall", "short", "silent")


def _serve(conn: socket.socket, mode: str, stop: threading.Event) -> None:
    with conn:
        conn.recv(65536)  # the GET (no body)
        if mode != "silent":
            head = (
                "HTTP/1.1 206 Partial Content\r\n"
                f"Content-Length: {SIZE}\r\nContent-Range: bytes 0-{SIZE - 1}/{SIZE}\r\n"
                "Content-Type: image/jpeg\r\n\r\n"
            )
            sent = 1000 if mode == "stall" else SIZE // 2
            conn.sendall(head.encode() + b"\xff" * sent)
        if mode != "short":
            stop.wait(60)  # hold the connection open, saying nothing


@contextmanager
def faulty_s3(mode: str) -> Iterator[str]:
    """Serve `mode` on 127.0.0.1 for the `with` block; yields the endpoint URL."""
    if mode not in MODES:
        raise ValueError(f"`mode` must be one of {MODES}. Received: mode={mode!r}")
    stop = threading.Event()
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            threading.Thread(target=_serve, args=(conn, mode, stop), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        server.close()
