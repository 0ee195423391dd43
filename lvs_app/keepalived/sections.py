"""keepalived.conf's sections -> parsed virtual servers (drafts), in keepalived's terms.

The top level (keepalived.conf(5) "TOP HIERACHY"): ``virtual_server`` and
``virtual_server_group`` are read (:mod:`lvs_app.keepalived.table` turns
them into services), ``global_defs`` gives ``lvs_timeouts`` (ipvsadm
``--set``; ``lvs_flush`` is a warning), ``SSL`` the context of SSL_GET.  The VRRP,
BFD, static address/route/rule and tracking sections are accepted and
reported as ignored: lvs_app directs traffic, it does not own addresses.

Inside ``virtual_server``: ``lvs_sched``/``lb_algo``, the scheduler flags
(``flag-1..3``, ``sh-port``, ``sh-fallback``, ``mh-port``, ``mh-fallback``),
``ops``, ``lvs_method``/``lb_kind``, ``persistence_timeout``,
``persistence_granularity``, ``persistence_engine``, ``protocol``,
``ip_family``, ``weight`` (the real servers' default), the health settings
(``quorum``, ``hysteresis``, ``quorum_up``, ``quorum_down``, ``alpha``,
``omega``, ``inhibit_on_failure``, ``virtualhost``, ``sorry_server``,
``sorry_server_inhibit``, ``sorry_server_lvs_method``, the checker timing
defaults) and ``real_server`` blocks (``weight``, ``lvs_method``,
``uthreshold``, ``lthreshold``, ``inhibit_on_failure``, ``notify_up``,
``notify_down``, ``alpha``, ``virtualhost``, timing, checkers).
``ha_suspend``, ``smtp_alert``, ``snmp_name`` and ``hashed`` are accepted
with a warning: they change nothing lvs_app does.

A ``virtual_server_group`` lists ``IP [PORT]``, ranges (``10.0.0.1-9``,
``10.0.0.250-10.0.1.9``, ``2001:db8::a-f``, CIDR blocks) and ``fwmark N
[inet|inet6]``; a range is expanded to one service per address (lvs_app
allows 4096 per entry: the switch holds flows per service, keepalived's
nftables_ipvs shortcut has no counterpart).  A group may be defined after
the virtual server that uses it, as in keepalived.

Stdlib only.
"""

import ipaddress

from lvs_app.keepalived.checks import (CHECKERS, UNSUPPORTED_CHECKERS, SslContext,
                                       common_option, parse_checker)
from lvs_app.keepalived.table import RealServerDraft, VirtualServerDraft
from lvs_app.keepalived.values import MAX_INT, Args
from lvs_app.model import DEFAULT_PERSISTENCE, MAX_FWMARK

MAX_RANGE = 4096                  # addresses one virtual_server_group entry may expand to
TIMING = ("connect_timeout", "retry", "delay_before_retry", "warmup", "delay_loop")
VS_KEYWORDS = (
    "lvs_sched", "lb_algo", "flag-1", "flag-2", "flag-3", "sh-port", "sh-fallback",
    "mh-port", "mh-fallback", "ops", "lvs_method", "lb_kind", "persistence_engine",
    "persistence_timeout", "persistence_granularity", "protocol", "ha_suspend",
    "virtualhost", "alpha", "omega", "quorum", "hysteresis", "quorum_up", "quorum_down",
    "ip_family", "sorry_server", "sorry_server_inhibit", "sorry_server_lvs_method",
    "inhibit_on_failure", "weight", "real_server") + TIMING
RS_KEYWORDS = ("weight", "lvs_method", "uthreshold", "lthreshold", "inhibit_on_failure",
               "notify_up", "notify_down", "alpha", "virtualhost") + TIMING + CHECKERS
