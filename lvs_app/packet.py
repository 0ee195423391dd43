"""Just enough packet parsing for the PacketIn hot path, by byte offsets.

``ryu.lib.packet`` builds an object per header and costs most of a PacketIn's
time; the director needs a dozen fields, read straight from ``msg.data``.
Also builds the ARP and Neighbour Discovery frames the director sends
(answers for VIPs, questions to find real servers).

Addresses are integers for both families.  An IPv4 address is below 2**32;
an IPv6 one is not, because the IPv4-compatible block ``::/96`` (deprecated
by RFC 4291) is refused in services and treated as martian in packets, so
:func:`is_v6` needs no other context.

IPv6 extension headers: hop-by-hop, routing and destination options headers
are skipped to reach the transport header (as Open vSwitch does when it
matches ports); a fragment header makes a fragment, as IPv4's flags do; AH,
ESP and anything else end the walk (proto is that header's number).
"""

import ipaddress
import struct
from typing import NamedTuple

ETH_IP, ETH_ARP, ETH_VLAN, ETH_IPV6 = 0x0800, 0x0806, 0x8100, 0x86DD
IP_TYPES = (ETH_IP, ETH_IPV6)
ETH_HEADER = 14            # bytes of an untagged Ethernet header (IPVS counts IP bytes)
ETH_LLDP = 0x88CC          # link discovery (ryu.topology)
PROTO_TCP, PROTO_UDP, PROTO_ICMPV6 = 6, 17, 58
ND_SOLICIT, ND_ADVERT = 135, 136            # ICMPv6 Neighbor Solicitation / Advertisement
_EXT_SKIP = frozenset({0, 43, 60})          # hop-by-hop, routing, destination options
_EXT_FRAGMENT = 44
V4_LIMIT = 1 << 32                          # addresses from here on are IPv6
TCP_FIN, TCP_SYN, TCP_RST, TCP_ACK = 0x001, 0x002, 0x004, 0x010
NOT_FRAGMENT, FIRST_FRAGMENT, LATER_FRAGMENT = 0, 1, 2
IP_FRAG_ANY, IP_FRAG_LATER = 1, 2          # OVS's ip_frag match bits
ARP_REQUEST, ARP_REPLY = 1, 2
BROADCAST = b"\xff" * 6


class Packet(NamedTuple):
    eth_dst: bytes
    eth_src: bytes
    eth_type: int
    ip_src: int = 0            # addresses as integers (ARP: sender/target protocol address)
    ip_dst: int = 0
    proto: int = 0             # IP protocol (IPv6: after extension headers); ARP: the opcode
    sport: int = 0             # ICMPv6: the message type
    dport: int = 0
    tcp_flags: int = 0
    l4_offset: int = 0         # where the TCP/UDP header starts in the frame
    payload_offset: int = 0    # where the TCP/UDP payload starts
    arp_sha: bytes = b""
    frag: int = 0              # NOT_FRAGMENT, FIRST_FRAGMENT or LATER_FRAGMENT
    ip_id: int = 0             # the IPv4 / IPv6 fragment identification (fragments only)


