"""inference._fetch: the URL fetcher that strangers drive (hostile-input suite).

Every test runs under a network guard (tests/support/net.py): fake DNS, and a record
of every connect(), of which only loopback ones go through. Each refusal case
asserts the error code *and* that no connection was opened to a refused address.
"""

from __future__ import annotations

import ipaddress
import shutil
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from inference import FetchConfig, _fetch, fetch_url
from inference._errors import InferenceError
from inference._fetch import _tls_context, parse_ipv4_host, refusal_reason
from tests.support.net import BIG, JPEG, PUBLIC_IP, ImageServer, NetGuard, make_tls_files, net_guard

LOOPBACK = FetchConfig(allow_loopback=True)
STRICT = FetchConfig()


@pytest.fixture(scope="module")
def server() -> Iterator[ImageServer]:
    srv = ImageServer().start()
    yield srv
    srv.close()


@pytest.fixture
def net(monkeypatch: pytest.MonkeyPatch) -> Iterator[NetGuard]:
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")  # must be ignored
    with net_guard(monkeypatch) as guard:
        yield guard


def error_code(url: str, config: FetchConfig, **kwargs: float) -> str:
    with pytest.raises(InferenceError) as info:
        fetch_url(url, config=config, **kwargs)
    return info.value.code


# ---------------------------------------------------------------------------
# Refused addresses, in every spelling: no lookup needed, no connection opened.

REFUSED_LITERALS = [
    "http://127.0.0.1/",
    "http://127.1/",
    "http://127.0.1/",
    "http://2130706433/",
    "http://0x7f000001/",
    "http://0X7F.0.0.1/",
    "http://0177.0.0.1/",
    "http://017700000001/",
    "http://127.0.0.1./",
    "http://１２７.０.０.１/",  # full-width digits, mapped by IDNA
    "http://[::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:7f00:1]/",
    "http://[0:0:0:0:0:ffff:127.0.0.1]/",
    "http://[64:ff9b::127.0.0.1]/",  # NAT64 of loopback
    "http://[64:ff9b::a9fe:a9fe]/",  # NAT64 of 169.254.169.254
    "http://[2002:a9fe:a9fe::]/",  # 6to4 of 169.254.169.254
    "http://[::127.0.0.1]/",  # IPv4-compatible (deprecated)
    "http://0.0.0.0/",
    "http://0/",
    "http://[::]/",
    "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "http://169.254.170.2/v2/credentials",  # container credentials
    "http://[fd00:ec2::254]/latest/meta-data/",  # IMDS over IPv6
    "http://[::ffff:169.254.169.254]/",
    "http://127.0.0.1:9001/2018-06-01/runtime/invocation/next",  # the Lambda runtime API
    "http://10.0.0.1/",
    "http://172.16.0.1/",
    "http://172.31.255.255/",
    "http://192.168.1.1/",
    "http://100.64.0.1/",  # CGNAT
    "http://192.0.0.170/",
    "http://198.18.0.1/",
    "http://224.0.0.1/",
    "http://[ff02::1]/",
    "http://240.0.0.1/",
    "http://255.255.255.255/",
    "http://[fe80::1]/",
    "http://[fc00::1]/",
    "https://127.0.0.1:443/",
]


@pytest.mark.parametrize("url", REFUSED_LITERALS)
def test_refused_address_spellings(net: NetGuard, url: str) -> None:
    assert error_code(url, STRICT) == "URL_NOT_ALLOWED"
    assert net.connections == []
    assert net.lookups == []  # numeric hosts are never sent to DNS


@pytest.mark.parametrize(
    "url",
    [
        "http://0.0.0.0/",
        "http://169.254.169.254/",
        "http://10.0.0.1/",
        "http://[64:ff9b::a9fe:a9fe]/",
        "http://[fe80::1]/",
        "http://metadata.test/",
        "http://private.test/",
    ],
)
def test_loopback_opt_in_keeps_the_rest_refused(net: NetGuard, url: str) -> None:
    assert error_code(url, LOOPBACK) == "URL_NOT_ALLOWED"
    assert net.connections == []


