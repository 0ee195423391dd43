"""Persistence templates: one client-wildcard flow per persistent client.

A template is a flow in SERVICE matching the client's address under the
persistence netmask, the VIP and the service port (or all ports, for port-0,
port-21 and firewall-mark services), with ``idle_timeout`` = the persistence
timeout.  While it lives, every new connection of that client goes to its
real server.  Connection flows shadow it, so only a new connection scheduled
through it re-arms it (re-adding the flow), as IPVS re-arms its template
timer only for new connections; when it expires while it still controls
connections it is put back for EXPIRE_LATER at a time (IPVS's expire_later).

``--pe switch`` (a persistent TCP service on one port) keeps a template's
later connections out of the controller.  Its template has a second SERVICE
flow, for its client's SYNs, above the SYN punt: the switch carries each new
connection to the template's server, and that flow's idle timeout (the
persistence timeout, renewed by each SYN) is IPVS's template timer.  The
template's own flow carries the rest of their packets, with an idle timeout
of at least the TCP established timeout, so it lives while they do; when
the SYN flow has expired and the carrying flow still lives, the client's
next SYN comes to the controller, which finds the template and puts the SYN
flow back (IPVS keeps a template while it controls connections).  With NAT a
third flow, in REVERSE, rewrites every packet from the server port to the
client's network back to VIP:vport, since those connections have no reverse
flow of their own; a template whose rewrite would be ambiguous (another
VIP's template on the same server port for an overlapping client network)
stays an ordinary one.  The controller sees the template's first
connection (and the first after each expiry of the SYN flow) and counts it;
the ones the switch carries count in Conns (the SYN flow's packets) and the
traffic counters, not in ActiveConn/InActConn.
"""

import ipaddress

from lvs_app import ofmsg
from lvs_app import packet as pkt
from lvs_app.conntable import EXPIRE_LATER, Template
from lvs_app.forwarding import method_of
from lvs_app.model import FTP_CONTROL

PROTO_NUMBERS = {"tcp": pkt.PROTO_TCP, "udp": pkt.PROTO_UDP}


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


def _masked(snet, netmask, v6):
    """The client-network match value: the address, or (address, mask)."""
    if netmask == (1 << (128 if v6 else 32)) - 1:
        return str(ipaddress.IPv6Address(snet) if v6 else ipaddress.IPv4Address(snet))
    cls = ipaddress.IPv6Address if v6 else ipaddress.IPv4Address
    return (str(cls(snet)), str(cls(netmask)))


