"""The director end to end: real curl clients, real HTTP servers, OVS, ryu-manager.

Every test configures the service it needs through lvsadm (after -C), so the
tests of one lab do not depend on each other's order.
"""

import collections
import re
import time

import pytest

import lvslab_load

METHODS = {"nat": "-m", "droute": "-g", "tunnel": "-i"}
SERVERS = ("10.0.0.11", "10.0.0.12", "10.0.0.13")


@pytest.fixture(scope="module", params=list(METHODS))
def method_lab(request, lab_factory):
    return lab_factory(request.param)


def configure(lab, service="-t 10.0.0.100:80", opts="-s rr", weights=(1, 1, 1), port=None):
    flag = METHODS[lab.name]
    lab.lvsadm("-C")
    lab.lvsadm(f"-A {service} {opts}")
    for rs, weight in zip(SERVERS, weights):
        target = f"{rs}:{port}" if port is not None else rs
        lab.lvsadm(f"-a {service} -r {target} {flag} -w {weight}")


def fetch(lab, client, port=80, path="/"):
    """One HTTP request to the VIP; returns the name of the server that answered."""
    return lab.curl(client, f"http://{lab.topology['vip']}:{port}{path}").strip()


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def test_rr_alternates_exactly_and_every_request_is_answered(method_lab):
    lab = method_lab
    configure(lab)
    answers = [fetch(lab, lab.clients[i % len(lab.clients)]) for i in range(9)]
    assert set(answers) == set(lab.servers)
    # rr: every window of three consecutive requests hits the three servers
    for i in range(0, 9, 3):
        assert sorted(answers[i:i + 3]) == sorted(lab.servers), answers
    assert answers[0:3] == answers[3:6] == answers[6:9]


def test_wrr_follows_the_weights(method_lab):
    lab = method_lab
    configure(lab, opts="-s wrr", weights=(3, 2, 1))
    counts = collections.Counter(fetch(lab, "c1") for _ in range(12))
    assert counts == {"rs1": 6, "rs2": 4, "rs3": 2}


def test_listing_shows_live_connections_and_counters(method_lab):
    lab = method_lab
    configure(lab, opts="-s rr -p 60")
    fetch(lab, "c1")
    listing = lab.lvsadm("-L -n").stdout
    rows = [line.split() for line in listing.splitlines() if line.startswith("  -> 10.0.0.")]
    assert len(rows) == 3
    assert sum(int(r[4]) + int(r[5]) for r in rows) == 1         # ActiveConn + InActConn
    conns = lab.lvsadm("-L -c -n").stdout.splitlines()
    c1 = lab.ip("c1")
    assert any(re.match(rf"TCP \d\d:\d\d  NONE +{c1}:0 +10\.0\.0\.100:80 +10\.0\.0\.1\d:80$",
                        line) for line in conns), conns            # the template
    assert any(re.match(rf"TCP \d\d:\d\d  \S+ +{c1}:\d+ +10\.0\.0\.100:80 ", line)
               for line in conns), conns                            # the connection
    persist = [line.split() for line in lab.lvsadm("-L -n --persistent-conn").stdout.splitlines()
               if line.startswith("  -> 10.")]
    assert sorted(int(r[3]) for r in persist) == [0, 0, 1]         # PersistConn


def test_persistence_keeps_a_client_and_spreads_the_clients(method_lab):
    lab = method_lab
    configure(lab, opts="-s rr -p 60")
    seen = {client: {fetch(lab, client) for _ in range(4)} for client in lab.clients}
    assert all(len(servers) == 1 for servers in seen.values()), seen
    assert len({next(iter(s)) for s in seen.values()}) == len(lab.clients)


def test_after_the_template_expires_a_client_can_move(method_lab):
    lab = method_lab
    configure(lab, opts="-s rr -p 2")
    lab.lvsadm("--set 900 1 300")                  # closed connections go after 1 s
    try:
        first = fetch(lab, "c1")
        assert fetch(lab, "c1") == first
        wait_for(lambda: "NONE" not in lab.lvsadm("-L -c -n").stdout, 30,
                 "the template to expire")
        assert fetch(lab, "c1") != first           # rr moved on
    finally:
        lab.lvsadm("--set 900 120 300")


def test_port_zero_service_keeps_a_clients_ports_together(method_lab):
    lab = method_lab
    configure(lab, service="-t 10.0.0.100:0", opts="-s rr -p 60", port=0)
    for client in lab.clients:
        a = fetch(lab, client, 80)
        assert fetch(lab, client, 8080) == a
        assert fetch(lab, client, 80) == a


