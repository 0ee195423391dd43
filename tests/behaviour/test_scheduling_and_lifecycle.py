"""Schedulers, counters, timeouts, quiesce and delete through the fake flow table."""

from lvs_app import ids
from lvs_app import pipeline as pl
from tests.behaviour.conftest import VIP, VMAC, mac_of
from tests.fakeswitch import udp

RS = ("10.0.0.11", "10.0.0.12", "10.0.0.13")
C1 = "10.0.0.1"


def service(lab, opts="-s rr", servers=RS, method="-g", weights=None):
    lab.lvsadm(f"-A -t 10.0.0.100:80 {opts}")
    for i, rs in enumerate(servers):
        weight = f" -w {weights[i]}" if weights else ""
        lab.lvsadm(f"-a -t 10.0.0.100:80 -r {rs} {method}{weight}")


def test_rr_alternates_exactly(lab):
    service(lab)
    chosen = [lab.connect(C1, 41000 + i) for i in range(6)]
    # the kernel lists the newest server first
    assert chosen == ["10.0.0.13", "10.0.0.12", "10.0.0.11"] * 2


def test_wrr_follows_the_weights(lab):
    service(lab, "-s wrr", servers=RS[:2], weights=(3, 1))
    chosen = [lab.connect(C1, 41100 + i) for i in range(8)]
    assert chosen.count("10.0.0.11") == 6 and chosen.count("10.0.0.12") == 2


def test_active_and_inactive_counts_follow_syn_fin_and_expiry(lab):
    service(lab, servers=RS[:1])
    lab.connect(C1, 41200)
    lab.connect(C1, 41201)
    assert lab.counts("10.0.0.11") == (2, 0, 0)
    assert lab.close(C1, 41200) == "10.0.0.11"          # the FIN is delivered
    # in the switch: the flow's fin_timeout cut its idle time to FIN_IDLE and
    # gave it a hard timeout (tcpfin), the mark that its FlowRemoved reads
    [flow] = [f for f in lab.sw.flows(table_id=pl.SERVICE) if f.match.get("tcp_src") == 41200]
    assert (flow.idle_timeout, flow.hard_timeout) == (1, 120)
    assert lab.counts("10.0.0.11") == (2, 0, 0)          # still active, until...
    assert lab.director.switches[1].conns and not lab.sw.packet_ins
    lab.advance(2)                                        # ...FIN_IDLE after its last packet
    assert lab.counts("10.0.0.11") == (1, 1, 0)
    assert not [f for f in lab.sw.flows(table_id=pl.SERVICE) if f.match.get("tcp_src") == 41200]
    assert "FIN_WAIT" in lab.lvsadm("-L -n -c")
    lab.advance(119)
    assert lab.counts("10.0.0.11") == (1, 0, 0)
    lab.advance(901)
    assert lab.counts("10.0.0.11") == (0, 0, 0)
    assert lab.director.switches[1].conns == {}


def test_rst_closes_at_once(lab):
    service(lab, servers=RS[:1])
    lab.connect(C1, 41250)
    lab.syn(C1, 41250, flags="RA")         # an established client's RST carries ACK
    assert lab.counts("10.0.0.11") == (0, 1, 0)


def test_timeouts_set_the_connection_flows(lab):
    service(lab, servers=RS[:1])
    lab.lvsadm("--set 30 10 20")
    lab.connect(C1, 41300)
    [flow] = [f for f in lab.sw.flows(table_id=pl.SERVICE) if f.match.get("tcp_src") == 41300]
    assert flow.idle_timeout == 30         # SYN_RECV's 60 s, but no longer than tcp's


def test_lc_uses_the_live_counts(lab):
    service(lab, "-s lc", servers=RS[:2])
    first = lab.connect(C1, 41400)
    second = lab.connect(C1, 41401)
    assert first != second
    lab.close(C1, 41400)
    lab.advance(121)                       # the first server's connection is gone
    assert lab.connect(C1, 41402) == first


