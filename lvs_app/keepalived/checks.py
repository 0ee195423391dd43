"""Health-check specifications from keepalived.conf, as plain data.

keepalived attaches checkers to each real server (keepalived.conf(5),
"Virtual server(s)"): ``TCP_CHECK``, ``HTTP_GET``, ``SSL_GET`` (``url``
blocks), ``UDP_CHECK``, ``PING_CHECK``, ``DNS_CHECK``, ``SMTP_CHECK``,
``MISC_CHECK``; a real server is down while any of its checkers fails.  The
timing options are inherited: a checker without ``delay_loop``,
``connect_timeout``, ``retry``, ``delay_before_retry``, ``warmup`` or
``alpha`` takes its real server's, which takes its virtual server's, then
keepalived's defaults (delay_loop 60 s, connect_timeout 5 s; retry 1, 0
for MISC_CHECK, 3 for DNS_CHECK; delay_before_retry 3 s for HTTP_GET and
SSL_GET, the delay_loop for DNS_CHECK, 1 s otherwise; warmup the delay_loop).
One difference: with a ``delay_loop`` under a second, an unwritten
``delay_before_retry`` is the ``delay_loop`` (keepalived's 1 or 3 s would
make a sub-second loop pointless: a failure is only believed after its
retries).
``connect_ip``/``connect_port`` default to the real server's address and
port, ``virtualhost`` to the real server's, then the virtual server's.

The dataclasses here hold those values resolved, so that the prober
(``lvs_app.health``) needs no keepalived knowledge.  ``BFD_CHECK`` and ``FILE_CHECK`` have no
lvs_app counterpart (no BFD, no tracked files): they are reported and left out.

Stdlib only.
"""

from dataclasses import dataclass, field, replace

from lvs_app.keepalived.values import MAX_INT, Args, Script, hex_bytes, suggest

DEFAULT_DELAY_LOOP = 60.0
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_STATUS_CODES = ((200, 299),)
HTTP_PROTOCOLS = ("1.0", "1.0C", "1.1")
DNS_TYPES = ("A", "NS", "CNAME", "SOA", "MX", "TXT", "AAAA")
REGEX_OPTIONS = (
    "allow_empty_class", "alt_bsux", "auto_callout", "caseless", "dollar_endonly", "dotall",
    "dupnames", "extended", "firstline", "match_unset_backref", "multiline", "never_ucp",
    "never_utf", "no_auto_capture", "no_auto_possess", "no_dotstar_anchor",
    "no_start_optimize", "ucp", "ungreedy", "utf", "never_backslash_c", "alt_circumflex",
    "alt_verbnames", "use_offset_limit")
UNSUPPORTED_CHECKERS = ("BFD_CHECK", "FILE_CHECK")


@dataclass(frozen=True)
class Url:
    """One ``url { }`` of HTTP_GET/SSL_GET."""

    path: str
    digest: str = None                  # MD5 hex of the body (keepalived's genhash)
    status_codes: tuple = DEFAULT_STATUS_CODES   # (low, high) ranges
    virtualhost: str = None             # resolved: url, checker, real server, virtual server
    regex: str = None                   # a PCRE2 pattern, kept as written
    regex_no_match: bool = False
    regex_options: tuple = ()
    regex_stack: tuple = None           # (start, max) bytes
    regex_min_offset: int = None
    regex_max_offset: int = None


@dataclass(frozen=True)
class Checker:
    """What every checker has.  ``kind`` is keepalived's keyword (``TCP_CHECK`` ...)."""

    kind: str
    origin: str                         # "file:line" of the checker keyword
    connect_ip: object = None           # ipaddress; resolved to the real server's
    connect_port: int = None            # resolved to the real server's port
    bindto: object = None
    bind_if: str = None
    bind_port: int = None
    fwmark: int = None                  # mark put on the checker's packets
    connect_timeout: float = None
    retry: int = None
    delay_before_retry: float = None
    warmup: float = None
    delay_loop: float = None
    alpha: bool = None
    log_all_failures: bool = False


@dataclass(frozen=True)
class TcpCheck(Checker):
    """TCP_CHECK: a connection that opens is a success."""


@dataclass(frozen=True)
class PingCheck(Checker):
    """PING_CHECK: an ICMP echo answered."""


@dataclass(frozen=True)
class HttpCheck(Checker):
    """HTTP_GET, or SSL_GET (``kind == "SSL_GET"``): every url must answer as specified."""

    urls: tuple = ()
    http_protocol: str = None           # "1.0", "1.0C", "1.1"; keepalived sends 1.0 by default
    fast_recovery: bool = False
    virtualhost: str = None
    enable_sni: bool = False
    sni_name: str = None
    tls_compliant: bool = False

    @property
    def ssl(self):
        return self.kind == "SSL_GET"


