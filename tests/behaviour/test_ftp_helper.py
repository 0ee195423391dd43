"""The FTP helper (IPVS ip_vs_ftp) through the fake flow table.

A NAT service on port 21: its control connections go through the controller
in both directions (their connection flows punt), the controller forwards
each packet itself, rewrites 227 replies and keeps sequence numbers right;
the data connections it announces are flows in the switch.

Packets are whole frames: the director gets the fake switch's PacketIn bytes
and its PacketOut data is parsed back into a packet, so a wrong length or a
broken frame shows up here.  What a PacketOut carries (before the switch's
set_field NAT rewrite) is compared byte for byte with a frame that the fake
switch's builder makes, checksums included.
"""

import pytest

from lvs_app import ids
from lvs_app import pipeline as pl
from tests.behaviour.conftest import VIP, VMAC, mac_of
from tests.fakeswitch import packet_to_bytes, tcp

C1, RS, RS2 = "10.0.0.1", "10.0.0.11", "10.0.0.12"
PORTS = {C1: 1, RS: 11, RS2: 12}

BANNER = b"220 (vsFTPd 3.0.3)\r\n"
PASV_227 = b"227 Entering Passive Mode (10,0,0,11,195,80).\r\n"        # RS:50000
PASV_227_VIP = b"227 Entering Passive Mode (10,0,0,100,195,80).\r\n"   # one byte longer


class Ftp:
    """One FTP client (C1) and server, as packets through the lab's switch.

    Keeps both sides' sequence numbers as each end sees them, and records
    the PacketIns the director handled (table, frame, messages).
    """

    def __init__(self, lab, server=RS, cport=40000):
        self.lab, self.server, self.cport = lab, server, cport
        self.packet_ins = []
        real = lab.director.packet_in

        def spy(dpid, in_port, data, table_id, now):
            msgs = real(dpid, in_port, data, table_id, now)
            self.packet_ins.append((table_id, bytes(data), msgs))
            return msgs
        lab.director.packet_in = spy

    # -- raw packets ---------------------------------------------------------
    def from_client(self, flags="PA", payload=b"", seq=0, ack=0, sport=None, dport=21):
        return self.lab.send(tcp(C1, VIP, sport or self.cport, dport, flags=flags,
                                 in_port=PORTS[C1], eth_src=mac_of(C1), eth_dst=VMAC,
                                 payload=payload, tcp_seq=seq, tcp_ack=ack))

    def server_frame(self, flags="PA", payload=b"", seq=0, ack=0, sport=21, dport=None):
        return tcp(self.server, C1, sport, dport or self.cport, flags=flags,
                   in_port=PORTS[self.server], eth_src=mac_of(self.server),
                   eth_dst=mac_of(C1), payload=payload, tcp_seq=seq, tcp_ack=ack)

    def from_server(self, *args, **kwargs):
        return self.lab.send(self.server_frame(*args, **kwargs))

    def count(self):
        return len(self.packet_ins)

    def packet_outs(self, since=0):
        return [m for _, _, msgs in self.packet_ins[since:] for _, m in msgs
                if type(m).__name__ == "OFPPacketOut"]

    # -- the control dialogue ------------------------------------------------
    def login(self):
        """Handshake, banner, USER/PASS; returns (client seq, server seq) next."""
        c, s = 1000, 5000
        [(port, pkt)] = self.from_client("S", seq=c)
        assert (port, pkt["ipv4_dst"], pkt["tcp_dst"]) == (PORTS[self.server], self.server, 21)
        [(port, pkt)] = self.from_server("SA", seq=s, ack=c + 1)
        assert (port, pkt["ipv4_src"], pkt["tcp_src"]) == (PORTS[C1], VIP, 21)
        c, s = c + 1, s + 1
        self.from_client("A", seq=c, ack=s)
        for reply, command in ((BANNER, b"USER anonymous\r\n"),
                               (b"331 Please specify the password.\r\n", b"PASS guest\r\n")):
            self.from_server(payload=reply, seq=s, ack=c)
            s += len(reply)
            self.from_client(payload=command, seq=c, ack=s)
            c += len(command)
        reply = b"230 Login successful.\r\n"
        self.from_server(payload=reply, seq=s, ack=c)
        return c, s + len(reply)


