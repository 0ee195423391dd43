"""The FTP helper's pure part: IPVS's ip_vs_ftp and ip_vs_app sequence deltas.

A NAT connection to virtual port 21 is an FTP control connection, over IPv4
or IPv6.  The director sends its packets through the controller in both
directions and hands each Ethernet (optionally VLAN-tagged) IPv4 or IPv6
frame to :class:`FtpControl`, which

* client -> server (IPVS ``pkt_in``): notices ``PASV``/``EPSV`` and reads
  ``PORT h1,h2,h3,h4,p1,p2`` / ``EPRT |1|addr|port|`` (IPv6: ``|2|``; the active data
  connection the real server will open from port 20).  The payload is never
  changed in this direction;
* server -> client (IPVS ``pkt_out``): after PASV/EPSV, reads ``227 ...
  (h1,h2,h3,h4,p1,p2)`` / ``229 ... (|||port|)``, replaces the real server's
  address in a 227 with the VIP (a 229 carries no address), and keeps TCP
  right afterwards: a rewrite that changes the payload length shifts the
  server's sequence numbers from then on, and the client's acknowledgements
  (and SACK blocks) are shifted back -- IPVS's ``struct ip_vs_seq``
  ``{init_seq, delta, previous_delta}`` bookkeeping per direction;
* returns the frame with correct lengths and checksums (IPv4 total length,
  header checksum and TCP checksum; IPv6 payload length and TCP checksum)
  whenever it changed anything (an untouched frame comes back as the very
  same bytes).

On an IPv6 control connection only the extended commands mean something, as
in ip_vs_ftp: ``EPSV`` / ``EPSV 2`` and a 229 reply, ``EPRT |2|addr|port|``
(an IPv6 address, as an int).  ``PASV`` and ``PORT`` are not looked at, so a
227 is never read or rewritten; an address of the other family in an
EPRT/229 (``|1|`` on IPv6, ``|2|`` on IPv4) is refused.  The connection's
family is the frame's (:attr:`Segment.family`).

Only frames and integers go in and out: no OpenFlow, no director state.  The
NAT header rewrite itself (addresses, ports, MACs) is not done here; the
director applies it with set_field actions on the PacketOut, which Open
vSwitch applies with incremental checksum updates.

Parsing follows ip_vs_ftp.c: ``PASV\\r\\n`` (IPv4) and ``EPSV[ 1]\\r`` (IPv4) /
``EPSV[ 2]\\r`` (IPv6) anywhere in a client segment, ``PORT``/``EPRT`` and
``227 ``/``229 `` at the start of a segment, case-insensitive, one command or
reply per segment (a reply split across segments is not seen, as in IPVS).
"""

import ipaddress
import struct
from dataclasses import dataclass, field
from typing import NamedTuple, Optional, Tuple

from lvs_app.packet import ETH_IP, ETH_IPV6, ETH_VLAN, PROTO_TCP, TCP_ACK, checksum


LISTEN_TIMEOUT = 120        # s: IPVS's LISTEN state, for data connections not yet started

# what the control connection expects next (IPVS cp->app_data)
ACTIVE, PASV, EPSV = 0, 1, 2

# a control connection's address family: the IP version of its frames
IPV4, IPV6 = 4, 6

_MASK32 = 0xFFFFFFFF
_OPT_END, _OPT_NOP, _OPT_SACK = 0, 1, 5

# IPv6 extension headers skipped on the way to TCP: hop-by-hop options,
# routing, destination options (a fragment header, 44, is not skipped)
_IPV6_HOPOPTS, _IPV6_ROUTING, _IPV6_DSTOPTS = 0, 43, 60
_IPV6_SKIPPED = (_IPV6_HOPOPTS, _IPV6_ROUTING, _IPV6_DSTOPTS)
_IPV6_TEXT = frozenset(b"0123456789abcdefABCDEF:.")


# -------------------------------------------------------------------------
# sequence numbers

def after(a, b):
    """TCP's after(a, b): a is later than b in 32-bit sequence space."""
    return 0 < ((a - b) & _MASK32) <= 0x80000000