def parse(data):
    """Parse an Ethernet frame; returns None for anything too short to use."""
    if len(data) < 14:
        return None
    eth_type = (data[12] << 8) | data[13]
    offset = 14
    if eth_type == ETH_VLAN and len(data) >= 18:
        eth_type = (data[16] << 8) | data[17]
        offset = 18
    eth_dst, eth_src = data[0:6], data[6:12]
    if eth_type == ETH_ARP:
        if len(data) < offset + 28:
            return None
        op = (data[offset + 6] << 8) | data[offset + 7]
        spa = int.from_bytes(data[offset + 14:offset + 18], "big")
        tpa = int.from_bytes(data[offset + 24:offset + 28], "big")
        return Packet(eth_dst, eth_src, eth_type, spa, tpa, op,
                      arp_sha=data[offset + 8:offset + 14])
    if eth_type == ETH_IPV6:
        return _parse_v6(data, offset, eth_dst, eth_src)
    if eth_type != ETH_IP or len(data) < offset + 20:
        return Packet(eth_dst, eth_src, eth_type)
    ihl = (data[offset] & 0x0F) * 4
    total = (data[offset + 2] << 8) | data[offset + 3]
    if ihl < 20 or total < ihl or offset + total > len(data):
        return None             # a header that lies about its lengths: not ours to forward
    proto = data[offset + 9]
    src = int.from_bytes(data[offset + 12:offset + 16], "big")
    dst = int.from_bytes(data[offset + 16:offset + 20], "big")
    l4 = offset + ihl
    flags_offset = (data[offset + 6] << 8) | data[offset + 7]
    if flags_offset & 0x1FFF:
        # a later fragment: no transport header, its ports are in the first one
        return Packet(eth_dst, eth_src, eth_type, src, dst, proto, l4_offset=l4,
                      frag=LATER_FRAGMENT, ip_id=(data[offset + 4] << 8) | data[offset + 5])
    p = _transport(data, len(data), eth_dst, eth_src, eth_type, src, dst, proto, l4)
    if flags_offset & 0x2000:             # MF at offset 0: the first fragment
        return p._replace(frag=FIRST_FRAGMENT, ip_id=(data[offset + 4] << 8) | data[offset + 5])
    return p


def ip_length(data):
    """The length of a frame's IP packet from its header (IPv4's total
    length, IPv6's 40 + payload length): what IPVS counts, without the
    Ethernet header, a VLAN tag or the padding of a short frame.  Anything
    else counts its bytes past an untagged Ethernet header.  ``data`` is a
    frame :func:`parse` accepted."""
    eth_type, offset = (data[12] << 8) | data[13], 14
    if eth_type == ETH_VLAN:
        eth_type, offset = (data[16] << 8) | data[17], 18
    if eth_type == ETH_IP:
        return (data[offset + 2] << 8) | data[offset + 3]
    if eth_type == ETH_IPV6:
        return 40 + ((data[offset + 4] << 8) | data[offset + 5])
    return len(data) - ETH_HEADER


def _transport(data, end, eth_dst, eth_src, eth_type, src, dst, proto, l4):
    """The Packet of an IP packet whose transport header starts at ``l4``
    (``end``: where the IP packet ends): ports and flags for TCP and UDP."""
    if l4 + 4 > end or proto not in (PROTO_TCP, PROTO_UDP):
        return Packet(eth_dst, eth_src, eth_type, src, dst, proto, l4_offset=l4)
    sport = (data[l4] << 8) | data[l4 + 1]
    dport = (data[l4 + 2] << 8) | data[l4 + 3]
    if proto != PROTO_TCP:
        return Packet(eth_dst, eth_src, eth_type, src, dst, proto, sport, dport, 0, l4, l4 + 8)
    if l4 + 14 > end:
        return Packet(eth_dst, eth_src, eth_type, src, dst, proto, sport, dport, l4_offset=l4)
    flags = ((data[l4 + 12] & 0x01) << 8) | data[l4 + 13]
    return Packet(eth_dst, eth_src, eth_type, src, dst, proto, sport, dport, flags, l4,
                  l4 + (data[l4 + 12] >> 4) * 4)


