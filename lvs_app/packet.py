"""Just enough packet parsing for the PacketIn hot path, by byte offsets.

``ryu.lib.packet`` builds an object per header and costs most of a PacketIn's
time; the director needs a dozen fields, read straight from ``msg.data``.
Also builds the ARP frames the director sends (replies for VIPs, requests
to find real servers).
"""

import ipaddress
import struct
from typing import NamedTuple

ETH_IP, ETH_ARP, ETH_VLAN, ETH_IPV6 = 0x0800, 0x0806, 0x8100, 0x86DD
ETH_HEADER = 14            # bytes of an untagged Ethernet header (IPVS counts IP bytes)
ETH_LLDP = 0x88CC          # link discovery (ryu.topology)
PROTO_TCP, PROTO_UDP = 6, 17
TCP_FIN, TCP_SYN, TCP_RST, TCP_ACK = 0x001, 0x002, 0x004, 0x010
NOT_FRAGMENT, FIRST_FRAGMENT, LATER_FRAGMENT = 0, 1, 2
IP_FRAG_ANY, IP_FRAG_LATER = 1, 2          # OVS's ip_frag match bits
ARP_REQUEST, ARP_REPLY = 1, 2
BROADCAST = b"\xff" * 6


class Packet(NamedTuple):
    eth_dst: bytes
    eth_src: bytes
    eth_type: int
    ip_src: int = 0            # IPv4 as integers (ARP: sender/target protocol address)
    ip_dst: int = 0
    proto: int = 0             # IP protocol; ARP: the ARP opcode
    sport: int = 0
    dport: int = 0
    tcp_flags: int = 0
    l4_offset: int = 0         # where the TCP/UDP header starts in the frame
    payload_offset: int = 0    # where the TCP/UDP payload starts
    arp_sha: bytes = b""
    frag: int = 0              # NOT_FRAGMENT, FIRST_FRAGMENT or LATER_FRAGMENT
    ip_id: int = 0             # the IPv4 identification (read for fragments only)


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
    if len(data) < l4 + 4 or proto not in (PROTO_TCP, PROTO_UDP):
        p = Packet(eth_dst, eth_src, eth_type, src, dst, proto, l4_offset=l4)
    else:
        sport = (data[l4] << 8) | data[l4 + 1]
        dport = (data[l4 + 2] << 8) | data[l4 + 3]
        if proto != PROTO_TCP:
            p = Packet(eth_dst, eth_src, eth_type, src, dst, proto, sport, dport, 0, l4, l4 + 8)
        elif len(data) < l4 + 14:
            p = Packet(eth_dst, eth_src, eth_type, src, dst, proto, sport, dport, l4_offset=l4)
        else:
            flags = ((data[l4 + 12] & 0x01) << 8) | data[l4 + 13]
            p = Packet(eth_dst, eth_src, eth_type, src, dst, proto, sport, dport, flags, l4,
                       l4 + (data[l4 + 12] >> 4) * 4)
    if flags_offset & 0x2000:             # MF at offset 0: the first fragment
        return p._replace(frag=FIRST_FRAGMENT, ip_id=(data[offset + 4] << 8) | data[offset + 5])
    return p


def mac_text(raw):
    return ":".join(f"{b:02x}" for b in raw)


def mac_bytes(text):
    """``02:00:0a:00:00:01`` -> 6 bytes."""
    return bytes.fromhex(text.replace(":", ""))


def ip_text(value):
    return str(ipaddress.IPv4Address(value))


def arp_frame(op, src_mac, src_ip, dst_mac, dst_ip, eth_dst=None):
    """An Ethernet+ARP frame; addresses as bytes (MAC) and int/ipaddress (IP)."""
    eth_dst = eth_dst if eth_dst is not None else dst_mac
    return (eth_dst + src_mac + struct.pack("!H", ETH_ARP)
            + struct.pack("!HHBBH", 1, ETH_IP, 6, 4, op)
            + src_mac + int(src_ip).to_bytes(4, "big")
            + dst_mac + int(dst_ip).to_bytes(4, "big")
            + b"\x00" * 18)


def virtual_mac(vip):
    """The MAC that answers ARP for a VIP: locally administered, from the VIP."""
    return b"\x02\x1f" + int(vip).to_bytes(4, "big")


def tunnel_mac(server):
    """The MAC a tunnel real server's VXLAN device carries (``02:1e:`` and its
    IPv4 address): the director addresses the inner frame to it, so one
    device serves every VIP of the server (see the README's tunnel recipe)."""
    return b"\x02\x1e" + int(server).to_bytes(4, "big")


DIRECTOR_MAC = b"\x02\x1f\x00\x00\x00\x00"   # source of the director's ARP requests
