"""Persistence templates as client-wildcard flows: the founding document's PCC."""

from lvs_app import ids
from lvs_app import pipeline as pl
from tests.behaviour.conftest import VIP, VMAC, mac_of
from tests.fakeswitch import arp_request

RS = ("10.0.0.11", "10.0.0.12", "10.0.0.13")
C1 = "10.0.0.1"


def persistent(lab, opts="-s rr -p 60", port=80, method="-g"):
    lab.lvsadm(f"-A -t 10.0.0.100:{port} {opts}")
    for rs in RS:
        lab.lvsadm(f"-a -t 10.0.0.100:{port} -r {rs} {method}")


def templates(lab):
    return [f for f in lab.sw.flows(table_id=pl.SERVICE)
            if ids.Cookie.parse(f.cookie).kind == ids.KIND_TEMPLATE]


def test_a_client_stays_on_one_server_while_clients_spread(lab):
    persistent(lab)
    chosen = {c: {lab.connect(c, 43000 + i) for i in range(4)}
              for c in ("10.0.0.1", "10.0.0.2", "10.0.0.3")}
    assert all(len(s) == 1 for s in chosen.values()), chosen
    assert len({next(iter(s)) for s in chosen.values()}) == 3
    [flow] = [f for f in templates(lab) if f.match["ipv4_src"] == "10.0.0.1"]
    assert (flow.idle_timeout, flow.match["tcp_dst"]) == (60, 80)
    assert lab.counts(next(iter(chosen["10.0.0.1"]))) == (4, 0, 1)


def test_after_the_template_expires_the_client_is_scheduled_afresh(lab):
    persistent(lab)
    first = lab.connect("10.0.0.1", 43100)
    lab.close("10.0.0.1", 43100)           # FIN_WAIT: its entry lives 120 s more
    lab.advance(30)
    assert lab.connect("10.0.0.1", 43101) == first   # template re-armed: t=30+60
    lab.close("10.0.0.1", 43101)
    lab.advance(100)
    assert len(templates(lab)) == 1          # t=130: expired at 90, but controls 43101
    lab.advance(60)                          # 43101 gone at 150, template with it
    assert templates(lab) == [] and lab.counts(first) == (0, 0, 0)
    assert lab.connect("10.0.0.1", 43102) != first      # rr moves on


def test_a_template_lives_while_it_controls_connections(lab):
    persistent(lab)
    first = lab.connect("10.0.0.1", 43200)     # stays open (ESTABLISHED, 900 s)
    lab.advance(61)
    [flow] = templates(lab)
    assert flow.idle_timeout == 60             # put back: IPVS expire_later
    lab.advance(61)
    assert len(templates(lab)) == 1
    assert lab.connect("10.0.0.1", 43201) == first
    assert templates(lab)[0].idle_timeout == 60 and lab.counts(first)[2] == 1


def test_netmask_keeps_a_subnet_together(lab):
    persistent(lab, "-s rr -p 60 -M 255.255.255.0")
    for ip, port in (("10.0.1.5", 5), ("10.0.1.200", 6), ("10.0.2.5", 7)):
        lab.add_host(ip, port)
    a = lab.connect("10.0.1.5", 43300, port=5)
    b = lab.connect("10.0.1.200", 43301, port=6)
    c = lab.connect("10.0.2.5", 43302, port=7)
    assert a == b != c
    masks = {f.match["ipv4_src"] for f in templates(lab)}
    assert masks == {("10.0.1.0", "255.255.255.0"), ("10.0.2.0", "255.255.255.0")}


def test_port_zero_service_keeps_all_ports_of_a_client_together(lab):
    persistent(lab, "-s pcc", port=0)                   # the founding document's example
    a = lab.connect("10.0.0.1", 43400, dport=21)
    assert lab.connect("10.0.0.1", 43401, dport=20000) == a
    assert lab.connect("10.0.0.1", 43402, dport=443) == a
    [(_, pkt)] = lab.syn("10.0.0.1", 43403, dport=443)
    assert (pkt["tcp_dst"], pkt["ipv4_dst"]) == (443, VIP)      # its own port, DR
    [flow] = templates(lab)
    assert "tcp_dst" not in flow.match and flow.idle_timeout == 360


def test_port_zero_nat_keeps_the_port_and_rewrites_the_address(lab):
    persistent(lab, "-s rr -p 60", port=0, method="-m")
    a = lab.connect("10.0.0.1", 43500, dport=8443)
    [(_, pkt)] = lab.syn("10.0.0.1", 43501, dport=8443)
    assert (pkt["ipv4_dst"], pkt["tcp_dst"]) == (a, 8443)


