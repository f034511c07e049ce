"""Which URLs and addresses `fetch_url` may reach: pure functions, no I/O.

    from inference._url_policy import parse_url, refusal_reason

    target = parse_url("https://img.example.com/a.jpg", allowed_hosts=())  # a checked Target
    refusal_reason(ipaddress.ip_address("169.254.169.254"))  # 'is in 169.254.0.0/16'

inference/_fetch.py does the I/O (DNS, sockets, TLS, the deadline and the byte
cap) and asks this module, at every hop, whether the URL's shape is allowed
(step 1 of its docstring) and whether each resolved address is (step 2).
Kept apart so the policy can be read, and tested, without a network.
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from dataclasses import dataclass

from inference._errors import InvalidRequestError, URLNotAllowedError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_URL_LENGTH = 4096
DEFAULT_PORTS = {"http": 80, "https": 443}

# Ranges refused on top of `not ip.is_global`, so the answer does not depend on
# the Python version's ipaddress tables (they changed in 3.11.x and 3.12.x).
_BLOCKED_NETWORKS: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = tuple(
    ipaddress.ip_network(net)
    for net in (
        "0.0.0.0/8",  # "this network"; connecting to 0.0.0.0 reaches this host
        "10.0.0.0/8",
        "100.64.0.0/10",  # carrier-grade NAT
        "127.0.0.0/8",
        "169.254.0.0/16",  # link-local: instance metadata, Lambda runtime API
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.88.99.0/24",  # 6to4 relay anycast
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, and 255.255.255.255
        "::/8",  # unspecified, loopback, IPv4-compatible, IPv4-mapped (unwrapped first)
        "64:ff9b:1::/48",  # local-use NAT64
        "100::/64",  # discard
        "2001::/23",  # IETF protocol assignments, Teredo
        "2001:db8::/32",  # documentation
        "fc00::/7",  # unique local
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local
        "ff00::/8",  # multicast
    )
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_LOOPBACK_V6 = ipaddress.IPv6Address("::1")


@dataclass(frozen=True)
class Target:
    """A checked URL: where to connect and what to ask for."""

    scheme: str
    host: str  # lower-case DNS name (IDNA), or the address's canonical text
    port: int
    path: str  # request target: path + query, percent-encoded ASCII
    address: IPAddress | None  # set when the host was an IP literal

    @property
    def host_header(self) -> str:
        """The Host header value: `host`, bracketed if IPv6, `:port` unless the default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"

    @property
    def url(self) -> str:
        """The normalized URL (what redirects are resolved against)."""
        return f"{self.scheme}://{self.host_header}{self.path}"


def parse_url(url: object, *, allowed_hosts: tuple[str, ...] = ()) -> Target:
    """Check a URL's shape (not its addresses); raise a typed error if refused.

    Args:
        url: what the caller sent (any type: a non-string is refused).
        allowed_hosts: if not empty, the only hosts allowed (`FetchConfig`'s).

    Raises:
        InvalidRequestError: not a string, empty, too long, control characters,
            unparsable, no host, port 0, a malformed host.
        URLNotAllowedError: a scheme other than http(s), user info, an IPv6
            zone, or a host outside `allowed_hosts`.
    """
    if not isinstance(url, str):
        raise InvalidRequestError(
            f"`url` must be a string. Received: url of type {type(url).__name__}"
        )
    # Browsers and `requests` trim the whitespace around a pasted address
    # (WHATWG URL standard, basic URL parser: "remove any leading and trailing
    # C0 control or space"); what is inside is checked below.
    url = url.strip()
    if not url:
        raise InvalidRequestError("`url` is empty.")
    match = _SCHEME.match(url)
    scheme = match.group(1).lower() if match else ""
    if scheme not in DEFAULT_PORTS:
        received = f"{scheme}:" if scheme else "no scheme"
        raise URLNotAllowedError(f"`url` scheme must be http or https. Received: {received}")
    if len(url) > MAX_URL_LENGTH:
        raise InvalidRequestError(
            f"`url` must be at most {MAX_URL_LENGTH} characters. Received: {len(url)} characters"
        )
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in url) or "\\" in url:
        raise InvalidRequestError("`url` must not contain control characters or backslashes.")
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidRequestError(f"`url` is not a valid URL: {exc}.") from None
    if "@" in parts.netloc:
        raise URLNotAllowedError("`url` must not contain a user name or password (`user@host`).")
    if not parts.hostname:
        raise InvalidRequestError("`url` has no host.")
    if port == 0:
        raise InvalidRequestError("`url` port must be 1-65535. Received: 0")
    host, address = _parse_host(parts.hostname, bracketed=parts.netloc.startswith("["))
    if allowed_hosts and not _host_allowed(host, allowed_hosts):
        raise URLNotAllowedError(
            f"Host {host!r} is not in the allowed hosts (FETCH_ALLOWED_HOSTS)."
        )
    # Percent-encode what a URL may not hold (spaces, quotes, <>, non-ASCII as
    # UTF-8), keep valid %XX escapes, encode a stray "%" as %25: what a browser
    # sends for a typed address and `requests.utils.requote_uri` does.
    path = urllib.parse.quote(_stray_percent(parts.path or "/"), safe="/%:@!$&'()*+,;=-._~")
    if parts.query:
        path += "?" + urllib.parse.quote(_stray_percent(parts.query), safe="/?%:@!$&'()*+,;=-._~")
    return Target(scheme, host, port or DEFAULT_PORTS[scheme], path, address)


