"""One director across a leaf-spine fabric of Open vSwitch switches (topologies/leafspine.json).

Five switches with loops (every leaf on both spines), the controller started
with --observe-links; clients on two leaves, real servers on two leaves.
"""

import re
import time

import pytest

from lvslab import run as lvslab_run, wait_until

pytestmark = pytest.mark.lab("leafspine")

VIP = "10.0.0.100"
SERVERS = {"10.0.0.11": ("rs1", 80), "10.0.0.12": ("rs2", 80), "10.0.0.13": ("rs3", 8080)}


def configure(lab, flag="-m", opts="-s rr"):
    lab.lvsadm("-C")
    lab.lvsadm(f"-A -t {VIP}:80 {opts}")
    for ip, (_, port) in SERVERS.items():
        target = f"{ip}:{port}" if flag == "-m" else ip
        lab.lvsadm(f"-a -t {VIP}:80 -r {target} {flag}")


def answers(lab, clients, rounds):
    return [lab.curl(client, f"http://{VIP}/", timeout=5)
            for _ in range(rounds) for client in clients]


def test_every_host_reaches_every_other_over_loops_without_a_storm(lab):
    assert lab.pingall(timeout=2) == 0.0
    # a broadcast storm would keep the switches busy after the pings: the
    # spines' ports must be quiet a moment later
    def spine_rx():
        return sum(int(n) for n in re.findall(r"rx pkts=(\d+)", lab.ofctl("dump-ports",
                                                                       switch="sp1").stdout))
    before = spine_rx()
    time.sleep(2)
    assert spine_rx() - before < 50          # LLDP only (a few per second)


def test_nat_rr_from_clients_on_two_leaves_is_exact_and_transit_holds_nothing_per_connection(lab):
    configure(lab, "-m")
    got = answers(lab, ["c1", "c3"], 3)
    assert sorted(got) == ["rs1", "rs1", "rs2", "rs2", "rs3", "rs3"]
    for spine in ("sp1", "sp2"):
        flows = lab.dump_flows(spine)
        assert not re.search(r"tp_(src|dst)|tcp_(src|dst)", flows), flows
        # nor any per-VIP or fragment punt: everything it gets comes by links
        assert not re.search(r"10\.0\.0\.1[0-9]+|nw_frag=yes,nw_(src|dst)", flows), flows
    # the connections live on the clients' leaves only
    table = lab.connection_table()
    assert {c["client"] for c in table} == {"10.0.0.1", "10.0.0.3"}


def test_direct_routing_across_the_fabric(lab):
    hosts = [lab.host(name) for name, _ in SERVERS.values()]
    for host in hosts:                        # the DR recipe: the VIP on lo, quiet ARP
        host.cmd(f"ip addr add {VIP}/32 dev lo; sysctl -qw net.ipv4.conf.all.arp_ignore=1 "
                 "net.ipv4.conf.all.arp_announce=2")
    try:
        configure(lab, "-g")
        got = answers(lab, ["c2", "c3"], 3)
        assert sorted(got) == ["rs1", "rs1", "rs2", "rs2", "rs3", "rs3"]
    finally:
        for host in hosts:
            host.cmd(f"ip addr del {VIP}/32 dev lo")


def test_persistence_keeps_a_client_on_one_server(lab):
    configure(lab, "-m", "-s rr -p 300")
    assert len(set(answers(lab, ["c3"], 5))) == 1
    assert len(set(answers(lab, ["c1"], 5))) == 1


def test_a_spine_link_down_during_a_transfer_does_not_break_it(lab):
    configure(lab, "-m")
    size = 8_000_000
    proc = lab.popen("c1", ["curl", "-sS", "--noproxy", "*", "--limit-rate", "2M", "-o",
                            "/dev/null", "-w", "%{size_download}", f"http://{VIP}/bytes/{size}"],
                     description="c1: a long download", stdout=-1, stderr=-1, text=True)
    time.sleep(1.0)
    lab.link_down("l1", "sp1")
    time.sleep(1.0)
    lab.link_up("l1", "sp1")
    time.sleep(1.0)
    lab.link_down("l1", "sp2")
    time.sleep(1.0)
    lab.link_up("l1", "sp2")
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert int(out) == size
    # new connections work after it all
    wait_until(lambda: lab.curl("c1", f"http://{VIP}/", check=False) in ("rs1", "rs2", "rs3"),
               10, 0.5, "a new connection through the fabric")


