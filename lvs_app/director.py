"""Director logic: the LinuxDirector's decisions on PacketIn and FlowRemoved.

Pure logic: handlers take plain data and ``now`` (seconds) and return a list
of ``(dpid, message)`` pairs; nothing here sends, sleeps or reads a clock.
The parts it decides with each live in their own module: service lookup
(services), connections and templates (conntable, persistence), runtime
counters (state), forwarding methods (forwarding, flows), hosts (hosts), the
FTP helper (ftpconn); changes to the service table are handled by
:mod:`lvs_app.reconfig`.

How the IPVS tables map onto flows (see pipeline.py for the table layout):

* a connection is one exact 5-tuple flow in SERVICE (plus its reverse flow in
  REVERSE for NAT) with idle_timeout = the protocol timeout; its FlowRemoved
  ends the connection and updates ActiveConn/InActConn;
* TCP SYN, FIN and RST to a VIP come to the controller: SYN schedules, FIN
  and RST move the connection to FIN_WAIT/CLOSE (inactive) and shorten its
  flow to the tcpfin timeout -- IPVS's INPUT_ONLY state table, as seen from
  the client side;
* a persistence template is a client-wildcard flow (see persistence.py);
* a NAT connection to virtual port 21 is an FTP control connection whose
  packets pass through the controller (see ftpconn.py).
"""

import collections
import ipaddress
import logging

from lvs_app import ids as idmod
from lvs_app import ofmsg
from lvs_app import packet as pkt
from lvs_app import pipeline as pl
from lvs_app.conntable import EXPIRE_LATER, Connection, ConnectionTable, conn_key
from lvs_app.fabricfwd import FabricForwarding
from lvs_app.flows import Flows
from lvs_app.forwarding import method_of
from lvs_app.ftp import LISTEN_TIMEOUT
from lvs_app.fragments import Fragments
from lvs_app.ftpconn import FtpTracker
from lvs_app.hosts import Hosts
from lvs_app.lifecycle import Lifecycle
from lvs_app.limits import Limits
from lvs_app.model import FTP_CONTROL
from lvs_app.persistence import Templates
from lvs_app.recovery import Recovery, flow_stats_request, meter_config_request
from lvs_app.schedulers import SchedKey
from lvs_app.services import ServiceIndex
from lvs_app.sweep import Sweep
from lvs_app.topology import Fabric
from lvs_app.vips import VipFlows
from lvs_app.state import RuntimeState

LOG = logging.getLogger(__name__)

PROTO_NAMES = {pkt.PROTO_TCP: "tcp", pkt.PROTO_UDP: "udp"}
STALE_SLACK = 0.02      # s: a FlowRemoved's flow older than this before its entry's newest is stale
CLASSIFY, SERVICE = pl.TABLES[pl.CLASSIFY], pl.TABLES[pl.SERVICE]

# What became of a PacketIn: ``Director.outcome`` after ``packet_in`` (an
# index into OUTCOMES; /metrics counts them per table):
# scheduled  a new connection (or a one-packet datagram) was given a real
#            server: by the scheduler, a template, an FTP control connection
#            or a NAT server's own connection under a template (conn_out);
# forwarded  a packet of a connection or template the director holds, sent on;
# answered   an ARP request or Neighbor Solicitation for a VIP (or for the
#            health checks' address) answered by the controller;
# switched   forwarded or flooded as a learning switch would (not for a VIP);
# queued     held until a real server's MAC address is known;
# consumed   for the controller itself: the answer to its own ARP/ND probe, a
#            health-check reply, link discovery (LLDP);
# dropped    refused; the reason is counted in Director.dropped (see
#            DROP_REASONS).
OUTCOMES = ("scheduled", "forwarded", "answered", "switched", "queued", "consumed", "dropped")
SCHEDULED, FORWARDED, ANSWERED, SWITCHED, QUEUED, CONSUMED, DROPPED = range(len(OUTCOMES))
# Why packets were dropped (Director.dropped, plus two counted where they
# happen: Fragments.dropped and Limits.counters["refused"]):
DROP_REASONS = (
    "malformed",              # too short, lengths that lie, no switch or port
    "martian",                # a source no connection is made for (loopback, multicast...)
    "unsupported_protocol",   # to a VIP, neither TCP nor UDP
    "no_service",             # to a VIP, no virtual service on that protocol and port
    "no_destination",         # the scheduler found no server (all quiesced or overloaded)
    "no_connection",          # not a SYN and no connection (IPVS drops it too)
    "server_gone",            # a connection whose real server was deleted
    "repeated_syn",           # a NAT server's SYN again before its conn_out flow is in
    "no_tunnel_port",         # a tunnel server and no vxlan port on the switch
    "flood_wait",             # --observe-links: no flooding before the links are known
    "orphan_fragment",        # a later fragment whose first one was not seen
    "table_full",             # --lvs-max-connections reached: the SYN is refused
)


