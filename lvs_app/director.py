"""Director logic: the LinuxDirector's decisions, as OpenFlow messages.

Pure logic: handlers take plain data and ``now`` (seconds) and return a list
of ``(dpid, message)`` pairs; nothing here sends, sleeps or reads a clock.
Messages are Ryu OpenFlow 1.3 parser objects built without a datapath; the
shim attaches the datapath when it sends them.

How the IPVS tables map onto flows (see pipeline.py for the table layout):

* a connection is one exact 5-tuple flow in SERVICE (plus its reverse flow in
  REVERSE for NAT) with idle_timeout = the protocol timeout; its FlowRemoved
  ends the connection and updates ActiveConn/InActConn;
* TCP SYN, FIN and RST to a VIP come to the controller: SYN schedules, FIN
  and RST move the connection to FIN_WAIT/CLOSE (inactive) and shorten its
  flow to the tcpfin timeout -- IPVS's INPUT_ONLY state table, as seen from
  the client side;
* a persistence template is a client-wildcard flow (client under the
  persistence netmask, VIP, port or all ports) in SERVICE with idle_timeout =
  the persistence timeout.  Connection flows shadow it, so only a new
  connection scheduled through it re-arms it (re-adding the flow), as IPVS
  re-arms its template timer only for new connections; when it expires while
  it still controls connections it is put back for 60 s at a time (IPVS's
  expire_later);
* a NAT connection to virtual port 21 is an FTP control connection (IPVS's
  ip_vs_ftp): its connection flows send its packets to the controller in both
  directions and the controller forwards each one, after the FTP helper
  (ftp.py) has read PORT/EPRT/PASV/EPSV and rewritten 227 replies; the data
  connections it announces are ordinary connection flows, controlled by it.
"""

import ipaddress
import logging
from dataclasses import dataclass, field

from ryu.ofproto import ofproto_v1_3 as ofp
from ryu.ofproto import ofproto_v1_3_parser as parser

from lvs_app import ftp
from lvs_app import packet as pkt
from lvs_app import pipeline as pl
from lvs_app.model import FTP_CONTROL, FTP_DATA, UNPRIVILEGED, ServiceKey
from lvs_app.schedulers import SchedKey, make_scheduler

LOG = logging.getLogger(__name__)

EXPIRE_LATER = 60          # s: a template with live connections is re-checked this often
ARP_QUEUE_LIMIT = 64       # packets held per real server while its MAC is resolved
L2_IDLE = 300              # s: learned MAC flows
PARTS_CACHE_LIMIT = 4096   # encoded instruction/action lists kept
PROTO_NAMES = {pkt.PROTO_TCP: "tcp", pkt.PROTO_UDP: "udp"}
PROTO_NUMBERS = {"tcp": pkt.PROTO_TCP, "udp": pkt.PROTO_UDP}


# -------------------------------------------------------------------------
# state

@dataclass
class Template:
    """An IPVS connection template: client (under netmask) -> real server."""

    key: tuple                  # (proto name or "IP", snet int, vip int or mark, vport)
    service: ServiceKey
    server: object              # RealServer
    server_id: int
    matches: list               # the flow matches that carry it (one per fwmark range)
    armed_at: float
    expires_at: float
    n_control: int = 0
    expiring: bool = False      # its flows are gone; waits for its connections


@dataclass
class Connection:
    key: tuple                  # (proto, client ip, client port, vip, vport)
    service: ServiceKey
    server: object
    server_id: int
    dport: int                  # port on the real server
    state: str
    active: bool
    expires_at: float
    template: Template = None
    nodest: bool = False        # its real server was deleted (expire_nodest_conn=0)
    control: "Connection" = None    # FTP data connection: its control connection
    ftp: "ftp.FtpControl" = None    # FTP control connection: the helper's state


@dataclass
class FtpExpectation:
    """A passive FTP data connection announced by a 227/229 reply (IPVS's
    NO_CPORT entry): the client's next SYN to VIP:port goes to the control
    connection's real server, same port."""

    control: Connection
    port: int
    expires_at: float


@dataclass
class Switch:
    dpid: int
    ports: dict = field(default_factory=dict)        # port no -> name
    tunnel_port: int = None
    macs: dict = field(default_factory=dict)         # mac bytes -> port (L2 learning)
    vips: set = field(default_factory=set)           # VIP flows installed: (vip, tcp?, udp?)
    conns: dict = field(default_factory=dict)        # 5-tuple -> Connection
    templates: dict = field(default_factory=dict)    # template key -> Template
    ftp_controls: dict = field(default_factory=dict)  # (rs, rs port, client, cport) -> Connection
    ftp_expect: dict = field(default_factory=dict)    # (client, vip, vport) -> FtpExpectation


# -------------------------------------------------------------------------
# message builders

def _actions(actions):
    return [parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, actions)] if actions else []


def flow_add(table, priority, match, instructions, cookie, idle=0, hard=0, notify=False):
    return parser.OFPFlowMod(
        None, cookie=cookie, cookie_mask=0, table_id=table, command=ofp.OFPFC_ADD,
        idle_timeout=idle, hard_timeout=hard, priority=priority,
        buffer_id=ofp.OFP_NO_BUFFER, out_port=ofp.OFPP_ANY, out_group=ofp.OFPG_ANY,
        flags=ofp.OFPFF_SEND_FLOW_REM if notify else 0, match=match,
        instructions=instructions)


def flow_delete(cookie_and_mask, table=ofp.OFPTT_ALL, match=None, priority=None):
    cookie, mask = cookie_and_mask
    strict = priority is not None
    return parser.OFPFlowMod(
        None, cookie=cookie, cookie_mask=mask, table_id=table,
        command=ofp.OFPFC_DELETE_STRICT if strict else ofp.OFPFC_DELETE,
        priority=priority or 0, buffer_id=ofp.OFP_NO_BUFFER, out_port=ofp.OFPP_ANY,
        out_group=ofp.OFPG_ANY, match=match or parser.OFPMatch())


def flow_modify(cookie_and_mask, table, instructions):
    cookie, mask = cookie_and_mask
    return parser.OFPFlowMod(
        None, cookie=cookie, cookie_mask=mask, table_id=table, command=ofp.OFPFC_MODIFY,
        buffer_id=ofp.OFP_NO_BUFFER, out_port=ofp.OFPP_ANY, out_group=ofp.OFPG_ANY,
        match=parser.OFPMatch(), instructions=instructions)


def packet_out(in_port, actions, data):
    return parser.OFPPacketOut(None, buffer_id=ofp.OFP_NO_BUFFER, in_port=in_port,
                               actions=actions, data=data)


def to_controller():
    return [parser.OFPActionOutput(ofp.OFPP_CONTROLLER, ofp.OFPCML_NO_BUFFER)]


