"""The FTP helper's pure part: IPVS's ip_vs_ftp and ip_vs_app sequence deltas.

A NAT connection to virtual port 21 is an FTP control connection.  The
director sends its packets through the controller in both directions and
hands each frame to :class:`FtpControl`, which

* client -> server (IPVS ``pkt_in``): notices ``PASV``/``EPSV`` and reads
  ``PORT h1,h2,h3,h4,p1,p2`` / ``EPRT |1|addr|port|`` (the active data
  connection the real server will open from port 20).  The payload is never
  changed in this direction;
* server -> client (IPVS ``pkt_out``): after PASV/EPSV, reads ``227 ...
  (h1,h2,h3,h4,p1,p2)`` / ``229 ... (|||port|)``, replaces the real server's
  address in a 227 with the VIP (a 229 carries no address), and keeps TCP
  right afterwards: a rewrite that changes the payload length shifts the
  server's sequence numbers from then on, and the client's acknowledgements
  (and SACK blocks) are shifted back -- IPVS's ``struct ip_vs_seq``
  ``{init_seq, delta, previous_delta}`` bookkeeping per direction;
* returns the frame with correct IPv4 total length, IPv4 header checksum and
  TCP checksum whenever it changed anything (an untouched frame comes back
  as the very same bytes).

Only frames and integers go in and out: no OpenFlow, no director state.  The
NAT header rewrite itself (addresses, ports, MACs) is not done here; the
director applies it with set_field actions on the PacketOut, which Open
vSwitch applies with incremental checksum updates.

Parsing follows ip_vs_ftp.c: ``PASV\\r\\n`` and ``EPSV[ 1]\\r`` anywhere in a
client segment, ``PORT``/``EPRT`` and ``227 ``/``229 `` at the start of a
segment, case-insensitive, one command or reply per segment (a reply split
across segments is not seen, as in IPVS).
"""

import ipaddress
import struct
from dataclasses import dataclass, field
from typing import NamedTuple, Optional, Tuple

from lvs_app.packet import ETH_IP, ETH_VLAN, PROTO_TCP, TCP_ACK


LISTEN_TIMEOUT = 120        # s: IPVS's LISTEN state, for data connections not yet started

# what the control connection expects next (IPVS cp->app_data)
ACTIVE, PASV, EPSV = 0, 1, 2

_MASK32 = 0xFFFFFFFF
_OPT_END, _OPT_NOP, _OPT_SACK = 0, 1, 5


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


