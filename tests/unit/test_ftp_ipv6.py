"""The FTP helper's pure part on IPv6 control connections (ip_vs_ftp for AF_INET6).

Frames are built here by hand (Ethernet, optional VLAN tag, IPv6 with optional
extension headers, TCP), with their TCP checksum computed by this file's own
one's-complement sum, independently of the module's ``checksum``.
"""

import ipaddress
import struct

import pytest

from lvs_app import ftp

C1 = int(ipaddress.IPv6Address("2001:db8::1"))
VIP = int(ipaddress.IPv6Address("2001:db8::100"))
RS = int(ipaddress.IPv6Address("2001:db8:1::11"))
MAC_A, MAC_B = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")

HOPOPTS, ROUTING, FRAGMENT, DSTOPTS, TCP, UDP = 0, 43, 44, 60, 6, 17
PA, A = 0x18, 0x10


def ones_sum_checksum(data):
    """RFC 1071, written differently from the module's: a byte loop with folding."""
    data = bytes(data) + (b"\0" if len(data) % 2 else b"")
    total = 0
    for i in range(0, len(data), 2):
        total += data[i] << 8 | data[i + 1]
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def tcp6_checksum(src, dst, segment):
    pseudo = (src.to_bytes(16, "big") + dst.to_bytes(16, "big")
              + len(segment).to_bytes(4, "big") + b"\0\0\0" + bytes([TCP]))
    return ones_sum_checksum(pseudo + segment)