def _parse_v6(data, offset, eth_dst, eth_src):
    if len(data) < offset + 40:
        return Packet(eth_dst, eth_src, ETH_IPV6)
    end = offset + 40 + ((data[offset + 4] << 8) | data[offset + 5])
    if end > len(data):
        return None             # a payload length that lies: not ours to forward
    src = int.from_bytes(data[offset + 8:offset + 24], "big")
    dst = int.from_bytes(data[offset + 24:offset + 40], "big")
    proto = data[offset + 6]
    l4 = offset + 40
    frag, ident = NOT_FRAGMENT, 0
    while proto in _EXT_SKIP or proto == _EXT_FRAGMENT:
        if l4 + 8 > end:
            return None
        if proto == _EXT_FRAGMENT:
            off_flags = (data[l4 + 2] << 8) | data[l4 + 3]
            ident = int.from_bytes(data[l4 + 4:l4 + 8], "big")
            proto = data[l4]
            l4 += 8
            if off_flags & 0xFFF8:
                return Packet(eth_dst, eth_src, ETH_IPV6, src, dst, proto, l4_offset=l4,
                              frag=LATER_FRAGMENT, ip_id=ident)
            if off_flags & 1:
                frag = FIRST_FRAGMENT
            continue
        proto, l4 = data[l4], l4 + (data[l4 + 1] + 1) * 8
    if proto == PROTO_ICMPV6 and l4 + 4 <= end:
        return Packet(eth_dst, eth_src, ETH_IPV6, src, dst, proto, data[l4], data[l4 + 1],
                      l4_offset=l4, payload_offset=l4 + 4)
    p = _transport(data, end, eth_dst, eth_src, ETH_IPV6, src, dst, proto, l4)
    if frag:
        return p._replace(frag=frag, ip_id=ident)
    return p


def tcp_seq(data, p):
    """The sequence number of TCP segment ``p`` (parsed from ``data``)."""
    at = p.l4_offset + 4
    return int.from_bytes(data[at:at + 4], "big")


def is_v6(address):
    """True for an IPv6 address given as an integer (see the module's note)."""
    return address >= V4_LIMIT


def family(address):
    return 6 if address >= V4_LIMIT else 4


def ip_field(address, side):
    """The OXM field of ``address``'s family: ``ip_field(a, "src")`` ->
    ``ipv4_src`` or ``ipv6_src``."""
    return ("ipv6_" if address >= V4_LIMIT else "ipv4_") + side


def field_address(fields, side):
    """The address (an int) a match's ``ipv4_<side>`` or ``ipv6_<side>`` field
    holds (its value, when masked); KeyError when it has neither."""
    value = fields.get("ipv4_" + side) or fields.get("ipv6_" + side)
    if value is None:
        raise KeyError(side)
    return int(ipaddress.ip_address(value[0] if isinstance(value, tuple) else value))


def eth_type_of(address):
    return ETH_IPV6 if address >= V4_LIMIT else ETH_IP


def mac_text(raw):
    return ":".join(f"{b:02x}" for b in raw)


def mac_bytes(text):
    """``02:00:0a:00:00:01`` -> 6 bytes."""
    return bytes.fromhex(text.replace(":", ""))


def ip_text(value):
    value = int(value)
    return str(ipaddress.IPv6Address(value) if value >= V4_LIMIT else ipaddress.IPv4Address(value))


def arp_frame(op, src_mac, src_ip, dst_mac, dst_ip, eth_dst=None):
    """An Ethernet+ARP frame; addresses as bytes (MAC) and int/ipaddress (IP)."""
    eth_dst = eth_dst if eth_dst is not None else dst_mac
    return (eth_dst + src_mac + struct.pack("!H", ETH_ARP)
            + struct.pack("!HHBBH", 1, ETH_IP, 6, 4, op)
            + src_mac + int(src_ip).to_bytes(4, "big")
            + dst_mac + int(dst_ip).to_bytes(4, "big")
            + b"\x00" * 18)


def virtual_mac(vip):
    """The MAC that answers ARP (NS) for a VIP: locally administered, from
    the VIP (an IPv6 VIP's low 32 bits)."""
    return b"\x02\x1f" + (int(vip) & 0xFFFFFFFF).to_bytes(4, "big")


def tunnel_mac(server):
    """The MAC a tunnel real server's VXLAN device carries (``02:1e:`` and its
    IPv4 address, or an IPv6 one's low 32 bits): the director addresses the
    inner frame to it, so one device serves every VIP of the server, of
    either family (see the README's tunnel recipe)."""
    return b"\x02\x1e" + (int(server) & 0xFFFFFFFF).to_bytes(4, "big")


