"""Firewall marks: an lvs_app extension, since OpenFlow has no skb->mark.

A mark is a named set of ``proto:VIP[:port[-port]]`` matches that share one
virtual service (``-f MARK``), one scheduler and one template per client.

Stdlib only.
"""

from dataclasses import dataclass

from lvs_app.addresses import PROTOCOLS, check_port, parse_forwarding_ip
from lvs_app.errors import BadRequest


@dataclass(frozen=True)
class MarkMatch:
    """One (protocol, VIP, port range) that a firewall mark covers."""

    protocol: str
    address: object
    port_min: int = 0
    port_max: int = 65535

    def describe(self):
        if (self.port_min, self.port_max) == (0, 65535):
            ports = ""
        elif self.port_min == self.port_max:
            ports = f":{self.port_min}"
        else:
            ports = f":{self.port_min}-{self.port_max}"
        addr = f"[{self.address}]" if self.address.version == 6 else str(self.address)
        return f"{self.protocol}:{addr}{ports}"

    def overlaps(self, other):
        return (self.protocol == other.protocol and self.address == other.address
                and self.port_min <= other.port_max and other.port_min <= self.port_max)

    def covers(self, protocol, address, port):
        return (self.protocol == protocol and self.address == address
                and self.port_min <= port <= self.port_max)


def parse_mark_match(text):
    """``proto:VIP[:port[-port]]``, IPv6 VIPs in brackets."""
    if not isinstance(text, str):
        raise BadRequest(f"mark match {text!r} must be a string 'proto:VIP[:port[-port]]'")
    proto, sep, rest = text.partition(":")
    if not sep or proto not in PROTOCOLS:
        raise BadRequest(f"mark match {text!r} must start with tcp: or udp:")
    if rest.startswith("["):
        end = rest.find("]")
        if end < 0:
            raise BadRequest(f"mark match {text!r}: unterminated IPv6 address")
        addr_text, ports = rest[:end + 1], rest[end + 1:]
        if ports and not ports.startswith(":"):
            raise BadRequest(f"mark match {text!r} must be 'proto:VIP[:port[-port]]'")
        ports = ports[1:]
    else:
        addr_text, _, ports = rest.partition(":")
    addr = parse_forwarding_ip(addr_text, f"mark match {text!r}: address")
    lo, hi = 0, 65535
    if ports:
        first, dash, last = ports.partition("-")
        try:
            lo = int(first)
            hi = int(last) if dash else lo
        except ValueError:
            raise BadRequest(f"mark match {text!r}: port range {ports!r} is not numeric") from None
        check_port(lo, f"mark match {text!r}:")
        check_port(hi, f"mark match {text!r}:")
        if lo > hi:
            raise BadRequest(f"mark match {text!r}: port range {lo}-{hi} is reversed")
    return MarkMatch(proto, addr, lo, hi)


@dataclass
class FirewallMark:
    mark: int
    matches: list
    name: str = ""

    def to_dict(self):
        return {"mark": self.mark, "name": self.name,
                "matches": [m.describe() for m in self.matches]}
