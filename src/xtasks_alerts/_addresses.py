"""The private-address guard of the webhook alerter (server-side request forgery).

A webhook URL comes from configuration, which is not always written by the people who run
the host: without a guard, ``url: http://169.254.169.254/latest/meta-data/`` would make
the scheduler fetch cloud credentials, or poke services that only listen on loopback or on
the private network. So an address is refused unless it is a *global* unicast address:

- loopback (127/8, ``::1``), unspecified (``0.0.0.0``, ``::``), link-local (169.254/16,
  which holds the cloud metadata service 169.254.169.254, and ``fe80::/10``),
- private (10/8, 172.16/12, 192.168/16, ``fc00::/7``, and the other non-global ranges the
  IANA special-purpose registries list: 100.64/10 shared address space, 192.0.0/24,
  benchmarking 198.18/15, documentation ranges, 240/4 reserved, ``fec0::/10`` site-local),
- multicast and broadcast,
- and IPv6 addresses that embed one of those IPv4 addresses: IPv4-mapped
  (``::ffff:127.0.0.1``), IPv4-compatible, NAT64 (``64:ff9b::/96``), 6to4 (``2002::/16``)
  and Teredo.

Host names are parsed the way the C resolver parses them, so the odd IPv4 spellings that
``getaddrinfo`` accepts (``2130706433``, ``0x7f.1``, ``0177.0.0.1``, ``127.1``, ``0``) are
recognised as literals and checked at configuration. Names are checked after resolution,
every address the resolver returns; the caller then connects to one of the checked
addresses, never resolving again (see :mod:`xtasks_alerts._webhook`).
"""

from __future__ import annotations

import ipaddress
import re
import socket

import anyio

__all__ = [
    "IPAddress",
    "PrivateAddressError",
    "check_address",
    "forbidden_reason",
    "parse_ip_literal",
    "resolve",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")

#: One part of an IPv4 address as ``inet_aton`` reads it: decimal, octal (leading 0) or hex.
_NUMERIC_PART = r"(?:0[xX][0-9a-fA-F]*|[0-9]+)"
_NUMERIC_HOST = re.compile(rf"{_NUMERIC_PART}(?:\.{_NUMERIC_PART}){{0,3}}\.?")


class PrivateAddressError(ValueError):
    """A webhook host is, or resolves to, an address the guard refuses."""

    def __init__(self, host: str, address: str, reason: str) -> None:
        self.host = host
        self.address = address
        self.reason = reason
        shown = host if host == address else f"{host} ({address})"
        super().__init__(
            f"webhook host {shown} is refused: {address} is a {reason} address; a webhook "
            "may only reach public addresses unless the alerter is created with "
            "allow_private=True"
        )


def parse_ip_literal(host: str) -> IPAddress | None:
    """Return the address ``host`` spells, or ``None`` when ``host`` is a name.

    Accepts what the standard parser accepts (``127.0.0.1``, ``::1``, ``[::1]``,
    ``::ffff:127.0.0.1``) and the legacy numeric IPv4 forms ``inet_aton`` accepts
    (``2130706433``, ``0x7f000001``, ``0177.0.0.1``, ``127.1``, ``0``), since the resolver
    would turn those into addresses without asking DNS.
    """
    text = host.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        return ipaddress.ip_address(text.split("%", 1)[0] if ":" in text else text)
    except ValueError:
        pass
    if _NUMERIC_HOST.fullmatch(text):
        try:
            packed = socket.inet_aton(text.rstrip("."))
        except OSError:
            return None
        return ipaddress.IPv4Address(packed)
    return None


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries and a network may route to."""
    found: list[ipaddress.IPv4Address] = []
    if address.ipv4_mapped is not None:
        found.append(address.ipv4_mapped)
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.extend(address.teredo)
    if address in _NAT64 or address in _IPV4_COMPATIBLE:
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return found


def forbidden_reason(address: IPAddress) -> str | None:
    """Why the guard refuses ``address`` (``"loopback"``, ``"private"``…), or ``None``."""
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if isinstance(address, ipaddress.IPv6Address):
        if address.is_site_local:
            return "site-local"
        if address in _NAT64_LOCAL:
            return "private"
        for inner in _embedded_ipv4(address):
            reason = forbidden_reason(inner)
            if reason is not None:
                return f"{reason} (embedded {inner})"
    if address.is_private:
        return "private"
    if address.is_reserved:
        return "reserved"
    if not address.is_global:
        return "non-public"
    return None


def check_address(host: str, address: IPAddress) -> None:
    """Raise :class:`PrivateAddressError` unless ``address`` (``host``'s) is public."""
    reason = forbidden_reason(address)
    if reason is not None:
        raise PrivateAddressError(host, str(address), reason)


async def resolve(host: str, port: int, *, allow_private: bool = False) -> list[IPAddress]:
    """Resolve ``host`` and return its addresses, in the resolver's order, all checked.

    Every address is checked, not only the first: a name with one public and one private
    record is refused (the connection could otherwise land on either). With
    ``allow_private`` nothing is refused.

    :raises PrivateAddressError: when any address is refused.
    :raises OSError: when the name does not resolve (``socket.gaierror``).
    """
    literal = parse_ip_literal(host)
    if literal is not None:
        if not allow_private:
            check_address(host, literal)
        return [literal]
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _canonname, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if not allow_private:
            check_address(host, address)
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise OSError(f"{host} did not resolve to any address")
    return addresses
