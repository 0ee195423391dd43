"""Where the kernel's own code decides: rules from net/netfilter/ipvs/, one test each.

Each test names the kernel function whose rule it checks.  Together with
test_scheduling_and_lifecycle.py::test_lblc_cache_ages_on_the_timed_job and
test_forwarding.py::test_a_client_port_reused_after_rst_is_a_new_nat_connection.
"""

from ryu.ofproto import ofproto_v1_3

from lvs_app import ids
from lvs_app import pipeline as pl
from tests.behaviour.conftest import VIP, VMAC, fragment, mac_of
from tests.fakeswitch import udp

RS = ("10.0.0.11", "10.0.0.12", "10.0.0.13")
C1, C2 = "10.0.0.1", "10.0.0.2"


def service(lab, opts="-s rr", servers=RS, method="-g", vport=80, proto="-t"):
    lab.lvsadm(f"-A {proto} 10.0.0.100:{vport} {opts}")
    for rs in servers:
        lab.lvsadm(f"-a {proto} 10.0.0.100:{vport} -r {rs} {method}")


def conn(lab, client, sport, vport=80):
    return lab.director.switches[1].conns.get(
        ("tcp", _ip(client), sport, _ip(VIP), vport))


def _ip(text):
    a, b, c, d = map(int, text.split("."))
    return (a << 24) | (b << 16) | (c << 8) | d


def conn_flow(lab, client, sport):
    return [f for f in lab.sw.flows(table_id=pl.SERVICE)
            if ids.Cookie.parse(f.cookie).kind == ids.KIND_CONN
            and f.match.get("ipv4_src") == client and f.match.get("tcp_src") == sport]


def templates(lab):
    return [f for f in lab.sw.flows(table_id=pl.SERVICE)
            if ids.Cookie.parse(f.cookie).kind == ids.KIND_TEMPLATE]


# 1. ip_vs_sched_persist(): the template first, then a one-packet connection

def test_one_packet_udp_under_persistence_keeps_a_client_on_its_template(lab):
    service(lab, "-s rr -p 60 -o", vport=53, proto="-u")
    chosen = {c: [lab.server_of(lab.send(udp(c, VIP, 5353 + i, 53, in_port=1,
                                                  eth_src=mac_of(c), eth_dst=VMAC)))
                  for i in range(4)]
              for c in (C1, C2)}
    assert all(len(set(s)) == 1 for s in chosen.values()), chosen      # sticky
    assert chosen[C1][0] != chosen[C2][0]                               # rr between clients
    assert lab.counts(chosen[C1][0], "-u 10.0.0.100:53") == (0, 0, 1)  # PersistConn only
    assert not [f for f in lab.sw.flows(table_id=pl.SERVICE)
                if ids.Cookie.parse(f.cookie).kind == ids.KIND_CONN]   # nothing per packet


# 2. is_new_conn_expected(): a controlled entry carries the new SYN itself

def test_a_reused_port_under_a_template_revives_the_old_entry(lab):
    service(lab, "-s rr -p 300")
    first = lab.connect(C1, 45000)
    lab.close(C1, 45000)
    lab.advance(2)            # the FIN stayed in the switch: its flow ends FIN_IDLE later
    assert conn(lab, C1, 45000).state == "FIN_WAIT" and lab.counts(first)[:2] == (0, 1)
    lab.advance(98)
    assert lab.connect(C1, 45000) == first                 # same entry, same server
    entry = conn(lab, C1, 45000)
    assert (entry.state, entry.active) == ("SYN_RECV", True)
    assert lab.counts(first)[:2] == (1, 0)
    assert conn_flow(lab, C1, 45000)[0].idle_timeout == 60
    lab.advance(60)                                        # past the old FIN_WAIT's 120 s
    assert conn(lab, C1, 45000).state == "ESTABLISHED"
    assert lab.close(C1, 45000) == first                   # its FIN still reaches the server


# 3. conn_reuse_mode 1: FIN_WAIT is not rescheduled, TIME_WAIT and CLOSE are

def test_a_reused_port_in_fin_wait_stays_on_its_server_without_a_template(lab):
    service(lab, "-s rr")
    first = lab.connect(C1, 45100)
    lab.close(C1, 45100)
    for _ in range(3):                                     # rr would move on
        assert lab.connect(C1, 45100) == first
        lab.close(C1, 45100)
    assert len(lab.director.switches[1].conns) == 1


# 4. ip_vs_check_template() + the dest trash: a flap gives clients their server back

