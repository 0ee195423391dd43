"""Forwarding across a fabric of switches: by destination MAC, along shortest paths.

With one switch (or switches without links between them) the director keeps
its small learning switch per switch (hosts.py).  Once links are known (see
topology.py) the switches form one fabric:

* hosts are learned on edge ports only, into one table for the whole fabric
  (MAC -> switch, port);
* for every known host, every switch holds one FORWARD flow ``eth_dst=MAC ->
  port``: the host's own port on its switch, the next hop of a shortest path
  elsewhere (equal-cost choices spread by the MAC's hash).  Transit switches
  hold these per-host flows and nothing per connection or per client;
* a frame entering a switch on a link port skips the director's tables: a
  CLASSIFY flow per link port sends it to REVERSE (where only NAT replies of
  this switch's own connections match) and on to FORWARD.  So a new
  connection is punted only by the client's edge switch, which rewrites it
  and holds its flows and template; a NAT reply travels by MAC to the
  client's edge switch (the real server sends it to the client's MAC) and is
  rewritten back there;
* an IP fragment entering on a link port goes straight to FORWARD (two more
  CLASSIFY flows per link port, IPv4 and IPv6): it was punted and handled
  where it entered the fabric (a NAT server's reply fragment is rewritten
  there, with the connection of the client's edge switch: see
  director.py), so no switch it only crosses punts it again;
* a switch with no edge port (a spine) holds no per-VIP flow and no
  fragment punt at all (vips.py): everything it gets comes by links;
* broadcasts and frames for unknown hosts are never flooded over links: the
  controller sends them out of every edge port of every switch (no loops,
  no storms);
* when a link or switch goes or comes, every switch's flows for every host
  are recomputed and replaced in one batch; connections live on, since
  their rewrite state is at the edges;
* after a controller restart the fabric's flows are read back with the rest
  (recovery.py): each per-host flow names a (switch, port) where its host
  may live; once the links are known again, the one that is not a link is
  where the host lives, so hosts are placed again without any traffic and
  every switch's flows are recomputed for the fabric as it is now (a link
  lost while the controller was away is routed around, its port's transit
  flows deleted).  Without ``--observe-links`` the fabric's flows are stale:
  they are deleted.

Pure: handlers return ``(dpid, message)`` pairs.
"""

from lvs_app import ids
from lvs_app import ofmsg
from lvs_app import packet as pkt
from lvs_app import pipeline as pl

CLASSIFY, FORWARD = pl.TABLES[pl.CLASSIFY], pl.TABLES[pl.FORWARD]
LINK_SETTLE = 3.0        # s after a switch connects before it floods (links not known yet)


def transit_fragment_match(port, eth_type):
    """An IP fragment (first or later) that entered by link port ``port``."""
    return ofmsg.ordered_match(("in_port", port), ("eth_type", eth_type),
                               ("ip_frag", (pkt.IP_FRAG_ANY, pkt.IP_FRAG_ANY)))