@dataclass
class SeqDelta:
    """IPVS ``struct ip_vs_seq``: payload resizes in one direction.

    ``init_seq`` is the (original, unshifted) sequence number of the segment
    most recently resized; ``delta`` is the total shift for bytes after it,
    ``previous_delta`` the shift for bytes up to and including it (so a
    retransmission of that segment, or of an earlier one after the previous
    resize, keeps its old position).
    """

    init_seq: int = 0
    delta: int = 0
    previous_delta: int = 0
    active: bool = False         # IP_VS_CONN_F_IN_SEQ / _OUT_SEQ

    def fix_seq(self, seq):
        """The sequence number of a segment sent in this direction, shifted."""
        if not self.active or not (self.delta or self.previous_delta):
            return seq
        shift = self.delta if after(seq, self.init_seq) else self.previous_delta
        return (seq + shift) & _MASK32

    def fix_ack(self, ack):
        """An acknowledgement (or SACK edge) coming back, shifted back.

        IPVS compares with ``init_seq + delta``; for a rewrite that shrank the
        payload that would over-acknowledge an ACK of exactly the bytes before
        the rewritten segment, so the larger of the two deltas is used (the
        same as IPVS when the payload grew, netfilter's seqadj when it shrank).
        """
        if not self.active or not (self.delta or self.previous_delta):
            return ack
        edge = (self.init_seq + max(self.delta, self.previous_delta)) & _MASK32
        shift = self.delta if after(ack, edge) else self.previous_delta
        return (ack - shift) & _MASK32

    def update(self, seq, diff):
        """A segment starting at (original) ``seq`` grew by ``diff`` bytes."""
        if not diff:
            return
        if not self.active or after(seq, self.init_seq):
            self.previous_delta = self.delta
            self.delta += diff
            self.init_seq = seq & _MASK32
            self.active = True


# -------------------------------------------------------------------------
# FTP text

def _digits(data, i):
    """(value, index after the digits) or (None, i) when there is no digit."""
    j = i
    while j < len(data) and 48 <= data[j] <= 57:
        j += 1
    if j == i or j - i > 5:
        return None, i
    return int(data[i:j]), j


def _starts(data, word):
    return data[:len(word)].upper() == word


def _six_numbers(data, i):
    """h1,h2,h3,h4,p1,p2 from ``i``: (addr int, port, end) or None.

    Like IPVS, the list must be followed by some other character (``\\r``,
    ``)``...) inside the segment.
    """
    numbers = []
    while True:
        value, i = _digits(data, i)
        if value is None or value > 255:
            return None
        numbers.append(value)
        if i >= len(data):
            return None
        if len(numbers) == 6:
            break
        if data[i] != 44:         # ','
            return None
        i += 1
    addr = int.from_bytes(bytes(numbers[:4]), "big")
    return addr, numbers[4] << 8 | numbers[5], i


def _skip_to_numbers(data, i, opener):
    """Skip to the address after ``227 ``: text, then an optional ``(``."""
    found = False
    while i < len(data):
        c = data[i]
        if not found:
            if 48 <= c <= 57:
                return i
            if c == opener:
                found = True
        elif c != opener:
            return i
        i += 1
    return None


def _address(text, family):
    """An EPRT/229 address of ``family`` as an int, or None when it is not one."""
    try:
        if family == IPV6:
            # only what in6_pton reads: no zone ("%eth0"), no brackets
            if not text or not set(text) <= _IPV6_TEXT:
                return None
            return int(ipaddress.IPv6Address(text.decode("ascii")))
        return int(ipaddress.IPv4Address(text.decode("ascii")))
    except (UnicodeDecodeError, ValueError):
        return None


def _extended(data, i, passive, family=IPV4):
    """``<d>af<d>addr<d>port<d>`` (EPRT, 229) or ``<d><d><d>port<d>`` (229) from ``i``.

    ``af`` must be the connection's ``family``: ``1`` (IPv4) on IPv4, ``2``
    (IPv6) on IPv6; the other one is refused, as ip_vs_ftp_get_addrport does.
    Returns (addr int or None, port, end) or None.
    """
    if i >= len(data):
        return None
    delim = data[i]
    if not 33 <= delim <= 126:
        return None
    i += 1
    addr = None
    if i < len(data) and data[i] == delim:
        # "|||port|": no family and no address (a 229 reply)
        if not passive or i + 1 >= len(data) or data[i + 1] != delim:
            return None
        i += 2
    else:
        af = b"2" if family == IPV6 else b"1"
        if data[i:i + 2] != af + bytes([delim]):
            return None             # an address of the connection's family only
        i += 2
        end = data.find(bytes([delim]), i)
        if end < 0:
            return None
        addr = _address(data[i:end], family)
        if addr is None:
            return None
        i = end + 1
    port, i = _digits(data, i)
    if not port or port > 65535 or i >= len(data) or data[i] != delim:
        return None
    return addr, port, i + 1