class Templates:
    """Template keys, matches and life cycle, over the connection table."""

    def __init__(self, config, ids, conns, flows, services):
        self.config = config         # the DirectorAPI: .table, .settings (read only)
        self.ids = ids
        self.conns = conns
        self.flows = flows
        self.services = services     # callable() -> the current ServiceIndex

    @staticmethod
    def key(service, proto, client, vip, vport, via_ftp):
        snet = client & service.netmask
        key = service.key
        if key.is_fwmark:
            return ("IP", snet, key.fwmark, 0)
        if via_ftp or key.port in (0, FTP_CONTROL):
            return (proto, snet, vip, 0)
        return (proto, snet, vip, vport)

    def usable(self, service, template):
        """ip_vs_check_template(): may this template still decide?"""
        server = service.find_server(template.dest.address, template.dest.port)
        if server is not template.dest.server:
            return False             # deleted (or deleted and added again)
        if server.weight == 0 and self.config.settings["expire_quiescent_template"]:
            return False
        return True

    def matches(self, service, tkey):
        proto, snet, vip_or_mark, vport = tkey
        v6 = service.key.version == 6
        src = _masked(snet, service.netmask, v6)
        eth_type = pkt.ETH_IPV6 if v6 else pkt.ETH_IP
        src_field, dst_field = ("ipv6_src", "ipv6_dst") if v6 else ("ipv4_src", "ipv4_dst")
        if service.key.is_fwmark:
            matches = []
            for m in self.config.table.marks[service.key.fwmark].matches:
                for value, pmask in port_masks(m.port_min, m.port_max):
                    fields = {"eth_type": eth_type, "ip_proto": PROTO_NUMBERS[m.protocol],
                              src_field: src, dst_field: str(m.address)}
                    if pmask:
                        fields[f"{m.protocol}_dst"] = (value, pmask) if pmask != 0xFFFF else value
                    matches.append(fields)
            return matches
        fields = {"eth_type": eth_type, "ip_proto": PROTO_NUMBERS[proto], src_field: src,
                  dst_field: pkt.ip_text(vip_or_mark)}
        if vport:
            fields[f"{proto}_dst"] = vport
        return [fields]

    @staticmethod
    def reverse_matches(template):
        """NAT: the matches of a server's new connections to the template's clients."""
        dest = template.dest
        result = []
        for fields in template.matches:
            proto = "tcp" if fields["ip_proto"] == pkt.PROTO_TCP else "udp"
            server = int(dest.address)
            client = fields.get("ipv4_src") or fields["ipv6_src"]
            rev = {"eth_type": pkt.eth_type_of(server), "ip_proto": fields["ip_proto"],
                   pkt.ip_field(server, "src"): pkt.ip_text(server),
                   pkt.ip_field(server, "dst"): client}
            if isinstance(fields.get(f"{proto}_dst"), int) and dest.port:
                rev[f"{proto}_src"] = dest.port
            if proto == "tcp":      # a new connection: SYN without ACK
                rev["tcp_flags"] = (pkt.TCP_SYN, pkt.TCP_SYN | pkt.TCP_ACK)
            result.append(rev)
        return result

    # -- life cycle ----------------------------------------------------------------
    def create(self, sw, service, dest, rid, tkey, now):
        """A new template for ``tkey`` -> ``dest``; returns (template, messages)."""
        out = []
        old = sw.templates.get(tkey)
        if old is not None:            # invalidated template: forget it
            self.conns.forget_template(sw, old)
            if old.hot_nat is None or old.n_control <= 0:
                # (a reply flow stays while connections of it need it)
                out += self._delete_reverse(sw, old)
            if old.hot:
                out += self.flows.delete_template_syn(sw, old, self.ids.service(service.key))
        template = Template(tkey, service.key, dest, rid, self.matches(service, tkey), now, now,
                            service.timeout)
        self.decide_hot(sw, service, template)
        self.conns.add_template(sw, template)
        out += self.arm(sw, service, template, service.timeout, now)
        if method_of(dest).reverse_nat:
            sid = self.ids.service(service.key)
            reverse = self.reverse_matches(template)
            if template.hot_nat is not None:
                out += self.flows.template_nat(sw, template, sid, reverse)
            else:
                out += self.flows.template_reverse(sw, template, sid, reverse)
        return template, out

    def decide_hot(self, sw, service, template):
        """``--pe switch``: may the switch carry the template's connections?
        With NAT, only when its reply rewrite is unambiguous: no template of
        another VIP:port on the same server port for an overlapping client
        network (the rewrite could not tell their replies apart)."""
        template.hot, template.hot_nat = service.pe == "switch", None
        dest = template.dest
        if not template.hot or not method_of(dest).reverse_nat:
            return
        _, snet, vip, vport = template.key
        nat = (int(dest.address), dest.port, vip, vport)
        for (other_vip, other_port), users in sw.hot_nat.get(nat[:2], {}).items():
            if (other_vip, other_port) == (vip, vport):
                continue
            for other in users.values():
                other_service = self.config.table.services.get(other.service)
                mask = service.netmask & (other_service.netmask if other_service else 0)
                if snet & mask == other.key[1] & mask:
                    template.hot = False
                    return
        if dest.port:
            template.hot_nat = nat
        else:
            template.hot = False

    def arm(self, sw, service, template, timeout, now):
        """(Re-)install the template's flows: its timer starts again."""
        template.armed_at = now
        # when its (carrying) flow idles out at the earliest
        template.expires_at = now + (max(timeout, self.flows.carry_idle) if template.hot
                                     else timeout)
        template.expiring = False
        template.late_since = None
        return self.flows.template_flows(sw, template, self.ids.service(service.key), timeout)

    def retire(self, sw, template):
        """The service's persistence changed: the template's flows go; it
        waits for its connections if it still has any."""
        out = self.flows.delete_template(sw, template, self.ids.service(template.service))
        if template.n_control <= 0:
            out += self.drop(sw, template)
        else:
            self.conns.forget_template(sw, template)
        return out

    def drop(self, sw, template):
        """The template is gone for good (its flows expired or were deleted)."""
        self.conns.forget_template(sw, template)
        return self._delete_reverse(sw, template)

    def carrier_gone(self, sw, template):
        """Its (carrying) flow expired or vanished: the template is gone, and
        a ``--pe switch`` template's SYN flow, which may still live, too."""
        out = self.drop(sw, template)
        if template.hot and template.service in self.config.table.services:
            out += self.flows.delete_template_syn(sw, template, self.ids.service(template.service))
        return out

    def _delete_reverse(self, sw, template):
        if not method_of(template.dest).reverse_nat:
            return []
        if template.service not in self.config.table.services:
            return []
        return self.flows.delete_template_reverse(sw, template, self.ids.service(template.service),
                                                  self.reverse_matches(template))

    def expired(self, sw, mkey, duration, now):
        """FlowRemoved (idle timeout) of a template flow with match key ``mkey``."""
        template = self.by_match(sw, mkey)
        if template is None or template.expiring:
            return []
        if now - duration < template.armed_at - 0.5:
            return []        # a flow replaced since: the template was re-armed
        if template.n_control > 0:
            service = self.config.table.services.get(template.service)
            if service is not None:
                # IPVS expire_later: keep it while it controls connections;
                # ip_vs_conn_expire() leaves its timeout at 60 s for good
                template.timeout = EXPIRE_LATER
                out = self.arm(sw, service, template, EXPIRE_LATER, now)
                template.late_since, template.late_ok = now, True
                return out
        return self.carrier_gone(sw, template)

    def connection_ended(self, sw, template, conn):
        """One of the template's connections ended.  A connection learns of
        its FIN late (its flow ends FIN_IDLE after its last packet, see
        lifecycle.py), so the template's time may have come first and put it
        back for EXPIRE_LATER; when every connection it waited for had in
        fact ended before that time (in IPVS terms), it expires now, as the
        kernel's template would have then."""
        if template.late_since is None or template.expiring:
            return []
        if conn.expires_at > template.late_since + 0.5:
            template.late_ok = False
        if template.n_control > 0 or not template.late_ok:
            return []
        out = self.flows.delete_template(sw, template, self.ids.service(template.service))
        return out + self.drop(sw, template)

    def by_match(self, sw, mkey):
        """The template one of whose flows has match ``mkey``.

        Its key follows from the match (see :meth:`key`): client network,
        VIP and port, or for a fwmark template the mark whose range holds it.
        """
        fields = dict(mkey)
        proto = "tcp" if fields.get("ip_proto") == pkt.PROTO_TCP else "udp"
        port = fields.get(f"{proto}_dst")
        try:
            snet = pkt.field_address(fields, "src")
            vip = pkt.field_address(fields, "dst")
        except (KeyError, TypeError, ValueError):
            return None
        keys = [(proto, snet, vip, port if isinstance(port, int) else 0)]
        first_port = port[0] if isinstance(port, tuple) else port
        for service in self.services().marks_at(proto, vip, first_port):
            keys.append(("IP", snet, service.key.fwmark, 0))
        for key in keys:
            template = sw.templates.get(key)
            if template is not None and any(ofmsg.match_key(ofmsg.match(**f)) == mkey
                                            for f in template.matches):
                return template
        return None