def test_a_deleted_then_re_added_server_gets_its_templates_back(lab):
    service(lab, "-s rr -p 300")
    homes = {c: lab.connect(c, 45200) for c in (C1, C2, "10.0.0.3")}
    flapped = homes[C1]
    lab.close(C1, 45200)
    lab.lvsadm(f"-d -t 10.0.0.100:80 -r {flapped}")
    assert len(templates(lab)) == 3                        # kept, invalid while it is gone
    lab.lvsadm(f"-a -t 10.0.0.100:80 -r {flapped} -g")
    assert lab.counts(flapped)[2] == 1                     # PersistConn came back with it
    for c in (C2, "10.0.0.3", C1):                          # any order
        assert lab.connect(c, 45201) == homes[c]


def test_a_template_of_a_deleted_server_is_replaced_when_next_used(lab):
    service(lab, "-s rr -p 300")
    first = lab.connect(C1, 45300)
    lab.lvsadm(f"-d -t 10.0.0.100:80 -r {first}")
    second = lab.connect(C1, 45301)
    assert second not in (None, first)
    assert [f.match["ipv4_src"] for f in templates(lab)] == [C1]
    assert lab.connect(C1, 45302) == second


# 5. ip_vs_in_hook(): expire_nodest_conn reschedules a SYN to a quiesced server's entry

def test_expire_nodest_conn_reschedules_a_syn_to_a_weight_0_entry(lab):
    service(lab, "-s rr", servers=RS[:2])
    lab.client.request("PUT", "/ipvs/settings", {"expire_nodest_conn": True})
    first = lab.connect(C1, 45400)
    lab.lvsadm(f"-e -t 10.0.0.100:80 -r {first} -g -w 0")
    second = lab.connect(C1, 45400)                        # the same 5-tuple, a new SYN
    assert second not in (None, first)
    assert lab.counts(first)[:2] == (0, 0)


def test_without_expire_nodest_conn_the_weight_0_entry_keeps_the_syn(lab):
    service(lab, "-s rr", servers=RS[:2])
    first = lab.connect(C1, 45410)
    lab.lvsadm(f"-e -t 10.0.0.100:80 -r {first} -g -w 0")
    assert lab.connect(C1, 45410) == first


# 6. __ip_vs_update_dest(): the overload flag on an edit

def overloaded(lab, server):
    doc = lab.client.request("GET", "/ipvs/services/tcp-10.0.0.100-80/servers/" + server)
    return doc["overloaded"]


def test_editing_thresholds_clears_overload_only_for_0_or_a_larger_upper_limit(lab):
    lab.lvsadm("-A -t 10.0.0.100:80 -s wlc")
    lab.lvsadm("-a -t 10.0.0.100:80 -r 10.0.0.11 -g -x 2")
    for port in (45500, 45501, 45502):
        lab.connect(C1, port)
    assert overloaded(lab, "10.0.0.11")
    lab.lvsadm("-e -t 10.0.0.100:80 -r 10.0.0.11 -g -x 2")      # the same -x: kept
    assert overloaded(lab, "10.0.0.11")
    lab.lvsadm("-e -t 10.0.0.100:80 -r 10.0.0.11 -g -x 1")      # smaller: kept
    assert overloaded(lab, "10.0.0.11")
    lab.lvsadm("-e -t 10.0.0.100:80 -r 10.0.0.11 -g -x 2")      # larger (while over it)
    assert not overloaded(lab, "10.0.0.11")
    lab.connect(C1, 45503)
    assert overloaded(lab, "10.0.0.11")
    lab.lvsadm("-e -t 10.0.0.100:80 -r 10.0.0.11 -g -x 0")      # no limit
    assert not overloaded(lab, "10.0.0.11")


# 7. tcp_timeouts[SYN_RECV]: a lone SYN is active for 60 s, not 900

def test_a_half_open_connection_ends_after_60_seconds(lab):
    service(lab, "-s rr", servers=RS[:1])
    lab.syn(C1, 45600)                                     # no ACK ever follows
    lab.connect(C2, 45601)                                 # an established one
    assert lab.counts("10.0.0.11")[:2] == (2, 0)
    lab.advance(60)
    assert conn(lab, C1, 45600) is None
    assert conn(lab, C2, 45601).state == "ESTABLISHED"
    assert lab.counts("10.0.0.11")[:2] == (1, 0)
    lab.advance(800)
    [(port, _)] = lab.syn(C2, 45601, flags="A")            # established: still carried
    assert port == lab.hosts["10.0.0.11"]


def test_an_established_connection_lives_900_seconds_after_its_last_packet(lab):
    service(lab, "-s rr", servers=RS[:1])
    lab.connect(C1, 45610)
    lab.advance(30)
    lab.syn(C1, 45610, flags="A")                          # last packet at t=30
    lab.advance(899)
    assert conn(lab, C1, 45610) is not None
    lab.advance(2)
    assert conn(lab, C1, 45610) is None and lab.counts("10.0.0.11")[:2] == (0, 0)


