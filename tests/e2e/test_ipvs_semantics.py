"""The kernel's rules that show in traffic, end to end (tests/behaviour/test_ipvs_semantics.py
has every rule on the fake switch).

Real clients in Mininet hosts (mininet/probe_client.py), real TCP and UDP
servers, Open vSwitch and ryu-manager.
"""

import re

import pytest

from lvslab import wait_until

SERVERS = ("10.0.0.11", "10.0.0.12", "10.0.0.13")
VIP = "10.0.0.100"
UDP_PORT = 5300
METHODS = {"nat": "-m", "droute": "-g"}


@pytest.fixture(scope="module", params=list(METHODS))
def tcp_lab(request, lab_factory):
    return lab_factory(request.param)


def configure(lab, opts="-s rr", service=f"-t {VIP}:80", port=None):
    lab.lvsadm("-C")
    lab.lvsadm(f"-A {service} {opts}")
    for rs in SERVERS:
        target = f"{rs}:{port}" if port else rs
        lab.lvsadm(f"-a {service} -r {target} {METHODS.get(lab.name, '-m')}")


def counts(lab):
    """{server: (ActiveConn, InActConn)} from lvsadm -L -n."""
    rows = [line.split() for line in lab.lvsadm("-L -n").stdout.splitlines()
            if line.startswith("  -> 10.")]
    return {r[1].split(":")[0]: (int(r[4]), int(r[5])) for r in rows}


def entries(lab, client):
    return [line for line in lab.lvsadm("-L -c -n").stdout.splitlines()
            if re.search(rf" {re.escape(client)}:\d+ ", line)]


# -- items 2 and 3: a client port used again ----------------------------------------

def test_a_port_reused_after_fin_stays_on_its_server(tcp_lab):
    """conn_reuse_mode 1: the old entry (FIN_WAIT) carries the new SYN."""
    lab = tcp_lab
    configure(lab)
    first = lab.probe("c1", "tcp-idle", VIP, 80, "--sport", 41000)
    for _ in range(3):                                    # rr would walk on
        assert lab.probe("c1", "tcp-idle", VIP, 80, "--sport", 41000) == first


def test_a_reused_port_under_a_template_lives_past_the_old_fin_timeout(tcp_lab):
    """is_new_conn_expected(): the controlled entry goes back to SYN_RECV, active,
    so a connection that idles past tcpfin still closes through the director."""
    lab = tcp_lab
    configure(lab, opts="-s rr -p 300")
    lab.lvsadm("--set 900 3 300")
    try:
        first = lab.probe("c2", "tcp-idle", VIP, 80, "--sport", 41100)
        # the old entry's FIN_WAIT flow lives 3 s; this connection idles 6 s first
        assert lab.probe("c2", "tcp-idle", VIP, 80, "--sport", 41100, "--idle", 6) == first
    finally:
        lab.lvsadm("--set 900 120 300")


# -- item 7: half-open connections ----------------------------------------------------

@pytest.mark.lab("nat")
def test_a_half_open_connection_ends_after_60_seconds_and_an_idle_one_lives(lab):
    configure(lab, opts="-s rr", service=f"-t {VIP}:80")
    lab.lvsadm("-d", "-t", f"{VIP}:80", "-r", "10.0.0.12")
    lab.lvsadm("-d", "-t", f"{VIP}:80", "-r", "10.0.0.13")
    idle = lab.probe_background("c2", "tcp-idle", VIP, 80, "--sport", 41200, "--idle", 70,
                                "--timeout", 90)
    lab.probe("c1", "syn", VIP, 80, "--sport", 41201)       # no handshake follows
    wait_until(lambda: counts(lab)["10.0.0.11"][0] == 2, 10, 0.5, "two active connections")
    assert any("SYN_RECV" in line for line in entries(lab, lab.ip("c1")))
    wait_until(lambda: counts(lab)["10.0.0.11"][0] == 1, 75, 0.5, "the half-open entry to end")
    assert entries(lab, lab.ip("c1")) == []
    out, _ = idle.communicate(timeout=40)                   # asks after 70 s idle
    assert idle.returncode == 0 and out.strip() == "rs1", out


# -- items 1 and 12: UDP ----------------------------------------------------------------

@pytest.fixture
def udp_lab(lab_factory):
    lab = lab_factory("nat")
    lab.start_udp_servers(UDP_PORT)
    return lab


def test_one_packet_udp_under_persistence_keeps_each_client_on_its_server(udp_lab):
    lab = udp_lab
    configure(lab, opts="-s rr -p 60 -o", service=f"-u {VIP}:{UDP_PORT}")
    answers = {c: [lab.probe(c, "udp", VIP, UDP_PORT, "--sport", 42000 + i) for i in range(4)]
               for c in ("c1", "c2", "c3")}
    assert all(len(set(a)) == 1 for a in answers.values()), answers
    assert len({a[0] for a in answers.values()}) == 3, answers      # rr over the clients
    persist = [line.split() for line in
               lab.lvsadm("-L -n --persistent-conn").stdout.splitlines()
               if line.startswith("  -> 10.")]
    assert sorted(int(r[3]) for r in persist) == [1, 1, 1]           # one template each


@pytest.mark.parametrize("size", [4000, 9000])
def test_fragmented_udp_through_nat_arrives_whole_both_ways(udp_lab, size):
    lab = udp_lab
    configure(lab, opts="-s rr", service=f"-u {VIP}:{UDP_PORT}")
    for i, client in enumerate(("c1", "c2", "c3")):
        out = lab.probe(client, "udp", VIP, UDP_PORT, "--sport", 43000 + i, "--size", size,
                        "--echo")
        assert re.fullmatch(r"rs\d echo-ok", out), out
    # no connection from port 0: every entry names the clients' own ports
    table = lab.lvsadm("-L -c -n").stdout
    assert not re.search(r":0 +10\.0\.0\.100:0 ", table), table
    assert not re.search(rf":0 +{VIP}:{UDP_PORT} ", table), table
