"""SSRF guard for the page fetcher: refuse loopback, private, link-local and reserved addresses.

Scope: `check_address(ip)` (the rule), `GuardedHTTPHandler` / `GuardedHTTPSHandler` (urllib
handlers whose connections check the address they actually connected to, so redirects and DNS
rebinding cannot reach an internal host), and `BlockedAddress` (the refusal). The check runs at
connect time on the peer address, not on the URL's host name.

Non-goals: robots.txt, proxies (the fetcher uses none), rate limiting.
"""

from __future__ import annotations

import http.client
import ipaddress
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


class _GuardedHTTPConnection(http.client.HTTPConnection):
    def connect(self) -> None:
        super().connect()
        try:
            check_address(self.sock.getpeername()[0])
        except BlockedAddress:
            self.close()
            raise


class _GuardedHTTPSConnection(http.client.HTTPSConnection):
    def connect(self) -> None:
        super().connect()
        try:
            check_address(self.sock.getpeername()[0])
        except BlockedAddress:
            self.close()
            raise


class GuardedHTTPHandler(urllib.request.HTTPHandler):
    """`HTTPHandler` whose connections refuse internal peers."""

    def http_open(self, req: Any) -> Any:
        return self.do_open(_GuardedHTTPConnection, req)


class GuardedHTTPSHandler(urllib.request.HTTPSHandler):
    """`HTTPSHandler` whose connections refuse internal peers."""

    def https_open(self, req: Any) -> Any:
        return self.do_open(_GuardedHTTPSConnection, req, context=getattr(self, "_context", None))
