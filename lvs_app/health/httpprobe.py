"""HTTP_GET and SSL_GET (check_http.c, check_ssl.c): :class:`HttpProbe` and its parts.

A response is parsed as it arrives (:class:`HttpResponse`) and judged as
keepalived does: status, then MD5 digest, then regex.  TLS runs in an
``SSLObject`` over memory BIOs (:class:`TlsSession`), as the connection is
the frame-level :class:`TcpClient` and not a socket.  The base classes are
:mod:`lvs_app.health.probes`', whose :func:`make_probe` imports this module
when a checker needs it (at its top it would be an import cycle).  Stdlib
only.
"""

import hashlib
import re
import ssl as tls

from lvs_app.health.probes import StreamProbe
from lvs_app.packet import ip_text

HTTP_KEEP = 1 << 20             # bytes of a response kept for the regex
# PCRE2 options that Python's re has; the others (ungreedy, dollar_endonly,
# firstline, ...) have no counterpart and are ignored.
REGEX_FLAGS = {"caseless": re.I, "multiline": re.M, "dotall": re.S, "extended": re.X}
_STATUS = re.compile(rb"[^ \r]* ([0-9]{3}) ")
_LENGTH = re.compile(rb"^content-length:[ \t]*([0-9]+)[ \t]*\r?$", re.I | re.M)


class HttpResponse:
    """A response as it arrives: status, Content-Length, MD5 of the body, text for the regex.

    As keepalived (lib/html.c): the status code is the 3 digits between the
    first two spaces (0 when there are none); the body is what follows the
    first blank line, and only Content-Length bytes of it are digested when
    the header has one (keepalived's genhash does the same).
    """

    def __init__(self):
        self.raw = bytearray()
        self.head_len = None
        self.status = 0
        self.length = None
        self.body_len = 0
        self.md5 = hashlib.md5()

    @property
    def complete(self):
        return self.length is not None and self.body_len >= self.length

    def feed(self, data):
        if self.head_len is None:
            start = max(0, len(self.raw) - 3)
            self.raw += data[:max(0, HTTP_KEEP - len(self.raw))]
            end = self.raw.find(b"\r\n\r\n", start)
            if end < 0:
                return
            self.head_len = end + 4
            head = bytes(self.raw[:self.head_len])
            match = _STATUS.match(head)
            self.status = int(match.group(1)) if match else 0
            match = _LENGTH.search(head)
            self.length = int(match.group(1)) if match else None
            data = bytes(self.raw[self.head_len:])
        else:
            self.raw += data[:max(0, HTTP_KEEP - len(self.raw))]
        if self.length is not None:
            data = data[:max(0, self.length - self.body_len)]
        self.md5.update(data)
        self.body_len += len(data)


def regex_matches(url, text):
    """Does ``url.regex`` match ``text`` (the response, header included, as keepalived)?

    keepalived runs PCRE2 over what it has read, the header with the first
    chunk of body.  Python's ``re`` is close to PCRE2 for the usual patterns;
    it lacks \\K, \\Q...\\E, (?|...), recursion and callouts, and ``$``
    behaves as PCRE2's default.  Pattern and text are both bytes seen as
    latin-1, so that, as in PCRE2 without ``utf``, one character is one byte.
    A match must start at or after ``regex_min_offset`` and before
    ``regex_max_offset``.
    """
    flags = 0
    for option in url.regex_options or ():
        flags |= REGEX_FLAGS.get(option, 0)
    pattern = url.regex.encode().decode("latin-1")
    match = re.compile(pattern, flags).search(text, url.regex_min_offset or 0)
    return bool(match) and (not url.regex_max_offset or match.start() < url.regex_max_offset)


def tls_context(conf):
    """The client context for SSL_GET from the ``SSL { }`` block (None: defaults).

    keepalived loads ``ca`` but never asks OpenSSL to verify the peer; here a
    ``ca`` makes the certificate checked against it (not the host name: the
    server is reached by address).
    """
    context = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.set_ciphers("DEFAULT")
    if conf is not None and conf.ca:
        context.load_verify_locations(cafile=conf.ca)
        context.verify_mode = tls.CERT_REQUIRED
    else:
        context.verify_mode = tls.CERT_NONE
    if conf is not None and conf.certificate:
        context.load_cert_chain(conf.certificate, conf.key or None, conf.password or None)
    return context


class TlsSession:
    """An ``SSLObject`` over memory BIOs: bytes from TCP in, bytes for TCP out."""

    def __init__(self, context, server_hostname):
        self.incoming, self.outgoing = tls.MemoryBIO(), tls.MemoryBIO()
        self.obj = context.wrap_bio(self.incoming, self.outgoing, server_hostname=server_hostname)
        self.handshaken = False

    def read_all(self):
        """Decrypted bytes available now, and whether the stream ended.

        Like keepalived, a close_notify, an EOF without one or a TLS error
        all end the response: what arrived before is judged.
        """
        chunks = []
        while True:
            try:
                chunk = self.obj.read(65536)
            except tls.SSLWantReadError:
                return b"".join(chunks), False
            except tls.SSLError:
                return b"".join(chunks), True
            if not chunk:
                return b"".join(chunks), True
            chunks.append(chunk)


