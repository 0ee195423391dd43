"""IPv6 through the fake flow table: Neighbour Discovery instead of ARP, NAT,
direct routing and tunnel, persistence with an IPv6 prefix, port 0,
firewall marks, quiesce and delete, recovery -- the IPv4 behaviours' twins."""

import ipaddress

import pytest

from lvs_app import ids
from lvs_app import packet as lvspkt
from lvs_app import pipeline as pl
from lvs_app.cli import ApiError
from tests.behaviour.conftest import TUNNEL_PORT, mac_of
from tests.fakeswitch import packet_from_bytes, tcp, udp

VIP6 = "fd00::10:0:0:100"
VMAC6 = "02:1f:00:00:01:00"          # 02:1f: and the VIP's low 32 bits
C1, C2 = "fd00::10:0:0:1", "fd00::10:0:0:2"
SERVERS6 = {"fd00::10:0:0:11": 14, "fd00::10:0:0:12": 15, "fd00::10:0:0:13": 16}
SVC = f"-t [{VIP6}]:80"


def ip6(text):
    return int(ipaddress.IPv6Address(text))


def mac(text):
    return bytes.fromhex(text.replace(":", ""))


@pytest.fixture
def lab6(lab):
    for ip, port in SERVERS6.items():
        lab.add_host(ip, port)
    return lab


def servers(lab6, method, port=None):
    lab6.lvsadm(f"-A {SVC} -s rr")
    for ip in SERVERS6:
        lab6.lvsadm(f"-a {SVC} -r {f'[{ip}]:{port}' if port else ip} {method}")


def solicit(lab6, target, client=C1, in_port=1):
    """A client's Neighbor Solicitation for ``target``; what leaves the switch."""
    frame = lvspkt.ns_frame(mac(mac_of(client)), ip6(client), ip6(target))
    return lab6.send(dict(packet_from_bytes(frame), in_port=in_port))


def test_a_solicitation_for_the_vip_is_answered_with_the_virtual_mac(lab6):
    lab6.lvsadm(f"-A {SVC} -s rr")
    [(port, na)] = solicit(lab6, VIP6)
    assert port == 1
    assert (na["icmpv6_type"], na["ipv6_src"], na["ipv6_dst"], na["eth_dst"], na["eth_src"]) \
        == (lvspkt.ND_ADVERT, VIP6, C1, mac_of(C1), VMAC6)
    assert (na["ipv6_nd_target"], na["ipv6_nd_tll"], na["nw_ttl"]) == (VIP6, VMAC6, 255)
    assert na["payload"][:0] == b"" and packet_from_bytes(
        lvspkt.na_frame(mac(VMAC6), ip6(VIP6), mac(mac_of(C1)), ip6(C1)))["payload"] \
        == na["payload"]
    # the director learned where the client is, as ARP does
    assert lab6.director.hosts.macs[ip6(C1)] == mac(mac_of(C1))


def test_a_solicitation_for_another_address_is_forwarded_not_answered(lab6):
    lab6.lvsadm(f"-A {SVC} -s rr")
    out = solicit(lab6, "fd00::10:0:0:99")
    assert out and all(p.get("icmpv6_type") == lvspkt.ND_SOLICIT for _, p in out)


def test_real_servers_are_found_by_neighbour_solicitation(lab6):
    servers(lab6, "-g")
    for ip in SERVERS6:
        assert lab6.director.hosts.macs[ip6(ip)] == mac(mac_of(ip))


def test_nat_rewrites_both_directions(lab6):
    lab6.lvsadm(f"-A {SVC} -s rr")
    lab6.lvsadm(f"-a {SVC} -r [fd00::10:0:0:11]:8080 -m")
    [(port, p)] = lab6.syn(C1, 40000, vip=VIP6)
    assert port == 14
    assert (p["ipv6_dst"], p["tcp_dst"], p["eth_dst"]) == ("fd00::10:0:0:11", 8080,
                                                           mac_of("fd00::10:0:0:11"))
    reply = tcp("fd00::10:0:0:11", C1, 8080, 40000, flags="SA", in_port=14,
                eth_src=mac_of("fd00::10:0:0:11"), eth_dst=mac_of(C1))
    [(port, p)] = lab6.send(reply)
    assert port == 1
    assert (p["ipv6_src"], p["tcp_src"], p["eth_src"]) == (VIP6, 80, VMAC6)
    # later client packets stay in the switch, on the connection's flow
    [(port, p)] = lab6.syn(C1, 40000, vip=VIP6, flags="A")
    assert (port, p["ipv6_dst"]) == (14, "fd00::10:0:0:11")
    assert lab6.sw.flows(table_id=pl.SERVICE, cookie=ids.Cookie(ids.KIND_CONN, 1, 1).value,
                         cookie_mask=(1 << 64) - 1)