@dataclass(frozen=True)
class UdpCheck(Checker):
    """UDP_CHECK: send ``payload`` (random if None); ICMP errors mean down."""

    payload: bytes = None
    require_reply: bool = False
    reply_data: bytes = None            # with reply_mask: nibbles written X are not compared
    reply_mask: bytes = None
    min_reply_length: int = 0
    max_reply_length: int = 255


@dataclass(frozen=True)
class DnsCheck(Checker):
    """DNS_CHECK: a query of ``type`` for ``name`` over UDP must be answered."""

    type: str = "SOA"
    name: str = "."


@dataclass(frozen=True)
class SmtpCheck(Checker):
    """SMTP_CHECK: the 220 greeting, HELO ``helo_name``, QUIT."""

    helo_name: str = None               # keepalived's default is its host name


@dataclass(frozen=True)
class MiscCheck(Checker):
    """MISC_CHECK: run ``script``; exit 0 is up, 1 down, 2..255 (``dynamic``) sets a weight."""

    script: Script = None
    timeout: float = None               # resolved: keepalived kills it after delay_loop
    dynamic: bool = False


@dataclass(frozen=True)
class SorryServer:
    """The server keepalived puts in the pool when the quorum is lost."""

    address: object
    port: int
    method: str
    inhibit: bool = False


@dataclass
class RealServerHealth:
    """One real_server's health settings and checkers (for every service of its block)."""

    address: object
    port: int                           # as configured (0 when not written)
    origin: str
    weight: int = 1
    method: str = "masq"
    inhibit_on_failure: bool = False
    alpha: bool = False
    notify_up: Script = None
    notify_down: Script = None
    checkers: list = field(default_factory=list)


@dataclass
class VirtualServerHealth:
    """One virtual_server block: the services it makes and their quorum rules."""

    name: str                           # "10.0.0.100 80", "fwmark 1", "group web"
    origin: str
    keys: tuple = ()                    # the ServiceKeys of this block
    quorum: int = 1
    hysteresis: int = 0
    quorum_up: Script = None
    quorum_down: Script = None
    alpha: bool = False
    omega: bool = False
    inhibit_on_failure: bool = False
    virtualhost: str = None
    sorry_server: SorryServer = None
    real_servers: list = field(default_factory=list)


@dataclass(frozen=True)
class SslContext:
    """The top-level ``SSL { }`` block SSL_GET uses (None values: generated context)."""

    password: str = None
    ca: str = None
    certificate: str = None
    key: str = None


# --------------------------------------------------------------------------
# parsing a checker block

CLASSES = {"TCP_CHECK": TcpCheck, "HTTP_GET": HttpCheck, "SSL_GET": HttpCheck,
           "UDP_CHECK": UdpCheck, "PING_CHECK": PingCheck, "DNS_CHECK": DnsCheck,
           "SMTP_CHECK": SmtpCheck, "MISC_CHECK": MiscCheck}
CHECKERS = tuple(CLASSES) + UNSUPPORTED_CHECKERS
_TIMING = ("alpha", "connect_timeout", "retry", "nb_get_retry", "delay_before_retry",
           "warmup", "delay_loop", "log_all_failures")
_CONNECT = ("connect_ip", "connect_port", "bindto", "bind_if", "bind_port", "fwmark")
_SPECIFIC = {
    "TCP_CHECK": (), "PING_CHECK": (),
    "HTTP_GET": ("url", "http_protocol", "fast_recovery", "virtualhost"),
    "SSL_GET": ("url", "http_protocol", "fast_recovery", "virtualhost", "enable_sni",
                "sni_name", "tls_compliant"),
    "UDP_CHECK": ("payload", "require_reply", "min_reply_length", "max_reply_length"),
    "DNS_CHECK": ("type", "name"),
    "SMTP_CHECK": ("helo_name", "host"),
    "MISC_CHECK": ("misc_path", "misc_timeout", "misc_dynamic", "user"),
}
_URL_KEYWORDS = ("path", "digest", "status_code", "virtualhost", "regex", "regex_no_match",
                 "regex_options", "regex_stack", "regex_min_offset", "regex_max_offset")


