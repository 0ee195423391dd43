"""In-band health probes: frames, the frame-level TCP client, and every checker.

Checksums are verified with a reference sum written out here, and one frame
against a vector whose checksums were worked out by hand.  The checkers run
against a scripted host (:class:`Host`) that answers frames as a small
TCP/UDP/ICMP stack would; SSL_GET talks to a real server-side ``SSLObject``
with a certificate made by ``openssl`` for the test.  Time is a number
handed to the probes.
"""

import hashlib
import ipaddress
import random
import ssl
import struct
import subprocess

import pytest

from lvs_app.health import httpprobe, probes, wire
from lvs_app.health.tcpclient import INITIAL_RTO, TcpClient
from lvs_app.health.wire import ACK, FIN, PSH, RST, SYN
from lvs_app.keepalived.checks import (DnsCheck, HttpCheck, MiscCheck, PingCheck, SmtpCheck,
                                       SslContext, TcpCheck, UdpCheck, Url)
from lvs_app.packet import ARP_REQUEST, arp_frame

DIR_MAC = bytes.fromhex("021f00000000")
RS_MAC = bytes.fromhex("020000000b0b")
DIR_IP = int(ipaddress.IPv4Address("10.0.0.254"))
RS_ADDR = ipaddress.IPv4Address("10.0.0.11")
RS_IP = int(RS_ADDR)
ISN = 7000


# ----------------------------------------------------------------------------
# reference checksums

def ones_sum(data):
    """The 16-bit one's complement sum, word by word (independent of wire.checksum)."""
    total = 0
    for i in range(0, len(data), 2):
        total += data[i] << 8 | (data[i + 1] if i + 1 < len(data) else 0)
        total = (total & 0xFFFF) + (total >> 16)
    return total


def verify_frame(frame):
    """Every checksum of an untagged IPv4 frame adds up (the sums come out 0xFFFF)."""
    ip = frame[14:]
    ihl, total, proto = (ip[0] & 15) * 4, ip[2] << 8 | ip[3], ip[9]
    assert ones_sum(ip[:ihl]) == 0xFFFF, "IPv4 header checksum"
    l4 = ip[ihl:total]
    if proto in (6, 17):
        pseudo = ip[12:20] + bytes([0, proto]) + len(l4).to_bytes(2, "big")
        assert ones_sum(pseudo + l4) == 0xFFFF, "TCP/UDP checksum"
    elif proto == 1:
        assert ones_sum(l4) == 0xFFFF, "ICMP checksum"


def test_checksum_matches_reference():
    rng = random.Random(1)
    for size in list(range(0, 9)) + [63, 64, 1500, 1501]:
        data = rng.randbytes(size)
        assert wire.checksum(data) == ~ones_sum(data) & 0xFFFF


def test_syn_matches_hand_computed_vector():
    frame = wire.build_tcp(DIR_MAC, RS_MAC, 0x0A000001, 0x0A000002, 12345, 80, 1, 0, SYN,
                           ip_ident=0x1234)
    # IPv4 sum 4500+002c+1234+4000+4006+0a00+0001+0a00+0002 = eb69 -> 1496;
    # TCP sum (pseudo header, header, MSS option 0204 05b4) = ac65 -> 539a
    expected = (RS_MAC + DIR_MAC + b"\x08\x00"
                + struct.pack("!BBHHHBBH", 0x45, 0, 44, 0x1234, 0x4000, 64, 6, 0x1496)
                + bytes([10, 0, 0, 1, 10, 0, 0, 2])
                + struct.pack("!HHIIBBHHH", 12345, 80, 1, 0, 0x60, SYN, 0xFFFF, 0x539A, 0)
                + bytes([2, 4, 0x05, 0xB4]))
    assert frame == expected


@pytest.mark.parametrize("size", [0, 1, 2, 3, 1000, 1459])
def test_built_frames_have_valid_checksums(size):
    payload = random.Random(size).randbytes(size)
    verify_frame(wire.build_tcp(DIR_MAC, RS_MAC, DIR_IP, RS_IP, 40000, 80, 2 ** 32 - 5,
                                99, PSH | ACK, payload=payload))
    verify_frame(wire.build_udp(DIR_MAC, RS_MAC, DIR_IP, RS_IP, 40000, 53, payload))
    verify_frame(wire.build_icmp_echo(DIR_MAC, RS_MAC, DIR_IP, RS_IP, 7, 1, payload))


def test_tcp_frames_are_the_bytes_build_tcp_makes():
    """The pre-built path patches only ports, numbers, flags, lengths and checksums."""
    rng = random.Random(11)
    for i in range(3000):
        src_mac, dst_mac = rng.randbytes(6), rng.randbytes(6)
        src_ip, dst_ip = rng.getrandbits(32), rng.getrandbits(32)
        sport, dport = rng.getrandbits(16), rng.getrandbits(16)
        seq, ack = rng.getrandbits(33), rng.getrandbits(33)       # masked to 32 bits
        flags = rng.choice([SYN, RST | ACK, RST, ACK, PSH | ACK, FIN | ACK, SYN | ACK,
                            rng.getrandbits(8)])
        window = rng.choice([0, 65535, 70000, rng.getrandbits(16)])
        payload = rng.randbytes(rng.choice([0, 1, 2, 3, 64, 1459]))
        ident = rng.getrandbits(17)
        frames = wire.TcpFrames(src_mac, dst_mac, src_ip, dst_ip, dport)
        frame = frames.build(sport, seq, ack, flags, window, payload, ip_ident=ident)
        assert frame == wire.build_tcp(src_mac, dst_mac, src_ip, dst_ip, sport, dport, seq,
                                       ack, flags, window, payload, ip_ident=ident), i
        verify_frame(frame)


def test_tcp_frames_follow_the_ip_identification_counter():
    frames = wire.TcpFrames(DIR_MAC, RS_MAC, DIR_IP, RS_IP, 80)
    first, second = frames.build(40000, 1, 0, SYN), frames.build(40000, 1, 0, SYN)
    ident = struct.unpack_from("!H", first, 18)[0]
    assert struct.unpack_from("!H", second, 18)[0] == (ident + 1) & 0xFFFF
    assert second == wire.build_tcp(DIR_MAC, RS_MAC, DIR_IP, RS_IP, 40000, 80, 1, 0, SYN,
                                    ip_ident=ident + 1)
    verify_frame(first)
    verify_frame(second)


def test_tcp_frames_are_kept_per_path():
    frames = wire.tcp_frames(DIR_MAC, RS_MAC, DIR_IP, RS_IP, 80)
    assert wire.tcp_frames(DIR_MAC, bytearray(RS_MAC), DIR_IP, RS_ADDR, 80) is frames
    assert wire.tcp_frames(DIR_MAC, RS_MAC, DIR_IP, RS_IP, 81) is not frames
    assert wire.tcp_frames(DIR_MAC, DIR_MAC, DIR_IP, RS_IP, 80) is not frames


def test_udp_checksum_zero_is_sent_as_ffff():
    # the checksum field c of a 2-byte zero payload, put in as the payload, makes the sum 0
    first = wire.build_udp(DIR_MAC, RS_MAC, DIR_IP, RS_IP, 1000, 2000, b"\0\0")
    frame = wire.build_udp(DIR_MAC, RS_MAC, DIR_IP, RS_IP, 1000, 2000, first[40:42])
    assert frame[40:42] == b"\xff\xff"
    verify_frame(frame)


# ----------------------------------------------------------------------------
# parsing

