"""Recovery: the switch is the state store.

In IPVS the connection table lives in the kernel, so restarting ipvsadm or
keepalived breaks nothing.  Here it lives in the switches' flow tables: when
a switch connects, the director reads its flows back (flow statistics
filtered by the app's cookie tag) instead of wiping them, and rebuilds its
connections and templates from them:

* the cookie names the kind, the service and the real server (their numbers
  are kept beside the rules file, see :mod:`lvs_app.ids`);
* the match names the client, the VIP and the ports, or for a template the
  client network;
* the instructions tell the port a NAT connection reaches on its server, and
  whether it passes through the FTP helper;
* the idle timeout tells the state: SYN_RECV's, FIN_WAIT's (``tcpfin``),
  CLOSE's 10 s, LISTEN's 120 s, else ESTABLISHED; a template put back for
  60 s went through expire_later.

OpenFlow 1.3 flow statistics give a flow's age, not its idle time, so a
recovered entry is listed with its whole idle timeout left (an upper bound);
the switch still removes the flow at the right moment and its FlowRemoved
settles the entry as usual.

What the current service table no longer has (a service or server deleted
while the controller was away, a persistence netmask changed, a flow of
another pipeline version) is deleted from the switch; what it has and the
switch lacks (base, VIP and fragment flows) is installed.  A fabric's flows
(link-port transit flows, per-host forwarding) tell where hosts live; the
fabric re-derives its flows from them once the links are known again
(fabricfwd.py).
"""

import logging

from lvs_app import ids as idmod
from lvs_app import ofmsg
from lvs_app import packet as pkt
from lvs_app import pipeline as pl
from lvs_app import tcpstate
from lvs_app.conntable import EXPIRE_LATER, Connection, Template
from lvs_app.forwarding import method_of
from lvs_app.api import parse_server_id
from lvs_app.model import FTP_CONTROL, LvsError, parse_service_id

LOG = logging.getLogger(__name__)

PROTO_NAMES = {pkt.PROTO_TCP: "tcp", pkt.PROTO_UDP: "udp"}


def flow_stats_request(datapath=None):
    """Ask a switch for every flow carrying the app's cookie tag."""
    from ryu.ofproto import ofproto_v1_3 as ofp
    from ryu.ofproto import ofproto_v1_3_parser as parser
    cookie, mask = idmod.cookie_mask()
    return parser.OFPFlowStatsRequest(datapath, 0, ofp.OFPTT_ALL, ofp.OFPP_ANY, ofp.OFPG_ANY,
                                      cookie, mask, parser.OFPMatch())


def aggregate_request(kind, service, server, datapath=None):
    """Ask a switch for the summed counters of one server's flows of one kind."""
    from ryu.ofproto import ofproto_v1_3 as ofp
    from ryu.ofproto import ofproto_v1_3_parser as parser
    cookie, mask = idmod.cookie_mask(kind, service, server)
    return parser.OFPAggregateStatsRequest(datapath, 0, ofp.OFPTT_ALL, ofp.OFPP_ANY,
                                           ofp.OFPG_ANY, cookie, mask, parser.OFPMatch())


def table_stats_request(datapath=None):
    """Ask a switch how many flows each table holds."""
    from ryu.ofproto import ofproto_v1_3_parser as parser
    return parser.OFPTableStatsRequest(datapath, 0)


def meter_stats_request(datapath=None):
    """Ask a switch how many packets each meter dropped."""
    from ryu.ofproto import ofproto_v1_3 as ofp
    from ryu.ofproto import ofproto_v1_3_parser as parser
    return parser.OFPMeterStatsRequest(datapath, 0, ofp.OFPM_ALL)


def meter_config_request(datapath=None):
    """Ask a switch which meters it has (the punt meters may be there already)."""
    from ryu.ofproto import ofproto_v1_3 as ofp
    from ryu.ofproto import ofproto_v1_3_parser as parser
    return parser.OFPMeterConfigStatsRequest(datapath, 0, ofp.OFPM_ALL)


LEGACY_FIN_PUNT = pl.PRIO_PUNT_TCP + pkt.TCP_FIN     # older versions punted FINs


def _ip(match, side):
    """The address of a match's ``ipv4_<side>``/``ipv6_<side>`` field."""
    return pkt.field_address(match, side)


