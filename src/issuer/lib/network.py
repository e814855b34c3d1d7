"""The client's address: ``X-Forwarded-For`` is believed only from configured proxies.

ASVS 4.1.3.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Client:
    """Where a request came from, as recorded with a login (never used to authorise)."""

    ip: str | None
    user_agent: str | None


def parse_networks(value: str) -> tuple[Network, ...]:
    """``"10.0.0.0/8, 127.0.0.1"`` → networks; raises ``ValueError`` on a bad entry."""
    return tuple(
        ipaddress.ip_network(v.strip(), strict=False) for v in value.split(",") if v.strip()
    )


def trusted(address: str, proxies: Iterable[Network]) -> bool:
    """Whether ``address`` (an IP address as text) is in one of ``proxies``."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in proxies)


def client_ip(
    remote_addr: str | None, forwarded_for: str | None, proxies: tuple[Network, ...]
) -> str:
    """Walk ``X-Forwarded-For`` from the right while the hop is a trusted proxy."""
    address = remote_addr or "unknown"
    if not proxies or not forwarded_for or not trusted(address, proxies):
        return address
    for hop in reversed([h.strip() for h in forwarded_for.split(",") if h.strip()]):
        address = hop
        if not trusted(hop, proxies):
            break
    return address


_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOST = re.compile(
    rf"(?:(?P<name>{_LABEL}(?:\.{_LABEL})*)|\[(?P<ipv6>[0-9A-Fa-f:.]{{2,45}})\])"
    r"(?::(?P<port>[0-9]{1,5}))?"
)


def parse_host(value: str) -> tuple[str, int | None] | None:
    """``"example.org:8443"`` → ``("example.org", 8443)``, ``"[::1]"`` → ``("::1", None)``;
    ``None`` when ``value`` is not a valid ``host[:port]`` (RFC 9110 §7.2, names as LDH
    labels)."""
    match = HOST.fullmatch(value)
    if match is None:
        return None
    port = int(match["port"]) if match["port"] else None
    if port is not None and not 0 < port < 65536:
        return None
    if match["ipv6"] is not None:
        try:
            return str(ipaddress.IPv6Address(match["ipv6"])), port
        except ValueError:
            return None
    return (match["name"], port) if len(match["name"]) <= 253 else None