def passive_request(payload, family=IPV4):
    """PASV or EPSV when the client asks for passive mode, else None.

    As IPVS (ip_vs_ftp_in): ``PASV\\r\\n`` anywhere in the segment, on IPv4
    only; ``EPSV\\r``, or ``EPSV 1\\r`` on IPv4 / ``EPSV 2\\r`` on IPv6 (the
    other family, or ``EPSV ALL``, is not supported).
    """
    data = bytes(payload).upper()
    proto = 50 if family == IPV6 else 49       # '2' / '1'
    for i in range(0, len(data) - 5):
        if family == IPV4 and data.startswith(b"PASV\r\n", i):
            return PASV
        if data.startswith(b"EPSV", i) and data[i + 4] in b" \r":
            if data[i + 4] == 32:     # ' '
                if i + 6 >= len(data) or data[i + 6] != 13 or data[i + 5] != proto:
                    return None
            return EPSV
    return None


def parse_port(payload, family=IPV4):
    """``PORT h1,h2,h3,h4,p1,p2`` at the start: (addr int, port) or None.

    Never on IPv6: ip_vs_ftp_in reads PORT only when ``cp->af == AF_INET``.
    """
    data = bytes(payload)
    if family != IPV4 or not _starts(data, b"PORT"):
        return None
    i = 4
    while i < len(data) and data[i] == 32:
        i += 1
    if i == 4 and (i >= len(data) or not 48 <= data[i] <= 57):
        return None
    found = _six_numbers(data, i)
    if found is None or not found[1]:
        return None
    return found[0], found[1]


def parse_eprt(payload, family=IPV4):
    """``EPRT |1|a.b.c.d|port|`` (IPv4) or ``EPRT |2|ipv6-text|port|`` (IPv6)
    at the start: (addr int, port) or None."""
    data = bytes(payload)
    if not _starts(data, b"EPRT"):
        return None
    i = 4
    while i < len(data) and data[i] == 32:
        i += 1
    found = _extended(data, i, passive=False, family=family)
    if found is None:
        return None
    return found[0], found[1]


class Reply(NamedTuple):
    """A 227/229 reply: announced address (None in a 229) and port, and the
    byte range [start, end) of the address text that a rewrite replaces."""

    addr: Optional[int]
    port: int
    start: int
    end: int


def parse_227(payload):
    """``227 Entering Passive Mode (h1,h2,h3,h4,p1,p2)`` at the start, or None."""
    data = bytes(payload)
    if not _starts(data, b"227 "):
        return None
    start = _skip_to_numbers(data, 4, 40)     # '('
    if start is None:
        return None
    found = _six_numbers(data, start)
    if found is None or not found[1]:
        return None
    return Reply(found[0], found[1], start, found[2])


def parse_229(payload, family=IPV4):
    """``229 Entering Extended Passive Mode (|||port|)`` at the start, or None.

    An address in it must be of the connection's ``family``."""
    data = bytes(payload)
    if not _starts(data, b"229 "):
        return None
    i = data.find(b"(", 4)
    if i < 0:
        return None
    while i < len(data) and data[i] == 40:
        i += 1
    found = _extended(data, i, passive=True, family=family)
    if found is None:
        return None
    return Reply(found[0], found[1], i, found[2])


def rewrite_227(payload, reply, addr):
    """The 227 payload with ``addr`` (the VIP) and the same port."""
    a = addr.to_bytes(4, "big")
    text = "%d,%d,%d,%d,%d,%d" % (a[0], a[1], a[2], a[3], reply.port >> 8, reply.port & 0xFF)
    payload = bytes(payload)
    return payload[:reply.start] + text.encode() + payload[reply.end:]


def rewrite_229(payload, reply):
    """The 229 payload as ``|||port|`` (an address in it, if any, is dropped)."""
    payload = bytes(payload)
    return payload[:reply.start] + b"|||%d|" % reply.port + payload[reply.end:]


# -------------------------------------------------------------------------
# frames

class Segment(NamedTuple):
    """Where the parts of an IPv4/TCP or IPv6/TCP frame are (offsets into the
    frame)."""

    l3: int                 # IP header
    l4: int                 # TCP header (after any IPv4 options / IPv6 extension headers)
    data: int               # TCP payload
    end: int                # end of the IP packet (Ethernet padding excluded)
    seq: int
    ack: int
    flags: int
    family: int = IPV4      # IPV4 or IPV6

    def payload(self, frame):
        return bytes(frame[self.data:self.end])


