"""One attempt of one keepalived checker, as frames in and frames out.

:func:`make_probe` turns a checker of :mod:`lvs_app.keepalived.checks` into
a :class:`Probe`.  The engine sends what :meth:`Probe.start` returns, hands
:meth:`Probe.receive` every parsed segment whose :func:`wire.reply_key` is in
:attr:`Probe.keys`, calls :meth:`Probe.poll` by :attr:`Probe.next_poll`,
reads ``done``/``ok``/``detail`` and calls :meth:`Probe.finish` when it drops
the probe.  Retries, delays and up/down state are the engine's: a probe is
one try.

What counts as success follows keepalived's check_*.c (see each class;
HTTP_GET and SSL_GET are :mod:`lvs_app.health.httpprobe`'s).
``connect_timeout`` bounds each step that makes no progress (connecting, a
read, a write), as keepalived re-arms its read timer after every read, so
:attr:`Probe.deadline` moves forward whenever the server moves.

A probe that finishes aborts its TCP connection at once (RST): the next url
of an HTTP check may reuse a ``bind_port``, and a finished probe leaves no
half-closed connection behind.  Stdlib only.
"""

import random

from lvs_app.health import wire
from lvs_app.health.tcpclient import INITIAL_RTO, MASK, MAX_RTO, WINDOW, TcpClient

DEFAULT_TIMEOUT = 5.0
UDP_DEFAULT_PAYLOAD = 32        # keepalived sends 32 bytes when no payload is configured
PING_PAYLOAD = 128              # keepalived's ICMP_BUFSIZE
SMTP_DEFAULT_HELO = "localhost"  # keepalived's own is "smtpchecker.keepalived.org"
DNS_TYPES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "MX": 15, "TXT": 16, "AAAA": 28,
             "RRSIG": 46, "DNSKEY": 48}
NO_KEYS = frozenset()           # a probe's reply keys before it starts and once it is done
UNREACHABLE = {0: "net unreachable", 1: "host unreachable", 2: "protocol unreachable",
               3: "port unreachable", 4: "fragmentation needed", 9: "net prohibited",
               10: "host prohibited", 13: "administratively prohibited"}


def icmp_detail(seg):
    """"ICMP port unreachable", "ICMP time exceeded" ... for an ICMP error segment."""
    if seg.icmp_type == wire.ICMP_TIME_EXCEEDED:
        return "ICMP time exceeded"
    name = UNREACHABLE.get(seg.icmp_code)
    return f"ICMP {name}" if name else f"ICMP unreachable code {seg.icmp_code}"


class Probe:
    """The interface every probe has; subclasses fill in start/receive and the timers."""

    def __init__(self, checker, src_ip, src_mac, dst_mac, next_port, now, ssl=None):
        self.checker = checker
        self.src_ip, self.src_mac, self.dst_mac = int(src_ip), src_mac, dst_mac
        self.dst_ip = int(checker.connect_ip)
        self.dport = checker.connect_port or 0
        self.next_port = next_port
        self.ssl = ssl
        timeout = checker.connect_timeout
        self.timeout = DEFAULT_TIMEOUT if timeout is None else float(timeout)
        self.keys = NO_KEYS
        self.done = self.ok = False
        self.detail = ""
        self.deadline = now + self.timeout
        self.phase = ""                 # what the probe waits for, for the timeout detail

    def local_port(self):
        """The source port of a new connection or socket: ``bind_port`` wins."""
        return self.checker.bind_port or self.next_port()

    @property
    def next_poll(self):
        """When :meth:`poll` has something to do (a timeout or a retransmission)."""
        return None if self.done else self.deadline

    def start(self, now):
        raise NotImplementedError

    def receive(self, segment, now):
        return []

    def poll(self, now):
        if not self.done and now >= self.deadline:
            self._timed_out()
            return self._close()
        return []

    def finish(self):
        """The frames that end whatever the probe still has open (an RST)."""
        return self._close()

    def _close(self):
        return []

    def _end(self, ok, detail):
        if not self.done:
            self.done, self.ok, self.detail = True, ok, detail
            self.keys = NO_KEYS

    def _timed_out(self):
        phase = f" ({self.phase})" if self.phase else ""
        self._end(False, f"no answer within {self.timeout:g} s{phase}")