def test_a_bare_rst_in_syn_recv_leaves_it_there(lab):
    """INPUT_ONLY: rst in SYN_RECV stays SYN_RECV; with ACK (handshake done) it closes."""
    service(lab, "-s rr", servers=RS[:1])
    lab.syn(C1, 45620)
    lab.syn(C1, 45620, flags="R")
    assert conn(lab, C1, 45620).state == "SYN_RECV"


# 8. tcp_states[]: RST in FIN_WAIT goes to CLOSE (10 s)

def test_rst_after_fin_closes_in_10_seconds(lab):
    service(lab, "-s rr", servers=RS[:1])
    lab.connect(C1, 45700)
    lab.close(C1, 45700)
    lab.syn(C1, 45700, flags="RA")
    assert conn(lab, C1, 45700).state == "CLOSE"
    assert conn_flow(lab, C1, 45700)[0].idle_timeout == 10
    lab.advance(11)
    assert conn(lab, C1, 45700) is None


# 9. ip_vs_wrr_dest_changed() on every edit; -E of flags alone keeps the scheduler

def test_wrr_starts_from_the_head_after_any_server_edit(lab):
    lab.lvsadm("-A -t 10.0.0.100:80 -s wrr")
    lab.lvsadm("-a -t 10.0.0.100:80 -r 10.0.0.11 -g -w 3")
    lab.lvsadm("-a -t 10.0.0.100:80 -r 10.0.0.12 -g -w 2")
    # list order newest first: [.12 (w2), .11 (w3)]; cw starts at the max weight 3
    assert [lab.connect(C1, 45800 + i) for i in range(3)] == [
        "10.0.0.11", "10.0.0.12", "10.0.0.11"]                      # cw now 2, cursor .11
    lab.lvsadm("-e -t 10.0.0.100:80 -r 10.0.0.12 -g -w 2 -x 1000")   # only -x changes
    # the cursor is back at the head, cw stays 2: .12, .11, then cw 1: .12
    # (without the reset the walk would go on from .11: .12, .11, .11)
    assert [lab.connect(C1, 45810 + i) for i in range(3)] == [
        "10.0.0.12", "10.0.0.11", "10.0.0.12"]


def test_changing_only_scheduler_flags_keeps_the_rr_position(lab):
    service(lab, "-s rr")
    first = [lab.connect(C1, 45900 + i) for i in range(2)]
    lab.lvsadm("-E -t 10.0.0.100:80 -s rr -b flag-1")
    nxt = lab.connect(C1, 45902)
    assert nxt not in first                                # the walk went on


# 10. ip_vs_conn_expire(): after expire_later a template keeps 60 s for good

def test_after_expire_later_new_connections_re_arm_a_template_by_60_seconds(lab):
    service(lab, "-s rr -p 300")
    home = lab.connect(C1, 46000)                          # stays open
    lab.advance(301)                                       # timed out, controls 46000
    [flow] = templates(lab)
    assert flow.idle_timeout == 60
    assert lab.connect(C1, 46001) == home
    [flow] = templates(lab)
    assert flow.idle_timeout == 60                         # not -p 300 again


# 11. lblcr: a set unchanged for lblcr_expiration drops its most loaded member

def test_lblcr_shrinks_an_old_set_on_the_clock(lab):
    lab.lvsadm("-A -t 10.0.0.100:80 -s lblcr")
    lab.lvsadm("-a -t 10.0.0.100:80 -r 10.0.0.11 -g -w 1")
    lab.lvsadm("-a -t 10.0.0.100:80 -r 10.0.0.12 -g -w 1")
    [state] = lab.manager.runtime.services.values()
    lab.connect(C1, 46100)
    sched = state.scheduler
    [entry] = sched.cache.values()
    # grow the set: the member is overloaded (active > weight) while the other idles
    for port in range(46101, 46104):
        lab.connect(C1, port)
    assert len(entry.members) == 2
    sched.expiration = 120                                 # lblcr_expiration, shortened
    lab.advance(121)
    lab.connect(C1, 46110)
    assert len(entry.members) == 1


# 12. ip_vs_gather_frags(): fragments follow their first fragment, never port 0