# keepalived keywords that change nothing lvs_app does: accepted with a warning
IGNORED = {"smtp_alert": "no e-mail alerts", "snmp_name": "no SNMP", "hashed": "no effect"}
TOP_IGNORED = (
    "linkbeat_interfaces", "track_group", "static_track_group", "static_ipaddress",
    "static_routes", "static_rules", "track_file", "vrrp_track_file", "track_process",
    "vrrp_track_process", "bfd_instance", "vrrp_script", "vrrp_sync_group", "garp_group",
    "vrrp_instance", "net_namespace", "net_namespace_ipvs", "namespace_with_ipsets",
    "instance", "use_pid_dir", "linkbeat_use_polling", "child_wait_time")
TOP_KEYWORDS = ("global_defs", "virtual_server", "virtual_server_group", "SSL") + TOP_IGNORED


def _expand(args, text):
    """A virtual_server_group entry: an address, ``a.b.c.d-e``, ``a-b`` or a CIDR block."""
    bad = (f"'{text}' is not an address, a range (10.0.0.1-9, 10.0.0.250-10.0.1.9) "
           "or a CIDR block")
    try:
        if "/" in text:
            net = ipaddress.ip_network(text, strict=False)
            if net.network_address != ipaddress.ip_address(text.split("/")[0]):
                args.fail(f"{text} has bits set beyond its /{net.prefixlen} mask")
            first, last = net.network_address, net.broadcast_address
        elif "-" in text:
            low, high = text.split("-", 1)
            first = ipaddress.ip_address(low)
            if any(c in high for c in ".:"):
                last = ipaddress.ip_address(high)
            elif first.version == 4:
                last = ipaddress.ip_address(int(first) & ~0xFF | int(high))
                if int(high) > 255:
                    raise ValueError(high)
            else:
                last = ipaddress.ip_address(int(first) & ~0xFFFF | int(high, 16))
                if int(high, 16) > 0xFFFF:
                    raise ValueError(high)
        else:
            first = last = ipaddress.ip_address(text)
    except ValueError:
        args.fail(bad)
    if last.version != first.version or last < first:
        args.fail(f"range {text} is empty or reversed")
    if int(last) - int(first) >= MAX_RANGE:
        args.fail(f"range {text} has {int(last) - int(first) + 1} addresses; lvs_app makes "
                  f"at most {MAX_RANGE} services of one entry")
    return [ipaddress.ip_address(n) for n in range(int(first), int(last) + 1)]