@pytest.fixture
def nat21(lab):
    lab.lvsadm("-A -t 10.0.0.100:21 -s rr")
    lab.lvsadm("-a -t 10.0.0.100:21 -r 10.0.0.11:21 -m")
    return lab


def conn_flows(lab, table, **match):
    return lab.sw.flows(table_id=table, priority=pl.PRIO_CONN, match=match)


def one(outputs):
    assert len(outputs) == 1, outputs
    return outputs[0]


# -- the control connection --------------------------------------------------------------

def test_control_connection_flows_send_both_directions_to_the_controller(nat21):
    ftp = Ftp(nat21)
    ftp.from_client("S", seq=1000)
    [service] = conn_flows(nat21, pl.SERVICE, ipv4_src=C1, tcp_src=40000, tcp_dst=21)
    [reverse] = conn_flows(nat21, pl.REVERSE, ipv4_src=RS, tcp_src=21, tcp_dst=40000)
    for flow in (service, reverse):
        assert "actions=apply(output:CONTROLLER)" in flow.text()
    # same cookies as any connection of this service and server, so -d/-D find them
    assert ids.Cookie.parse(service.cookie) == ids.Cookie(ids.KIND_CONN, 1, 1)
    assert ids.Cookie.parse(reverse.cookie) == ids.Cookie(ids.KIND_REVERSE, 1, 1)
    assert service.idle_timeout == 60 and service.flags & 1        # SYN_RECV; FlowRemoved ends it


def test_every_control_packet_is_forwarded_by_the_controller_unchanged_but_for_nat(nat21):
    ftp = Ftp(nat21)
    ftp.from_client("S", seq=1000)
    ftp.from_server("SA", seq=5000, ack=1001)
    ftp.from_client("A", seq=1001, ack=5001)
    # the banner, server -> client: only the NAT header changes
    before = ftp.count()
    port, pkt = one(ftp.from_server(payload=BANNER, seq=5001, ack=1001))
    assert port == PORTS[C1]
    assert (pkt["ipv4_src"], pkt["tcp_src"], pkt["eth_src"], pkt["ipv4_dst"]) == \
        (VIP, 21, VMAC, C1)
    assert (pkt["payload"], pkt["tcp_seq"], pkt["tcp_ack"]) == (BANNER, 5001, 1001)
    [(table, frame, _)] = ftp.packet_ins[before:]
    assert table == pl.REVERSE
    [out] = ftp.packet_outs(before)
    assert out.data == frame                      # the very bytes, NAT by set_field
    assert [a.key for a in out.actions if hasattr(a, "key")] == \
        ["ipv4_src", "tcp_src", "eth_src"]
    # a command that is not PORT/EPRT/PASV/EPSV, client -> server
    before = ftp.count()
    port, pkt = one(ftp.from_client(payload=b"USER anonymous\r\n", seq=1001, ack=5021))
    assert port == PORTS[RS]
    assert (pkt["ipv4_dst"], pkt["tcp_dst"], pkt["eth_dst"]) == (RS, 21, mac_of(RS))
    assert (pkt["payload"], pkt["tcp_seq"], pkt["tcp_ack"]) == (b"USER anonymous\r\n",
                                                                1001, 5021)
    [(table, frame, _)] = ftp.packet_ins[before:]
    assert table == pl.SERVICE
    assert ftp.packet_outs(before)[0].data == frame


def test_a_direct_routing_service_on_port_21_is_not_watched(lab):
    lab.lvsadm("-A -t 10.0.0.100:21 -s rr")
    lab.lvsadm("-a -t 10.0.0.100:21 -r 10.0.0.12 -g")
    lab.syn(C1, 40000, dport=21)
    [flow] = conn_flows(lab, pl.SERVICE, ipv4_src=C1, tcp_src=40000, tcp_dst=21)
    assert "CONTROLLER" not in flow.text()
    assert not lab.director.switches[1].ftp_controls


# -- passive mode ----------------------------------------------------------------------