@pytest.mark.parametrize(
    "host",
    ["localhost", "metadata.test", "private.test", "mixed.test", "mapped.test", "LOCALHOST."],
)
def test_names_resolving_to_refused_addresses(net: NetGuard, host: str) -> None:
    assert error_code(f"http://{host}/x.jpg", STRICT) == "URL_NOT_ALLOWED"
    assert net.connections == []
    assert len(net.lookups) == 1


def test_refusal_message_has_no_resolved_address(net: NetGuard) -> None:
    with pytest.raises(InferenceError) as info:
        fetch_url("http://metadata.test/latest", config=STRICT)
    assert "169.254" not in str(info.value)
    assert "169.254.169.254" in str(info.value.__cause__)  # for the log


# ---------------------------------------------------------------------------
# Schemes, user@host tricks, malformed URLs.


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("file:///etc/passwd", "URL_NOT_ALLOWED"),
        ("file://localhost/proc/self/environ", "URL_NOT_ALLOWED"),
        ("ftp://public.test/x.jpg", "URL_NOT_ALLOWED"),
        ("data:image/jpeg;base64,/9j/4AAQ", "URL_NOT_ALLOWED"),
        ("gopher://127.0.0.1:25/_HELO", "URL_NOT_ALLOWED"),
        ("dict://127.0.0.1:11211/stat", "URL_NOT_ALLOWED"),
        ("javascript:alert(1)", "URL_NOT_ALLOWED"),
        ("//public.test/x.jpg", "URL_NOT_ALLOWED"),
        ("public.test/x.jpg", "URL_NOT_ALLOWED"),
        ("http://public.test@127.0.0.1/", "URL_NOT_ALLOWED"),
        ("http://user:pass@public.test/x.jpg", "URL_NOT_ALLOWED"),
        ("http://@public.test/x.jpg", "URL_NOT_ALLOWED"),
        ("http://public.test%40127.0.0.1/", "INVALID_REQUEST"),
        ("http://127.0.0.1#@public.test/", "URL_NOT_ALLOWED"),
        ("http://127.0.0.1?@public.test/", "URL_NOT_ALLOWED"),
        ("http://public.test\\@127.0.0.1/", "INVALID_REQUEST"),
        ("http://public.test /x.jpg", "INVALID_REQUEST"),
        ("http://public.test/x\r\nHost: evil", "INVALID_REQUEST"),
        ("http://", "INVALID_REQUEST"),
        ("", "INVALID_REQUEST"),
        ("http://[::1/", "INVALID_REQUEST"),
        ("http://[not-ip]/", "INVALID_REQUEST"),
        ("http://[fe80::1%25eth0]/", "URL_NOT_ALLOWED"),
        ("http://public.test:0/", "INVALID_REQUEST"),
        ("http://public.test:99999/", "INVALID_REQUEST"),
        ("http://1.2.3.4.5/", "INVALID_REQUEST"),
        ("http://256.1.1.1/", "INVALID_REQUEST"),
        ("http://0x1ffffffff/", "INVALID_REQUEST"),
        ("http://09.1.1.1/", "INVALID_REQUEST"),
        ("http://a..b/", "INVALID_REQUEST"),
        ("http://" + "a" * 64 + ".test/", "INVALID_REQUEST"),
        ("http://public.test/" + "a" * 5000, "INVALID_REQUEST"),
    ],
)
def test_refused_urls(net: NetGuard, url: str, code: str) -> None:
    assert error_code(url, STRICT) == code
    assert net.connections == []


def test_url_must_be_a_string(net: NetGuard) -> None:
    assert error_code(123, STRICT) == "INVALID_REQUEST"  # type: ignore[arg-type]


