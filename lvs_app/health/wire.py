"""Probe frames: Ethernet/IPv4 TCP, UDP and ICMP, built and parsed with real checksums.

The controller has no route to the real servers, so every probe packet is a
whole Ethernet frame sent with a PacketOut, and every answer comes back as a
PacketIn.  Linux drops segments whose IPv4, TCP, UDP or ICMP checksum is
wrong, so everything built here carries correct ones.

Received frames are *not* checked against their checksums: a frame sent by
a stack behind a veth (Mininet) may carry a partial, offloaded checksum
when Open vSwitch copies it to the controller, and dropping it here would
fail a healthy server.

Addresses are ints (IPv4) and 6-byte ``bytes`` (MAC).  Stdlib only.
"""

import itertools
import random
import struct
from typing import NamedTuple

from lvs_app.packet import ETH_IP, ETH_VLAN, PROTO_TCP, PROTO_UDP, checksum

PROTO_ICMP = 1
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
ICMP_ECHO_REPLY, ICMP_UNREACH, ICMP_ECHO, ICMP_TIME_EXCEEDED = 0, 3, 8, 11
ICMP_ERRORS = (ICMP_UNREACH, ICMP_TIME_EXCEEDED)
MSS = 1460                      # what we advertise: a 1500-byte Ethernet MTU
TTL = 64
PROTO_NAMES = {PROTO_TCP: "tcp", PROTO_UDP: "udp", PROTO_ICMP: "icmp"}

# the IPv4 identification: one counter from a random start, like a host's
_ip_ident = itertools.count(random.randrange(1 << 16))


class Segment(NamedTuple):
    """One received IPv4 packet, with what the probes need of its transport header.

    ``seq`` is the TCP sequence number, or for ICMP echo the echo sequence.
    For ICMP errors (types 3 and 11) the ``orig_*`` fields describe the
    packet the error is about (``orig_proto`` 0 when it was cut too short);
    ``orig_ident`` is set when that packet was an echo request.
    """

    eth_src: bytes
    eth_dst: bytes
    ip_src: int
    ip_dst: int
    proto: int
    sport: int = 0
    dport: int = 0
    seq: int = 0
    ack: int = 0
    flags: int = 0
    window: int = 0
    mss: int = 0                # the TCP MSS option, 0 when absent
    payload: bytes = b""
    icmp_type: int = 0
    icmp_code: int = 0
    ident: int = 0
    orig_proto: int = 0
    orig_src: int = 0
    orig_dst: int = 0
    orig_sport: int = 0
    orig_dport: int = 0
    orig_ident: int = 0


def _pseudo(src_ip, dst_ip, proto, length):
    return struct.pack("!IIBBH", src_ip, dst_ip, 0, proto, length)


def _frame(src_mac, dst_mac, src_ip, dst_ip, proto, l4, df=False, ident=None):
    """Ethernet + IPv4 header (checksummed) around a finished transport header + data."""
    if ident is None:
        ident = next(_ip_ident)
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), ident & 0xFFFF,
                         0x4000 if df else 0, TTL, proto, 0,
                         src_ip.to_bytes(4, "big"), dst_ip.to_bytes(4, "big"))
    header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
    return bytes(dst_mac) + bytes(src_mac) + struct.pack("!H", ETH_IP) + header + l4


def build_tcp(src_mac, dst_mac, src_ip, dst_ip, sport, dport, seq, ack, flags,
              window=65535, payload=b"", options=b"", ip_ident=None):
    """A TCP segment in a frame.  A SYN without ``options`` gets the MSS option (1460).

    ``ip_ident`` fixes the IPv4 identification (tests); DF is set, as Linux does
    for TCP.
    """
    src_ip, dst_ip = int(src_ip), int(dst_ip)
    if flags & SYN and not options:
        options = struct.pack("!BBH", 2, 4, MSS)
    options = bytes(options) + b"\0" * (-len(options) % 4)     # pad with end-of-options
    if len(options) > 40:
        raise ValueError("TCP options longer than 40 bytes")
    offset = (20 + len(options)) // 4
    header = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF,
                         offset << 4, flags & 0xFF, min(window, 0xFFFF), 0, 0) + options
    segment = header + bytes(payload)
    csum = checksum(_pseudo(src_ip, dst_ip, PROTO_TCP, len(segment)) + segment)
    segment = segment[:16] + struct.pack("!H", csum) + segment[18:]
    return _frame(src_mac, dst_mac, src_ip, dst_ip, PROTO_TCP, segment, df=True, ident=ip_ident)