DIRECTOR_MAC = b"\x02\x1f\x00\x00\x00\x00"   # source of the director's ARP requests


# -- Neighbour Discovery (RFC 4861) ------------------------------------------------

def link_local(mac):
    """The EUI-64 link-local address (an int) of a MAC."""
    eui = bytes([mac[0] ^ 0x02]) + mac[1:3] + b"\xff\xfe" + mac[3:6]
    return (0xFE80 << 112) | int.from_bytes(eui, "big")


DIRECTOR_LL = link_local(DIRECTOR_MAC)      # source of the director's solicitations
ALL_NODES = 0xFF02 << 112 | 1


def solicited_node(address):
    """(multicast address, its MAC) that a solicitation for ``address`` goes to."""
    low = address & 0xFFFFFF
    return (0xFF02 << 112 | 1 << 32 | 0xFF << 24 | low,
            b"\x33\x33\xff" + low.to_bytes(3, "big"))


def nd_fields(data, p):
    """(target address, link-layer address or None) of an NS or NA ``p``;
    None when the message is too short.  The link-layer address is the
    source one of an NS, the target one of an NA."""
    at = p.l4_offset
    if len(data) < at + 24:
        return None
    target = int.from_bytes(data[at + 8:at + 24], "big")
    want = 1 if p.sport == ND_SOLICIT else 2
    i = at + 24
    while i + 8 <= len(data):
        kind, length = data[i], data[i + 1] * 8
        if length == 0:
            break
        if kind == want and length >= 8:
            return target, bytes(data[i + 2:i + 8])
        i += length
    return target, None


def checksum(data):
    """The Internet checksum (RFC 1071) of ``data``."""
    if len(data) % 2:
        data = bytes(data) + b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def icmpv6_frame(src_mac, dst_mac, src_ip, dst_ip, message):
    """An Ethernet/IPv6 frame (hop limit 255, as ND requires) carrying the
    ICMPv6 ``message`` (its checksum field zero), checksum filled in."""
    src, dst = src_ip.to_bytes(16, "big"), dst_ip.to_bytes(16, "big")
    pseudo = src + dst + struct.pack("!I3xB", len(message), PROTO_ICMPV6)
    csum = checksum(pseudo + message)
    message = message[:2] + struct.pack("!H", csum) + message[4:]
    return (dst_mac + src_mac + struct.pack("!H", ETH_IPV6)
            + struct.pack("!IHBB", 6 << 28, len(message), PROTO_ICMPV6, 255)
            + src + dst + message)


def na_frame(src_mac, target, dst_mac, dst_ip):
    """A solicited, overriding Neighbor Advertisement: ``target`` is at
    ``src_mac``.  To ``dst_ip`` (the solicitation's source; all nodes when
    that was unspecified, as RFC 4861 7.2.4 says, and then not solicited)."""
    flags = 0x20 if dst_ip == 0 else 0x60
    if dst_ip == 0:
        dst_ip, dst_mac = ALL_NODES, b"\x33\x33\x00\x00\x00\x01"
    message = (struct.pack("!BBHB3x", ND_ADVERT, 0, 0, flags) + target.to_bytes(16, "big")
               + b"\x02\x01" + src_mac)
    return icmpv6_frame(src_mac, dst_mac, target, dst_ip, message)


def ns_frame(src_mac, src_ip, target):
    """A Neighbor Solicitation for ``target`` from ``src_ip`` at ``src_mac``,
    to the target's solicited-node multicast group."""
    group, group_mac = solicited_node(target)
    message = (struct.pack("!BBH4x", ND_SOLICIT, 0, 0) + target.to_bytes(16, "big")
               + b"\x01\x01" + src_mac)
    return icmpv6_frame(src_mac, group_mac, src_ip, group, message)
