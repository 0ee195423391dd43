"""IPv6 end to end: the IPv4 scenarios' twins on dual-stack labs.

Real curl, FTP and TLS clients in Mininet hosts talk to an IPv6 VIP
(fd00::10:0:0:100); the director answers their Neighbour Solicitations and
forwards by NAT, direct routing or tunnel (IPv4 tunnel endpoints: IPVS's
mixed-family tunnel).  Each test configures what it needs after ``-C``.
"""

import collections
import json
import re
import textwrap

import pytest

from lvslab import url_host

METHODS = {"nat": "-m", "droute": "-g", "tunnel": "-i"}
UDP_PORT = 5353


@pytest.fixture(scope="module", params=list(METHODS))
def lab6(request, lab_factory):
    return lab_factory(request.param, ipv6=True)


def targets(lab):
    """The real servers' addresses for an IPv6 service: their IPv6 ones, or
    for tunnel servers their IPv4 tunnel endpoints."""
    if lab.name == "tunnel":
        return [lab.ip(name) for name in lab.servers]
    return [lab.ip6(name) for name in lab.servers]


def configure(lab, service=None, opts="-s rr", weights=(1, 1, 1), port=None):
    service = service or f"-t [{lab.vip6}]:80"
    lab.lvsadm("-C")
    lab.lvsadm(f"-A {service} {opts}")
    for rs, weight in zip(targets(lab), weights):
        target = f"{url_host(rs)}:{port}" if port is not None else rs
        lab.lvsadm(f"-a {service} -r {target} {METHODS[lab.name]} -w {weight}")


def fetch(lab, client, port=80, path="/"):
    return lab.curl(client, f"http://[{lab.vip6}]:{port}{path}").strip()


def test_rr_alternates_exactly_and_the_vip_is_found_by_neighbour_discovery(lab6):
    lab = lab6
    configure(lab)
    answers = [fetch(lab, lab.clients[i % len(lab.clients)]) for i in range(9)]
    for i in range(0, 9, 3):
        assert sorted(answers[i:i + 3]) == sorted(lab.servers), answers
    # the clients learned the VIP's virtual MAC from the director's answer
    for client in lab.clients:
        _, out, _ = lab.host_run(client, f"ip -6 neigh show {lab.vip6}")
        assert "lladdr 02:1f:00:00:01:00" in out, (client, out)
    # each request arrived for the IPv6 VIP, from the client's own address
    info = json.loads(fetch(lab, "c2", path="/info"))
    assert info["local"] == f"[{lab.vip6}]:80" or lab.name == "nat", info
    assert info["peer"].startswith(f"[{lab.ip6('c2')}]:"), info
    listing = lab.lvsadm("-L -n").stdout
    assert f"TCP  [{lab.vip6}]:80 rr" in listing, listing


def test_wrr_follows_the_weights(lab6):
    lab = lab6
    configure(lab, opts="-s wrr", weights=(3, 2, 1))
    counts = collections.Counter(fetch(lab, "c1") for _ in range(12))
    assert counts == {"rs1": 6, "rs2": 4, "rs3": 2}


def test_persistence_by_prefix_keeps_a_64_on_one_server(lab6):
    lab = lab6
    # every client is in fd00::/64: with -M 64 they are one client
    configure(lab, opts="-s rr -p 60 -M 64")
    seen = {fetch(lab, client) for client in lab.clients for _ in range(2)}
    assert len(seen) == 1, seen
    rows = lab.lvsadm("-L -c -n").stdout
    assert re.search(r"TCP \d\d:\d\d  NONE +\[fd00::\]:0 +\[fd00::10:0:0:100\]:80 ", rows), rows
    # -M 128 (the default): each client is its own
    configure(lab, opts="-s rr -p 60")
    homes = {client: {fetch(lab, client) for _ in range(3)} for client in lab.clients}
    assert all(len(s) == 1 for s in homes.values()), homes
    assert len({next(iter(s)) for s in homes.values()}) == len(lab.clients), homes


def test_port_zero_service_keeps_a_clients_ports_together(lab6):
    lab = lab6
    configure(lab, service=f"-t [{lab.vip6}]:0", opts="-s rr -p 60", port=0)
    for client in lab.clients:
        first = fetch(lab, client, 80)
        assert fetch(lab, client, 8080) == first
        assert fetch(lab, client, 80) == first


def test_a_quiesced_server_gets_no_new_clients_and_a_deleted_one_none(lab6):
    lab = lab6
    configure(lab, opts="-s rr -p 60")
    kept = fetch(lab, "c1")
    address = targets(lab)[lab.servers.index(kept)]
    lab.lvsadm(f"-e -t [{lab.vip6}]:80 -r {address} {METHODS[lab.name]} -w 0")
    assert fetch(lab, "c1") == kept                # its template is honoured
    assert kept not in {fetch(lab, client) for client in lab.clients[1:] for _ in range(2)}
    configure(lab)
    lab.lvsadm(f"-d -t [{lab.vip6}]:80 -r {targets(lab)[0]}")
    assert {fetch(lab, lab.clients[i % len(lab.clients)]) for i in range(6)} == {"rs2", "rs3"}
    lab.lvsadm(f"-D -t [{lab.vip6}]:80")
    assert lab.curl("c1", f"http://[{lab.vip6}]/", timeout=2, check=False) == ""