class Recovery:
    """Turns a switch's flows into the director's state for that switch."""

    def __init__(self, director):
        self.director = director

    def recover(self, sw, flows, now, meters=()):
        """Rebuild ``sw``'s connections and templates from ``flows`` (flow
        statistics); ``meters`` are the meter ids the switch has.  Returns the
        messages that reconcile the switch."""
        d = self.director
        base = d.meters.mods(meters) + pl.base_flows(d.meters, d.health_source)
        out = [(sw.dpid, m) for m in base]
        conns, templates, vips, hot, fabric = [], [], {}, [], []
        for flow in flows:
            cookie = idmod.Cookie.parse(flow.cookie)
            if cookie is None:
                continue
            if cookie.version != idmod.PIPELINE_VERSION:
                out.append(self._delete(sw, flow))          # rebuilt below, if it lives
                if cookie.kind in (idmod.KIND_CONN, idmod.KIND_TEMPLATE):
                    (conns if cookie.kind == idmod.KIND_CONN else templates).append(
                        (flow, cookie, True))
                continue
            if cookie.kind == idmod.KIND_VIP:
                if flow.table_id == pl.SERVICE and flow.priority == LEGACY_FIN_PUNT:
                    out.append(self._delete(sw, flow))      # FINs stay in the switch now
                    continue
                self._read_vip(vips, flow)
            elif cookie.kind == idmod.KIND_L2:
                self._read_l2(sw, flow)
            elif cookie.kind == idmod.KIND_FRAG:
                side = "dst" if flow.table_id == pl.SERVICE else "src"
                sw.fragment_flows.add((flow.table_id, _ip(flow.match, side)))
            elif cookie.kind == idmod.KIND_CONN:
                conns.append((flow, cookie, False))
            elif cookie.kind == idmod.KIND_TEMPLATE:
                templates.append((flow, cookie, False))
            elif cookie.kind in (idmod.KIND_TEMPLATE_SYN, idmod.KIND_TEMPLATE_NAT):
                hot.append(flow)
            elif cookie.kind == idmod.KIND_FABRIC:
                fabric.append(flow)
        for flow, cookie, old in templates:
            out += self._template(sw, flow, cookie, old, now)
        out += self._hot_flows(sw, hot)
        for flow, cookie, old in conns:
            out += self._connection(sw, flow, cookie, old, now)
        out += self._reverse_flows(sw)
        sw.vips = {(vip, tcp, udp) for vip, (tcp, udp) in vips.items()}
        out += d.vips.sync(sw)
        out += d.fabricfwd.recover(sw.dpid, fabric)     # placed once links are known
        out += d.resolve_servers([sw], now)
        LOG.info("lvs_app: switch %016x: recovered %d connections and %d templates from %d "
                 "flows", sw.dpid, len(sw.conns), len(sw.templates), len(flows))
        return out

    # -- what a flow says ------------------------------------------------------------
    def _owner(self, cookie):
        """(service, server) a cookie names in the current table, or (None, None)."""
        sid_text, server_text = self.director.ids.lookup(cookie.service, cookie.server)
        if sid_text is None or server_text is None:
            return None, None
        try:
            service = self.director.config.table.services.get(parse_service_id(sid_text))
            address, port = parse_server_id(server_text)
        except LvsError:
            return None, None
        if service is None:
            return None, None
        return service, service.find_server(address, port)

    @staticmethod
    def _delete(sw, flow):
        """Delete exactly this flow (its whole cookie, match and priority)."""
        return (sw.dpid, ofmsg.flow_delete((flow.cookie, 0xFFFFFFFFFFFFFFFF), flow.table_id,
                                           flow.match, flow.priority))

    @staticmethod
    def _read_vip(vips, flow):
        """The VIP flows present, as VipFlows keeps them: vip -> [tcp?, udp?]."""
        match = flow.match
        if ("ipv4_dst" in match or "ipv6_dst" in match) and flow.table_id in (pl.CLASSIFY,
                                                                               pl.SERVICE):
            protos = vips.setdefault(_ip(match, "dst"), [False, False])
            if flow.table_id == pl.SERVICE and match.get("ip_proto") == pkt.PROTO_UDP:
                protos[1] = True
            elif flow.table_id == pl.SERVICE and flow.priority == pl.PRIO_STRAY:
                # the newest of a TCP VIP's flows: a switch of an older version
                # without it gets the VIP's flows again
                protos[0] = True

    def _read_l2(self, sw, flow):
        """A learned-MAC flow: where that MAC lives on this switch."""
        mac = flow.match.get("eth_dst")
        port = next((a.port for inst in flow.instructions for a in getattr(inst, "actions", ())
                     if hasattr(a, "port")), None)
        if mac is not None and port is not None:
            self.director.hosts.ports.setdefault(sw.dpid, {})[pkt.mac_bytes(mac)] = port

    # -- templates -------------------------------------------------------------------
    def _template(self, sw, flow, cookie, old, now):
        d = self.director
        service, server = self._owner(cookie)
        if service is None or server is None or not service.persistent:
            return [] if old else [self._delete(sw, flow)]
        match = flow.match
        proto = PROTO_NAMES.get(match.get("ip_proto"))
        try:
            snet = _ip(match, "src")
            vip = _ip(match, "dst")
        except (KeyError, ValueError):
            return [] if old else [self._delete(sw, flow)]
        if service.key.is_fwmark:
            key = ("IP", snet, service.key.fwmark, 0)
        else:
            port = match.get(f"{proto}_dst")
            key = (proto, snet, vip, port if isinstance(port, int) else 0)
        matches = d.templates.matches(service, key)
        if ofmsg.match_key(match) not in {ofmsg.match_key(m) for m in matches}:
            return [] if old else [self._delete(sw, flow)]     # the settings changed
        template = sw.templates.get(key)
        if template is None:
            dest = d.runtime.dest(service, server)
            rid = d.ids.server(service.key, server.address, server.port)
            idle = flow.idle_timeout
            timeout = EXPIRE_LATER if idle == EXPIRE_LATER != service.timeout else service.timeout
            template = Template(key, service.key, dest, rid, matches,
                                now - flow.duration_sec, now + idle, timeout)
            d.templates.decide_hot(sw, service, template)
            d.conns.add_template(sw, template)
        if old:                                    # another pipeline version: rebuild it
            return d.templates.arm(sw, service, template, flow.idle_timeout, now)
        return []

    def _hot_flows(self, sw, flows):
        """``--pe switch`` flows (a template's SYN flow, its NAT reply flow):
        kept when their template was recovered and carries its connections
        in the switch, else deleted (its NAT reply flows come again below)."""
        d = self.director
        keep = set()
        for template in sw.templates.values():
            if template.hot:
                keep.update((pl.SERVICE, pl.PRIO_TEMPLATE_SYN, ofmsg.match_key(
                    d.flows.syn_match(fields))) for fields in template.matches)
            if template.hot_nat is not None:
                keep.update((pl.REVERSE, pl.PRIO_TEMPLATE_NAT, ofmsg.match_key(fields))
                            for fields in d.flows.template_nat_matches(
                                d.templates.reverse_matches(template)))
        return [self._delete(sw, flow) for flow in flows
                if (flow.table_id, flow.priority, ofmsg.match_key(flow.match)) not in keep]

    # -- connections -----------------------------------------------------------------
    def _connection(self, sw, flow, cookie, old, now):
        d = self.director
        service, server = self._owner(cookie)
        match = flow.match
        proto = PROTO_NAMES.get(match.get("ip_proto"))
        try:
            key = (proto, _ip(match, "src"), match[f"{proto}_src"], _ip(match, "dst"),
                   match[f"{proto}_dst"])
        except (KeyError, TypeError, ValueError):
            key = None
        actions = [a for inst in flow.instructions for a in getattr(inst, "actions", ())]
        if service is None or server is None or key is None or not flow.instructions:
            # gone from the table (or dropped for a deleted server): nothing
            # remembers it any more
            return [] if old else [self._delete(sw, flow)]
        dest = d.runtime.dest(service, server)
        dport = next((a.value for a in actions
                      if getattr(a, "key", None) == f"{proto}_dst"), key[4])
        mac = next((a.value for a in actions if getattr(a, "key", None) == "eth_dst"), None)
        if mac is not None:                      # the server's MAC, as it was resolved
            d.hosts.macs.setdefault(int(server.address), pkt.mac_bytes(mac))
        helper = any(getattr(a, "port", None) == ofmsg.CONTROLLER for a in actions)
        state = self._state(proto, key, flow.idle_timeout, flow.hard_timeout)
        template = None
        if service.persistent:
            via_ftp = service.key.port == FTP_CONTROL and key[4] != FTP_CONTROL
            template = sw.templates.get(d.templates.key(service, proto, key[1], key[3], key[4],
                                                        via_ftp))
        timeout = d.lifecycle.tcp_timeout(state) if proto == "tcp" else d.timeout("udp")
        conn = Connection(key, service.key, dest, d.ids.server(service.key, server.address,
                                                                server.port),
                          dport, state, state in tcpstate.ACTIVE,
                          now + flow.idle_timeout, template, d.ids.service(service.key),
                          method_of(dest).reverse_nat, now + flow.idle_timeout - timeout)
        conn.flow_idle = flow.idle_timeout
        d.conns.add(sw, conn)
        if helper:
            # a fresh helper: the sequence adjustments lived in the old process
            d.ftp.watch(sw, conn)
        if old:
            return d.flows.connection_flows(sw, conn, conn.service_id, flow.idle_timeout)
        return []

    def _state(self, proto, key, idle, hard=0):
        if proto != "tcp":
            return "UDP"
        d = self.director
        if hard:
            return "FIN_WAIT"     # its fin_timeout saw the FIN (see lifecycle.py)
        if idle == d.lifecycle.flow_idle("SYN_RECV"):
            return "SYN_RECV"
        if idle == d.lifecycle.tcp_timeout("FIN_WAIT"):
            return "FIN_WAIT"
        if idle == d.lifecycle.tcp_timeout("CLOSE"):
            return "CLOSE"
        if idle == d.lifecycle.tcp_timeout("LISTEN"):
            return "LISTEN" if key[4] == FTP_CONTROL - 1 else "TIME_WAIT"
        return "ESTABLISHED"

    def _reverse_flows(self, sw):
        """NAT: every recovered connection's and template's reverse flow, again
        (an ADD of an identical flow changes nothing in the switch)."""
        d = self.director
        out = []
        for conn in sw.conns.values():
            if conn.nat:
                out += d.flows.connection_flows(sw, conn, conn.service_id, conn.flow_idle)[1:]
        for template in sw.templates.values():
            if method_of(template.dest).reverse_nat:
                sid = d.ids.service(template.service)
                reverse = d.templates.reverse_matches(template)
                if template.hot_nat is not None:
                    out += d.flows.template_nat(sw, template, sid, reverse)
                else:
                    out += d.flows.template_reverse(sw, template, sid, reverse)
        return out