def segment(frame):
    """The TCP segment in an Ethernet/IPv4 or Ethernet/IPv6 frame, or None
    (not TCP, a fragment, or truncated).

    IPv6 hop-by-hop, routing and destination options headers are skipped; a
    fragment header (or any other extension header) means None, as an IPv4
    fragment does.
    """
    if len(frame) < 14:
        return None
    eth_type = frame[12] << 8 | frame[13]
    l3 = 14
    if eth_type == ETH_VLAN and len(frame) >= 18:
        eth_type = frame[16] << 8 | frame[17]
        l3 = 18
    if eth_type == ETH_IPV6:
        return _segment6(frame, l3)
    if eth_type != ETH_IP or len(frame) < l3 + 20 or frame[l3] >> 4 != 4:
        return None
    ihl = (frame[l3] & 0x0F) * 4
    total = frame[l3 + 2] << 8 | frame[l3 + 3]
    frag = (frame[l3 + 6] & 0x3F) << 8 | frame[l3 + 7]      # MF flag + offset
    if frame[l3 + 9] != PROTO_TCP or frag or ihl < 20 or len(frame) < l3 + total:
        return None
    return _tcp(frame, l3, l3 + ihl, l3 + total, IPV4)


def _segment6(frame, l3):
    """segment() for the IPv6 packet at ``l3``."""
    if len(frame) < l3 + 40 or frame[l3] >> 4 != 6:
        return None
    end = l3 + 40 + (frame[l3 + 4] << 8 | frame[l3 + 5])
    if len(frame) < end:
        return None
    next_header, l4 = frame[l3 + 6], l3 + 40
    while next_header in _IPV6_SKIPPED:
        if l4 + 8 > end:
            return None
        if next_header == _IPV6_ROUTING and frame[l4 + 3]:
            # segments left: not at its final destination, whose address the
            # TCP checksum's pseudo-header holds (RFC 8200 8.1)
            return None
        next_header, l4 = frame[l4], l4 + (frame[l4 + 1] + 1) * 8
    if next_header != PROTO_TCP:
        return None
    return _tcp(frame, l3, l4, end, IPV6)


def _tcp(frame, l3, l4, end, family):
    """The Segment whose TCP header is at ``l4`` and IP packet ends at ``end``."""
    if l4 + 20 > end:
        return None
    seq, ack, off, flags = struct.unpack_from("!IIBB", frame, l4 + 4)
    data = l4 + (off >> 4) * 4
    if data > end or (off >> 4) < 5:
        return None
    return Segment(l3, l4, data, end, seq, ack, (off & 1) << 8 | flags, family)


def _pseudo_header(ip, family, length):
    """The TCP checksum's pseudo-header for the IP header(s) ``ip``."""
    if family == IPV6:
        # source, destination, upper-layer length, 3 zero bytes, next header
        return bytes(ip[8:40]) + struct.pack("!I3xB", length, PROTO_TCP)
    return bytes(ip[12:20]) + struct.pack("!BBH", 0, PROTO_TCP, length)


def _fix_sack(options, fix):
    """TCP options with every SACK block edge passed through ``fix``."""
    out = bytearray(options)
    i = 0
    while i < len(out):
        kind = out[i]
        if kind == _OPT_END:
            break
        if kind == _OPT_NOP:
            i += 1
            continue
        if i + 1 >= len(out) or out[i + 1] < 2:
            break
        length = out[i + 1]
        if kind == _OPT_SACK:
            for j in range(i + 2, min(i + length, len(out)) - 7, 8):
                left, right = struct.unpack_from("!II", out, j)
                struct.pack_into("!II", out, j, fix(left), fix(right))
        i += length
    return bytes(out)


def rebuild(frame, seg, seq=None, ack=None, payload=None, options=None):
    """``frame`` with a new seq/ack/options/payload and correct lengths and
    checksums: IPv4 total length and header checksum, or IPv6 payload length
    (extension headers included; IPv6 has no header checksum), and the TCP
    checksum.  Ethernet padding is dropped; everything else is kept."""
    frame = bytes(frame)
    ip = bytearray(frame[seg.l3:seg.l4])
    tcp = bytearray(frame[seg.l4:seg.data])
    if options is not None:
        tcp[20:] = options
    if payload is None:
        payload = frame[seg.data:seg.end]
    if seq is not None:
        struct.pack_into("!I", tcp, 4, seq & _MASK32)
    if ack is not None:
        struct.pack_into("!I", tcp, 8, ack & _MASK32)
    tcp[16:18] = b"\0\0"
    segment_bytes = bytes(tcp) + payload
    pseudo = _pseudo_header(ip, seg.family, len(segment_bytes))
    struct.pack_into("!H", tcp, 16, checksum(pseudo + segment_bytes))
    if seg.family == IPV6:
        struct.pack_into("!H", ip, 4, len(ip) - 40 + len(segment_bytes))
    else:
        struct.pack_into("!H", ip, 2, len(ip) + len(segment_bytes))
        ip[10:12] = b"\0\0"
        struct.pack_into("!H", ip, 10, checksum(bytes(ip)))
    return frame[:seg.l3] + bytes(ip) + bytes(tcp) + payload


