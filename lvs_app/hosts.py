"""Hosts: VIP ARP/ND answers, real-server MAC resolution, L2 learning.

* A VIP is answered with its virtual MAC (``02:1f:`` + the VIP's low 32
  bits): an ARP reply for IPv4, a Neighbor Advertisement for IPv6 -- so
  clients need no configuration.
* Real servers reached by NAT or direct routing need their MAC in the
  switch's rewrite.  It is learned from any packet they send, or asked for
  from the director's own MAC: an ARP probe (IPv4) or a Neighbor
  Solicitation from the director's link-local address (IPv6).  While it is unknown the
  packets for that server wait (a bounded queue) and are handed back to the
  caller once the answer comes: this part never re-enters the director.
  Resolution retries on the clock with back-off and gives up after
  MAX_PROBES; a known MAC that has not been confirmed for MAC_MAX_AGE is
  probed again (it stays in use meanwhile: only an answer changes it).
* Every switch learns where source MACs live and installs a flow toward a
  destination once it knows the port (a small learning switch for what the
  director does not rewrite).
"""

import logging

from lvs_app import ids
from lvs_app import ofmsg
from lvs_app import packet as pkt
from lvs_app import pipeline as pl

LOG = logging.getLogger(__name__)

ARP_QUEUE_LIMIT = 64       # packets held per real server while its MAC is resolved
WAIT_LIMIT = 5.0           # s: a held packet older than this is dropped (the client retries)
PROBE_INTERVAL = 1.0       # s: first retry of an unanswered probe; doubles each time
MAX_PROBES = 5             # then resolution stops until a packet needs the server again
MAC_MAX_AGE = 300.0        # s: a MAC not confirmed for this long is probed again
L2_IDLE = 300              # s: learned MAC flows


class Resolution:
    """A real server whose MAC is being asked for (Faucet's resolver entries)."""

    __slots__ = ("ip", "probes", "last_probe", "waiting")

    def __init__(self, ip):
        self.ip = ip
        self.probes = 0
        self.last_probe = None
        self.waiting = []          # (dpid, in_port, data, since)


