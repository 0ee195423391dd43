"""Forwarding methods: how a client's packet reaches its real server.

One small class per IPVS forwarding method, chosen once per real server by
:func:`method_of`:

* :class:`Masq` (``-m``, NAT): destination address and port rewritten to the
  server; its replies come back through the REVERSE table, rewritten to
  VIP:port; an FTP control connection gets the helper;
* :class:`DirectRoute` (``-g``): only the Ethernet destination changes; the
  server holds the VIP on ``lo`` and answers the client directly;
* :class:`Tunnel` (``-i``): the client's frame, unchanged, leaves by the
  switch's VXLAN port with ``tun_dst`` = the server.

Nothing outside this module asks which method a server uses.
"""

import logging

from lvs_app import ofmsg
from lvs_app import packet as pkt
from lvs_app import pipeline as pl

LOG = logging.getLogger(__name__)


class Forwarding:
    """What every method answers; subclasses fill in the differences."""

    name = None
    needs_mac = True          # the switch must know the server's MAC first
    reverse_nat = False       # replies cross the switch and are rewritten back
    ftp_helper = False        # port-21 connections go through the FTP helper

    def unready(self, sw, dest, hosts):
        """None when ``sw`` can reach ``dest`` now; else why not (for a log line)."""
        if int(dest.address) not in hosts.macs:
            return "mac"
        return None

    def actions(self, sw, dest, proto, dport, mac):
        """Actions that carry a client packet to ``dest`` (before FORWARD).

        ``dport`` is the port on the server, or None to keep the packet's own
        (port-0 and fwmark templates).
        """
        return [ofmsg.set_field(eth_dst=pkt.mac_text(mac))] if mac is not None else []

    def instructions(self, actions):
        """Instructions of a client->server flow: rewrite, then FORWARD."""
        return ofmsg.apply_then_goto(actions, pl.FORWARD)

    def packet_actions(self, actions):
        """PacketOut actions for one client packet: rewritten, it no longer
        matches the VIP, so table 0 sends it on to FORWARD (L2)."""
        return actions + [ofmsg.output(ofmsg.IN_TABLE)]


class Masq(Forwarding):
    name = "masq"
    reverse_nat = True
    ftp_helper = True

    def actions(self, sw, dest, proto, dport, mac):
        actions = super().actions(sw, dest, proto, dport, mac)
        server = int(dest.address)
        actions.append(ofmsg.set_field(**{pkt.ip_field(server, "dst"): pkt.ip_text(server)}))
        if dport is not None:
            actions.append(ofmsg.set_field(**{f"{proto}_dst": dport}))
        return actions

    @staticmethod
    def reverse_actions(proto, vip, vport):
        """A server->client packet leaves as VIP:vport, from the VIP's MAC."""
        return [ofmsg.set_field(**{pkt.ip_field(vip, "src"): pkt.ip_text(vip)}),
                ofmsg.set_field(**{f"{proto}_src": vport}),
                ofmsg.set_field(eth_src=pkt.mac_text(pkt.virtual_mac(vip)))]


class DirectRoute(Forwarding):
    name = "droute"


class Tunnel(Forwarding):
    name = "tunnel"
    needs_mac = False

    def unready(self, sw, dest, hosts):
        if sw.tunnel_port is None:
            LOG.error("switch %016x has no vxlan port for tunnel server %s", sw.dpid,
                      dest.address)
            return "no-tunnel-port"
        return None

    def actions(self, sw, dest, proto, dport, mac):
        # the inner frame goes to the server's VXLAN device (its tunnel MAC),
        # whatever VIP it is for: one device serves every VIP of the server.
        # The outer header's family is the server's (an IPv6 VIP may be
        # served by IPv4 endpoints, IPVS's mixed-family tunnel)
        server = int(dest.address)
        return [ofmsg.set_field(eth_dst=pkt.mac_text(pkt.tunnel_mac(server))),
                ofmsg.set_field(**{"tun_" + pkt.ip_field(server, "dst"): pkt.ip_text(server)}),
                ofmsg.output(sw.tunnel_port or ofmsg.ANY_PORT)]

    def instructions(self, actions):
        return ofmsg.apply(actions)

    def packet_actions(self, actions):
        return list(actions)


METHODS = {cls.name: cls() for cls in (Masq, DirectRoute, Tunnel)}


def method_of(server):
    """The forwarding method of a real server (RealServer or Dest)."""
    return METHODS[server.method]