def test_upper_threshold_overloads_a_server(lab):
    lab.lvsadm("-A -t 10.0.0.100:80 -s wlc")
    lab.lvsadm("-a -t 10.0.0.100:80 -r 10.0.0.11 -g -w 10 -x 1")
    lab.lvsadm("-a -t 10.0.0.100:80 -r 10.0.0.12 -g -w 1")
    # wlc ties go to the newest server (the kernel's list order)
    assert lab.connect(C1, 41500) == "10.0.0.12"
    assert lab.connect(C1, 41501) == "10.0.0.11"
    # 10.0.0.11 now holds 1 >= its upper threshold: skipped although heavier
    assert lab.connect(C1, 41502) == "10.0.0.12"
    assert lab.connect(C1, 41503) == "10.0.0.12"
    lab.syn(C1, 41501, flags="RA")         # its connection closes...
    assert lab.connect(C1, 41504) == "10.0.0.12"     # ...but still counts (CLOSE, 10 s)
    lab.advance(11)                        # gone: 0 < 3/4 of -x, no longer overloaded
    assert lab.connect(C1, 41505) == "10.0.0.11"


def test_quiesced_server_gets_no_new_connections_but_keeps_its_own(lab):
    service(lab, servers=RS[:2])
    a = lab.connect(C1, 41600)
    lab.lvsadm(f"-e -t 10.0.0.100:80 -r {a} -g -w 0")
    assert all(lab.connect(C1, 41601 + i) != a for i in range(4))
    [(port, _)] = lab.syn(C1, 41600, flags="A")
    assert port == lab.hosts[a]


def test_deleted_server_flows_go_and_its_connections_are_dropped(lab):
    service(lab, servers=RS[:2])
    a = lab.connect(C1, 41700)
    lab.lvsadm(f"-d -t 10.0.0.100:80 -r {a}")
    assert lab.syn(C1, 41700, flags="A") == []            # IPVS drops them (nodest)
    assert all(lab.connect(C1, 41701 + i) != a for i in range(3))
    # added again (IPVS takes it back from the trash): the connection continues
    lab.lvsadm(f"-a -t 10.0.0.100:80 -r {a} -g")
    [(port, _)] = lab.syn(C1, 41700, flags="A")
    assert port == lab.hosts[a]


def test_expire_nodest_conn_ends_connections_at_once(lab):
    service(lab, servers=RS[:2])
    lab.client.request("PUT", "/ipvs/settings", {"expire_nodest_conn": True})
    a = lab.connect(C1, 41800)
    lab.lvsadm(f"-d -t 10.0.0.100:80 -r {a}")
    assert [c for c in lab.director.switches[1].conns.values() if str(c.dest.address) == a] == []
    assert [f for f in lab.sw.flows(table_id=pl.SERVICE) if f.match.get("tcp_src") == 41800] == []
    assert lab.syn(C1, 41800, flags="A") == []


def test_deleted_service_takes_all_its_flows(lab):
    service(lab, servers=RS[:2], method="-m")
    lab.connect(C1, 41900)
    lab.lvsadm("-D -t 10.0.0.100:80")
    ours = [f for f in lab.sw.flows() if ids.Cookie.parse(f.cookie).kind not in
            (ids.KIND_BASE, ids.KIND_L2)]
    assert ours == [], lab.sw.dump()
    assert lab.syn(C1, 41901) == [] or all(p.get("ipv4_dst") == VIP for _, p in lab.syn(C1, 41902))


def test_udp_connections_are_inactive_and_counted_once(lab):
    lab.lvsadm("-A -u 10.0.0.100:53 -s rr")
    for rs in RS[:2]:
        lab.lvsadm(f"-a -u 10.0.0.100:53 -r {rs} -m")
    pkt = udp(C1, VIP, 5353, 53, in_port=1, eth_src=mac_of(C1), eth_dst=VMAC)
    first = [lab.server_of(lab.send(pkt)) for _ in range(3)]
    assert len(set(first)) == 1
    assert lab.counts(first[0], "-u 10.0.0.100:53") == (0, 1, 0)
    lab.advance(301)
    assert lab.counts(first[0], "-u 10.0.0.100:53") == (0, 0, 0)


