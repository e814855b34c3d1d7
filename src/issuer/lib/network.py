"""The client's address: ``X-Forwarded-For`` is believed only from configured proxies.

ASVS 4.1.3.
"""

from __future__ import annotations

import ipaddress
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


def _trusted(address: str, proxies: Iterable[Network]) -> bool:
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
    if not proxies or not forwarded_for or not _trusted(address, proxies):
        return address
    for hop in reversed([h.strip() for h in forwarded_for.split(",") if h.strip()]):
        address = hop
        if not _trusted(hop, proxies):
            break
    return address