class StreamProbe(Probe):
    """A probe over one TCP connection at a time; subclasses react to connect and data."""

    tcp = None
    ack_handshake = True        # complete the handshake with an ACK

    def start(self, now):
        return self._connect(now)

    def _connect(self, now):
        """A new connection (aborting the previous one) from a fresh local port."""
        frames = self.tcp.abort() if self.tcp else []
        sport = self.local_port()
        self.tcp = TcpClient(self.src_mac, self.dst_mac, self.src_ip, self.dst_ip,
                             sport, self.dport, random.getrandbits(32))
        self.tcp.ack_handshake = self.ack_handshake
        self.keys = {("tcp", self.dst_ip, self.dport, sport)}
        self.phase = "connecting"
        self.deadline = now + self.timeout
        return frames + self.tcp.connect(now)

    @property
    def next_poll(self):
        if self.done:
            return None
        timer = self.tcp.timer if self.tcp else None
        return self.deadline if timer is None else min(timer, self.deadline)

    def receive(self, segment, now):
        if self.done or self.tcp is None:
            return []
        tcp = self.tcp
        if segment.proto == wire.PROTO_ICMP:
            # Linux gives up a connect on an ICMP unreachable; once connected it ignores them
            if segment.icmp_type == wire.ICMP_UNREACH and not tcp.established:
                self._end(False, icmp_detail(segment))
                return self._close()
            return []
        before = (tcp.established, tcp.rcv_nxt, tcp.snd_una)
        frames = tcp.receive(segment, now)
        if tcp.refused:
            self._end(False, "connection refused")
        elif tcp.reset:
            self._end(False, f"connection reset ({self.phase})")
        elif (tcp.established, tcp.rcv_nxt, tcp.snd_una) != before:
            self.deadline = now + self.timeout          # progress
            if not before[0]:
                if not self.ack_handshake:
                    frames = []                         # the RST below answers the SYN/ACK
                frames += self.connected(now)
            if tcp.rcv_nxt != before[1] and not self.done and self.tcp is tcp:
                frames += self.readable(now)
        if self.done:
            frames += self._close()
        return frames

    def poll(self, now):
        frames = super().poll(now)
        if not self.done and self.tcp is not None:
            frames += self.tcp.poll(now)
        return frames

    def _close(self):
        return self.tcp.abort() if self.tcp else []

    def connected(self, now):
        """The handshake completed; returns frames to send."""
        return []

    def readable(self, now):
        """New data (``self.tcp.take()``) or the peer's FIN (``self.tcp.peer_closed``)."""
        return []


class TcpProbe(Probe):
    """TCP_CHECK (check_tcp.c): the connection opens, and is closed again.

    The server's SYN/ACK proves what keepalived's connect() proves (its
    kernel accepts connections on the port), so it is answered with the RST
    alone, as OVN's service monitor does: one frame less per check, and no
    connection reaches the server's application (nor its log).

    A TCP_CHECK never gets past the handshake, so it is the SYN-SENT state
    of :class:`TcpClient` alone, written out (thousands of checks a second
    each cost a SYN and an RST from the path's pre-built
    :class:`wire.TcpFrames`, not a connection object): the same SYN,
    retransmitted on the same timer (``INITIAL_RTO``, doubling); an ACK of
    something else is answered with TcpClient's RST and ignored; an RST that
    acknowledges the SYN refuses the connection, any other is ignored; an
    ICMP destination unreachable fails it (as Linux fails a connect); the
    SYN/ACK gets the RST that :meth:`TcpClient.abort` sends.  The unit tests
    hold it to a StreamProbe built on TcpClient, frame for frame.
    """

    frames = None               # the path's wire.TcpFrames, once started
    timer = None                # when the SYN is sent again, None: not waiting

    def start(self, now):
        sport = self.sport = self.checker.bind_port or self.next_port()   # local_port()
        self.iss = random.getrandbits(32)
        self.rto = INITIAL_RTO
        self.timer = now + INITIAL_RTO
        self.frames = wire.tcp_frames(self.src_mac, self.dst_mac, self.src_ip, self.dst_ip,
                                      self.dport)
        self.keys = frozenset((("tcp", self.dst_ip, self.dport, sport),))
        self.phase = "connecting"
        self.deadline = now + self.timeout
        return [self.frames.build(sport, self.iss, 0, wire.SYN, WINDOW)]

    @property
    def next_poll(self):
        if self.done:
            return None
        timer = self.timer
        return self.deadline if timer is None else min(timer, self.deadline)

    def receive(self, segment, now):
        if segment.proto == wire.PROTO_TCP:
            return self.receive_tcp(segment.flags, segment.seq, segment.ack, now)
        if (not self.done and self.frames is not None and segment.proto == wire.PROTO_ICMP
                and segment.icmp_type == wire.ICMP_UNREACH):
            self._end(False, icmp_detail(segment))
        return []

    def receive_tcp(self, flags, seq, ack, now):
        """:meth:`receive` of a TCP segment, from its fields (the engine reads
        them from the frame: :func:`wire.tcp_fields`)."""
        if self.done or self.frames is None:
            return []
        snd_nxt = (self.iss + 1) & MASK
        if flags & wire.RST:
            if flags & wire.ACK and ack == snd_nxt:
                self._end(False, "connection refused")
            return []
        if flags & wire.ACK and ack != snd_nxt:
            return [self.frames.build(self.sport, ack, 0, wire.RST, 0)]
        if not (flags & wire.SYN and flags & wire.ACK):
            return []                          # no simultaneous open
        self.deadline = now + self.timeout      # progress (as StreamProbe counts it)
        self._end(True, "connected")
        return [self.frames.build(self.sport, snd_nxt, (seq + 1) & MASK, wire.RST | wire.ACK,
                                  WINDOW)]

    def poll(self, now):
        if self.done:
            return []
        if now >= self.deadline:
            self._timed_out()
            return []
        timer = self.timer
        if timer is None or now < timer:
            return []
        self.rto = min(self.rto * 2, MAX_RTO)
        self.timer = now + self.rto
        return [self.frames.build(self.sport, self.iss, 0, wire.SYN, WINDOW)]

    def _end(self, ok, detail):
        super()._end(ok, detail)
        self.timer = None


