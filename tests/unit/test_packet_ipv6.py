"""IPv6 on the hot path: parsing (extension headers, fragments, ND), the
frames the director builds, the 5-tuple match and match keys."""

import ipaddress
import struct

from ryu.lib.packet import icmpv6, ipv6
from ryu.lib.packet import packet as rpacket
from ryu.ofproto import ofproto_v1_3_parser as parser

from lvs_app import ofmsg
from lvs_app import packet as pkt

SRC, DST = "fd00::10:0:0:1", "fd00::10:0:0:100"
MAC_A, MAC_B = bytes.fromhex("020000000001"), bytes.fromhex("021f00000100")


def a(text):
    return int(ipaddress.IPv6Address(text))


def frame(next_header, body, src=SRC, dst=DST):
    return (MAC_B + MAC_A + b"\x86\xdd"
            + struct.pack("!IHBB", 6 << 28, len(body), next_header, 64)
            + ipaddress.IPv6Address(src).packed + ipaddress.IPv6Address(dst).packed + body)


def tcp_header(sport=40000, dport=80, flags=0x02):
    return struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, flags, 65535, 0, 0)


def ext(next_header, length_units=0):
    """An extension header (hop-by-hop / destination options style) of 8*(n+1) bytes."""
    return bytes([next_header, length_units]) + b"\x01\x04\x00\x00\x00\x00" \
        + b"\x00" * (8 * length_units)


def test_a_tcp_syn_over_ipv6():
    p = pkt.parse(frame(6, tcp_header()))
    assert (p.eth_type, p.ip_src, p.ip_dst, p.proto, p.sport, p.dport, p.tcp_flags) == \
        (pkt.ETH_IPV6, a(SRC), a(DST), 6, 40000, 80, pkt.TCP_SYN)
    assert (p.l4_offset, p.payload_offset, p.frag) == (54, 74, pkt.NOT_FRAGMENT)
    assert pkt.is_v6(p.ip_src) and pkt.family(p.ip_dst) == 6 and not pkt.is_v6(0x0A000001)


def test_hop_by_hop_and_destination_options_are_skipped_to_the_ports():
    body = ext(60) + ext(6, 1) + tcp_header(41000, 443)
    p = pkt.parse(frame(0, body))
    assert (p.proto, p.sport, p.dport, p.l4_offset) == (6, 41000, 443, 54 + 8 + 16)


def test_fragments_first_and_later_by_the_fragment_headers_identification():
    first = struct.pack("!BBHI", 17, 0, 0x0001, 0xDEADBEEF) + struct.pack("!HHHH", 5000, 53, 9, 0)
    p = pkt.parse(frame(44, first))
    assert (p.frag, p.ip_id, p.proto, p.sport, p.dport) == (pkt.FIRST_FRAGMENT, 0xDEADBEEF,
                                                            17, 5000, 53)
    later = struct.pack("!BBHI", 17, 0, 1448 << 3, 0xDEADBEEF) + b"x" * 16
    p = pkt.parse(frame(44, later))
    assert (p.frag, p.ip_id, p.proto, p.sport) == (pkt.LATER_FRAGMENT, 0xDEADBEEF, 17, 0)


def test_a_payload_length_that_lies_is_refused():
    data = bytearray(frame(6, tcp_header()))
    data[18:20] = struct.pack("!H", 400)
    assert pkt.parse(bytes(data)) is None


def test_neighbour_solicitation_and_advertisement_round_trip():
    target = a("fd00::10:0:0:11")
    ns = pkt.ns_frame(pkt.DIRECTOR_MAC, pkt.DIRECTOR_LL, target)
    p = pkt.parse(ns)
    assert (p.proto, p.sport) == (pkt.PROTO_ICMPV6, pkt.ND_SOLICIT)
    assert pkt.nd_fields(ns, p) == (target, pkt.DIRECTOR_MAC)
    assert ns[:6] == bytes.fromhex("3333ff000011")             # solicited-node group
    assert pkt.ip_text(p.ip_dst) == "ff02::1:ff00:11"
    assert pkt.ip_text(pkt.DIRECTOR_LL) == "fe80::1f:ff:fe00:0"
    na = pkt.na_frame(MAC_B, a(DST), MAC_A, a(SRC))
    p = pkt.parse(na)
    assert (p.sport, p.ip_src, p.ip_dst) == (pkt.ND_ADVERT, a(DST), a(SRC))
    assert pkt.nd_fields(na, p) == (a(DST), MAC_B)
    # ryu reads the same message, and the checksum is the one it computes
    parsed = rpacket.Packet(na)
    msg, ip = parsed.get_protocol(icmpv6.icmpv6), parsed.get_protocol(ipv6.ipv6)
    assert (msg.data.dst, msg.data.res, ip.hop_limit) == (DST, 0x60 >> 5, 255)   # S and O
    again = icmpv6.icmpv6(msg.type_, msg.code, 0, msg.data).serialize(bytearray(), ip)
    assert struct.unpack("!H", again[2:4])[0] == msg.csum


def test_an_advertisement_to_an_unspecified_source_goes_to_all_nodes_unsolicited():
    p = pkt.parse(pkt.na_frame(MAC_B, a(DST), MAC_A, 0))
    assert pkt.ip_text(p.ip_dst) == "ff02::1"
    na = pkt.na_frame(MAC_B, a(DST), MAC_A, 0)
    assert na[:6] == bytes.fromhex("333300000001") and na[54 + 4] == 0x20


def test_virtual_and_tunnel_macs_take_the_low_32_bits():
    assert pkt.virtual_mac(a(DST)) == bytes.fromhex("021f00000100")
    assert pkt.tunnel_mac(a("fd00::10:0:0:13")) == bytes.fromhex("021e00000013")
    assert pkt.virtual_mac(0x0A000064) == bytes.fromhex("021f0a000064")


def test_the_packed_ipv6_five_tuple_is_what_ryu_reads_back():
    m = ofmsg.five_tuple_match("udp", a(SRC), 5000, a(DST), 53)
    buf = bytearray()
    length = m.serialize(buf, 0)
    assert length == 72 and len(buf) == 72
    back = parser.OFPMatch.parser(bytes(buf), 0)
    assert dict(back._fields2) == {"eth_type": pkt.ETH_IPV6, "ip_proto": 17, "ipv6_src": SRC,
                                   "ipv6_dst": DST, "udp_src": 5000, "udp_dst": 53}
    assert ofmsg.match_key(back) == ofmsg.match_key(m)


def test_match_keys_spell_ipv6_one_way_and_normalise_prefixes():
    long = parser.OFPMatch(eth_type=pkt.ETH_IPV6, ipv6_src=("fd00:0:0:0::5", "ffff:ffff:ffff:ffff::"))
    short = {"eth_type": pkt.ETH_IPV6, "ipv6_src": ("fd00::", "ffff:ffff:ffff:ffff::")}
    assert ofmsg.match_key(long) == ofmsg.match_key(short)
    full = {"eth_type": pkt.ETH_IPV6, "ipv6_src": ("fd00::5", "ffff:" * 7 + "ffff")}
    assert ofmsg.match_key(full) == (("eth_type", pkt.ETH_IPV6), ("ipv6_src", "fd00::5"))