# ---------------------------------------------------------------------------
# Public addresses are allowed (the guard stops the packet; the attempt shows).


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("http://public.test/x.jpg", PUBLIC_IP),
        (f"http://{PUBLIC_IP}/x.jpg", PUBLIC_IP),
        ("http://1572394766/x.jpg", PUBLIC_IP),  # the same address as one number
        ("http://[64:ff9b::5db8:d70e]/x.jpg", "64:ff9b::5db8:d70e"),  # NAT64 of a public one
        ("https://public.test/x.jpg", PUBLIC_IP),
    ],
)
def test_public_addresses_are_connected_to(net: NetGuard, url: str, address: str) -> None:
    assert error_code(url, STRICT) == "FETCH_FAILED"  # refused by the guard, not the fetcher
    assert net.hosts_connected == {address}


def test_dns_rebinding_cannot_swap_the_address(net: NetGuard) -> None:
    answers = iter([[PUBLIC_IP]])
    net.names["rebind.test"] = lambda: next(answers, ["169.254.169.254"])
    assert error_code("http://rebind.test/x.jpg", STRICT) == "FETCH_FAILED"
    assert net.lookups == ["rebind.test"]  # resolved once
    assert net.hosts_connected == {PUBLIC_IP}  # and connected to what was checked


def test_dns_rebinding_with_loopback_allowed(net: NetGuard, server: ImageServer) -> None:
    answers = iter([["127.0.0.1"]])
    net.names["rebind.test"] = lambda: next(answers, ["169.254.169.254"])
    assert fetch_url(server.url("/pants.jpg", host="rebind.test"), config=LOOPBACK) == JPEG
    net.assert_no_connection_except("127.0.0.1")


def test_unknown_host_is_fetch_failed(net: NetGuard) -> None:
    assert error_code("http://no-such-host.test/x.jpg", STRICT) == "FETCH_FAILED"
    assert net.connections == []


def test_slow_dns_counts_against_the_deadline(net: NetGuard) -> None:
    def slow() -> list[str]:
        time.sleep(2)
        return [PUBLIC_IP]

    net.names["slow-dns.test"] = slow
    start = time.monotonic()
    code = error_code("http://slow-dns.test/", FetchConfig(timeout_s=0.3))
    assert code == "FETCH_TIMEOUT"
    assert time.monotonic() - start < 1.0


# ---------------------------------------------------------------------------
# Against the local image server (loopback opted in).


def test_fetches_an_image(net: NetGuard, server: ImageServer) -> None:
    assert fetch_url(server.url("/pants.jpg"), config=LOOPBACK) == JPEG
    assert fetch_url(server.url("/pants.jpg", host="images.test"), config=LOOPBACK) == JPEG
    assert fetch_url(server.url("/pants.jpg", host="localhost"), config=LOOPBACK) == JPEG
    net.assert_no_connection_except("127.0.0.1", "::1")


def test_request_headers(net: NetGuard, server: ImageServer) -> None:
    import json

    headers = json.loads(
        fetch_url(server.url("/echo-headers", host="images.test"), config=LOOPBACK)
    )
    assert headers["Host"] == f"images.test:{server.port}"
    assert headers["Accept-Encoding"] == "identity"
    assert headers["User-Agent"] == LOOPBACK.user_agent
    assert "python" not in headers["User-Agent"].lower()
    assert "Proxy-Authorization" not in headers


def test_loopback_is_refused_by_default(net: NetGuard, server: ImageServer) -> None:
    assert error_code(server.url("/pants.jpg"), STRICT) == "URL_NOT_ALLOWED"
    assert error_code(server.url("/pants.jpg", host="images.test"), STRICT) == "URL_NOT_ALLOWED"
    assert net.connections == []


@pytest.mark.parametrize("hops", [1, 3])
def test_redirects_within_the_limit(net: NetGuard, server: ImageServer, hops: int) -> None:
    assert fetch_url(server.url(f"/redirect/{hops - 1}"), config=LOOPBACK) == JPEG


