"""Fragments rewritten in the controller: checksums as if the datagram had
been rewritten whole (lvs_app/fragments.py)."""

import socket
import struct

import pytest
from ryu.ofproto import ofproto_v1_3_parser as parser

from lvs_app import packet as pkt
from lvs_app.fragments import Fragments, rewrite_fragment, without_ports
from lvs_app.ftp import checksum

PAYLOAD = bytes(range(256)) * 12


def transport(proto, src, dst, sport, dport, payload):
    if proto == pkt.PROTO_UDP:
        seg = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
        at = 6
    else:
        seg = struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, 0x18, 65535, 0, 0) + payload
        at = 16
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, proto,
                                                                         len(seg))
    csum = checksum(pseudo + seg) or (0xFFFF if proto == pkt.PROTO_UDP else 0)
    return seg[:at] + struct.pack("!H", csum) + seg[at + 2:]


def fragment(proto, src, dst, chunk, offset, more):
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(chunk), 77,
                     (0x2000 if more else 0) | offset // 8, 64, proto, 0,
                     socket.inet_aton(src), socket.inet_aton(dst))
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    return b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + ip + chunk


@pytest.mark.parametrize("proto", [pkt.PROTO_UDP, pkt.PROTO_TCP])
def test_a_rewritten_first_fragment_carries_the_whole_datagrams_checksum(proto):
    name = "udp" if proto == pkt.PROTO_UDP else "tcp"
    whole = transport(proto, "10.0.0.1", "10.0.0.100", 43000, 80, PAYLOAD)
    frame = fragment(proto, "10.0.0.1", "10.0.0.100", whole[:1480], 0, more=True)
    actions = [parser.OFPActionSetField(eth_dst="02:00:0a:00:00:0b"),
               parser.OFPActionSetField(ipv4_dst="10.0.0.11"),
               parser.OFPActionSetField(**{f"{name}_dst": 8080}), parser.OFPActionOutput(4)]
    new, rest = rewrite_fragment(frame, actions, first=True)
    assert [type(a).__name__ for a in rest] == ["OFPActionSetField", "OFPActionOutput"]
    assert rest[0].key == "eth_dst"                       # left to the switch
    want = transport(proto, "10.0.0.1", "10.0.0.11", 43000, 8080, PAYLOAD)
    assert new[34:34 + 1480] == want[:1480]               # ports and checksum
    assert new[30:34] == socket.inet_aton("10.0.0.11") and checksum(new[14:34]) == 0


def test_a_later_fragment_gets_its_address_and_nothing_in_its_payload_changes():
    whole = transport(pkt.PROTO_UDP, "10.0.0.11", "10.0.0.1", 53, 5353, PAYLOAD)
    frame = fragment(pkt.PROTO_UDP, "10.0.0.11", "10.0.0.1", whole[1480:], 1480, more=False)
    actions = without_ports([parser.OFPActionSetField(ipv4_src="10.0.0.100"),
                             parser.OFPActionSetField(udp_src=53),
                             parser.OFPActionSetField(eth_src="02:1f:0a:00:00:64")])
    new, rest = rewrite_fragment(frame, actions, first=False)
    assert [a.key for a in rest] == ["eth_src"]
    assert new[34:] == frame[34:]                          # the payload is untouched
    assert new[26:30] == socket.inet_aton("10.0.0.100") and checksum(new[14:34]) == 0


def test_udp_without_a_checksum_keeps_none():
    seg = struct.pack("!HHHH", 1, 2, 8 + 100, 0) + bytes(100)
    frame = fragment(pkt.PROTO_UDP, "10.0.0.1", "10.0.0.100", seg, 0, more=True)
    new, _ = rewrite_fragment(frame, [parser.OFPActionSetField(ipv4_dst="10.0.0.11")], True)
    assert new[40:42] == b"\x00\x00"


def test_a_later_fragment_without_its_first_is_dropped_and_counted():
    fragments = Fragments()
    p = pkt.parse(fragment(pkt.PROTO_UDP, "10.0.0.1", "10.0.0.100", bytes(64), 1480, False))
    assert p.frag == pkt.LATER_FRAGMENT and (p.sport, p.dport) == (0, 0)
    assert fragments.later(1, p, b"", now=0.0) is None and fragments.dropped == 1