def test_pasv_dialogue_rewrites_227_and_the_data_connection_stays_in_the_switch(nat21):
    ftp = Ftp(nat21)
    c, s = ftp.login()
    ftp.from_client(payload=b"PASV\r\n", seq=c, ack=s)
    c += 6
    # the server announces its own address; the client gets the VIP's
    before = ftp.count()
    port, pkt = one(ftp.from_server(payload=PASV_227, seq=s, ack=c))
    assert port == PORTS[C1]
    assert (pkt["ipv4_src"], pkt["tcp_src"], pkt["payload"]) == (VIP, 21, PASV_227_VIP)
    assert (pkt["tcp_seq"], pkt["tcp_ack"]) == (s, c)     # the rewritten segment keeps its start
    assert pkt["len"] == 14 + 20 + 20 + len(PASV_227_VIP)
    # what the controller sent: a frame with the right lengths and checksums
    # (the builder computes them on its own), NAT left to set_field
    [out] = ftp.packet_outs(before)
    assert out.data == packet_to_bytes(ftp.server_frame(payload=PASV_227_VIP, seq=s, ack=c))
    s_server = s + len(PASV_227)           # the server's next byte
    s_client = s + len(PASV_227_VIP)       # ... as the client counts it
    # the client acknowledges what it saw; the server gets its own numbers
    port, pkt = one(ftp.from_client(flags="A", seq=c, ack=s_client))
    assert (port, pkt["tcp_ack"]) == (PORTS[RS], s_server)
    # the data connection: the first SYN comes to the controller (every SYN to
    # a VIP does: that is where connections are counted) and goes to RS:50000
    before = ftp.count()
    port, pkt = one(ftp.from_client("S", seq=7000, sport=40001, dport=50000))
    assert (port, pkt["ipv4_dst"], pkt["tcp_dst"]) == (PORTS[RS], RS, 50000)
    assert [t for t, _, _ in ftp.packet_ins[before:]] == [pl.SERVICE]
    # ... and the rest of it stays in the switch, both ways
    before = ftp.count()
    port, pkt = one(ftp.from_server("SA", seq=9000, ack=7001, sport=50000, dport=40001))
    assert (port, pkt["ipv4_src"], pkt["tcp_src"], pkt["eth_src"]) == (PORTS[C1], VIP, 50000,
                                                                       VMAC)
    port, pkt = one(ftp.from_client("A", seq=7001, ack=9001, sport=40001, dport=50000))
    assert (port, pkt["ipv4_dst"], pkt["tcp_dst"]) == (PORTS[RS], RS, 50000)
    assert ftp.count() == before
    # the control connection goes on with shifted numbers
    ftp.from_client(payload=b"LIST\r\n", seq=c, ack=s_client)
    reply = b"150 Here comes the directory listing.\r\n"
    port, pkt = one(ftp.from_server(payload=reply, seq=s_server, ack=c + 6))
    assert (pkt["tcp_seq"], pkt["payload"]) == (s_client, reply)
    port, pkt = one(ftp.from_client(flags="A", seq=c + 6, ack=s_client + len(reply)))
    assert pkt["tcp_ack"] == s_server + len(reply)
    # a retransmitted 227 is rewritten again, at the same place
    port, pkt = one(ftp.from_server(payload=PASV_227, seq=s, ack=c))
    assert (pkt["tcp_seq"], pkt["payload"]) == (s, PASV_227_VIP)
    # listed as IPVS lists them: the data connection is the control's server's
    rows = {(r["cport"], r["vport"]): r for r in nat21.director.connections(nat21.now)}
    assert (rows[(40001, 50000)]["server"], rows[(40001, 50000)]["dport"]) == (RS, 50000)
    assert (rows[(40000, 21)]["server"], rows[(40000, 21)]["dport"]) == (RS, 21)


