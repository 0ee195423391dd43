"""The FTP helper's pure part: parsing, rewriting, checksums, sequence deltas.

Frames are built with the fake switch's packet builder (tests/fakeswitch.py),
which fills in lengths and checksums itself: a frame the helper rewrote must
be byte-identical to the one the builder makes from the expected fields.
"""

import struct

import pytest

from lvs_app import ftp
from tests.fakeswitch import packet_to_bytes, tcp

C1, VIP, RS = "10.0.0.1", "10.0.0.100", "10.0.0.11"
VIP_INT = 0x0A000064
RS_INT = 0x0A00000B


def ip_int(text):
    a, b, c, d = (int(x) for x in text.split("."))
    return a << 24 | b << 16 | c << 8 | d


def server_frame(payload=b"", seq=5000, ack=1000, flags="PA", **extra):
    """A frame from the real server's control port to the client (before NAT)."""
    return packet_to_bytes(tcp(RS, C1, 21, 40000, flags=flags, payload=payload,
                               tcp_seq=seq, tcp_ack=ack, **extra))


def client_frame(payload=b"", seq=1000, ack=5000, flags="PA", **extra):
    return packet_to_bytes(tcp(C1, VIP, 40000, 21, flags=flags, payload=payload,
                               tcp_seq=seq, tcp_ack=ack, **extra))


def fields(frame):
    seg = ftp.segment(frame)
    return seg.seq, seg.ack, seg.payload(frame)


PASV_REPLY = b"227 Entering Passive Mode (10,0,0,11,195,80).\r\n"
PASV_REWRITTEN = b"227 Entering Passive Mode (10,0,0,100,195,80).\r\n"     # one byte longer


# -- client commands --------------------------------------------------------------

@pytest.mark.parametrize("payload, expected", [
    (b"PORT 10,0,0,1,156,65\r\n", (ip_int(C1), 40001)),
    (b"port 10,0,0,1,156,65\r\n", (ip_int(C1), 40001)),          # case-insensitive
    (b"PORT   192,168,1,2,0,21\r\n", (ip_int("192.168.1.2"), 21)),
    (b"PORT10,0,0,1,156,65\r\n", (ip_int(C1), 40001)),           # IPVS takes it too
    (b"PORT 10,0,0,1,156\r\n", None),                            # five numbers
    (b"PORT 10,0,0,1,156,65", None),                             # no terminator
    (b"PORT 10,0,0,256,1,1\r\n", None),                          # not a byte
    (b"PORT 10,0,0,1,0,0\r\n", None),                            # port 0
    (b"NOOP\r\nPORT 10,0,0,1,156,65\r\n", None),                 # only at the start
    (b"PORTS 1,2,3,4,5,6\r\n", None),
])
def test_port(payload, expected):
    assert ftp.parse_port(payload) == expected


@pytest.mark.parametrize("payload, expected", [
    (b"EPRT |1|10.0.0.1|40001|\r\n", (ip_int(C1), 40001)),
    (b"eprt !1!10.0.0.1!40001!\r\n", (ip_int(C1), 40001)),       # any delimiter 33..126
    (b"EPRT |2|2001:db8::1|40001|\r\n", None),                   # IPv6 on an IPv4 connection
    (b"EPRT |||40001|\r\n", None),                               # no address: only for 229
    (b"EPRT |1|10.0.0.1|0|\r\n", None),
    (b"EPRT |1|10.0.0.1|70000|\r\n", None),
    (b"EPRT |1|10.0.0|40001|\r\n", None),
    (b"EPRT |1|10.0.0.1|40001\r\n", None),
])
def test_eprt(payload, expected):
    assert ftp.parse_eprt(payload) == expected


@pytest.mark.parametrize("payload, expected", [
    (b"PASV\r\n", ftp.PASV),
    (b"pasv\r\n", ftp.PASV),
    (b"EPSV\r\n", ftp.EPSV),
    (b"EPSV 1\r\n", ftp.EPSV),
    (b"EPSV 2\r\n", None),          # IPv6 data address
    (b"EPSV ALL\r\n", None),        # not supported, as in IPVS
    (b"PASV", None),
    (b"TYPE I\r\nPASV\r\n", ftp.PASV),   # anywhere in the segment, as in IPVS
    (b"USER anonymous\r\n", None),
])
def test_passive_request(payload, expected):
    assert ftp.passive_request(payload) == expected


# -- server replies -----------------------------------------------------------------

