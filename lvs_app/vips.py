"""The per-VIP flows: ARP/ND and traffic for a VIP, punts, fragment punts.

For every VIP of the service table a switch holds: the ARP request punt
(IPv6: the Neighbor Solicitation punt; the controller answers with the
virtual MAC), the classifier flow into SERVICE,
the SYN and RST punts and the stray punt (TCP; a FIN stays in the switch,
see lifecycle.py) or the new-datagram punt (UDP), and the fragment punt; for every NAT real server a fragment punt in REVERSE.  Each
switch remembers what it holds (``sw.vips``, ``sw.fragment_flows``, also as
read back by recovery.py), so a table change adds and removes only the
difference.

A transit switch of a fabric (no edge port: every frame it gets comes by a
link, see fabricfwd.py) holds none of them: frames from links skip these
tables, so they could only punt what the switch merely carries.
"""

from lvs_app import ids as idmod
from lvs_app import ofmsg
from lvs_app import packet as pkt
from lvs_app import pipeline as pl
from lvs_app.forwarding import method_of

CLASSIFY, SERVICE = pl.TABLES[pl.CLASSIFY], pl.TABLES[pl.SERVICE]


class VipFlows:
    """Keeps each switch's per-VIP flows in step with the service table."""

    def __init__(self, config, services, meters):
        self.config = config         # the DirectorAPI (read only)
        self.services = services     # callable() -> the current ServiceIndex
        self.meters = meters         # pipeline.PuntMeters
        self.is_transit = lambda dpid: False   # the fabric's (fabricfwd.py) says

    def sync(self, sw):
        """Install/remove the per-VIP classifier and punt flows to match the
        table (none on a transit switch)."""
        transit = self.is_transit(sw.dpid)
        wanted = set() if transit else {(vip, "tcp" in protos, "udp" in protos)
                                        for vip, protos in self.services().vips.items()}
        out = []
        cookie = idmod.Cookie(idmod.KIND_VIP).value
        for vip, tcp, udp in sw.vips - wanted:
            for table, prio, match in self._vip_matches(vip, tcp, udp):
                out.append(table.delete(idmod.cookie_mask(idmod.KIND_VIP), match, prio))
        for vip, tcp, udp in wanted - sw.vips:
            for table, prio, match in self._vip_matches(vip, tcp, udp):
                if table is CLASSIFY and prio == pl.PRIO_VIP:
                    inst = [ofmsg.goto(pl.SERVICE)]
                elif table is CLASSIFY:
                    inst = ofmsg.punt(self.meters.l2)           # ARP for the VIP
                elif prio == pl.PRIO_STRAY:
                    inst = ofmsg.punt(self.meters.stray)        # no flow carries it
                else:
                    inst = ofmsg.punt(self.meters.service)      # new connections
                out.append(table.flow(prio, match, inst, cookie))
        sw.vips = wanted
        return [(sw.dpid, m) for m in out] + self._sync_fragments(sw, transit)

    def _sync_fragments(self, sw, transit=False):
        """Fragments to each VIP and from each NAT real server go to the
        controller (see fragments.py), above every flow that matches ports."""
        wanted = set()
        if not transit:
            wanted = {(pl.SERVICE, vip) for vip in self.services().vips}
            wanted |= {(pl.REVERSE, int(server.address))
                       for service in self.config.table.services.values()
                       for server in service.servers
                       if method_of(server).reverse_nat}
        out = []
        cookie = idmod.Cookie(idmod.KIND_FRAG).value
        for table_id, ip in sw.fragment_flows - wanted:
            out.append(pl.TABLES[table_id].delete(idmod.cookie_mask(idmod.KIND_FRAG),
                                                  self._fragment_match(table_id, ip),
                                                  pl.PRIO_FRAG))
        for table_id, ip in wanted - sw.fragment_flows:
            out.append(pl.TABLES[table_id].flow(pl.PRIO_FRAG, self._fragment_match(table_id, ip),
                                                ofmsg.punt(self.meters.service), cookie))
        sw.fragment_flows = wanted
        return [(sw.dpid, m) for m in out]

    @staticmethod
    def _fragment_match(table_id, ip):
        side = pkt.ip_field(ip, "dst" if table_id == pl.SERVICE else "src")
        return ofmsg.ordered_match(("eth_type", pkt.eth_type_of(ip)), (side, pkt.ip_text(ip)),
                                   ("ip_frag", (pkt.IP_FRAG_ANY, pkt.IP_FRAG_ANY)))

    @staticmethod
    def _vip_matches(vip, tcp, udp):
        ip = pkt.ip_text(vip)
        eth_type, dst = pkt.eth_type_of(vip), {pkt.ip_field(vip, "dst"): ip}
        if pkt.is_v6(vip):
            # Neighbour Discovery: a solicitation for the VIP (multicast, or
            # unicast to check a cached answer) is the director's to answer
            yield CLASSIFY, pl.PRIO_ARP, ofmsg.match(
                eth_type=eth_type, ip_proto=pkt.PROTO_ICMPV6, icmpv6_type=pkt.ND_SOLICIT,
                ipv6_nd_target=ip)
        else:
            yield CLASSIFY, pl.PRIO_ARP, ofmsg.match(eth_type=pkt.ETH_ARP, arp_op=1, arp_tpa=ip)
        yield CLASSIFY, pl.PRIO_VIP, ofmsg.match(
            eth_type=eth_type, eth_dst=pkt.mac_text(pkt.virtual_mac(vip)), **dst)
        if tcp:
            # SYNs schedule and RSTs close (IPVS's CLOSE, 10 s); a FIN stays
            # in the switch (the connection flow's fin_timeout, see
            # lifecycle.py); what no flow carries asks the controller
            for flag in (pkt.TCP_SYN, pkt.TCP_RST):
                yield SERVICE, pl.PRIO_PUNT_TCP + flag, ofmsg.match(
                    eth_type=eth_type, ip_proto=pkt.PROTO_TCP, tcp_flags=(flag, flag), **dst)
            yield SERVICE, pl.PRIO_STRAY, ofmsg.match(eth_type=eth_type, ip_proto=pkt.PROTO_TCP,
                                                      **dst)
        if udp:
            yield SERVICE, pl.PRIO_PUNT_UDP, ofmsg.match(
                eth_type=eth_type, ip_proto=pkt.PROTO_UDP, **dst)

    def wanted_macs(self):
        """Addresses of the real servers whose MAC the switches need."""
        return {int(server.address) for service in self.config.table.services.values()
                for server in service.servers
                if method_of(server).needs_mac}
