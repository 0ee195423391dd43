"""The director's figures in the Prometheus text exposition format (0.0.4).

:func:`render` turns three plain dicts into the text a ``GET /metrics``
answers with :data:`CONTENT_TYPE`: the ``GET /ipvs`` snapshot, the
``GET /ipvs/health`` status and the controller's own counters.  It reads
nothing else and keeps no state, so the same input always gives the same
text: families in a fixed order, samples sorted by their label values
(numbers and addresses as such), a ``# HELP`` and a ``# TYPE`` line for
every family even when it has no samples, so dashboards see them.

Where the figures come from:

* connections per service and server are counted by the controller as it
  schedules them (IPVS's Conns, ActiveConn, InActConn, PersistConn);
* packets and bytes come from the switches' flow counters (bytes by IP
  length, as IPVS counts them; see :mod:`lvs_app.stats`), *out* only from
  the NAT reverse flows, since direct routing and tunnel replies bypass the
  director;
* the per-second gauges are IPVS's 2-second rate estimator
  (:mod:`lvs_app.estimator`), what ``ipvsadm -L --rate`` shows;
* the totals are the sums over the services listed now (so, unlike the
  kernel's, they drop when a service is deleted: Prometheus sees a reset);
* health figures are the keepalived-style checkers' state, the rest the
  controller's own OpenFlow bookkeeping.

Naming.  What IPVS itself has is named as Prometheus' node_exporter names it
(``node_ipvs_*``, with the prefix ``lvs_ipvs_``), with node_exporter's
service-side labels ``local_address``, ``local_port``, ``local_mark``,
``proto`` (``TCP``/``UDP``/``FWM``; a fwmark service has ``local_address``
"" and ``local_port`` "0"), so dashboards and alerts written for kernel
IPVS carry over with a prefix change.  ``local_mark`` is the mark in decimal, as
ipvsadm writes it (node_exporter copies /proc/net/ip_vs's 8-digit hex).
The controller's own figures are ``lvs_app_*``.  Base units in names
(``_bytes``, ``_seconds``), ``_total`` on counters only.

Series whose labels come out the same are combined, as node_exporter sums
them: counts add up, "up" gauges take the lowest (up only if all are up),
flags the highest.  That happens for an IPv4 and an IPv6 fwmark service with
the same mark (their labels cannot tell them apart) and for two keepalived
virtual_server blocks with the same name (TCP and UDP on one VIP and port).

Stdlib only.
"""

import ipaddress
import math
import re

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

SERVICE_LABELS = ("local_address", "local_port", "local_mark", "proto")
BACKEND_LABELS = SERVICE_LABELS + ("remote_address", "remote_port", "forward")
STATS = ("conns", "inpkts", "outpkts", "inbytes", "outbytes")
RATES = ("cps", "inpps", "outpps", "inbps", "outbps")
_PROTO = {"tcp": "TCP", "udp": "UDP", "fwmark": "FWM"}
_DIGITS = re.compile(r"[0-9]+")

# (name part, what it counts ({where}: the service, ...), where the figure comes from)
_TRAFFIC = (
    ("connections", "Connections scheduled to {where}",
     "counted by the controller as it schedules them"),
    ("incoming_packets", "Packets from clients to {where}",
     "from the switch's flow counters"),
    ("outgoing_packets", "Reply packets to the clients of {where}",
     "from the switch's NAT reverse-flow counters (none for droute and tunnel)"),
    ("incoming_bytes", "Bytes from clients to {where}",
     "from the switch's flow counters (IP length)"),
    ("outgoing_bytes", "Reply bytes to the clients of {where}",
     "from the switch's NAT reverse-flow counters (IP length)"),
)


def _add(old, new):
    return old + new