@pytest.mark.parametrize("method", ["-m", "-g"])
def test_rr_spreads_connections_over_the_servers(lab6, method):
    servers(lab6, method)
    hits = [lab6.connect(C1, 41000 + i, vip=VIP6) for i in range(6)]
    # IPVS's rr starts with the server added last (list_add_rcu at the head)
    assert hits == list(reversed(SERVERS6)) * 2
    listing = lab6.lvsadm("-L -n")
    assert f"TCP  [{VIP6}]:80 rr" in listing and "[fd00::10:0:0:12]:80" in listing
    active = [lab6.counts(ip, SVC)[0] for ip in SERVERS6]
    assert active == [2, 2, 2]


def test_wrr_follows_the_weights(lab6):
    lab6.lvsadm(f"-A {SVC} -s wrr")
    lab6.lvsadm(f"-a {SVC} -r fd00::10:0:0:11 -g -w 2")
    lab6.lvsadm(f"-a {SVC} -r fd00::10:0:0:12 -g -w 1")
    hits = [lab6.connect(C1, 42000 + i, vip=VIP6) for i in range(6)]
    assert hits.count("fd00::10:0:0:11") == 4 and hits.count("fd00::10:0:0:12") == 2


def test_direct_routing_rewrites_only_the_mac(lab6):
    lab6.lvsadm(f"-A {SVC} -s rr")
    lab6.lvsadm(f"-a {SVC} -r fd00::10:0:0:11 -g")
    [(port, p)] = lab6.syn(C1, 40001, vip=VIP6)
    assert port == 14
    assert (p["ipv6_dst"], p["tcp_dst"], p["eth_dst"]) == (VIP6, 80, mac_of("fd00::10:0:0:11"))


def test_an_ipv6_vip_is_tunnelled_to_ipv4_endpoints_on_their_tunnel_mac(lab6):
    """IPVS's mixed-family tunnel: the inner packet is IPv6, the outer IPv4;
    the server's one VXLAN device serves IPv4 and IPv6 VIPs."""
    lab6.lvsadm(f"-A {SVC} -s rr")
    lab6.lvsadm(f"-a {SVC} -r 10.0.0.13 -i")
    [(port, p)] = lab6.syn(C1, 40002, vip=VIP6)
    assert port == TUNNEL_PORT
    assert (p["tun_ipv4_dst"], p["ipv6_dst"], p["tcp_dst"], p["eth_dst"]) == \
        ("10.0.0.13", VIP6, 80, "02:1e:0a:00:00:0d")


def test_an_ipv6_tunnel_endpoint_gets_an_ipv6_outer_header(lab6):
    lab6.lvsadm(f"-A {SVC} -s rr")
    lab6.lvsadm(f"-a {SVC} -r fd00::10:0:0:13 -i")
    [(port, p)] = lab6.syn(C1, 40003, vip=VIP6)
    assert (port, p["tun_ipv6_dst"], p["eth_dst"]) == (TUNNEL_PORT, "fd00::10:0:0:13",
                                                       "02:1e:00:00:00:13")


def test_persistence_with_a_64_prefix_keeps_a_clients_network_together(lab6):
    lab6.lvsadm(f"-A {SVC} -s rr -p 300 -M 64")
    for ip in SERVERS6:
        lab6.lvsadm(f"-a {SVC} -r {ip} -g")
    first = lab6.connect("fd00::10:0:0:1", 43000, vip=VIP6)
    # the same /64, another host and port: the same server
    assert lab6.connect("fd00::99:1", 43001, vip=VIP6) == first
    # another /64 is another client
    other = lab6.connect("fd00:0:0:1::5", 43002, vip=VIP6)
    assert other != first
    [template] = lab6.sw.flows(table_id=pl.SERVICE, priority=pl.PRIO_TEMPLATE,
                               cookie=ids.Cookie(ids.KIND_TEMPLATE, 1, 1).value,
                               cookie_mask=(1 << 64) - 1)
    assert "ipv6_src=fd00::/ffff:ffff:ffff:ffff::" in template.text().replace(" ", "") or \
        "ipv6_src=fd00::/64" in template.text().replace(" ", ""), template.text()
    rows = lab6.lvsadm("-L -n -c")
    assert "[fd00::]:0" in rows or "fd00::" in rows


def test_port_zero_service_keeps_every_port_of_a_client_on_one_server(lab6):
    lab6.lvsadm(f"-A -t [{VIP6}]:0 -s rr -p 300")
    for ip in SERVERS6:
        lab6.lvsadm(f"-a -t [{VIP6}]:0 -r {ip} -m")
    first = lab6.connect(C1, 44000, dport=80, vip=VIP6)
    assert lab6.connect(C1, 44001, dport=443, vip=VIP6) == first
    assert lab6.connect(C2, 44002, dport=443, vip=VIP6) != first


