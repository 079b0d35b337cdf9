"""Server-side request forgery: a webhook URL is chosen by a user, and the service POSTs to it from
inside the network. A URL is accepted only when every address its host resolves to is a public
one (unless WEBHOOK_ALLOW_PRIVATE); a delivery then connects to the address checked, never to a
fresh resolution, so a DNS answer changed between the check and the connection (rebinding) cannot
reach a private address."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings

MAX_URL_LENGTH = 2000
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class UnsafeURL(ValueError):
    """The URL is refused; the message says why, for the person who typed it."""


@dataclass(frozen=True)
class Target:
    """A checked URL: where to connect (``addresses``, in resolution order) and what to ask for."""

    scheme: str
    host: str  # as written (without brackets): the Host header, TLS's server name
    port: int
    path: str  # path and query
    addresses: tuple[str, ...]


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, NAT64, Teredo): it reaches that host."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def address_refusal(address: str) -> str | None:
    """Why this address may not be reached, or None when it is a public one."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 zone (fe80::1%eth0) is link-local
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_ipv4(ip)
        if inner is not None:
            reason = address_refusal(str(inner))
            return f"{reason} (inside {ip})" if reason else None
    for label, flag in (("loopback", ip.is_loopback), ("private", ip.is_private), ("link-local", ip.is_link_local),
                        ("multicast", ip.is_multicast), ("reserved", ip.is_reserved),
                        ("unspecified", ip.is_unspecified)):
        if flag:
            return f"{ip} is a {label} address"
    if not ip.is_global:  # shared (100.64.0.0/10), benchmarking, documentation ranges…
        return f"{ip} is not a public address"
    return None


def parse_url(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path) of an acceptable http(s) URL, or UnsafeURL."""
    if not isinstance(url, str) or not url.strip():
        raise UnsafeURL("Enter the URL to POST events to.")
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeURL(f"The URL is {len(url)} characters long; at most {MAX_URL_LENGTH}.")
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise UnsafeURL("The URL must not contain spaces or control characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeURL(f"The URL is not valid: {exc}.") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise UnsafeURL("Only http:// and https:// URLs are accepted.")
    if parts.username is not None or parts.password is not None:
        raise UnsafeURL("The URL must not contain credentials (user:password@); authenticate with the signature.")
    if not parts.hostname:
        raise UnsafeURL("The URL has no host.")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return scheme, parts.hostname, port or (443 if scheme == "https" else 80), path


def resolve(host: str, port: int) -> list[str]:
    """Every address of ``host`` (an IP literal resolves to itself), in the resolver's order."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[str] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        if sockaddr[0] not in addresses:
            addresses.append(sockaddr[0])
    return addresses


def check_url(url: str, *, allow_private: bool | None = None) -> Target:
    """The URL's target, or UnsafeURL: not http(s), credentials in it, a host that does not resolve,
    or one address that is not public (unless WEBHOOK_ALLOW_PRIVATE). One bad address refuses the
    whole host: which address a client picks is not ours to choose."""
    scheme, host, port, path = parse_url(url)
    try:
        addresses = resolve(host, port)
    except (OSError, UnicodeError) as exc:
        raise UnsafeURL(f"The host {host!r} could not be resolved ({exc}).") from None
    if not addresses:
        raise UnsafeURL(f"The host {host!r} has no address.")
    if allow_private is None:
        allow_private = settings.WEBHOOK_ALLOW_PRIVATE
    if not allow_private:
        for address in addresses:
            reason = address_refusal(address)
            if reason:
                raise UnsafeURL(f"Refused: {host} resolves to {address}: {reason}; private, loopback and "
                                f"link-local addresses are not allowed (WEBHOOK_ALLOW_PRIVATE).")
    return Target(scheme=scheme, host=host, port=port, path=path, addresses=tuple(addresses))
