"""Persistence templates: one client-wildcard flow per persistent client.

A template is a flow in SERVICE matching the client's address under the
persistence netmask, the VIP and the service port (or all ports, for port-0,
port-21 and firewall-mark services), with ``idle_timeout`` = the persistence
timeout.  While it lives, every new connection of that client goes to its
real server.  Connection flows shadow it, so only a new connection scheduled
through it re-arms it (re-adding the flow), as IPVS re-arms its template
timer only for new connections; when it expires while it still controls
connections it is put back for EXPIRE_LATER at a time (IPVS's expire_later).
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
        mask = pkt.ip_text(service.netmask)
        src = (pkt.ip_text(snet), mask) if service.netmask != 0xFFFFFFFF else pkt.ip_text(snet)
        if service.key.is_fwmark:
            matches = []
            for m in self.config.table.marks[service.key.fwmark].matches:
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

    @staticmethod
    def reverse_matches(template):
        """NAT: the matches of a server's new connections to the template's clients."""
        dest = template.dest
        result = []
        for fields in template.matches:
            proto = "tcp" if fields["ip_proto"] == pkt.PROTO_TCP else "udp"
            rev = dict(eth_type=pkt.ETH_IP, ip_proto=fields["ip_proto"],
                       ipv4_src=str(dest.address), ipv4_dst=fields["ipv4_src"])
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
            out += self._delete_reverse(sw, old)
        template = Template(tkey, service.key, dest, rid, self.matches(service, tkey), now, now,
                            service.timeout)
        self.conns.add_template(sw, template)
        out += self.arm(sw, service, template, service.timeout, now)
        if method_of(dest).reverse_nat:
            out += self.flows.template_reverse(sw, template, self.ids.service(service.key),
                                               self.reverse_matches(template))
        return template, out

    def arm(self, sw, service, template, timeout, now):
        """(Re-)install the template's flows: its timer starts again."""
        template.armed_at = now
        template.expires_at = now + timeout
        template.expiring = False
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
                return self.arm(sw, service, template, EXPIRE_LATER, now)
        return self.drop(sw, template)

    def by_match(self, sw, mkey):
        """The template one of whose flows has match ``mkey``.

        Its key follows from the match (see :meth:`key`): client network,
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
        for service in self.services().marks_at(proto, vip, first_port):
            keys.append(("IP", snet, service.key.fwmark, 0))
        for key in keys:
            template = sw.templates.get(key)
            if template is not None and any(ofmsg.match_key(ofmsg.match(**f)) == mkey
                                            for f in template.matches):
                return template
        return None
