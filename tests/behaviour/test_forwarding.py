"""NAT, direct routing and tunnel through the fake flow table."""

from lvs_app import ids
from lvs_app import pipeline as pl
from tests.behaviour.conftest import TUNNEL_PORT, VIP, VMAC, mac_of
from tests.fakeswitch import arp_request, tcp

C1 = "10.0.0.1"


def test_vip_arp_is_answered_with_the_virtual_mac(lab):
    lab.lvsadm("-A -t 10.0.0.100:80 -s rr")
    [(port, reply)] = lab.send(arp_request(C1, VIP, sha=mac_of(C1), in_port=1))
    assert port == 1
    assert (reply["arp_op"], reply["arp_spa"], reply["arp_sha"], reply["eth_dst"]) == \
        (2, VIP, VMAC, mac_of(C1))


def test_no_arp_answer_for_an_address_without_service(lab):
    lab.lvsadm("-A -t 10.0.0.100:80 -s rr")
    out = lab.send(arp_request(C1, "10.0.0.99", sha=mac_of(C1), in_port=1))
    assert all(pkt.get("arp_op") == 1 for _, pkt in out)     # flooded, not answered


def test_nat_rewrites_both_directions(lab):
    lab.lvsadm("-A -t 10.0.0.100:80 -s rr")
    lab.lvsadm("-a -t 10.0.0.100:80 -r 10.0.0.11:8080 -m")
    [(port, pkt)] = lab.syn(C1, 40000)
    assert port == 11
    assert (pkt["ipv4_dst"], pkt["tcp_dst"], pkt["eth_dst"]) == ("10.0.0.11", 8080,
                                                                  mac_of("10.0.0.11"))
    # the server answers the client; it leaves as the VIP
    reply = tcp("10.0.0.11", C1, 8080, 40000, flags="SA", in_port=11,
                eth_src=mac_of("10.0.0.11"), eth_dst=mac_of(C1))
    [(port, pkt)] = lab.send(reply)
    assert port == 1
    assert (pkt["ipv4_src"], pkt["tcp_src"], pkt["eth_src"]) == (VIP, 80, VMAC)
    # later client packets stay in the switch
    before = len(lab.director.switches[1].conns)
    [(port, pkt)] = lab.syn(C1, 40000, flags="A")
    assert (port, pkt["ipv4_dst"]) == (11, "10.0.0.11")
    assert len(lab.director.switches[1].conns) == before


def test_direct_routing_rewrites_only_the_mac(lab):
    lab.lvsadm("-A -t 10.0.0.100:80 -s rr")
    lab.lvsadm("-a -t 10.0.0.100:80 -r 10.0.0.12 -g")
    [(port, pkt)] = lab.syn(C1, 40001)
    assert port == 12
    assert (pkt["ipv4_dst"], pkt["tcp_dst"], pkt["eth_dst"]) == (VIP, 80, mac_of("10.0.0.12"))
    assert not lab.sw.flows(table_id=pl.REVERSE, cookie=ids.Cookie(ids.KIND_REVERSE, 1, 1).value,
                            cookie_mask=(1 << 64) - 1)


def test_tunnel_carries_the_packet_to_the_servers_tunnel_mac(lab):
    lab.lvsadm("-A -t 10.0.0.100:80 -s rr")
    lab.lvsadm("-a -t 10.0.0.100:80 -r 10.0.0.13 -i")
    lab.lvsadm("-A -t 10.0.0.101:80 -s rr")
    lab.lvsadm("-a -t 10.0.0.101:80 -r 10.0.0.13 -i")
    [(port, pkt)] = lab.syn(C1, 40002)
    assert port == TUNNEL_PORT
    assert pkt["tun_ipv4_dst"] == "10.0.0.13"
    # only the Ethernet destination changes: the server's VXLAN device, which
    # serves every VIP (02:1e: and the server's address)
    assert (pkt["ipv4_dst"], pkt["tcp_dst"], pkt["eth_dst"]) == (VIP, 80, "02:1e:0a:00:00:0d")
    [(port, pkt)] = lab.send(tcp(C1, "10.0.0.101", 40003, 80, in_port=1, eth_src=mac_of(C1),
                                 eth_dst="02:1f:0a:00:00:65"))
    assert (port, pkt["ipv4_dst"], pkt["eth_dst"]) == (TUNNEL_PORT, "10.0.0.101",
                                                       "02:1e:0a:00:00:0d")


