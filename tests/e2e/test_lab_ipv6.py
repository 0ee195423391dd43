"""A dual-stack lab (``Lab(..., ipv6=True)``): the lab's side of IPv6.

Every host keeps IPv6 (quiet: no DAD, no router solicitations) and gets the
twin of its IPv4 address (``lvslab.ipv6_of``: 10.0.0.11 -> fd00::10:0:0:11),
the VIP too (fd00::10:0:0:100); the servers listen on both families.  With
the director (``nat``), traffic between hosts' own IPv6 addresses goes
through its L2 learning like IPv4.  With Ryu's learning switch and
ovs-ofctl flows (as in test_lab_smoke.py), the IPv6 VIP reaches a direct
routing server (VIP on ``lo``) and a tunnel server (VIP on ``vx0``, the
outer packet IPv4) and neither answers Neighbour Solicitations for it.
No director's IPv6 VIP here: that is the director's own tests' business.
"""

import json

import pytest

import lvslab

L2 = {"controller_cmd": lvslab.SIMPLE_SWITCH_13_CMD, "ipv6": True}
COOKIE = "0x1ab6"            # recipe flows, removed after each test
PRIORITY = 100               # above simple_switch_13's learned flows (priority 1)


def _ip6_addrs(lab, host, dev):
    _, out, _ = lab.host_run(host, f"ip -6 -j addr show dev {dev}")
    return {(a["local"], a["prefixlen"]) for i in json.loads(out) for a in i["addr_info"]
            if a["scope"] == "global"}


# --------------------------------------------------------------------------
# the director (lvs_app) as L2 learning switch for the hosts' own addresses


@pytest.mark.lab("nat", ipv6=True)
def test_helpers_give_the_plan(lab):
    assert lab.ipv6 and lab.vip6 == "fd00::10:0:0:100"
    assert lab.ip6("c1") == "fd00::10:0:0:1" and lab.ip6("rs3") == "fd00::10:0:0:13"
    assert all(lab.ip6(h) == lvslab.ipv6_of(lab.ip(h)) for h in lab.clients + lab.servers)
    assert lab.server_by_ip("fd00::10:0:0:12") == "rs2"
    assert lab.lvsadm_commands(ipv6=True)[1] == "-a -t [fd00::10:0:0:100]:80 -r " \
                                                "[fd00::10:0:0:11]:80 -m"


@pytest.mark.lab("nat", ipv6=True)
def test_hosts_have_their_ipv6_addresses_quietly(lab):
    for host in lab.clients + lab.servers:
        intf = lab.host(host).defaultIntf().name
        assert _ip6_addrs(lab, host, intf) == {(lab.ip6(host), 64)}, host
        _, out, _ = lab.host_run(host, f"sysctl -n net.ipv6.conf.{intf}.disable_ipv6 "
                                       f"net.ipv6.conf.{intf}.accept_dad "
                                       f"net.ipv6.conf.{intf}.router_solicitations")
        assert out.split() == ["0", "0", "0"], host
        # the IPv4 address is still there
        _, out, _ = lab.host_run(host, f"ip -4 -br addr show dev {intf}")
        assert f"{lab.ip(host)}/24" in out


@pytest.mark.lab("nat", ipv6=True)
def test_client_pings_server_over_ipv6(lab):
    rc, out, err = lab.host_run("c1", f"ping -6 -c 3 -i 0.2 -W 2 {lab.ip6('rs1')}",
                                check=False)
    assert rc == 0 and " 0% packet loss" in out, out + err


@pytest.mark.lab("nat", ipv6=True)
def test_http_server_answers_on_its_own_ipv6_address(lab):
    for port in lab.spec("rs1")["http_ports"]:
        url = f"http://[{lab.ip6('rs1')}]:{port}/"
        assert lab.curl("c1", url) == "rs1", url
    info = json.loads(lab.curl("c2", f"http://{lvslab.url_host(lab.ip6('rs1'))}/info"))
    assert info["local"] == f"[{lab.ip6('rs1')}]:80"
    assert info["peer"].startswith(f"[{lab.ip6('c2')}]:")
    # IPv4 as before, beside it
    info = json.loads(lab.curl("c2", f"http://{lab.ip('rs1')}/info"))
    assert info["local"] == f"{lab.ip('rs1')}:80"
    assert info["peer"].startswith(f"{lab.ip('c2')}:")