def test_fragments_through_nat_follow_their_first_fragment_both_ways(lab):
    service(lab, "-s rr -p 60", servers=RS[:2], method="-m", vport=0, proto="-u")   # port 0
    [(port, first)] = lab.send(fragment(C1, VIP, 77, first=True))
    server = first["ipv4_dst"]
    assert (port, first["udp_dst"]) == (lab.hosts[server], 53)
    [(port2, later)] = lab.send(fragment(C1, VIP, 77, first=False))
    assert (port2, later["ipv4_dst"], later["ip_frag"]) == (port, server, 3)
    assert [(c.key[2], c.key[4]) for c in lab.director.switches[1].conns.values()] == \
        [(5353, 53)]                                       # no connection from port 0
    # a later fragment whose first fragment never came is dropped
    assert lab.send(fragment(C1, VIP, 78, first=False)) == []
    assert lab.director.fragments.dropped == 1
    # the server's fragmented reply is rewritten back, every fragment of it
    [(port, reply)] = lab.send(fragment(server, C1, 900, first=True, sport=53, dport=5353,
                                        in_port=lab.hosts[server], eth_dst=mac_of(C1)))
    assert (port, reply["ipv4_src"], reply["udp_src"]) == (1, VIP, 53)
    [(port, reply)] = lab.send(fragment(server, C1, 900, first=False,
                                        in_port=lab.hosts[server], eth_dst=mac_of(C1)))
    assert (port, reply["ipv4_src"], reply["eth_src"]) == (1, VIP, VMAC)


def test_fragment_memory_is_bounded_in_time(lab):
    service(lab, "-s rr", servers=RS[:1], method="-m", vport=53, proto="-u")
    lab.send(fragment(C1, VIP, 79, first=True))
    lab.advance(31)
    assert lab.send(fragment(C1, VIP, 79, first=False)) == []


def test_a_syn_on_an_entry_whose_flow_saw_the_fin_gets_a_fresh_flow(lab):
    """The client closes and opens the same 5-tuple again at once, before the
    old flow's report: the FIN shortened that flow in the switch (fin_timeout),
    so the new connection gets a flow of its own timeouts, and idles past
    tcpfin without losing its entry (its twin in Mininet: test_ipvs_semantics
    .py's reused port under a template)."""
    service(lab, "-s rr -p 300")
    lab.lvsadm("--set 900 3 300")
    first = lab.connect(C1, 45300)
    lab.close(C1, 45300)
    assert lab.connect(C1, 45300) == first              # before the old flow ended
    [flow] = conn_flow(lab, C1, 45300)
    assert (flow.idle_timeout, flow.hard_timeout) == (60, 0)
    # without fin_timeout: Open vSwitch may hand the old connection's FIN to
    # this flow (see Lifecycle.segment)
    assert "fin_timeout" not in flow.text()
    lab.advance(6)                                       # idle past tcpfin (3 s)
    assert lab.server_of(lab.syn(C1, 45300, flags="A")) == first
    assert lab.close(C1, 45300) == first


def test_the_late_report_of_a_flow_a_new_syn_replaced_is_ignored(lab):
    """Open vSwitch may end the old flow (FIN seen) just before the new SYN's
    flow arrives: its report comes after the new connection began and must
    not close it."""
    service(lab, "-s rr -p 300")
    first = lab.connect(C1, 45400)
    lab.close(C1, 45400)
    lab.advance(1)
    assert lab.connect(C1, 45400) == first              # the new connection's flow
    [flow] = conn_flow(lab, C1, 45400)
    # the old flow's report: installed 1 s before the new one, FIN seen
    lab.manager.flow_removed(1, flow.cookie, flow.match, 1.5, ofproto_v1_3.OFPRR_IDLE_TIMEOUT,
                             3, hard_timeout=120)
    entry = conn(lab, C1, 45400)
    assert (entry.state, entry.active, entry.flowless) == ("SYN_RECV", True, False)
    assert lab.server_of(lab.syn(C1, 45400, flags="A")) == first


def test_a_retransmitted_syn_is_forwarded_and_its_flow_left_alone(lab):
    """Same sequence number: the same connection's SYN again (its SYN/ACK was
    lost), not a new one on the entry, so no new flow (a SYN flood of
    repeated tuples costs no FlowMod)."""
    service(lab, "-s rr")
    first = lab.server_of(lab.syn(C1, 45500, seq=7))
    [flow] = conn_flow(lab, C1, 45500)
    assert "fin_timeout" in flow.text()
    installed = flow.installed_at
    lab.advance(1)
    assert lab.server_of(lab.syn(C1, 45500, seq=7)) == first
    [again] = conn_flow(lab, C1, 45500)
    assert again.installed_at == installed and "fin_timeout" in again.text()
    # a new sequence number is a new connection on the entry: a fresh flow
    lab.advance(1)
    assert lab.server_of(lab.syn(C1, 45500, seq=9000)) == first
    [fresh] = conn_flow(lab, C1, 45500)
    assert fresh.installed_at > installed