class Hosts:
    """Where hosts are: address -> MAC for real servers, MAC -> port per switch."""

    def __init__(self):
        self.macs = {}             # address int (either family) -> MAC bytes (learned)
        self.confirmed = {}        # address int -> when its MAC was last seen
        self.pending = {}          # address int -> Resolution
        self.ports = {}            # dpid -> {MAC bytes: port}
        self.refused = 0           # MAC changes refused for want of evidence
        # a fabric (fabricfwd.py) says which ports are links (nothing is
        # learned there) and which ports a probe floods
        self.is_link = None        # callable(dpid, port) while a fabric has links
        self.flood_ports = None    # callable(dpid) -> ports, or None: OFPP_FLOOD

    # -- VIPs ------------------------------------------------------------------------
    @staticmethod
    def arp_answer(dpid, in_port, p, mac=None):
        """The ARP reply for a request for VIP ``p.ip_dst``, from its virtual MAC
        (or from ``mac``: the director's own for its health-check address)."""
        vmac = mac or pkt.virtual_mac(p.ip_dst)
        reply = pkt.arp_frame(pkt.ARP_REPLY, vmac, p.ip_dst, p.arp_sha, p.ip_src)
        return (dpid, ofmsg.packet_out(ofmsg.CONTROLLER, [ofmsg.output(in_port)], reply))

    @staticmethod
    def nd_answer(dpid, in_port, p, target, lladdr):
        """The Neighbor Advertisement for a solicitation ``p`` for VIP ``target``,
        from its virtual MAC, to the soliciting host (``lladdr``: its
        link-layer address option, else the frame's source)."""
        reply = pkt.na_frame(pkt.virtual_mac(target), target, lladdr or p.eth_src, p.ip_src)
        return (dpid, ofmsg.packet_out(ofmsg.CONTROLLER, [ofmsg.output(in_port)], reply))

    # -- real servers' MACs ----------------------------------------------------------
    def learn(self, ip, mac, now, vips, dpid=None, in_port=None):
        """``ip`` lives at ``mac``.  Returns the packets that were waiting for
        it, as (dpid, in_port, data), for the caller to send on.

        A known address moves to another MAC only on evidence: an answer to
        our own question (a probe is pending), or a packet from the port the
        old MAC lives on (the host changed its card).  Anything else (ARP
        poisoning) is refused, counted and logged.
        """
        if ip in vips or mac[0] & 1:
            return []     # never learn a VIP (DR servers send from it) or multicast
        old = self.macs.get(ip)
        if old is not None and old != mac:
            asked = ip in self.pending
            same_port = dpid is not None and self.ports.get(dpid, {}).get(old) == in_port
            if not (asked or same_port):
                self.refused += 1
                LOG.warning("host %s: %s claims it (port %s), but it is at %s: refused",
                            pkt.ip_text(ip), pkt.mac_text(mac), in_port, pkt.mac_text(old))
                return []
            LOG.warning("host %s moved from %s to %s", pkt.ip_text(ip), pkt.mac_text(old),
                        pkt.mac_text(mac))
        self.macs[ip] = mac
        self.confirmed[ip] = now
        resolution = self.pending.pop(ip, None)
        if resolution is None:
            return []
        return [(dpid, in_port, data) for dpid, in_port, data, since in resolution.waiting
                if now - since <= WAIT_LIMIT]

    def wait(self, dpid, ip, in_port, data, now):
        """Hold a packet until ``ip``'s MAC is known; returns the probe to send
        when it is the first packet waiting."""
        resolution = self.pending.get(ip)
        if resolution is None:
            resolution = self.pending[ip] = Resolution(ip)
        first = not resolution.waiting
        if len(resolution.waiting) < ARP_QUEUE_LIMIT:
            resolution.waiting.append((dpid, in_port, data, now))
        return [self._probe(resolution, dpid, now)] if first else []

    def probe_unknown(self, dpids, wanted, now):
        """Ask every switch in ``dpids`` for each address in ``wanted`` whose MAC
        is not known yet (a switch connected, servers were added)."""
        out = []
        if not dpids:
            return out
        for ip in sorted(wanted):
            if ip in self.macs:
                continue
            resolution = self.pending.get(ip) or self.pending.setdefault(ip, Resolution(ip))
            out += [self._probe(resolution, dpid, now) for dpid in dpids]
        return out

    def refresh(self, now, dpids, wanted):
        """Timed job: retry unanswered probes with back-off, re-probe stale MACs,
        drop packets that waited too long."""
        out = []
        for ip, resolution in list(self.pending.items()):
            resolution.waiting = [w for w in resolution.waiting if now - w[3] <= WAIT_LIMIT]
            if resolution.probes >= MAX_PROBES:
                if not resolution.waiting:
                    LOG.warning("real server %s does not answer ARP (ND) after %d probes",
                                pkt.ip_text(ip), resolution.probes)
                    del self.pending[ip]
                continue
            if resolution.probes == 0:
                due = now               # asked for while no switch was there to ask
            else:
                due = resolution.last_probe + PROBE_INTERVAL * 2 ** (resolution.probes - 1)
            if now >= due and dpids:
                out += [self._probe(resolution, dpid, now) for dpid in dpids]
        for ip in sorted(wanted):
            seen = self.confirmed.get(ip)
            if seen is not None and now - seen >= MAC_MAX_AGE and ip not in self.pending:
                resolution = self.pending[ip] = Resolution(ip)
                out += [self._probe(resolution, dpid, now) for dpid in dpids]
        return out

    def _probe(self, resolution, dpid, now):
        resolution.probes += 1
        resolution.last_probe = now
        if pkt.is_v6(resolution.ip):
            frame = pkt.ns_frame(pkt.DIRECTOR_MAC, pkt.DIRECTOR_LL, resolution.ip)
        else:
            frame = pkt.arp_frame(pkt.ARP_REQUEST, pkt.DIRECTOR_MAC, 0, b"\x00" * 6,
                                  resolution.ip, eth_dst=pkt.BROADCAST)
        if self.flood_ports is None:
            actions = [ofmsg.output(ofmsg.FLOOD)]
        else:
            actions = [ofmsg.output(port) for port in self.flood_ports(dpid)]
        return (dpid, ofmsg.packet_out(ofmsg.CONTROLLER, actions, frame))

    # -- L2 learning -----------------------------------------------------------------
    def learn_port(self, dpid, in_port, mac):
        """Where a source MAC lives on switch ``dpid``; returns flow deletes if it moved.

        No flow is installed for the source itself: a flow is installed only
        when a packet is forwarded to a known destination, so every host's
        first packets still reach the controller and are learned.
        """
        if mac[0] & 1 or in_port > ofmsg.MAX_PORT or (
                self.is_link is not None and self.is_link(dpid, in_port)):
            return []
        ports = self.ports.setdefault(dpid, {})
        if ports.get(mac) not in (None, in_port):
            # the host moved: flows that send to the old port must go
            ports[mac] = in_port
            return [(dpid, pl.TABLES[pl.FORWARD].delete(
                ids.cookie_mask(ids.KIND_L2), ofmsg.match(eth_dst=pkt.mac_text(mac))))]
        ports[mac] = in_port
        return []

    def switch_forward(self, dpid, in_port, data, eth_dst):
        """Forward or flood one packet the director does not rewrite."""
        port = self.ports.get(dpid, {}).get(eth_dst)
        if port is None:
            return [(dpid, ofmsg.packet_out(in_port, [ofmsg.output(ofmsg.FLOOD)], data))]
        if port == in_port:
            return []
        action = ofmsg.output(port)
        return [(dpid, pl.TABLES[pl.FORWARD].flow(
                    pl.PRIO_L2, ofmsg.match(in_port=in_port, eth_dst=pkt.mac_text(eth_dst)),
                    ofmsg.apply([action]), ids.Cookie(ids.KIND_L2).value, idle=L2_IDLE)),
                (dpid, ofmsg.packet_out(in_port, [action], data))]

    def forget_switch(self, dpid):
        self.ports.pop(dpid, None)