def test_227_is_parsed_and_rewritten_with_the_vip_and_the_same_port():
    reply = ftp.parse_227(PASV_REPLY)
    assert (reply.addr, reply.port) == (RS_INT, 50000)
    assert PASV_REPLY[reply.start:reply.end] == b"10,0,0,11,195,80"
    assert ftp.rewrite_227(PASV_REPLY, reply, VIP_INT) == PASV_REWRITTEN


@pytest.mark.parametrize("payload, port", [
    (b"227 =10,0,0,11,195,80\r\n", 50000),            # "(" is optional
    (b"227 Entering Passive Mode ((10,0,0,11,4,1))\r\n", 1025),
    (b"227 entering passive mode (10,0,0,11,195,80)\r\n", 50000),
])
def test_227_variants(payload, port):
    assert ftp.parse_227(payload).port == port


@pytest.mark.parametrize("payload", [
    b"227 Entering Passive Mode (10,0,0,11,195)\r\n",
    b"227 Entering Passive Mode (10,0,0,11,195,80",       # cut: no terminator
    b"226 Transfer complete (10,0,0,11,195,80)\r\n",
    b"150 227 (10,0,0,11,195,80)\r\n",
])
def test_not_a_227(payload):
    assert ftp.parse_227(payload) is None


def test_229_carries_only_a_port():
    payload = b"229 Entering Extended Passive Mode (|||50000|)\r\n"
    reply = ftp.parse_229(payload)
    assert (reply.addr, reply.port) == (None, 50000)
    assert payload[reply.start:reply.end] == b"|||50000|"


def test_229_with_an_address_is_rewritten_without_it():
    payload = b"229 Entering Extended Passive Mode (|1|10.0.0.11|50000|)\r\n"
    reply = ftp.parse_229(payload)
    assert (reply.addr, reply.port) == (RS_INT, 50000)
    assert ftp.rewrite_229(payload, reply) == b"229 Entering Extended Passive Mode (|||50000|)\r\n"


@pytest.mark.parametrize("payload", [
    b"229 Entering Extended Passive Mode (|||0|)\r\n",
    b"229 Entering Extended Passive Mode (||50000|)\r\n",
    b"229 Entering Extended Passive Mode (|||50000\r\n",
    b"229 Entering Extended Passive Mode |||50000|\r\n",
])
def test_not_a_229(payload):
    assert ftp.parse_229(payload) is None


# -- frames and checksums -------------------------------------------------------------

def test_checksum_matches_rfc1071_example():
    # RFC 1071 section 3: the sum of these words is 0xddf2 -> checksum 0x220d
    assert ftp.checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D


def test_rebuild_gives_the_frame_the_builder_makes():
    frame = server_frame(PASV_REPLY, seq=5000, ack=1000, ip_id=77)
    seg = ftp.segment(frame)
    out = ftp.rebuild(frame, seg, seq=6000, ack=1500, payload=PASV_REWRITTEN)
    assert out == server_frame(PASV_REWRITTEN, seq=6000, ack=1500, ip_id=77)
    assert ftp.checksums_ok(out)
    total = struct.unpack_from("!H", out, 16)[0]
    assert total == 20 + 20 + len(PASV_REWRITTEN) == len(out) - 14


def test_rebuild_drops_ethernet_padding_and_keeps_vlan():
    frame = server_frame(b"", flags="A") + b"\0" * 6          # padded to 60 bytes
    assert ftp.segment(frame).end == 54
    out = ftp.rebuild(frame, ftp.segment(frame), seq=1)
    assert len(out) == 54 and ftp.checksums_ok(out)
    tagged = packet_to_bytes(tcp(RS, C1, 21, 40000, flags="PA", payload=PASV_REPLY,
                                 tcp_seq=5, vlan_vid=7))
    seg = ftp.segment(tagged)
    assert seg.l3 == 18 and seg.payload(tagged) == PASV_REPLY
    assert ftp.checksums_ok(ftp.rebuild(tagged, seg, payload=PASV_REWRITTEN))


def test_checksums_ok_sees_a_bad_checksum():
    frame = bytearray(server_frame(PASV_REPLY))
    assert ftp.checksums_ok(bytes(frame))
    frame[-3] ^= 0x01
    assert not ftp.checksums_ok(bytes(frame))


def test_not_tcp_or_a_fragment_is_not_a_segment():
    assert ftp.segment(b"\0" * 10) is None
    frame = bytearray(server_frame(b"x"))
    frame[14 + 6] |= 0x20          # more fragments
    assert ftp.segment(bytes(frame)) is None


# -- sequence deltas -------------------------------------------------------------

def test_after_wraps_around():
    assert ftp.after(1, 0xFFFFFFFF)
    assert not ftp.after(0xFFFFFFFF, 1)
    assert not ftp.after(5, 5)