class _Family:
    """One metric family: name, type, HELP, label names and its samples."""

    def __init__(self, name, kind, help_text, labels=(), merge=_add):
        self.name, self.kind, self.help, self.labels = name, kind, help_text, labels
        self.merge = merge
        self.samples = {}                   # label values (str tuple) -> value

    def add(self, value, *label_values):
        key = tuple("" if v is None else str(v) for v in label_values)
        assert len(key) == len(self.labels), (self.name, key)
        value = _value(value)
        old = self.samples.get(key)
        self.samples[key] = value if old is None else self.merge(old, value)

    def lines(self):
        yield f"# HELP {self.name} {_escape_help(self.help)}"
        yield f"# TYPE {self.name} {self.kind}"
        for key in sorted(self.samples, key=lambda k: ([_order(v) for v in k], k)):
            yield f"{self.name}{_label_text(zip(self.labels, key))} {_number(self.samples[key])}"


class _Histogram:
    """A label-less histogram from cumulative ``(upper bound, count)`` buckets."""

    def __init__(self, name, help_text, data):
        self.name, self.help, self.data = name, help_text, data or {}

    def lines(self):
        count = _value(self.data.get("count"))
        yield f"# HELP {self.name} {_escape_help(self.help)}"
        yield f"# TYPE {self.name} histogram"
        for bound, cumulative in sorted(self.data.get("buckets") or (), key=lambda b: b[0]):
            if not math.isinf(float(bound)):
                yield f'{self.name}_bucket{{le="{_number(float(bound))}"}} {_number(cumulative)}'
        yield f'{self.name}_bucket{{le="+Inf"}} {_number(count)}'
        yield f"{self.name}_sum {_number(_value(self.data.get('sum')))}"
        yield f"{self.name}_count {_number(count)}"


# -- the text format ---------------------------------------------------------------------

def _escape(value):
    """A label value: backslash, double quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text):
    """HELP text: backslash and newline escaped."""
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _label_text(pairs):
    body = ",".join(f'{name}="{_escape(value)}"' for name, value in pairs)
    return "{" + body + "}" if body else ""


def _value(value):
    """A sample value from the input: missing is 0, booleans are 0/1."""
    if value is None:
        return 0
    if isinstance(value, bool):
        return int(value)
    return value


def _number(value):
    """A value as the text format writes it: integers exactly, Go's Inf/NaN."""
    if isinstance(value, int):
        return str(value)
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def _order(text):
    """Sort key of a label value: numbers and addresses by value, else text."""
    if _DIGITS.fullmatch(text):
        return (0, int(text), "")
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return (2, 0, text)
    return (1, (address.version, int(address)), "")


def _dpid(dpid):
    """A datapath id as Ryu writes it: 16 hex digits."""
    return f"{dpid:016x}" if isinstance(dpid, int) else str(dpid)


# -- the families ------------------------------------------------------------------------

def _service_labels(service):
    protocol = service.get("protocol")
    proto = _PROTO.get(protocol, str(protocol).upper())
    if protocol == "fwmark":
        return ("", "0", str(service.get("fwmark", 0)), proto)
    return (service.get("address") or "", str(service.get("port", 0)), "", proto)