class TcpFrames:
    """The TCP frames of one path (addresses, MACs, server port), pre-built.

    :func:`build_tcp` packs and checksums every header from scratch; a probe
    sends a SYN and an RST to the same server every ``delay_loop``, so what
    never changes (the Ethernet header, the addresses, their checksum sums)
    is packed once here and each frame only patches its ports, numbers,
    flags and lengths, its checksums summed from the precomputed parts.
    :meth:`build` returns the bytes :func:`build_tcp` returns for the same
    arguments (without ``options``: a SYN carries the MSS option), so the
    two are interchangeable.  Get one with :func:`tcp_frames`.
    """

    __slots__ = ("_eth", "_addrs", "_ip_sum", "_pseudo_sum", "dport")

    def __init__(self, src_mac, dst_mac, src_ip, dst_ip, dport):
        src_ip, dst_ip = int(src_ip), int(dst_ip)
        self._eth = bytes(dst_mac) + bytes(src_mac) + _ETH_IP
        self._addrs = src_ip.to_bytes(4, "big") + dst_ip.to_bytes(4, "big")
        addrs = (src_ip >> 16) + (src_ip & 0xFFFF) + (dst_ip >> 16) + (dst_ip & 0xFFFF)
        # IPv4 header words but total length and identification: version/IHL,
        # DF, TTL/protocol, the addresses
        self._ip_sum = 0x4500 + 0x4000 + ((TTL << 8) | PROTO_TCP) + addrs
        # pseudo-header but its length, and the destination port
        self._pseudo_sum = addrs + PROTO_TCP + dport
        self.dport = dport

    def build(self, sport, seq, ack, flags, window=65535, payload=b"", ip_ident=None):
        """The frame ``build_tcp(..., sport, dport, seq, ack, flags, window, payload)``."""
        seq &= 0xFFFFFFFF
        ack &= 0xFFFFFFFF
        window = min(window, 0xFFFF)
        if flags & SYN:
            options, offset_flags, hlen = _SYN_OPTIONS, 0x6000 | (flags & 0xFF), 24
            total = self._pseudo_sum + _SYN_OPTIONS_SUM
        else:
            options, offset_flags, hlen = b"", 0x5000 | (flags & 0xFF), 20
            total = self._pseudo_sum
        length = hlen + len(payload)
        if payload:
            total += _sum16(payload)
        total += (length + sport + (seq >> 16) + (seq & 0xFFFF) + (ack >> 16) + (ack & 0xFFFF)
                  + offset_flags + window)
        while total >> 16:
            total = (total & 0xFFFF) + (total >> 16)
        if ip_ident is None:
            ip_ident = next(_ip_ident)
        ip_ident &= 0xFFFF
        ip_total = 20 + length
        ip_sum = self._ip_sum + ip_total + ip_ident
        while ip_sum >> 16:
            ip_sum = (ip_sum & 0xFFFF) + (ip_sum >> 16)
        return b"".join((self._eth, _IP_TCP.pack(
            0x45, 0, ip_total, ip_ident, 0x4000, TTL, PROTO_TCP, ~ip_sum & 0xFFFF,
            self._addrs, sport, self.dport, seq, ack, offset_flags, window,
            ~total & 0xFFFF, 0), options, payload))


_ETH_IP = struct.pack("!H", ETH_IP)
_IP_TCP = struct.Struct("!BBHHHBBH8sHHIIHHHH")      # IPv4 header, then TCP's
_SYN_OPTIONS = struct.pack("!BBH", 2, 4, MSS)        # what build_tcp gives a SYN
_SYN_OPTIONS_SUM = 0x0204 + MSS
_TCP_FRAMES = {}
TCP_FRAMES_LIMIT = 8192         # paths kept (a few per checked server)


