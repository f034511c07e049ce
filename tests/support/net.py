"""Test doubles for the network: a fake DNS, a connection guard, a hostile image server.

No test here sends a packet anywhere but 127.0.0.1:

- `NetGuard` replaces `socket.getaddrinfo` with a table of fake names and
  wraps `socket.socket.connect`: every connection attempt is recorded, and only
  loopback ones go through (others fail as if refused, without a packet sent).
  The fetcher connects through `socket.socket`, so the record is complete.
- `ImageServer` is a threaded HTTP server on 127.0.0.1 whose paths behave like
  good and bad image hosts (redirect chains, slow drips, oversize bodies, ...).
"""

from __future__ import annotations

import gzip
import io
import ipaddress
import json
import socket
import ssl
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

PUBLIC_IP = "93.184.215.14"  # a public address; the guard never lets a packet reach it


def jpeg_bytes(
    size: tuple[int, int] = (96, 80), color: tuple[int, int, int] = (40, 200, 60)
) -> bytes:
    rng = np.random.default_rng(0)
    pixels = np.clip(np.array(color) + rng.normal(0, 20, (size[1], size[0], 3)), 0, 255)
    buf = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8), "RGB").save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def png_bomb_header(width: int = 100_000, height: int = 100_000) -> bytes:
    """A PNG whose header claims width x height pixels (10 G for the default)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))


class NetGuard:
    """Fake DNS + a record of every connect(); see the module docstring."""

    def __init__(self) -> None:
        self.names: dict[str, list[str] | Callable[[], list[str]]] = {
            "localhost": ["127.0.0.1", "::1"],
            "images.test": ["127.0.0.1"],
            "public.test": [PUBLIC_IP],
            "metadata.test": ["169.254.169.254"],
            "private.test": ["10.1.2.3"],
            "mixed.test": [PUBLIC_IP, "10.1.2.3"],
            "mapped.test": ["::ffff:169.254.169.254"],
        }
        self.lookups: list[str] = []
        self.connections: list[tuple[str, int]] = []
        self._real_connect = socket.socket.connect

    def getaddrinfo(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        self.lookups.append(str(host))
        entry = self.names.get(str(host).lower())
        if entry is None:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        addresses = entry() if callable(entry) else entry
        out: list[Any] = []
        for address in addresses:
            if ":" in address:
                out.append((socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, int(port), 0, 0)))
            else:
                out.append((socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, int(port))))
        return out

    def connect(self, sock: socket.socket, address: Any) -> None:
        host, port = str(address[0]), int(address[1])
        self.connections.append((host, port))
        if not ipaddress.ip_address(host.split("%")[0]).is_loopback:
            raise ConnectionRefusedError(111, "blocked by the test's network guard")
        self._real_connect(sock, address)

    @property
    def hosts_connected(self) -> set[str]:
        return {host for host, _ in self.connections}

    def assert_no_connection_except(self, *allowed: str) -> None:
        unexpected = self.hosts_connected - set(allowed)
        assert not unexpected, f"connections opened to {unexpected}: {self.connections}"


@contextmanager
def net_guard(monkeypatch: pytest.MonkeyPatch) -> Iterator[NetGuard]:
    guard = NetGuard()
    monkeypatch.setattr(socket, "getaddrinfo", guard.getaddrinfo)
    monkeypatch.setattr(
        socket.socket, "connect", lambda sock, address: guard.connect(sock, address)
    )
    monkeypatch.setattr(
        socket.socket, "connect_ex", lambda s, a: pytest.fail(f"connect_ex({a}) called")
    )
    yield guard


def make_tls_files(directory: Path, host: str = "images.test") -> tuple[Path, Path, Path]:
    """A test CA and a server certificate for `host` signed by it (needs `openssl`).

    -> (ca.pem, server.pem, server.key)."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=directory)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=Test CA",
            "-keyout", "ca.key", "-out", "ca.pem")  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={host}",
            "-keyout", "server.key", "-out", "server.csr")  # fmt: skip
    (directory / "san.ext").write_text(f"subjectAltName=DNS:{host}\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-extfile", "san.ext",
            "-out", "server.pem")  # fmt: skip
    return directory / "ca.pem", directory / "server.pem", directory / "server.key"


# ---------------------------------------------------------------------------


JPEG = jpeg_bytes()
BIG = 200_000  # bytes in the oversize answers; tests set max_bytes below it