@pytest.mark.parametrize(
    ("location", "code"),
    [
        ("http://169.254.169.254/latest/meta-data/", "URL_NOT_ALLOWED"),
        ("http://[::ffff:a9fe:a9fe]/", "URL_NOT_ALLOWED"),
        ("http://metadata.test/", "URL_NOT_ALLOWED"),
        ("http://10.0.0.1/", "URL_NOT_ALLOWED"),
        ("http://0.0.0.0:9001/", "URL_NOT_ALLOWED"),
        ("file:///etc/passwd", "URL_NOT_ALLOWED"),
        ("gopher://127.0.0.1:25/", "URL_NOT_ALLOWED"),
        ("http://user@public.test/", "URL_NOT_ALLOWED"),
        ("http://[::1", "FETCH_FAILED"),
    ],
)
def test_redirects_are_checked_again(
    net: NetGuard, server: ImageServer, location: str, code: str
) -> None:
    assert error_code(server.url(f"/to?{location}"), LOOPBACK) == code
    net.assert_no_connection_except("127.0.0.1")


def test_redirect_from_public_host_to_loopback(
    net: NetGuard, server: ImageServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A public host (its hop faked: the guard lets no packet out) redirects to
    # loopback spelled as one number; loopback is not opted in.
    real_get = _fetch._get
    location = f"http://2130706433:{server.port}/pants.jpg"

    def get(target: _fetch.Target, **kwargs: Any) -> tuple[int, str | None, bytes]:
        if target.host == "public.test":
            return 302, location, b""
        return real_get(target, **kwargs)

    monkeypatch.setattr(_fetch, "_get", get)
    assert error_code("http://public.test/x.jpg", STRICT) == "URL_NOT_ALLOWED"
    assert net.connections == []


def test_too_many_redirects(net: NetGuard, server: ImageServer) -> None:
    assert error_code(server.url("/redirect/3"), LOOPBACK) == "FETCH_FAILED"  # 4 hops
    before = server.count("/loop")
    assert error_code(server.url("/loop"), LOOPBACK) == "FETCH_FAILED"
    assert server.count("/loop") - before == LOOPBACK.max_redirects + 1
    assert error_code(
        server.url("/redirect/0"), FetchConfig(allow_loopback=True, max_redirects=0)
    ) == ("FETCH_FAILED")


def test_redirect_without_location(net: NetGuard, server: ImageServer) -> None:
    assert error_code(server.url("/no-location"), LOOPBACK) == "FETCH_FAILED"


@pytest.mark.parametrize("status", [403, 404, 500, 503, 204, 206])
def test_upstream_status(net: NetGuard, server: ImageServer, status: int) -> None:
    assert error_code(server.url(f"/status/{status}"), LOOPBACK) == "FETCH_FAILED"


def test_message_names_the_host_not_the_address(net: NetGuard, server: ImageServer) -> None:
    with pytest.raises(InferenceError) as info:
        fetch_url(server.url("/status/403", host="images.test"), config=LOOPBACK)
    assert "images.test" in str(info.value) and "127.0.0.1" not in str(info.value)


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/big", "PAYLOAD_TOO_LARGE"),  # Content-Length over the cap
        ("/big-no-length", "PAYLOAD_TOO_LARGE"),  # counted on the stream
        ("/big-chunked", "PAYLOAD_TOO_LARGE"),
        ("/gzip", "UNSUPPORTED_FORMAT"),  # Content-Encoding: gzip despite identity
        ("/short", "FETCH_FAILED"),  # connection closed before Content-Length
    ],
)
def test_body_limits(net: NetGuard, server: ImageServer, path: str, code: str) -> None:
    config = FetchConfig(allow_loopback=True, max_bytes=BIG // 2)
    assert error_code(server.url(path), config) == code


def test_lying_content_length_reads_only_what_it_says(net: NetGuard, server: ImageServer) -> None:
    config = FetchConfig(allow_loopback=True, max_bytes=BIG // 2)
    assert fetch_url(server.url("/big-lying-length"), config=config) == JPEG


def test_cap_is_exact(net: NetGuard, server: ImageServer) -> None:
    assert (
        fetch_url(
            server.url("/pants.jpg"), config=FetchConfig(allow_loopback=True, max_bytes=len(JPEG))
        )
        == JPEG
    )
    config = FetchConfig(allow_loopback=True, max_bytes=len(JPEG) - 1)
    assert error_code(server.url("/pants.jpg"), config) == "PAYLOAD_TOO_LARGE"


@pytest.mark.parametrize("path", ["/drip", "/drip-headers", "/slow"])
def test_total_deadline(net: NetGuard, server: ImageServer, path: str) -> None:
    config = FetchConfig(allow_loopback=True, timeout_s=0.5)
    start = time.monotonic()
    assert error_code(server.url(path), config) == "FETCH_TIMEOUT"
    assert (
        time.monotonic() - start < 0.5 + 0.4
    )  # each drip byte came well within any per-read timeout


def test_caller_deadline_wins(net: NetGuard, server: ImageServer) -> None:
    assert (
        error_code(server.url("/pants.jpg"), LOOPBACK, deadline=time.monotonic() - 1)
        == "FETCH_TIMEOUT"
    )
    assert net.connections == []
    start = time.monotonic()
    code = error_code(server.url("/slow"), LOOPBACK, deadline=time.monotonic() + 0.3)
    assert code == "FETCH_TIMEOUT" and time.monotonic() - start < 0.8


def test_connection_refused(net: NetGuard) -> None:
    port = closed_port()
    assert error_code(f"http://127.0.0.1:{port}/", LOOPBACK) == "FETCH_FAILED"
    assert net.connections == [("127.0.0.1", port)]


def test_allowed_hosts(net: NetGuard, server: ImageServer) -> None:
    config = FetchConfig(allow_loopback=True, allowed_hosts=("images.test",))
    assert fetch_url(server.url("/pants.jpg", host="images.test"), config=config) == JPEG
    assert error_code(server.url("/pants.jpg"), config) == "URL_NOT_ALLOWED"
    assert error_code("http://public.test/", config) == "URL_NOT_ALLOWED"
    location = server.url("/pants.jpg")  # redirect out of the allowlist
    assert (
        error_code(server.url(f"/to?{location}", host="images.test"), config) == "URL_NOT_ALLOWED"
    )
    wildcard = FetchConfig(allowed_hosts=("*.test",))
    assert (
        error_code("http://metadata.test/", wildcard) == "URL_NOT_ALLOWED"
    )  # addresses still checked
    assert error_code("http://example.com/", wildcard) == "URL_NOT_ALLOWED"
    net.assert_no_connection_except("127.0.0.1")


# ---------------------------------------------------------------------------
# TLS: verification is on.


def test_tls_context_verifies() -> None:
    context = _tls_context()
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2


needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ImageServer, Path]]:
    """An HTTPS image server for images.test, its certificate from a test CA."""
    ca, cert, key = make_tls_files(tmp_path_factory.mktemp("tls"))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    srv = ImageServer(tls=context).start()
    yield srv, ca
    srv.close()


