"""Addresses, ports and netmasks as ipvsadm writes and checks them.

Stdlib only.
"""

import ipaddress

from lvs_app.errors import BadRequest

PROTOCOLS = ("tcp", "udp")         # the transport protocols a virtual service may have


def parse_ip(text, what="address"):
    """Parse an IPv4/IPv6 address (IPv6 may be given in brackets)."""
    if isinstance(text, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return text
    if not isinstance(text, str) or not text:
        raise BadRequest(f"{what} {text!r} is not an IPv4 or IPv6 address")
    raw = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    try:
        return ipaddress.ip_address(raw)
    except ValueError:
        raise BadRequest(f"{what} {text!r} is not an IPv4 or IPv6 address") from None


def parse_forwarding_ip(text, what):
    """An address the switches forward to or from (a VIP, a real server, a
    mark match): :func:`parse_ip`, less the IPv4-compatible IPv6 block
    ``::/96``, deprecated by RFC 4291 and refused here because the data
    plane tells the families apart by value (see packet.py)."""
    addr = parse_ip(text, what)
    if addr.version == 6 and int(addr) >> 32 == 0:
        raise BadRequest(f"{what} {text!r} is in ::/96 (IPv4-compatible IPv6, deprecated by "
                         "RFC 4291); use the IPv4 address or an IPv6 one outside ::/96")
    return addr


def check_port(port, what):
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise BadRequest(f"{what} port {port!r} must be 0..65535")
    return port


def check_int(value, lo, hi, what):
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise BadRequest(f"{what} {value!r} must be {lo}..{hi}")
    return value


def format_addr_port(addr, port):
    """ipvsadm's ``addr:port`` with IPv6 in brackets."""
    if addr.version == 6:
        return f"[{addr}]:{port}"
    return f"{addr}:{port}"


def full_mask(version):
    return (1 << 32) - 1 if version == 4 else (1 << 128) - 1


def prefix_mask(version, plen):
    bits = 32 if version == 4 else 128
    return ((1 << plen) - 1) << (bits - plen) if plen else 0


def parse_netmask(value, version):
    """A persistence netmask: dotted mask or prefix length (IPv4), prefix (IPv6).

    Returns the mask as an integer over the address width.
    """
    what = f"netmask {value!r}"
    if version == 6:
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        plen = check_int(value, 1, 128, "IPv6 netmask prefix")
        return prefix_mask(6, plen)
    if isinstance(value, int) and not isinstance(value, bool):
        return prefix_mask(4, check_int(value, 0, 32, "IPv4 netmask prefix"))
    if isinstance(value, str):
        text = value[1:] if value.startswith("/") else value
        if text.isdigit():
            return prefix_mask(4, check_int(int(text), 0, 32, "IPv4 netmask prefix"))
        try:
            return int(ipaddress.IPv4Address(text))
        except ValueError:
            pass
    raise BadRequest(f"{what} must be a dotted IPv4 mask or a prefix length")


def format_netmask(mask, version):
    """``255.255.255.0`` for IPv4, the prefix length for IPv6 (as ipvsadm)."""
    if version == 4:
        return str(ipaddress.IPv4Address(mask))
    return str(bin(mask).count("1"))