def _ipvs_families(snapshot):
    services = snapshot.get("services") or []
    totals, per_service, rates, backend_counters = [], [], [], []
    for (part, what, source), key, rate in zip(_TRAFFIC, STATS, RATES):
        totals.append((key, _Family(
            f"lvs_ipvs_{part}_total", "counter",
            f"{what.format(where='all services')}, {source}.")))
        per_service.append((key, _Family(
            f"lvs_ipvs_service_{part}_total", "counter",
            f"{what.format(where='the service')}, {source}.", SERVICE_LABELS)))
        rates.append((rate, _Family(
            f"lvs_ipvs_service_{part}_per_second", "gauge",
            f"{what.format(where='the service')} per second, from IPVS's 2-second rate "
            "estimator.", SERVICE_LABELS)))
        backend_counters.append((key, _Family(
            f"lvs_ipvs_backend_{part}_total", "counter",
            f"{what.format(where='the real server')}, {source}.", BACKEND_LABELS)))
    backend_gauges = [
        ("activeconns", _Family(
            "lvs_ipvs_backend_connections_active", "gauge",
            "Active connections on the real server, from the director's connection "
            "table (ipvsadm ActiveConn).", BACKEND_LABELS)),
        ("inactconns", _Family(
            "lvs_ipvs_backend_connections_inactive", "gauge",
            "Inactive connections on the real server, from the director's connection "
            "table (ipvsadm InActConn).", BACKEND_LABELS)),
        ("persistconns", _Family(
            "lvs_ipvs_backend_connections_persistent", "gauge",
            "Persistence templates pointing at the real server (ipvsadm PersistConn).",
            BACKEND_LABELS)),
        ("weight", _Family(
            "lvs_ipvs_backend_weight", "gauge",
            "Scheduling weight of the real server, as configured or set by the health "
            "checks (0: quiesced).", BACKEND_LABELS)),
        ("overloaded", _Family(
            "lvs_ipvs_backend_overloaded", "gauge",
            "1 while the real server is over its upper connection threshold and gets no "
            "new connections.", BACKEND_LABELS, merge=max)),
    ]
    for key, family in totals:
        family.add(sum(_value((s.get("stats") or {}).get(key)) for s in services))
    for service in services:
        labels = _service_labels(service)
        stats, rate = service.get("stats") or {}, service.get("rates") or {}
        for key, family in per_service:
            family.add(stats.get(key), *labels)
        for key, family in rates:
            family.add(rate.get(key), *labels)
        for server in service.get("servers") or []:
            server_labels = labels + (server.get("address"), server.get("port"),
                                      server.get("method"))
            for key, family in backend_gauges:
                family.add(server.get(key), *server_labels)
            server_stats = server.get("stats") or {}
            for key, family in backend_counters:
                family.add(server_stats.get(key), *server_labels)
    return [f for _, f in totals + per_service + rates + backend_gauges + backend_counters]


def _health_families(health):
    real_server_up = _Family(
        "lvs_app_health_real_server_up", "gauge",
        "1 while the health checks find the real server up (keepalived's real_server state).",
        ("virtual_server", "remote_address", "remote_port"), merge=min)
    checker_up = _Family(
        "lvs_app_health_checker_up", "gauge",
        "1 while this health checker of the real server passes.",
        ("virtual_server", "remote_address", "remote_port", "checker", "target"), merge=min)
    quorum_up = _Family(
        "lvs_app_health_quorum_up", "gauge",
        "1 while the live weight of the virtual_server block's real servers meets its quorum.",
        ("virtual_server",), merge=min)
    sorry_active = _Family(
        "lvs_app_health_sorry_server_active", "gauge",
        "1 while the virtual_server block has lost quorum and its sorry server takes "
        "the traffic.", ("virtual_server",), merge=max)
    probes = _Family(
        "lvs_app_health_probes_total", "counter",
        "Health-check probes finished, by result, from the controller's checkers.",
        ("result",))
    for block in health.get("virtual_servers") or []:
        name = block.get("virtual_server")
        quorum_up.add(block.get("quorum_state") == "up", name)
        sorry_active.add(block.get("sorry_server_active"), name)
        for server in block.get("real_servers") or []:
            where = (name, server.get("address"), server.get("port"))
            real_server_up.add(server.get("state") == "up", *where)
            for check in server.get("checkers") or []:
                checker_up.add(check.get("state") == "up", *where, check.get("checker"),
                               check.get("target"))
    counts = health.get("counts") or {}
    for result in ("ok", "failed"):
        probes.add(counts.get(result), result)
    return [real_server_up, checker_up, quorum_up, sorry_active, probes]