def test_quiesced_server_gets_no_new_clients_but_keeps_its_template(method_lab):
    lab = method_lab
    configure(lab, opts="-s rr -p 60")
    kept = fetch(lab, "c1")
    address = SERVERS[lab.servers.index(kept)]
    lab.lvsadm(f"-e -t 10.0.0.100:80 -r {address} {METHODS[lab.name]} -w 0")
    assert fetch(lab, "c1") == kept                # its template is honoured
    others = {fetch(lab, client) for client in lab.clients[1:] for _ in range(2)}
    assert kept not in others


def test_deleted_server_is_never_chosen_again(method_lab):
    lab = method_lab
    configure(lab)
    lab.lvsadm(f"-d -t 10.0.0.100:80 -r {SERVERS[0]}")
    answers = {fetch(lab, lab.clients[i % len(lab.clients)]) for i in range(6)}
    assert answers == {"rs2", "rs3"}


def test_deleted_service_stops_answering(method_lab):
    lab = method_lab
    configure(lab)
    assert fetch(lab, "c1") in lab.servers
    lab.lvsadm("-D -t 10.0.0.100:80")
    assert lab.curl("c1", "http://10.0.0.100/", timeout=2, check=False) == ""
    assert "cookie=0x4c03" not in lab.ofctl("dump-flows").stdout   # no connection flows


@pytest.mark.lab("persist")
def test_netmask_keeps_a_subnet_on_one_server(lab):
    lab.lvsadm("-C")
    lab.apply_lvsadm()          # -p 30 -M 255.255.255.0
    c1 = {fetch(lab, "c1") for _ in range(3)}
    c2 = {fetch(lab, "c2") for _ in range(3)}
    c3 = {fetch(lab, "c3") for _ in range(3)}
    assert len(c1) == 1 and c1 == c2 and c3 != c1
    templates = [line for line in lab.lvsadm("-L -c -n").stdout.splitlines() if " NONE " in line]
    assert any(" 10.0.1.0:0 " in line for line in templates), templates


def test_a_connection_costs_one_packet_in_and_its_fin_closes_it_in_the_switch(method_lab):
    """Only the SYN visits the controller: the FIN stays in the switch (the
    connection flow's fin_timeout), and the flow's FlowRemoved, FIN_IDLE
    after the last packet, moves the entry to FIN_WAIT (InActConn)."""
    lab = method_lab
    configure(lab)
    before = punted(lab)
    answers = [fetch(lab, "c1") for _ in range(6)]
    assert sorted(answers) == sorted(lab.servers * 2)
    assert punted(lab) - before == 6                  # one PacketIn per connection
    wait_for(lambda: re.findall(r"FIN_WAIT", lab.lvsadm("-L -c -n").stdout).__len__() == 6,
             10, "six FIN_WAIT entries")
    rows = [line.split() for line in lab.lvsadm("-L -n").stdout.splitlines()
            if line.startswith("  -> 10.0.0.")]
    assert [(int(r[4]), int(r[5])) for r in rows] == [(0, 2)] * 3, rows


def punted(lab):
    """Packets the switch sent to the controller from the service table (SYNs, RSTs, strays)."""
    total = 0
    for line in lab.dump_flows().splitlines():
        if "table=1," in line and "CONTROLLER" in line:
            total += int(re.search(r"n_packets=(\d+)", line).group(1))
    return total


def test_switch_persistence_carries_a_clients_later_connections_in_the_switch(method_lab):
    """--pe switch: each client's first SYN visits the controller; its later
    connections go to the same server in the switch, NAT replies rewritten
    there too, and they still count in Conns (from the switch's counters,
    which may count a template's first SYN again: see the README)."""
    lab = method_lab
    configure(lab, opts="-s rr -p 60 --pe switch")
    assert "persistent 60 pe switch" in lab.lvsadm("-L -n").stdout
    before = lvslab_load.controller_packet_ins(lab)
    seen = {client: [fetch(lab, client) for _ in range(5)] for client in lab.clients}
    assert all(len(set(servers)) == 1 for servers in seen.values()), seen
    assert len({servers[0] for servers in seen.values()}) == len(lab.clients)
    # one SYN per client came to the controller
    assert lvslab_load.controller_packet_ins(lab) - before == len(lab.clients)

    def conns():
        rows = [line.split() for line in lab.lvsadm("-L -n --stats").stdout.splitlines()
                if line.startswith("TCP")]
        return int(rows[0][2].rstrip("K")) if rows else None

    n = 5 * len(lab.clients)
    wait_for(lambda: n <= conns() <= n + len(lab.clients), 15,
             f"Conns to count all {n} connections")