def test_the_tunnel_servers_one_device_serves_ipv4_and_ipv6_vips(lab_factory):
    """Three VIPs on the same tunnel servers, one IPv4 and two IPv6: one vx0
    each (the director addresses the inner frame to the server's tunnel MAC,
    whatever the VIP)."""
    lab = lab_factory("tunnel", ipv6=True)
    second6 = "fd00::10:0:0:101"
    for name in lab.servers:
        lab.host(name).cmd(f"ip -6 addr add {second6}/128 dev vx0 nodad")
    lab.lvsadm("-C")
    vips = (lab.vip, lab.vip6, second6)
    try:
        for vip in vips:
            lab.lvsadm(f"-A -t {url_host(vip)}:80 -s rr")
            for name in lab.servers:
                lab.lvsadm(f"-a -t {url_host(vip)}:80 -r {lab.ip(name)} -i")
        for vip in vips:
            seen = [json.loads(lab.curl(client, f"http://{url_host(vip)}/info"))
                    for _ in range(3) for client in ("c1", "c2")]
            assert sorted(answer["server"] for answer in seen) == [
                "rs1", "rs1", "rs2", "rs2", "rs3", "rs3"]
            assert {answer["local"] for answer in seen} == {f"{url_host(vip)}:80"}
    finally:
        lab.lvsadm("-C")
        for name in lab.servers:
            lab.host(name).cmd(f"ip -6 addr del {second6}/128 dev vx0")


# --------------------------------------------------------------------------
# extension headers and fragments (NAT)

HOP_BY_HOP = textwrap.dedent("""\
    import socket, sys
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.settimeout(3)
    # a hop-by-hop header holding one PadN option (the kernel fills in the
    # next header): the director must find the UDP ports behind it
    hbh = bytes([0, 0, 1, 4, 0, 0, 0, 0])
    s.sendmsg([b"hello"], [(socket.IPPROTO_IPV6, socket.IPV6_HOPOPTS, hbh)],
              0, (sys.argv[1], int(sys.argv[2])))
    print(s.recv(2048).decode().split()[0])
""")


@pytest.fixture(scope="module")
def udp_lab6(lab_factory):
    lab = lab_factory("nat", ipv6=True)
    lab.start_udp_servers(UDP_PORT)
    return lab


def test_a_datagram_with_a_hop_by_hop_header_is_balanced(udp_lab6):
    lab = udp_lab6
    configure(lab, service=f"-u [{lab.vip6}]:{UDP_PORT}")
    script = lab.log_dir / "hop_by_hop.py"
    script.write_text(HOP_BY_HOP)
    answers = []
    for client in lab.clients:
        _, out, _ = lab.host_run(client, f"python3 {script} {lab.vip6} {UDP_PORT}")
        answers.append(out.strip())
    assert sorted(answers) == sorted(lab.servers), answers


@pytest.mark.parametrize("size", [4000, 9000])
def test_fragmented_udp_through_nat_arrives_whole_both_ways(udp_lab6, size):
    lab = udp_lab6
    configure(lab, service=f"-u [{lab.vip6}]:{UDP_PORT}")
    for i, client in enumerate(lab.clients):
        out = lab.probe(client, "udp", lab.vip6, UDP_PORT, "--sport", 43000 + i, "--size",
                        size, "--echo")
        assert re.fullmatch(r"rs\d echo-ok", out), out
    table = lab.lvsadm("-L -c -n").stdout
    assert not re.search(r"\]:0 +\[fd00::10:0:0:100\]:0 ", table), table


# --------------------------------------------------------------------------
# FTP and TLS over IPv6

def test_nat_ftp_helper_carries_epsv_and_eprt(lab_factory):
    lab = lab_factory("nat", ipv6=True)
    lab.start_ftp_servers()
    configure(lab, service=f"-t [{lab.vip6}]:21")
    try:
        for client in lab.clients:
            for mode in ("epsv", "eprt"):
                result = lab.ftp(client, mode=mode, address=lab.vip6)
                assert result.banner in lab.servers, result.transcript()
                assert result.body == result.banner, result.transcript()
    finally:
        lab.lvsadm("-C")


def test_persistent_ftp_and_tls_resumption_over_ipv6(lab_factory):
    """The founding document's case: port 0, persistence; FTP passive and
    active, and a TLS session resumed on the server that made it."""
    lab = lab_factory("droute", ipv6=True)
    lab.start_ftp_servers()
    lab.start_tls_servers()
    configure(lab, service=f"-t [{lab.vip6}]:0", opts="-s rr -p 60", port=0)
    try:
        homes = {}
        for client in lab.clients:
            results = [lab.ftp(client, mode=mode, address=lab.vip6) for mode in ("epsv", "eprt")]
            assert {r.banner for r in results} == {r.body for r in results}, \
                [r.transcript() for r in results]
            assert len({r.banner for r in results}) == 1
            homes[client] = results[0].banner
            sess = lab.log_dir / f"v6-{client}.sess"
            first = lab.tls(client, sess_out=sess, address=lab.vip6)
            later = [lab.tls(client, sess_in=sess, address=lab.vip6) for _ in range(2)]
            assert {first.server} | {r.server for r in later} == {homes[client]}, (first, later)
            assert all(r.reused and r.server_reused for r in later), later
        assert len(set(homes.values())) == len(lab.clients), homes
    finally:
        lab.lvsadm("-C")