def _controller_families(controller):
    def scalar(name, kind, help_text, key):
        family = _Family(name, kind, help_text)
        family.add(controller.get(key))
        return family

    def labelled(name, kind, help_text, labels, key, label_values):
        family = _Family(name, kind, help_text, labels)
        for k, value in (controller.get(key) or {}).items():
            family.add(value, *label_values(k))
        return family

    poll_age = _Family(
        "lvs_app_stats_poll_age_seconds", "gauge",
        "Seconds since the switches last answered a flow-statistics poll: the age of "
        "the traffic counters.")
    if controller.get("stats_poll_seconds") is not None:     # no sample before the first
        poll_age.add(controller["stats_poll_seconds"])
    return [
        scalar("lvs_app_switches_connected", "gauge",
               "OpenFlow switches connected to the controller.", "switches"),
        labelled("lvs_app_packet_ins_total", "counter",
                 "Packet-ins the controller handled, by the table that sent them and "
                 "what became of them (scheduled, forwarded, answered, switched, queued, "
                 "consumed, dropped).", ("table", "outcome"), "packet_ins", tuple),
        labelled("lvs_app_dropped_packets_total", "counter",
                 "Packets the controller dropped, by reason (punts a switch's meter "
                 "dropped are in lvs_app_punts_rate_limited_total).", ("reason",),
                 "dropped", lambda k: (k,)),
        scalar("lvs_app_connections_dropped_total", "counter",
               "Half-open connection entries ended early to make room near "
               "--lvs-max-connections (IPVS's drop_entry defence).", "connections_dropped"),
        _Histogram("lvs_app_packet_in_duration_seconds",
                   "Time the controller spent handling one packet-in.",
                   controller.get("packet_in_seconds")),
        scalar("lvs_app_flow_mods_total", "counter",
               "FlowMods the controller sent to the switches.", "flow_mods"),
        scalar("lvs_app_packet_outs_total", "counter",
               "PacketOuts the controller sent to the switches.", "packet_outs"),
        scalar("lvs_app_openflow_errors_total", "counter",
               "OpenFlow error messages the switches sent to the controller.",
               "openflow_errors"),
        labelled("lvs_app_punts_rate_limited_total", "counter",
                 "Packets to the controller that a switch's punt meter dropped, from the "
                 "switch's meter statistics.", ("dpid", "meter"), "rate_limited",
                 lambda k: (_dpid(k[0]), k[1])),
        labelled("lvs_app_flow_entries", "gauge",
                 "Flow entries in each switch table (all of them, the app's and any "
                 "other's), from the switch's table statistics (active_count); a table "
                 "that held entries once shows 0 when empty.", ("dpid", "table"),
                 "flow_entries",
                 lambda k: (_dpid(k[0]), k[1])),
        labelled("lvs_app_connections", "gauge",
                 "Connection entries the director holds, by switch (ipvsadm -Lc).",
                 ("dpid",), "connections", lambda k: (_dpid(k),)),
        labelled("lvs_app_templates", "gauge",
                 "Persistence templates the director holds, by switch.",
                 ("dpid",), "templates", lambda k: (_dpid(k),)),
        scalar("lvs_app_stats_polls_total", "counter",
               "Flow-statistics polls the switches answered (each updates the traffic "
               "counters).", "stats_polls"),
        poll_age,
    ]


def render(snapshot, health, controller):
    """The exposition text of the ``GET /ipvs`` snapshot, the ``GET /ipvs/health``
    status and the controller's figures.

    Any of the three may be empty or None, and any key missing: a missing count
    is 0, a missing table has no samples.  ``controller`` has ``switches``,
    ``packet_ins`` {(table, outcome): n}, ``dropped`` {reason: packets},
    ``connections_dropped``, ``packet_in_seconds`` {"count", "sum",
    "buckets": [(upper bound, cumulative count), ...] without +Inf},
    ``flow_mods``, ``packet_outs``, ``openflow_errors``, ``rate_limited``
    {(dpid, meter name): packets}, ``flow_entries`` {(dpid, table name): n},
    ``connections`` and ``templates`` {dpid: n}, ``stats_polls``, and
    ``stats_poll_seconds``: the seconds since the last flow-statistics reply
    (None or missing before the first: the gauge then has no sample).
    """
    families = (_ipvs_families(snapshot or {}) + _health_families(health or {})
                + _controller_families(controller or {}))
    return "".join(line + "\n" for family in families for line in family.lines())