@pytest.fixture
def trust_test_ca(
    tls_server: tuple[ImageServer, Path], monkeypatch: pytest.MonkeyPatch
) -> ImageServer:
    """The fetcher's own TLS settings, plus the test CA as a trusted root."""
    server, ca = tls_server
    context = _fetch._tls_context.__wrapped__()
    context.load_verify_locations(cafile=str(ca))
    monkeypatch.setattr(_fetch, "_tls_context", lambda: context)
    return server


@needs_openssl
def test_https_fetch(net: NetGuard, trust_test_ca: ImageServer) -> None:
    server = trust_test_ca
    assert fetch_url(server.url("/pants.jpg", host="images.test"), config=LOOPBACK) == JPEG
    assert fetch_url(server.url("/redirect/1", host="images.test"), config=LOOPBACK) == JPEG
    config = FetchConfig(allow_loopback=True, timeout_s=0.5)
    start = time.monotonic()
    assert error_code(server.url("/drip", host="images.test"), config) == "FETCH_TIMEOUT"
    assert time.monotonic() - start < 0.9
    net.assert_no_connection_except("127.0.0.1")


@needs_openssl
def test_https_checks_the_host_name(net: NetGuard, trust_test_ca: ImageServer) -> None:
    net.names["other.test"] = ["127.0.0.1"]  # same server, but its certificate names images.test
    url = trust_test_ca.url("/pants.jpg", host="other.test")
    assert error_code(url, LOOPBACK) == "FETCH_FAILED"
    assert error_code(trust_test_ca.url("/pants.jpg"), LOOPBACK) == "FETCH_FAILED"  # by address