def test_seq_delta_after_one_growth():
    d = ftp.SeqDelta()
    assert d.fix_seq(100) == 100 and d.fix_ack(100) == 100      # nothing yet
    d.update(1000, +3)                                            # segment at 1000 grew by 3
    assert d.fix_seq(1000) == 1000            # the resized segment itself keeps its start
    assert d.fix_seq(1048) == 1051            # later bytes move
    assert d.fix_seq(900) == 900              # a retransmission before it: previous_delta
    assert d.fix_ack(1051) == 1048            # the client's ACKs come back
    assert d.fix_ack(1000) == 1000


def test_seq_delta_two_resizes_and_previous_delta():
    d = ftp.SeqDelta()
    d.update(1000, +1)
    d.update(2000, +2)
    assert (d.init_seq, d.delta, d.previous_delta) == (2000, 3, 1)
    assert d.fix_seq(2100) == 2103
    assert d.fix_seq(1500) == 1501            # between the two resizes: previous_delta
    assert d.fix_seq(2000) == 2001            # the second resized segment itself
    assert d.fix_ack(2103) == 2100
    assert d.fix_ack(2001) == 2000
    d.update(1500, +7)                        # an older segment again: no change
    assert (d.init_seq, d.delta, d.previous_delta) == (2000, 3, 1)


def test_seq_delta_shrink_never_over_acknowledges():
    d = ftp.SeqDelta()
    d.update(1000, -4)                        # 60 bytes at 1000 became 56
    assert d.fix_seq(1060) == 1056
    assert d.fix_ack(1000) == 1000            # ACK of everything before it
    assert d.fix_ack(1056) == 1060            # ACK of all of it
    assert d.fix_ack(1010) <= 1060 and d.fix_ack(1010) >= 1000


def test_seq_delta_across_wraparound():
    d = ftp.SeqDelta()
    d.update(0xFFFFFFF0, +5)
    assert d.fix_seq(0x10) == 0x15
    assert d.fix_ack(0x15) == 0x10


# -- one control connection ------------------------------------------------------

def test_pasv_227_rewrite_shifts_the_rest_of_the_connection():
    control = ftp.FtpControl()
    # client: PASV (acknowledging the banner); nothing to change
    frame = client_frame(b"PASV\r\n", seq=1000, ack=5000)
    out = control.from_client(frame)
    assert out.frame is frame and out.port is None and control.mode == ftp.PASV
    # server: the 227 with its own address; the client gets the VIP, one byte longer
    frame = server_frame(PASV_REPLY, seq=5000, ack=1006)
    out = control.from_server(frame, VIP_INT)
    assert out.passive == (RS_INT, 50000)
    assert out.frame == server_frame(PASV_REWRITTEN, seq=5000, ack=1006)
    assert ftp.checksums_ok(out.frame)
    assert control.mode == ftp.ACTIVE
    # the server's next segment is shifted by the delta
    after_227 = 5000 + len(PASV_REPLY)
    out = control.from_server(server_frame(b"150 Here comes the listing\r\n", seq=after_227,
                                           ack=1006), VIP_INT)
    assert fields(out.frame) == (after_227 + 1, 1006, b"150 Here comes the listing\r\n")
    assert ftp.checksums_ok(out.frame)
    # the client's ACK of everything it saw is shifted back
    out = control.from_client(client_frame(flags="A", seq=1006, ack=after_227 + 1 + 28))
    assert fields(out.frame)[:2] == (1006, after_227 + 28)
    assert out.frame == client_frame(flags="A", seq=1006, ack=after_227 + 28)
    # a retransmission from before the rewrite point: previous_delta (0)
    out = control.from_server(server_frame(b"230 Login successful.\r\n", seq=4977,
                                           ack=1000), VIP_INT)
    assert fields(out.frame)[0] == 4977
    # a retransmission of the 227 itself is rewritten again, at its old place,
    # without announcing the data connection twice
    out = control.from_server(server_frame(PASV_REPLY, seq=5000, ack=1006), VIP_INT)
    assert out.frame == server_frame(PASV_REWRITTEN, seq=5000, ack=1006)
    assert out.passive is None
    assert (control.out_seq.init_seq, control.out_seq.delta) == (5000, 1)


