"""One director across a leaf-spine fabric of fake switches.

Leaves 1, 2, 3 and spines 101, 102; every leaf is linked to both spines
(ports 11 and 12 on a leaf, port N on a spine for leaf N), so the fabric has
loops.  Hosts hang off leaf ports 1-4 and answer ARP for their address.  A
frame a switch sends out of a link port enters the peer switch; one sent out
of a host port is delivered (and recorded).  Leaves given a tunnel address
also have a VXLAN port (20): a frame sent out of it is encapsulated as OVS's
userspace tunnelling does it (an outer UDP packet from the leaf's address to
``tun_dst``:4789, addressed to the server's MAC) and enters the same leaf
again from LOCAL; a server receives the inner frame.
"""

import ipaddress
import re
from types import SimpleNamespace

import pytest

from lvs_app import ids
from lvs_app import packet as lvspkt
from lvs_app import pipeline as pl
from lvs_app.manager import Manager
from lvs_app.packet import mac_text as pkt_mac
from tests.behaviour.conftest import InProcessClient, fragment, mac_of
from tests.fakeswitch import FakeClock, FakeSwitch, arp_request, tcp, udp

from lvs_app.rest import RestApp

VIP, VMAC = "10.0.0.100", "02:1f:0a:00:00:64"
LEAVES, SPINES = (1, 2, 3), (101, 102)
HOSTS = {"10.0.0.1": (1, 1), "10.0.0.2": (2, 1), "10.0.0.11": (2, 2),
         "10.0.0.12": (3, 1), "10.0.0.13": (3, 2)}
LINKS = [(leaf, 11, 101, leaf) for leaf in LEAVES] + [(leaf, 12, 102, leaf) for leaf in LEAVES]
VXLAN_PORT, LOCAL, VXLAN_UDP = 20, 0xFFFFFFFE, 4789


class Datapath:
    def __init__(self, lab, dpid):
        self.lab, self.id = lab, dpid

    def send_msg(self, msg):
        name = type(msg).__name__
        sw = self.lab.switches[self.id]
        if name == "OFPFlowMod":
            pl.check(msg)
        if name == "OFPFlowStatsRequest":
            self.lab.replies.append(("flows", self.id, msg.xid, sw.flow_stats(msg)))
            return
        if name == "OFPAggregateStatsRequest":
            flows = sw.flows(None, msg.cookie, msg.cookie_mask)
            self.lab.replies.append(("stats", self.id, msg.xid, SimpleNamespace(
                packet_count=sum(f.packet_count for f in flows),
                byte_count=sum(f.byte_count for f in flows), flow_count=len(flows))))
            return
        if name in ("OFPTableStatsRequest", "OFPEchoRequest", "OFPMeterMod",
                    "OFPMeterConfigStatsRequest", "OFPMeterStatsRequest"):
            return
        self.lab.outbox += [(self.id, port, p) for port, p in sw.apply(msg)]


class FabricLab:
    def __init__(self, tunnels=None):
        self.clock = FakeClock()
        self.manager = Manager(clock=lambda: self.clock.now, strict=True)
        self.client = InProcessClient(RestApp(self.manager.api), self.settle)
        self.tunnels = dict(tunnels or {})      # leaf -> its tunnel source address
        self.switches = {dpid: FakeSwitch(dpid=dpid, n_tables=pl.N_TABLES,
                                          ports=list(range(1, 5)) + [11, 12] if dpid in LEAVES
                                          else list(LEAVES), clock=self.clock)
                         for dpid in LEAVES + SPINES}
        for leaf in self.tunnels:
            self.switches[leaf].ports.append(VXLAN_PORT)
        self.encapsulated = []       # (leaf, outer packet) that left a VXLAN port
        self.unrouted = []           # (leaf, frame) sent out of a VXLAN port without tun_dst
        self.wires = {}
        for a, ap, b, bp in LINKS:
            self.wires[(a, ap)], self.wires[(b, bp)] = (b, bp), (a, ap)
        self.outbox, self.replies, self.delivered = [], [], []
        self.carried = []            # frames that crossed a link
        self.punts = 0               # PacketIns the director got (not counting ARP)
        self.punted = []             # ... the switch of each
        for dpid, sw in self.switches.items():
            self.manager.switch_connected(dpid, Datapath(self, dpid), {
                p: f"vxlan-l{dpid}" if p == VXLAN_PORT else f"p{p}" for p in sw.ports})
        self.settle()
        for a, ap, b, bp in LINKS:           # LLDP reports each direction
            self.manager.link_changed(a, ap, b, bp, True)
            self.manager.link_changed(b, bp, a, ap, True)
        self.settle()

    def lvsadm(self, line):
        import io
        import shlex

        from lvs_app import cli, ipvsadm
        out = io.StringIO()
        assert cli.run(ipvsadm.parse_args(shlex.split(line)), self.client, io.StringIO(),
                       out) == 0
        return out.getvalue()

    def settle(self):
        """Carry frames over links, hand PacketIns to the manager, until quiet."""
        while True:
            progressed = False
            if self.outbox:
                progressed = True
                dpid, port, p = self.outbox.pop(0)
                peer = self.wires.get((dpid, port))
                if port == VXLAN_PORT and dpid in self.tunnels:
                    self._encapsulate(dpid, p)
                elif peer is not None:
                    self.carried.append(p)
                    self.outbox += [(peer[0], q, x) for q, x in self.switches[peer[0]].send(
                        dict(p, in_port=peer[1]), now=self.clock.now)]
                else:
                    self._deliver(dpid, port, p)
            for dpid, sw in self.switches.items():
                for rec in sw.take_packet_ins():
                    progressed = True
                    if rec.raw[12:14] != b"\x08\x06":
                        self.punts += 1
                        self.punted.append(dpid)
                    self.manager.packet_in(dpid, rec.match["in_port"], rec.raw, rec.table_id)
                for rec in sw.take_flow_removed():
                    progressed = True
                    self.manager.flow_removed(dpid, rec.cookie, rec.match, rec.duration,
                                              rec.reason, rec.packet_count,
                                              byte_count=rec.byte_count, table_id=rec.table_id)
            if self.replies:
                progressed = True
                kind, dpid, xid, body = self.replies.pop(0)
                if kind == "flows":
                    self.manager.flow_stats(dpid, body, False, xid)
                else:
                    self.manager.stats_reply(dpid, xid, body)
            if not progressed:
                return

    def _encapsulate(self, leaf, inner):
        """OVS's native tunnelling: the outer packet (VNI 0) re-enters the
        leaf from LOCAL, to the server's MAC (its neighbour entry)."""
        server = inner.get("tun_ipv4_dst")
        if server is None:              # OVS: no route, dropped
            self.unrouted.append((leaf, inner))
            return
        outer = udp(self.tunnels[leaf], server, 49152 + len(self.encapsulated), VXLAN_UDP,
                    in_port=LOCAL, eth_src=f"02:ee:00:00:00:{leaf:02x}", eth_dst=mac_of(server),
                    _inner={k: v for k, v in inner.items() if not k.startswith("tun_")})
        self.encapsulated.append((leaf, outer))
        self.outbox += [(leaf, q, x) for q, x in self.switches[leaf].send(
            outer, now=self.clock.now)]

    def _deliver(self, dpid, port, p):
        """A host gets a frame: it answers ARP for its address, else records it
        (a VXLAN packet to it: the inner frame, as its vx0 would)."""
        host = next((ip for ip, where in HOSTS.items() if where == (dpid, port)), None)
        if host is None:
            return
        if p.get("udp_dst") == VXLAN_UDP and p.get("ipv4_dst") == host and "_inner" in p:
            self.delivered.append((host, dict(p["_inner"], _outer_src=p["ipv4_src"])))
            return
        if p.get("eth_type") == 0x0806 and p.get("arp_op") == 1 and p.get("arp_tpa") == host:
            self.send(host, {"eth_src": mac_of(host), "eth_dst": p["eth_src"],
                             "eth_type": 0x0806, "arp_op": 2, "arp_spa": host,
                             "arp_tpa": p["arp_spa"], "arp_sha": mac_of(host),
                             "arp_tha": p["arp_sha"]})
            return
        self.delivered.append((host, p))

    def send(self, host, packet):
        """A frame from ``host`` enters its leaf; returns what hosts received."""
        before = len(self.delivered)
        dpid, port = HOSTS[host]
        self.outbox += [(dpid, q, x) for q, x in self.switches[dpid].send(
            dict(packet, in_port=port), now=self.clock.now)]
        self.settle()
        return self.delivered[before:]

    def syn(self, client, sport, flags="S", dport=80, payload=b""):
        return self.send(client, tcp(client, VIP, sport, dport, flags=flags,
                                     eth_src=mac_of(client), eth_dst=VMAC, payload=payload))

    def spine(self, dpid, up):
        """A whole switch goes away (its links with it, as ryu.topology reports
        them) or comes back empty (powered off and on: no flows left)."""
        links = [link for link in LINKS if link[2] == dpid]
        if not up:
            self.manager.switch_disconnected(dpid)
            for a, ap, b, bp in links:
                self.manager.link_changed(a, ap, b, bp, False)
                self.manager.link_changed(b, bp, a, ap, False)
                self.wires.pop((a, ap), None)
                self.wires.pop((b, bp), None)
            self.settle()
            return
        sw = self.switches[dpid] = FakeSwitch(dpid=dpid, n_tables=pl.N_TABLES,
                                              ports=list(LEAVES), clock=self.clock)
        self.manager.switch_connected(dpid, Datapath(self, dpid), {p: f"p{p}" for p in sw.ports})
        self.settle()
        for a, ap, b, bp in links:
            self.wires[(a, ap)], self.wires[(b, bp)] = (b, bp), (a, ap)
            self.manager.link_changed(a, ap, b, bp, True)
            self.manager.link_changed(b, bp, a, ap, True)
        self.settle()

    def forward_port(self, dpid, host):
        """The port switch ``dpid``'s FORWARD flow sends frames for ``host`` out of."""
        flows = [f for f in self.switches[dpid].flows(pl.FORWARD, priority=pl.PRIO_FABRIC)
                 if f.match.get("eth_dst") == mac_of(host)]
        assert len(flows) == 1, flows
        return int(re.search(r"output:(\d+)", flows[0].text()).group(1))

    def link(self, a, ap, b, bp, up):
        self.manager.link_changed(a, ap, b, bp, up)
        self.manager.link_changed(b, bp, a, ap, up)
        if up:
            self.wires[(a, ap)], self.wires[(b, bp)] = (b, bp), (a, ap)
        else:
            self.wires.pop((a, ap), None)
            self.wires.pop((b, bp), None)
        self.settle()


def _hello(lab):
    for ip in HOSTS:      # every host says hello (learned on its edge port)
        lab.send(ip, arp_request(ip, "10.0.0.250", sha=mac_of(ip)))
    return lab


@pytest.fixture
def fabric():
    return _hello(FabricLab())


TUNNEL_SOURCES = {1: "10.0.0.254", 2: "10.0.0.253"}


@pytest.fixture
def tunnel_fabric():
    """VXLAN ports on leaves 1 and 2, the leaves of the clients 10.0.0.1 and 10.0.0.2."""
    return _hello(FabricLab(tunnels=TUNNEL_SOURCES))


def test_links_make_one_fabric_and_hosts_are_learned_on_edge_ports_only(fabric):
    view = fabric.client.request("GET", "/ipvs/fabric")
    assert view["switches"] == [1, 2, 3, 101, 102] and len(view["links"]) == 12
    assert {mac: tuple(where) for mac, where in view["hosts"].items()} == {
        mac_of(ip): where for ip, where in HOSTS.items()}


def test_a_broadcast_reaches_every_host_once_and_never_loops(fabric):
    fabric.carried.clear()
    got = fabric.send("10.0.0.1", arp_request("10.0.0.1", "10.0.0.99", sha=mac_of("10.0.0.1")))
    assert sorted(host for host, _ in got) == sorted(set(HOSTS) - {"10.0.0.1"})
    assert fabric.carried == []          # flooded at the edges by the controller, not over links


def test_hosts_reach_each_other_along_paths_with_one_flow_per_host_in_transit(fabric):
    got = fabric.send("10.0.0.1", tcp("10.0.0.1", "10.0.0.13", 5000, 22, eth_src=mac_of(
        "10.0.0.1"), eth_dst=mac_of("10.0.0.13")))
    assert [host for host, _ in got] == ["10.0.0.13"]
    for dpid in SPINES:
        flows = [f for f in fabric.switches[dpid].flows(pl.FORWARD)
                 if ids.Cookie.parse(f.cookie).kind == ids.KIND_FABRIC]
        assert sorted(f.match["eth_dst"] for f in flows) == sorted(
            mac_of(ip) for ip in HOSTS)


@pytest.mark.parametrize("method", ["-m", "-g"])
def test_rr_from_clients_on_two_leaves_one_punt_per_connection_rewrites_at_the_edge(
        fabric, method):
    fabric.lvsadm("-A -t 10.0.0.100:80 -s rr")
    for rs in ("10.0.0.11", "10.0.0.12", "10.0.0.13"):
        fabric.lvsadm(f"-a -t 10.0.0.100:80 -r {rs} {method}")
    fabric.syn("10.0.0.1", 39999)                          # MACs resolved
    fabric.punts = 0
    reached = []
    for i, client in enumerate(["10.0.0.1", "10.0.0.2"] * 3):
        got = fabric.syn(client, 40000 + i)
        assert len(got) == 1
        host, p = got[0]
        reached.append(host)
        assert p["eth_dst"] == mac_of(host)
        assert p["ipv4_dst"] == (host if method == "-m" else VIP)
        got = fabric.syn(client, 40000 + i, flags="A", payload=b"x")   # stays in the switches
        assert [h for h, _ in got] == [host]
    assert fabric.punts == 6                                # one per new connection
    assert sorted(reached) == ["10.0.0.11", "10.0.0.11", "10.0.0.12", "10.0.0.12",
                               "10.0.0.13", "10.0.0.13"]
    # transit switches and the servers' leaves hold nothing per connection
    for dpid in SPINES + (3,):
        kinds = {ids.Cookie.parse(f.cookie).kind for f in fabric.switches[dpid].flows()}
        assert not kinds & {ids.KIND_CONN, ids.KIND_TEMPLATE, ids.KIND_REVERSE}, dpid
    if method == "-m":
        # the server on leaf 3 answers the client on leaf 1: rewritten back at leaf 1
        conns = fabric.manager.director.switches[1].conns
        key = next(k for k, c in conns.items() if str(c.dest.address) == "10.0.0.12")
        _, client, cport, _, _ = key
        client = str(ipaddress.IPv4Address(client))
        got = fabric.send("10.0.0.12", tcp("10.0.0.12", client, 80, cport, flags="SA",
                                           eth_src=mac_of("10.0.0.12"), eth_dst=mac_of(client)))
        assert [(h, p["ipv4_src"], p["tcp_src"], p["eth_src"]) for h, p in got] == [
            (client, VIP, 80, VMAC)]


def test_persistence_keeps_a_client_on_one_server_across_the_fabric(fabric):
    fabric.lvsadm("-A -t 10.0.0.100:80 -s rr -p 300")
    for rs in ("10.0.0.11", "10.0.0.12", "10.0.0.13"):
        fabric.lvsadm(f"-a -t 10.0.0.100:80 -r {rs} -m")
    first = {fabric.syn("10.0.0.2", 41000 + i)[0][0] for i in range(4)}
    assert len(first) == 1


def test_switch_persistence_across_the_fabric(fabric):
    """--pe switch: the client's edge switch holds the template's SYN and
    reply flows; later connections cost no PacketIn anywhere, and a server on
    another leaf answers through the edge's reply flow."""
    fabric.lvsadm("-A -t 10.0.0.100:80 -s rr -p 300 --pe switch")
    for rs in ("10.0.0.11", "10.0.0.12", "10.0.0.13"):
        fabric.lvsadm(f"-a -t 10.0.0.100:80 -r {rs} -m")
    client = "10.0.0.1"                                   # on leaf 1
    home = fabric.syn(client, 42000)[0][0]
    punts = fabric.punts
    for i in range(1, 4):
        assert [h for h, _ in fabric.syn(client, 42000 + i)] == [home]
    assert fabric.punts == punts
    kinds = {ids.Cookie.parse(f.cookie).kind for f in fabric.switches[1].flows()}
    assert {ids.KIND_TEMPLATE_SYN, ids.KIND_TEMPLATE_NAT} <= kinds
    for dpid in SPINES + (2, 3):
        kinds = {ids.Cookie.parse(f.cookie).kind for f in fabric.switches[dpid].flows()}
        assert not kinds & {ids.KIND_TEMPLATE_SYN, ids.KIND_TEMPLATE_NAT}, dpid
    got = fabric.send(home, tcp(home, client, 80, 42003, flags="SA", eth_src=mac_of(home),
                                eth_dst=mac_of(client)))
    assert [(h, p["ipv4_src"], p["tcp_src"], p["eth_src"]) for h, p in got] == [
        (client, VIP, 80, VMAC)]


def test_a_spine_link_down_reroutes_and_connections_live_on(fabric):
    """The link a connection's path uses goes down: leaf 1's flow for the
    server's MAC moves to the other uplink (and the spine's towards leaf 1
    goes away), the connection's packets arrive without a PacketIn; up again,
    then the other uplink down: back on the first."""
    client, server = "10.0.0.1", "10.0.0.12"
    fabric.lvsadm("-A -t 10.0.0.100:80 -s rr")
    fabric.lvsadm(f"-a -t 10.0.0.100:80 -r {server} -m")
    fabric.syn(client, 42000)
    first = fabric.forward_port(1, server)
    spine = {11: 101, 12: 102}
    second = 23 - first                                      # the other uplink, 11 or 12
    fabric.punts = 0
    fabric.link(1, first, spine[first], 1, False)            # the link the path used
    assert fabric.forward_port(1, server) == second
    # the spine that lost leaf 1 reaches it the long way, through another leaf;
    # the other spine by its port to leaf 1
    assert fabric.forward_port(spine[first], client) in (2, 3)
    assert fabric.forward_port(spine[second], client) == 1
    got = fabric.syn(client, 42000, flags="A", payload=b"more")
    assert [h for h, _ in got] == [server]
    assert fabric.punts == 0
    fabric.link(1, first, spine[first], 1, True)
    fabric.link(1, second, spine[second], 1, False)
    assert fabric.forward_port(1, server) == first
    got = fabric.syn(client, 42000, flags="A", payload=b"again")
    assert [h for h, _ in got] == [server]
    assert fabric.punts == 0
    # and a new connection works too
    assert [h for h, _ in fabric.syn(client, 42001)] == [server]
    assert fabric.punts == 1


def test_equal_cost_next_hops_spread_by_the_destination_and_never_change_by_chance(fabric):
    """A leaf's two uplinks are equally short: each destination MAC picks one
    by its hash (zlib.crc32, not Python's salted hash()), the same on every
    call, in a fabric built in another order and after a restart; many
    destinations use both."""
    from lvs_app.topology import Fabric

    def build(links):
        f = Fabric()
        for a, ap, b, bp in links:
            f.add_link(a, ap, b, bp)
            f.add_link(b, bp, a, ap)
        return f

    one, other = build(LINKS), build(list(reversed(LINKS)))
    macs = [bytes([2, 0, 10, 0, i // 256, i % 256]) for i in range(200)]
    picks = [one.next_hop(1, 3, mac) for mac in macs]
    assert picks == [one.next_hop(1, 3, mac) for mac in macs]          # every call
    assert picks == [other.next_hop(1, 3, mac) for mac in macs]        # any build order
    assert one.next_hops(1, 3) == [11, 12]
    assert 70 <= picks.count(11) <= 130 and picks.count(11) + picks.count(12) == 200
    # spines have one shortest next hop to a leaf: no choice there
    assert {one.next_hop(101, 3, mac) for mac in macs} == {3}
    # the installed flows follow it: leaf 1's uplink for each remote host
    for ip, (leaf, _) in HOSTS.items():
        if leaf != 1:
            mac = bytes.fromhex(mac_of(ip).replace(":", ""))
            assert fabric.forward_port(1, ip) == one.next_hop(1, leaf, mac)
    assert {fabric.forward_port(1, ip) for ip, (leaf, _) in HOSTS.items() if leaf != 1} \
        == {11, 12}


def test_vip_arp_is_answered_by_the_clients_edge_switch_and_crosses_no_link(fabric):
    fabric.lvsadm("-A -t 10.0.0.100:80 -s rr")
    fabric.lvsadm("-a -t 10.0.0.100:80 -r 10.0.0.12 -m")
    for client in ("10.0.0.1", "10.0.0.2"):
        fabric.carried.clear()
        got = fabric.send(client, arp_request(client, VIP, sha=mac_of(client)))
        assert [(h, p["arp_op"], p["arp_spa"], p["arp_sha"], p["eth_src"]) for h, p in got] \
            == [(client, 2, VIP, VMAC, VMAC)]
        assert fabric.carried == []                    # answered at the edge, nothing flooded


def test_a_frame_from_a_link_is_never_scheduled_by_a_transit_switch(fabric):
    fabric.lvsadm("-A -t 10.0.0.100:80 -s rr")
    fabric.lvsadm("-a -t 10.0.0.100:80 -r 10.0.0.12 -m")
    for dpid in SPINES:
        transit = fabric.switches[dpid].flows(pl.CLASSIFY, priority=pl.PRIO_TRANSIT)
        assert sorted(f.match["in_port"] for f in transit) == list(LEAVES)
    # a SYN to the VIP that arrives over a link (no edge switch rewrote it)
    spine = fabric.switches[101]
    fabric.outbox += [(101, q, x) for q, x in spine.send(tcp(
        "10.0.0.1", VIP, 43000, 80, eth_src=mac_of("10.0.0.1"), eth_dst=VMAC, in_port=1),
        now=fabric.clock.now)]
    fabric.settle()
    assert fabric.manager.director.switches[101].conns == {}


def test_tunnel_from_clients_on_two_leaves_encapsulates_at_each_clients_edge(tunnel_fabric):
    """-i across the fabric: each client's own leaf punts its SYN once,
    encapsulates (tun_dst) from its own address, and the outer packet
    crosses the fabric by the server's MAC; no other switch holds a flow
    per connection or encapsulates."""
    lab = tunnel_fabric
    lab.lvsadm("-A -t 10.0.0.100:80 -s rr")
    for rs in ("10.0.0.11", "10.0.0.12", "10.0.0.13"):
        lab.lvsadm(f"-a -t 10.0.0.100:80 -r {rs} -i")
    lab.punts, lab.carried = 0, []
    reached = []
    for i, client in enumerate(["10.0.0.1", "10.0.0.2"] * 3):
        got = lab.syn(client, 44000 + i)
        assert len(got) == 1, got
        host, inner = got[0]
        reached.append(host)
        leaf = HOSTS[client][0]
        # the client's frame, to the server's VXLAN device, from the client's leaf
        assert (inner["ipv4_src"], inner["ipv4_dst"], inner["tcp_dst"]) == (client, VIP, 80)
        assert inner["eth_dst"] == pkt_mac(lvspkt.tunnel_mac(int(ipaddress.ip_address(host))))
        assert inner["_outer_src"] == TUNNEL_SOURCES[leaf]
        got = lab.syn(client, 44000 + i, flags="A", payload=b"x")    # stays in the switches
        assert [h for h, _ in got] == [host]
    assert lab.punts == 6                                   # one per new connection
    assert sorted(reached) == ["10.0.0.11", "10.0.0.11", "10.0.0.12", "10.0.0.12",
                               "10.0.0.13", "10.0.0.13"]
    assert {leaf for leaf, _ in lab.encapsulated} == {1, 2}
    for dpid, sw in lab.switches.items():
        encaps = [f for f in sw.flows() if "tun_ipv4_dst" in str(f.text())]
        conns = [f for f in sw.flows() if ids.Cookie.parse(f.cookie).kind == ids.KIND_CONN]
        if dpid in (1, 2):
            assert encaps and len(conns) == 3, dpid           # its own clients' connections
        else:
            assert not encaps and not conns, dpid
    # what crossed the links was outer packets (and no inner frame)
    assert lab.carried and all(p.get("udp_dst") == VXLAN_UDP for p in lab.carried)
    assert lab.unrouted == []           # floods leave by edge ports, never by a VXLAN port


def _exchange(lab, client, server, cport, payload):
    """Client data to the VIP and the server's answer; returns (where the data
    went, what the client got back)."""
    there = lab.syn(client, cport, flags="A", payload=payload)
    back = lab.send(server, tcp(server, client, 80, cport, flags="A", payload=b"ok",
                                eth_src=mac_of(server), eth_dst=mac_of(client)))
    return ([(h, p["ipv4_dst"]) for h, p in there],
            [(h, p["ipv4_src"], p["tcp_src"]) for h, p in back])


def test_a_spine_going_down_and_coming_back_breaks_no_connection(fabric):
    """The spine that carries a NAT connection's path goes away whole: its
    packets both ways move to the other spine at once (no PacketIn), a new
    connection works; it comes back empty, gets the fabric's flows again,
    and the old connection still flows, whichever spine its path takes."""
    client, server = "10.0.0.1", "10.0.0.12"                 # leaf 1, leaf 3
    fabric.lvsadm("-A -t 10.0.0.100:80 -s rr")
    fabric.lvsadm(f"-a -t 10.0.0.100:80 -r {server} -m")
    assert [h for h, _ in fabric.syn(client, 45000)] == [server]
    assert _exchange(fabric, client, server, 45000, b"a") == (
        [(server, server)], [(client, VIP, 80)])
    uplink = fabric.forward_port(1, server)
    used = {11: 101, 12: 102}[uplink]
    other = 203 - used
    fabric.punts = 0
    fabric.spine(used, False)
    assert fabric.forward_port(1, server) == {101: 11, 102: 12}[other]
    assert fabric.forward_port(3, client) == {101: 11, 102: 12}[other]
    assert used not in fabric.client.request("GET", "/ipvs/fabric")["switches"]
    assert _exchange(fabric, client, server, 45000, b"b") == (
        [(server, server)], [(client, VIP, 80)])
    assert fabric.punts == 0                                   # rerouted in the switches
    assert [h for h, _ in fabric.syn(client, 45001)] == [server]   # a new connection
    assert fabric.punts == 1
    fabric.spine(used, True)
    back = fabric.switches[used]
    assert sorted(f.match["eth_dst"] for f in back.flows(pl.FORWARD, priority=pl.PRIO_FABRIC)) \
        == sorted(mac_of(ip) for ip in HOSTS)
    assert sorted(f.match["in_port"] for f in back.flows(pl.CLASSIFY, priority=pl.PRIO_TRANSIT)) \
        == list(LEAVES)
    for cport in (45000, 45001):                               # paths may move; nothing breaks
        assert _exchange(fabric, client, server, cport, b"c") == (
            [(server, server)], [(client, VIP, 80)])
    assert [h for h, _ in fabric.syn(client, 45002)] == [server]
    assert fabric.punts == 2
    assert len(fabric.manager.director.switches[1].conns) == 3


def test_a_fragmented_nat_reply_across_leaves_is_punted_once_where_it_enters(fabric):
    """Fragments cannot be matched by port, so a NAT server's are punted; across
    the fabric only the switch where they enter (the server's leaf) does it:
    the controller rewrites them there with the connection the client's edge
    switch holds, and they cross spines and the client's leaf as any frame.
    Spines hold no per-VIP flow and no fragment punt."""
    client, server = "10.0.0.1", "10.0.0.12"                # leaf 1, leaf 3
    fabric.lvsadm("-A -u 10.0.0.100:53 -s rr")
    fabric.lvsadm(f"-a -u 10.0.0.100:53 -r {server} -m")
    fabric.punted.clear()
    got = fabric.send(client, fragment(client, VIP, 77, True))
    assert [(h, p["ipv4_dst"], p["udp_dst"]) for h, p in got] == [(server, server, 53)]
    got = fabric.send(client, fragment(client, VIP, 77, False))
    assert [(h, p["ipv4_dst"]) for h, p in got] == [(server, server)]
    assert fabric.punted == [1, 1]                           # at the client's edge
    fabric.punted.clear()
    got = fabric.send(server, fragment(server, client, 900, True, 53, 5353, eth_dst=mac_of(client)))
    assert [(h, p["ipv4_src"], p["udp_src"], p["eth_src"]) for h, p in got] == [
        (client, VIP, 53, VMAC)]
    got = fabric.send(server, fragment(server, client, 900, False, eth_dst=mac_of(client)))
    assert [(h, p["ipv4_src"], p["eth_src"]) for h, p in got] == [(client, VIP, VMAC)]
    assert fabric.punted == [3, 3]                           # once each, where it entered
    for dpid in SPINES:
        kinds = {ids.Cookie.parse(f.cookie).kind for f in fabric.switches[dpid].flows()}
        assert not kinds & {ids.KIND_VIP, ids.KIND_FRAG}, dpid
    for dpid in LEAVES:
        kinds = {ids.Cookie.parse(f.cookie).kind for f in fabric.switches[dpid].flows()}
        assert {ids.KIND_VIP, ids.KIND_FRAG} <= kinds, dpid


def _restart(lab, observe_links=True):
    """A new controller (the old one killed): the switches keep their flows and
    connect to it; it reads them back.  No link is reported yet."""
    lab.manager = Manager(clock=lambda: lab.clock.now, strict=True)
    lab.manager.director.fabricfwd.expected = observe_links      # --observe-links
    lab.client = InProcessClient(RestApp(lab.manager.api), lab.settle)
    for dpid, sw in lab.switches.items():
        lab.manager.switch_connected(dpid, Datapath(lab, dpid), {p: f"p{p}" for p in sw.ports})
    lab.settle()


def test_a_restarted_controller_rederives_the_fabric_from_its_flows(fabric):
    """The link leaf 1 - spine 101 dies while the controller is away.  The new
    one reads the fabric's flows back: hosts keep reaching each other before
    any link is known; once LLDP reports the links (not the dead one), every
    host is placed again without sending anything, leaf 1's flows leave by
    its other uplink, and the dead link's transit flows are deleted."""
    assert fabric.forward_port(1, "10.0.0.2") == 11           # through spine 101
    fabric.wires.pop((1, 11))
    fabric.wires.pop((101, 1))
    _restart(fabric)
    got = fabric.send("10.0.0.12", tcp("10.0.0.12", "10.0.0.13", 5000, 22, eth_src=mac_of(
        "10.0.0.12"), eth_dst=mac_of("10.0.0.13")))               # the old flows carry it
    assert [h for h, _ in got] == ["10.0.0.13"]
    fabric.punts = 0
    for a, ap, b, bp in LINKS:
        if (a, ap) != (1, 11):
            fabric.manager.link_changed(a, ap, b, bp, True)
            fabric.manager.link_changed(b, bp, a, ap, True)
    fabric.settle()
    view = fabric.client.request("GET", "/ipvs/fabric")
    assert {mac: tuple(where) for mac, where in view["hosts"].items()} == {
        mac_of(ip): where for ip, where in HOSTS.items()}
    assert fabric.punts == 0                                    # placed from the flows
    for ip, (leaf, _) in HOSTS.items():
        if leaf != 1:
            assert fabric.forward_port(1, ip) == 12, ip
    assert fabric.forward_port(101, "10.0.0.1") != 1
    assert sorted(f.match["in_port"] for f in fabric.switches[1].flows(
        pl.CLASSIFY, priority=pl.PRIO_TRANSIT)) == [12]
    assert sorted(f.match["in_port"] for f in fabric.switches[101].flows(
        pl.CLASSIFY, priority=pl.PRIO_TRANSIT)) == [2, 3]
    for src, dst in (("10.0.0.1", "10.0.0.13"), ("10.0.0.13", "10.0.0.1"),
                     ("10.0.0.1", "10.0.0.2")):
        got = fabric.send(src, tcp(src, dst, 5001, 22, eth_src=mac_of(src), eth_dst=mac_of(dst)))
        assert [h for h, _ in got] == [dst], (src, dst)


def test_a_controller_restarted_without_observe_links_deletes_the_fabrics_flows(fabric):
    _restart(fabric, observe_links=False)
    for dpid, sw in fabric.switches.items():
        assert not [f for f in sw.flows() if ids.Cookie.parse(f.cookie).kind == ids.KIND_FABRIC]


def test_hosts_are_placed_from_flows_read_back_after_the_links_were_found(fabric):
    """The links are known again before a switch's flows are read back (its
    flow statistics came late): its hosts are placed when they come."""
    leaf3 = fabric.switches[3]
    fabric.manager = Manager(clock=lambda: fabric.clock.now, strict=True)
    fabric.manager.director.fabricfwd.expected = True
    fabric.client = InProcessClient(RestApp(fabric.manager.api), fabric.settle)
    held = []
    for dpid, sw in fabric.switches.items():
        datapath = Datapath(fabric, dpid)
        if dpid == 3:                          # its flow statistics wait
            datapath.send_msg = lambda msg, real=datapath.send_msg: (
                held.append(msg) if type(msg).__name__ == "OFPFlowStatsRequest"
                else real(msg))
        fabric.manager.switch_connected(dpid, datapath, {p: f"p{p}" for p in sw.ports})
    fabric.settle()
    for a, ap, b, bp in LINKS:
        fabric.manager.link_changed(a, ap, b, bp, True)
        fabric.manager.link_changed(b, bp, a, ap, True)
    fabric.settle()
    hosts = fabric.client.request("GET", "/ipvs/fabric")["hosts"]
    assert mac_of("10.0.0.12") not in hosts and mac_of("10.0.0.1") in hosts
    fabric.replies.append(("flows", 3, held[0].xid, leaf3.flow_stats(held[0])))
    fabric.settle()
    hosts = fabric.client.request("GET", "/ipvs/fabric")["hosts"]
    assert {mac: tuple(where) for mac, where in hosts.items()} == {
        mac_of(ip): where for ip, where in HOSTS.items()}