@needs_openssl
def test_https_refuses_an_unknown_ca(net: NetGuard, tls_server: tuple[ImageServer, Path]) -> None:
    server, _ = tls_server  # the system trust store does not know the test CA
    assert error_code(server.url("/pants.jpg", host="images.test"), LOOPBACK) == "FETCH_FAILED"


# ---------------------------------------------------------------------------
# Units: the address rules and inet_aton parsing, without sockets.


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("127.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("0", "0.0.0.0"),
        ("10.0x10.0.1", "10.16.0.1"),
        ("8.8.8.8", "8.8.8.8"),
        ("example.com", None),
        ("1e100.net", None),
    ],
)
def test_parse_ipv4_host(host: str, address: str | None) -> None:
    parsed = parse_ipv4_host(host)
    assert (str(parsed) if parsed else None) == address


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("64:ff9b::808:808", True),
        ("2002:808:808::1", True),
        ("127.0.0.1", False),
        ("::1", False),
        ("169.254.169.254", False),
        ("100.100.100.200", False),
        ("::ffff:10.0.0.1", False),
        ("64:ff9b:1::1", False),
        ("2001:db8::1", False),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", False),  # Teredo
    ],
)
def test_refusal_reason(address: str, public: bool) -> None:
    assert (refusal_reason(ipaddress.ip_address(address)) is None) == public


def test_config_from_env() -> None:
    env = {
        "FETCH_TIMEOUT_S": "2.5",
        "FETCH_CONNECT_TIMEOUT_S": "1",
        "FETCH_MAX_BYTES": "1048576",
        "FETCH_MAX_REDIRECTS": "1",
        "FETCH_ALLOWED_HOSTS": "Images.Example.com, *.cdn.example.net ,",
        "FETCH_ALLOW_LOOPBACK": "true",
        "FETCH_USER_AGENT": "my-agent/1.0",
    }
    assert FetchConfig.from_env(env) == FetchConfig(
        timeout_s=2.5,
        connect_timeout_s=1.0,
        max_bytes=1048576,
        max_redirects=1,
        allowed_hosts=("images.example.com", "*.cdn.example.net"),
        allow_loopback=True,
        user_agent="my-agent/1.0",
    )
    assert FetchConfig.from_env({}) == FetchConfig()
    assert FetchConfig.from_env({"FETCH_ALLOW_LOOPBACK": "0"}).allow_loopback is False


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"FETCH_MAX_BYTES": "10MB"}, "FETCH_MAX_BYTES must be an integer >= 1"),
        ({"FETCH_MAX_BYTES": "0"}, "FETCH_MAX_BYTES must be an integer >= 1"),
        ({"FETCH_MAX_BYTES": "-5"}, "FETCH_MAX_BYTES must be an integer >= 1"),
        ({"FETCH_TIMEOUT_S": "-1"}, "FETCH_TIMEOUT_S must be a finite number > 0"),
        ({"FETCH_TIMEOUT_S": "0"}, "FETCH_TIMEOUT_S must be a finite number > 0"),
        ({"FETCH_CONNECT_TIMEOUT_S": "0"}, "FETCH_CONNECT_TIMEOUT_S must be a finite number > 0"),
        ({"FETCH_ALLOW_LOOPBACK": "maybe"}, "FETCH_ALLOW_LOOPBACK must be one of"),
        ({"FETCH_ALLOWED_HOSTS": "http://x.com"}, "FETCH_ALLOWED_HOSTS must be comma-separated"),
        ({"FETCH_MAX_REDIRECTS": "-1"}, "FETCH_MAX_REDIRECTS must be an integer >= 0"),
        ({"FETCH_USER_AGENT": "bot\r\nX-Evil: 1"}, "FETCH_USER_AGENT must be one line"),
    ],
)
def test_config_errors(env: dict[str, str], message: str) -> None:
    """Each message names the variable and echoes its value (inference.env's style)."""
    ((name, raw),) = env.items()
    with pytest.raises(ValueError) as info:
        FetchConfig.from_env(env)
    assert str(info.value).startswith(f"Env var {message}")
    assert str(info.value).endswith(f"Received: {name}={raw.strip()!r}")