def ext_header(next_header, body=b"", segments_left=0, kind=HOPOPTS):
    """One extension header (8 bytes or more) whose next header is ``next_header``."""
    if kind == ROUTING:
        body = bytes([0, segments_left]) + body       # routing type, segments left
    body = body + b"\0" * (-(len(body) + 2) % 8)
    if kind in (HOPOPTS, DSTOPTS) and not body.strip(b"\0"):
        body = b"\x01" + bytes([len(body) - 2]) + b"\0" * (len(body) - 2)   # PadN
    return bytes([next_header, (len(body) + 2) // 8 - 1]) + body


def frame6(src, dst, sport, dport, payload=b"", seq=0, ack=0, flags=PA, options=b"",
           ext=(), last_header=TCP, vlan=None, pad=b"", bad_checksum=False):
    """An Ethernet/IPv6/TCP frame; ``ext`` is a list of (kind, extra) extension
    headers in order, ``extra`` a dict for ext_header (segments_left, body)."""
    doff = 5 + len(options) // 4
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, doff << 4, flags, 65535, 0, 0)
    tcp += options + payload
    csum = tcp6_checksum(src, dst, tcp) ^ (1 if bad_checksum else 0)
    tcp = tcp[:16] + struct.pack("!H", csum) + tcp[18:]
    kinds = [k for k, _ in ext]
    headers = b""
    for n, (kind, extra) in enumerate(ext):
        following = kinds[n + 1] if n + 1 < len(kinds) else last_header
        headers += ext_header(following, kind=kind, **extra)
    first = kinds[0] if kinds else last_header
    ip = struct.pack("!IHBB", 6 << 28, len(headers) + len(tcp), first, 64)
    ip += src.to_bytes(16, "big") + dst.to_bytes(16, "big")
    eth = MAC_B + MAC_A
    if vlan is not None:
        eth += struct.pack("!HH", 0x8100, vlan)
    return eth + struct.pack("!H", 0x86DD) + ip + headers + tcp + pad


def server(payload=b"", seq=5000, ack=1000, flags=PA, **extra):
    """From the real server's control port to the client (before NAT)."""
    return frame6(RS, C1, 21, 40000, payload, seq, ack, flags, **extra)


def client(payload=b"", seq=1000, ack=5000, flags=PA, **extra):
    return frame6(C1, VIP, 40000, 21, payload, seq, ack, flags, **extra)


def fields(frame):
    seg = ftp.segment(frame)
    return seg.seq, seg.ack, seg.payload(frame)


def independent_ok(frame):
    """The frame's payload length and TCP checksum, checked without the module."""
    l3 = 14 if frame[12:14] == b"\x86\xdd" else 18
    plen = struct.unpack_from("!H", frame, l3 + 4)[0]
    assert len(frame) == l3 + 40 + plen
    seg = ftp.segment(frame)
    src = int.from_bytes(frame[l3 + 8:l3 + 24], "big")
    dst = int.from_bytes(frame[l3 + 24:l3 + 40], "big")
    return tcp6_checksum(src, dst, frame[seg.l4:]) == 0


EPSV_229 = b"229 Entering Extended Passive Mode (|||50000|)\r\n"


# -- frames ---------------------------------------------------------------------

def test_segment_ipv6_plain_and_vlan():
    frame = server(b"220 hi\r\n", seq=7, ack=9)
    seg = ftp.segment(frame)
    assert (seg.l3, seg.l4, seg.data, seg.end) == (14, 54, 74, 82)
    assert (seg.seq, seg.ack, seg.flags, seg.family) == (7, 9, PA, ftp.IPV6)
    assert seg.payload(frame) == b"220 hi\r\n"
    tagged = server(b"220 hi\r\n", vlan=7, pad=b"\0" * 4)
    seg = ftp.segment(tagged)
    assert (seg.l3, seg.l4, seg.end) == (18, 58, 86) and seg.payload(tagged) == b"220 hi\r\n"
    assert ftp.segment(client(b"x")).family == ftp.IPV6


@pytest.mark.parametrize("ext, l4", [
    ([(HOPOPTS, {})], 54 + 8),
    ([(HOPOPTS, {"body": b"\x01\x0a" + b"\0" * 10})], 54 + 16),      # a longer one
    ([(DSTOPTS, {})], 54 + 8),
    ([(ROUTING, {"segments_left": 0})], 54 + 8),
    ([(HOPOPTS, {}), (ROUTING, {}), (DSTOPTS, {})], 54 + 24),
])
def test_segment_ipv6_skips_hop_by_hop_routing_and_destination_options(ext, l4):
    frame = server(b"229 x\r\n", ext=ext)
    seg = ftp.segment(frame)
    assert seg.l4 == l4 and seg.data == l4 + 20 and seg.end == len(frame)
    assert seg.payload(frame) == b"229 x\r\n"
    assert ftp.checksums_ok(frame) and independent_ok(frame)


@pytest.mark.parametrize("frame", [
    server(b"x", ext=[(FRAGMENT, {})]),                                 # a fragment header
    server(b"x", ext=[(HOPOPTS, {}), (FRAGMENT, {})]),
    server(b"x", ext=[(ROUTING, {"segments_left": 1})]),                # not there yet
    server(b"x", last_header=UDP),
    server(b"x")[:-1],                                                  # truncated
    server(b"x")[:14 + 39],
])
def test_segment_ipv6_not_a_segment(frame):
    assert ftp.segment(frame) is None
    assert not ftp.checksums_ok(frame)


def test_checksums_ok_ipv6():
    assert ftp.checksums_ok(server(b"230 ok\r\n"))
    assert ftp.checksums_ok(server(b"odd\r\n", ext=[(HOPOPTS, {})]))     # odd length
    assert not ftp.checksums_ok(server(b"230 ok\r\n", bad_checksum=True))
    frame = bytearray(server(b"230 ok\r\n"))
    frame[14 + 8] ^= 0x01                     # the source address is in the pseudo-header
    assert not ftp.checksums_ok(bytes(frame))


def test_rebuild_ipv6_gives_the_hand_built_frame():
    frame = server(b"150 ok\r\n", seq=5000, ack=1000, pad=b"\0" * 6)
    out = ftp.rebuild(frame, ftp.segment(frame), seq=6000, ack=1500)
    assert out == server(b"150 ok\r\n", seq=6000, ack=1500)
    assert ftp.checksums_ok(out) and independent_ok(out)


@pytest.mark.parametrize("ext", [[], [(HOPOPTS, {})], [(HOPOPTS, {}), (DSTOPTS, {})]])
def test_rebuild_ipv6_with_a_new_payload_length(ext):
    frame = server(b"229 (|2|2001:db8:1::11|50000|)\r\n", ext=ext, vlan=5)
    seg = ftp.segment(frame)
    new = b"229 (|||50000|)\r\n"
    out = ftp.rebuild(frame, seg, payload=new)
    headers = 8 * len(ext)
    assert struct.unpack_from("!H", out, 18 + 4)[0] == headers + 20 + len(new)
    assert len(out) == 18 + 40 + headers + 20 + len(new)
    assert out[:seg.l4] == frame[:18 + 4] + out[18 + 4:18 + 6] + frame[18 + 6:seg.l4]
    assert ftp.checksums_ok(out) and independent_ok(out)
    assert out == server(new, ext=ext, vlan=5)
    assert ftp.segment(out).payload(out) == new


# -- commands and replies on IPv6 -------------------------------------------------

@pytest.mark.parametrize("payload, expected", [
    (b"EPRT |2|2001:db8::1|40001|\r\n", (C1, 40001)),
    (b"eprt !2!2001:DB8:0:0:0:0:0:1!40001!\r\n", (C1, 40001)),
    (b"EPRT |2|::ffff:10.0.0.1|40001|\r\n", (0xFFFF0A000001, 40001)),
    (b"EPRT |1|10.0.0.1|40001|\r\n", None),            # IPv4 on an IPv6 connection
    (b"EPRT |2|fe80::1%eth0|40001|\r\n", None),        # no zone
    (b"EPRT |2|2001:db8::g|40001|\r\n", None),
    (b"EPRT |2||40001|\r\n", None),
    (b"EPRT |2|2001:db8::1|0|\r\n", None),
    (b"EPRT |||40001|\r\n", None),
    (b"PORT 10,0,0,1,156,65\r\n", None),
])
def test_eprt_ipv6(payload, expected):
    assert ftp.parse_eprt(payload, ftp.IPV6) == expected
    if expected is not None:
        assert ftp.parse_eprt(payload) is None          # an IPv4 connection refuses |2|


def test_port_is_not_read_on_ipv6():
    assert ftp.parse_port(b"PORT 10,0,0,1,156,65\r\n", ftp.IPV6) is None
    assert ftp.parse_port(b"PORT 10,0,0,1,156,65\r\n") == (0x0A000001, 40001)


@pytest.mark.parametrize("payload, expected", [
    (b"EPSV\r\n", ftp.EPSV),
    (b"EPSV 2\r\n", ftp.EPSV),
    (b"EPSV 1\r\n", None),
    (b"EPSV ALL\r\n", None),
    (b"PASV\r\n", None),
    (b"PASV\r\nEPSV\r\n", ftp.EPSV),
])
def test_passive_request_ipv6(payload, expected):
    assert ftp.passive_request(payload, ftp.IPV6) == expected


def test_229_on_ipv6():
    reply = ftp.parse_229(b"229 Entering Extended Passive Mode (|2|2001:db8:1::11|50000|)\r\n",
                          ftp.IPV6)
    assert (reply.addr, reply.port) == (RS, 50000)
    assert ftp.parse_229(b"229 (|1|10.0.0.11|50000|)\r\n", ftp.IPV6) is None
    assert ftp.parse_229(b"229 (|2|2001:db8:1::11|50000|)\r\n") is None
    assert ftp.parse_229(EPSV_229, ftp.IPV6).port == 50000


# -- one IPv6 control connection ---------------------------------------------------

def test_eprt_2_is_reported_and_the_frame_untouched():
    control = ftp.FtpControl()
    frame = client(b"EPRT |2|2001:db8::1|40001|\r\n")
    out = control.from_client(frame)
    assert out.frame is frame and out.port == (C1, 40001)
    assert control.mode == ftp.ACTIVE


def test_eprt_1_and_port_on_ipv6_are_ignored():
    control = ftp.FtpControl()
    control.from_client(client(b"EPSV\r\n"))
    for command in (b"EPRT |1|10.0.0.1|40001|\r\n", b"PORT 10,0,0,1,156,65\r\n"):
        frame = client(command)
        out = control.from_client(frame)
        assert out.frame is frame and out.port is None
        assert control.mode == ftp.EPSV          # not an active-mode command here


def test_epsv_then_229_announces_the_port_and_leaves_the_frame_alone():
    control = ftp.FtpControl()
    frame = client(b"EPSV\r\n")
    assert control.from_client(frame).frame is frame and control.mode == ftp.EPSV
    frame = server(EPSV_229)
    out = control.from_server(frame, VIP)
    assert out.frame is frame and out.passive == (None, 50000)
    assert control.mode == ftp.ACTIVE and not control.out_seq.active
    # later frames are not touched either
    later = server(b"150 ok\r\n", seq=5000 + len(EPSV_229))
    assert control.from_server(later, VIP).frame is later
    ack = client(flags=A, seq=1006, ack=5000 + len(EPSV_229) + 8)
    assert control.from_client(ack).frame is ack


def test_pasv_and_227_on_ipv6_are_left_alone():
    control = ftp.FtpControl()
    control.from_client(client(b"PASV\r\n"))
    assert control.mode == ftp.ACTIVE
    frame = server(b"227 Entering Passive Mode (10,0,0,11,195,80).\r\n")
    out = control.from_server(frame, VIP)
    assert out.frame is frame and out.passive is None
    # even in a mode that expected one (an IPv4 PASV state), a 227 on IPv6 is not read
    control.mode = ftp.PASV
    out = control.from_server(frame, VIP)
    assert out.frame is frame and out.passive is None


def test_229_with_an_ipv6_address_shrinks_and_shifts_the_rest():
    control = ftp.FtpControl()
    control.from_client(client(b"EPSV 2\r\n", seq=1000))
    reply = b"229 Entering Extended Passive Mode (|2|2001:db8:1::11|50000|)\r\n"
    out = control.from_server(server(reply, seq=5000, ack=1008), VIP)
    assert out.passive == (RS, 50000)
    assert out.frame == server(EPSV_229, seq=5000, ack=1008)
    assert ftp.checksums_ok(out.frame) and independent_ok(out.frame)
    diff = len(EPSV_229) - len(reply)
    assert control.out_seq.delta == diff < 0
    # the server's next segment moves; the client's ACK and SACK come back
    nxt = 5000 + len(reply)
    out = control.from_server(server(b"150 ok\r\n", seq=nxt, ack=1008,
                                     ext=[(HOPOPTS, {})]), VIP)
    assert out.frame == server(b"150 ok\r\n", seq=nxt + diff, ack=1008, ext=[(HOPOPTS, {})])
    assert ftp.checksums_ok(out.frame) and independent_ok(out.frame)
    options = b"\x01\x01\x05\x0a" + struct.pack("!II", nxt + diff + 100, nxt + diff + 200)
    out = control.from_client(client(flags=A, seq=1008, ack=nxt + diff + 8, options=options))
    expected = b"\x01\x01\x05\x0a" + struct.pack("!II", nxt + 100, nxt + 200)
    assert out.frame == client(flags=A, seq=1008, ack=nxt + 8, options=expected)
    assert ftp.checksums_ok(out.frame) and independent_ok(out.frame)
