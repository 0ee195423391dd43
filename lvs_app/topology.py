"""The fabric: switches, the links between them and where hosts attach (networkx).

Links come from Ryu's LLDP discovery (``ryu-manager lvs_app --observe-links``,
``ryu.topology``): each physical link is reported once per direction.  The
fabric keeps them as an undirected networkx graph of datapath ids whose
edges remember each end's port.  A port that is not a link is an edge port,
where hosts attach; hosts are learned from traffic on edge ports only.

Paths are shortest paths.  Where several next hops are equally short (a
leaf-spine fabric has one per spine), the choice is spread deterministically
by a hash of the destination (a host's MAC): every switch forwards towards
one destination along one path, transit switches need one flow per
destination, and the choice is the same after a restart.  Because each next
hop is one step closer to the destination, the forwarding has no loops,
whatever each switch picks.

Pure: nothing here sends; :class:`Fabric.version` moves on every change so
that its users know when to recompute.
"""

import zlib

import networkx as nx


class Fabric:
    """Switches and links, with next hops cached per (switch, destination switch)."""

    def __init__(self):
        self.graph = nx.Graph()
        self.link_ports = {}            # dpid -> {port: (peer dpid, peer port)}
        self.version = 0
        self._hops = {}                 # (src, dst) -> sorted equal-cost next-hop ports
        # more than one switch is joined by links: forward as a fabric (an
        # attribute, not a property: the PacketIn path reads it)
        self.active = False

    def _changed(self):
        self.version += 1
        self._hops.clear()
        self.active = self.graph.number_of_edges() > 0

    # -- what discovery reports -------------------------------------------------------
    def add_switch(self, dpid):
        if dpid not in self.graph:
            self.graph.add_node(dpid)
            self._changed()

    def remove_switch(self, dpid):
        if dpid in self.graph:
            for peer in list(self.graph.neighbors(dpid)):
                self._drop_edge(dpid, peer)
            self.graph.remove_node(dpid)
            self.link_ports.pop(dpid, None)
            self._changed()

    def add_link(self, src, src_port, dst, dst_port):
        """One direction of a link (LLDP reports each); returns True if new."""
        if self.link_ports.get(src, {}).get(src_port) == (dst, dst_port):
            return False
        self.link_ports.setdefault(src, {})[src_port] = (dst, dst_port)
        self.link_ports.setdefault(dst, {})[dst_port] = (src, src_port)
        ports = self.graph.edges[src, dst]["ports"] if self.graph.has_edge(src, dst) else {}
        ports = dict(ports)
        ports.setdefault(src, set()).add(src_port)
        ports.setdefault(dst, set()).add(dst_port)
        self.graph.add_edge(src, dst, ports=ports)
        self._changed()
        return True

    def remove_link(self, src, src_port, dst, dst_port):
        """A link went down (either direction reported); returns True if it was known."""
        known = self.link_ports.get(src, {}).pop(src_port, None) is not None
        known = self.link_ports.get(dst, {}).pop(dst_port, None) is not None or known
        if not known:
            return False
        if self.graph.has_edge(src, dst):
            ports = self.graph.edges[src, dst]["ports"]
            ports.get(src, set()).discard(src_port)
            ports.get(dst, set()).discard(dst_port)
            if not ports.get(src) or not ports.get(dst):
                self.graph.remove_edge(src, dst)
        self._changed()
        return True

    def _drop_edge(self, a, b):
        for port in list(self.graph.edges[a, b]["ports"].get(a, ())):
            self.link_ports.get(a, {}).pop(port, None)
        for port in list(self.graph.edges[a, b]["ports"].get(b, ())):
            self.link_ports.get(b, {}).pop(port, None)
        self.graph.remove_edge(a, b)

    # -- questions ------------------------------------------------------------------------
    def is_link(self, dpid, port):
        return port in self.link_ports.get(dpid, ())

    def links(self):
        """Every link once per direction: [(src, src port, dst, dst port)]."""
        return sorted((src, port, dst, dport) for src, ports in self.link_ports.items()
                      for port, (dst, dport) in ports.items())

    def next_hops(self, src, dst):
        """The ports of ``src`` that start a shortest path to ``dst`` (sorted)."""
        key = (src, dst)
        hops = self._hops.get(key)
        if hops is None:
            hops = []
            if src in self.graph and dst in self.graph and src != dst:
                try:
                    distance = nx.single_source_shortest_path_length(self.graph, dst)
                except nx.NetworkXError:
                    distance = {}
                if src in distance:
                    for peer in self.graph.neighbors(src):
                        if distance.get(peer) == distance[src] - 1:
                            hops += sorted(self.graph.edges[src, peer]["ports"][src])
            hops = self._hops[key] = sorted(hops)
        return hops

    def next_hop(self, src, dst, spread):
        """The port of ``src`` towards switch ``dst`` for a destination whose
        bytes are ``spread`` (equal-cost choices by its hash); None if unreachable."""
        hops = self.next_hops(src, dst)
        if not hops:
            return None
        return hops[zlib.crc32(spread) % len(hops)]

    def to_dict(self):
        return {"switches": sorted(self.graph.nodes), "links": [list(link) for link in self.links()]}