def common_option(args, values):
    """A common checker option into ``values``; False when the keyword is not one."""
    kw = args.keyword
    if kw in ("connect_ip", "bindto"):
        values[kw] = args.address(args.one())
    elif kw in ("connect_port", "bind_port"):
        values[kw] = args.port(args.one(), kw.split("_")[0], lo=1)
    elif kw == "bind_if":
        values[kw] = args.one()
    elif kw == "fwmark":
        values[kw] = args.integer(args.one(), 1, 2 ** 32 - 1)
    elif kw in ("connect_timeout", "delay_loop"):
        values[kw] = args.timer(args.one(), positive=True)
    elif kw in ("delay_before_retry", "warmup"):
        values[kw] = args.timer(args.one())
    elif kw in ("retry", "nb_get_retry"):
        values["retry"] = args.integer(args.one(), 0, MAX_INT)
    elif kw in ("alpha", "log_all_failures"):
        values[kw] = args.boolean()
    else:
        return False
    return True


def _status_codes(args):
    codes = []
    for text in args.count(1, -1):
        low, dash, high = text.partition("-")
        lo = args.integer(low, 100, 599, "status_code")
        hi = args.integer(high, 100, 599, "status_code") if dash else lo
        if lo > hi:
            args.fail(f"status_code range {text} is reversed")
        codes.append((lo, hi))
    return codes


def parse_url(stmt, where, report):
    """A ``url { }`` block -> the keyword arguments of :class:`Url` (virtualhost unresolved)."""
    where = f"{where}: url"
    Args(stmt, where).count(0)
    values, codes = {}, []
    for sub in Args(stmt, where).need_block():
        args = Args(sub, where)
        kw = sub.keyword
        if kw not in _URL_KEYWORDS:
            report.unknown(sub, where, _URL_KEYWORDS)
            continue
        args.no_block()
        if kw == "status_code":
            codes += _status_codes(args)
        elif kw == "digest":
            digest = args.one()
            if len(digest) != 32 or any(c not in "0123456789abcdefABCDEF" for c in digest):
                args.fail(f"digest '{digest}' must be 32 hexadecimal digits (an MD5 sum, "
                          "as genhash prints it)")
            values["digest"] = digest.lower()
        elif kw == "regex_no_match":
            args.count(0)
            values[kw] = True
        elif kw == "regex_options":
            for option in args.count(1, -1):
                if option not in REGEX_OPTIONS:
                    args.fail(f"regex_options '{option}' is unknown"
                              + suggest(option, REGEX_OPTIONS))
            values[kw] = tuple(args.args)
        elif kw == "regex_stack":
            start, most = args.count(2)
            values[kw] = (args.integer(start, 0, MAX_INT), args.integer(most, 0, MAX_INT))
        elif kw in ("regex_min_offset", "regex_max_offset"):
            values[kw] = args.integer(args.one(), 0, MAX_INT)
        else:                                   # path, virtualhost, regex
            values[kw] = args.one()
    if "path" not in values:
        Args(stmt, where).fail("url needs a path")
    if codes:
        values["status_codes"] = tuple(codes)
    return values


def _specific(args, values, where, report, extra):
    """A checker-specific keyword into ``values``."""
    kw = args.keyword
    if kw == "url":
        extra["urls"].append((args.stmt, parse_url(args.stmt, where, report)))
        return
    if kw == "host":                      # SMTP_CHECK's old per-host blocks
        report.warn(args.stmt.origin, f"{where}: host blocks are deprecated in keepalived; each "
             "becomes an SMTP_CHECK of its own")
        host = {}
        for sub in args.need_block():
            sub_args = Args(sub, f"{where}: host").no_block()
            if sub.keyword not in _CONNECT or not common_option(sub_args, host):
                report.unknown(sub, f"{where}: host", _CONNECT)
        extra["hosts"].append(host)
        return
    args.no_block()
    if kw in ("fast_recovery", "enable_sni", "tls_compliant", "misc_dynamic"):
        values["dynamic" if kw == "misc_dynamic" else kw] = args.boolean()
    elif kw == "http_protocol":
        values[kw] = args.one()
        if values[kw] not in HTTP_PROTOCOLS:
            args.fail(f"http_protocol '{values[kw]}' must be one of {', '.join(HTTP_PROTOCOLS)}")
    elif kw == "payload":
        values[kw] = hex_bytes(args, " ".join(args.count(1, -1)))[0]
    elif kw == "require_reply":
        values[kw] = True
        if args.args:
            values["reply_data"], values["reply_mask"] = hex_bytes(
                args, " ".join(args.args), wildcard=True)
    elif kw in ("min_reply_length", "max_reply_length"):
        values[kw] = args.integer(args.one(), 0, 65535)
    elif kw == "type":
        values[kw] = args.one().upper()
        if values[kw] not in DNS_TYPES:
            args.fail(f"type '{args.args[0]}' must be one of {', '.join(DNS_TYPES)}")
    elif kw == "misc_path":
        values["script"] = args.script(allow_user=False)
    elif kw == "misc_timeout":
        values["timeout"] = float(args.integer(args.one(), 1, 2 ** 32 - 1))
    elif kw == "user":
        user = args.count(1, 2)
        values["user"] = tuple(user)
    else:                                   # virtualhost, sni_name, helo_name, name
        values[kw] = args.one()


