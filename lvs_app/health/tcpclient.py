"""A small TCP client that speaks in frames, for the probes that need a connection.

Just enough of RFC 793/9293 to talk to a Linux server for one request and
its answer: the handshake with an MSS option, in-order data only (a segment
beyond a hole is answered with a duplicate ACK and dropped, the server
retransmits it), sending within the peer's window in segments of at most
its MSS, retransmission on a timer (0.2 s, doubling, reset by new ACKs),
FIN and RST.  No window scaling, SACK, timestamps or congestion control:
a health check moves a few kilobytes.

Nothing here reads a clock or sleeps: every call gets ``now`` (seconds) and
returns the frames to send; :meth:`TcpClient.poll` must be called by
:attr:`TcpClient.timer` for retransmissions to happen.  Stdlib only.
"""

from lvs_app.health import wire
from lvs_app.health.wire import ACK, FIN, PSH, RST, SYN

INITIAL_RTO = 0.2
MAX_RTO = 60.0
WINDOW = 65535                  # advertised; the owner consumes data as it arrives
DEFAULT_MSS = 536               # RFC 9293 3.7.1: the MSS of a peer that sends no option
MASK = 0xFFFFFFFF


def seq_lt(a, b):
    """``a < b`` in sequence space (mod 2**32)."""
    return a != b and ((b - a) & MASK) < 0x80000000


def seq_le(a, b):
    return a == b or seq_lt(a, b)