def test_persistent_ftp_service_takes_data_connections_to_the_same_server(lab):
    persistent(lab, "-s rr -p 60", port=21)
    a = lab.connect("10.0.0.1", 43600, dport=21)
    assert lab.connect("10.0.0.1", 43601, dport=20) == a        # active data (port 20)
    assert lab.connect("10.0.0.1", 43602, dport=40000) == a     # passive data
    assert lab.syn("10.0.0.1", 43603, dport=443) == []          # privileged, not FTP


def test_quiesced_server_keeps_its_template_clients(lab):
    persistent(lab)
    a = lab.connect("10.0.0.1", 43700)
    lab.lvsadm(f"-e -t 10.0.0.100:80 -r {a} -g -w 0")
    assert lab.connect("10.0.0.1", 43701) == a
    assert lab.connect("10.0.0.2", 43702) != a


def test_expire_quiescent_template_moves_the_client(lab):
    persistent(lab)
    lab.client.request("PUT", "/ipvs/settings", {"expire_quiescent_template": True})
    a = lab.connect("10.0.0.1", 43800)
    lab.lvsadm(f"-e -t 10.0.0.100:80 -r {a} -g -w 0")
    b = lab.connect("10.0.0.1", 43801)
    assert b != a
    assert lab.connect("10.0.0.1", 43802) == b
    assert lab.counts(a)[2] == 0 and lab.counts(b)[2] == 1


def test_fwmark_service_shares_one_template_across_its_matches(lab):
    lab.lvsadm("--add-mark 1 --match tcp:10.0.0.100:80 --match tcp:10.0.0.100:443-444")
    lab.lvsadm("-A -f 1 -s rr -p 60")
    for rs in RS:
        lab.lvsadm(f"-a -f 1 -r {rs} -g")
    a = lab.connect("10.0.0.1", 43900, dport=80)
    assert lab.connect("10.0.0.1", 43901, dport=443) == a
    assert lab.connect("10.0.0.1", 43902, dport=444) == a
    assert lab.connect("10.0.0.2", 43903, dport=443) != a
    # 80, and 443-444 as two prefixes (443 is odd): one template, three flows
    assert sorted(f.match["tcp_dst"] for f in templates(lab)
                  if f.match["ipv4_src"] == "10.0.0.1") == [80, 443, 444]
    assert "IP  01:00  NONE        10.0.0.1:0         0.0.0.1:0          10.0.0.1" in \
        lab.lvsadm("-L -c -n")


def test_template_rows_in_the_connection_listing(lab):
    persistent(lab, "-s rr -p 600 -M 255.255.255.0", method="-m")
    a = lab.connect("10.0.0.1", 44000)
    rows = lab.lvsadm("-L -c -n").splitlines()
    assert f"TCP 10:00  NONE        10.0.0.0:0         10.0.0.100:80      {a}:80" in rows
    [line] = [x for x in lab.lvsadm("-L -n --persistent-conn").splitlines() if f" {a}:80" in x]
    assert line.split()[2:5] == ["1", "1", "1"]       # weight, PersistConn, ActiveConn


def test_a_non_persistent_ftp_service_takes_no_fallback_ports(lab):
    lab.lvsadm("-A -t 10.0.0.100:21 -s rr")
    for rs in RS:
        lab.lvsadm(f"-a -t 10.0.0.100:21 -r {rs} -g")
    assert lab.connect("10.0.0.1", 44100, dport=21) in RS
    for port in (20, 8080, 40000):
        assert lab.syn("10.0.0.1", 44101, dport=port) == []
    assert len(lab.director.switches[1].conns) == 1


def test_nat_template_leaves_a_clients_direct_traffic_with_the_server_alone(lab):
    from tests.fakeswitch import tcp
    persistent(lab, "-s rr -p 60", port=0, method="-m")
    a = lab.connect("10.0.0.1", 44200, dport=80)
    # the client talks to the server's own address: replies keep that address
    reply = tcp(a, "10.0.0.1", 80, 44201, flags="SA", in_port=lab.hosts[a],
                eth_src=mac_of(a), eth_dst=mac_of("10.0.0.1"))
    [(port, pkt)] = lab.send(reply)
    assert (port, pkt["ipv4_src"], pkt["tcp_src"]) == (1, a, 80)