def test_the_announced_server_wins_over_scheduling(lab):
    """Two servers, rr, no persistence: without the helper the data connection
    (a port >= 1024, IPVS's FTP fallback) could be scheduled elsewhere."""
    lab.lvsadm("-A -t 10.0.0.100:21 -s rr")
    lab.lvsadm("-a -t 10.0.0.100:21 -r 10.0.0.11:21 -m")
    lab.lvsadm("-a -t 10.0.0.100:21 -r 10.0.0.12:21 -m")
    first = lab.server_of(lab.syn(C1, 39000, dport=21))     # someone else's session
    other = RS2 if first == RS else RS
    ftp = Ftp(lab, server=other)
    c, s = ftp.login()
    ftp.from_client(payload=b"PASV\r\n", seq=c, ack=s)
    reply = ("227 Entering Passive Mode (%s,4,1).\r\n" % other.replace(".", ",")).encode()
    port, pkt = one(ftp.from_server(payload=reply, seq=s, ack=c + 6))
    assert pkt["payload"] == b"227 Entering Passive Mode (10,0,0,100,4,1).\r\n"
    port, pkt = one(ftp.from_client("S", seq=1, sport=41000, dport=1025))
    assert (port, pkt["ipv4_dst"], pkt["tcp_dst"]) == (PORTS[other], other, 1025)
    # an unannounced port is not scheduled: the service is not persistent, and
    # IPVS takes FTP-fallback packets only into persistent port-21 services
    assert lab.syn(C1, 41001, dport=1026) == []
    assert lab.server_of(lab.syn(C1, 41002, dport=21)) == first   # rr went on once


def test_epsv_229_needs_no_rewrite(nat21):
    ftp = Ftp(nat21)
    c, s = ftp.login()
    ftp.from_client(payload=b"EPSV\r\n", seq=c, ack=s)
    reply = b"229 Entering Extended Passive Mode (|||50001|)\r\n"
    before = ftp.count()
    port, pkt = one(ftp.from_server(payload=reply, seq=s, ack=c + 6))
    assert (pkt["ipv4_src"], pkt["payload"], pkt["tcp_seq"]) == (VIP, reply, s)
    [(_, frame, _)] = ftp.packet_ins[before:]
    assert ftp.packet_outs(before)[0].data == frame
    port, pkt = one(ftp.from_client("S", seq=1, sport=40002, dport=50001))
    assert (port, pkt["ipv4_dst"], pkt["tcp_dst"]) == (PORTS[RS], RS, 50001)
    # no shift: the client's ACK goes through as it is
    port, pkt = one(ftp.from_client(flags="A", seq=c + 6, ack=s + len(reply)))
    assert pkt["tcp_ack"] == s + len(reply)


def test_an_announcement_is_listed_and_lasts_two_minutes(nat21):
    ftp = Ftp(nat21)
    c, s = ftp.login()
    ftp.from_client(payload=b"PASV\r\n", seq=c, ack=s)
    ftp.from_server(payload=PASV_227, seq=s, ack=c + 6)
    listing = nat21.lvsadm("-L -c -n")
    assert "LISTEN      10.0.0.1:0         10.0.0.100:50000   10.0.0.11:50000" in listing
    nat21.advance(121)
    assert "10.0.0.100:50000" not in nat21.lvsadm("-L -c -n")
    # too late: the SYN is not the announced data connection any more, and a
    # non-persistent port-21 service does not take FTP-fallback packets
    assert ftp.from_client("S", seq=1, sport=40003, dport=50000) == []
    assert ("tcp", 0x0A000001, 40003, 0x0A000064, 50000) not in \
        nat21.director.switches[1].conns


# -- active mode ------------------------------------------------------------------------

@pytest.mark.parametrize("command", [b"PORT 10,0,0,1,156,65\r\n",
                                     b"EPRT |1|10.0.0.1|40001|\r\n"])