def test_a_spine_going_down_during_a_transfer_does_not_break_it(lab):
    """The spine that carries a long download's path to c1 stops whole (its
    bridge deleted: the controller sees it leave); the download moves to the
    other spine and completes, new connections work while it is down; it
    comes back empty, gets the fabric's flows again, and both keep working."""
    configure(lab, "-m")
    size = 6_000_000
    proc = lab.popen("c1", ["curl", "-sS", "--noproxy", "*", "--limit-rate", "2M", "-o",
                            "/dev/null", "-w", "%{size_download}", f"http://{VIP}/bytes/{size}"],
                     description="c1: a long download", stdout=-1, stderr=-1, text=True)
    conn = wait_until(lambda: next((c for c in lab.connection_table()
                                    if c["client"] == "10.0.0.1" and not c.get("template")),
                                   None), 5, 0.1, "the download's connection")
    # the spine the server's data to c1 crosses (a leaf's ports: 3 to sp1, 4 to sp2)
    to_client = re.search(r"dl_dst=02:00:0a:00:00:01 actions=output:(\d)",
                          lab.dump_flows(lab.switch_of(lab.server_by_ip(conn["server"]))))
    spine = {"3": "sp1", "4": "sp2"}[to_client.group(1)]
    time.sleep(0.5)
    lab.switch_down(spine)
    try:
        wait_until(lambda: lab.dpid_of(spine) not in lab.fabric()["switches"], 10, 0.2,
                   f"the controller to see {spine} leave")
        other = {"sp1": "sp2", "sp2": "sp1"}[spine]
        assert lab.dump_flows(other).count("priority=150") >= 6       # one per host
        got = answers(lab, ["c1", "c3"], 3)                          # new connections
        assert sorted(got) == ["rs1", "rs1", "rs2", "rs2", "rs3", "rs3"]
    finally:
        lab.switch_up(spine)
    assert lab.dump_flows(spine).count("priority=150") >= 6
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert int(out) == size
    got = answers(lab, ["c1", "c3"], 3)
    assert sorted(got) == ["rs1", "rs1", "rs2", "rs2", "rs3", "rs3"]


def test_a_restarted_controller_places_the_hosts_from_the_fabrics_flows(lab):
    """kill -9 of the controller and a new one: it reads the fabric's flows
    back and, once LLDP has found the links, knows where every host lives
    without waiting for their traffic; NAT across the fabric works on (the
    service table given again: this lab keeps no rules file)."""
    configure(lab, "-m")
    assert len(lab.fabric()["hosts"]) >= 6          # the earlier tests' traffic
    lab.kill_controller()
    lab.restart_controller()                         # every switch read back, links known
    macs = {lab.mac(h) for h in lab.clients + lab.servers}
    wait_until(lambda: macs <= set(lab.fabric()["hosts"]), 3, 0.1,
               "every host placed from the flows read back")
    configure(lab, "-m")                  # this lab has no rules file: the table anew
    got = answers(lab, ["c1", "c3"], 3)
    assert sorted(got) == ["rs1", "rs1", "rs2", "rs2", "rs3", "rs3"]


@pytest.mark.lab("leafspine_tunnel")
def test_tunnel_from_clients_on_two_leaves_encapsulates_at_each_clients_edge(lab):
    """l1 (c1) and l2 (c3) each hold a VXLAN port: each encapsulates for its
    own clients; the outer packet goes to each server's leaf by the server's
    MAC, through the spines, which hold nothing per connection."""
    lab.apply_lvsadm()
    got = answers(lab, ["c1", "c3"], 3)
    assert sorted(got) == ["rs1", "rs1", "rs2", "rs2", "rs3", "rs3"]
    encap = re.compile(r"set_field:10\.0\.0\.\d+->tun_dst,output:100")
    for leaf in ("l1", "l2"):                       # the clients' edges
        assert encap.search(lab.dump_flows(leaf)), leaf
    assert not re.search(r"tun_dst", lab.dump_flows("l3"))   # servers only there
    assert {c["client"] for c in lab.connection_table()} == {"10.0.0.1", "10.0.0.3"}
    # each leaf's outer packets left from its own address, by its own route
    # (the datapath's flows of the last seconds show the encapsulation)
    datapath = lvslab_run(["ovs-appctl", "dpctl/dump-flows"]).stdout
    routes = lvslab_run(["ovs-appctl", "ovs/route/show"]).stdout
    for leaf, (dpid, source) in {"l1": (1, "10.0.0.254"), "l2": (2, "10.0.0.253")}.items():
        assert f"MARK {dpid} dev {leaf} SRC {source}" in routes, routes
        assert re.search(rf"tnl_push\(.*ipv4\(src={re.escape(source)},dst=10\.0\.0\.1[123],",
                         datapath), datapath
    for spine in ("sp1", "sp2"):
        flows = lab.dump_flows(spine)
        assert not re.search(r"tp_(src|dst)|tcp_(src|dst)|udp_(src|dst)|tun_dst", flows), flows
    carried = sum(int(n) for spine in ("sp1", "sp2")
                  for n in re.findall(r"n_packets=(\d+), n_bytes=\d+, priority=150",
                                      lab.dump_flows(spine)))
    assert carried > 0                                   # the outer packets crossed them