class ImageServer:
    """Routes (path -> behaviour) of a hostile image host on 127.0.0.1."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.requests: list[dict[str, Any]] = []
        self.scheme = "https" if tls else "http"
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._server.daemon_threads = True
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"

    def start(self) -> ImageServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def count(self, path: str) -> int:
        return sum(1 for r in self.requests if r["path"] == path)


def _make_handler(server: ImageServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def send(self, status: int, body: bytes = b"", **headers: Any) -> None:
            self.send_response(status)
            headers.setdefault("Content-Type", "image/jpeg")
            if "Content_Length" not in headers:
                headers["Content_Length"] = len(body)
            for key, value in headers.items():
                if value is not None:
                    self.send_header(key.replace("_", "-"), str(value))
            self.end_headers()
            self.wfile.write(body)

        def drip(self, data: bytes, interval: float, *, limit_s: float = 5.0) -> None:
            end = time.monotonic() + limit_s
            try:
                for i in range(len(data)):
                    if time.monotonic() > end:
                        break
                    self.wfile.write(data[i : i + 1])
                    self.wfile.flush()
                    time.sleep(interval)
            except OSError:
                pass  # the client gave up: the point of the test
            self.close_connection = True

        def do_GET(self) -> None:
            server.requests.append({"path": self.path, "headers": dict(self.headers.items())})
            path, port = self.path, server.port
            if path in ("/pants.jpg", "/image.png", "/photo"):
                self.send(200, JPEG)
            elif path.startswith("/redirect/"):
                n = int(path.rsplit("/", 1)[1])
                self.send(302, Location="/pants.jpg" if n == 0 else f"/redirect/{n - 1}")
            elif path == "/loop":
                self.send(302, Location=f"http://127.0.0.1:{port}/loop")
            elif path.startswith("/to?"):
                self.send(302, Location=urllib.parse.unquote(path.split("?", 1)[1]))
            elif path == "/no-location":
                self.send(302)
            elif path.startswith("/status/"):
                self.send(int(path.rsplit("/", 1)[1]), b"<html>no</html>", Content_Type="text/html")
            elif path == "/html.jpg":
                self.send(
                    200,
                    b"<!doctype html><html><body>an image!</body></html>",
                    Content_Type="text/html",
                )
            elif path == "/empty.jpg":
                self.send(200, b"")
            elif path == "/gzip":
                self.send(200, gzip.compress(JPEG), Content_Encoding="gzip")
            elif path == "/file.gz":
                self.send(200, gzip.compress(JPEG), Content_Type="application/gzip")
            elif path == "/bomb.png":
                self.send(200, png_bomb_header(), Content_Type="image/png")
            elif path == "/truncated.jpg":
                self.send(200, JPEG[: len(JPEG) // 3])
            elif path == "/text.jpg":
                self.send(200, b"%PDF-1.4 not an image at all", Content_Type="image/jpeg")
            elif path == "/big":
                self.send(200, b"\xff\xd8\xff" + b"\0" * BIG)
            elif (
                path == "/big-lying-length"
            ):  # says small, sends a lot: only the small part is read
                self.send(200, JPEG + b"\0" * BIG, Content_Length=len(JPEG))
            elif path == "/big-no-length":
                self.send(200, Content_Length=None)
                self.close_connection = True
                try:
                    for _ in range(BIG // 10_000 + 2):
                        self.wfile.write(b"\0" * 10_000)
                except OSError:
                    pass
            elif path == "/big-chunked":
                self.send(200, Content_Length=None, Transfer_Encoding="chunked")
                try:
                    for _ in range(BIG // 10_000 + 2):
                        self.wfile.write(b"2710\r\n" + b"\0" * 10_000 + b"\r\n")
                    self.wfile.write(b"0\r\n\r\n")
                except OSError:
                    pass
            elif path == "/short":  # says 1000 bytes, sends 10 and hangs up
                self.send(200, Content_Length=1000)
                self.wfile.write(JPEG[:10])
                self.close_connection = True
            elif path == "/drip":  # headers at once, then one byte every 0.1 s
                self.send(200, Content_Length=len(JPEG))
                self.drip(JPEG, 0.1)
            elif path == "/drip-headers":
                self.drip(b"HTTP/1.1 200 OK\r\n" + b"X-Slow: " + b"a" * 200 + b"\r\n", 0.1)
            elif path == "/slow":  # nothing for 3 s
                time.sleep(3)
                self.send(200, JPEG)
            elif path in ("/img/photo%20of%20pants.jpg", "/img/hosen-%C3%A4.jpg"):
                self.send(200, JPEG)  # names a browser percent-encodes
            elif path == "/redirect-space":  # a Location as some servers send it: unencoded
                self.send(302, Location="/img/photo of pants.jpg")
            elif path == "/redirect-utf8":  # a Location holding raw UTF-8 bytes
                self.send(302, Location="/img/hosen-ä.jpg".encode().decode("latin-1"))
            elif path == "/echo-headers":
                self.send(
                    200,
                    json.dumps(dict(self.headers.items())).encode(),
                    Content_Type="application/json",
                )
            else:
                self.send(404, b"not found", Content_Type="text/plain")

    return Handler