def checksums_ok(frame):
    """True when an IPv4/TCP frame's IP header and TCP checksums, or an
    IPv6/TCP frame's TCP checksum, verify."""
    seg = segment(frame)
    if seg is None:
        return False
    ip = bytes(frame[seg.l3:seg.l4])
    tcp = bytes(frame[seg.l4:seg.end])
    if seg.family == IPV4 and checksum(ip) != 0:
        return False
    return checksum(_pseudo_header(ip, seg.family, len(tcp)) + tcp) == 0


# -------------------------------------------------------------------------
# one control connection

class FromClient(NamedTuple):
    frame: bytes
    port: Optional[Tuple[int, int]]     # PORT/EPRT: (client addr, data port); IPv6: 128-bit addr


class FromServer(NamedTuple):
    frame: bytes
    passive: Optional[Tuple[Optional[int], int]]   # 227/229: (announced addr, port)


@dataclass
class FtpControl:
    """The helper's state for one FTP control connection.

    ``in_seq`` shifts client->server segments (never used: the helper does
    not resize client data, as in IPVS), ``out_seq`` server->client ones.
    """

    mode: int = ACTIVE
    in_seq: SeqDelta = field(default_factory=SeqDelta)
    out_seq: SeqDelta = field(default_factory=SeqDelta)
    rewritten: dict = field(default_factory=dict)   # original seq -> mode, last few

    def from_client(self, frame):
        """A client->server frame: (frame to forward, PORT/EPRT request)."""
        seg = segment(frame)
        if seg is None:
            return FromClient(frame, None)
        seq = self.in_seq.fix_seq(seg.seq)
        ack, options = seg.ack, None
        if seg.flags & TCP_ACK and self.out_seq.active:
            ack = self.out_seq.fix_ack(seg.ack)
            if seg.data > seg.l4 + 20:
                old = bytes(frame[seg.l4 + 20:seg.data])
                options = _fix_sack(old, self.out_seq.fix_ack)
                options = None if options == old else options
        port = None
        payload = seg.payload(frame)
        if payload:
            wanted = passive_request(payload, seg.family)
            if wanted is not None:
                self.mode = wanted
            else:
                port = parse_port(payload, seg.family) or parse_eprt(payload, seg.family)
                if port is not None:
                    self.mode = ACTIVE
        if seq == seg.seq and ack == seg.ack and options is None:
            return FromClient(frame, port)
        return FromClient(rebuild(frame, seg, seq, ack, options=options), port)

    def from_server(self, frame, vip):
        """A server->client frame: (frame to forward, 227/229 announcement).

        ``vip`` (an int) replaces the real server's address in a 227 (IPv4
        only; on IPv6 it is a 128-bit int and never written).
        """
        seg = segment(frame)
        if seg is None:
            return FromServer(frame, None)
        seq = self.out_seq.fix_seq(seg.seq)
        ack = self.in_seq.fix_ack(seg.ack) if seg.flags & TCP_ACK else seg.ack
        payload = new_payload = seg.payload(frame)
        passive = None
        # a retransmitted reply is rewritten again, the same way (its
        # announcement was acted on the first time)
        retransmitted = seg.seq in self.rewritten
        mode = self.rewritten[seg.seq] if retransmitted else self.mode
        if payload and mode != ACTIVE:
            if mode == PASV:
                # IPv6: a 227 is never read (ip_vs_ftp_in sets IP_VS_FTP_PASV on AF_INET only)
                reply = parse_227(payload) if seg.family == IPV4 else None
                if reply is not None:
                    new_payload = rewrite_227(payload, reply, vip)
            else:
                reply = parse_229(payload, seg.family)
                if reply is not None and reply.addr is not None:
                    new_payload = rewrite_229(payload, reply)
            if reply is not None and not retransmitted:
                passive = (reply.addr, reply.port)
                self.mode = ACTIVE
                self.rewritten[seg.seq] = mode
                while len(self.rewritten) > 4:
                    del self.rewritten[next(iter(self.rewritten))]
            if reply is not None:
                # no-op for a retransmission: its seq is not after init_seq
                self.out_seq.update(seg.seq, len(new_payload) - len(payload))
        if seq == seg.seq and ack == seg.ack and new_payload == payload:
            return FromServer(frame, passive)
        return FromServer(rebuild(frame, seg, seq, ack, payload=new_payload), passive)