class SmtpProbe(StreamProbe):
    """SMTP_CHECK (check_smtp.c): the 220 greeting, ``HELO name`` -> 250, QUIT -> a reply.

    keepalived reads one line per step and so fails on a multi-line ``220-``
    greeting; here a reply is complete at its last line (``NNN `` or
    ``NNN``), as RFC 5321 has it.  Like keepalived, the QUIT must be
    answered (any line) and a server that closes instead fails.
    """

    def connected(self, now):
        self.stage, self.buffer = "greeting", b""
        self.phase = "waiting for the SMTP greeting"
        return []

    def readable(self, now):
        self.buffer += self.tcp.take()
        frames = []
        while not self.done:
            reply = self._reply()
            if reply is None:
                break
            frames += self._step(reply, now)
        if not self.done and self.tcp.peer_closed:
            self._end(False, f"SMTP connection closed ({self.phase})")
        return frames

    def _reply(self):
        """The status of the first complete reply in the buffer (-1 unreadable), or None."""
        while b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            line = line.rstrip(b"\r")
            if len(line) > 3 and line[3:4] == b"-" and line[:3].isdigit():
                continue                        # a continuation line
            code = line[:3]
            if code.isdigit() and line[3:4] in (b"", b" "):
                return int(code)
            return -1
        return None

    def _step(self, code, now):
        shown = "unreadable" if code < 0 else code
        if self.stage == "greeting":
            if code != 220:
                self._end(False, f"SMTP greeting {shown}")
                return []
            helo = self.checker.helo_name or SMTP_DEFAULT_HELO
            self.stage, self.phase = "helo", "waiting for the HELO answer"
            return self.tcp.send(f"HELO {helo}\r\n".encode(), now)
        if self.stage == "helo":
            if code != 250:
                self._end(False, f"SMTP HELO answer {shown}")
                return []
            self.stage, self.phase = "quit", "waiting for the QUIT answer"
            return self.tcp.send(b"QUIT\r\n", now)
        self._end(True, "SMTP greeting 220, HELO 250")
        return []


class DatagramProbe(Probe):
    """A probe that sends one datagram and waits for its answer (no retransmission)."""

    def receive(self, segment, now):
        if self.done:
            return []
        if segment.proto == wire.PROTO_ICMP and segment.icmp_type in wire.ICMP_ERRORS:
            self.icmp_error(segment)
        else:
            self.answer(segment)
        return []

    def icmp_error(self, segment):
        self._end(False, icmp_detail(segment))

    def answer(self, segment):
        raise NotImplementedError

    def _udp(self, payload, now):
        sport = self.local_port()
        self.keys = {("udp", self.dst_ip, self.dport, sport)}
        self.deadline = now + self.timeout
        return [wire.build_udp(self.src_mac, self.dst_mac, self.src_ip, self.dst_ip,
                               sport, self.dport, payload)]


class UdpProbe(DatagramProbe):
    """UDP_CHECK (check_udp.c, layer4.c).

    keepalived sends the payload (32 random bytes without one) and waits one
    ``connect_timeout``: an ICMP destination unreachable (any code) fails it.
    Without ``require_reply``, the timeout or any reply is a success.  With
    it a reply is needed, and, as in keepalived, the length limits and the
    data are only checked when ``require_reply`` gave data: the first
    ``min(len(reply), len(reply_data))`` bytes must equal ``reply_data`` where
    ``reply_mask`` (a 1 bit: compared) says so.  ICMP time exceeded is not a
    destination unreachable and is ignored, as keepalived does.
    """

    def start(self, now):
        payload = self.checker.payload
        if payload is None:
            payload = random.randbytes(UDP_DEFAULT_PAYLOAD)
        self.phase = ""
        return self._udp(payload, now)

    def icmp_error(self, segment):
        if segment.icmp_type == wire.ICMP_UNREACH:
            super().icmp_error(segment)

    def answer(self, segment):
        if segment.proto != wire.PROTO_UDP:
            return
        c, data = self.checker, segment.payload
        if c.require_reply and c.reply_data is not None:
            low, high = c.min_reply_length or 0, c.max_reply_length
            high = 255 if high is None else high
            if not low <= len(data) <= high:
                self._end(False, f"UDP reply of {len(data)} bytes, not within {low}-{high}")
                return
            mask = c.reply_mask or b"\xff" * len(c.reply_data)
            if any((got ^ want) & bits for got, want, bits in zip(data, c.reply_data, mask)):
                self._end(False, "UDP reply data mismatch")
                return
        self._end(True, f"UDP reply of {len(data)} bytes")

    def _timed_out(self):
        if self.checker.require_reply:
            super()._timed_out()
        else:
            self._end(True, f"no ICMP error within {self.timeout:g} s")