_ETH_IP_BYTES = pkt.ETH_IP.to_bytes(2, "big")


class Director:
    """All switches' director state for one service table.

    ``config`` is the DirectorAPI (read only: ``.table`` and ``.settings``);
    ``ids`` a StableIds; ``runtime`` the RuntimeState that holds counters.
    """

    def __init__(self, config, ids=None, runtime=None, meters=None, max_entries=0):
        self.config = config
        self.ids = ids or idmod.StableIds()
        self.runtime = runtime or RuntimeState()
        self.conns = ConnectionTable()
        self.switches = self.conns.switches
        self.meters = meters or pl.PuntMeters()
        self.hosts = Hosts()
        self.flows = Flows(self.hosts, self.meters)
        self.ftp = FtpTracker()
        self.fragments = Fragments()
        self.vips = VipFlows(config, lambda: self.index, self.meters)
        self.lifecycle = Lifecycle(config, self.conns, self.flows)
        self.limits = Limits(self.conns, max_entries)
        self.recovery = Recovery(self)
        self.sweep = Sweep(self)
        self.templates = Templates(config, self.ids, self.conns, self.flows, lambda: self.index)
        self._index = None
        self.dropped = collections.Counter()   # frames refused, by reason (DROP_REASONS)
        self.outcome = FORWARDED     # what became of the last PacketIn (OUTCOMES)
        # the health checks (lvs_app.health.engine.HealthChecks) own this
        # address: ARP for it is answered, IPv4 to it is theirs
        self.health_source = None   # (an int; its bytes are kept for the replies' early way)
        self.health = None
        self.traffic = None      # lvs_app.stats.TrafficCounters: packets it forwards itself
        self.fabric = Fabric()   # the switches and their links (topology.py)
        self.fabricfwd = FabricForwarding(self.fabric, self.switches)
        self.vips.is_transit = self.fabricfwd.is_transit

    @property
    def health_source(self):
        return self._health_source

    @health_source.setter
    def health_source(self, address):
        self._health_source = address
        self._health_bytes = None if address is None else int(address).to_bytes(4, "big")

    @property
    def index(self):
        """The service lookup index, rebuilt after every table change."""
        if self._index is None:
            self._index = ServiceIndex(self.config.table)
        return self._index

    def table_edited(self):
        """The service table changed: lookups and encoded actions are stale."""
        self._index = None
        self.flows.cache.clear()
        self.lifecycle.table_edited()

    def timeout(self, name):
        return self.config.table.timeouts[name]

    # -- switch lifecycle ------------------------------------------------------------
    def switch_connected(self, dpid, ports, now):
        """A switch connected: ask for its flows; :meth:`recover` goes on from them."""
        self.conns.add_switch(dpid, ports)
        self.fabricfwd.switch_connected(dpid, now)
        asks = [flow_stats_request()] + ([meter_config_request()] if self.meters.pps else [])
        return [(dpid, m) for m in asks]

    def recover(self, dpid, flows, now, meters=()):
        """The switch's flows (and meter ids), read back: rebuild its state and
        reconcile it with the service table (see recovery.py)."""
        sw = self.switches.get(dpid)
        if sw is None:
            return []
        return self.recovery.recover(sw, flows, now, meters)

    def switch_disconnected(self, dpid):
        self.conns.remove_switch(dpid)
        self.hosts.forget_switch(dpid)
        self.fragments.forget_switch(dpid)
        was_fabric = self.fabric.active
        self.fabricfwd.switch_gone(dpid)
        return self._fabric_changed() if was_fabric else []

    # -- the fabric ----------------------------------------------------------------------
    def link_changed(self, src, src_port, dst, dst_port, up, now):
        """LLDP discovery found or lost a link (one direction of it)."""
        if up:
            changed = self.fabric.add_link(src, src_port, dst, dst_port)
        else:
            changed = self.fabric.remove_link(src, src_port, dst, dst_port)
        return self._fabric_changed() if changed else []

    def _fabric_changed(self):
        active = self.fabric.active
        self.hosts.flood_ports = self.fabricfwd.edge_ports if active else None
        self.hosts.is_link = self.fabric.is_link if active else None
        out = self.fabricfwd.resync()
        for sw in self.switches.values():     # a switch may have become (or ceased
            out += self.vips.sync(sw)          # to be) transit: its per-VIP flows
        return out

    def fabric_view(self, now):
        """Switches, links, hosts; ``settled``: every switch may flood (its links
        have had the time to be found)."""
        return dict(self.fabric.to_dict(), hosts={
            pkt.mac_text(mac): list(where) for mac, where in self.fabricfwd.location.items()},
            settled=all(self.fabricfwd.may_flood(dpid, now) for dpid in self.switches))

    def ports_changed(self, dpid, ports):
        sw = self.switches.get(dpid)
        if sw is not None:
            sw.set_ports(ports)

    def resolve_servers(self, switches, now):
        """ARP-probe every NAT/DR real server whose MAC is not known yet."""
        return self.hosts.probe_unknown([sw.dpid for sw in switches], self.vips.wanted_macs(),
                                        now)

    # -- PacketIn ----------------------------------------------------------------------
    def packet_in(self, dpid, in_port, data, table_id, now):
        """Handle one PacketIn; returns messages."""
        if data[30:34] == self._health_bytes and self._health_reply(data, table_id):
            # a reply to a health probe: thousands a second with many checks, so
            # straight to the health checks, with what the way below does first
            if dpid in self.switches and in_port is not None:
                self.outcome = CONSUMED
                return (self._learn(dpid, in_port, data[6:12])
                        + self.health.packet_in(dpid, in_port, data, now))
        self.outcome = FORWARDED
        sw = self.switches.get(dpid)
        p = pkt.parse(data)
        if sw is None or p is None or in_port is None:
            return self._drop("malformed")
        if p.eth_type == pkt.ETH_LLDP:
            self.outcome = CONSUMED
            return []           # link discovery's, handled by ryu.topology
        out = self._learn(dpid, in_port, p.eth_src)
        if p.eth_type == pkt.ETH_ARP:
            return out + self._arp_in(sw, in_port, data, p, now)
        ip = p.eth_type in pkt.IP_TYPES
        if (p.proto == pkt.PROTO_ICMPV6 and p.sport in (pkt.ND_SOLICIT, pkt.ND_ADVERT)
                and p.eth_type == pkt.ETH_IPV6 and not p.frag):
            return out + self._nd_in(sw, in_port, data, p, now)
        if table_id == pl.SERVICE and ip:
            if p.frag:
                return out + self._fragment_in(sw, in_port, data, p, now, self._service_in)
            return out + self._service_in(sw, in_port, data, p, now)
        if table_id == pl.REVERSE and ip:
            if p.frag:
                return out + self._fragment_in(sw, in_port, data, p, now, self._reply_fragment)
            if self.ftp.is_control_reply(sw, p):
                return out + self._ftp_from_server(sw, in_port, data, p, now)
            return out + self._conn_out(sw, in_port, data, p, now)
        if p.ip_dst == self.health_source and p.eth_type == pkt.ETH_IP:
            self.outcome = CONSUMED
            return out + self.health.packet_in(sw.dpid, in_port, data, now)
        return out + self._l2_in(sw, in_port, data, p, now)

    def _learn(self, dpid, in_port, eth_src):
        """A frame from ``eth_src`` came in on this port: the hosts table
        learns it (and, in a fabric, where the host lives)."""
        out = self.hosts.learn_port(dpid, in_port, eth_src)
        if self.fabric.active:
            out += self.fabricfwd.learn(dpid, in_port, eth_src)
        return out

    def _drop(self, reason):
        """The PacketIn is dropped, for ``reason`` (one of DROP_REASONS)."""
        self.dropped[reason] += 1
        self.outcome = DROPPED
        return []

    @staticmethod
    def _health_reply(data, table_id):
        """An untagged IPv4 frame that :func:`pkt.parse` reads (its header
        lengths hold) and the pipeline punted for the health address (the
        way below sends it to the health checks too); ``data[30:34]`` is
        its destination."""
        if table_id in (pl.SERVICE, pl.REVERSE) or data[12:14] != _ETH_IP_BYTES:
            return False
        ihl, total = (data[14] & 0x0F) * 4, (data[16] << 8) | data[17]
        return 20 <= ihl <= total and 14 + total <= len(data)

    def _fragment_in(self, sw, in_port, data, p, now, first):
        """An IP fragment (see fragments.py): the first decides, the rest follow."""
        if p.frag == pkt.FIRST_FRAGMENT:
            out = first(sw, in_port, data, p, now)
            self.fragments.first(sw.dpid, p, data, out, now)
            return out
        later = self.fragments.later(sw.dpid, p, data, now)
        if later is None:
            self.outcome = DROPPED          # counted in Fragments.dropped
            return []
        data, actions = later
        return [(sw.dpid, ofmsg.packet_out(in_port, actions, data))]

    def _reply_fragment(self, sw, in_port, data, p, now):
        """A first fragment from a NAT real server: rewritten back if it belongs
        to a connection, else forwarded as it is.  In a fabric it is punted
        where it enters (the server's edge switch), and its connection lives
        at the client's edge switch, where the client's MAC is: it is
        rewritten here with that connection, then crosses the fabric as any
        frame (fragments from links are not punted again, fabricfwd.py)."""
        key = (PROTO_NAMES.get(p.proto), p.ip_src, p.sport, p.ip_dst, p.dport)
        conn = self.conns.nat_reply(sw, *key)
        if conn is None and self.fabric.active:
            edge = self.switches.get(self.fabricfwd.location.get(p.eth_dst, (None,))[0])
            if edge is not None and edge is not sw:
                conn = self.conns.nat_reply(edge, *key)
        if conn is None or conn.nodest:
            return self._l2_in(sw, in_port, data, p, now)
        return [(sw.dpid, ofmsg.packet_out(in_port, self.flows.reverse_packet_actions(conn),
                                           data))]

    def _learn_host(self, sw, in_port, ip, mac, now):
        """Remember where an address lives; send on the packets that waited for it."""
        out = []
        for dpid, in_port, data in self.hosts.learn(ip, mac, now, self.index.vips, sw.dpid,
                                                    in_port):
            sw = self.switches.get(dpid)
            p = pkt.parse(data)
            if sw is not None and p is not None:
                out += self._service_in(sw, in_port, data, p, now)
        return out

    def _arp_in(self, sw, in_port, data, p, now):
        out = self._learn_host(sw, in_port, p.ip_src, p.arp_sha, now) if p.ip_src else []
        if p.proto == pkt.ARP_REQUEST and p.ip_dst in self.index.vips:
            self.outcome = ANSWERED
            return out + [self.hosts.arp_answer(sw.dpid, in_port, p)]
        if p.proto == pkt.ARP_REQUEST and p.ip_dst == self.health_source:
            self.outcome = ANSWERED
            return out + [self.hosts.arp_answer(sw.dpid, in_port, p, pkt.DIRECTOR_MAC)]
        if p.eth_dst == pkt.DIRECTOR_MAC:
            self.outcome = CONSUMED
            return out     # a reply to our probe: learned above, nothing to forward
        return out + self._l2_in(sw, in_port, data, p, now)

    def _nd_in(self, sw, in_port, data, p, now):
        """Neighbour Discovery, IPv6's ARP: learn who sent it, answer a
        solicitation for a VIP, keep an advertisement to the director (the
        answer to its own solicitation); the rest is forwarded as any frame."""
        fields = pkt.nd_fields(data, p)
        if fields is None:
            return self._drop("malformed")
        target, lladdr = fields
        out = []
        if p.sport == pkt.ND_SOLICIT:
            if p.ip_src and lladdr is not None:
                out += self._learn_host(sw, in_port, p.ip_src, lladdr, now)
            if target in self.index.vips:
                self.outcome = ANSWERED
                return out + [self.hosts.nd_answer(sw.dpid, in_port, p, target, lladdr)]
        else:
            out += self._learn_host(sw, in_port, target, lladdr or p.eth_src, now)
            if p.eth_dst == pkt.DIRECTOR_MAC:
                self.outcome = CONSUMED
                return out
        return out + self._l2_in(sw, in_port, data, p, now)

    def _l2_in(self, sw, in_port, data, p, now):
        """Learning switch: learn the source, forward or flood the packet."""
        out = []
        if (p.eth_type in pkt.IP_TYPES and p.ip_src and p.ip_src not in self.hosts.macs
                and p.ip_src >> 64 != 0xFE80 << 48):     # not an IPv6 link-local
            out += self._learn_host(sw, in_port, p.ip_src, p.eth_src, now)
        self.outcome = SWITCHED
        if self.fabric.active:
            return out + self.fabricfwd.forward(sw.dpid, in_port, data, p.eth_dst, now)
        if (not self.fabricfwd.may_flood(sw.dpid, now)
                and p.eth_dst not in self.hosts.ports.get(sw.dpid, {})):
            # --observe-links: no flooding before links can be known
            return out + self._drop("flood_wait")
        return out + self.hosts.switch_forward(sw.dpid, in_port, data, p.eth_dst)

    def _service_in(self, sw, in_port, data, p, now):
        proto = PROTO_NAMES.get(p.proto)
        if proto is None:
            return self._drop("unsupported_protocol")
        key = (proto, p.ip_src, p.sport, p.ip_dst, p.dport)
        conn = sw.conns.get(key)
        if proto != "tcp":
            if conn is not None:
                return self._forward_packet(sw, conn, in_port, data, now)
            return self._schedule(sw, in_port, data, p, key, now)
        flags = p.tcp_flags
        syn = flags & pkt.TCP_SYN and not flags & pkt.TCP_RST
        if conn is not None and syn and self._reschedule(conn):
            out = self.end_connection(sw, conn, delete_flows=True)
            return out + self._service_in(sw, in_port, data, p, now)
        if conn is None:
            if not syn:
                # IPVS schedules only SYNs; the rest is dropped, unless a
                # --pe switch template carries its connection
                return self._template_carry(sw, in_port, data, p, key)
            if sw.ftp_expect:
                data_conn = self.ftp.passive_data(sw, key, now,
                                                  self.lifecycle.tcp_timeout("SYN_RECV"))
                if data_conn is not None:
                    data_conn.isn = pkt.tcp_seq(data, p)
                    self.outcome = SCHEDULED       # the control connection's server
                    return (self._enter(sw, data_conn, self.lifecycle.flow_idle("SYN_RECV"))
                            + self._forward_packet(sw, data_conn, in_port, data, now))
            return self._schedule(sw, in_port, data, p, key, now)
        out = self.lifecycle.segment(sw, conn, flags, now)
        reused = False
        if syn:
            # a SYN with another sequence number than the entry's opens a new
            # connection on it (a retransmitted one carries the same)
            seq = pkt.tcp_seq(data, p)
            reused, conn.isn = seq != conn.isn, seq
        if not out and (conn.flowless or reused):
            # a packet of an entry without flow (the stray punt), or a new
            # connection on an entry whose flow may have seen a FIN: a fresh flow
            out = self.lifecycle.flow_back(sw, conn, now, fin=conn.flowless)
        return out + self._forward_packet(sw, conn, in_port, data, now)

    def _template_carry(self, sw, in_port, data, p, key):
        """A packet of no entry (an RST: its punt sits above the template's
        flow) of a connection that a ``--pe switch`` template carries in the
        switch: it goes where the template's flow sends the rest."""
        proto, client, _, vip, vport = key
        service, via_ftp = self.index.find(proto, vip, vport)
        if service is None or service.pe != "switch":
            return self._drop("no_connection")
        template = sw.templates.get(self.templates.key(service, proto, client, vip, vport,
                                                       via_ftp))
        if template is None or not template.hot or service.find_server(
                template.dest.address, template.dest.port) is not template.dest.server:
            return self._drop("no_connection")
        dest = template.dest
        actions = self.flows.packet_actions(sw, dest, proto, dest.port or vport)
        if self.traffic is not None:
            self.traffic.count(self.ids.service(service.key), template.server_id, 0,
                               pkt.ip_length(data))
        return [(sw.dpid, ofmsg.packet_out(in_port, actions, data))]

    def _reschedule(self, conn):
        """A SYN on an existing entry: schedule afresh?  (``ip_vs_in_hook()``)

        With expire_nodest_conn, a SYN to a quiesced (weight 0) server's
        entry is rescheduled.  Otherwise conn_reuse_mode 1: an entry that no
        template or FTP control connection controls is rescheduled from
        TIME_WAIT or CLOSE; from FIN_WAIT the old entry carries the SYN.
        """
        if self.config.settings["expire_nodest_conn"] and conn.dest.weight == 0:
            return True
        return (conn.template is None and conn.control is None
                and conn.state in ("TIME_WAIT", "CLOSE"))

    # -- scheduling --------------------------------------------------------------------
    def _schedule(self, sw, in_port, data, p, key, now):
        proto, client, cport, vip, vport = key
        if (client in self.index.vips or (
                client >> 120 == 0xFF or client < pkt.V4_LIMIT if p.eth_type == pkt.ETH_IPV6
                else client >> 24 in (0, 127) or client >= 0xE0000000)):
            # a martian source (this network, loopback, multicast, broadcast,
            # a VIP; IPv6: ::/96, multicast): no connection is made for it
            return self._drop("martian")
        if self.limits.max_entries:
            admitted, out = self.limits.admit(sw, now, self._end_connection_now)
            self.lifecycle.pressure = self.limits.pressure
            if not admitted:
                self.outcome = DROPPED      # counted in Limits.counters["refused"]
                return out
        else:
            out = []
        service, via_ftp = self.index.find(proto, vip, vport)
        if service is None or via_ftp and not service.persistent:
            # IPVS schedules a packet that reached a port-21 service through
            # the FTP fallback only for a persistent service (vport != port)
            return out + self._drop("no_service")
        state = self.runtime.service(service)
        template = None
        if service.persistent:
            # ip_vs_sched_persist(): the template first, also for one-packet UDP
            tkey = self.templates.key(service, proto, client, vip, vport, via_ftp)
            template = sw.templates.get(tkey)
            if template is not None and not self.templates.usable(service, template):
                template = None      # invalidated: a fresh template replaces it
            dest = template.dest if template else self._pick(state, p, now)
        else:
            dest = self._pick(state, p, now)
        if dest is None:
            LOG.warning("%s: %s - no destination available", service.scheduler, service.key)
            return out + self._drop("no_destination")
        unready = self._unready(sw, dest, in_port, data, now)
        if unready is not None:
            return out + unready
        rid = dest.rid
        if rid is None:
            rid = dest.rid = self.ids.server(service.key, dest.address, dest.port)
        if service.persistent:
            if template is None:
                template, msgs = self.templates.create(sw, service, dest, rid, tkey, now)
                out += msgs
            else:
                # the template's own timeout: 60 s for good once it went
                # through expire_later (ip_vs_conn_expire)
                out += self.templates.arm(sw, service, template, template.timeout, now)
        dport = dest.port if vport == service.key.port and dest.port else vport
        if service.ops and proto == "udp":
            # one-packet scheduling (UDP only, also under a fwmark): the
            # connection lives for this datagram only, nothing stays behind
            state.stats.conns += 1
            dest.stats.conns += 1
            self.outcome = SCHEDULED
            actions = self.flows.packet_actions(sw, dest, "udp", dport)
            return out + [(sw.dpid, ofmsg.packet_out(in_port, actions, data))]
        conn = self._new_connection(sw, service, state, dest, rid, key, dport, template, now)
        if proto == "tcp":
            conn.isn = pkt.tcp_seq(data, p)
        out += self._enter(sw, conn, self.lifecycle.first_flow_idle(proto), False)
        if proto == "tcp":
            self.limits.track(sw, conn)
        return out + self._forward_packet(sw, conn, in_port, data, now)

    def _pick(self, state, p, now):
        address = ipaddress.IPv6Address if p.eth_type == pkt.ETH_IPV6 else ipaddress.IPv4Address
        return state.get_scheduler().schedule(
            state.sched_list(), SchedKey(address(p.ip_src), p.sport, address(p.ip_dst), p.dport),
            now)

    def _unready(self, sw, dest, in_port, data, now):
        """None when the switch can reach ``dest`` now; else what to send
        instead (an ARP probe while the packet waits for the server's MAC)."""
        why = method_of(dest).unready(sw, dest, self.hosts)
        if why is None:
            return None
        if why == "mac":
            self.outcome = QUEUED
            return self.hosts.wait(sw.dpid, int(dest.address), in_port, data, now)
        return self._drop("no_tunnel_port")

    # -- connections -------------------------------------------------------------------
    def _new_connection(self, sw, service, state, dest, rid, key, dport, template, now):
        proto = key[0]
        forwarding = method_of(dest)
        conn = Connection(key, service.key, dest, rid, dport,
                          "SYN_RECV" if proto == "tcp" else "UDP", proto == "tcp",
                          now + self.lifecycle.first_timeout(proto), template,
                          self.ids.service(service.key), forwarding.reverse_nat, now)
        if proto == "tcp" and key[4] == FTP_CONTROL and forwarding.ftp_helper:
            self.ftp.watch(sw, conn)
        state.stats.conns += 1
        dest.stats.conns += 1
        self.outcome = SCHEDULED
        return conn

    def _enter(self, sw, conn, timeout, replace=True):
        """Enter ``conn`` in the table and return its flows.  With ``replace``,
        an entry with the same key ends first (its flow is replaced by an
        ADD, so no FlowRemoved comes for it)."""
        out = []
        old = sw.conns.get(conn.key) if replace else None
        if old is not None:
            out += self.end_connection(sw, old)
        self.conns.add(sw, conn)
        return out + self.flows.connection_flows(sw, conn, conn.service_id,
                                                 timeout)

    def _conn_out(self, sw, in_port, data, p, now):
        """IPVS conn_out: a NAT real server opens a connection to a client whose
        template points at it (active FTP from port 20, for one).  It becomes an
        ordinary connection of the template's service, seen from the VIP."""
        proto = PROTO_NAMES.get(p.proto)
        if proto is None or proto == "tcp" and (
                p.tcp_flags & (pkt.TCP_SYN | pkt.TCP_ACK)) != pkt.TCP_SYN:
            return self._drop("no_connection")
        for template in sw.templates.values():
            dest = template.dest
            tproto, snet, vip, vport = template.key
            if (template.expiring or tproto != proto or not method_of(dest).reverse_nat
                    or int(dest.address) != p.ip_src):
                continue
            service = self.config.table.services.get(template.service)
            if (service is None or p.ip_dst & service.netmask != snet
                    or not self.templates.usable(service, template)):
                continue
            if vport and dest.port and p.sport != dest.port:
                continue
            key = (proto, p.ip_dst, p.dport, vip, vport or p.sport)
            if key in sw.conns:
                # the server's SYN again, before its new flow was in place:
                # dropped, the server sends it again through the flow
                return self._drop("repeated_syn")
            conn = self._new_connection(sw, service, self.runtime.service(service), dest,
                                        template.server_id, key, p.sport, template, now)
            out = self._enter(sw, conn, self.lifecycle.first_flow_idle(proto), False)
            actions = self.flows.reverse_packet_actions(conn)
            return out + [(sw.dpid, ofmsg.packet_out(in_port, actions, data))]
        return self._drop("no_connection")

    def _forward_packet(self, sw, conn, in_port, data, now):
        if conn.nodest:
            return self._drop("server_gone")
        out = []
        if conn.ftp is not None:
            data, data_conn = self.ftp.from_client(conn, data, now)
            if data_conn is not None:
                out += self._enter(sw, data_conn, LISTEN_TIMEOUT)
        actions = self.flows.packet_actions(sw, conn.dest, conn.key[0], conn.dport)
        if self.traffic is not None:
            self.traffic.count(conn.service_id, conn.server_id, 0, pkt.ip_length(data))
        return out + [(sw.dpid, ofmsg.packet_out(in_port, actions, data))]

    def _ftp_from_server(self, sw, in_port, data, p, now):
        """A server->client packet of an FTP control connection (from REVERSE)."""
        conn, data = self.ftp.from_server(sw, p, data, now)
        if conn is None:
            return self._drop("no_connection")
        actions = self.flows.reverse_packet_actions(conn)
        if self.traffic is not None:
            self.traffic.count(conn.service_id, conn.server_id, 1, pkt.ip_length(data))
        return [(sw.dpid, ofmsg.packet_out(in_port, actions, data))]

    def _end_connection_now(self, sw, conn):
        """End an entry before its time (drop_entry): its flows go too."""
        return self.end_connection(sw, conn, delete_flows=True)

    def end_connection(self, sw, conn, delete_flows=False):
        if conn.ftp is not None:
            self.ftp.forget(sw, conn)
        template = self.conns.remove(sw, conn)
        out = self.flows.delete_connection(sw, conn, conn.service_id,
                                           forward=delete_flows)
        if template is not None:
            out += self.templates.drop(sw, template)
        elif conn.template is not None:
            out += self.templates.connection_ended(sw, conn.template, conn)
        return out

    # -- FlowRemoved -------------------------------------------------------------------
    def flow_removed(self, dpid, cookie, match, duration, now, reason=ofmsg.REMOVED_IDLE,
                     packet_count=0, hard_timeout=0):
        """A connection or template flow timed out in the switch.

        A connection flow with a hard timeout saw the client's FIN (its
        fin_timeout gave it one): the entry goes on without a flow, in
        FIN_WAIT (see lifecycle.py).  A connection still in SYN_RECV whose
        flow carried packets completed its handshake (the switch kept its ACK
        from us) and then idled for the SYN_RECV timeout: it is ESTABLISHED
        and gets its flow back with the tcp timeout.  One whose flow carried
        nothing was half-open.
        """
        sw = self.switches.get(dpid)
        parsed = idmod.Cookie.parse(cookie)
        if sw is None or parsed is None or reason == ofmsg.REMOVED_DELETE:
            # every delete is the director's own, and its state was updated
            # when it sent it; the report may even name a newer flow with
            # the same match (a client port reused after FIN)
            return []
        mkey = ofmsg.match_key(match)
        if parsed.kind == idmod.KIND_CONN:
            conn = self._conn_by_match(sw, mkey)
            if conn is None:
                return []
            if conn.ftp is not None and not conn.nodest and self.ftp.controls_data(sw, conn):
                # IPVS keeps a control connection while it controls data
                # connections (expire_later): its flow is put back for 60 s
                conn.expires_at = now + EXPIRE_LATER
                return [self.flows.conn_flow(sw, conn, conn.service_id,
                                             EXPIRE_LATER)]
            if hard_timeout and conn.key[0] == "tcp" and conn.ftp is None:
                if now - duration < conn.flow_at - STALE_SLACK:
                    # the report of a flow a new SYN has replaced since (the
                    # flow expired before the switch had the new one)
                    return []
                if self.lifecycle.closed(sw, conn, reason == ofmsg.REMOVED_HARD, now):
                    return self.end_connection(sw, conn)
                return []
            flow = self.lifecycle.idled_out(sw, conn, packet_count, now)
            return flow if flow is not None else self.end_connection(sw, conn)
        if parsed.kind == idmod.KIND_TEMPLATE:
            return self.templates.expired(sw, mkey, duration, now)
        return []

    @staticmethod
    def _conn_by_match(sw, mkey):
        return sw.conns.get(conn_key(dict(mkey)))

    # -- timed work and listing --------------------------------------------------------
    def expire_closed(self, now):
        """Timed job: closed connections (FIN_WAIT without a flow) whose time
        is up end, with their reverse flows."""
        out = []
        for sw, conn in self.lifecycle.expired_flowless(now):
            out += self.end_connection(sw, conn)
        return out

    def age_schedulers(self, now):
        """Timed job: lblc/lblcr drop idle cache entries and shrink old sets."""
        for state in self.runtime.services.values():
            if state.scheduler is not None:
                state.scheduler.gc(now)
        return []

    def refresh_hosts(self, now):
        """Timed job: retry unanswered ARP probes, re-probe stale real-server MACs."""
        return self.hosts.refresh(now, list(self.switches), self.vips.wanted_macs())

    def connections(self, now):
        """Live connections and templates in ``ipvsadm -L -c`` terms."""
        return self.conns.rows(now)