def test_a_fwmark_service_with_ipv6_matches(lab6):
    lab6.lvsadm(f"--add-mark 7 --match tcp:[{VIP6}]:80 --match tcp:[{VIP6}]:443")
    lab6.lvsadm("-A -f 7 -6 -s rr -p 300")
    for ip in SERVERS6:
        lab6.lvsadm(f"-a -f 7 -6 -r {ip} -g")
    first = lab6.connect(C1, 45000, dport=80, vip=VIP6)
    assert first in SERVERS6
    assert lab6.connect(C1, 45001, dport=443, vip=VIP6) == first
    assert lab6.connect(C2, 45002, dport=80, vip=VIP6) != first


def test_udp_over_ipv6(lab6):
    lab6.lvsadm(f"-A -u [{VIP6}]:53 -s rr")
    for ip in SERVERS6:
        lab6.lvsadm(f"-a -u [{VIP6}]:53 -r {ip} -m")
    hits = []
    for i in range(3):
        out = lab6.send(udp(C1, VIP6, 46000 + i, 53, in_port=1, eth_src=mac_of(C1),
                            eth_dst=VMAC6))
        hits.append(lab6.server_of(out))
    assert hits == list(reversed(SERVERS6))


def test_a_quiesced_server_gets_no_new_connections_and_a_deleted_one_drops(lab6):
    servers(lab6, "-g")
    held = lab6.connect(C1, 47000, vip=VIP6)            # on fd00::10:0:0:13
    lab6.lvsadm(f"-e {SVC} -r fd00::10:0:0:12 -g -w 0")
    hits = {lab6.connect(C1, 47001 + i, vip=VIP6) for i in range(4)}
    assert hits == {"fd00::10:0:0:11", "fd00::10:0:0:13"}
    lab6.lvsadm(f"-d {SVC} -r {held}")
    # IPVS drops the deleted server's established traffic (expire_nodest_conn off)
    assert lab6.syn(C1, 47000, vip=VIP6, flags="A") == []


def test_martian_ipv6_sources_make_no_connection(lab6):
    servers(lab6, "-g")
    for source in ("ff02::1", "::1"):
        assert lab6.syn(source, 48000, vip=VIP6) == []
    assert lab6.director.dropped["martian"] == 2


def test_connections_and_templates_survive_a_controller_restart(tmp_path):
    from tests.behaviour.conftest import DirectorLab
    lab6 = DirectorLab(rules_path=str(tmp_path / "lvs.rules"))
    for ip, port in SERVERS6.items():
        lab6.add_host(ip, port)
    lab6.lvsadm(f"-A {SVC} -s rr -p 300 -M 64")
    for ip in SERVERS6:
        lab6.lvsadm(f"-a {SVC} -r {ip} -m")
    first = lab6.connect(C1, 49000, vip=VIP6)
    before = lab6.lvsadm("-L -n -c")
    lab6.restart_controller()
    assert lab6.lvsadm("-L -n -c") == before
    conns = lab6.director.switches[1].conns
    assert ("tcp", ip6(C1), 49000, ip6(VIP6), 80) in conns
    assert len(lab6.director.switches[1].templates) == 1
    # a new connection of the same /64 still goes to the template's server
    assert lab6.connect("fd00::77", 49001, vip=VIP6) == first


def test_ipv4_compatible_ipv6_addresses_are_refused():
    from tests.behaviour.conftest import DirectorLab
    lab = DirectorLab()
    with pytest.raises(ApiError, match=r"::/96"):
        lab.lvsadm("-A -t [::a00:64]:80 -s rr")
    assert lab.lvsadm("-L -n").count("TCP") == 0


def test_switch_persistence_with_an_ipv6_prefix(lab6):
    """--pe switch over IPv6: a /64 shares one template; its later
    connections stay in the switch, replies rewritten there."""
    lab6.lvsadm(f"-A {SVC} -s rr -p 60 -M 64 --pe switch")
    for ip in SERVERS6:
        lab6.lvsadm(f"-a {SVC} -r {ip} -m")
    neighbour = "fd00::10:0:0:99"
    lab6.add_host(neighbour, 2)
    seen = []
    handle = lab6.manager.packet_in
    lab6.manager.packet_in = lambda *a, **k: (seen.append(a[3]), handle(*a, **k))[1]
    first = lab6.connect(C1, 42000, vip=VIP6)
    n = seen.count(pl.SERVICE)
    assert lab6.connect(neighbour, 42001, port=2, vip=VIP6) == first    # the same /64
    assert lab6.connect(C1, 42002, vip=VIP6) == first
    assert seen.count(pl.SERVICE) == n == 1
    [syn] = [f for f in lab6.sw.flows() if ids.Cookie.parse(f.cookie).kind ==
             ids.KIND_TEMPLATE_SYN]
    assert syn.match["ipv6_src"] == ("fd00::", "ffff:ffff:ffff:ffff::")
    reply = tcp(first, neighbour, 80, 42001, flags="SA", in_port=SERVERS6[first],
                eth_src=mac_of(first), eth_dst=mac_of(neighbour))
    [(port, p)] = lab6.send(reply)
    assert (port, p["ipv6_src"], p["tcp_src"]) == (2, VIP6, 80)