def _sum16(data):
    """The 16-bit one's complement sum of ``data`` before folding (odd: zero-padded)."""
    if len(data) % 2:
        data = bytes(data) + b"\x00"
    return sum(struct.unpack(f"!{len(data) // 2}H", data))


def tcp_frames(src_mac, dst_mac, src_ip, dst_ip, dport):
    """The :class:`TcpFrames` of this path, built once and kept."""
    try:
        frames = _TCP_FRAMES.get((src_mac, dst_mac, src_ip, dst_ip, dport))
    except TypeError:                   # a bytearray MAC: looked up as bytes below
        frames = None
    if frames is not None:
        return frames                   # (the usual call: bytes and ints already)
    key = (bytes(src_mac), bytes(dst_mac), int(src_ip), int(dst_ip), dport)
    frames = _TCP_FRAMES.get(key)
    if frames is None:
        if len(_TCP_FRAMES) >= TCP_FRAMES_LIMIT:
            _TCP_FRAMES.clear()
        frames = _TCP_FRAMES[key] = TcpFrames(src_mac, dst_mac, src_ip, dst_ip, dport)
    return frames


def build_udp(src_mac, dst_mac, src_ip, dst_ip, sport, dport, payload=b"", ip_ident=None):
    """A UDP datagram in a frame (a computed checksum of 0 is sent as 0xFFFF, RFC 768)."""
    src_ip, dst_ip = int(src_ip), int(dst_ip)
    datagram = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + bytes(payload)
    csum = checksum(_pseudo(src_ip, dst_ip, PROTO_UDP, len(datagram)) + datagram) or 0xFFFF
    datagram = datagram[:6] + struct.pack("!H", csum) + datagram[8:]
    return _frame(src_mac, dst_mac, src_ip, dst_ip, PROTO_UDP, datagram, ident=ip_ident)


def build_icmp(src_mac, dst_mac, src_ip, dst_ip, icmp_type, code, rest, body, ip_ident=None):
    """Any ICMP message: ``rest`` is the 4 bytes after the checksum, ``body`` what follows."""
    message = struct.pack("!BBH", icmp_type, code, 0) + bytes(rest)[:4].ljust(4, b"\0") + body
    message = message[:2] + struct.pack("!H", checksum(message)) + message[4:]
    return _frame(src_mac, dst_mac, int(src_ip), int(dst_ip), PROTO_ICMP, message, ident=ip_ident)


def build_icmp_echo(src_mac, dst_mac, src_ip, dst_ip, ident, seq, payload, reply=False,
                    ip_ident=None):
    """An ICMP echo request (or reply, with ``reply``)."""
    return build_icmp(src_mac, dst_mac, src_ip, dst_ip,
                      ICMP_ECHO_REPLY if reply else ICMP_ECHO, 0,
                      struct.pack("!HH", ident, seq), bytes(payload), ip_ident=ip_ident)


def build_icmp_error(src_mac, dst_mac, src_ip, dst_ip, icmp_type, code, original):
    """The ICMP error a router or host sends about the frame ``original``.

    It quotes the original IP header and the first 8 bytes after it.
    """
    offset = 18 if original[12:14] == struct.pack("!H", ETH_VLAN) else 14
    ihl = (original[offset] & 0x0F) * 4
    quoted = original[offset:offset + ihl + 8]
    return build_icmp(src_mac, dst_mac, src_ip, dst_ip, icmp_type, code, b"", quoted)


def _ip_header(data, offset):
    """(ihl, total length, proto, src, dst) of the IPv4 header at ``offset``, or None."""
    if len(data) < offset + 20 or data[offset] >> 4 != 4:
        return None
    ihl = (data[offset] & 0x0F) * 4
    total = (data[offset + 2] << 8) | data[offset + 3]
    if ihl < 20 or len(data) < offset + ihl:
        return None
    src, dst = struct.unpack_from("!II", data, offset + 12)
    return ihl, total, data[offset + 9], src, dst