def test_port_installs_the_active_data_connection_before_it_starts(nat21, command):
    ftp = Ftp(nat21)
    c, s = ftp.login()
    # the command reaches the server unchanged (it names the client itself)
    port, pkt = one(ftp.from_client(payload=command, seq=c, ack=s))
    assert (port, pkt["payload"]) == (PORTS[RS], command)
    # the flows are there before the server's SYN
    [reverse] = conn_flows(nat21, pl.REVERSE, ipv4_src=RS, tcp_src=20, ipv4_dst=C1,
                           tcp_dst=40001)
    [service] = conn_flows(nat21, pl.SERVICE, ipv4_src=C1, tcp_src=40001, ipv4_dst=VIP,
                           tcp_dst=20)
    assert ids.Cookie.parse(reverse.cookie) == ids.Cookie(ids.KIND_REVERSE, 1, 1)
    assert ids.Cookie.parse(service.cookie) == ids.Cookie(ids.KIND_CONN, 1, 1)
    assert service.idle_timeout == 120                      # IPVS LISTEN, until it starts
    assert "LISTEN      10.0.0.1:40001     10.0.0.100:20      10.0.0.11:20" in \
        nat21.lvsadm("-L -c -n")
    # the server connects from port 20: it leaves toward the client as VIP:20,
    # in the switch alone
    before = ftp.count()
    port, pkt = one(ftp.from_server("S", seq=9000, sport=20, dport=40001))
    assert (port, pkt["ipv4_src"], pkt["tcp_src"], pkt["eth_src"]) == (PORTS[C1], VIP, 20,
                                                                       VMAC)
    assert ftp.count() == before
    # the client's SYN+ACK (a SYN: the controller sees it once) reaches RS:20
    port, pkt = one(ftp.from_client("SA", seq=7000, ack=9001, sport=40001, dport=20))
    assert (port, pkt["ipv4_dst"], pkt["tcp_dst"]) == (PORTS[RS], RS, 20)
    assert ftp.count() == before + 1
    [service] = conn_flows(nat21, pl.SERVICE, ipv4_src=C1, tcp_src=40001, tcp_dst=20)
    assert service.idle_timeout == 60                       # SYN_RECV, until traffic shows
    port, pkt = one(ftp.from_client("A", seq=7001, ack=9001, sport=40001, dport=20))
    assert (port, pkt["ipv4_dst"], pkt["tcp_dst"]) == (PORTS[RS], RS, 20)
    assert ftp.count() == before + 1
    assert nat21.counts(RS, "-t 10.0.0.100:21")[:2] == (2, 0)     # both active


def test_port_naming_another_host_is_ignored(nat21):
    ftp = Ftp(nat21)
    c, s = ftp.login()
    port, pkt = one(ftp.from_client(payload=b"PORT 10,0,0,99,156,65\r\n", seq=c, ack=s))
    assert pkt["payload"] == b"PORT 10,0,0,99,156,65\r\n"      # forwarded, not acted on
    assert not conn_flows(nat21, pl.REVERSE, ipv4_src=RS, tcp_src=20)
    assert not conn_flows(nat21, pl.SERVICE, tcp_dst=20)


# -- with persistence, removal, lifetime ---------------------------------------------------

def test_persistent_port_21_service_the_helpers_flows_take_precedence(lab):
    lab.lvsadm("-A -t 10.0.0.100:21 -s rr -p 300")
    lab.lvsadm("-a -t 10.0.0.100:21 -r 10.0.0.11:21 -m")
    ftp = Ftp(lab)
    c, s = ftp.login()
    sw = lab.director.switches[1]
    assert len(sw.templates) == 1
    ftp.from_client(payload=b"PORT 10,0,0,1,156,65\r\n", seq=c, ack=s)
    # the server's SYN from port 20 hits the data connection's flow, not the
    # template's reverse flow (which would also turn it into VIP:20)
    port, pkt = one(ftp.from_server("S", seq=9000, sport=20, dport=40001))
    assert (pkt["ipv4_src"], pkt["tcp_src"]) == (VIP, 20)
    [flow] = conn_flows(lab, pl.REVERSE, ipv4_src=RS, tcp_src=20, tcp_dst=40001)
    assert flow.packet_count == 1
    template_reverse = lab.sw.flows(table_id=pl.REVERSE, priority=pl.PRIO_TEMPLATE)
    assert template_reverse and all(f.packet_count == 0 for f in template_reverse)
    # passive: the announced connection is the helper's, controlled by the
    # control connection rather than the template
    ftp.from_client(payload=b"PASV\r\n", seq=c + 24, ack=s)
    ftp.from_server(payload=PASV_227, seq=s, ack=c + 30)
    port, pkt = one(ftp.from_client("S", seq=1, sport=40003, dport=50000))
    assert (port, pkt["ipv4_dst"], pkt["tcp_dst"]) == (PORTS[RS], RS, 50000)
    data = sw.conns[("tcp", 0x0A000001, 40003, 0x0A000064, 50000)]
    assert data.control is sw.conns[("tcp", 0x0A000001, 40000, 0x0A000064, 21)]
    assert data.template is None