def test_parse_tcp_round_trip():
    frame = wire.build_tcp(DIR_MAC, RS_MAC, DIR_IP, RS_IP, 40000, 80, 123, 456, SYN | ACK,
                           window=1000, payload=b"hello")
    seg = wire.parse(frame)
    assert (seg.eth_src, seg.eth_dst, seg.ip_src, seg.ip_dst, seg.proto) == (
        DIR_MAC, RS_MAC, DIR_IP, RS_IP, 6)
    assert (seg.sport, seg.dport, seg.seq, seg.ack, seg.flags, seg.window, seg.mss) == (
        40000, 80, 123, 456, SYN | ACK, 1000, 1460)
    assert seg.payload == b"hello"


def test_parse_honours_data_offset_and_options():
    options = b"\x01\x01\x08\x0a" + b"\0" * 8 + b"\x02\x04\x02\x18"     # NOP NOP TS MSS 536
    seg = wire.parse(wire.build_tcp(RS_MAC, DIR_MAC, RS_IP, DIR_IP, 80, 40000, 1, 2, ACK,
                                    payload=b"data", options=options))
    assert seg.payload == b"data" and seg.mss == 536


def test_parse_udp_and_icmp_round_trip():
    seg = wire.parse(wire.build_udp(RS_MAC, DIR_MAC, RS_IP, DIR_IP, 53, 40001, b"abc"))
    assert (seg.proto, seg.sport, seg.dport, seg.payload) == (17, 53, 40001, b"abc")
    seg = wire.parse(wire.build_icmp_echo(RS_MAC, DIR_MAC, RS_IP, DIR_IP, 77, 3, b"xyz",
                                          reply=True))
    assert (seg.proto, seg.icmp_type, seg.ident, seg.seq, seg.payload) == (1, 0, 77, 3, b"xyz")


def test_parse_icmp_error_describes_the_quoted_packet():
    sent = wire.build_udp(DIR_MAC, RS_MAC, DIR_IP, RS_IP, 40002, 161, b"q" * 40)
    error = wire.build_icmp_error(RS_MAC, DIR_MAC, RS_IP, DIR_IP, 3, 3, sent)
    seg = wire.parse(error)
    assert (seg.icmp_type, seg.icmp_code, seg.orig_proto, seg.orig_src, seg.orig_dst,
            seg.orig_sport, seg.orig_dport) == (3, 3, 17, DIR_IP, RS_IP, 40002, 161)
    echo = wire.build_icmp_echo(DIR_MAC, RS_MAC, DIR_IP, RS_IP, 4242, 1, b"p" * 8)
    seg = wire.parse(wire.build_icmp_error(RS_MAC, DIR_MAC, RS_IP, DIR_IP, 11, 0, echo))
    assert (seg.icmp_type, seg.orig_proto, seg.orig_ident) == (11, 1, 4242)


def test_ethernet_padding_is_not_payload():
    frame = wire.build_tcp(RS_MAC, DIR_MAC, RS_IP, DIR_IP, 80, 40000, 1, 2, ACK)
    assert len(frame) == 54
    assert wire.parse(frame + b"\0" * 6).payload == b""
    udp = wire.build_udp(RS_MAC, DIR_MAC, RS_IP, DIR_IP, 53, 40000, b"x")
    assert wire.parse(udp + b"\xaa" * 17).payload == b"x"


def test_vlan_tagged_frame():
    frame = wire.build_tcp(RS_MAC, DIR_MAC, RS_IP, DIR_IP, 80, 40000, 5, 6, ACK, payload=b"v")
    tagged = frame[:12] + b"\x81\x00\x00\x0a" + frame[12:]
    assert wire.parse(tagged) == wire.parse(frame)


def test_parse_rejects_what_is_not_ours():
    frame = wire.build_tcp(RS_MAC, DIR_MAC, RS_IP, DIR_IP, 80, 40000, 5, 6, ACK, payload=b"v")
    assert wire.parse(arp_frame(ARP_REQUEST, RS_MAC, RS_IP, DIR_MAC, DIR_IP)) is None
    assert wire.parse(frame[:12] + b"\x86\xdd" + frame[14:]) is None       # IPv6
    assert wire.parse(frame[:-1]) is None                                  # truncated
    assert wire.parse(frame[:14 + 20 + 10]) is None
    assert wire.parse(frame[:20] + b"\x20\x01" + frame[22:]) is None       # MF: a fragment
    bad_offset = bytearray(frame)
    bad_offset[14 + 20 + 12] = 0xF0                                        # 60-byte header
    assert wire.parse(bytes(bad_offset)) is None
    assert wire.parse(b"") is None