def test_server_mac_is_found_by_arp_and_the_first_packet_is_not_lost(lab):
    lab.add_host("10.0.0.14", 14)
    lab.lvsadm("-A -t 10.0.0.100:80 -s rr")
    lab.lvsadm("-a -t 10.0.0.100:80 -r 10.0.0.14 -g")
    # the server answered the director's probe at server-add time
    assert lab.director.hosts.macs[0x0A00000E] == bytes.fromhex("02000a00000e")
    [(port, _)] = lab.syn(C1, 40003)
    assert port == 14


def test_packets_wait_while_the_server_mac_is_unknown(lab):
    lab.lvsadm("-A -t 10.0.0.100:80 -s rr")
    lab.lvsadm("-a -t 10.0.0.100:80 -r 10.0.0.15 -g")     # nobody answers yet
    out = lab.syn(C1, 40004)
    assert [pkt for _, pkt in out if pkt.get("tcp_dst")] == []       # held, not lost
    assert {pkt.get("arp_tpa") for _, pkt in out} == {"10.0.0.15"}    # probed
    lab.add_host("10.0.0.15", 15)
    # the server shows up (any packet of its own): the held SYN is sent on
    out = lab.send(arp_request("10.0.0.15", "10.0.0.1", sha=mac_of("10.0.0.15"), in_port=15))
    assert 15 in [port for port, pkt in out if pkt.get("tcp_dst") == 80]


def test_non_syn_without_state_is_dropped(lab):
    lab.lvsadm("-A -t 10.0.0.100:80 -s rr")
    lab.lvsadm("-a -t 10.0.0.100:80 -r 10.0.0.11 -g")
    assert lab.syn(C1, 40005, flags="A") == []
    assert lab.director.switches[1].conns == {}


def test_a_repeated_syn_reuses_the_decision(lab):
    lab.lvsadm("-A -t 10.0.0.100:80 -s rr")
    for rs in ("10.0.0.11", "10.0.0.12", "10.0.0.13"):
        lab.lvsadm(f"-a -t 10.0.0.100:80 -r {rs} -g")
    first = lab.server_of(lab.syn(C1, 40006))
    assert [lab.server_of(lab.syn(C1, 40006)) for _ in range(3)] == [first] * 3
    assert sum(lab.counts(rs)[0] for rs in ("10.0.0.11", "10.0.0.12", "10.0.0.13")) == 1


def test_other_traffic_is_forwarded_by_l2_learning(lab):
    lab.lvsadm("-A -t 10.0.0.100:80 -s rr")
    a, b = "10.0.0.21", "10.0.0.22"
    out = lab.send(tcp(a, b, 1000, 22, in_port=3, eth_src=mac_of(a), eth_dst=mac_of(b)))
    assert sorted(p for p, _ in out) == [p for p in range(1, 25) if p != 3]    # flooded
    out = lab.send(tcp(b, a, 22, 1000, flags="SA", in_port=4, eth_src=mac_of(b),
                       eth_dst=mac_of(a)))
    assert [p for p, _ in out] == [3]
    out = lab.send(tcp(a, b, 1000, 22, flags="A", in_port=3, eth_src=mac_of(a),
                       eth_dst=mac_of(b)))
    assert [p for p, _ in out] == [4]


def test_a_client_port_reused_after_rst_is_a_new_nat_connection(lab):
    """conn_reuse_mode 1: an entry in CLOSE (or TIME_WAIT) is scheduled afresh.
    (After a FIN the entry is in FIN_WAIT and carries the SYN itself: see
    test_ipvs_semantics.py.)"""
    lab.lvsadm("-A -t 10.0.0.100:80 -s rr")
    for rs in ("10.0.0.11", "10.0.0.12"):
        lab.lvsadm(f"-a -t 10.0.0.100:80 -r {rs} -m")
    first = lab.connect(C1, 40010)
    lab.syn(C1, 40010, flags="RA")                  # CLOSE
    second = lab.connect(C1, 40010)                 # same 5-tuple, new SYN
    assert second != first                           # scheduled afresh (rr)
    assert len(lab.director.switches[1].conns) == 1
    reply = tcp(second, C1, 80, 40010, flags="SA", in_port=lab.hosts[second],
                eth_src=mac_of(second), eth_dst=mac_of(C1))
    [(port, pkt)] = lab.send(reply)
    assert (port, pkt["ipv4_src"]) == (1, VIP)      # still NATed back