def open_data_connections(lab):
    ftp = Ftp(lab)
    c, s = ftp.login()
    ftp.from_client(payload=b"PORT 10,0,0,1,156,65\r\n", seq=c, ack=s)
    ftp.from_client(payload=b"PASV\r\n", seq=c + 24, ack=s)
    ftp.from_server(payload=PASV_227, seq=s, ack=c + 30)
    ftp.from_client("S", seq=1, sport=40003, dport=50000)
    return ftp


def test_deleting_the_service_removes_the_data_connection_flows(nat21):
    open_data_connections(nat21)
    assert len(nat21.sw.flows(table_id=pl.REVERSE, priority=pl.PRIO_CONN)) == 3
    nat21.lvsadm("-D -t 10.0.0.100:21")
    assert nat21.sw.flows(cookie=ids.cookie_mask(service=1)[0], cookie_mask=ids.cookie_mask(service=1)[1]) \
        == []
    sw = nat21.director.switches[1]
    assert not sw.conns and not sw.ftp_controls and not sw.ftp_expect


def test_deleting_the_server_treats_data_connections_like_the_others(nat21):
    ftp = open_data_connections(nat21)
    nat21.lvsadm("-d -t 10.0.0.100:21 -r 10.0.0.11:21")
    # IPVS default (expire_nodest_conn=0): their packets are dropped
    assert ftp.from_client("A", seq=2, ack=1, sport=40003, dport=50000) == []
    assert ftp.from_client(payload=b"NOOP\r\n", seq=1, ack=1) == []
    assert ftp.from_server(payload=b"200 NOOP ok.\r\n", seq=1, ack=1) == []
    nat21.client.request("PUT", "/ipvs/settings", {"expire_nodest_conn": True})
    nat21.lvsadm("-a -t 10.0.0.100:21 -r 10.0.0.11:21 -m")
    nat21.lvsadm("-d -t 10.0.0.100:21 -r 10.0.0.11:21")
    assert nat21.sw.flows(table_id=pl.SERVICE, priority=pl.PRIO_CONN) == []
    assert nat21.sw.flows(table_id=pl.REVERSE, priority=pl.PRIO_CONN) == []
    sw = nat21.director.switches[1]
    assert not sw.conns and not sw.ftp_controls and not sw.ftp_expect


def test_the_control_connection_lives_while_its_data_connection_does(nat21):
    nat21.lvsadm("--set 30 20 30")
    ftp = Ftp(nat21)
    c, s = ftp.login()
    ftp.from_client(payload=b"PASV\r\n", seq=c, ack=s)
    ftp.from_server(payload=PASV_227, seq=s, ack=c + 6)
    ftp.from_client("S", seq=1, sport=40003, dport=50000)
    sw = nat21.director.switches[1]
    control_key = ("tcp", 0x0A000001, 40000, 0x0A000064, 21)
    # a long transfer: the control connection is idle, the data connection is not
    for _ in range(6):
        nat21.advance(10)
        ftp.from_client("A", seq=2, ack=1, sport=40003, dport=50000)
    assert nat21.now == 60 and control_key in sw.conns         # idle 60 s > tcp timeout 30
    # the end of the transfer reaches the client, rewritten and shifted
    reply = b"226 Directory send OK.\r\n"
    port, pkt = one(ftp.from_server(payload=reply, seq=s + len(PASV_227), ack=c + 6))
    assert (port, pkt["ipv4_src"], pkt["tcp_seq"]) == (PORTS[C1], VIP, s + len(PASV_227_VIP))
    # once the data connection is gone, the control connection may go too
    nat21.advance(30 + 60 + 1)
    assert control_key not in sw.conns
    assert not sw.conns and not sw.ftp_controls
