"""SSRF guard for the page fetcher: refuse loopback, private, link-local and reserved addresses.

Scope: `check_address(ip)` (the rule), `GuardedHTTPHandler` / `GuardedHTTPSHandler` (urllib
handlers whose connections check every address the host name resolves to before connecting, and
the address they actually connected to after, before any byte is sent, so redirects and DNS
rebinding cannot reach an internal host), and `BlockedAddress` (the refusal).

Non-goals: robots.txt, proxies (the fetcher uses none), rate limiting.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import urllib.request
from typing import Any

__all__ = ["BlockedAddress", "GuardedHTTPHandler", "GuardedHTTPSHandler", "check_address"]


class BlockedAddress(ConnectionRefusedError):
    """The fetcher refused to connect to an internal address (SSRF guard)."""


def check_address(ip: str) -> None:
    """Raise `BlockedAddress` when `ip` is loopback, private, link-local, multicast, reserved or unspecified."""
    addr = ipaddress.ip_address(ip.split("%", 1)[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if (addr.is_loopback or addr.is_private or addr.is_link_local or addr.is_multicast
            or addr.is_reserved or addr.is_unspecified or not addr.is_global):
        raise BlockedAddress(f"refused to fetch from internal address {addr} (SSRF guard); "
                             "set Runner(extra={'web_search': {'allow_private_addresses': True}}) to allow it")


def _check_host(host: str, port: int) -> None:
    for *_, sockaddr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        check_address(str(sockaddr[0]))


class _GuardedConnect:
    """Checks the resolved host before connecting and the connected peer after (DNS rebinding)."""

    host: str
    port: int
    sock: Any

    def connect(self) -> None:
        _check_host(self.host, self.port)
        super().connect()  # type: ignore[misc]
        try:
            check_address(self.sock.getpeername()[0])
        except BlockedAddress:
            self.close()  # type: ignore[attr-defined]
            raise


class _GuardedHTTPConnection(_GuardedConnect, http.client.HTTPConnection):
    pass


class _GuardedHTTPSConnection(_GuardedConnect, http.client.HTTPSConnection):
    pass


class GuardedHTTPHandler(urllib.request.HTTPHandler):
    """`HTTPHandler` whose connections refuse internal peers."""

    def http_open(self, req: Any) -> Any:
        return self.do_open(_GuardedHTTPConnection, req)


class GuardedHTTPSHandler(urllib.request.HTTPSHandler):
    """`HTTPSHandler` whose connections refuse internal peers."""

    def https_open(self, req: Any) -> Any:
        return self.do_open(_GuardedHTTPSConnection, req, context=getattr(self, "_context", None))