def _match_key(match):
    """A canonical, hashable form of a match (OFPMatch or dict)."""
    items = match.items() if hasattr(match, "items") else match._fields2
    out = []
    for name, value in items:
        if isinstance(value, tuple):
            value, mask = value
            if isinstance(value, str) and "." in value:
                maskint = int(ipaddress.IPv4Address(mask))
                value = pkt.ip_text(int(ipaddress.IPv4Address(value)) & maskint)
                if maskint == 0xFFFFFFFF:
                    out.append((name, value))
                    continue
            out.append((name, (value, mask)))
        else:
            out.append((name, value))
    return tuple(sorted(out))


# -------------------------------------------------------------------------
# the director

class Director:
    """All switches' director state for one service table (a DirectorAPI)."""

    def __init__(self, api):
        self.api = api
        self.switches = {}
        self.schedulers = {}        # ServiceKey -> Scheduler
        self.hosts = {}             # IPv4 int -> MAC bytes (learned)
        self.waiting = {}           # IPv4 int -> [(dpid, in_port, data)] awaiting ARP
        self._ids = {}              # ServiceKey / (ServiceKey, addr, port) -> cookie id
        self._next_id = {"service": 1}
        self._index = None          # service lookup tables, rebuilt on change
        self._parts = {}            # encoded instructions/actions, see _cached

    # -- ids and lookups -----------------------------------------------
    def service_id(self, key):
        if key not in self._ids:
            self._ids[key] = self._next_id["service"]
            self._next_id["service"] += 1
        return self._ids[key]

    def server_id(self, key, server):
        ident = (key, server.address, server.port)
        if ident not in self._ids:
            counter = ("server", key)
            self._next_id[counter] = self._next_id.get(counter, 0) + 1
            self._ids[ident] = self._next_id[counter]
        return self._ids[ident]

    def _build_index(self):
        table = self.api.table
        exact, ftp_vips, vips = {}, set(), {}
        for key, service in table.services.items():
            if key.is_fwmark or key.version != 4:
                continue
            vip = int(key.address)
            exact[(key.protocol, vip, key.port)] = service
            if key.protocol == "tcp" and key.port == FTP_CONTROL:
                ftp_vips.add(vip)
            vips.setdefault(vip, set()).add(key.protocol)
        marks = []
        for key, service in table.services.items():
            if not key.is_fwmark or key.af != 4:
                continue
            for match in table.marks[key.fwmark].matches:
                marks.append((match, service))
                vips.setdefault(int(match.address), set()).add(match.protocol)
        self._index = (exact, ftp_vips, marks, vips)
        return self._index

    @property
    def index(self):
        return self._index or self._build_index()

    def find_service(self, proto, vip, port):
        """IPVS's lookup order: fwmark, exact, FTP fallback, port 0.

        Returns (service, via_ftp_fallback) or (None, False).
        """
        exact, ftp_vips, marks, _ = self.index
        for match, service in marks:
            if (match.protocol == proto and int(match.address) == vip
                    and match.port_min <= port <= match.port_max):
                return service, False
        service = exact.get((proto, vip, port))
        if service is not None:
            return service, False
        if (proto == "tcp" and vip in ftp_vips
                and (port == FTP_DATA or port >= UNPRIVILEGED)):
            return exact[("tcp", vip, FTP_CONTROL)], True
        service = exact.get((proto, vip, 0))
        return service, False

    def scheduler(self, service):
        sched = self.schedulers.get(service.key)
        wanted = (service.scheduler, service.sched_flags)
        if sched is None or getattr(sched, "_lvs_config", None) != wanted:
            sched = make_scheduler(service.scheduler, service.sched_flags)
            sched._lvs_config = wanted
            self.schedulers[service.key] = sched
        return sched

    def switch(self, dpid):
        return self.switches.get(dpid)

    # -- switch lifecycle ------------------------------------------------
    def switch_connected(self, dpid, ports, now):
        """A switch connected: wipe our old flows, install the pipeline."""
        sw = Switch(dpid)
        self.switches[dpid] = sw
        self._set_ports(sw, ports)
        out = [flow_delete(pl.cookie_mask())]
        base = pl.Cookie(pl.KIND_BASE).value
        out += [
            flow_add(pl.CLASSIFY, pl.PRIO_ARP,
                     parser.OFPMatch(eth_type=pkt.ETH_ARP, eth_dst=pkt.mac_text(pkt.DIRECTOR_MAC)),
                     _actions(to_controller()), base),
            flow_add(pl.CLASSIFY, pl.PRIO_MISS, parser.OFPMatch(),
                     [parser.OFPInstructionGotoTable(pl.REVERSE)], base),
            flow_add(pl.SERVICE, pl.PRIO_MISS, parser.OFPMatch(), [], base),
            flow_add(pl.REVERSE, pl.PRIO_MISS, parser.OFPMatch(),
                     [parser.OFPInstructionGotoTable(pl.FORWARD)], base),
            flow_add(pl.FORWARD, pl.PRIO_MISS, parser.OFPMatch(), _actions(to_controller()), base),
        ]
        out = [(dpid, m) for m in out]
        out += self._sync_vips(sw)
        out += self._resolve_servers([sw])
        return out

    def switch_disconnected(self, dpid):
        sw = self.switches.pop(dpid, None)
        if sw is None:
            return
        for conn in list(sw.conns.values()):
            self._unbind(conn)
        for template in list(sw.templates.values()):
            self._forget_template(sw, template)

    def ports_changed(self, dpid, ports):
        sw = self.switches.get(dpid)
        if sw is not None:
            self._set_ports(sw, ports)

    @staticmethod
    def _set_ports(sw, ports):
        sw.ports = dict(ports)
        sw.tunnel_port = next((no for no, name in sorted(sw.ports.items())
                               if "vxlan" in name), None)

    def _sync_vips(self, sw):
        """Install/remove the per-VIP classifier and punt flows to match the table."""
        _, _, _, vips = self.index
        wanted = {(vip, "tcp" in protos, "udp" in protos) for vip, protos in vips.items()}
        out = []
        cookie = pl.Cookie(pl.KIND_VIP).value
        for vip, tcp, udp in sw.vips - wanted:
            for table, prio, match in self._vip_matches(vip, tcp, udp):
                out.append(flow_delete(pl.cookie_mask(pl.KIND_VIP), table, match, prio))
        for vip, tcp, udp in wanted - sw.vips:
            for table, prio, match in self._vip_matches(vip, tcp, udp):
                if table == pl.CLASSIFY and prio == pl.PRIO_VIP:
                    inst = [parser.OFPInstructionGotoTable(pl.SERVICE)]
                else:
                    inst = _actions(to_controller())
                out.append(flow_add(table, prio, match, inst, cookie))
        sw.vips = wanted
        return [(sw.dpid, m) for m in out]

    @staticmethod
    def _vip_matches(vip, tcp, udp):
        ip = pkt.ip_text(vip)
        yield pl.CLASSIFY, pl.PRIO_ARP, parser.OFPMatch(eth_type=pkt.ETH_ARP, arp_op=1,
                                                        arp_tpa=ip)
        yield pl.CLASSIFY, pl.PRIO_VIP, parser.OFPMatch(
            eth_type=pkt.ETH_IP, eth_dst=pkt.mac_text(pkt.virtual_mac(vip)), ipv4_dst=ip)
        if tcp:
            for flag in (pl.TCP_SYN, pl.TCP_FIN, pl.TCP_RST):
                yield pl.SERVICE, pl.PRIO_PUNT_TCP + flag, parser.OFPMatch(
                    eth_type=pkt.ETH_IP, ip_proto=pkt.PROTO_TCP, ipv4_dst=ip,
                    tcp_flags=(flag, flag))
        if udp:
            yield pl.SERVICE, pl.PRIO_PUNT_UDP, parser.OFPMatch(
                eth_type=pkt.ETH_IP, ip_proto=pkt.PROTO_UDP, ipv4_dst=ip)

    # -- ARP and host learning -------------------------------------------
    def _learn_host(self, ip, mac, now):
        """Remember where an IPv4 address lives; release packets waiting for it."""
        out = []
        if ip in self.index[3] or mac[0] & 1:
            return out     # never learn a VIP (DR servers send from it) or multicast
        self.hosts[ip] = mac
        for dpid, in_port, data in self.waiting.pop(ip, []):
            if dpid in self.switches:
                out += self.packet_in(dpid, in_port, data, pl.SERVICE, now)
        return out

    def _arp_probe(self, sw, ip):
        frame = pkt.arp_frame(pkt.ARP_REQUEST, pkt.DIRECTOR_MAC, 0, b"\x00" * 6, ip,
                              eth_dst=pkt.BROADCAST)
        return (sw.dpid, packet_out(ofp.OFPP_CONTROLLER,
                                    [parser.OFPActionOutput(ofp.OFPP_FLOOD)], frame))

    def _resolve_servers(self, switches):
        """ARP-probe every NAT/DR real server whose MAC is not known yet."""
        wanted = set()
        for service in self.api.table.services.values():
            for server in service.servers:
                if server.method != "tunnel" and server.address.version == 4:
                    if int(server.address) not in self.hosts:
                        wanted.add(int(server.address))
        return [self._arp_probe(sw, ip) for sw in switches for ip in sorted(wanted)]

    # -- PacketIn ------------------------------------------------------------
    def packet_in(self, dpid, in_port, data, table_id, now):
        """Handle one PacketIn; returns messages."""
        sw = self.switches.get(dpid)
        p = pkt.parse(data)
        if sw is None or p is None:
            return []
        out = self._learn_mac(sw, in_port, p.eth_src)
        if p.eth_type == pkt.ETH_ARP:
            return out + self._arp_in(sw, in_port, data, p, table_id, now)
        if table_id == pl.SERVICE and p.eth_type == pkt.ETH_IP:
            return out + self._service_in(sw, in_port, data, p, now)
        if table_id == pl.REVERSE and p.eth_type == pkt.ETH_IP:
            if (p.ip_src, p.sport, p.ip_dst, p.dport) in sw.ftp_controls:
                return out + self._ftp_from_server(sw, in_port, data, p, now)
            return out + self._conn_out(sw, in_port, data, p, now)
        return out + self._l2_in(sw, in_port, data, p, now)

    def _learn_mac(self, sw, in_port, mac):
        """L2 learning from every PacketIn: where a source MAC lives.

        No flow is installed for the source itself: a flow is installed only
        when the controller forwards a packet to a known destination, so every
        host's first packets still reach the controller and are learned.
        """
        if mac[0] & 1 or in_port > ofp.OFPP_MAX:
            return []
        if sw.macs.get(mac) not in (None, in_port):
            # the host moved: flows that send to the old port must go
            sw.macs[mac] = in_port
            return [(sw.dpid, flow_delete(pl.cookie_mask(pl.KIND_L2), pl.FORWARD,
                                          parser.OFPMatch(eth_dst=pkt.mac_text(mac))))]
        sw.macs[mac] = in_port
        return []

    def _arp_in(self, sw, in_port, data, p, table_id, now):
        out = []
        if p.ip_src:
            out += self._learn_host(p.ip_src, p.arp_sha, now)
        if p.proto == pkt.ARP_REQUEST and p.ip_dst in self.index[3]:
            vmac = pkt.virtual_mac(p.ip_dst)
            reply = pkt.arp_frame(pkt.ARP_REPLY, vmac, p.ip_dst, p.arp_sha, p.ip_src)
            out.append((sw.dpid, packet_out(ofp.OFPP_CONTROLLER,
                                            [parser.OFPActionOutput(in_port)], reply)))
            return out
        if p.eth_dst == pkt.DIRECTOR_MAC:
            return out     # a reply to our probe: learned above, nothing to forward
        return out + self._l2_in(sw, in_port, data, p, now)

    def _l2_in(self, sw, in_port, data, p, now):
        """Learning switch: learn the source, forward or flood the packet."""
        out = []
        if p.eth_type == pkt.ETH_IP and p.ip_src and p.ip_src not in self.hosts:
            out += self._learn_host(p.ip_src, p.eth_src, now)
        port = sw.macs.get(p.eth_dst)
        if port is None:
            out.append((sw.dpid, packet_out(in_port, [parser.OFPActionOutput(ofp.OFPP_FLOOD)],
                                            data)))
        elif port != in_port:
            action = parser.OFPActionOutput(port)
            out.append((sw.dpid, flow_add(
                pl.FORWARD, pl.PRIO_L2,
                parser.OFPMatch(in_port=in_port, eth_dst=pkt.mac_text(p.eth_dst)),
                _actions([action]), pl.Cookie(pl.KIND_L2).value, idle=L2_IDLE)))
            out.append((sw.dpid, packet_out(in_port, [action], data)))
        return out

    def _service_in(self, sw, in_port, data, p, now):
        proto = PROTO_NAMES.get(p.proto)
        if proto is None:
            return []
        key = (proto, p.ip_src, p.sport, p.ip_dst, p.dport)
        conn = sw.conns.get(key)
        if proto == "tcp":
            syn = p.tcp_flags & pl.TCP_SYN
            if (conn is not None and syn and not conn.active and conn.template is None
                    and conn.control is None):
                # client port reused after FIN/RST: a new connection (conn_reuse_mode)
                out = self._end_connection(sw, conn, delete_flows=True)
                return out + self._service_in(sw, in_port, data, p, now)
            if conn is None:
                if not syn or p.tcp_flags & pl.TCP_RST:
                    return []       # IPVS schedules only SYNs; the rest is dropped
                if sw.ftp_expect:
                    out = self._ftp_passive_data(sw, in_port, data, key, now)
                    if out is not None:
                        return out
                return self._schedule(sw, in_port, data, p, key, now)
            out = []
            if syn and conn.state == "LISTEN":
                out += self._ftp_data_started(sw, conn, now)
            if p.tcp_flags & (pl.TCP_FIN | pl.TCP_RST) and conn.active:
                out += self._close(sw, conn, "CLOSE" if p.tcp_flags & pl.TCP_RST else "FIN_WAIT",
                                   now)
            return out + self._forward_packet(sw, conn, in_port, data, now)
        if conn is not None:
            return self._forward_packet(sw, conn, in_port, data, now)
        return self._schedule(sw, in_port, data, p, key, now)

    # -- scheduling ----------------------------------------------------------
    def _schedule(self, sw, in_port, data, p, key, now):
        proto, client, cport, vip, vport = key
        service, via_ftp = self.find_service(proto, vip, vport)
        if service is None or via_ftp and not service.persistent:
            # IPVS schedules a packet that reached a port-21 service through
            # the FTP fallback only for a persistent service (vport != port)
            return []
        if service.ops and proto == "udp":
            # the kernel schedules every packet only for UDP, also under a fwmark
            return self._one_packet(sw, service, in_port, data, p, now)
        template = None
        if service.persistent:
            tkey = self._template_key(service, proto, client, vip, vport, via_ftp)
            template = sw.templates.get(tkey)
            if template is not None and not self._template_usable(service, template):
                template = None      # invalidated: a fresh template replaces it
            server = template.server if template else self._pick(service, p)
        else:
            server = self._pick(service, p)
        if server is None:
            LOG.warning("%s: %s - no destination available", service.scheduler, service.key)
            return []
        unready = self._unready(sw, server, in_port, data)
        if unready is not None:
            return unready
        sid = self.service_id(service.key)
        rid = self.server_id(service.key, server)
        out = []
        if service.persistent:
            if template is None:
                template, msgs = self._new_template(sw, service, server, rid, tkey, now)
                out += msgs
            else:
                out += self._arm_template(sw, service, template, service.timeout, now)
        dport = _forwarded_port(service, server, vport)
        conn = self._new_connection(sw, service, server, rid, key, dport, template, now)
        out += self._connection_flows(sw, conn, sid)
        out += self._forward_packet(sw, conn, in_port, data, now)
        return out

    def _pick(self, service, p):
        servers = service.sched_list
        return self.scheduler(service).schedule(
            servers, SchedKey(ipaddress.IPv4Address(p.ip_src), p.sport,
                              ipaddress.IPv4Address(p.ip_dst), p.dport))

    def _one_packet(self, sw, service, in_port, data, p, now):
        server = self._pick(service, p)
        if server is None:
            return []
        unready = self._unready(sw, server, in_port, data)
        if unready is not None:
            return unready
        server.stats.conns += 1
        service.stats.conns += 1
        actions = self._packet_actions(sw, server, "udp",
                                       _forwarded_port(service, server, p.dport))
        return [(sw.dpid, packet_out(in_port, actions, data))]

    def _unready(self, sw, server, in_port, data):
        """None when the switch can reach ``server`` now; else what to send
        instead (an ARP probe while the packet waits for the server's MAC)."""
        if server.method == "tunnel":
            if sw.tunnel_port is None:
                LOG.error("switch %016x has no vxlan port for tunnel server %s", sw.dpid,
                          server.address)
                return []
            return None
        if int(server.address) not in self.hosts:
            return self._wait_for_mac(sw, server, in_port, data)
        return None

    def _wait_for_mac(self, sw, server, in_port, data):
        ip = int(server.address)
        queue = self.waiting.setdefault(ip, [])
        if len(queue) < ARP_QUEUE_LIMIT:
            queue.append((sw.dpid, in_port, data))
        return [self._arp_probe(sw, ip)] if len(queue) == 1 else []

    def _template_key(self, service, proto, client, vip, vport, via_ftp):
        snet = client & service.netmask
        key = service.key
        if key.is_fwmark:
            return ("IP", snet, key.fwmark, 0)
        if via_ftp or key.port in (0, FTP_CONTROL):
            return (proto, snet, vip, 0)
        return (proto, snet, vip, vport)

    def _template_usable(self, service, template):
        server = service.find_server(template.server.address, template.server.port)
        if server is not template.server:
            return False             # deleted (or deleted and added again)
        if server.weight == 0 and self.api.settings["expire_quiescent_template"]:
            return False
        return True

    def _template_matches(self, service, tkey):
        proto, snet, vip_or_mark, vport = tkey
        mask = pkt.ip_text(service.netmask)
        src = (pkt.ip_text(snet), mask) if service.netmask != 0xFFFFFFFF else pkt.ip_text(snet)
        if service.key.is_fwmark:
            matches = []
            for m in self.api.table.marks[service.key.fwmark].matches:
                for value, pmask in port_masks(m.port_min, m.port_max):
                    fields = dict(eth_type=pkt.ETH_IP, ip_proto=PROTO_NUMBERS[m.protocol],
                                  ipv4_src=src, ipv4_dst=str(m.address))
                    if pmask:
                        fields[f"{m.protocol}_dst"] = (value, pmask) if pmask != 0xFFFF else value
                    matches.append(fields)
            return matches
        fields = dict(eth_type=pkt.ETH_IP, ip_proto=PROTO_NUMBERS[proto], ipv4_src=src,
                      ipv4_dst=pkt.ip_text(vip_or_mark))
        if vport:
            fields[f"{proto}_dst"] = vport
        return [fields]

    def _new_template(self, sw, service, server, rid, tkey, now):
        out = []
        old = sw.templates.get(tkey)
        if old is not None:            # invalidated template: forget it
            self._forget_template(sw, old)
            out += self._delete_template_reverse(sw, service, old)
        template = Template(tkey, service.key, server, rid,
                            self._template_matches(service, tkey), now, now)
        sw.templates[tkey] = template
        server.persistconns += 1
        out += self._arm_template(sw, service, template, service.timeout, now)
        if server.method == "masq":
            out += self._template_reverse(sw, service, template)
        return template, out

    def _arm_template(self, sw, service, template, timeout, now):
        """(Re-)install the template's flows: its timer starts again."""
        template.armed_at = now
        template.expires_at = now + timeout
        template.expiring = False
        sid = self.service_id(service.key)
        cookie = pl.Cookie(pl.KIND_TEMPLATE, sid, template.server_id).value
        out = []
        for fields in template.matches:
            proto = "tcp" if fields["ip_proto"] == pkt.PROTO_TCP else "udp"
            # a template for one port rewrites it; an all-ports one keeps it
            port = (template.server.port if isinstance(fields.get(f"{proto}_dst"), int)
                    and template.server.port else None)
            actions = self._forward_actions(sw, template.server, proto, port)
            out.append((sw.dpid, flow_add(pl.SERVICE, pl.PRIO_TEMPLATE,
                                          parser.OFPMatch(**fields),
                                          _goto(actions, template.server),
                                          cookie, idle=timeout, notify=True)))
        return out

    def _template_reverse(self, sw, service, template):
        """NAT: a connection the server opens to a template client comes to
        the controller (IPVS conn_out); nothing else of the server's is touched."""
        sid = self.service_id(service.key)
        cookie = pl.Cookie(pl.KIND_REVERSE_TEMPLATE, sid, template.server_id).value
        return [(sw.dpid, flow_add(pl.REVERSE, pl.PRIO_TEMPLATE, parser.OFPMatch(**fields),
                                   _actions(to_controller()), cookie))
                for fields in self._template_reverse_matches(service, template)]

    def _template_reverse_matches(self, service, template):
        server = template.server
        result = []
        for fields in template.matches:
            proto = "tcp" if fields["ip_proto"] == pkt.PROTO_TCP else "udp"
            rev = dict(eth_type=pkt.ETH_IP, ip_proto=fields["ip_proto"],
                       ipv4_src=str(server.address), ipv4_dst=fields["ipv4_src"])
            if isinstance(fields.get(f"{proto}_dst"), int) and server.port:
                rev[f"{proto}_src"] = server.port
            if proto == "tcp":      # a new connection: SYN without ACK
                rev["tcp_flags"] = (pl.TCP_SYN, pl.TCP_SYN | pl.TCP_ACK)
            result.append(rev)
        return result

    def _delete_template_reverse(self, sw, service, template):
        if template.server.method != "masq":
            return []
        sid = self.service_id(service.key)
        cm = pl.cookie_mask(pl.KIND_REVERSE_TEMPLATE, sid, template.server_id)
        return [(sw.dpid, flow_delete(cm, pl.REVERSE, parser.OFPMatch(**fields),
                                      pl.PRIO_TEMPLATE))
                for fields in self._template_reverse_matches(service, template)]

    # -- connections ---------------------------------------------------------
    def _protocol_timeout(self, proto):
        """The --set timeout of a new connection: tcp (ESTABLISHED) or udp."""
        return self.api.table.timeouts["tcp" if proto == "tcp" else "udp"]

    def _new_connection(self, sw, service, server, rid, key, dport, template, now):
        proto = key[0]
        timeout = self._protocol_timeout(proto)
        conn = Connection(key, service.key, server, rid, dport,
                          "SYN_RECV" if proto == "tcp" else "UDP", proto == "tcp",
                          now + timeout, template)
        sw.conns[key] = conn
        self._bind(conn)
        if proto == "tcp" and key[4] == FTP_CONTROL and server.method == "masq":
            self._ftp_watch(sw, conn)
        if template is not None:
            template.n_control += 1
        service.stats.conns += 1
        server.stats.conns += 1
        return conn

    def _bind(self, conn):
        server = conn.server
        if conn.active:
            server.activeconns += 1
        else:
            server.inactconns += 1
        if server.u_threshold and server.activeconns + server.inactconns >= server.u_threshold:
            server.overloaded = True

    def _unbind(self, conn):
        server = conn.server
        if conn.active:
            server.activeconns -= 1
        else:
            server.inactconns -= 1
        if server.overloaded:
            total = server.activeconns + server.inactconns
            if server.l_threshold:
                if total < server.l_threshold:
                    server.overloaded = False
            elif total * 4 < server.u_threshold * 3:
                server.overloaded = False

    @staticmethod
    def _conn_match(conn):
        proto, client, cport, vip, vport = conn.key
        return pl.five_tuple_match(proto, client, cport, vip, vport)

    @staticmethod
    def _reverse_match(conn):
        proto, client, cport, _, _ = conn.key
        return pl.five_tuple_match(proto, int(conn.server.address), conn.dport, client, cport)

    def _cached(self, key, build):
        """Messages parts that depend only on ``key`` are built (and encoded) once."""
        value = self._parts.get(key)
        if value is None:
            if len(self._parts) > PARTS_CACHE_LIMIT:
                self._parts.clear()
            value = self._parts[key] = [pl.frozen(part) for part in build()]
        return value

    def _server_key(self, sw, server, proto, dport):
        return (sw.dpid, server.address, server.method, proto, dport,
                self.hosts.get(int(server.address)), sw.tunnel_port)

    def _conn_flow(self, sw, conn, sid, timeout):
        server, proto = conn.server, conn.key[0]
        if conn.ftp is not None:
            # an FTP control connection: all its packets go through the controller
            inst = self._cached(("punt",), lambda: _actions(to_controller()))
        else:
            inst = self._cached(("conn",) + self._server_key(sw, server, proto, conn.dport),
                                lambda: _goto(self._forward_actions(sw, server, proto,
                                                                    conn.dport), server))
        cookie = pl.Cookie(pl.KIND_CONN, sid, conn.server_id).value
        return (sw.dpid, flow_add(pl.SERVICE, pl.PRIO_CONN, self._conn_match(conn), inst,
                                  cookie, idle=timeout, notify=True))

    def _connection_flows(self, sw, conn, sid, timeout=None):
        if timeout is None:
            timeout = self._protocol_timeout(conn.key[0])
        out = [self._conn_flow(sw, conn, sid, timeout)]
        if conn.server.method == "masq":
            proto, _, _, vip, vport = conn.key
            if conn.ftp is not None:
                inst = self._cached(("punt",), lambda: _actions(to_controller()))
            else:
                inst = self._cached(("reverse", vip, proto, vport),
                                    lambda: _actions_then_forward(self._reverse_actions(conn)))
            cookie = pl.Cookie(pl.KIND_REVERSE, sid, conn.server_id).value
            out.append((sw.dpid, flow_add(pl.REVERSE, pl.PRIO_CONN, self._reverse_match(conn),
                                          inst, cookie)))
        return out

    def _forward_actions(self, sw, server, proto, dport):
        """Actions that carry a client packet to ``server`` (then FORWARD or tunnel).

        NAT rewrites the destination to the server (and ``dport`` unless it is
        None: port-0 and fwmark templates keep each packet's own port).
        """
        actions = []
        if server.method == "tunnel":
            actions.append(parser.OFPActionSetField(tun_ipv4_dst=str(server.address)))
            actions.append(parser.OFPActionOutput(sw.tunnel_port or ofp.OFPP_ANY))
            return actions
        mac = self.hosts.get(int(server.address))
        if mac is not None:
            actions.append(parser.OFPActionSetField(eth_dst=pkt.mac_text(mac)))
        if server.method == "masq":
            actions.append(parser.OFPActionSetField(ipv4_dst=str(server.address)))
            if dport is not None:
                actions.append(parser.OFPActionSetField(**{f"{proto}_dst": dport}))
        return actions

    def _conn_out(self, sw, in_port, data, p, now):
        """IPVS conn_out: a NAT real server opens a connection to a client whose
        template points at it (active FTP from port 20, for one).  It becomes an
        ordinary connection of the template's service, seen from the VIP."""
        proto = PROTO_NAMES.get(p.proto)
        if proto is None or proto == "tcp" and (
                p.tcp_flags & (pl.TCP_SYN | pl.TCP_ACK)) != pl.TCP_SYN:
            return []
        for template in sw.templates.values():
            server = template.server
            tproto, snet, vip, vport = template.key
            if (template.expiring or tproto != proto or server.method != "masq"
                    or int(server.address) != p.ip_src):
                continue
            service = self.api.table.services.get(template.service)
            if service is None or p.ip_dst & service.netmask != snet:
                continue
            if vport and server.port and p.sport != server.port:
                continue
            key = (proto, p.ip_dst, p.dport, vip, vport or p.sport)
            if key in sw.conns:
                return []
            conn = self._new_connection(sw, service, server, template.server_id, key,
                                        p.sport, template, now)
            out = self._connection_flows(sw, conn, self.service_id(service.key))
            actions = self._reverse_actions(conn) + [parser.OFPActionOutput(ofp.OFPP_TABLE)]
            return out + [(sw.dpid, packet_out(in_port, actions, data))]
        return []

    @staticmethod
    def _reverse_actions(conn):
        """NAT: a server->client packet of ``conn`` leaves as VIP:vport."""
        proto, _, _, vip, vport = conn.key
        return [parser.OFPActionSetField(ipv4_src=pkt.ip_text(vip)),
                parser.OFPActionSetField(**{f"{proto}_src": vport}),
                parser.OFPActionSetField(eth_src=pkt.mac_text(pkt.virtual_mac(vip)))]

    def _forward_packet(self, sw, conn, in_port, data, now):
        if conn.nodest:
            return []
        out = []
        if conn.ftp is not None:
            data, out = self._ftp_from_client(sw, conn, data, now)
        actions = self._packet_actions(sw, conn.server, conn.key[0], conn.dport)
        return out + [(sw.dpid, packet_out(in_port, actions, data))]

    def _packet_actions(self, sw, server, proto, dport):
        """PacketOut actions that carry one client packet to ``server``."""
        def build():
            actions = self._forward_actions(sw, server, proto, dport)
            if server.method != "tunnel":
                # rewritten, the packet no longer matches the VIP: the
                # pipeline takes it to FORWARD (L2) from table 0
                actions.append(parser.OFPActionOutput(ofp.OFPP_TABLE))
            return actions
        return self._cached(("out",) + self._server_key(sw, server, proto, dport), build)

    def _close(self, sw, conn, state, now):
        """FIN or RST from the client: the connection becomes inactive."""
        self._unbind(conn)
        conn.state, conn.active = state, False
        self._bind(conn)
        timeout = self.api.table.timeouts["tcpfin"] if state == "FIN_WAIT" else 10
        conn.expires_at = now + timeout
        if conn.nodest:
            return []
        return [self._conn_flow(sw, conn, self.service_id(conn.service), timeout)]

    def _end_connection(self, sw, conn, delete_flows=False):
        out = []
        sw.conns.pop(conn.key, None)
        self._unbind(conn)
        if conn.ftp is not None:
            self._ftp_forget(sw, conn)
        sid = self.service_id(conn.service)
        if delete_flows:
            cm = pl.cookie_mask(pl.KIND_CONN, sid, conn.server_id)
            out.append((sw.dpid, flow_delete(cm, pl.SERVICE, self._conn_match(conn),
                                             pl.PRIO_CONN)))
        if conn.server.method == "masq":
            cm = pl.cookie_mask(pl.KIND_REVERSE, sid, conn.server_id)
            out.append((sw.dpid, flow_delete(cm, pl.REVERSE, self._reverse_match(conn),
                                             pl.PRIO_CONN)))
        template = conn.template
        if template is not None:
            template.n_control -= 1
            if template.expiring and template.n_control <= 0:
                out += self._drop_template(sw, template)
        return out

    # -- FlowRemoved ---------------------------------------------------------
    def flow_removed(self, dpid, cookie, match, duration, now, reason=ofp.OFPRR_IDLE_TIMEOUT):
        """A connection or template flow timed out in the switch."""
        sw = self.switches.get(dpid)
        parsed = pl.Cookie.parse(cookie)
        if sw is None or parsed is None or reason == ofp.OFPRR_DELETE:
            # every delete is the director's own, and its state was updated
            # when it sent it; the report may even name a newer flow with
            # the same match (a client port reused after FIN)
            return []
        mkey = _match_key(match)
        if parsed.kind == pl.KIND_CONN:
            conn = self._conn_by_match(sw, mkey)
            if conn is None:
                return []
            if conn.ftp is not None and not conn.nodest and self._ftp_controls_data(sw, conn):
                # IPVS keeps a control connection while it controls data
                # connections (expire_later): its flow is put back for 60 s
                conn.expires_at = now + EXPIRE_LATER
                return [self._conn_flow(sw, conn, self.service_id(conn.service), EXPIRE_LATER)]
            return self._end_connection(sw, conn)
        if parsed.kind == pl.KIND_TEMPLATE:
            template = self._template_by_match(sw, mkey)
            if template is None or template.expiring:
                return []
            if now - duration < template.armed_at - 0.5:
                return []        # a flow replaced since: the template was re-armed
            if template.n_control > 0:
                service = self.api.table.services.get(template.service)
                if service is not None:
                    # IPVS expire_later: keep it while it controls connections
                    return self._arm_template(sw, service, template, EXPIRE_LATER, now)
            return self._drop_template(sw, template)
        return []

    def _conn_by_match(self, sw, mkey):
        fields = dict(mkey)
        proto = "tcp" if fields.get("ip_proto") == pkt.PROTO_TCP else "udp"
        try:
            key = (proto, int(ipaddress.IPv4Address(fields["ipv4_src"])),
                   fields[f"{proto}_src"], int(ipaddress.IPv4Address(fields["ipv4_dst"])),
                   fields[f"{proto}_dst"])
        except (KeyError, ValueError):
            return None
        return sw.conns.get(key)

    def _template_by_match(self, sw, mkey):
        """The template one of whose flows has match ``mkey``.

        Its key follows from the match (see _template_key): client network,
        VIP and port, or for a fwmark template the mark whose range holds it.
        """
        fields = dict(mkey)
        proto = "tcp" if fields.get("ip_proto") == pkt.PROTO_TCP else "udp"
        src = fields.get("ipv4_src")
        port = fields.get(f"{proto}_dst")
        try:
            snet = int(ipaddress.IPv4Address(src[0] if isinstance(src, tuple) else src))
            vip = int(ipaddress.IPv4Address(fields["ipv4_dst"]))
        except (KeyError, TypeError, ValueError):
            return None
        keys = [(proto, snet, vip, port if isinstance(port, int) else 0)]
        first_port = port[0] if isinstance(port, tuple) else port
        for match, service in self.index[2]:
            if (match.protocol == proto and int(match.address) == vip
                    and (first_port is None or match.port_min <= first_port <= match.port_max)):
                keys.append(("IP", snet, service.key.fwmark, 0))
        for key in keys:
            template = sw.templates.get(key)
            if template is not None and any(_match_key(parser.OFPMatch(**f)) == mkey
                                            for f in template.matches):
                return template
        return None

    @staticmethod
    def _forget_template(sw, template):
        """The template no longer decides anything (it may still wait for its
        connections to end): out of the switch's table and PersistConn."""
        template.expiring = True
        if sw.templates.get(template.key) is template:
            del sw.templates[template.key]
            template.server.persistconns -= 1

    def _drop_template(self, sw, template):
        self._forget_template(sw, template)
        service = self.api.table.services.get(template.service)
        if service is None:
            return []
        return self._delete_template_reverse(sw, service, template)

    # -- table changes ---------------------------------------------------------
    def table_changed(self, change, now):
        """The service table changed (REST/CLI/rules file): adjust every switch."""
        self._index = None
        self._parts.clear()
        out = []
        kind = change.kind
        if kind == "table-replaced":
            for sw in self.switches.values():
                out.append((sw.dpid, flow_delete(pl.cookie_mask(pl.KIND_CONN))))
                for k in (pl.KIND_TEMPLATE, pl.KIND_REVERSE, pl.KIND_REVERSE_TEMPLATE):
                    out.append((sw.dpid, flow_delete(pl.cookie_mask(k))))
                sw.conns.clear()
                sw.templates.clear()
            self.schedulers.clear()
        elif kind == "service-deleted":
            sid = self.service_id(change.key)
            for sw in self.switches.values():
                out.append((sw.dpid, flow_delete(pl.cookie_mask(service=sid))))
                for ckey, conn in list(sw.conns.items()):
                    if conn.service == change.key:
                        del sw.conns[ckey]
                for tkey, template in list(sw.templates.items()):
                    if template.service == change.key:
                        del sw.templates[tkey]
            self.schedulers.pop(change.key, None)
        elif kind == "service-edited":
            service = self.api.table.services[change.key]
            sid = self.service_id(change.key)
            for sw in self.switches.values():
                # new persistence settings: old templates no longer apply
                for tkey, template in list(sw.templates.items()):
                    if template.service == change.key and (
                            not service.persistent
                            or template.matches != self._template_matches(service, tkey)):
                        out += self._retire_template(sw, template, sid)
        elif kind == "server-deleted":
            out += self._server_deleted(change.key, change.server)
        elif kind == "server-added":
            out += self._server_added(change.key, change.server, now)
        elif kind in ("server-edited",):
            pass      # schedulers re-read weights; existing connections keep going
        for sw in self.switches.values():
            out += self._sync_vips(sw)
            self._ftp_prune(sw)
        if kind in ("server-added", "table-replaced"):
            out += self._resolve_servers(list(self.switches.values()))
        return out

    def _retire_template(self, sw, template, sid):
        out = [(sw.dpid, flow_delete(
            pl.cookie_mask(pl.KIND_TEMPLATE, sid, template.server_id),
            pl.SERVICE, parser.OFPMatch(**fields), pl.PRIO_TEMPLATE))
            for fields in template.matches]
        if template.n_control <= 0:
            out += self._drop_template(sw, template)
        else:
            self._forget_template(sw, template)
        return out

    def _server_deleted(self, key, server):
        sid = self.service_id(key)
        rid = self.server_id(key, server)
        out = []
        nodest_expire = self.api.settings["expire_nodest_conn"]
        for sw in self.switches.values():
            for k in (pl.KIND_TEMPLATE, pl.KIND_REVERSE_TEMPLATE):
                out.append((sw.dpid, flow_delete(pl.cookie_mask(k, sid, rid))))
            for tkey, template in list(sw.templates.items()):
                if template.server is server:
                    del sw.templates[tkey]
                    template.expiring = True
            conns = [c for c in sw.conns.values() if c.server is server]
            if nodest_expire:
                # expire_nodest_conn=1: the connections end now
                for k in (pl.KIND_CONN, pl.KIND_REVERSE):
                    out.append((sw.dpid, flow_delete(pl.cookie_mask(k, sid, rid))))
                for conn in conns:
                    sw.conns.pop(conn.key, None)
            else:
                # IPVS default: packets of its connections are dropped until the
                # entries time out; re-adding the server lets them continue
                out.append((sw.dpid, flow_modify(pl.cookie_mask(pl.KIND_CONN, sid, rid),
                                                 pl.SERVICE, [])))
                for conn in conns:
                    conn.nodest = True
        return out

    def _server_added(self, key, server, now):
        """A server added again revives its dropped connections (IPVS's dest trash)."""
        out = []
        sid = self.service_id(key)
        for sw in self.switches.values():
            revived = [c for c in sw.conns.values()
                       if c.nodest and c.service == key and c.server.address == server.address
                       and c.server.port == server.port]
            for conn in revived:
                self._unbind(conn)
                conn.server, conn.nodest = server, False
                self._bind(conn)
            for conn in revived:
                # per connection: the forwarded port may differ (port-0 services)
                out.append(self._conn_flow(sw, conn, sid, max(1, int(conn.expires_at - now))))
        return out

    # -- FTP helper (IPVS ip_vs_ftp) ---------------------------------------------
    # A NAT connection to virtual port 21 is an FTP control connection.  Its
    # SERVICE and REVERSE connection flows keep their usual place, cookies and
    # timeouts, but send its packets to the controller; the controller
    # forwards each one itself (PacketOut with the NAT rewrite as set_field
    # actions) after ftp.FtpControl has read it and, for a 227 reply or once
    # sequence numbers are shifted, rewritten its bytes.  The data connections
    # it announces are ordinary connections in the switch, controlled by it.

    def _ftp_watch(self, sw, conn):
        conn.ftp = ftp.FtpControl()
        sw.ftp_controls[self._ftp_reverse_key(conn)] = conn

    @staticmethod
    def _ftp_reverse_key(conn):
        _, client, cport, _, _ = conn.key
        return (int(conn.server.address), conn.dport, client, cport)

    def _ftp_from_client(self, sw, conn, data, now):
        """A client->server packet of a control connection: (data to send, messages)."""
        data, port = conn.ftp.from_client(data)
        if port is None:
            return data, []
        addr, data_port = port
        if addr != conn.key[1]:
            # IPVS would let the real server connect to any host from VIP:20
            LOG.info("ftp: %s PORT names %s, not the client: ignored", pkt.ip_text(conn.key[1]),
                     pkt.ip_text(addr))
            return data, []
        return data, self._ftp_active_data(sw, conn, data_port, now)

    def _ftp_active_data(self, sw, ctl, port, now):
        """PORT/EPRT: the real server will connect from its control port - 1 (20)
        to client:port.  As in IPVS the connection exists before its first
        packet (state LISTEN), so its flows are in place for the server's SYN,
        which arrives on the REVERSE side and never reaches the controller."""
        _, client, _, vip, vport = ctl.key
        if ctl.dport < 2:
            return []
        key = ("tcp", client, port, vip, vport - 1)
        out = []
        old = sw.conns.get(key)
        if old is not None:
            # its SERVICE flow is replaced below (an ADD, so no FlowRemoved)
            out += self._end_connection(sw, old)
        conn = Connection(key, ctl.service, ctl.server, ctl.server_id, ctl.dport - 1,
                          "LISTEN", False, now + ftp.LISTEN_TIMEOUT, control=ctl)
        sw.conns[key] = conn
        self._bind(conn)
        return out + self._connection_flows(sw, conn, self.service_id(ctl.service),
                                            ftp.LISTEN_TIMEOUT)

    def _ftp_data_started(self, sw, conn, now):
        """The first SYN of a data connection waiting in LISTEN (the client's
        SYN+ACK in active mode): it becomes active and gets the TCP timeout."""
        self._unbind(conn)
        conn.state, conn.active = "SYN_RECV", True
        self._bind(conn)
        timeout = self.api.table.timeouts["tcp"]
        conn.expires_at = now + timeout
        if conn.nodest:
            return []
        return [self._conn_flow(sw, conn, self.service_id(conn.service), timeout)]

    def _ftp_passive_data(self, sw, in_port, data, key, now):
        """A client SYN to a VIP:port that a 227/229 reply announced: the data
        connection goes to the control connection's real server, same port.
        None when no such announcement is pending."""
        _, client, _, vip, vport = key
        expected = sw.ftp_expect.pop((client, vip, vport), None)
        if expected is None:
            return None
        ctl = expected.control
        if expected.expires_at < now or sw.conns.get(ctl.key) is not ctl or ctl.nodest:
            return None
        timeout = self.api.table.timeouts["tcp"]
        conn = Connection(key, ctl.service, ctl.server, ctl.server_id, expected.port,
                          "SYN_RECV", True, now + timeout, control=ctl)
        sw.conns[key] = conn
        self._bind(conn)
        out = self._connection_flows(sw, conn, self.service_id(ctl.service), timeout)
        return out + self._forward_packet(sw, conn, in_port, data, now)

    def _ftp_from_server(self, sw, in_port, data, p, now):
        """A server->client packet of a control connection (from REVERSE)."""
        conn = sw.ftp_controls.get((p.ip_src, p.sport, p.ip_dst, p.dport))
        if conn is None or conn.nodest or sw.conns.get(conn.key) is not conn:
            return []
        _, client, _, vip, vport = conn.key
        data, passive = conn.ftp.from_server(data, vip)
        if passive is not None:
            for key in [k for k, e in sw.ftp_expect.items() if e.expires_at < now]:
                del sw.ftp_expect[key]
            port = passive[1]
            sw.ftp_expect[(client, vip, port)] = FtpExpectation(
                conn, port, now + ftp.LISTEN_TIMEOUT)
        actions = self._cached(("ftp-out", vip, vport), lambda: self._reverse_actions(conn) + [
            parser.OFPActionOutput(ofp.OFPP_TABLE)])
        return [(sw.dpid, packet_out(in_port, actions, data))]

    def _ftp_controls_data(self, sw, conn):
        return any(c.control is conn for c in sw.conns.values())

    def _ftp_forget(self, sw, conn):
        """A control connection ended: its helper state and announcements go."""
        rkey = self._ftp_reverse_key(conn)
        if sw.ftp_controls.get(rkey) is conn:
            del sw.ftp_controls[rkey]
        for key in [k for k, e in sw.ftp_expect.items() if e.control is conn]:
            del sw.ftp_expect[key]

    @staticmethod
    def _ftp_prune(sw):
        """After a table change: forget the helper state of connections that are gone."""
        for rkey in [k for k, c in sw.ftp_controls.items() if sw.conns.get(c.key) is not c]:
            del sw.ftp_controls[rkey]
        for key in [k for k, e in sw.ftp_expect.items()
                    if sw.conns.get(e.control.key) is not e.control]:
            del sw.ftp_expect[key]

    @staticmethod
    def _ftp_expectation_rows(sw, now):
        """Pending passive data connections, as IPVS lists them (client port 0, LISTEN)."""
        rows = []
        for (client, vip, vport), expected in sw.ftp_expect.items():
            if expected.expires_at > now:
                rows.append({"protocol": "TCP", "expire": int(expected.expires_at - now),
                             "state": "LISTEN", "client": pkt.ip_text(client), "cport": 0,
                             "vip": pkt.ip_text(vip), "vport": vport,
                             "server": str(expected.control.server.address),
                             "dport": expected.port, "pe_name": "", "pe_data": "",
                             "switch": sw.dpid})
        return rows

    # -- listing ---------------------------------------------------------------
    def connections(self, now):
        """Live connections and templates in ``ipvsadm -L -c`` terms."""
        rows = []
        for sw in self.switches.values():
            for conn in sw.conns.values():
                proto, client, cport, vip, vport = conn.key
                rows.append({"protocol": proto.upper(), "expire": max(0, int(conn.expires_at - now)),
                             "state": conn.state if not conn.nodest else "CLOSE",
                             "client": pkt.ip_text(client), "cport": cport, "vip": pkt.ip_text(vip),
                             "vport": vport, "server": str(conn.server.address),
                             "dport": conn.dport, "pe_name": "", "pe_data": "",
                             "switch": sw.dpid})
            for template in sw.templates.values():
                proto, snet, vip_or_mark, vport = template.key
                vip = pkt.ip_text(vip_or_mark)
                rows.append({"protocol": proto.upper(),
                             "expire": max(0, int(template.expires_at - now)),
                             # IPVS marks a template ASSURED when a connection it
                             # controls is ESTABLISHED, which the switch never tells
                             "state": "NONE",
                             "client": pkt.ip_text(snet), "cport": 0, "vip": vip, "vport": vport,
                             "server": str(template.server.address),
                             "dport": template.server.port if vport else 0,
                             "pe_name": "", "pe_data": "", "switch": sw.dpid,
                             "template": True, "n_control": template.n_control})
            rows += self._ftp_expectation_rows(sw, now)
        return rows


def _forwarded_port(service, server, vport):
    """The port a connection reaches on its server: the server's port for the
    service port, else the packet's own (port-0, fwmark and FTP-data)."""
    return server.port if vport == service.key.port and server.port else vport


def _goto(actions, server):
    """Instructions for a client->server flow: rewrite, then FORWARD or tunnel out."""
    if server.method == "tunnel":
        return _actions(actions)
    return [parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, actions),
            parser.OFPInstructionGotoTable(pl.FORWARD)] if actions else \
        [parser.OFPInstructionGotoTable(pl.FORWARD)]


def _actions_then_forward(actions):
    return [parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, actions),
            parser.OFPInstructionGotoTable(pl.FORWARD)]


def port_masks(lo, hi):
    """Cover the port range lo..hi with (value, mask) prefixes; (0, 0) = any port."""
    if (lo, hi) == (0, 65535):
        return [(0, 0)]
    out = []
    while lo <= hi:
        size = lo & -lo if lo else 1 << 16
        while size > hi - lo + 1:
            size >>= 1
        out.append((lo, 0xFFFF & ~(size - 1)))
        lo += size
    return out