def _extended(data, i, passive):
    """``<d>1<d>addr<d>port<d>`` (EPRT) or ``<d><d><d>port<d>`` (229) from ``i``.

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
        if data[i:i + 2] != b"1" + bytes([delim]):
            return None             # IPv4 control connections take IPv4 only
        i += 2
        end = data.find(bytes([delim]), i)
        if end < 0:
            return None
        try:
            addr = int(ipaddress.IPv4Address(data[i:end].decode("ascii")))
        except (UnicodeDecodeError, ValueError):
            return None
        i = end + 1
    port, i = _digits(data, i)
    if not port or port > 65535 or i >= len(data) or data[i] != delim:
        return None
    return addr, port, i + 1


def passive_request(payload):
    """PASV or EPSV when the client asks for passive mode, else None.

    As IPVS: ``PASV\\r\\n`` anywhere in the segment; ``EPSV\\r`` or
    ``EPSV 1\\r`` (``EPSV 2`` asks for IPv6 and ``EPSV ALL`` is not supported).
    """
    data = bytes(payload).upper()
    for i in range(0, len(data) - 5):
        if data.startswith(b"PASV\r\n", i):
            return PASV
        if data.startswith(b"EPSV", i) and data[i + 4] in b" \r":
            if data[i + 4] == 32:     # ' '
                if i + 6 >= len(data) or data[i + 6] != 13 or data[i + 5] != 49:
                    return None
            return EPSV
    return None


def parse_port(payload):
    """``PORT h1,h2,h3,h4,p1,p2`` at the start: (addr int, port) or None."""
    data = bytes(payload)
    if not _starts(data, b"PORT"):
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


def parse_eprt(payload):
    """``EPRT |1|a.b.c.d|port|`` at the start: (addr int, port) or None."""
    data = bytes(payload)
    if not _starts(data, b"EPRT"):
        return None
    i = 4
    while i < len(data) and data[i] == 32:
        i += 1
    found = _extended(data, i, passive=False)
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


def parse_229(payload):
    """``229 Entering Extended Passive Mode (|||port|)`` at the start, or None."""
    data = bytes(payload)
    if not _starts(data, b"229 "):
        return None
    i = data.find(b"(", 4)
    if i < 0:
        return None
    while i < len(data) and data[i] == 40:
        i += 1
    found = _extended(data, i, passive=True)
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

def checksum(data):
    """The Internet checksum (RFC 1071) of ``data``."""
    if len(data) % 2:
        data = bytes(data) + b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


class Segment(NamedTuple):
    """Where the parts of an IPv4/TCP frame are (offsets into the frame)."""

    l3: int                 # IPv4 header
    l4: int                 # TCP header
    data: int               # TCP payload
    end: int                # end of the IP packet (Ethernet padding excluded)
    seq: int
    ack: int
    flags: int

    def payload(self, frame):
        return bytes(frame[self.data:self.end])


def segment(frame):
    """The TCP segment in an Ethernet/IPv4 frame, or None (not TCP, a
    fragment, or truncated)."""
    if len(frame) < 14:
        return None
    eth_type = frame[12] << 8 | frame[13]
    l3 = 14
    if eth_type == ETH_VLAN and len(frame) >= 18:
        eth_type = frame[16] << 8 | frame[17]
        l3 = 18
    if eth_type != ETH_IP or len(frame) < l3 + 20 or frame[l3] >> 4 != 4:
        return None
    ihl = (frame[l3] & 0x0F) * 4
    total = frame[l3 + 2] << 8 | frame[l3 + 3]
    frag = (frame[l3 + 6] & 0x3F) << 8 | frame[l3 + 7]      # MF flag + offset
    if frame[l3 + 9] != PROTO_TCP or frag or ihl < 20 or len(frame) < l3 + total:
        return None
    l4 = l3 + ihl
    if total < ihl + 20:
        return None
    seq, ack, off, flags = struct.unpack_from("!IIBB", frame, l4 + 4)
    data = l4 + (off >> 4) * 4
    if data > l3 + total or (off >> 4) < 5:
        return None
    return Segment(l3, l4, data, l3 + total, seq, ack, (off & 1) << 8 | flags)


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
    checksums (IPv4 total length and header checksum, TCP checksum).
    Ethernet padding is dropped; everything else is kept."""
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
    pseudo = bytes(ip[12:20]) + struct.pack("!BBH", 0, PROTO_TCP, len(segment_bytes))
    struct.pack_into("!H", tcp, 16, checksum(pseudo + segment_bytes))
    struct.pack_into("!H", ip, 2, len(ip) + len(segment_bytes))
    ip[10:12] = b"\0\0"
    struct.pack_into("!H", ip, 10, checksum(bytes(ip)))
    return frame[:seg.l3] + bytes(ip) + bytes(tcp) + payload


def checksums_ok(frame):
    """True when an IPv4/TCP frame's IP header and TCP checksums verify."""
    seg = segment(frame)
    if seg is None:
        return False
    ip = bytes(frame[seg.l3:seg.l4])
    tcp = bytes(frame[seg.l4:seg.end])
    pseudo = ip[12:20] + struct.pack("!BBH", 0, PROTO_TCP, len(tcp))
    return checksum(ip) == 0 and checksum(pseudo + tcp) == 0


# -------------------------------------------------------------------------
# one control connection

class FromClient(NamedTuple):
    frame: bytes
    port: Optional[Tuple[int, int]]     # PORT/EPRT: (client addr, data port)


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
            wanted = passive_request(payload)
            if wanted is not None:
                self.mode = wanted
            else:
                port = parse_port(payload) or parse_eprt(payload)
                if port is not None:
                    self.mode = ACTIVE
        if seq == seg.seq and ack == seg.ack and options is None:
            return FromClient(frame, port)
        return FromClient(rebuild(frame, seg, seq, ack, options=options), port)

    def from_server(self, frame, vip):
        """A server->client frame: (frame to forward, 227/229 announcement).

        ``vip`` (an int) replaces the real server's address in a 227.
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
                reply = parse_227(payload)
                if reply is not None:
                    new_payload = rewrite_227(payload, reply, vip)
            else:
                reply = parse_229(payload)
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