# ---------------------------------------------------------------------------


def closed_port() -> int:
    """A loopback port that nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------------------
# URLs as people paste them (issue 11): trimmed and percent-encoded the way a
# browser or `requests` does, for the request URL and every redirect target.


@pytest.mark.parametrize(
    ("url", "host", "path"),
    [
        (" https://host.test/img/photo of pants.jpg\n", "host.test", "/img/photo%20of%20pants.jpg"),
        ("\thttps://host.test/x.jpg \r\n", "host.test", "/x.jpg"),
        ("https://host.test/hosen ä.jpg?q=a b", "host.test", "/hosen%20%C3%A4.jpg?q=a%20b"),
        ('https://host.test/a"b<c>{d}|^`.jpg', "host.test", "/a%22b%3Cc%3E%7Bd%7D%7C%5E%60.jpg"),
        ("https://host.test/100%/a%2Fb%zz.jpg", "host.test", "/100%25/a%2Fb%25zz.jpg"),
        ("https://host.test/x.jpg#frag ment", "host.test", "/x.jpg"),  # never sent
        ("HTTPS://Host.Test:443/x.jpg", "host.test", "/x.jpg"),
    ],
)
def test_pasted_urls_are_normalized(url: str, host: str, path: str) -> None:
    target = _fetch.parse_url(url, allowed_hosts=STRICT.allowed_hosts)
    assert (target.host, target.path) == (host, path)
    assert target.url == f"https://{host}{path}"


@pytest.mark.parametrize(
    ("url", "code"),
    [
        (" https://host.test/a\nb.jpg", "INVALID_REQUEST"),  # inside: still refused
        ("https://host.test/a\tb.jpg", "INVALID_REQUEST"),
        ("https://host.test/a\x00b.jpg", "INVALID_REQUEST"),
        ("https://host.test/a\\b.jpg", "INVALID_REQUEST"),
        (" http://host .test/x.jpg", "INVALID_REQUEST"),
        ("  file:///etc/passwd ", "URL_NOT_ALLOWED"),
        (" \n ", "INVALID_REQUEST"),
    ],
)
def test_pasted_urls_still_refused(net: NetGuard, url: str, code: str) -> None:
    assert error_code(url, STRICT) == code
    assert net.connections == []


def test_trimming_does_not_open_refused_addresses(net: NetGuard) -> None:
    assert error_code("  http://127.0.0.1/x.jpg\n", STRICT) == "URL_NOT_ALLOWED"
    assert error_code(" http://169.254.169.254/latest/meta-data/ ", STRICT) == "URL_NOT_ALLOWED"
    assert net.connections == []


def test_fetches_a_pasted_url(net: NetGuard, server: ImageServer) -> None:
    url = " " + server.url("/img/photo of pants.jpg") + "\n"
    assert fetch_url(url, config=LOOPBACK) == JPEG
    assert server.requests[-1]["path"] == "/img/photo%20of%20pants.jpg"


@pytest.mark.parametrize(
    ("path", "sent"),
    [
        ("/redirect-space", "/img/photo%20of%20pants.jpg"),
        ("/redirect-utf8", "/img/hosen-%C3%A4.jpg"),
    ],
)
def test_redirect_targets_are_normalized(
    net: NetGuard, server: ImageServer, path: str, sent: str
) -> None:
    assert fetch_url(server.url(path), config=LOOPBACK) == JPEG
    assert server.requests[-1]["path"] == sent