def test_one_packet_scheduling_schedules_every_datagram(lab):
    lab.lvsadm("-A -u 10.0.0.100:53 -s rr -o")
    for rs in RS[:2]:
        lab.lvsadm(f"-a -u 10.0.0.100:53 -r {rs} -g")
    pkt = udp(C1, VIP, 5353, 53, in_port=1, eth_src=mac_of(C1), eth_dst=VMAC)
    chosen = [lab.server_of(lab.send(pkt)) for _ in range(4)]
    assert chosen == ["10.0.0.12", "10.0.0.11"] * 2
    assert not [f for f in lab.sw.flows(table_id=pl.SERVICE)
                if ids.Cookie.parse(f.cookie).kind == ids.KIND_CONN]


def test_connection_listing(lab):
    service(lab, servers=RS[:1], method="-m")
    lab.connect(C1, 42000)
    lab.advance(100)
    text = lab.lvsadm("-L -c -n")
    # its flow carried the handshake's ACK: ESTABLISHED, 900 s after that packet
    assert text.splitlines()[2] == \
        "TCP 13:20  ESTABLISHED 10.0.0.1:42000     10.0.0.100:80      10.0.0.11:80"
    assert lab.lvsadm("-L -n").splitlines()[4].split()[4:6] == ["1", "0"]   # Active, InAct


def test_one_packet_scheduling_is_for_udp_only_under_a_fwmark(lab):
    lab.lvsadm("--add-mark 3 --match tcp:10.0.0.100:80 --match udp:10.0.0.100:53")
    lab.lvsadm("-A -f 3 -s rr -o")
    for rs in RS[:2]:
        lab.lvsadm(f"-a -f 3 -r {rs} -g")
    a = lab.connect(C1, 42100)                # TCP: a connection, not one packet
    assert [lab.connect(C1, 42100) for _ in range(3)] == [a] * 3
    pkt = udp(C1, VIP, 5353, 53, in_port=1, eth_src=mac_of(C1), eth_dst=VMAC)
    chosen = [lab.server_of(lab.send(pkt)) for _ in range(2)]
    assert len(set(chosen)) == 2              # UDP: every datagram scheduled


def test_one_packet_to_a_tunnel_server_needs_the_tunnel_port(lab):
    lab.director.ports_changed(1, {})         # the switch has no vxlan port
    lab.lvsadm("-A -u 10.0.0.100:53 -s rr -o")
    lab.lvsadm("-a -u 10.0.0.100:53 -r 10.0.0.13 -i")
    before = len(lab.sw.packet_outs)
    pkt = udp(C1, VIP, 5353, 53, in_port=1, eth_src=mac_of(C1), eth_dst=VMAC)
    assert lab.send(pkt) == []
    assert len(lab.sw.packet_outs) == before      # no PacketOut to a port that isn't there


def test_lblc_cache_ages_on_the_timed_job(lab):
    """The kernel's 60 s lblc timer runs as a timed job on the (fake) clock and
    drops a destination idle for lblc_expiration; scheduling records when."""
    service(lab, "-s lblc")
    assert lab.connect(C1, 41500) is not None
    [state] = lab.manager.runtime.services.values()
    cache = state.scheduler.cache
    [entry] = cache.values()
    assert entry.lastuse == lab.now                  # scheduled with the clock's time
    state.scheduler.expiration = 120                 # lblc_expiration, shortened here
    lab.advance(29 * 60)                             # 29 timer runs: no full check yet
    assert len(cache) == 1
    lab.advance(60)                                  # the 30th run checks every entry
    assert cache == {}


# -- a FIN stays in the switch (see lifecycle.py) ---------------------------------------

def count_packet_ins(lab):
    seen = []
    handler = lab.manager.packet_in

    def counting(*args, **kwargs):
        seen.append(args)
        return handler(*args, **kwargs)
    lab.manager.packet_in = counting
    return seen