def dns_query(ident, name, qtype):
    """keepalived's query: header with RD, one question ``name``/``qtype``/IN.

    ``name`` is cut at dots as dns_make_query() does: "." is the root alone,
    a trailing dot adds nothing, and any other name gets the root label.
    """
    out = bytearray(ident.to_bytes(2, "big") + b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00")
    start = 0
    while start < len(name):
        end = name.find(".", start)
        end = len(name) if end < 0 else end
        label = name[start:end].encode()[:63]
        out.append(len(label))
        out += label
        start = end + 1 if end < len(name) else end
    if name != ".":
        out.append(0)
    return bytes(out) + DNS_TYPES[qtype].to_bytes(2, "big") + b"\x00\x01"


class DnsProbe(DatagramProbe):
    """DNS_CHECK (check_dns.c): one query, and an answer with rcode 0.

    keepalived ignores answers shorter than a header, with another id or
    without QR, and keeps waiting; an answer with our id and QR decides:
    rcode 0 is a success whatever its records (keepalived does not look at
    the answer section), any other rcode a failure.  Its UDP socket is
    connected, so an ICMP error fails the check.
    """

    def start(self, now):
        self.ident = random.getrandbits(16)
        self.phase = ""
        return self._udp(dns_query(self.ident, self.checker.name or ".",
                                   self.checker.type or "SOA"), now)

    def answer(self, segment):
        data = segment.payload
        if segment.proto != wire.PROTO_UDP or len(data) < 12:
            return
        if int.from_bytes(data[:2], "big") != self.ident or not data[2] & 0x80:
            return
        rcode = data[3] & 0x0F
        if rcode:
            self._end(False, f"DNS answer has rcode {rcode}")
        else:
            count = int.from_bytes(data[6:8], "big")
            self._end(True, f"DNS answer, rcode 0, {count} answer records")


class PingProbe(DatagramProbe):
    """PING_CHECK (check_ping.c): an echo request, and the echo reply with its sequence."""

    def start(self, now):
        self.ident, self.seq = self.next_port() & 0xFFFF, 1
        self.keys = {("icmp", self.dst_ip, self.ident)}
        self.deadline = now + self.timeout
        payload = bytes(i & 0xFF for i in range(PING_PAYLOAD))
        return [wire.build_icmp_echo(self.src_mac, self.dst_mac, self.src_ip, self.dst_ip,
                                     self.ident, self.seq, payload)]

    def answer(self, segment):
        if (segment.proto == wire.PROTO_ICMP and segment.icmp_type == wire.ICMP_ECHO_REPLY
                and segment.seq == self.seq):
            self._end(True, "echo reply")


PROBES = {"TCP_CHECK": TcpProbe, "SMTP_CHECK": SmtpProbe, "UDP_CHECK": UdpProbe,
          "DNS_CHECK": DnsProbe, "PING_CHECK": PingProbe}
HTTP_KINDS = ("HTTP_GET", "SSL_GET")     # HttpProbe, from httpprobe (see make_probe)


def make_probe(checker, *, src_ip, src_mac, dst_mac, next_port, now, ssl=None):
    """The :class:`Probe` for one attempt of ``checker`` (not MISC_CHECK: that runs a script).

    ``next_port()`` gives a fresh local port for each connection or socket;
    ``ssl`` is the :class:`SslContext` SSL_GET uses (None: a default one).
    """
    return probe_class(checker)(checker, src_ip, src_mac, dst_mac, next_port, now, ssl=ssl)


def probe_class(checker):
    """The :class:`Probe` subclass that runs ``checker`` (ValueError: not in-band)."""
    if checker.kind in HTTP_KINDS:
        # imported here: httpprobe builds on StreamProbe, so imports this module
        from lvs_app.health.httpprobe import HttpProbe
        return HttpProbe
    try:
        return PROBES[checker.kind]
    except KeyError:
        raise ValueError(f"{checker.kind} is not probed in-band") from None