def parse_checker(stmt, where, report):
    """A checker block -> a :class:`CheckerDraft` (inheritance is resolved later).

    ``report`` has ``unknown(stmt, where, known)`` and ``warn(origin, text)``.
    """
    kind = stmt.keyword
    where = f"{where}: {kind}"
    args = Args(stmt, where)
    args.count(0)
    block = args.need_block()
    allowed = _TIMING + ((_CONNECT + _SPECIFIC[kind]) if kind != "MISC_CHECK"
                         else _SPECIFIC[kind])
    values, extra = {}, {"urls": [], "hosts": []}
    for sub in block:
        sub_args = Args(sub, where)
        if sub.keyword not in allowed:
            report.unknown(sub, where, allowed)
        elif sub.keyword in _TIMING + _CONNECT:
            sub_args.no_block()
            common_option(sub_args, values)
            if sub.keyword == "nb_get_retry":
                report.warn(sub.origin, f"{where}: nb_get_retry is deprecated - it is retry")
        else:
            _specific(sub_args, values, where, report, extra)
    if kind in ("HTTP_GET", "SSL_GET") and not extra["urls"]:
        args.fail(f"{kind} needs at least one url {{ path ... }}")
    if kind == "MISC_CHECK" and "script" not in values:
        args.fail("MISC_CHECK needs misc_path")
    if values.get("max_reply_length", 255) < values.get("min_reply_length", 0):
        args.fail(f"max_reply_length {values['max_reply_length']} is less than "
                  f"min_reply_length {values['min_reply_length']}")
    return CheckerDraft(kind, str(stmt.origin), values, extra["urls"], extra["hosts"])


@dataclass
class CheckerDraft:
    """A checker as written, before its real and virtual server fill the gaps."""

    kind: str
    origin: str
    values: dict
    urls: list
    hosts: list

    def resolve(self, server, vs_settings, rs_settings, vs_virtualhost):
        """The finished checkers (several for SMTP_CHECK ``host`` blocks).

        ``server`` is the RealServerHealth; ``vs_settings``/``rs_settings``
        hold the timing options written in the virtual/real server blocks.
        """
        values = dict(self.values)

        def inherited(name):
            if name in values:
                return values[name]
            return rs_settings.get(name, vs_settings.get(name))

        delay_loop = inherited("delay_loop") or DEFAULT_DELAY_LOOP
        retry = inherited("retry")
        if retry is None:
            retry = {"MISC_CHECK": 0, "DNS_CHECK": 3}.get(self.kind, 1)
        before = inherited("delay_before_retry")
        if before is None:
            before = {"HTTP_GET": 3.0, "SSL_GET": 3.0, "DNS_CHECK": delay_loop}.get(self.kind, 1.0)
            if delay_loop < 1:
                before = delay_loop
        warmup = inherited("warmup")
        alpha = inherited("alpha")
        values.update(
            delay_loop=delay_loop, retry=retry, delay_before_retry=before,
            warmup=delay_loop if warmup is None else warmup,
            alpha=server.alpha if alpha is None else alpha,
            connect_timeout=inherited("connect_timeout") or DEFAULT_CONNECT_TIMEOUT)
        if self.kind == "MISC_CHECK":
            values.setdefault("timeout", delay_loop)
            user = values.pop("user", None)
            if user:
                values["script"] = replace(values["script"], user=user[0],
                                           group=user[1] if len(user) > 1 else None)
        else:
            values.setdefault("connect_ip", server.address)
            if self.kind != "PING_CHECK":
                values.setdefault("connect_port", server.port)
        if self.kind in ("HTTP_GET", "SSL_GET"):
            host = values.get("virtualhost") or rs_settings.get("virtualhost") or vs_virtualhost
            values["virtualhost"] = host
            values["urls"] = tuple(Url(**{"virtualhost": host, **url}) for _, url in self.urls)
        cls = CLASSES[self.kind]
        if not self.hosts:
            return [cls(self.kind, self.origin, **values)]
        return [cls(self.kind, self.origin, **{**values, **host}) for host in self.hosts]