def _mss_option(options):
    i = 0
    while i < len(options):
        kind = options[i]
        if kind == 0:
            break
        if kind == 1:
            i += 1
            continue
        if i + 1 >= len(options) or options[i + 1] < 2:
            break                               # a malformed option list: stop reading
        size = options[i + 1]
        if kind == 2 and size == 4 and i + 4 <= len(options):
            return (options[i + 2] << 8) | options[i + 3]
        i += size
    return 0


def parse(frame):
    """An Ethernet II frame (one optional 802.1Q tag) carrying IPv4 -> :class:`Segment`.

    None for anything else: not IPv4, a fragment, truncated or inconsistent
    headers.  The IPv4 total length bounds the packet, so Ethernet padding
    never becomes payload.  Never raises.
    """
    try:
        return _parse(bytes(frame))
    except (IndexError, struct.error, ValueError, TypeError):   # a safety net only
        return None


def _plain_tcp(data):
    """An untagged IPv4 TCP segment without IP options, not a fragment, whose
    lengths hold (the usual reply to a probe): ``(addresses and TCP header
    fields, TCP header length, frame end)``; else None."""
    size = len(data)
    if (size >= 54 and data[12] == 0x08 and data[13] == 0 and data[14] == 0x45
            and data[23] == PROTO_TCP):
        end = 14 + ((data[16] << 8) | data[17])
        if size >= end and not ((data[20] << 8) | data[21]) & 0x3FFF:
            fields = _IPV4_TCP.unpack_from(data, 26)
            hlen = (fields[6] >> 4) * 4
            if 20 <= hlen <= end - 34:
                return fields, hlen, end
    return None


def _parse(data):
    plain = _plain_tcp(data)
    if plain is None:
        return _parse_any(data)         # everything but the usual reply
    (src, dst, sport, dport, seq, ack, _, flags, window), hlen, end = plain
    return Segment(data[6:12], data[0:6], src, dst, PROTO_TCP, sport, dport, seq, ack, flags,
                   window, _mss_option(data[54:34 + hlen]) if hlen > 20 else 0,
                   data[34 + hlen:end])


def tcp_fields(data):
    """``(server ip, server port, our port, flags, seq, ack)`` of the frames that
    :func:`parse` reads the short way (:func:`_plain_tcp`), else None: what a
    TCP_CHECK reply needs, without building a :class:`Segment`."""
    plain = _plain_tcp(data)
    if plain is None:
        return None
    src, _, sport, dport, seq, ack, _, flags, _ = plain[0]
    return src, sport, dport, flags, seq, ack


def _parse_any(data):
    """:func:`_parse` for every frame (tagged, with IP options, UDP, ICMP, broken)."""
    if len(data) < 34:                          # Ethernet + the smallest IPv4 header
        return None
    eth_type, offset = (data[12] << 8) | data[13], 14
    if eth_type == ETH_VLAN:
        eth_type, offset = (data[16] << 8) | data[17], 18
    if eth_type != ETH_IP:
        return None
    ip = _ip_header(data, offset)
    if ip is None:
        return None
    ihl, total, proto, src, dst = ip
    end = offset + total
    if total < ihl or len(data) < end:
        return None
    if ((data[offset + 6] << 8) | data[offset + 7]) & 0x3FFF:
        return None                             # a fragment: probes never cause them
    l4 = offset + ihl
    # positional: the Segment's fields in their order (a hot path: every reply)
    if proto == PROTO_TCP:
        if end - l4 < 20:
            return None
        sport, dport, seq, ack, off, flags, window = _TCP_HEADER.unpack_from(data, l4)
        hlen = (off >> 4) * 4
        if hlen < 20 or hlen > end - l4:
            return None
        return Segment(data[6:12], data[0:6], src, dst, proto, sport, dport, seq, ack, flags,
                       window, _mss_option(data[l4 + 20:l4 + hlen]) if hlen > 20 else 0,
                       data[l4 + hlen:end])
    base = dict(eth_dst=data[0:6], eth_src=data[6:12], ip_src=src, ip_dst=dst, proto=proto)
    if proto == PROTO_UDP:
        if end - l4 < 8:
            return None
        sport, dport, length = struct.unpack_from("!HHH", data, l4)
        if length < 8 or length > end - l4:
            return None
        return Segment(**base, sport=sport, dport=dport, payload=data[l4 + 8:l4 + length])
    if proto == PROTO_ICMP:
        return _parse_icmp(data[l4:end], base)
    return Segment(**base, payload=data[l4:end])