class Reader:
    """Walks the statement tree; each virtual_server goes to ``tables`` (a TableBuilder)."""

    def __init__(self, report, tables):
        self.report = report
        self.tables = tables
        self.groups = {}                  # name -> (origin, members)
        self.timeouts, self.ssl = None, None

    def warn(self, origin, message):
        self.report.warn(origin, message)

    def unknown(self, stmt, where, known):
        self.report.unknown(stmt, where, known)

    # -- the top level -------------------------------------------------
    def run(self, statements):
        for stmt in statements:
            if stmt.keyword == "virtual_server_group":
                self.group(stmt)
        for stmt in statements:
            kw = stmt.keyword
            if kw == "virtual_server":
                self.virtual_server(stmt)
            elif kw == "global_defs":
                self.global_defs(stmt)
            elif kw == "SSL":
                self.ssl_block(stmt)
            elif kw in TOP_IGNORED:
                self.warn(stmt.origin, f"{stmt}: ignored (not LVS configuration)")
            elif kw != "virtual_server_group":
                self.unknown(stmt, "the top level", TOP_KEYWORDS)

    def global_defs(self, stmt):
        ignored = []
        for sub in Args(stmt).need_block():
            args = Args(sub, "global_defs")
            if sub.keyword == "lvs_timeouts":
                self.lvs_timeouts(args.no_block())
            elif sub.keyword == "lvs_flush":
                args.no_block().count(0)
                self.warn(sub.origin, "global_defs: lvs_flush ignored: lvs_app's table holds "
                          "only the services of --lvs-rules, REST and this file already")
            elif sub.keyword == "lvs_sync_daemon":
                self.warn(sub.origin, "global_defs: lvs_sync_daemon ignored: lvs_app has no "
                          "connection synchronisation")
            elif sub.keyword not in ignored:
                ignored.append(sub.keyword)
        if ignored:
            self.warn(stmt.origin, f"global_defs: ignored by lvs_app: {', '.join(ignored)}")

    def lvs_timeouts(self, args):
        """``lvs_timeouts [tcp S] [tcpfin S] [udp S]``: ipvsadm --set (0 keeps a value)."""
        words = args.count(2, 6)
        values = {}
        for i in range(0, len(words), 2):
            name = words[i]
            if name not in ("tcp", "tcpfin", "udp") or i + 1 >= len(words):
                args.fail(f"lvs_timeouts takes tcp SECS, tcpfin SECS and udp SECS, not "
                          f"'{' '.join(words[i:])}'")
            values[name] = args.integer(words[i + 1], what=f"lvs_timeouts {name}")
        self.tables.set_timeouts(values, args.stmt.origin)
        self.timeouts = {name: values.get(name, 0) for name in ("tcp", "tcpfin", "udp")}

    def ssl_block(self, stmt):
        values = {}
        for sub in Args(stmt).need_block():
            if sub.keyword in ("password", "ca", "certificate", "key"):
                values[sub.keyword] = Args(sub, "SSL").no_block().one()
            else:
                self.unknown(sub, "SSL", ("password", "ca", "certificate", "key"))
        self.ssl = SslContext(**values)

    def group(self, stmt):
        args = Args(stmt)
        if len(stmt.args) != 1:
            args.fail("virtual_server_group needs one name")
        name = stmt.args[0]
        where = f"virtual_server_group {name}"
        if name in self.groups:
            args.fail(f"{where} is already defined at {self.groups[name][0]}")
        members = []
        for sub in args.need_block():
            entry = Args(sub, where).no_block()
            if sub.keyword == "fwmark":
                words = entry.count(1, 2)
                mark = entry.integer(words[0], 1, MAX_FWMARK)
                family = {"inet": 4, "inet6": 6}.get(words[-1]) if len(words) > 1 else None
                if len(words) > 1 and family is None:
                    entry.fail(f"fwmark family '{words[1]}' must be inet or inet6")
                members.append(("fwmark", mark, family, sub.origin))
            else:
                port = entry.port(entry.count(0, 1)[0], sub.keyword) if sub.args else 0
                members.append(("ip", _expand(entry, sub.keyword), port, sub.origin))
        if not members:
            self.warn(stmt.origin, f"{where} has no entries")
        self.groups[name] = (stmt.origin, members)

    # -- virtual_server ------------------------------------------------
    def virtual_server(self, stmt):
        args = Args(stmt)
        words = stmt.args
        where = f"virtual_server {' '.join(words)}"
        block = Args(stmt, where).need_block()
        if words[:1] in (["fwmark"], ["group"]):
            if len(words) != 2:
                args.fail(f"virtual_server {words[0]} needs one "
                          + ("mark number" if words[0] == "fwmark" else "group name"))
            if words[0] == "fwmark":
                members = [("fwmark", args.integer(words[1], 1, MAX_FWMARK, "fwmark"), None,
                            stmt.origin)]
            elif words[1] not in self.groups:
                args.fail(f"{where}: virtual_server_group {words[1]} is not defined")
            else:
                members = self.groups[words[1]][1]
        else:
            args.count(1, 2)
            address = args.address(words[0], "virtual_server address")
            port = args.port(words[1], "virtual_server") if len(words) > 1 else 0
            members = [("ip", [address], port, stmt.origin)]
        vs = VirtualServerDraft(stmt, where, members)
        for sub in block:
            sub_args = Args(sub, where)
            kw = sub.keyword
            if kw == "real_server":
                vs.servers.append(self.real_server(sub, where))
            elif kw in IGNORED:
                sub_args.no_block()
                self.warn(sub.origin, f"{where}: {kw} ignored ({IGNORED[kw]} in lvs_app)")
            elif kw not in VS_KEYWORDS:
                self.unknown(sub, where, VS_KEYWORDS)
            elif kw in TIMING:
                common_option(sub_args.no_block(), vs.timing)
            elif kw.startswith(("flag-", "sh-", "mh-")):
                sub_args.no_block().count(0)
                vs.flags.append((kw, sub.origin))
            else:
                vs.settings[kw] = (self.vs_value(sub_args.no_block()), sub.origin)
        self.tables.add(vs)

    @staticmethod
    def vs_value(args):
        kw = args.keyword
        if kw in ("lvs_sched", "lb_algo", "persistence_engine", "virtualhost",
                  "persistence_granularity"):
            return args.one()
        if kw in ("ops", "ha_suspend", "sorry_server_inhibit", "alpha", "omega",
                  "inhibit_on_failure"):
            return args.boolean()
        if kw in ("lvs_method", "lb_kind", "sorry_server_lvs_method"):
            return args.method()
        if kw == "persistence_timeout":
            return args.integer(args.one()) if args.count(0, 1) else DEFAULT_PERSISTENCE
        if kw == "protocol":
            proto = args.one().upper()
            if proto == "SCTP":
                args.fail("protocol SCTP: SCTP services are not supported by lvs_app "
                          "(the switch pipeline handles TCP and UDP)")
            if proto not in ("TCP", "UDP"):
                args.fail(f"protocol '{args.args[0]}' must be TCP, UDP or SCTP")
            return proto.lower()
        if kw in ("quorum", "hysteresis"):
            return args.integer(args.one(), 1 if kw == "quorum" else 0, MAX_INT)
        if kw in ("quorum_up", "quorum_down"):
            return args.script()
        if kw == "ip_family":
            family = {"inet": 4, "inet6": 6}.get(args.one())
            if family is None:
                args.fail(f"ip_family '{args.args[0]}' must be inet or inet6")
            return family
        if kw == "sorry_server":
            words = args.count(1, 2)
            return (args.address(words[0], "sorry_server address"),
                    args.port(words[1], "sorry_server") if len(words) > 1 else None)
        return args.integer(args.one())          # weight: the model checks the range

    def real_server(self, stmt, vs_where):
        args = Args(stmt, vs_where)
        words = args.count(1, 2)
        server = RealServerDraft(args.address(words[0], "real_server address"),
                                 args.port(words[1], "real_server") if len(words) > 1 else None,
                                 stmt.origin, f"{vs_where}: real_server {' '.join(words)}")
        for sub in stmt.block or ():
            sub_args = Args(sub, server.where)
            kw = sub.keyword
            if kw in UNSUPPORTED_CHECKERS:
                self.warn(sub.origin, f"{server.where}: {kw} ignored (lvs_app has no "
                          + ("BFD" if kw == "BFD_CHECK" else "tracked files") + ")")
            elif kw in CHECKERS:
                server.drafts.append(parse_checker(sub, server.where, self))
            elif kw in IGNORED and kw != "hashed":
                sub_args.no_block()
                self.warn(sub.origin, f"{server.where}: {kw} ignored ({IGNORED[kw]} in lvs_app)")
            elif kw not in RS_KEYWORDS:
                self.unknown(sub, server.where, RS_KEYWORDS)
            elif kw in TIMING:
                common_option(sub_args.no_block(), server.timing)
            else:
                server.settings[kw] = (self.rs_value(sub_args.no_block()), sub.origin)
        return server

    @staticmethod
    def rs_value(args):
        kw = args.keyword
        if kw == "lvs_method":
            return args.method()
        if kw in ("inhibit_on_failure", "alpha"):
            return args.boolean()
        if kw in ("notify_up", "notify_down"):
            return args.script()
        if kw == "virtualhost":
            return args.one()
        return args.integer(args.one())          # weight, uthreshold, lthreshold