class FabricForwarding:
    """The fabric's hosts, per-host flows, link-port classification and flooding."""

    def __init__(self, fabric, switches):
        self.fabric = fabric            # topology.Fabric
        self.switches = switches        # dpid -> conntable switch (ports, dpid)
        self.location = {}              # MAC bytes -> (dpid, port)
        self.expected = False           # --observe-links: links will be reported
        self.connected_at = {}          # dpid -> when it connected (flood hold-down)
        self.transit = {}               # dpid -> link ports with a CLASSIFY transit flow
        # MAC -> {(dpid, port)}: per-host flows read back after a restart, where
        # the host may live (placed by resync once the links say which)
        self.recovered = {}
        self.were_links = {}            # dpid -> ports with transit flows when read back

    @property
    def active(self):
        return self.fabric.active

    # -- hosts ----------------------------------------------------------------------------
    def learn(self, dpid, port, mac):
        """A frame from ``mac`` entered ``dpid`` on ``port``; returns flow changes."""
        if mac[0] & 1 or port > ofmsg.MAX_PORT or self.fabric.is_link(dpid, port):
            return []
        if self.location.get(mac) == (dpid, port):
            return []
        self.location[mac] = (dpid, port)
        self.recovered.pop(mac, None)
        return self.host_flows(mac)

    def host_flows(self, mac):
        """Every switch's flow towards ``mac`` (replacing what it had)."""
        where = self.location.get(mac)
        if where is None:
            return []
        home, port = where
        cookie = ids.Cookie(ids.KIND_FABRIC).value
        out = []
        for dpid in self.switches:
            hop = port if dpid == home else self.fabric.next_hop(dpid, home, mac)
            match = ofmsg.match(eth_dst=pkt.mac_text(mac))
            if hop is None:
                out.append((dpid, FORWARD.delete(ids.cookie_mask(ids.KIND_FABRIC), match,
                                                 pl.PRIO_FABRIC)))
                continue
            out.append((dpid, FORWARD.flow(pl.PRIO_FABRIC, match,
                                           ofmsg.apply([ofmsg.output(hop)]), cookie)))
        return out

    def out_port(self, dpid, mac):
        """Where a frame for ``mac`` leaves ``dpid`` (None: unknown)."""
        where = self.location.get(mac)
        if where is None:
            return None
        home, port = where
        return port if home == dpid else self.fabric.next_hop(dpid, home, mac)

    # -- the fabric changed ---------------------------------------------------------------
    def resync(self):
        """Links or switches changed: link-port flows and every host's flows anew."""
        for mac in [m for m, (d, p) in self.location.items()
                    if d not in self.switches or self.fabric.is_link(d, p)]:
            del self.location[mac]
        self._place_recovered()
        out = []
        for dpid in self.switches:
            out += self._transit_flows(dpid)
        for mac in self.location:
            out += self.host_flows(mac)
        return out

    def _transit_flows(self, dpid):
        """Each link port's CLASSIFY flows: its frames to REVERSE, its IP
        fragments (IPv4, IPv6) to FORWARD; a port no longer a link loses them
        (one non-strict delete by in_port)."""
        wanted = set(self.fabric.link_ports.get(dpid, {}))
        have = self.transit.get(dpid, set())
        cookie = ids.Cookie(ids.KIND_FABRIC).value
        out = []
        for port in have - wanted:
            out.append((dpid, CLASSIFY.delete(ids.cookie_mask(ids.KIND_FABRIC),
                                              ofmsg.match(in_port=port))))
        for port in wanted - have:
            out.append((dpid, CLASSIFY.flow(pl.PRIO_TRANSIT, ofmsg.match(in_port=port),
                                            [ofmsg.goto(pl.REVERSE)], cookie)))
            for eth_type in (pkt.ETH_IP, pkt.ETH_IPV6):
                out.append((dpid, CLASSIFY.flow(pl.PRIO_TRANSIT_FRAG, transit_fragment_match(
                    port, eth_type), [ofmsg.goto(pl.FORWARD)], cookie)))
        self.transit[dpid] = wanted
        return out

    def is_transit(self, dpid):
        """A switch of an active fabric with no edge port: every frame it gets
        comes by a link (vips.py gives it no per-VIP flow)."""
        return self.fabric.active and dpid in self.switches and not self.edge_ports(dpid)

    # -- after a restart ----------------------------------------------------------------------
    def recover(self, dpid, flows):
        """The fabric's flows of a (re)connected switch, read back (flow
        statistics, see recovery.py): its link ports with all three transit
        flows (not sent again; resync deletes those that are no links now),
        and where each per-host flow says its host may be.  Without links to
        come (no ``--observe-links``) they are stale: deleted."""
        if not flows:
            return []
        if not self.expected:
            return [(dpid, ofmsg.flow_delete(ids.cookie_mask(ids.KIND_FABRIC)))]
        ports = {}
        for flow in flows:
            if flow.table_id == pl.CLASSIFY and "in_port" in flow.match:
                port = flow.match["in_port"]
                ports[port] = ports.get(port, 0) + 1
            elif flow.table_id == pl.FORWARD and "eth_dst" in flow.match:
                port = next((a.port for inst in flow.instructions
                             for a in getattr(inst, "actions", ()) if hasattr(a, "port")), None)
                if port is not None:
                    self.recovered.setdefault(pkt.mac_bytes(flow.match["eth_dst"]), set()).add(
                        (dpid, port))
        self.transit[dpid] = {port for port, n in ports.items() if n == 3}
        self.were_links[dpid] = set(ports)
        # links found before these flows were read: place the hosts now
        return self.resync() if self.fabric.active else []

    def _place_recovered(self):
        """A host read back and not learned since lives where exactly one of its
        flows points at a port that is no link, and was none (a transit
        switch's flow points at a link, the host's own switch's at the host;
        while links are still being found more than one may: it waits, and
        traffic from the host places it as ever)."""
        for mac, where in list(self.recovered.items()):
            where = {(d, p) for d, p in where
                     if d in self.switches and not self.fabric.is_link(d, p)
                     and p not in self.were_links.get(d, ())}
            self.recovered[mac] = where
            if not where:
                del self.recovered[mac]
            elif len(where) == 1 and mac not in self.location:
                self.location[mac] = next(iter(where))

    def switch_connected(self, dpid, now):
        self.connected_at[dpid] = now
        self.transit.pop(dpid, None)
        self.were_links.pop(dpid, None)
        self.fabric.add_switch(dpid)

    def switch_gone(self, dpid):
        self.connected_at.pop(dpid, None)
        self.transit.pop(dpid, None)
        self.were_links.pop(dpid, None)
        self.fabric.remove_switch(dpid)

    # -- frames the switches could not forward ---------------------------------------------
    def edge_ports(self, dpid):
        """Where hosts may hang: not links, not the VXLAN port (a frame
        without ``tun_dst`` has nowhere to go there)."""
        sw = self.switches.get(dpid)
        if sw is None:
            return []
        return sorted(port for port in sw.ports
                      if port <= ofmsg.MAX_PORT and port != sw.tunnel_port
                      and not self.fabric.is_link(dpid, port))

    def may_flood(self, dpid, now):
        """A switch whose links may still be unknown does not flood (no storms)."""
        if not self.expected:
            return True
        since = self.connected_at.get(dpid)
        return since is not None and now - since >= LINK_SETTLE

    def flood(self, dpid, in_port, data, now):
        """Out of every edge port of every switch (not the one it came in by)."""
        out = []
        for target in self.switches:
            if not self.may_flood(target, now):
                continue
            ports = [p for p in self.edge_ports(target) if not (target == dpid and p == in_port)]
            if ports:
                out.append((target, ofmsg.packet_out(ofmsg.CONTROLLER,
                                                     [ofmsg.output(p) for p in ports], data)))
        return out

    def forward(self, dpid, in_port, data, eth_dst, now):
        """A frame FORWARD had no flow for: along the path, or flooded at the edges."""
        port = None if eth_dst[0] & 1 else self.out_port(dpid, eth_dst)
        if port is None:
            return self.flood(dpid, in_port, data, now)
        if port == in_port:
            return []
        return [(dpid, ofmsg.packet_out(in_port, [ofmsg.output(port)], data))]