class HttpProbe(StreamProbe):
    """HTTP_GET and SSL_GET (check_http.c, check_ssl.c): every url, in order, must answer.

    Each url gets a connection of its own and keepalived's request; the
    response is read until the server closes (or Content-Length is
    complete), then judged: status in ``status_codes``, then ``digest``, then
    ``regex``.  The first url that fails fails the probe.
    """

    def start(self, now):
        self.index = 0
        if not self.checker.urls:
            self._end(True, "no url to check")      # keepalived: up without checking
            return []
        return self._open(now)

    def _open(self, now):
        self.url = self.checker.urls[self.index]
        self.response, self.tls = HttpResponse(), None
        if self.checker.ssl:
            try:
                self.tls = TlsSession(tls_context(self.ssl), self.sni())
            except (OSError, ValueError) as error:      # ssl.SSLError is an OSError
                self._end(False, f"TLS setup failed: {error}")
                return []
        return self._connect(now)

    def sni(self):
        c = self.checker
        return (c.sni_name or self.url.virtualhost or c.virtualhost) if c.enable_sni else None

    def request_text(self):
        """keepalived's request_template for the current url."""
        url, proto = self.url, self.checker.http_protocol or "1.0"
        host = (url.virtualhost or self.checker.virtualhost
                or f"{ip_text(self.dst_ip)}:{self.dport}")
        lines = [f"GET {url.path} HTTP/1.{1 if proto == '1.1' else 0}",
                 "User-Agent: KeepAliveClient"]
        if proto in ("1.0C", "1.1"):
            lines.append("Connection: close")
        lines.append(f"Host: {host}")
        return "\r\n".join(lines) + "\r\n\r\n"

    def connected(self, now):
        if self.tls:
            self.phase = "in TLS handshake"
            return self._tls_input(b"", False, now)
        return self._request(now)

    def _request(self, now):
        self.phase = f"reading {self.url.path}"
        request = self.request_text().encode()
        if self.tls:
            self.tls.obj.write(request)
            request = self.tls.outgoing.read()
        return self.tcp.send(request, now)

    def readable(self, now):
        data, eof = self.tcp.take(), self.tcp.peer_closed
        if self.tls:
            return self._tls_input(data, eof, now)
        self.response.feed(data)
        return self._judge(now) if eof or self.response.complete else []

    def _tls_input(self, data, eof, now):
        session, frames = self.tls, []
        if data:
            session.incoming.write(data)
        if eof:
            session.incoming.write_eof()
        if not session.handshaken:
            try:
                session.obj.do_handshake()
            except tls.SSLWantReadError:
                return self.tcp.send(session.outgoing.read(), now)
            except tls.SSLError as error:
                closed = isinstance(error, (tls.SSLEOFError, tls.SSLZeroReturnError))
                reason = "connection closed" if closed else (error.reason or str(error))
                self._end(False, f"TLS handshake failed: {reason}")
                return []
            session.handshaken = True
            frames += self._request(now)            # with the end of the handshake
        body, ended = session.read_all()
        frames += self.tcp.send(session.outgoing.read(), now)
        self.response.feed(body)
        if eof or ended or self.response.complete:
            frames += self._judge(now)
        return frames

    def failure(self):
        """Why the current url's response fails, or None."""
        response, path = self.response, self.url.path
        if response.head_len is None:
            return f"no HTTP response for {path}"
        ranges = self.url.status_codes or ((200, 299),)
        if not any(low <= response.status <= high for low, high in ranges):
            shown = ",".join(f"{lo}-{hi}" if lo != hi else f"{lo}" for lo, hi in ranges)
            return f"HTTP status {response.status} not in {shown} for {path}"
        if self.url.digest and response.md5.hexdigest() != self.url.digest.lower():
            return f"digest mismatch for {path}"
        if self.url.regex:
            try:
                matched = regex_matches(self.url, response.raw.decode("latin-1"))
            except re.error as error:
                return f"regex error for {path}: {error}"
            if matched == self.url.regex_no_match:
                return (f"regex matched for {path} (regex_no_match)" if matched
                        else f"regex did not match for {path}")
        return None

    def _judge(self, now):
        failure = self.failure()
        if failure:
            self._end(False, failure)
            return []
        self.index += 1
        if self.index == len(self.checker.urls):
            self._end(True, f"HTTP {self.response.status}")
            return []
        return self._open(now)
