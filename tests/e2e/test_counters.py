"""Traffic counters end to end: what the switch counted, as ipvsadm --stats shows it.

Clients download files of known size through the VIP; the receivers' own
interface counters say what crossed the director (IP bytes: the frame
bytes less 14 per packet).  After the next poll of the switch's flow
counters, ``lvsadm -L -n --stats --exact`` must agree within 2 %; /metrics
must agree with it; the figures must outlive the connections' flows.
"""

import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from lvslab import wait_until

VIP = "10.0.0.100"
SIZE = 1_000_000
SERVERS = ("10.0.0.11", "10.0.0.12", "10.0.0.13")
NAMES = {"10.0.0.11": "rs1", "10.0.0.12": "rs2", "10.0.0.13": "rs3"}
POLL = 2.0                 # the controller's default --lvs-stats-interval


@pytest.fixture(scope="module", params=["nat", "droute"])
def clab(request, lab_factory):
    return lab_factory(request.param)


def interface(lab, name):
    """(rx packets, rx IP bytes, tx packets, tx IP bytes) of a server's lab interface."""
    out = lab.host(name).cmd(f"cat /sys/class/net/{name}-eth0/statistics/"
                             "{rx_packets,rx_bytes,tx_packets,tx_bytes}").split()
    rxp, rxb, txp, txb = (int(v) for v in out)
    return rxp, rxb - 14 * rxp, txp, txb - 14 * txp


def listing(lab):
    """{server: [Conns, InPkts, OutPkts, InBytes, OutBytes]} from --stats --exact."""
    rows = {}
    for line in lab.lvsadm("-L -n --stats --exact").stdout.splitlines():
        words = line.split()
        if line.startswith("  -> 10."):
            rows[words[1].split(":")[0]] = [int(w) for w in words[2:7]]
        elif line.startswith("TCP"):
            rows["service"] = [int(w) for w in words[2:7]]
    return rows


def metrics(lab):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"http://127.0.0.1:{lab.rest_port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {(s.name, s.labels.get("remote_address")): s.value
            for family in text_string_to_metric_families(text) for s in family.samples
            if s.name.startswith("lvs_ipvs_backend_") and s.name.endswith("_total")}


def close(measured, counted, what):
    assert abs(counted - measured) <= max(0.02 * measured, 2), (what, measured, counted)


def test_stats_are_the_switch_counters_in_ip_bytes(clab):
    lab = clab
    lab.lvsadm("-C")
    lab.apply_lvsadm()
    lab.lvsadm("-Z")
    # what each server received (client -> server) and what the client received
    # (server -> client) per download: what crossed the director, as IPVS
    # counts it (a packet the userspace switch loses before its flows, which
    # TCP then sends again, is counted once by the switch and twice by the
    # server's own counters)
    expected = {ip: [0, 0, 0, 0, 0] for ip in SERVERS}
    for _ in SERVERS:                       # rr/wrr: every server gets downloads
        before = {ip: interface(lab, NAMES[ip]) for ip in SERVERS}
        client = interface(lab, "c1")
        assert len(lab.curl("c1", f"http://{VIP}/bytes/{SIZE}", timeout=20)) == SIZE
        time.sleep(0.5)                     # the last FIN/ACKs
        client = [a - b for a, b in zip(interface(lab, "c1"), client)]
        received = {ip: [a - b for a, b in zip(interface(lab, NAMES[ip]), before[ip])]
                    for ip in SERVERS}
        server = max(SERVERS, key=lambda ip: received[ip][0])
        rxp, rxb = received[server][:2]
        expected[server] = [a + b for a, b in zip(expected[server],
                                                  [1, rxp, client[0], rxb, client[1]])]
    time.sleep(POLL + 1.0)                  # the next poll
    rows = listing(lab)
    print(f"\n{lab.name}: --stats per server {rows}\n    measured {expected}")
    for ip in SERVERS:
        conns, inpkts, outpkts, inbytes, outbytes = rows[ip]
        assert conns == expected[ip][0]
        close(expected[ip][1], inpkts, f"{ip} InPkts")
        close(expected[ip][3], inbytes, f"{ip} InBytes")
        if lab.name == "nat":
            close(expected[ip][2], outpkts, f"{ip} OutPkts")
            close(expected[ip][4], outbytes, f"{ip} OutBytes")
            assert outbytes > SIZE * conns
        else:                                   # replies bypass the director
            assert outpkts == 0 and outbytes == 0
    assert rows["service"] == [sum(rows[ip][i] for ip in SERVERS) for i in range(5)]
    # /metrics agrees with --stats
    values = metrics(lab)
    for ip in SERVERS:
        names = ("connections", "incoming_packets", "outgoing_packets", "incoming_bytes",
                 "outgoing_bytes")
        assert [values[(f"lvs_ipvs_backend_{n}_total", ip)] for n in names] == rows[ip]


def test_counters_outlive_the_connections_flows(clab):
    lab = clab
    lab.lvsadm("--set 3 3 3")
    try:
        lab.curl("c2", f"http://{VIP}/bytes/20000")
        time.sleep(POLL + 1.0)
        first = listing(lab)
        wait_until(lambda: not [c for c in lab.connection_table() if c["client"] == "10.0.0.2"],
                   30, 0.5, "c2's connection to end")
        time.sleep(POLL + 1.0)
        later = listing(lab)
        assert later == first
    finally:
        lab.lvsadm("--set 900 120 300")