def test_nat_server_opening_a_connection_to_a_template_client_is_natted(lab):
    """IPVS conn_out: active FTP data from the server's port 20 leaves as VIP:20."""
    from tests.fakeswitch import tcp
    persistent(lab, "-s rr -p 60", port=0, method="-m")
    a = lab.connect("10.0.0.1", 44300, dport=21)
    syn = tcp(a, "10.0.0.1", 20, 50123, flags="S", in_port=lab.hosts[a],
              eth_src=mac_of(a), eth_dst=mac_of("10.0.0.1"))
    [(port, pkt)] = lab.send(syn)
    assert (port, pkt["ipv4_src"], pkt["tcp_src"], pkt["eth_src"]) == (1, VIP, 20, VMAC)
    # the client's answer to VIP:20 reaches the server's port 20
    [(port, pkt)] = lab.syn("10.0.0.1", 50123, dport=20, flags="SA")
    assert (port, pkt["ipv4_dst"], pkt["tcp_dst"]) == (lab.hosts[a], a, 20)
    assert lab.counts(a, "-t 10.0.0.100:0") == (2, 0, 1)
    # and the rest of the data connection stays in the switch both ways
    [(port, _)] = lab.send(tcp(a, "10.0.0.1", 20, 50123, flags="A", in_port=lab.hosts[a],
                               eth_src=mac_of(a), eth_dst=mac_of("10.0.0.1")))
    assert port == 1


def test_a_fwmark_template_over_a_port_range_expires(lab):
    lab.lvsadm("--add-mark 2 --match tcp:10.0.0.100:30000-30003")     # one masked flow
    lab.lvsadm("-A -f 2 -s rr -p 30")
    for rs in RS:
        lab.lvsadm(f"-a -f 2 -r {rs} -g")
    a = lab.connect("10.0.0.1", 44400, dport=30002)
    [flow] = templates(lab)
    assert flow.match["tcp_dst"] == (30000, 0xFFFC)
    lab.syn("10.0.0.1", 44400, dport=30002, flags="RA")    # its connection ends (10 s)
    lab.advance(31)
    assert templates(lab) == [] and lab.counts(a, "-f 2") == (0, 0, 0)
    assert "NONE" not in lab.lvsadm("-L -c -n")


def test_a_template_whose_last_connection_closed_in_time_expires_when_its_flow_report_is_late(lab):
    """The FIN stays in the switch, so the controller learns of it when the
    connection flow ends (lifecycle.py) -- which Open vSwitch may report
    after the template's own expiry.  IPVS's template would have expired at
    its time (its connection was over by then): so does this one, not 60 s
    later (expire_later)."""
    lab.lvsadm("--set 900 1 300")
    lab.lvsadm("-A -t 10.0.0.100:80 -s rr -p 2")
    lab.lvsadm("-a -t 10.0.0.100:80 -r 10.0.0.11 -g")
    lab.connect(C1, 40000)
    lab.close(C1, 40000)
    lab.clock.advance(2)
    lab.sw.expire()
    # the template's report first, the connection's after it
    lab.sw.flow_removed.sort(key=lambda r: ids.Cookie.parse(r.cookie).kind != ids.KIND_TEMPLATE)
    assert [ids.Cookie.parse(r.cookie).kind for r in lab.sw.flow_removed] == [
        ids.KIND_TEMPLATE, ids.KIND_CONN]
    lab.send(arp_request(C1, VIP, sha=mac_of(C1), in_port=1))     # the reports are read
    assert lab.director.switches[1].templates == {} and lab.director.switches[1].conns == {}
    assert not [f for f in lab.sw.flows() if ids.Cookie.parse(f.cookie).kind == ids.KIND_TEMPLATE]


def test_a_template_waits_for_a_connection_that_was_still_open_at_its_time(lab):
    """The same order of reports, but the connection's FIN came after the
    template's time: IPVS keeps the template (expire_later), and so do we."""
    lab.lvsadm("--set 900 1 300")
    lab.lvsadm("-A -t 10.0.0.100:80 -s rr -p 2")
    lab.lvsadm("-a -t 10.0.0.100:80 -r 10.0.0.11 -g")
    lab.connect(C1, 40000)
    lab.clock.advance(2)
    lab.sw.expire()
    lab._settle()                                      # the template's time: one connection
    lab.close(C1, 40000)                               # its FIN after that
    lab.advance(3)
    assert len(lab.director.switches[1].templates) == 1
    assert lab.director.switches[1].conns == {}