_TCP_HEADER = struct.Struct("!HHIIBBH")
_IPV4_TCP = struct.Struct("!IIHHIIBBH")        # IPv4 addresses, then the TCP header


def _parse_icmp(l4, base):
    if len(l4) < 8:
        return None
    icmp_type, code = l4[0], l4[1]
    if icmp_type not in ICMP_ERRORS:
        ident, seq = struct.unpack_from("!HH", l4, 4)
        return Segment(**base, icmp_type=icmp_type, icmp_code=code, ident=ident, seq=seq,
                       payload=l4[8:])
    seg = Segment(**base, icmp_type=icmp_type, icmp_code=code, payload=l4[8:])
    inner = _ip_header(l4, 8)
    if inner is None:
        return seg
    ihl, _, proto, src, dst = inner
    quoted = l4[8 + ihl:]
    if proto in (PROTO_TCP, PROTO_UDP) and len(quoted) >= 4:
        sport, dport = struct.unpack_from("!HH", quoted)
        return seg._replace(orig_proto=proto, orig_src=src, orig_dst=dst,
                            orig_sport=sport, orig_dport=dport)
    if proto == PROTO_ICMP and len(quoted) >= 8 and quoted[0] == ICMP_ECHO:
        return seg._replace(orig_proto=proto, orig_src=src, orig_dst=dst,
                            orig_ident=struct.unpack_from("!H", quoted, 4)[0])
    return seg


def reply_key(segment):
    """The key of the probe ``segment`` answers, or None.

    TCP/UDP ``(name, server ip, server port, our port)``; ICMP echo replies
    ``("icmp", server ip, ident)``; an ICMP error gets the key of the packet
    it quotes, so it reaches the probe that sent that packet.
    """
    if segment is None:
        return None
    if segment.proto in (PROTO_TCP, PROTO_UDP):
        return (PROTO_NAMES[segment.proto], segment.ip_src, segment.sport, segment.dport)
    if segment.proto != PROTO_ICMP:
        return None
    if segment.icmp_type == ICMP_ECHO_REPLY:
        return ("icmp", segment.ip_src, segment.ident)
    if segment.icmp_type in ICMP_ERRORS:
        if segment.orig_proto in (PROTO_TCP, PROTO_UDP):
            return (PROTO_NAMES[segment.orig_proto], segment.orig_dst, segment.orig_dport,
                    segment.orig_sport)
        if segment.orig_proto == PROTO_ICMP:
            return ("icmp", segment.orig_dst, segment.orig_ident)
    return None


def reset_for(segment, src_mac):
    """The RST a TCP stack sends for an unexpected ``segment`` (RFC 793, "Reset Generation").

    With ACK set: ``<SEQ=SEG.ACK><CTL=RST>``; otherwise ``<SEQ=0>
    <ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>`` where SYN and FIN count one each.
    None for anything but TCP, and never for an RST.
    """
    if segment is None or segment.proto != PROTO_TCP or segment.flags & RST:
        return None
    if segment.flags & ACK:
        seq, ack, flags = segment.ack, 0, RST
    else:
        length = len(segment.payload) + bool(segment.flags & SYN) + bool(segment.flags & FIN)
        seq, ack, flags = 0, segment.seq + length, RST | ACK
    return build_tcp(src_mac, segment.eth_src, segment.ip_dst, segment.ip_src,
                     segment.dport, segment.sport, seq, ack, flags, window=0)