def test_parse_fuzz_never_raises():
    rng = random.Random(7)
    good = [wire.build_tcp(RS_MAC, DIR_MAC, RS_IP, DIR_IP, 80, 40000, 5, 6, ACK, payload=b"x"),
            wire.build_udp(RS_MAC, DIR_MAC, RS_IP, DIR_IP, 53, 40000, b"y" * 20),
            wire.build_icmp_error(RS_MAC, DIR_MAC, RS_IP, DIR_IP, 3, 3, wire.build_udp(
                DIR_MAC, RS_MAC, DIR_IP, RS_IP, 1, 2, b"z"))]
    parsed = 0
    for _ in range(20000):
        if rng.random() < 0.3:
            data = rng.randbytes(rng.randrange(0, 120))
        else:
            data = bytearray(rng.choice(good))
            for _ in range(rng.randrange(1, 4)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            if rng.random() < 0.3:
                data = data[:rng.randrange(len(data) + 1)]
            data = bytes(data)
        # the checks themselves, without parse()'s safety net, must not raise
        seg = wire._parse(data)
        assert wire.parse(data) == seg
        assert wire._parse_any(data) == seg        # the short way for plain TCP agrees
        if seg is not None:
            parsed += 1
            wire.reply_key(seg)
            wire.reset_for(seg, DIR_MAC)
    assert parsed > 1000          # the mutations do reach the deeper parsers


def syn_ack_with_every_byte_changed():
    """A SYN/ACK (with its MSS option, and padded) with each byte in turn set to
    every value: ``(at, value, frame)``."""
    frame = wire.build_tcp(RS_MAC, DIR_MAC, RS_IP, DIR_IP, 80, 40000, 5, 6, SYN | ACK) + b"\0" * 4
    for at in range(len(frame)):
        for value in range(256):
            yield at, value, frame[:at] + bytes([value]) + frame[at + 1:]


def test_the_short_way_for_plain_tcp_reads_what_the_general_one_reads():
    """Every byte of a SYN/ACK set to every value: the short way for untagged
    IPv4 TCP gives the general parse's answer."""
    short = 0
    for at, value, data in syn_ack_with_every_byte_changed():
        seg = wire._parse(data)
        assert seg == wire._parse_any(data), (at, value)
        short += seg is not None
    assert short > 10000


# ----------------------------------------------------------------------------
# reply keys and resets

def test_reply_keys():
    tcp = wire.parse(wire.build_tcp(RS_MAC, DIR_MAC, RS_IP, DIR_IP, 80, 40000, 1, 2, ACK))
    assert wire.reply_key(tcp) == ("tcp", RS_IP, 80, 40000)
    udp = wire.parse(wire.build_udp(RS_MAC, DIR_MAC, RS_IP, DIR_IP, 53, 40001, b""))
    assert wire.reply_key(udp) == ("udp", RS_IP, 53, 40001)
    echo = wire.parse(wire.build_icmp_echo(RS_MAC, DIR_MAC, RS_IP, DIR_IP, 9, 1, b"",
                                           reply=True))
    assert wire.reply_key(echo) == ("icmp", RS_IP, 9)
    request = wire.build_icmp_echo(RS_MAC, DIR_MAC, RS_IP, DIR_IP, 9, 1, b"")
    assert wire.reply_key(wire.parse(request)) is None


@pytest.mark.parametrize("sent, key", [
    (wire.build_tcp(DIR_MAC, RS_MAC, DIR_IP, RS_IP, 40000, 80, 1, 0, SYN),
     ("tcp", RS_IP, 80, 40000)),
    (wire.build_udp(DIR_MAC, RS_MAC, DIR_IP, RS_IP, 40001, 53, b"q"),
     ("udp", RS_IP, 53, 40001)),
    (wire.build_icmp_echo(DIR_MAC, RS_MAC, DIR_IP, RS_IP, 4242, 1, b"ping"),
     ("icmp", RS_IP, 4242)),
])
def test_icmp_errors_get_the_key_of_what_they_quote(sent, key):
    router = 0x0A0000FE
    error = wire.build_icmp_error(RS_MAC, DIR_MAC, router, DIR_IP, 3, 1, sent)
    assert wire.reply_key(wire.parse(error)) == key


def _rst(seg):
    frame = wire.reset_for(seg, DIR_MAC)
    verify_frame(frame)
    return wire.parse(frame)


def test_reset_for_a_segment_with_ack():
    seg = wire.parse(wire.build_tcp(RS_MAC, DIR_MAC, RS_IP, DIR_IP, 80, 40000, 500, 9000,
                                    PSH | ACK, payload=b"late"))
    rst = _rst(seg)
    assert (rst.flags, rst.seq, rst.ip_src, rst.ip_dst, rst.sport, rst.dport, rst.eth_dst) == (
        RST, 9000, DIR_IP, RS_IP, 40000, 80, RS_MAC)


@pytest.mark.parametrize("flags, payload, ack", [(SYN, b"", 501), (FIN, b"abc", 504),
                                                  (0, b"abcd", 504), (SYN | FIN, b"", 502)])
def test_reset_for_a_segment_without_ack(flags, payload, ack):
    seg = wire.parse(wire.build_tcp(RS_MAC, DIR_MAC, RS_IP, DIR_IP, 80, 40000, 500, 0, flags,
                                    payload=payload))
    rst = _rst(seg)
    assert (rst.flags, rst.seq, rst.ack) == (RST | ACK, 0, ack)


def test_no_reset_for_a_reset_or_udp():
    rst = wire.parse(wire.build_tcp(RS_MAC, DIR_MAC, RS_IP, DIR_IP, 80, 40000, 5, 6, RST))
    assert wire.reset_for(rst, DIR_MAC) is None
    udp = wire.parse(wire.build_udp(RS_MAC, DIR_MAC, RS_IP, DIR_IP, 53, 40001, b""))
    assert wire.reset_for(udp, DIR_MAC) is None


# ----------------------------------------------------------------------------
# the TCP client against hand-made segments

def peer(seq, ack, flags, payload=b"", window=65535, options=b""):
    """A segment from the server (port 80) to the client (port 40000)."""
    return wire.parse(wire.build_tcp(RS_MAC, DIR_MAC, RS_IP, DIR_IP, 80, 40000, seq, ack,
                                     flags, window, payload, options))


def segs(frames):
    for frame in frames:
        verify_frame(frame)
    return [wire.parse(frame) for frame in frames]


def opened(isn=1000, irs=5000, window=65535, options=b""):
    client = TcpClient(DIR_MAC, RS_MAC, DIR_IP, RS_IP, 40000, 80, isn)
    client.connect(0.0)
    client.receive(peer(irs, (isn + 1) & 0xFFFFFFFF, SYN | ACK, window=window,
                        options=options), 0.0)
    return client


def test_client_handshake():
    client = TcpClient(DIR_MAC, RS_MAC, DIR_IP, RS_IP, 40000, 80, 1000)
    [syn] = segs(client.connect(0.0))
    assert (syn.flags, syn.seq, syn.mss, syn.sport, syn.dport) == (SYN, 1000, 1460, 40000, 80)
    assert not client.established
    [ack] = segs(client.receive(peer(5000, 1001, SYN | ACK), 0.01))
    assert (ack.flags, ack.seq, ack.ack, ack.window) == (ACK, 1001, 5001, 65535)
    assert client.established and client.timer is None


def test_client_buffers_in_order_data_and_acks_it():
    client = opened()
    [ack] = segs(client.receive(peer(5001, 1001, PSH | ACK, b"hello "), 0.1))
    assert ack.ack == 5007
    [ack] = segs(client.receive(peer(5007, 1001, PSH | ACK, b"world"), 0.1))
    assert ack.ack == 5012
    assert client.data == b"hello world"
    assert client.take(6) == b"hello " and client.take() == b"world" and client.data == b""


def test_client_drops_out_of_order_data_with_a_duplicate_ack():
    client = opened()
    [dup] = segs(client.receive(peer(5011, 1001, PSH | ACK, b"later"), 0.1))
    assert dup.ack == 5001 and client.data == b""
    [ack] = segs(client.receive(peer(5001, 1001, PSH | ACK, b"0123456789"), 0.1))
    assert ack.ack == 5011 and client.data == b"0123456789"
    [ack] = segs(client.receive(peer(5006, 1001, PSH | ACK, b"56789later"), 0.1))  # overlap
    assert ack.ack == 5016 and client.data == b"0123456789later"
    [dup] = segs(client.receive(peer(5001, 1001, PSH | ACK, b"01234"), 0.1))       # old
    assert dup.ack == 5016 and client.data == b"0123456789later"


def test_client_retransmits_the_syn_with_backoff():
    client = TcpClient(DIR_MAC, RS_MAC, DIR_IP, RS_IP, 40000, 80, 1000)
    client.connect(10.0)
    assert client.poll(10.0 + INITIAL_RTO - 0.01) == []
    [syn] = segs(client.poll(10.2))
    assert syn.flags == SYN and syn.seq == 1000
    assert client.poll(10.5) == []
    assert len(client.poll(10.6)) == 1                 # 0.4 s after the first retransmission


def test_client_retransmits_unacknowledged_data():
    client = opened()
    [data] = segs(client.send(b"GET / HTTP/1.0\r\n\r\n", 1.0))
    assert (data.seq, data.ack, data.payload) == (1001, 5001, b"GET / HTTP/1.0\r\n\r\n")
    assert client.poll(1.1) == []
    [again] = segs(client.poll(1.2))
    assert (again.seq, again.payload) == (1001, data.payload)
    client.receive(peer(5001, 1001 + len(data.payload), ACK), 1.3)
    assert client.timer is None and client.poll(5.0) == []


def test_client_segments_and_respects_the_window():
    client = opened(window=2000)
    first = segs(client.send(b"a" * 4000, 1.0))
    assert [len(s.payload) for s in first] == [1460, 540]
    assert [s.seq for s in first] == [1001, 2461]
    more = segs(client.receive(peer(5001, 3001, ACK, window=65535), 1.1))
    assert [len(s.payload) for s in more] == [1460, 540] and more[0].seq == 3001


def test_client_uses_the_peers_smaller_mss():
    client = opened(options=struct.pack("!BBH", 2, 4, 536))
    assert [len(s.payload) for s in segs(client.send(b"b" * 1200, 1.0))] == [536, 536, 128]


def test_client_zero_window_is_probed_on_poll():
    client = opened(window=0)
    assert client.send(b"xyz", 1.0) == []
    [probe] = segs(client.poll(1.0 + INITIAL_RTO))
    assert probe.payload == b"x"


def test_client_fin_from_peer():
    client = opened()
    [ack] = segs(client.receive(peer(5001, 1001, FIN | ACK, b"bye"), 0.2))
    assert ack.ack == 5005 and client.peer_closed and client.data == b"bye"
    [ack] = segs(client.receive(peer(5001, 1001, FIN | ACK, b"bye"), 0.3))   # again
    assert ack.ack == 5005 and client.data == b"bye"


def test_client_out_of_order_fin_is_not_taken():
    client = opened()
    [dup] = segs(client.receive(peer(5010, 1001, FIN | ACK), 0.2))
    assert dup.ack == 5001 and not client.peer_closed


def test_client_refused():
    client = TcpClient(DIR_MAC, RS_MAC, DIR_IP, RS_IP, 40000, 80, 1000)
    client.connect(0.0)
    assert client.receive(peer(0, 999, RST | ACK), 0.1) == []     # not for our SYN
    assert not client.reset
    client.receive(peer(0, 1001, RST | ACK), 0.1)
    assert client.reset and client.refused and client.state == "closed"
    assert client.poll(100.0) == [] and client.abort() == []


def test_client_reset_when_established():
    client = opened()
    client.receive(peer(9999999, 1001, RST), 0.1)                  # outside the window
    assert not client.reset
    client.receive(peer(5001, 1001, RST), 0.1)
    assert client.reset and not client.refused


def test_client_close_and_abort():
    client = opened()
    [fin] = segs(client.close(1.0))
    assert (fin.flags, fin.seq, fin.ack) == (FIN | ACK, 1001, 5001)
    [again] = segs(client.poll(1.0 + INITIAL_RTO))
    assert again.flags & FIN and again.seq == 1001
    client.receive(peer(5001, 1002, ACK), 1.3)
    assert client.fin_acked and not client.closed
    client.receive(peer(5001, 1002, FIN | ACK), 1.3)
    assert client.closed
    aborting = opened()
    [rst] = segs(aborting.abort())
    assert rst.flags & RST and rst.seq == 1001
    syn_only = TcpClient(DIR_MAC, RS_MAC, DIR_IP, RS_IP, 40000, 80, 1)
    syn_only.connect(0.0)
    assert syn_only.abort() == []


def test_client_lost_handshake_ack_gets_a_new_ack():
    client = opened()
    [ack] = segs(client.receive(peer(5000, 1001, SYN | ACK), 0.5))
    assert ack.flags == ACK and ack.ack == 5001


def test_client_sequence_numbers_wrap():
    client = opened(isn=0xFFFFFFFF, irs=0xFFFFFFFE)
    [data] = segs(client.send(b"abc", 1.0))
    assert data.seq == 0 and data.ack == 0xFFFFFFFF
    [ack] = segs(client.receive(peer(0xFFFFFFFF, 3, PSH | ACK, b"xy"), 1.1))
    assert ack.ack == 1 and client.data == b"xy" and client.timer is None


# ----------------------------------------------------------------------------
# a scripted host

class Conn:
    def __init__(self, sport, rcv):
        self.sport, self.rcv, self.snd = sport, rcv, ISN + 1
        self.open = False
        self.request = b""
        self.tls = None
        self.closed = False


class Host:
    """The real server at RS_IP: a tiny TCP (one port), UDP and ICMP stack, scripted.

    ``app(conn, data) -> bytes`` answers TCP data; it sets ``conn.closed`` to
    send a FIN after the answer.  ``greeting(conn)`` is sent when the handshake
    completes.  ``tcp_mode`` "refuse", "silent" or "unreachable" changes how
    SYNs are met; ``udp(seg)`` answers UDP (bytes, None for silence, or
    "unreachable"); ICMP echo is answered unless ``ping`` is False.
    """

    def __init__(self, port=80, app=None, greeting=None, tcp_mode="open", udp=None,
                 ping=True, segment_size=1000):
        self.port, self.app, self.greeting, self.tcp_mode = port, app, greeting, tcp_mode
        self.udp, self.ping, self.segment_size = udp, ping, segment_size
        self.conns, self.all_conns, self.received = {}, [], []

    def out(self, conn, flags, payload=b""):
        frame = wire.build_tcp(RS_MAC, DIR_MAC, RS_IP, DIR_IP, self.port, conn.sport,
                               conn.snd, conn.rcv, flags, payload=payload)
        conn.snd += len(payload) + bool(flags & (SYN | FIN))
        return frame

    def send(self, conn, data):
        frames = [self.out(conn, PSH | ACK, data[i:i + self.segment_size])
                  for i in range(0, len(data), self.segment_size)]
        if conn.closed:
            frames.append(self.out(conn, FIN | ACK))
        return frames

    def handle(self, frame):
        verify_frame(frame)
        seg = wire.parse(frame)
        self.received.append(seg)
        if seg.proto == 6:
            return self.tcp(seg)
        if seg.proto == 17:
            answer = self.udp(seg) if self.udp else None
            if answer == "unreachable":
                return [wire.build_icmp_error(RS_MAC, DIR_MAC, RS_IP, DIR_IP, 3, 3, frame)]
            if answer is None:
                return []
            return [wire.build_udp(RS_MAC, DIR_MAC, RS_IP, DIR_IP, seg.dport, seg.sport,
                                   answer)]
        if seg.proto == 1 and seg.icmp_type == 8:
            if self.ping == "unreachable":
                return [wire.build_icmp_error(RS_MAC, DIR_MAC, 0x0A0000FE, DIR_IP, 3, 1,
                                              frame)]
            if self.ping:
                return [wire.build_icmp_echo(RS_MAC, DIR_MAC, RS_IP, DIR_IP, seg.ident,
                                             seg.seq, seg.payload, reply=True)]
        return []

    def tcp(self, seg):
        if seg.flags & RST:
            conn = self.conns.pop(seg.sport, None)
            if conn:
                conn.reset = True
            return []
        if seg.flags & SYN:
            if self.tcp_mode == "refuse":
                return [wire.reset_for(seg, RS_MAC)]
            if self.tcp_mode == "silent":
                return []
            if self.tcp_mode == "unreachable":
                return [wire.build_icmp_error(RS_MAC, DIR_MAC, 0x0A0000FE, DIR_IP, 3, 1,
                                              wire.build_tcp(DIR_MAC, RS_MAC, seg.ip_src,
                                                             seg.ip_dst, seg.sport, seg.dport,
                                                             seg.seq, 0, SYN))]
            conn = Conn(seg.sport, seg.seq + 1)
            conn.snd = ISN
            self.conns[seg.sport] = conn
            self.all_conns.append(conn)
            return [self.out(conn, SYN | ACK)]
        conn = self.conns.get(seg.sport)
        if conn is None:
            return [wire.reset_for(seg, RS_MAC)]
        frames = []
        if not conn.open and seg.flags & ACK and seg.ack == ISN + 1:
            conn.open = True
            if self.greeting:
                frames += self.send(conn, self.greeting(conn))
        if seg.payload and seg.seq == conn.rcv:
            conn.rcv += len(seg.payload)
            answer = self.app(conn, seg.payload) if self.app else b""
            frames += self.send(conn, answer) if answer or conn.closed else [
                self.out(conn, ACK)]
        if seg.flags & FIN:
            conn.rcv += 1
            frames.append(self.out(conn, ACK))
        return frames


def run(probe, host, now=0.0):
    """Start ``probe`` and play frames between it and ``host`` until nothing moves."""
    queue = list(probe.start(now))
    return pump(probe, host, queue, now)


def pump(probe, host, queue, now):
    sent = []
    while queue:
        frame = queue.pop(0)
        sent.append(wire.parse(frame))
        for answer in host.handle(frame):
            seg = wire.parse(answer)
            if not probe.done and wire.reply_key(seg) in probe.keys:
                queue += probe.receive(seg, now)
        if probe.done and not queue:
            queue += probe.finish()
    return sent


def make(checker, ssl_conf=None, ports=None, now=0.0):
    ports = iter(ports or range(40000, 40100))
    return probes.make_probe(checker, src_ip=DIR_IP, src_mac=DIR_MAC, dst_mac=RS_MAC,
                             next_port=lambda: next(ports), now=now, ssl=ssl_conf)


def check(cls, kind, port=80, **values):
    return cls(kind, "test:1", connect_ip=RS_ADDR, connect_port=port, connect_timeout=2.0,
               **values)


# ----------------------------------------------------------------------------
# TCP_CHECK

def test_tcp_check_answers_the_syn_ack_with_a_reset():
    host = Host()
    probe = make(check(TcpCheck, "TCP_CHECK"))
    sent = run(probe, host)
    assert probe.done and probe.ok and probe.detail == "connected"
    assert [s.flags for s in sent] == [SYN, RST | ACK]     # no ACK: OVN's SYN, SYN/ACK, RST
    assert sent[1].seq == sent[0].seq + 1                    # in the server's window
    assert host.conns == {} and probe.finish() == []


def test_tcp_check_refused():
    probe = make(check(TcpCheck, "TCP_CHECK"))
    run(probe, Host(tcp_mode="refuse"))
    assert probe.done and not probe.ok and probe.detail == "connection refused"


def test_tcp_check_icmp_unreachable():
    probe = make(check(TcpCheck, "TCP_CHECK"))
    run(probe, Host(tcp_mode="unreachable"))
    assert probe.done and not probe.ok and probe.detail == "ICMP host unreachable"


def test_tcp_check_times_out_and_retransmits_meanwhile():
    probe = make(check(TcpCheck, "TCP_CHECK"), now=100.0)
    run(probe, Host(tcp_mode="silent"), now=100.0)
    assert probe.deadline == 102.0 and probe.next_poll == 100.0 + INITIAL_RTO
    [syn] = segs(probe.poll(100.0 + INITIAL_RTO))
    assert syn.flags == SYN and not probe.done
    assert len(probe.poll(101.9)) == 1 and not probe.done      # the SYN again, backed off
    assert probe.poll(102.0) == []
    assert probe.done and not probe.ok
    assert probe.detail == "no answer within 2 s (connecting)" and probe.keys == set()


def test_tcp_check_uses_bind_port_and_default_timeout():
    checker = TcpCheck("TCP_CHECK", "t:1", connect_ip=RS_ADDR, connect_port=80, bind_port=999)
    probe = make(checker, now=5.0)
    [syn] = segs(probe.start(5.0))
    assert syn.sport == 999 and probe.keys == {("tcp", RS_IP, 80, 999)}
    assert probe.deadline == 10.0


class StreamTcpProbe(probes.StreamProbe):
    """TCP_CHECK as a StreamProbe over TcpClient: what TcpProbe writes out."""

    ack_handshake = False

    def connected(self, now):
        self._end(True, "connected")
        return []


def _tcp_check_script(rng, iss):
    """A random run: (time, "poll" or a frame from the server) steps, knowing our ISN."""
    good = (iss + 1) & 0xFFFFFFFF
    bad = (iss + rng.choice([0, 2, 1 << 31])) & 0xFFFFFFFF
    rs_seq = rng.getrandbits(32)

    def tcp(seq, ack, flags, payload=b""):
        return wire.build_tcp(RS_MAC, DIR_MAC, RS_IP, DIR_IP, 80, 40000, seq, ack, flags,
                              payload=payload)

    def icmp(icmp_type, code):
        syn = wire.build_tcp(DIR_MAC, RS_MAC, DIR_IP, RS_IP, 40000, 80, iss, 0, SYN)
        return wire.build_icmp_error(RS_MAC, DIR_MAC, 0x0A0000FE, DIR_IP, icmp_type, code, syn)

    choices = [tcp(rs_seq, good, SYN | ACK), tcp(rs_seq, bad, SYN | ACK),
               tcp(rs_seq, good, SYN | ACK, b"early data"), tcp(rs_seq, good, SYN | ACK | FIN),
               tcp(rs_seq, bad, ACK), tcp(rs_seq, good, ACK), tcp(rs_seq, 0, SYN),
               tcp(rs_seq, 0, FIN), tcp(0, good, RST | ACK), tcp(0, bad, RST | ACK),
               tcp(0, 0, RST), icmp(3, 3), icmp(3, 1), icmp(11, 0),
               wire.build_udp(RS_MAC, DIR_MAC, RS_IP, DIR_IP, 80, 40000, b"u"), "poll"]
    now, steps = 0.0, []
    for _ in range(rng.randrange(1, 8)):
        now += rng.choice([0.0, 0.05, 0.2, 0.4, 0.9, 1.5])
        steps.append((now, rng.choice(choices)))
    return steps


def _play(cls, seed, steps):
    random.seed(seed)                           # the same ISN for both
    wire._ip_ident = iter(range(1000, 2000))    # the same IPv4 identifications
    checker = check(TcpCheck, "TCP_CHECK")
    probe = cls(checker, DIR_IP, DIR_MAC, RS_MAC, iter(range(40000, 40100)).__next__, 0.0)
    frames = probe.start(0.0)
    record = [frames]
    for now, step in steps:
        if step == "poll":
            out = probe.poll(now)
        else:
            seg = wire.parse(step)
            out = probe.receive(seg, now) if wire.reply_key(seg) in probe.keys else "not ours"
        record.append((now, out, probe.done, probe.ok, probe.detail, set(probe.keys),
                       probe.next_poll))
    record.append(probe.finish())
    return record


def test_tcp_check_is_tcp_client_s_syn_sent_state_frame_for_frame(monkeypatch):
    """TcpProbe writes out TcpClient's SYN-SENT state: on random runs it sends the
    same frames (SYN, retransmissions, RSTs), reaches the same results, keys and
    poll times as a StreamProbe over TcpClient."""
    monkeypatch.setattr(wire, "_ip_ident", wire._ip_ident)
    outcomes = set()
    for seed in range(400):
        iss = random.Random(seed).getrandbits(32)      # what start() will draw
        steps = _tcp_check_script(random.Random(-seed), iss)
        lean = _play(probes.TcpProbe, seed, steps)
        assert wire.parse(lean[0][0]).seq == iss
        assert lean == _play(StreamTcpProbe, seed, steps), seed
        for step in lean[1:-1]:
            for frame in (step[1] if isinstance(step[1], list) else []):
                verify_frame(frame)
        outcomes.add(lean[-2][4] if len(lean) > 2 else "")
    # the runs reach every ending
    assert {"connected", "connection refused", "ICMP port unreachable",
            "no answer within 2 s (connecting)"} <= outcomes


# ----------------------------------------------------------------------------
# HTTP_GET

def http_app(*responses):
    """Answers the n-th request with responses[n] (the last one after that), then closes."""
    served = []

    def app(conn, data):
        conn.request += data
        if b"\r\n\r\n" not in conn.request or conn in served:
            return b""
        served.append(conn)
        conn.closed = True
        return responses[min(len(served), len(responses)) - 1]
    return app


def response(body=b"<html>ok</html>", status="200 OK", length=True):
    head = f"HTTP/1.0 {status}\r\nServer: test\r\n".encode()
    if length:
        head += f"Content-Length: {len(body)}\r\n".encode()
    return head + b"\r\n" + body


def http(*urls, **values):
    return check(HttpCheck, values.pop("kind", "HTTP_GET"), urls=tuple(urls), **values)


def test_http_get_success_and_request_text():
    host = Host(app=http_app(response()))
    probe = make(http(Url("/health")))
    run(probe, host)
    assert probe.done and probe.ok and probe.detail == "HTTP 200"
    assert host.all_conns[0].request == (b"GET /health HTTP/1.0\r\nUser-Agent: KeepAliveClient"
                                         b"\r\nHost: 10.0.0.11:80\r\n\r\n")


@pytest.mark.parametrize("proto, first, extra", [
    ("1.1", b"GET / HTTP/1.1", b"Connection: close\r\n"),
    ("1.0C", b"GET / HTTP/1.0", b"Connection: close\r\n"),
    ("1.0", b"GET / HTTP/1.0", b""),
])
def test_http_protocols_and_virtualhost(proto, first, extra):
    host = Host(port=8080, app=http_app(response()))
    probe = make(http(Url("/", virtualhost="www.example.com"), port=8080, http_protocol=proto))
    run(probe, host)
    assert probe.ok
    assert host.all_conns[0].request == (first + b"\r\nUser-Agent: KeepAliveClient\r\n"
                                         + extra + b"Host: www.example.com\r\n\r\n")


def test_http_status_outside_the_ranges():
    probe = make(http(Url("/x")))
    run(probe, Host(app=http_app(response(status="500 Oops"))))
    assert not probe.ok and probe.detail == "HTTP status 500 not in 200-299 for /x"
    probe = make(http(Url("/x", status_codes=((200, 200), (301, 302)))))
    run(probe, Host(app=http_app(response(status="404 Not Found"))))
    assert probe.detail == "HTTP status 404 not in 200,301-302 for /x"
    probe = make(http(Url("/x", status_codes=((301, 302),))))
    run(probe, Host(app=http_app(response(status="302 Found"))))
    assert probe.ok and probe.detail == "HTTP 302"


def test_http_unreadable_status_line():
    probe = make(http(Url("/")))
    run(probe, Host(app=http_app(b"HTTP/1.0 200\r\n\r\nbody")))     # keepalived needs "200 "
    assert not probe.ok and probe.detail == "HTTP status 0 not in 200-299 for /"


def test_http_digest_is_md5_of_the_body():
    body = b"<html><body>I am alive</body></html>\n" * 100          # several segments
    good = hashlib.md5(body).hexdigest()
    probe = make(http(Url("/", digest=good)))
    run(probe, Host(app=http_app(response(body, length=False))))
    assert probe.ok, probe.detail
    probe = make(http(Url("/health", digest=hashlib.md5(b"other").hexdigest())))
    run(probe, Host(app=http_app(response(body))))
    assert not probe.ok and probe.detail == "digest mismatch for /health"


def test_http_digest_stops_at_content_length():
    probe = make(http(Url("/", digest=hashlib.md5(b"12345").hexdigest())))
    run(probe, Host(app=http_app(b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\n1234567890")))
    assert probe.ok, probe.detail
    response_ = httpprobe.HttpResponse()
    for piece in (b"HTTP/1.1 200 OK\r", b"\n\r\n", b"ab", b"c"):
        response_.feed(piece)
    assert response_.md5.hexdigest() == hashlib.md5(b"abc").hexdigest()
    assert response_.status == 200 and response_.length is None and response_.body_len == 3


def test_http_regex():
    page = response(b"<h1>Status: GREEN</h1>")
    probe = make(http(Url("/", regex="GREEN")))
    run(probe, Host(app=http_app(page)))
    assert probe.ok
    probe = make(http(Url("/", regex="RED")))
    run(probe, Host(app=http_app(page)))
    assert probe.detail == "regex did not match for /"
    probe = make(http(Url("/", regex="RED", regex_no_match=True)))
    run(probe, Host(app=http_app(page)))
    assert probe.ok
    probe = make(http(Url("/s", regex="GREEN", regex_no_match=True)))
    run(probe, Host(app=http_app(page)))
    assert probe.detail == "regex matched for /s (regex_no_match)"
    probe = make(http(Url("/", regex="status: green", regex_options=("caseless",))))
    run(probe, Host(app=http_app(page)))
    assert probe.ok
    probe = make(http(Url("/", regex="GREEN", regex_max_offset=20)))
    run(probe, Host(app=http_app(page)))
    assert not probe.ok                  # the match starts past byte 20 of the response
    probe = make(http(Url("/", regex="caf\u00e9 ouvert")))          # UTF-8 bytes on both sides
    run(probe, Host(app=http_app(response("le caf\u00e9 ouvert".encode()))))
    assert probe.ok, probe.detail
    probe = make(http(Url("/", regex="(")))
    run(probe, Host(app=http_app(page)))
    assert probe.detail.startswith("regex error for /: ")


def test_http_urls_one_connection_each_and_first_failure_wins():
    host = Host(app=http_app(response(), response(status="503 Busy"), response()))
    probe = make(http(Url("/a"), Url("/b"), Url("/c")), ports=[41000, 41001, 41002])
    keys, receive = [], probe.receive

    def recording(seg, now):                # the keys after every call, changes only
        frames = receive(seg, now)
        if keys[-1] != probe.keys:
            keys.append(set(probe.keys))
        return frames
    probe.receive = recording
    queue = probe.start(0.0)
    keys.append(set(probe.keys))
    sent = pump(probe, host, queue, 0.0)
    assert [c.request.split(b"\r\n")[0] for c in host.all_conns] == [b"GET /a HTTP/1.0",
                                                                     b"GET /b HTTP/1.0"]
    assert [c.sport for c in host.all_conns] == [41000, 41001]
    assert keys == [{("tcp", RS_IP, 80, 41000)}, {("tcp", RS_IP, 80, 41001)}, set()]
    assert not probe.ok and probe.detail == "HTTP status 503 not in 200-299 for /b"
    assert [(s.sport, s.flags) for s in sent if s.proto == 6 and s.flags & RST] == [
        (41000, RST | ACK), (41001, RST | ACK)]                   # each one reset when done
    assert host.conns == {}


def test_http_all_urls_good():
    host = Host(app=http_app(response()))
    probe = make(http(Url("/a"), Url("/b")))
    run(probe, host)
    assert probe.ok and len(host.all_conns) == 2


def test_http_content_length_ends_the_read_without_close():
    def keepalive(conn, data):
        conn.request += data
        return response(b"0123456789") if b"\r\n\r\n" in conn.request else b""
    host = Host(app=keepalive)
    probe = make(http(Url("/")))
    run(probe, host)
    assert probe.ok and host.conns == {}            # reset by the probe


def test_http_nothing_received():
    def slam(conn, data):
        conn.closed = True
        return b""
    probe = make(http(Url("/empty")))
    run(probe, Host(app=slam))
    assert not probe.ok and probe.detail == "no HTTP response for /empty"


def test_http_read_timeout_moves_with_progress():
    host = Host(app=lambda conn, data: b"")          # takes the request, says nothing yet
    probe = make(http(Url("/slow")), now=0.0)
    run(probe, host, now=0.0)
    assert probe.deadline == 2.0 and probe.phase == "reading /slow"
    [part] = host.send(host.all_conns[0], b"HTTP/1.0 200 OK\r\n")
    probe.receive(wire.parse(part), 1.5)             # progress: a new deadline
    assert probe.deadline == 3.5
    probe.poll(3.4)
    assert not probe.done
    probe.poll(3.5)
    assert probe.done and probe.detail == "no answer within 2 s (reading /slow)"


def test_http_without_urls_is_up():
    probe = make(http())
    assert probe.start(0.0) == [] and probe.done and probe.ok


def test_finish_resets_an_open_connection():
    host = Host(app=lambda conn, data: b"")
    probe = make(http(Url("/")))
    run(probe, host)
    assert not probe.done and len(host.conns) == 1
    [rst] = segs(probe.finish())
    assert rst.flags & RST and rst.sport == 40000
    host.handle(wire.build_tcp(DIR_MAC, RS_MAC, DIR_IP, RS_IP, rst.sport, 80, rst.seq,
                               rst.ack, rst.flags))
    assert host.conns == {}


# ----------------------------------------------------------------------------
# SSL_GET: a real TLS server over the scripted TCP

@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tls")
    for name in ("server", "client", "other"):
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                        "-subj", f"/CN={name}.test", "-keyout", str(folder / f"{name}.key"),
                        "-out", str(folder / f"{name}.pem")], check=True, capture_output=True)
    return folder


def tls_app(certs, answer, client_ca=None, notify=True):
    """An HTTPS server: a server-side SSLObject per connection; records the SNI it saw."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(certs / "server.pem"), str(certs / "server.key"))
    if client_ca:
        context.load_verify_locations(str(client_ca))
        context.verify_mode = ssl.CERT_REQUIRED
    seen = []
    context.sni_callback = lambda obj, name, ctx: seen.append(name) and None

    def app(conn, data):
        if conn.tls is None:
            incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
            conn.tls = (context.wrap_bio(incoming, outgoing, server_side=True), incoming,
                        outgoing)
            conn.handshaken = False
        obj, incoming, outgoing = conn.tls
        incoming.write(data)
        try:
            if not conn.handshaken:
                obj.do_handshake()
                conn.handshaken = True
            conn.request += obj.read(65536)
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLError:
            conn.closed = True
        if b"\r\n\r\n" in conn.request and not conn.closed:
            obj.write(answer)
            try:
                if notify:                   # close_notify, or just the TCP FIN
                    obj.unwrap()
            except ssl.SSLWantReadError:
                pass
            conn.closed = True
        return outgoing.read()
    app.seen = seen
    return app


def test_ssl_get_success_with_sni(certs):
    body = b"secure and sound"
    app = tls_app(certs, response(body))
    host = Host(port=443, app=app, segment_size=700)
    probe = make(http(Url("/tls", digest=hashlib.md5(body).hexdigest(),
                          virtualhost="www.example.com"),
                      kind="SSL_GET", port=443, enable_sni=True))
    run(probe, host)
    assert probe.ok, probe.detail
    assert probe.detail == "HTTP 200"
    assert host.all_conns[0].request.startswith(b"GET /tls HTTP/1.0\r\n")
    assert app.seen == ["www.example.com"]


def test_ssl_get_server_closing_without_close_notify(certs):
    probe = make(http(Url("/", regex="HTTP/1.0 200"), kind="SSL_GET", port=443))
    run(probe, Host(port=443, app=tls_app(certs, response(length=False), notify=False)))
    assert probe.ok, probe.detail


def test_ssl_get_sni_name_and_no_sni(certs):
    app = tls_app(certs, response())
    probe = make(http(Url("/", virtualhost="v.example"), kind="SSL_GET", port=443,
                      enable_sni=True, sni_name="sni.example"))
    run(probe, Host(port=443, app=app))
    assert probe.ok and app.seen == ["sni.example"]
    app = tls_app(certs, response())
    probe = make(http(Url("/", virtualhost="v.example"), kind="SSL_GET", port=443))
    run(probe, Host(port=443, app=app))
    assert probe.ok and app.seen == [None]


def test_ssl_get_against_a_plain_http_server():
    def plain(conn, data):                  # a web server meeting a ClientHello
        conn.closed = True
        return b"HTTP/1.0 400 Bad Request\r\n\r\nno TLS here\n"
    probe = make(http(Url("/"), kind="SSL_GET"))
    run(probe, Host(app=plain))
    assert not probe.ok and probe.detail.startswith("TLS handshake failed: ")


def test_ssl_get_verifies_against_a_ca(certs):
    trusting = SslContext(ca=str(certs / "server.pem"))
    probe = make(http(Url("/"), kind="SSL_GET", port=443), ssl_conf=trusting)
    run(probe, Host(port=443, app=tls_app(certs, response())))
    assert probe.ok, probe.detail
    other = SslContext(ca=str(certs / "other.pem"))
    probe = make(http(Url("/"), kind="SSL_GET", port=443), ssl_conf=other)
    run(probe, Host(port=443, app=tls_app(certs, response())))
    assert not probe.ok
    assert probe.detail == "TLS handshake failed: CERTIFICATE_VERIFY_FAILED"


def test_ssl_get_client_certificate(certs):
    app = tls_app(certs, response(), client_ca=certs / "client.pem")
    conf = SslContext(certificate=str(certs / "client.pem"), key=str(certs / "client.key"))
    probe = make(http(Url("/"), kind="SSL_GET", port=443), ssl_conf=conf)
    run(probe, Host(port=443, app=app))
    assert probe.ok, probe.detail
    probe = make(http(Url("/"), kind="SSL_GET", port=443))       # no certificate
    run(probe, Host(port=443, app=tls_app(certs, response(), client_ca=certs / "client.pem")))
    assert not probe.ok


def test_ssl_get_bad_context_files(tmp_path):
    conf = SslContext(certificate=str(tmp_path / "missing.pem"))
    probe = make(http(Url("/"), kind="SSL_GET"), ssl_conf=conf)
    assert probe.start(0.0) == [] and probe.done and not probe.ok
    assert probe.detail.startswith("TLS setup failed: ")


# ----------------------------------------------------------------------------
# SMTP_CHECK

def smtp_app(helo_reply=b"250 mail.test\r\n"):
    def app(conn, data):
        conn.request += data
        if data.startswith(b"HELO"):
            return helo_reply
        if data == b"QUIT\r\n":
            conn.closed = True
            return b"221 bye\r\n"
        return b""
    return app


def test_smtp_check_success_with_a_multiline_greeting():
    host = Host(port=25, app=smtp_app(),
                greeting=lambda conn: b"220-mail.test ESMTP\r\n220-more\r\n220 ready\r\n")
    probe = make(check(SmtpCheck, "SMTP_CHECK", port=25, helo_name="probe.test"))
    run(probe, host)
    assert probe.ok and probe.detail == "SMTP greeting 220, HELO 250"
    assert host.all_conns[0].request == b"HELO probe.test\r\nQUIT\r\n"


def test_smtp_default_helo_and_lines_split_across_segments():
    greeting = b"220-mail.test ESMTP\r\n220 ready\r\n"
    host = Host(port=25, app=smtp_app(), greeting=lambda conn: greeting, segment_size=3)
    probe = make(check(SmtpCheck, "SMTP_CHECK", port=25))
    run(probe, host)
    assert probe.ok and host.all_conns[0].request == b"HELO localhost\r\nQUIT\r\n"


def test_smtp_waits_for_the_end_of_the_line():
    host = Host(port=25, app=smtp_app(), greeting=lambda conn: b"220 mail.te")
    probe = make(check(SmtpCheck, "SMTP_CHECK", port=25))
    run(probe, host)
    assert not probe.done and host.all_conns[0].request == b""
    [rest] = host.send(host.all_conns[0], b"st\r\n")
    pump(probe, host, probe.receive(wire.parse(rest), 0.0), 0.0)
    assert probe.ok


@pytest.mark.parametrize("greeting, helo, detail", [
    (b"554 go away\r\n", b"", "SMTP greeting 554"),
    (b"hello there\r\n", b"", "SMTP greeting unreadable"),
    (b"220 ok\r\n", b"501 what\r\n", "SMTP HELO answer 501"),
])
def test_smtp_check_failures(greeting, helo, detail):
    host = Host(port=25, app=smtp_app(helo), greeting=lambda conn: greeting)
    probe = make(check(SmtpCheck, "SMTP_CHECK", port=25))
    run(probe, host)
    assert probe.done and not probe.ok and probe.detail == detail


def test_smtp_closed_before_the_greeting():
    def close(conn):
        conn.closed = True
        return b""
    probe = make(check(SmtpCheck, "SMTP_CHECK", port=25))
    run(probe, Host(port=25, greeting=close))
    assert probe.detail == "SMTP connection closed (waiting for the SMTP greeting)"


def test_smtp_greeting_timeout():
    probe = make(check(SmtpCheck, "SMTP_CHECK", port=25))
    run(probe, Host(port=25), now=1.0)
    probe.poll(3.0)
    assert probe.detail == "no answer within 2 s (waiting for the SMTP greeting)"


# ----------------------------------------------------------------------------
# UDP_CHECK

def test_udp_check_without_reply_needed():
    host = Host(port=161)
    probe = make(check(UdpCheck, "UDP_CHECK", port=161))
    run(probe, host)
    [sent] = host.received
    assert len(sent.payload) == 32 and probe.keys == {("udp", RS_IP, 161, 40000)}
    probe.poll(1.9)
    assert not probe.done
    probe.poll(2.0)
    assert probe.ok and probe.detail == "no ICMP error within 2 s"


def test_udp_check_port_unreachable():
    probe = make(check(UdpCheck, "UDP_CHECK", port=161, payload=b"\x01\x02"))
    host = Host(port=161, udp=lambda seg: "unreachable")
    run(probe, host)
    assert host.received[0].payload == b"\x01\x02"
    assert probe.done and not probe.ok and probe.detail == "ICMP port unreachable"


def test_udp_check_ignores_icmp_time_exceeded():
    probe = make(check(UdpCheck, "UDP_CHECK", port=161))
    [frame] = probe.start(0.0)
    error = wire.build_icmp_error(RS_MAC, DIR_MAC, 0x0A0000FE, DIR_IP, 11, 0, frame)
    probe.receive(wire.parse(error), 0.5)
    assert not probe.done
    error = wire.build_icmp_error(RS_MAC, DIR_MAC, RS_IP, DIR_IP, 3, 13, frame)
    probe.receive(wire.parse(error), 0.5)
    assert probe.done and probe.detail == "ICMP administratively prohibited"


def test_udp_check_reply_required():
    probe = make(check(UdpCheck, "UDP_CHECK", port=7, payload=b"ping", require_reply=True))
    run(probe, Host(port=7))
    probe.poll(2.0)
    assert not probe.ok and probe.detail == "no answer within 2 s"
    probe = make(check(UdpCheck, "UDP_CHECK", port=7, payload=b"ping", require_reply=True))
    run(probe, Host(port=7, udp=lambda seg: b"anything at all"))
    assert probe.ok and probe.detail == "UDP reply of 15 bytes"


@pytest.mark.parametrize("answer, ok, detail", [
    (b"\xab\xcd\x12\x34", True, "UDP reply of 4 bytes"),
    (b"\xab\xcd\x99\x34", True, "UDP reply of 4 bytes"),          # the X nibbles
    (b"\xab\xce\x12\x34", False, "UDP reply data mismatch"),
    (b"\xab\xcd\x12\x35", False, "UDP reply data mismatch"),
    (b"\xab\xcd", True, "UDP reply of 2 bytes"),                   # only what arrived
    (b"\xab", False, "UDP reply of 1 bytes, not within 2-8"),
    (b"\xab\xcd\x12\x34" + b"\0" * 5, False, "UDP reply of 9 bytes, not within 2-8"),
])
def test_udp_check_reply_data_and_mask(answer, ok, detail):
    # require_reply ABCD XX34 -> data ab cd 00 34, mask ff ff 00 ff (lvs_app: 1 bits compared)
    checker = check(UdpCheck, "UDP_CHECK", port=9, payload=b"?", require_reply=True,
                    reply_data=b"\xab\xcd\x00\x34", reply_mask=b"\xff\xff\x00\xff",
                    min_reply_length=2, max_reply_length=8)
    probe = make(checker)
    run(probe, Host(port=9, udp=lambda seg: answer))
    assert (probe.ok, probe.detail) == (ok, detail)


# ----------------------------------------------------------------------------
# DNS_CHECK

def dns_answer(query, rcode=0, qr=True, ident=None, answers=1):
    ident = query[:2] if ident is None else ident
    flags = bytes([(0x80 if qr else 0) | 0x01, 0x80 | rcode])
    return ident + flags + b"\x00\x01" + answers.to_bytes(2, "big") + b"\0\0\0\0" + query[12:]


def test_dns_query_format():
    assert probes.dns_query(0x1234, "www.example.com", "A") == (
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
        b"\x03www\x07example\x03com\x00\x00\x01\x00\x01")
    assert probes.dns_query(1, ".", "SOA")[12:] == b"\x00\x00\x06\x00\x01"
    assert probes.dns_query(1, "example.com.", "MX")[12:] == (
        b"\x07example\x03com\x00\x00\x0f\x00\x01")


def test_dns_check_success():
    host = Host(port=53, udp=lambda seg: dns_answer(seg.payload))
    probe = make(check(DnsCheck, "DNS_CHECK", port=53, type="A", name="example.com"))
    run(probe, host)
    query = host.received[0].payload
    assert query[2:4] == b"\x01\x00" and query[12:] == b"\x07example\x03com\x00\x00\x01\x00\x01"
    assert probe.ok and probe.detail == "DNS answer, rcode 0, 1 answer records"


def test_dns_check_rcode_fails():
    probe = make(check(DnsCheck, "DNS_CHECK", port=53))
    run(probe, Host(port=53, udp=lambda seg: dns_answer(seg.payload, rcode=2)))
    assert not probe.ok and probe.detail == "DNS answer has rcode 2"


@pytest.mark.parametrize("bad", [
    lambda q: dns_answer(q, ident=bytes([q[0] ^ 1, q[1]])),          # another id
    lambda q: dns_answer(q, qr=False),                               # a query
    lambda q: q[:11],                                                # too short
])
def test_dns_check_ignores_foreign_answers(bad):
    probe = make(check(DnsCheck, "DNS_CHECK", port=53))
    run(probe, Host(port=53, udp=lambda seg: bad(seg.payload)))
    assert not probe.done
    probe.poll(2.0)
    assert not probe.ok and probe.detail == "no answer within 2 s"


def test_dns_check_port_unreachable():
    probe = make(check(DnsCheck, "DNS_CHECK", port=53))
    run(probe, Host(port=53, udp=lambda seg: "unreachable"))
    assert not probe.ok and probe.detail == "ICMP port unreachable"


# ----------------------------------------------------------------------------
# PING_CHECK

def test_ping_check_success():
    host = Host()
    checker = PingCheck("PING_CHECK", "t:1", connect_ip=RS_ADDR, connect_timeout=1.0)
    probe = make(checker, ports=[4242])
    run(probe, host)
    [echo] = host.received
    assert (echo.icmp_type, echo.ident, echo.seq, len(echo.payload)) == (8, 4242, 1, 128)
    assert probe.ok and probe.detail == "echo reply"


def test_ping_check_wrong_sequence_is_ignored_then_timeout():
    checker = PingCheck("PING_CHECK", "t:1", connect_ip=RS_ADDR, connect_timeout=1.0)
    probe = make(checker, ports=[4242])
    probe.start(0.0)
    other = wire.build_icmp_echo(RS_MAC, DIR_MAC, RS_IP, DIR_IP, 4242, 9, b"", reply=True)
    assert probe.receive(wire.parse(other), 0.1) == [] and not probe.done
    probe.poll(1.0)
    assert not probe.ok and probe.detail == "no answer within 1 s"


def test_ping_check_unreachable():
    checker = PingCheck("PING_CHECK", "t:1", connect_ip=RS_ADDR, connect_timeout=1.0)
    probe = make(checker)
    run(probe, Host(ping="unreachable"))
    assert not probe.ok and probe.detail == "ICMP host unreachable"


def test_make_probe_refuses_misc_check():
    with pytest.raises(ValueError):
        make(MiscCheck("MISC_CHECK", "t:1"))


def test_tcp_fields_are_those_of_the_segment_parse_reads_the_short_way():
    """Every byte of a SYN/ACK set to every value: the fields a TCP_CHECK takes
    from the frame are the parsed Segment's, for exactly the frames parse
    reads the short way (the rest go the general way)."""
    seen = 0
    for at, value, data in syn_ack_with_every_byte_changed():
        fields = wire.tcp_fields(data)
        seg = wire.parse(data)
        short = (seg is not None and data[12:14] == b"\x08\x00" and data[14] == 0x45
                 and seg.proto == 6)
        if not short:
            assert fields is None, (at, value)
            continue
        seen += 1
        assert fields == (seg.ip_src, seg.sport, seg.dport, seg.flags, seg.seq, seg.ack)
    assert seen > 10000
