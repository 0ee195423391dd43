"""The lab itself works: every topology, with Ryu's learning switch as controller.

No director here: ``ryu.app.simple_switch_13`` forwards L2, and the flows a
director would install for NAT, direct routing and VXLAN tunnelling are put in
with ``ovs-ofctl`` at a higher priority.  These are the recipes the director
translates into OpenFlow messages (also in lvslab.NAT_RECIPE, DR_RECIPE and
VXLAN_RECIPE).  The first tests need no lab: topology files and the log
checker.
"""

import ipaddress
import json

import pytest

import lvslab

L2 = {"controller_cmd": lvslab.SIMPLE_SWITCH_13_CMD}
COOKIE = "0x1ab"             # recipe flows, removed after each test
PRIORITY = 100               # above simple_switch_13's learned flows (priority 1)


# --------------------------------------------------------------------------
# no lab needed


@pytest.mark.parametrize("name", lvslab.topology_names())
def test_topology_file_is_valid(name):
    topo = lvslab.load_topology(name)
    assert topo["switch"]["dpid"] == 1
    assert [s["name"] for s in topo["servers"]] == ["rs1", "rs2", "rs3"]
    assert topo["description"] and topo["lvsadm"]
    # the director answers ARP for the VIP with this MAC and tunnels frames to it
    from lvs_app.packet import mac_text, virtual_mac
    assert topo["vip_mac"] == mac_text(virtual_mac(int(ipaddress.IPv4Address(topo["vip"]))))
    assert topo["vip_mac"] == lvslab.vip_mac_for(topo["vip"])


def test_lab_topologies_exist():
    assert {"nat", "droute", "tunnel", "persist"} <= set(lvslab.topology_names())


def _topo(**changes):
    topo = json.loads((lvslab.TOPOLOGIES / "nat.json").read_text())
    topo.update(name="nat", **changes)
    return topo


@pytest.mark.parametrize("changes, message", [
    ({"servers": [{"name": "rs1", "ip": "10.0.0.11", "method": "nat"}]},
     "topology nat: server rs1: method 'nat' must be one of masq, droute, tunnel"),
    ({"vip": "10.0.1.100"},
     "topology nat: vip: 10.0.1.100 is not a host address of subnet 10.0.0.0/24"),
    ({"clients": [{"name": "c1", "ip": "10.0.0.11"}]},
     "topology nat: server rs1: address 10.0.0.11 is already used by client c1"),
    ({"lvsadm": ["-a -t 10.0.0.100:80 -r 10.0.0.11:80 -g"]},
     "topology nat: lvsadm '-a -t 10.0.0.100:80 -r 10.0.0.11:80 -g': server rs1 is set up "
     "for masq, the command asks for droute"),
    ({"lvsadm": ["-a -t 10.0.0.100:80 -r 10.0.0.99:80 -m"]},
     "topology nat: lvsadm '-a -t 10.0.0.100:80 -r 10.0.0.99:80 -m': 10.0.0.99 is not a "
     "server of this lab"),
], ids=["method", "vip-outside-subnet", "address-twice", "lvsadm-method", "lvsadm-server"])
def test_topology_errors_name_the_rule(changes, message):
    with pytest.raises(lvslab.TopologyError) as err:
        lvslab.load_topology(_topo(**changes))
    assert str(err.value) == message


def test_log_checker_finds_tracebacks_openflow_errors_and_error_lines():
    log = "\n".join([
        "loading app lvs_app",
        "5 RLock(s) were not greened, to fix this error make sure you run eventlet.monkey_patch()",
        "packet in 1 02:00:0a:00:00:01 ff:ff:ff:ff:ff:ff 1",
        "lvs_app: Exception occurred during handler processing. Backtrace from offending handler",
        "Traceback (most recent call last):",
        '  File "x.py", line 1, in f',
        "    raise KeyError(3)",
        "KeyError: 3",
        "EventOFPErrorMsg received.",
        "version=0x4, msg_type=0xe, msg_len=0x4c, xid=0x9",
        " `-- msg_type: OFPT_FLOW_MOD(14)",
        "Error in the datapath 0000000000000001 from ('127.0.0.1', 40000)",
        "all fine",
    ])
    found = lvslab.find_log_errors(log)
    assert found == [
        "lvs_app: Exception occurred during handler processing. Backtrace from offending handler",
        'Traceback (most recent call last):\n  File "x.py", line 1, in f\n'
        "    raise KeyError(3)\nKeyError: 3",
        "EventOFPErrorMsg received.\nversion=0x4, msg_type=0xe, msg_len=0x4c, xid=0x9\n"
        " `-- msg_type: OFPT_FLOW_MOD(14)",
        "Error in the datapath 0000000000000001 from ('127.0.0.1', 40000)",
    ]
    assert lvslab.find_log_errors(log, ignore=[r"Error in the datapath", "Exception",
                                               "Traceback", "OFPErrorMsg"]) == []


