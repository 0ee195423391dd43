"""The flows and packets that carry connections and templates.

Every connection or template flow is built here, through its pipeline table,
with the rewrite its real server's forwarding method asks for.  Instruction
and action lists that depend only on (switch, server, method, protocol,
port, MAC) are built once and replay their encoding (the hot path).
"""

from lvs_app import ids
from lvs_app import ofmsg
from lvs_app import packet as pkt
from lvs_app import pipeline as pl
from lvs_app.forwarding import Masq, method_of

SERVICE = pl.TABLES[pl.SERVICE]
SYN_ONLY = (pkt.TCP_SYN, pkt.TCP_SYN | pkt.TCP_ACK)     # tcp_flags: SYN without ACK
REVERSE = pl.TABLES[pl.REVERSE]


class Flows:
    """Builds connection and template flows; owns the encoding cache."""

    def __init__(self, hosts, meters=None):
        self.hosts = hosts
        self.meters = meters or pl.PuntMeters()
        self.cache = ofmsg.EncodingCache()
        # a TCP connection flow's fin_timeout (idle, hard): set by the
        # lifecycle from the tcpfin timeout (see lifecycle.py: a FIN stays
        # in the switch)
        self.fin = None
        # --pe switch: the idle timeout of a template's carrying flow is at
        # least this, the TCP established timeout (set by the lifecycle)
        self.carry_idle = 0

    # -- client -> server --------------------------------------------------------------
    def _server_key(self, sw, dest, proto, dport):
        return (sw.dpid, dest.address, dest.method, proto, dport,
                self.hosts.macs.get(int(dest.address)), sw.tunnel_port)

    def forward_actions(self, sw, dest, proto, dport):
        """Actions that carry a client packet to ``dest`` (see Forwarding.actions)."""
        return method_of(dest).actions(sw, dest, proto, dport,
                                       self.hosts.macs.get(int(dest.address)))

    def forward_instructions(self, sw, dest, proto, dport, fin=None):
        """Instructions that rewrite and forward to ``dest``; with ``fin``
        (idle, hard) a TCP connection flow's fin_timeout comes first."""
        actions = self.forward_actions(sw, dest, proto, dport)
        if fin is not None:
            actions.insert(0, ofmsg.fin_timeout(*fin))
        return method_of(dest).instructions(actions)

    def packet_actions(self, sw, dest, proto, dport):
        """PacketOut actions that carry one client packet to ``dest``."""
        return self.cache.get(("out",) + self._server_key(sw, dest, proto, dport),
                              lambda: method_of(dest).packet_actions(
                                  self.forward_actions(sw, dest, proto, dport)))

    def _punt(self):
        return self.cache.get(("punt",), lambda: ofmsg.apply(ofmsg.to_controller()))

    # -- connections -------------------------------------------------------------------
    @staticmethod
    def conn_match(conn):
        proto, client, cport, vip, vport = conn.key
        return ofmsg.five_tuple_match(proto, client, cport, vip, vport)

    @staticmethod
    def reverse_match(conn):
        proto, client, cport, _, _ = conn.key
        return ofmsg.five_tuple_match(proto, int(conn.dest.address), conn.dport, client, cport)

    def conn_flow(self, sw, conn, sid, timeout, reset_counts=False, fin=True):
        """The connection's SERVICE flow (client -> server), idle ``timeout``
        (remembered in ``conn.flow_idle``: its FlowRemoved is read with it);
        a TCP one with the fin_timeout unless ``fin`` is False."""
        conn.flow_idle = timeout
        conn.flowless = False
        dest, proto = conn.dest, conn.key[0]
        if conn.ftp is not None:
            # an FTP control connection: all its packets go through the controller
            inst = self._punt()
        else:
            fin = self.fin if proto == "tcp" and fin else None
            inst = self.cache.get(("conn", fin) + self._server_key(sw, dest, proto, conn.dport),
                                  lambda: self.forward_instructions(sw, dest, proto, conn.dport,
                                                                    fin))
        cookie = ids.Cookie(ids.KIND_CONN, sid, conn.server_id).value
        return (sw.dpid, SERVICE.flow(pl.PRIO_CONN, self.conn_match(conn), inst, cookie,
                                      idle=timeout, notify=True, reset_counts=reset_counts))

    @staticmethod
    def own_reverse(conn):
        """Does ``conn`` need a REVERSE flow of its own?  NAT does, unless a
        live ``--pe switch`` template's reply flow rewrites its replies."""
        template = conn.template
        return method_of(conn.dest).reverse_nat and (
            template is None or template.hot_nat is None or template.expiring)

    def connection_flows(self, sw, conn, sid, timeout):
        """Every flow of a new connection: SERVICE, plus REVERSE for NAT."""
        out = [self.conn_flow(sw, conn, sid, timeout)]
        if self.own_reverse(conn):
            proto, _, _, vip, vport = conn.key
            if conn.ftp is not None:
                inst = self._punt()
            else:
                inst = self.cache.get(("reverse", vip, proto, vport), lambda: ofmsg.apply_then_goto(
                    Masq.reverse_actions(proto, vip, vport), pl.FORWARD))
            cookie = ids.Cookie(ids.KIND_REVERSE, sid, conn.server_id).value
            # notify: its final counts (OutPkts, OutBytes) come when it is deleted
            out.append((sw.dpid, REVERSE.flow(pl.PRIO_CONN, self.reverse_match(conn), inst,
                                              cookie, notify=True)))
        return out

    def delete_connection(self, sw, conn, sid, forward=True):
        """Delete a connection's flows (the SERVICE one only when ``forward``)."""
        out = []
        if forward:
            out.append((sw.dpid, SERVICE.delete(ids.cookie_mask(ids.KIND_CONN, sid, conn.server_id),
                                                self.conn_match(conn), pl.PRIO_CONN)))
        if self.own_reverse(conn):
            out.append((sw.dpid, REVERSE.delete(
                ids.cookie_mask(ids.KIND_REVERSE, sid, conn.server_id),
                self.reverse_match(conn), pl.PRIO_CONN)))
        return out

    def reverse_packet_actions(self, conn):
        """PacketOut actions for a server->client packet of a NAT connection."""
        proto, _, _, vip, vport = conn.key
        return self.cache.get(("rev-out", vip, proto, vport), lambda: Masq.reverse_actions(
            proto, vip, vport) + [ofmsg.output(ofmsg.IN_TABLE)])

    def drop_server_flows(self, sw, sid, rid):
        """IPVS default for a deleted server: what its connections' and its
        templates' flows carry is dropped."""
        return [(sw.dpid, SERVICE.modify(ids.cookie_mask(kind, sid, rid), []))
                for kind in (ids.KIND_CONN, ids.KIND_TEMPLATE)]

    def delete_server_flows(self, sw, sid, rid, kinds):
        return [(sw.dpid, ofmsg.flow_delete(ids.cookie_mask(kind, sid, rid))) for kind in kinds]

    # -- templates ---------------------------------------------------------------------
    def template_flows(self, sw, template, sid, timeout):
        """(Re-)install a template's SERVICE flows with idle ``timeout``.

        A ``--pe switch`` template has two: its SYN flow, above the SYN punt,
        carries its client's new connections with idle ``timeout`` (IPVS
        re-arms a template with each new connection), and its carrying flow
        the rest of their packets, with idle at least the TCP established
        timeout (it lives while its connections do)."""
        cookie = ids.Cookie(ids.KIND_TEMPLATE, sid, template.server_id).value
        dest = template.dest
        carry = max(timeout, self.carry_idle) if template.hot else timeout
        out = []
        for fields in template.matches:
            proto = "tcp" if fields["ip_proto"] == 6 else "udp"
            # a template for one port rewrites it; an all-ports one keeps it
            port = (dest.port if isinstance(fields.get(f"{proto}_dst"), int) and dest.port
                    else None)
            inst = self.cache.get(("template",) + self._server_key(sw, dest, proto, port),
                                  lambda: self.forward_instructions(sw, dest, proto, port))
            if template.hot:
                out.append((sw.dpid, SERVICE.flow(
                    pl.PRIO_TEMPLATE_SYN, self.syn_match(fields), inst,
                    ids.Cookie(ids.KIND_TEMPLATE_SYN, sid, template.server_id).value,
                    idle=timeout, notify=True)))
            out.append((sw.dpid, SERVICE.flow(pl.PRIO_TEMPLATE, ofmsg.fast_match(**fields), inst,
                                              cookie, idle=carry, notify=True)))
        return out

    @staticmethod
    def syn_match(fields):
        return ofmsg.fast_match(**fields, tcp_flags=SYN_ONLY)

    def delete_template(self, sw, template, sid):
        cm = ids.cookie_mask(ids.KIND_TEMPLATE, sid, template.server_id)
        out = [(sw.dpid, SERVICE.delete(cm, ofmsg.fast_match(**fields), pl.PRIO_TEMPLATE))
               for fields in template.matches]
        if template.hot:
            out += self.delete_template_syn(sw, template, sid)
        return out

    def delete_template_syn(self, sw, template, sid):
        """A ``--pe switch`` template's SYN flow goes: its client's next SYN
        comes to the controller."""
        cm = ids.cookie_mask(ids.KIND_TEMPLATE_SYN, sid, template.server_id)
        return [(sw.dpid, SERVICE.delete(cm, self.syn_match(fields), pl.PRIO_TEMPLATE_SYN))
                for fields in template.matches]

    def template_reverse(self, sw, template, sid, matches):
        """NAT: a connection the server opens to a template client comes to
        the controller (IPVS conn_out); nothing else of the server's is touched."""
        cookie = ids.Cookie(ids.KIND_REVERSE_TEMPLATE, sid, template.server_id).value
        return [(sw.dpid, REVERSE.flow(pl.PRIO_TEMPLATE, ofmsg.fast_match(**fields),
                                       ofmsg.punt(self.meters.service), cookie))
                for fields in matches]

    def delete_template_reverse(self, sw, template, sid, matches):
        if template.hot_nat is not None:
            return self.delete_template_nat(sw, template, sid, matches)
        cm = ids.cookie_mask(ids.KIND_REVERSE_TEMPLATE, sid, template.server_id)
        return [(sw.dpid, REVERSE.delete(cm, ofmsg.fast_match(**fields), pl.PRIO_TEMPLATE))
                for fields in matches]

    def delete_template_nat(self, sw, template, sid, matches):
        cm = ids.cookie_mask(ids.KIND_TEMPLATE_NAT, sid, template.server_id)
        return [(sw.dpid, REVERSE.delete(cm, ofmsg.fast_match(**fields), pl.PRIO_TEMPLATE_NAT))
                for fields in self.template_nat_matches(matches)]

    @staticmethod
    def template_nat_matches(matches):
        """A ``--pe switch`` template's reply matches: its conn_out matches
        without the SYN condition (every packet from the server port)."""
        return [{k: v for k, v in fields.items() if k != "tcp_flags"} for fields in matches]

    def template_nat(self, sw, template, sid, matches):
        """``--pe switch``, NAT: every packet from the template's server port
        to its client network leaves as VIP:vport, in the switch (the
        connections it carries have no reverse flow of their own, nor those
        the controller makes under it; a server's connection to the client
        from that port leaves the same way, where an ordinary template sends
        it to the controller: IPVS's conn_out)."""
        _, _, vip, vport = template.key
        cookie = ids.Cookie(ids.KIND_TEMPLATE_NAT, sid, template.server_id).value
        inst = self.cache.get(("reverse", vip, "tcp", vport), lambda: ofmsg.apply_then_goto(
            Masq.reverse_actions("tcp", vip, vport), pl.FORWARD))
        return [(sw.dpid, REVERSE.flow(pl.PRIO_TEMPLATE_NAT, ofmsg.fast_match(**fields), inst,
                                       cookie, notify=True))
                for fields in self.template_nat_matches(matches)]