def test_a_connection_costs_one_packet_in_its_syn(lab):
    service(lab, servers=RS[:1], method="-m")
    lab.connect(C1, 41599)                               # the switch learns where hosts are
    seen = count_packet_ins(lab)
    server = lab.connect(C1, 41600)
    assert lab.close(C1, 41600) == server               # the FIN reaches the server...
    lab.advance(2)
    assert [args[3] for args in seen] == [pl.SERVICE]    # ...and only the SYN came up
    assert lab.counts(server) == (1, 1, 0)               # 41599 open, 41600 closed


def test_a_late_packet_of_a_closed_connection_gets_its_flow_back(lab):
    """A half-closed connection: the client sent its FIN, the server goes on
    sending after a pause, the client's ACKs must still pass (IPVS keeps the
    entry in FIN_WAIT)."""
    service(lab, servers=RS[:1], method="-m")
    lab.connect(C1, 41700)
    lab.close(C1, 41700)
    lab.advance(5)                                       # the flow is gone, the entry stays
    assert not [f for f in lab.sw.flows(table_id=pl.SERVICE)
                if f.match.get("tcp_src") == 41700]
    [(port, pkt)] = lab.syn(C1, 41700, flags="A")        # by the VIP's stray punt
    assert (port, pkt["ipv4_dst"]) == (11, "10.0.0.11")
    [flow] = [f for f in lab.sw.flows(table_id=pl.SERVICE) if f.match.get("tcp_src") == 41700]
    assert flow.idle_timeout == 120 and lab.counts("10.0.0.11") == (0, 1, 0)
    [(port, _)] = lab.syn(C1, 41700, flags="A")          # the next ones stay in the switch
    assert port == 11


def test_a_closed_connection_ends_tcpfin_after_its_last_packet_with_its_reverse_flow(lab):
    service(lab, servers=RS[:1], method="-m")
    lab.connect(C1, 41800)
    lab.close(C1, 41800)
    reverse = ids.cookie_mask(ids.KIND_REVERSE, 1, 1)
    assert lab.sw.flows(table_id=pl.REVERSE, cookie=reverse[0], cookie_mask=reverse[1])
    lab.advance(100)
    assert lab.counts("10.0.0.11") == (0, 1, 0)
    lab.advance(22)                                      # 120 s after the FIN
    assert lab.counts("10.0.0.11") == (0, 0, 0) and lab.director.switches[1].conns == {}
    assert not lab.sw.flows(table_id=pl.REVERSE, cookie=reverse[0], cookie_mask=reverse[1])


def test_a_stray_packet_with_no_entry_is_dropped_by_the_controller(lab):
    service(lab, servers=RS[:1])
    assert lab.syn(C1, 41900, flags="A") == []           # IPVS drops it too
    assert lab.director.switches[1].conns == {}


def test_a_closed_connection_still_sending_is_closed_by_the_hard_timeout(lab):
    """The client's FIN, then its ACKs for 2 minutes (the server still
    sends): the flow's fin_timeout hard timeout ends it; the entry goes on."""
    service(lab, servers=RS[:1])
    lab.connect(C1, 42000)
    lab.close(C1, 42000)
    for _ in range(125):
        lab.syn(C1, 42000, flags="A")
        lab.advance(1)
    # the hard timeout removed the flow once; the next ACK brought it back
    assert lab.counts("10.0.0.11") == (0, 1, 0)
    assert [f.idle_timeout for f in lab.sw.flows(table_id=pl.SERVICE)
            if f.match.get("tcp_src") == 42000] == [120]


def test_a_closed_connection_of_a_switch_that_went_away_is_not_counted_down_twice(lab):
    service(lab, servers=RS[:1])
    lab.connect(C1, 42100)
    lab.close(C1, 42100)
    lab.advance(2)                                       # FIN_WAIT, without a flow
    lab.manager.switch_disconnected(1, lab.datapath)
    lab.clock.advance(200)
    lab.manager.tick()                                   # the closed-expiry job runs
    rows = lab.client.request("GET", "/ipvs")["services"][0]["servers"]
    assert [(r["activeconns"], r["inactconns"]) for r in rows] == [(0, 0)], rows