_STRAY_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")


def _stray_percent(text: str) -> str:
    return _STRAY_PERCENT.sub("%25", text)


def _parse_host(host: str, *, bracketed: bool) -> tuple[str, IPAddress | None]:
    """-> (canonical host, address if the host is an IP literal)."""
    if bracketed:
        try:
            v6 = ipaddress.IPv6Address(host)
        except ValueError:
            raise InvalidRequestError(f"`url` host [{host}] is not a valid IPv6 address.") from None
        if v6.scope_id:
            raise URLNotAllowedError("`url` host must not carry an IPv6 zone (`%...`).")
        return v6.compressed, v6
    try:  # IDNA first: it maps full-width digits and dots to ASCII ones
        ascii_host = host.encode("idna").decode("ascii").lower() if not host.isascii() else host
    except UnicodeError:
        raise InvalidRequestError(f"`url` host {host!r} is not a valid host name.") from None
    ascii_host = ascii_host[:-1] if ascii_host.endswith(".") else ascii_host
    v4 = parse_ipv4_host(ascii_host)
    if v4 is not None:
        return str(v4), v4
    labels = ascii_host.split(".")
    if len(ascii_host) > 253 or not all(
        re.fullmatch(r"[a-z0-9_-]{1,63}", label) for label in labels
    ):
        raise InvalidRequestError(f"`url` host {host!r} is not a valid host name.")
    return ascii_host, None


_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
_NUMBER = re.compile(r"0[xX][0-9a-fA-F]*|[0-9]+")


def parse_ipv4_host(host: str) -> ipaddress.IPv4Address | None:
    """Read a host the way inet_aton (and the WHATWG URL standard) does.

    A host whose last dot-separated label is a number (decimal, 0x hex, or 0
    octal) is an IPv4 address in 1-4 parts, the last part filling the remaining
    bytes: `127.1`, `2130706433`, `0x7f.0.0.1` and `0177.0.0.01` are all
    127.0.0.1. Returns None for a DNS name; raises if the number is invalid.
    """
    parts = host.split(".")
    if not _NUMBER.fullmatch(parts[-1]):
        return None
    if len(parts) > 4:
        raise InvalidRequestError(f"`url` host {host!r} is not a valid IPv4 address.")
    numbers = []
    for part in parts:
        if part.lower().startswith("0x"):
            digits, base = part[2:], 16
        elif len(part) > 1 and part.startswith("0"):
            digits, base = part[1:], 8
        else:
            digits, base = part, 10
        try:
            numbers.append(int(digits, base) if digits else 0)
        except ValueError:
            raise InvalidRequestError(f"`url` host {host!r} is not a valid IPv4 address.") from None
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (5 - len(numbers)):
        raise InvalidRequestError(f"`url` host {host!r} is not a valid IPv4 address.")
    value = last
    for i, n in enumerate(head):
        value += n << (8 * (3 - i))
    return ipaddress.IPv4Address(value)


def _host_allowed(host: str, patterns: tuple[str, ...]) -> bool:
    for pattern in patterns:
        if pattern.startswith("*."):
            if host.endswith(pattern[1:]):
                return True
        elif host == pattern:
            return True
    return False


# ---------------------------------------------------------------------------
# Step 2: check addresses.


def refusal_reason(address: IPAddress, *, allow_loopback: bool = False) -> str | None:
    """Why an address may not be connected to, or None if it is public."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id:
            return "has an IPv6 zone"
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            reason = refusal_reason(embedded, allow_loopback=allow_loopback)
            return None if reason is None else f"embeds IPv4 {embedded} that {reason}"
        if allow_loopback and address == _LOOPBACK_V6:
            return None
    elif allow_loopback and address.is_loopback:
        return None
    for network in _BLOCKED_NETWORKS:
        if address.version == network.version and address in network:
            return f"is in {network}"
    if address.is_multicast or address.is_reserved or not address.is_global:
        return "is not a public unicast address"
    return None


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour
