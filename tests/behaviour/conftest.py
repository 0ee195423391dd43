"""The director against the fake flow table, configured through lvsadm + REST.

``DirectorLab`` builds the same Manager the Ryu shim builds, on a fake clock,
drives it through lvsadm's command line and the REST app, connects it to a
FakeSwitch, and simulates the hosts on its ports: clients and real servers
that answer ARP.  A test then says
"a SYN from 10.0.1.5 to VIP:80 leaves port 12 with ipv4_dst=10.0.0.12".
"""

import io
import ipaddress
import shlex
from types import SimpleNamespace

import pytest
import webob
from ryu.ofproto import ofproto_v1_3

from lvs_app import cli, ipvsadm
from lvs_app import packet as lvspkt
from lvs_app import pipeline as pl
from lvs_app.manager import Manager
from lvs_app.rest import RestApp
from tests.fakeswitch import FakeClock, FakeSwitch, arp_request, packet_from_bytes, tcp, udp

VIP = "10.0.0.100"
VMAC = "02:1f:0a:00:00:64"
TUNNEL_PORT = 20
SERVERS = {"10.0.0.11": 11, "10.0.0.12": 12, "10.0.0.13": 13}


def mac_of(ip):
    """A host's MAC: ``02:00:`` and its IPv4 address (an IPv6 one's low 32 bits)."""
    if ":" in ip:
        low = int(ipaddress.IPv6Address(ip)) & 0xFFFFFFFF
        return "02:00:" + ":".join(f"{b:02x}" for b in low.to_bytes(4, "big"))
    return "02:00:" + ":".join(f"{int(x):02x}" for x in ip.split("."))


def fragment(src, dst, ip_id, first, sport=5353, dport=53, in_port=1, eth_dst=VMAC,
             payload=b"x" * 64):
    """A UDP datagram's first fragment (with its ports) or a later one (offset
    1480), as the fake switch takes it."""
    packet = {"in_port": in_port, "eth_src": mac_of(src), "eth_dst": eth_dst,
              "eth_type": 0x0800, "ip_proto": 17, "ipv4_src": src, "ipv4_dst": dst,
              "ip_id": ip_id, "payload": payload}
    if first:
        packet.update(ip_frag=1, udp_src=sport, udp_dst=dport)
    else:
        packet.update(ip_frag=3, frag_offset=1480)
    return packet


class InProcessClient(cli.Client):
    """lvsadm's client (what it sends, how it reads answers), answered by the
    REST app in this process instead of over HTTP."""

    def __init__(self, app, settle=lambda: None, token=None):
        super().__init__(ipvsadm.DEFAULT_SERVER, token)
        self.app = app
        self.settle = settle      # what the switch does about the changes, settled

    def exchange(self, method, path, data, headers):
        req = webob.Request.blank(self.base_url + path, method=method, headers=headers)
        if data is not None:
            req.body = data
        resp = req.get_response(self.app)
        self.settle()
        return resp.status_int, resp.headers.get("Content-Type", ""), resp.body


class LabDatapath:
    """What the manager sends to: every message is checked and applied to
    the fake switch; what leaves its ports is collected for the lab."""

    def __init__(self, lab, dpid=1):
        self.lab, self.id = lab, dpid
        self.closed = False
        self.echoes = []           # echo requests the manager sent on this connection

    def close(self):
        self.closed = True

    def send_msg(self, msg):
        if type(msg).__name__ == "OFPFlowMod":
            pl.check(msg)
        if type(msg).__name__ == "OFPFlowStatsRequest":
            self.lab.replies.append((self.id, msg.xid, self.lab.sw.flow_stats(msg)))
            return
        if type(msg).__name__ == "OFPEchoRequest":
            self.echoes.append(msg)
            return
        if type(msg).__name__ == "OFPMeterMod":      # the fake switch does not meter
            assert (msg.command == ofproto_v1_3.OFPMC_ADD) != (msg.meter_id in self.lab.meters)
            self.lab.meters[msg.meter_id] = msg
            return
        if type(msg).__name__ == "OFPAggregateStatsRequest":
            flows = self.lab.sw.flows(None, msg.cookie, msg.cookie_mask)
            self.lab.stats_replies.append((self.id, msg.xid, SimpleNamespace(
                packet_count=sum(f.packet_count for f in flows),
                byte_count=sum(f.byte_count for f in flows), flow_count=len(flows))))
            return
        if type(msg).__name__ == "OFPTableStatsRequest":
            flows = self.lab.sw.flows()
            self.lab.stats_replies.append((self.id, msg.xid, [
                SimpleNamespace(table_id=t, active_count=sum(f.table_id == t for f in flows))
                for t in range(pl.N_TABLES)]))
            return
        if type(msg).__name__ == "OFPMeterStatsRequest":   # nothing dropped: it does not meter
            self.lab.manager.meter_stats(self.id, [
                SimpleNamespace(meter_id=m, band_stats=[SimpleNamespace(packet_band_count=0)])
                for m in self.lab.meters])
            return
        if type(msg).__name__ == "OFPMeterConfigStatsRequest":
            self.lab.meter_replies.append((self.id, [
                SimpleNamespace(meter_id=m) for m in self.lab.meters]))
            return
        self.lab.outbox += self.lab.sw.apply(msg)


class DirectorLab:
    def __init__(self, n_ports=24, rules_path=None, packetin_pps=0, max_connections=0,
                 health_source=None, run_script=None):
        self.clock = FakeClock()
        self.health_source = health_source
        self.run_script = run_script
        self.rules_path = rules_path
        self.packetin_pps = packetin_pps
        self.max_connections = max_connections
        self.meters = {}           # meter id -> the MeterMod the switch holds
        self.sw = FakeSwitch(dpid=1, n_tables=pl.N_TABLES, ports=range(1, n_ports + 1),
                             clock=self.clock)
        self.hosts = {}            # ip -> port (hosts that answer ARP)
        self.outbox = []           # (port, packet) that left the switch, not yet read
        self.replies = []          # (dpid, flow stats) the switch owes the manager
        self.stats_replies = []    # (dpid, xid, body): aggregate and table statistics
        self.meter_replies = []    # (dpid, meter configs) likewise
        self._start_controller()
        for ip, port in SERVERS.items():
            self.add_host(ip, port)

    def _start_controller(self):
        """A controller (the Manager the shim builds) and the switch connecting to it."""
        self.manager = Manager(rules_path=self.rules_path, clock=lambda: self.clock.now,
                               strict=True, packetin_pps=self.packetin_pps,
                               max_connections=self.max_connections,
                               health_source=self.health_source, run_script=self.run_script)
        self.manager.load_rules()
        self.api = self.manager.api
        self.director = self.manager.director
        self.client = InProcessClient(RestApp(self.api), self._settle)
        self.datapath = LabDatapath(self)
        self.manager.switch_connected(1, self.datapath, {TUNNEL_PORT: "vxlan0"})
        self._settle()

    def restart_controller(self):
        """kill -9 of the controller and a new one with the same rules file:
        the switch keeps its flows and connects to the new controller."""
        self.outbox, self.replies, self.meter_replies = [], [], []
        self.stats_replies = []
        self.sw.packet_ins.clear()
        self.sw.flow_removed.clear()
        self._start_controller()

    @property
    def now(self):
        return self.clock.now

    def add_host(self, ip, port):
        self.hosts[ip] = port

    # -- configuration ---------------------------------------------------------
    def lvsadm(self, line, stdin=""):
        """Run one lvsadm command line; returns its stdout (raises on refusal)."""
        cmd = ipvsadm.parse_args(shlex.split(line))
        out = io.StringIO()
        assert cli.run(cmd, self.client, io.StringIO(stdin), out) == 0
        return out.getvalue()

    # -- traffic -----------------------------------------------------------------
    def _settle(self):
        """Hand the switch's PacketIns and FlowRemoveds to the manager until
        none are left; returns what left the switch (hosts answer ARP)."""
        outputs = []
        while True:
            outputs += self.outbox
            self.outbox = []
            if not (self.sw.packet_ins or self.sw.flow_removed):
                # a reply comes after what the switch had sent before it
                if self.replies:
                    dpid, xid, body = self.replies.pop(0)
                    self.manager.flow_stats(dpid, body, False, xid)
                    continue
                if self.stats_replies:
                    self.manager.stats_reply(*self.stats_replies.pop(0))
                    continue
                if self.meter_replies:
                    dpid, body = self.meter_replies.pop(0)
                    self.manager.meter_config(dpid, body)
                    continue
                break
            for rec in self.sw.take_packet_ins():
                self.manager.packet_in(1, rec.match["in_port"], rec.raw, rec.table_id)
            for rec in self.sw.take_flow_removed():
                self.manager.flow_removed(1, rec.cookie, rec.match, rec.duration, rec.reason,
                                          rec.packet_count, byte_count=rec.byte_count,
                                          table_id=rec.table_id,
                                          hard_timeout=rec.hard_timeout)
        return self._hosts_answer(outputs)

    def _hosts_answer(self, outputs):
        """A host that sees an ARP request (IPv6: a Neighbor Solicitation) for
        its address answers it."""
        result = []
        for port, packet in outputs:
            target = packet.get("arp_tpa")
            if packet.get("icmpv6_type") == lvspkt.ND_SOLICIT:
                target = str(ipaddress.IPv6Address(packet["payload"][:16]))
                if self.hosts.get(target) == port:
                    frame = lvspkt.na_frame(bytes.fromhex(mac_of(target).replace(":", "")),
                                            int(ipaddress.IPv6Address(target)),
                                            bytes.fromhex(packet["eth_src"].replace(":", "")),
                                            int(ipaddress.IPv6Address(packet["ipv6_src"])))
                    result += self.send(dict(packet_from_bytes(frame), in_port=port))
                    continue
            if packet.get("arp_op") == 1 and self.hosts.get(target) == port:
                reply = {"in_port": port, "eth_src": mac_of(target),
                         "eth_dst": packet["eth_src"], "eth_type": 0x0806, "arp_op": 2,
                         "arp_spa": target, "arp_tpa": packet["arp_spa"],
                         "arp_sha": mac_of(target), "arp_tha": packet["arp_sha"]}
                result += self.send(reply)
            else:
                result.append((port, packet))
        return result

    def send(self, packet):
        """A packet enters the switch; returns every (port, packet) that leaves."""
        self.outbox += self.sw.send(packet, now=self.now)
        return self._settle()

    def advance(self, seconds):
        """Let time pass one second at a time: the switch reports expiries in
        order and the controller answers each at its own moment, as in life."""
        outputs = []
        for _ in range(int(seconds)):
            self.clock.advance(1)
            self.sw.expire()
            self.manager.tick()
            outputs += self._settle()
        return outputs

    # -- conveniences ----------------------------------------------------------
    def syn(self, client, sport, dport=80, port=1, vip=VIP, flags="S", seq=None):
        """A client segment to the VIP; a SYN opens a new connection (a new
        sequence number) unless ``seq`` repeats one (a retransmission)."""
        vmac = VMAC if vip == VIP else lvspkt.mac_text(lvspkt.virtual_mac(
            int(ipaddress.ip_address(vip))))
        if seq is None:
            self._isn = getattr(self, "_isn", 0) + 1000
            seq = self._isn
        return self.send(tcp(client, vip, sport, dport, flags=flags, in_port=port,
                             eth_src=mac_of(client), eth_dst=vmac, tcp_seq=seq))

    def server_of(self, outputs):
        """The real server a client packet reached (by output port), or None."""
        ports = {port: ip for ip, port in self.hosts.items()}
        hits = [ports.get(port) for port, _ in outputs if port in ports]
        hits += [pkt.get("tun_ipv4_dst") or pkt.get("tun_ipv6_dst")
                 for port, pkt in outputs if port == TUNNEL_PORT]
        return hits[0] if hits else None

    def connect(self, client, sport, dport=80, port=1, vip=VIP):
        """SYN then the client's ACK; returns the server both reached."""
        first = self.server_of(self.syn(client, sport, dport, port, vip))
        second = self.server_of(self.syn(client, sport, dport, port, vip, flags="A"))
        assert first == second, (first, second, self.sw.dump())
        return first

    def close(self, client, sport, dport=80, port=1, vip=VIP):
        return self.server_of(self.syn(client, sport, dport, port, vip, flags="FA"))

    def counts(self, server, service="-t 10.0.0.100:80"):
        doc = self.client.request("GET", "/ipvs")
        for svc in doc["services"]:
            for rs in svc["servers"]:
                if rs["address"] == server and ipvsadm.parse_args(
                        shlex.split(f"-L {service}")).key().to_id() == svc["id"]:
                    return rs["activeconns"], rs["inactconns"], rs["persistconns"]
        raise AssertionError(f"no server {server} in {service}")


@pytest.fixture
def lab():
    return DirectorLab()


__all__ = ["DirectorLab", "VIP", "VMAC", "mac_of", "packet_from_bytes", "arp_request", "udp",
           "tcp", "TUNNEL_PORT"]