# --------------------------------------------------------------------------
# every topology, learning switch


@pytest.mark.lab("nat", **L2)
def test_lab_fixture_follows_the_marker(lab, lab_factory):
    assert lab.name == "nat" and lab.running
    assert lab_factory("nat", **L2) is lab          # the running lab is reused
    assert lab.curl("c1", f"http://{lab.ip('rs1')}/") == "rs1"


@pytest.fixture(scope="module", params=lvslab.topology_names())
def l2_lab(request, lab_factory):
    """Each topology in turn (pytest groups the tests by it), simple_switch_13."""
    return lab_factory(request.param, **L2)


def test_pingall(l2_lab):
    assert l2_lab.pingall() == 0


def test_every_server_answers_on_its_real_address(l2_lab):
    """TCP works through the userspace datapath (tx checksum offload is off)."""
    for client in l2_lab.clients:
        for server in l2_lab.servers:
            for port in l2_lab.spec(server)["http_ports"]:
                url = f"http://{l2_lab.ip(server)}:{port}/"
                assert l2_lab.curl(client, url) == server, (client, url)


def test_forwarding_method_recipe(l2_lab):
    """The flows a director installs for this lab's method carry a client to the VIP."""
    method = l2_lab.topology["servers"][0]["method"]
    client, server = l2_lab.clients[0], l2_lab.servers[-1]
    recipe = {"masq": _nat_recipe, "droute": _droute_recipe, "tunnel": _tunnel_recipe}[method]
    _static_vip_arp(l2_lab, client)
    try:
        recipe(l2_lab, client, server)
    finally:
        l2_lab.ofctl("del-flows", f"cookie={COOKIE}/-1")
        l2_lab.host_run(client, f"ip neigh del {l2_lab.vip} dev {client}-eth0", check=False)


def _static_vip_arp(lab, client):
    """The director answers ARP for the VIP with vip_mac; the learning switch does not."""
    lab.host_run(client, f"ip neigh replace {lab.vip} lladdr {lab.topology['vip_mac']} "
                         f"dev {client}-eth0")


def _info(lab, client):
    return json.loads(lab.curl(client, f"http://{lab.vip}/info"))


def _nat_recipe(lab, client, server):
    """NAT: rewrite VIP:80 -> server:8080 on the way in, back on the way out.

        priority=100,tcp,in_port=<client>,nw_src=<client>,nw_dst=<VIP>,tp_dst=80
            actions=set_field:<server MAC>->eth_dst,set_field:<server>->ip_dst,
                    set_field:8080->tcp_dst,output:<server port>
        priority=100,tcp,in_port=<server>,nw_src=<server>,tp_src=8080,nw_dst=<client>
            actions=set_field:<vip_mac>->eth_src,set_field:<VIP>->ip_src,
                    set_field:80->tcp_src,output:<client port>

    OVS fixes the IP and TCP checksums.  The server answers the client's
    MAC directly (one subnet), so the reply crosses the switch anyway.
    """
    c_ip, s_ip, vip = lab.ip(client), lab.ip(server), lab.vip
    lab.add_flow(f"cookie={COOKIE},priority={PRIORITY},tcp,in_port={lab.port_of(client)},"
                 f"nw_src={c_ip},nw_dst={vip},tp_dst=80,actions="
                 f"set_field:{lab.mac(server)}->eth_dst,set_field:{s_ip}->ip_dst,"
                 f"set_field:8080->tcp_dst,output:{lab.port_of(server)}")
    lab.add_flow(f"cookie={COOKIE},priority={PRIORITY},tcp,in_port={lab.port_of(server)},"
                 f"nw_src={s_ip},tp_src=8080,nw_dst={c_ip},actions="
                 f"set_field:{lab.topology['vip_mac']}->eth_src,set_field:{vip}->ip_src,"
                 f"set_field:80->tcp_src,output:{lab.port_of(client)}")
    assert lab.curl(client, f"http://{vip}/") == server
    # the server saw the client's own address, on its real address and port
    info = _info(lab, client)
    assert info["local"] == f"{s_ip}:8080"
    assert info["peer"].startswith(f"{c_ip}:")


