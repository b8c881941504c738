"""The private-address guard: literals refused at construction, names after resolution."""

from __future__ import annotations

import ipaddress

import pytest

from xtasks_alerts._addresses import (
    PrivateAddressError,
    forbidden_reason,
    parse_ip_literal,
    resolve,
)
from xtasks_alerts._webhook import WebhookAlerter

REFUSED = [
    ("127.0.0.1", "127.0.0.1", "loopback"),
    ("127.8.9.10", "127.8.9.10", "loopback"),
    ("[::1]", "::1", "loopback"),
    ("169.254.169.254", "169.254.169.254", "link-local"),
    ("[fe80::1]", "fe80::1", "link-local"),
    ("10.0.0.1", "10.0.0.1", "private"),
    ("192.168.1.1", "192.168.1.1", "private"),
    ("172.16.0.1", "172.16.0.1", "private"),
    ("172.31.255.254", "172.31.255.254", "private"),
    ("[fc00::1]", "fc00::1", "private"),
    ("[fd12:3456::1]", "fd12:3456::1", "private"),
    ("0.0.0.0", "0.0.0.0", "unspecified"),
    ("[::]", "::", "unspecified"),
    ("224.0.0.1", "224.0.0.1", "multicast"),
    ("[ff02::1]", "ff02::1", "multicast"),
    ("240.0.0.1", "240.0.0.1", "private"),  # reserved 240/4 (Python files it as private)
    ("100.64.0.1", "100.64.0.1", "non-public"),  # shared address space (CGNAT)
    # odd spellings the C resolver turns into addresses without asking DNS
    ("2130706433", "127.0.0.1", "loopback"),
    ("0x7f000001", "127.0.0.1", "loopback"),
    ("0x7f.1", "127.0.0.1", "loopback"),
    ("0177.1", "127.0.0.1", "loopback"),
    ("127.1", "127.0.0.1", "loopback"),
    ("0", "0.0.0.0", "unspecified"),
    ("2852039166", "169.254.169.254", "link-local"),
    # IPv6 forms that carry a refused IPv4 address
    ("[::ffff:127.0.0.1]", "::ffff:7f00:1", "loopback (embedded 127.0.0.1)"),
    ("[::ffff:169.254.169.254]", "::ffff:a9fe:a9fe", "link-local (embedded 169.254.169.254)"),
    ("[::ffff:10.0.0.1]", "::ffff:a00:1", "private (embedded 10.0.0.1)"),
    ("[64:ff9b::7f00:1]", "64:ff9b::7f00:1", "loopback (embedded 127.0.0.1)"),
    ("[2002:a9fe:a9fe::]", "2002:a9fe:a9fe::", "link-local (embedded 169.254.169.254)"),
]


@pytest.mark.parametrize(("host", "address", "reason"), REFUSED)
def test_ip_literal_refused_at_construction(host: str, address: str, reason: str) -> None:
    with pytest.raises(PrivateAddressError) as caught:
        WebhookAlerter(f"http://{host}:8080/hook", secret="whsec_c2VjcmV0LWtleQ==")
    message = str(caught.value)
    assert address in message
    assert host.strip("[]") in message
    assert reason in message
    assert "allow_private=True" in message
    assert caught.value.address == address


@pytest.mark.parametrize(("host", "address", "reason"), REFUSED)
def test_allow_private_lets_every_literal_through(host: str, address: str, reason: str) -> None:
    alerter = WebhookAlerter(f"https://{host}/hook", allow_private=True)
    assert alerter.allow_private is True


@pytest.mark.parametrize(
    "url",
    [
        "http://93.184.215.14/hook",
        "https://93.184.215.14:8443/hook?token=x",
        "https://[2606:4700:4700::1111]/hook",
        "https://8.8.8.8/",
        "https://hooks.example.com/services/T/B/X",  # names are checked when sending
    ],
)
def test_public_address_constructs(url: str) -> None:
    WebhookAlerter(url)  # never sends: nothing connects to these


def test_parse_ip_literal_reads_resolver_spellings_and_leaves_names_alone() -> None:
    v4 = ipaddress.IPv4Address
    assert parse_ip_literal("2130706433") == v4("127.0.0.1")
    assert parse_ip_literal("0x7f.0.0.1") == v4("127.0.0.1")
    assert parse_ip_literal("0177.0.0.01") == v4("127.0.0.1")
    assert parse_ip_literal("10.1") == v4("10.0.0.1")
    assert parse_ip_literal("[::1]") == ipaddress.IPv6Address("::1")
    assert parse_ip_literal("fe80::1%eth0") == ipaddress.IPv6Address("fe80::1")
    for name in ["example.com", "cafe.be", "localhost", "0x.example", "1.2.3.4.5", "deadbeef"]:
        assert parse_ip_literal(name) is None, name


def test_forbidden_reason_accepts_global_unicast_only() -> None:
    ip = ipaddress.ip_address
    assert forbidden_reason(ip("93.184.215.14")) is None
    assert forbidden_reason(ip("2606:4700:4700::1111")) is None
    assert forbidden_reason(ip("2002:5db8:d70e::")) is None  # 6to4 of a public address
    assert forbidden_reason(ip("255.255.255.255")) is not None  # broadcast
    assert forbidden_reason(ip("192.0.2.1")) is not None  # documentation


def test_a_four_part_octal_address_is_refused_as_invalid() -> None:
    with pytest.raises(ValueError, match="not a valid URL"):
        WebhookAlerter("http://0177.0.0.1/hook", allow_private=True)


@pytest.mark.anyio
async def test_a_name_resolving_to_loopback_is_refused() -> None:
    with pytest.raises(PrivateAddressError) as caught:
        await resolve("localhost", 80)
    assert "localhost" in str(caught.value)
    assert caught.value.address in {"127.0.0.1", "::1"}
    assert "allow_private=True" in str(caught.value)


@pytest.mark.anyio
async def test_allow_private_resolves_without_refusing() -> None:
    addresses = await resolve("localhost", 80, allow_private=True)
    assert addresses
    assert all(a.is_loopback for a in addresses)