def test_two_rewrites_and_a_retransmission_between_them():
    control = ftp.FtpControl()
    control.from_client(client_frame(b"PASV\r\n"))
    control.from_server(server_frame(PASV_REPLY, seq=5000), VIP_INT)           # +1
    second_at = 5000 + len(PASV_REPLY) + 100
    control.from_client(client_frame(b"PASV\r\n", seq=1006))
    control.from_server(server_frame(PASV_REPLY, seq=second_at), VIP_INT)      # +1 more
    assert (control.out_seq.delta, control.out_seq.previous_delta) == (2, 1)
    # a segment between the two rewrites, sent again: previous_delta
    out = control.from_server(server_frame(b"226 Done\r\n", seq=second_at - 10), VIP_INT)
    assert fields(out.frame)[0] == second_at - 10 + 1
    out = control.from_server(server_frame(b"226 Done\r\n", seq=second_at + len(PASV_REPLY)),
                              VIP_INT)
    assert fields(out.frame)[0] == second_at + len(PASV_REPLY) + 2


def test_a_227_without_pasv_is_left_alone():
    control = ftp.FtpControl()
    frame = server_frame(PASV_REPLY)
    out = control.from_server(frame, VIP_INT)
    assert out.frame is frame and out.passive is None


def test_epsv_229_changes_nothing_but_announces_the_port():
    control = ftp.FtpControl()
    control.from_client(client_frame(b"EPSV\r\n"))
    frame = server_frame(b"229 Entering Extended Passive Mode (|||50000|)\r\n")
    out = control.from_server(frame, VIP_INT)
    assert out.frame is frame
    assert out.passive == (None, 50000)


def test_port_and_eprt_are_reported_and_not_changed():
    control = ftp.FtpControl()
    frame = client_frame(b"PORT 10,0,0,1,156,65\r\n")
    out = control.from_client(frame)
    assert out.frame is frame and out.port == (ip_int(C1), 40001)
    frame = client_frame(b"EPRT |1|10.0.0.1|40002|\r\n")
    assert control.from_client(frame).port == (ip_int(C1), 40002)


def test_port_after_pasv_goes_back_to_active_mode():
    control = ftp.FtpControl()
    control.from_client(client_frame(b"PASV\r\n"))
    control.from_client(client_frame(b"PORT 10,0,0,1,156,65\r\n"))
    frame = server_frame(PASV_REPLY)
    assert control.from_server(frame, VIP_INT).frame is frame


def test_sack_blocks_are_shifted_back_like_the_ack():
    control = ftp.FtpControl()
    control.from_client(client_frame(b"PASV\r\n"))
    control.from_server(server_frame(PASV_REPLY, seq=5000), VIP_INT)         # +1 from 5000
    end = 5000 + len(PASV_REPLY)
    # NOP NOP SACK(one block: the client got end+1+100 .. end+1+200)
    options = b"\x01\x01\x05\x0a" + struct.pack("!II", end + 101, end + 201)
    frame = bytearray(client_frame(flags="A", seq=1006, ack=end + 1))
    l4 = 14 + 20
    frame[l4 + 12] = (5 + 3) << 4             # data offset: 8 words
    frame[l4 + 20:l4 + 20] = options
    frame[16:18] = struct.pack("!H", 20 + 20 + len(options))
    frame = bytes(frame)          # (checksums stale: the helper recomputes them)
    out = control.from_client(frame).frame
    assert ftp.checksums_ok(out)
    seg = ftp.segment(out)
    assert seg.ack == end
    assert out[seg.l4 + 20:seg.data] == b"\x01\x01\x05\x0a" + struct.pack("!II", end + 100,
                                                                         end + 200)


def test_shrinking_rewrite():
    control = ftp.FtpControl()
    control.from_client(client_frame(b"PASV\r\n"))
    reply = b"227 Entering Passive Mode (192,168,100,111,195,80).\r\n"
    out = control.from_server(server_frame(reply, seq=5000), VIP_INT)
    new = b"227 Entering Passive Mode (10,0,0,100,195,80).\r\n"
    assert fields(out.frame) == (5000, 1000, new)
    diff = len(new) - len(reply)
    assert diff == -5 and control.out_seq.delta == diff
    out = control.from_server(server_frame(b"150 ok\r\n", seq=5000 + len(reply)), VIP_INT)
    assert fields(out.frame)[0] == 5000 + len(new)
    assert fields(control.from_client(client_frame(flags="A", ack=5000)).frame)[1] == 5000
    assert fields(control.from_client(client_frame(
        flags="A", ack=5000 + len(new))).frame)[1] == 5000 + len(reply)


def test_non_tcp_frames_pass_untouched():
    control = ftp.FtpControl()
    frame = b"\xff" * 12 + b"\x08\x06" + b"\0" * 28
    assert control.from_client(frame).frame is frame
    assert control.from_server(frame, VIP_INT).frame is frame