def _droute_recipe(lab, client, server):
    """Direct routing: only the destination MAC changes; the reply goes straight back.

        priority=100,tcp,in_port=<client>,nw_dst=<VIP>,tp_dst=80
            actions=set_field:<server eth0 MAC>->eth_dst,output:<server port>

    The server holds the VIP on lo (arp_ignore=1, arp_announce=2; Lab.start).
    """
    lab.add_flow(f"cookie={COOKIE},priority={PRIORITY},tcp,in_port={lab.port_of(client)},"
                 f"nw_dst={lab.vip},tp_dst=80,actions="
                 f"set_field:{lab.mac(server)}->eth_dst,output:{lab.port_of(server)}")
    assert lab.curl(client, f"http://{lab.vip}/") == server
    info = _info(lab, client)
    assert info["local"] == f"{lab.vip}:80"
    assert info["peer"].startswith(f"{lab.ip(client)}:")
    _nobody_answers_arp_for_the_vip(lab)


def _nobody_answers_arp_for_the_vip(lab):
    """The servers hold the VIP but keep quiet about it (arp_ignore=1)."""
    other = lab.clients[1]
    rc, _, _ = lab.host_run(other, f"ping -c 1 -W 1 {lab.vip}", check=False)
    _, neigh, _ = lab.host_run(other, f"ip neigh show {lab.vip}")
    assert rc != 0 and "lladdr" not in neigh, neigh


def _tunnel_recipe(lab, client, server):
    """VXLAN: encapsulate to the server, which decapsulates on vx0 (holding the VIP).

        priority=100,tcp,in_port=<client>,nw_dst=<VIP>,tp_dst=80
            actions=set_field:<server>->tun_dst,set_field:<vx0 MAC>->eth_dst,output:100
        priority=100,udp,in_port=LOCAL,nw_dst=<server>,tp_dst=4789
            actions=output:<server port>

    OVS's userspace tunnel routes the outer packet out of the bridge's LOCAL
    port (it holds switch.tunnel_ip in the lab subnet) and runs it through the
    bridge's flow table again: the second flow (or any L2 forwarding that
    treats LOCAL like a host port) delivers it.  The inner eth_dst must be
    vx0's MAC; the lab gives vx0 the vip_mac, so the rewrite changes nothing.
    """
    s_ip = lab.ip(server)
    vx0_mac = lab.spec(server)["vxlan_mac"]
    _, link, _ = lab.host_run(server, f"cat /sys/class/net/{lvslab.VXLAN_DEVICE}/address")
    assert link.strip() == vx0_mac
    lab.add_flow(f"cookie={COOKIE},priority={PRIORITY},tcp,in_port={lab.port_of(client)},"
                 f"nw_dst={lab.vip},tp_dst=80,actions=set_field:{s_ip}->tun_dst,"
                 f"set_field:{vx0_mac}->eth_dst,output:{lab.port_of(lvslab.VXLAN_PORT_NAME)}")
    lab.add_flow(f"cookie={COOKIE},priority={PRIORITY},udp,in_port=LOCAL,nw_dst={s_ip},"
                 f"tp_dst={lvslab.VXLAN_UDP_PORT},actions=output:{lab.port_of(server)}")
    capture = lab.log_dir / f"{server}-vxlan.tcpdump"
    with open(capture, "w") as out:
        tcpdump = lab.popen(server, ["tcpdump", "-l", "-n", "--immediate-mode", "-i", f"{server}-eth0",
                                     "udp", "port", str(lvslab.VXLAN_UDP_PORT)],
                            stdout=out, stderr=out)
    try:
        lvslab.wait_until(lambda: "listening on" in capture.read_text(), 10,
                          message="tcpdump to listen")
        assert lab.curl(client, f"http://{lab.vip}/") == server
        info = _info(lab, client)
    finally:
        lvslab.stop_process(tcpdump, 3)
    assert info["local"] == f"{lab.vip}:80"
    assert info["peer"].startswith(f"{lab.ip(client)}:")
    text = capture.read_text()
    tunnel_ip = lab.topology["switch"]["tunnel_ip"]
    # outer 10.0.0.254 -> server:4789, inner client -> VIP:80
    assert f"IP {tunnel_ip}." in text and f"> {s_ip}.{lvslab.VXLAN_UDP_PORT}: VXLAN" in text, text
    assert f"{lab.ip(client)}." in text and f"> {lab.vip}.80:" in text, text
    _, rx, _ = lab.host_run(server, f"cat /sys/class/net/{lvslab.VXLAN_DEVICE}/statistics/rx_packets")
    assert int(rx) > 0
    # the outer packets took the in_port=LOCAL flow
    local_flow = [line for line in lab.dump_flows().splitlines()
                  if f"cookie={COOKIE}" in line and "in_port=LOCAL" in line]
    assert local_flow and "n_packets=0," not in local_flow[0], local_flow
    _nobody_answers_arp_for_the_vip(lab)