@pytest.mark.lab("nat", ipv6=True)
def test_udp_ftp_and_tls_servers_take_ipv6_clients(lab):
    rs1 = lab.ip6("rs1")
    lab.start_udp_servers(5353)
    assert lab.probe("c1", "udp", rs1, 5353, "--sport", 41000, "--size", 3000,
                     "--echo") == "rs1 echo-ok"
    assert lab.probe("c1", "tcp-idle", rs1, 8080, "--sport", 41001) == "rs1"
    lab.start_ftp_servers()
    for mode, command in (("epsv", "EPSV"), ("eprt", f"EPRT |2|{lab.ip6('c1')}|")):
        result = lab.ftp("c1", mode=mode, address=rs1)
        assert (result.banner, result.body) == ("rs1", "rs1"), result.transcript()
        assert any(c.startswith(command) for c in result.commands), result.transcript()
    session = lab.ftplib("c1", passive=False, address=rs1)
    assert session.get("whoami") == "rs1", session
    assert session["data_peers"] == [f"[{rs1}]:20"] * 2
    lab.start_tls_servers()
    assert lab.tls("c1", address=rs1).server == "rs1"


# --------------------------------------------------------------------------
# the IPv6 VIP on direct routing and tunnel servers, Ryu's learning switch


@pytest.fixture(scope="module", params=["droute", "tunnel"])
def l2_lab6(request, lab_factory):
    return lab_factory(request.param, **L2)


def test_servers_hold_the_ipv6_vip(l2_lab6):
    lab = l2_lab6
    dev = "lo" if lab.name == "droute" else lvslab.VXLAN_DEVICE
    for server in lab.servers:
        assert (lab.vip6, 128) in _ip6_addrs(lab, server, dev), server


def test_ipv6_vip_recipe(l2_lab6):
    """The flows a director installs for an IPv6 VIP reach the server; the
    reply comes back from the IPv6 VIP; no server answers ND for it."""
    lab = l2_lab6
    client, server = lab.clients[0], lab.servers[-1]
    intf = f"{client}-eth0"
    lab.host_run(client, f"ip -6 neigh replace {lab.vip6} lladdr {lab.topology['vip_mac']} "
                         f"dev {intf}")
    if lab.name == "droute":
        actions = f"set_field:{lab.mac(server)}->eth_dst,output:{lab.port_of(server)}"
    else:
        # an IPv6 VIP through an IPv4 tunnel endpoint
        actions = (f"set_field:{lab.ip(server)}->tun_dst,"
                   f"set_field:{lab.spec(server)['vxlan_mac']}->eth_dst,"
                   f"output:{lab.port_of(lvslab.VXLAN_PORT_NAME)}")
        lab.add_flow(f"cookie={COOKIE},priority={PRIORITY},udp,in_port=LOCAL,"
                     f"nw_dst={lab.ip(server)},tp_dst={lvslab.VXLAN_UDP_PORT},"
                     f"actions=output:{lab.port_of(server)}")
    lab.add_flow(f"cookie={COOKIE},priority={PRIORITY},tcp6,in_port={lab.port_of(client)},"
                 f"ipv6_dst={lab.vip6},tp_dst=80,actions={actions}")
    try:
        assert lab.curl(client, f"http://[{lab.vip6}]/") == server
        info = json.loads(lab.curl(client, f"http://[{lab.vip6}]/info"))
        assert info["local"] == f"[{lab.vip6}]:80"
        assert info["peer"].startswith(f"[{lab.ip6(client)}]:")
    finally:
        lab.ofctl("del-flows", f"cookie={COOKIE}/-1")
        lab.host_run(client, f"ip -6 neigh del {lab.vip6} dev {intf}", check=False)
    # the learning switch floods the solicitation to every server: none answers
    other = lab.clients[1]
    rc, _, _ = lab.host_run(other, f"ping -6 -c 1 -W 1 {lab.vip6}", check=False)
    _, neigh, _ = lab.host_run(other, f"ip -6 neigh show {lab.vip6}")
    assert rc != 0 and "lladdr" not in neigh, neigh