class TcpClient:
    """One client connection from ``src_ip:sport`` to ``dst_ip:dport``.

    ``state`` is "closed" (before :meth:`connect`, after an RST or
    :meth:`abort`), "syn-sent" or "established" (which also covers the
    closing states: see ``peer_closed``, ``fin_sent`` and ``fin_acked``).
    """

    #: answer the SYN/ACK with an ACK; False: the owner answers it itself
    #: (TCP_CHECK's RST), so no ACK is built for nothing
    ack_handshake = True

    def __init__(self, src_mac, dst_mac, src_ip, dst_ip, sport, dport, isn):
        self.src_mac, self.dst_mac = src_mac, dst_mac
        self.src_ip, self.dst_ip = int(src_ip), int(dst_ip)
        self.sport, self.dport = sport, dport
        # the path's frames, pre-built (shared with every probe of this server port)
        self._frames = wire.tcp_frames(src_mac, dst_mac, self.src_ip, self.dst_ip, dport)
        self.iss = isn & MASK
        self.snd_una = self.snd_nxt = self.iss
        self.snd_wnd = 0
        self.peer_mss = DEFAULT_MSS
        self.rcv_nxt = 0
        self.state = "closed"
        self.peer_closed = self.reset = self.refused = False
        self.fin_sent = self.fin_acked = False
        self.timer = None               # when poll() retransmits, None when nothing is due
        self.rto = INITIAL_RTO
        self._close_wanted = False
        self._unacked = b""             # data sent, not acknowledged: starts at snd_una
        self._pending = b""             # data accepted by send(), not sent yet
        self._buf = bytearray()

    # ------------------------------------------------------------------ state

    @property
    def established(self):
        return self.state == "established"

    @property
    def closed(self):
        """No more traffic is expected: reset, aborted, or both FINs exchanged."""
        return self.state == "closed" or (self.peer_closed and self.fin_acked)

    @property
    def data(self):
        """The received bytes not taken yet."""
        return bytes(self._buf)

    def take(self, n=None):
        """Remove and return up to ``n`` received bytes (all when None)."""
        n = len(self._buf) if n is None else n
        chunk = bytes(self._buf[:n])
        del self._buf[:n]
        return chunk

    # ------------------------------------------------------------------ frames

    def _segment(self, flags, seq, payload=b""):
        return self._frames.build(self.sport, seq, self.rcv_nxt if flags & ACK else 0, flags,
                                  WINDOW, payload)

    def _ack(self):
        return self._segment(ACK, self.snd_nxt)

    def _arm(self, now):
        if self.timer is None:
            self.timer = now + self.rto

    # ------------------------------------------------------------------ calls

    def connect(self, now):
        """Open the connection: the SYN."""
        self.state = "syn-sent"
        self.snd_nxt = (self.iss + 1) & MASK
        self._arm(now)
        return [self._segment(SYN, self.iss)]

    def send(self, data, now):
        """Queue ``data``; returns the segments the peer's window allows now."""
        self._pending += bytes(data)
        return self._flush(now)

    def close(self, now):
        """Our FIN, after everything queued has been sent."""
        self._close_wanted = True
        return self._flush(now)

    def abort(self):
        """Drop the connection; the RST that tells the peer, once it got past SYN."""
        frames = []
        if self.established:
            frames.append(self._segment(RST | ACK, self.snd_nxt))
        self.state, self.timer = "closed", None
        return frames

    def poll(self, now):
        """Retransmit the SYN or the oldest unacknowledged segment once its timer ran out."""
        if self.timer is None or now < self.timer or self.state == "closed":
            return []
        self.rto = min(self.rto * 2, MAX_RTO)
        self.timer = now + self.rto
        if self.state == "syn-sent":
            return [self._segment(SYN, self.iss)]
        if self.snd_una != self.snd_nxt:
            chunk = self._unacked[:self.peer_mss]
            fin = self.fin_sent and len(chunk) == len(self._unacked)
            return [self._segment(ACK | (PSH if chunk else 0) | (FIN if fin else 0),
                                  self.snd_una, chunk)]
        if self._pending:                      # a zero window: probe it with one byte
            return self._flush(now, probe=True)
        self.timer = None
        return []

    def receive(self, seg, now):
        """Handle one segment of this connection; returns the frames that answer it."""
        if seg.proto != wire.PROTO_TCP or self.state == "closed":
            return []
        if seg.flags & RST:
            self._on_reset(seg)
            return []
        if self.state == "syn-sent":
            return self._on_syn_sent(seg, now)
        if seg.flags & SYN:                    # the SYN/ACK again: our ACK was lost
            return [self._ack()]
        if not seg.flags & ACK:
            return []                          # RFC 9293: dropped in synchronized states
        self._on_ack(seg, now)
        need_ack = self._on_data(seg)
        frames = self._flush(now)
        if need_ack and not frames:
            frames.append(self._ack())
        return frames

    # ------------------------------------------------------------------ receiving

    def _on_reset(self, seg):
        if self.state == "syn-sent":
            # acceptable only when it acknowledges our SYN (RFC 9293 3.10.7.3)
            if not seg.flags & ACK or seg.ack != self.snd_nxt:
                return
            self.refused = True
        elif not (seq_le(self.rcv_nxt, seg.seq)
                  and seq_lt(seg.seq, (self.rcv_nxt + WINDOW) & MASK)):
            return                             # outside our window: not for us
        self.reset = True
        self.state, self.timer = "closed", None

    def _on_syn_sent(self, seg, now):
        if seg.flags & ACK and seg.ack != self.snd_nxt:
            return [self._frames.build(self.sport, seg.ack, 0, RST, window=0)]
        if not (seg.flags & SYN and seg.flags & ACK):
            return []                          # no simultaneous open
        self.rcv_nxt = (seg.seq + 1) & MASK
        self.snd_una = seg.ack
        self.snd_wnd = seg.window
        self.peer_mss = min(seg.mss or DEFAULT_MSS, wire.MSS)
        self.state, self.timer, self.rto = "established", None, INITIAL_RTO
        frames = self._flush(now)
        if frames or not self.ack_handshake:
            return frames
        return [self._ack()]

    def _on_ack(self, seg, now):
        ack = seg.ack
        if seq_lt(self.snd_nxt, ack):
            return                             # acknowledges what we never sent
        if seq_lt(self.snd_una, ack):
            acked = (ack - self.snd_una) & MASK
            self._unacked = self._unacked[acked:]
            self.snd_una = ack
            if self.fin_sent and ack == self.snd_nxt:
                self.fin_acked = True
            self.rto = INITIAL_RTO
            self.timer = None if ack == self.snd_nxt else now + self.rto
        if seq_le(self.snd_una, ack):
            self.snd_wnd = seg.window

    def _on_data(self, seg):
        """Take in-order data and an in-order FIN; True when an ACK must be sent."""
        length, fin = len(seg.payload), bool(seg.flags & FIN)
        if not length and not fin:
            return False
        if seq_lt(self.rcv_nxt, seg.seq) or self.peer_closed:
            return True                        # beyond a hole, or after the FIN: duplicate ACK
        have = (self.rcv_nxt - seg.seq) & MASK   # bytes of it we already took
        if have < length:
            self._buf += seg.payload[have:]
            self.rcv_nxt = (self.rcv_nxt + length - have) & MASK
        if fin and self.rcv_nxt == (seg.seq + length) & MASK:
            self.rcv_nxt = (self.rcv_nxt + 1) & MASK
            self.peer_closed = True
        return True

    # ------------------------------------------------------------------ sending

    def _flush(self, now, probe=False):
        frames = []
        if not self.established:
            return frames
        while self._pending:
            room = self.snd_wnd - ((self.snd_nxt - self.snd_una) & MASK)
            if probe and room <= 0:
                room, probe = 1, False
            if room <= 0:
                self._arm(now)                 # the window is shut: poll() probes it
                break
            chunk = self._pending[:min(room, self.peer_mss)]
            self._pending = self._pending[len(chunk):]
            frames.append(self._segment(ACK | PSH, self.snd_nxt, chunk))
            self._unacked += chunk
            self.snd_nxt = (self.snd_nxt + len(chunk)) & MASK
            self._arm(now)
        if self._close_wanted and not self.fin_sent and not self._pending:
            frames.append(self._segment(FIN | ACK, self.snd_nxt))
            self.snd_nxt = (self.snd_nxt + 1) & MASK
            self.fin_sent = True
            self._arm(now)
        return frames
