"""Fetch an image URL that a stranger sent, safely: `fetch_url(url, config=...)`.

The URL, and every redirect it leads to, is chosen by whoever calls the
function, so the fetcher must never become a way into the network it runs in
(the Lambda runtime API and extensions listen on 127.0.0.1 and 169.254.x.x, the
instance metadata service on 169.254.169.254, a VPC on private ranges). It only
uses the standard library (http.client, socket, ssl, ipaddress), so the serve
install stays small. Each hop:

1. Parse. Schemes http and https only; no `user:password@`; the host is a DNS
   name or an IP literal. A host whose last label is a number is read the way
   inet_aton reads it (`127.1`, `2130706433`, `0x7f000001`, `0177.0.0.1` all
   mean 127.0.0.1), so every spelling of an address is checked as that address.
2. Resolve once (`socket.getaddrinfo`, under the deadline too) and check every
   address: each must be a public unicast address. IPv4 inside IPv6 (`::ffff:a.b.c.d`, NAT64
   `64:ff9b::/96`, 6to4 `2002::/16`) is unwrapped and checked as IPv4.
   Loopback is allowed only with `allow_loopback=True` (local tests, demos).
3. Connect to exactly the checked address: the name is never resolved again,
   so DNS rebinding cannot swap in another one. TLS is verified against the
   host name, which is also the SNI and the Host header. Proxy env vars are
   not read (http.client has no proxy support unless asked).
4. Read under one deadline for the whole fetch (every socket read waits at
   most the time left; a slow drip cannot stretch it) and a byte cap counted on
   the stream (a Content-Length over the cap fails early; a lying one does not
   help). `Accept-Encoding: identity`; a compressed answer is refused.
5. A redirect (301, 302, 303, 307, 308) goes back to step 1, at most
   `max_redirects` times.

Steps 1 and 2's rules (the URL's shape, which addresses are public) are pure
functions in inference/_url_policy.py; this module does the I/O around them.

Errors are the runtime's typed errors: a malformed URL is `InvalidRequestError`,
a refused one `URLNotAllowedError`, network and upstream failures `FetchError`,
the deadline `FetchTimeoutError`, the cap `PayloadTooLargeError`. Their
messages name the host as given and never a resolved address; the details
(address, OS error) are chained as `__cause__` for the log.
"""

from __future__ import annotations

import functools
import http.client
import ipaddress
import math
import os
import re
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from inference._errors import (
    FetchError,
    FetchTimeoutError,
    InvalidRequestError,
    PayloadTooLargeError,
    UnsupportedFormatError,
    URLNotAllowedError,
)
from inference._url_policy import (
    IPAddress,
    Target,
    parse_ipv4_host,
    parse_url,
    refusal_reason,
)
from inference.env import env_flag, env_float, env_int, env_list, env_str

# Re-exported: the URL policy's names, for the tests and older imports.
__all__ = ["FetchConfig", "Target", "fetch_url", "parse_ipv4_host", "parse_url", "refusal_reason"]

# Some image hosts answer 403 to library-default agents (Python-urllib/3.x).
USER_AGENT = "clothing-classifier/0.1 (AWS Lambda image classifier; fetches one image per request)"
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class FetchConfig:
    """Limits of `fetch_url`; `from_env` reads the FETCH_* env vars named in README.

    allowed_hosts: if not empty, the only hosts a URL or redirect may name:
        exact names (`example.com`) or `*.example.com` for its subdomains.
        The address checks still apply to allowed hosts.
    allow_loopback: let 127.0.0.0/8 and ::1 through (local tests and demos
        only; off by default). Every other non-public range stays refused.
    """

    timeout_s: float = 5.0
    connect_timeout_s: float = 2.0
    max_bytes: int = 10 * 1024 * 1024
    max_redirects: int = 3
    allowed_hosts: tuple[str, ...] = ()
    allow_loopback: bool = False
    user_agent: str = USER_AGENT

    def __post_init__(self) -> None:
        for name in ("timeout_s", "connect_timeout_s"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not value > 0 or math.isinf(value):
                raise ValueError(
                    f"`{name}` must be a finite number > 0. Received: {name}={value!r}"
                )
        if not isinstance(self.max_bytes, int) or self.max_bytes < 1:
            raise ValueError(
                f"`max_bytes` must be an int >= 1. Received: max_bytes={self.max_bytes!r}"
            )
        if not isinstance(self.max_redirects, int) or self.max_redirects < 0:
            raise ValueError(
                "`max_redirects` must be an int >= 0. "
                f"Received: max_redirects={self.max_redirects!r}"
            )
        for pattern in self.allowed_hosts:
            if not re.fullmatch(r"(\*\.)?[a-z0-9_.-]+", pattern) or pattern != pattern.strip("."):
                raise ValueError(
                    "`allowed_hosts` entries must be lower-case host names or `*.domain`. "
                    f"Received: {pattern!r}"
                )
        if not self.user_agent or any(c in self.user_agent for c in "\r\n"):
            raise ValueError(
                f"`user_agent` must be one non-empty line. Received: {self.user_agent!r}"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ, **overrides: Any) -> FetchConfig:
        """FETCH_TIMEOUT_S, FETCH_CONNECT_TIMEOUT_S, FETCH_MAX_BYTES, FETCH_MAX_REDIRECTS,
        FETCH_ALLOWED_HOSTS (comma-separated), FETCH_ALLOW_LOOPBACK (1/true/yes),
        FETCH_USER_AGENT. Unset or empty means the default; `overrides` that are
        not None win.

        Raises:
            ValueError: a variable does not parse (the message names it and
                echoes its value), or a value fails `__post_init__`'s checks.
        """
        hosts = tuple(h.lower().rstrip(".") for h in env_list(environ, "FETCH_ALLOWED_HOSTS"))
        user_agent = env_str(environ, "FETCH_USER_AGENT")
        # Checked here as well as in __post_init__, so the message names the variable.
        for name, field_values, rule in (
            (
                "FETCH_ALLOWED_HOSTS",
                {"allowed_hosts": hosts},
                "comma-separated host names or `*.domain`",
            ),
            ("FETCH_USER_AGENT", {"user_agent": user_agent or USER_AGENT}, "one line"),
        ):
            try:
                cls(**field_values)
            except ValueError:
                raw = environ.get(name, "").strip()
                raise ValueError(
                    f"Env var {name} must be {rule}. Received: {name}={raw!r}"
                ) from None
        values: dict[str, Any] = {
            "timeout_s": env_float(environ, "FETCH_TIMEOUT_S", positive=True),
            "connect_timeout_s": env_float(environ, "FETCH_CONNECT_TIMEOUT_S", positive=True),
            "max_bytes": env_int(environ, "FETCH_MAX_BYTES", minimum=1),
            "max_redirects": env_int(environ, "FETCH_MAX_REDIRECTS", minimum=0),
            "allowed_hosts": hosts,
            "allow_loopback": env_flag(environ, "FETCH_ALLOW_LOOPBACK"),
            "user_agent": user_agent,
        }
        values.update(overrides)
        return cls(**{k: v for k, v in values.items() if v is not None})


# ---------------------------------------------------------------------------
# Step 2: resolve once and check every address (inference/_url_policy.py).


def _resolve(
    target: Target, *, config: FetchConfig, deadline: float
) -> list[tuple[int, IPAddress]]:
    """-> [(address family, address)], all checked; one lookup per hop."""
    if target.address is not None:
        candidates: list[IPAddress] = [target.address]
    else:
        infos = _getaddrinfo(target, deadline=deadline)
        candidates = []
        for family, _, _, _, sockaddr in infos:
            if family not in (socket.AF_INET, socket.AF_INET6):
                continue
            address = ipaddress.ip_address(str(sockaddr[0]))
            if address not in candidates:
                candidates.append(address)
        if not candidates:
            raise FetchError(f"Could not resolve host {target.host!r}.")
        # IPv4 first: Lambda functions outside a dual-stack VPC have no IPv6 route.
        candidates.sort(key=lambda a: a.version)
    for address in candidates:
        reason = refusal_reason(address, allow_loopback=config.allow_loopback)
        if reason is not None:
            what = (
                "The URL names an address that"
                if target.address is not None
                else f"Host {target.host!r} resolves to an address that"
            )
            raise URLNotAllowedError(
                f"{what} is not public (loopback, private, link-local or reserved); "
                "only public internet hosts can be fetched."
            ) from FetchDetail(f"{target.host} -> {address} {reason}")
    return [(socket.AF_INET if a.version == 4 else socket.AF_INET6, a) for a in candidates]


def _getaddrinfo(target: Target, *, deadline: float) -> list[Any]:
    """`socket.getaddrinfo` under the deadline. The system resolver has no
    timeout argument, so it runs in a daemon thread that is left behind if the
    deadline passes first (a slow DNS server must not stretch the fetch)."""
    outcome: list[Any] = []
    done = threading.Event()

    def lookup() -> None:
        try:
            outcome.append(
                socket.getaddrinfo(
                    target.host, target.port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
                )
            )
        except Exception as exc:  # gaierror, UnicodeError, ...: reported below
            outcome.append(exc)
        finally:
            done.set()

    threading.Thread(target=lookup, name="fetch-dns", daemon=True).start()
    if not done.wait(_time_left(deadline)):
        raise TimeoutError(f"DNS lookup of {target.host} timed out")
    if isinstance(outcome[0], Exception):
        raise FetchError(f"Could not resolve host {target.host!r}.") from outcome[0]
    return list(outcome[0])


class FetchDetail(Exception):
    """A detail for the log (chained as `__cause__`), never for the response."""


# ---------------------------------------------------------------------------
# Steps 3 and 4: connect to the checked address; read under the deadline.


def _time_left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("fetch deadline passed")
    return left


class _DeadlineSocket(socket.socket):
    """A socket whose every read waits at most until `deadline` (monotonic)."""

    deadline: float = math.inf

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        self.settimeout(_time_left(self.deadline))
        return super().recv_into(buffer, nbytes, flags)


class _DeadlineSSLSocket(ssl.SSLSocket):
    deadline: float = math.inf

    def recv_into(self, buffer: Any, nbytes: int | None = None, flags: int = 0) -> int:
        self.settimeout(_time_left(self.deadline))
        return super().recv_into(buffer, nbytes, flags)


@functools.cache
def _tls_context() -> ssl.SSLContext:
    context = ssl.create_default_context()  # verifies certificates and host names
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.sslsocket_class = _DeadlineSSLSocket
    return context


def _connect(
    target: Target, addresses: list[tuple[int, IPAddress]], *, config: FetchConfig, deadline: float
) -> socket.socket:
    errors: list[str] = []
    for family, address in addresses:
        try:
            sock = _DeadlineSocket(family, socket.SOCK_STREAM)
        except OSError as exc:  # e.g. no IPv6 in this sandbox
            errors.append(f"{address}: {exc}")
            continue
        try:
            sock.deadline = deadline
            sock.settimeout(min(config.connect_timeout_s, _time_left(deadline)))
            sock.connect((str(address), target.port))
        except TimeoutError as exc:
            sock.close()
            errors.append(f"{address}: timed out")
            if time.monotonic() >= deadline:
                raise FetchTimeoutError(f"Timed out connecting to {target.host!r}.") from exc
            continue
        except OSError as exc:
            sock.close()
            errors.append(f"{address}: {exc}")
            continue
        if target.scheme == "http":
            return sock
        tls: ssl.SSLSocket | None = None
        try:
            sock.settimeout(_time_left(deadline))
            tls = _tls_context().wrap_socket(
                sock, server_hostname=target.host, do_handshake_on_connect=False
            )
            assert isinstance(tls, _DeadlineSSLSocket)
            tls.deadline = deadline
            tls.do_handshake()
            return tls
        except TimeoutError as exc:
            (tls or sock).close()
            raise FetchTimeoutError(
                f"Timed out in the TLS handshake with {target.host!r}."
            ) from exc
        except OSError as exc:  # ssl.SSLError and ssl.CertificateError are OSErrors
            (tls or sock).close()
            raise FetchError(f"TLS with {target.host!r} failed (certificate or protocol).") from exc
    timed_out = all(e.endswith("timed out") for e in errors)
    error = FetchTimeoutError if timed_out else FetchError
    raise error(f"Could not connect to {target.host!r}.") from FetchDetail("; ".join(errors))


def _request(
    target: Target, sock: socket.socket, *, config: FetchConfig
) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection(target.host, target.port)
    conn.sock = sock  # already connected to the checked address; never reconnects
    conn.putrequest("GET", target.path, skip_host=True, skip_accept_encoding=True)
    conn.putheader("Host", target.host_header)
    conn.putheader("User-Agent", config.user_agent)
    conn.putheader("Accept", "image/*, */*;q=0.5")
    conn.putheader("Accept-Encoding", "identity")
    conn.putheader("Connection", "close")
    conn.endheaders()
    return conn.getresponse()


def _read_body(target: Target, response: http.client.HTTPResponse, *, max_bytes: int) -> bytes:
    encoding = (response.getheader("Content-Encoding") or "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise UnsupportedFormatError(
            f"The image from {target.host!r} came with Content-Encoding {encoding!r}; "
            "only uncompressed (identity) answers are accepted."
        )
    declared = _content_length(response)
    if declared is not None and declared > max_bytes:
        raise PayloadTooLargeError(
            f"The image from {target.host!r} is {declared} bytes, over the limit of {max_bytes}."
        )
    chunks: list[bytes] = []
    total = 0
    while chunk := response.read1(_CHUNK):
        total += len(chunk)
        if total > max_bytes:
            raise PayloadTooLargeError(
                f"The image from {target.host!r} is over the limit of {max_bytes} bytes."
            )
        chunks.append(chunk)
    if declared is not None and total < declared:
        raise FetchError(
            f"The connection to {target.host!r} closed after {total} of {declared} bytes."
        )
    return b"".join(chunks)


def _content_length(response: http.client.HTTPResponse) -> int | None:
    raw = response.getheader("Content-Length")
    if raw is None or response.getheader("Transfer-Encoding"):
        return None
    try:
        value = int(raw.strip())
    except ValueError:
        return None
    return value if value >= 0 else None


def _get(target: Target, *, config: FetchConfig, deadline: float) -> tuple[int, str | None, bytes]:
    """One hop: -> (status, Location header, body); the body only for 200."""
    addresses = _resolve(target, config=config, deadline=deadline)
    sock = _connect(target, addresses, config=config, deadline=deadline)
    try:
        response = _request(target, sock, config=config)
        try:
            if response.status in REDIRECT_STATUSES:
                return response.status, response.getheader("Location"), b""
            if response.status != 200:
                raise FetchError(f"{target.host!r} answered HTTP {response.status}.")
            return 200, None, _read_body(target, response, max_bytes=config.max_bytes)
        finally:
            response.close()
    finally:
        sock.close()


def fetch_url(
    url: str, *, config: FetchConfig | None = None, deadline: float | None = None
) -> bytes:
    """GET `url` (following up to `config.max_redirects` redirects); -> the body.

    Every hop is checked before connecting: http/https only, no user info, the
    host in `config.allowed_hosts` when set, and every address it resolves to
    public (see `refusal_reason`); the connection goes to the checked address.

    Args:
        url: an absolute http(s) URL, as a stranger sent it.
        config: limits (timeouts in seconds, `max_bytes`, redirects, allowed
            hosts); None: `FetchConfig()`.
        deadline: a `time.monotonic()` value in seconds; the fetch ends by the
            earlier of it and `config.timeout_s` from now.

    Returns:
        The body of the final 200 answer, at most `config.max_bytes` bytes;
        its format is not checked here (that is `decode_image`'s job).

    Raises:
        InvalidRequestError: `url` is not a string, is empty or malformed
            (bad host, port 0, control characters).
        URLNotAllowedError: scheme not http(s), user info, a host outside
            `allowed_hosts`, or an address that is not public (loopback,
            private, link-local, reserved), on the first hop or a redirect.
        PayloadTooLargeError: the body (declared or read) is over `max_bytes`.
        UnsupportedFormatError: the answer is compressed (Content-Encoding).
        FetchTimeoutError: connecting or the whole fetch passed its deadline.
        FetchError: DNS failure, connection or TLS failure, an HTTP status other
            than 200 or a redirect, a redirect without or with a bad Location,
            too many redirects, or a body cut short.
    """
    config = FetchConfig() if config is None else config
    end = time.monotonic() + config.timeout_s
    end = end if deadline is None else min(end, deadline)
    current = url
    for hop in range(config.max_redirects + 1):
        try:
            target = parse_url(current, allowed_hosts=config.allowed_hosts)
        except InvalidRequestError as exc:
            if hop == 0:
                raise
            raise FetchError("The image host redirected to an invalid URL.") from exc
        try:
            _time_left(end)
            status, location, body = _get(target, config=config, deadline=end)
        except TimeoutError as exc:
            raise FetchTimeoutError(
                f"Fetching the image from {target.host!r} took longer than the deadline "
                f"({config.timeout_s:g} s at most)."
            ) from exc
        except (OSError, http.client.HTTPException) as exc:
            raise FetchError(f"Fetching the image from {target.host!r} failed.") from exc
        if status == 200:
            return body
        if not location:
            raise FetchError(f"{target.host!r} answered a redirect ({status}) without a Location.")
        if hop == config.max_redirects:
            break
        try:
            current = urllib.parse.urljoin(target.url, _header_text(location).strip())
        except ValueError as exc:  # e.g. "http://[::1"
            raise FetchError("The image host redirected to an invalid URL.") from exc
    raise FetchError(f"Too many redirects (more than {config.max_redirects}).")


def _header_text(value: str) -> str:
    """A header as the server meant it: http.client decodes header bytes as
    Latin-1, servers send UTF-8 (`requests.sessions.get_redirect_target` re-decodes
    a Location the same way); bytes that are not UTF-8 stay as they were."""
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return value
