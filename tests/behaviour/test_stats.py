"""Traffic counters on the fake switch: aggregate flow counters polled, FlowRemoved
folded, packets the controller forwards itself, never backwards, -Z, a restart."""

import pytest

from tests.behaviour.conftest import DirectorLab, mac_of
from tests.fakeswitch import tcp

C1, C2 = "10.0.0.1", "10.0.0.2"
POLL = 2          # the manager's default poll interval (s)


def stats(lab, server=None):
    """{field: value} of the service (or of one server) from GET /ipvs."""
    svc = lab.client.request("GET", "/ipvs")["services"][0]
    if server is None:
        return svc["stats"]
    return next(rs["stats"] for rs in svc["servers"] if rs["address"] == server)


def data(lab, client, sport, size, port=1):
    return lab.send(tcp(client, "10.0.0.100", sport, 80, flags="A", in_port=port,
                        eth_src=mac_of(client), eth_dst="02:1f:0a:00:00:64",
                        payload=b"x" * size))


def reply(lab, server, client, cport, size, sport=80):
    return lab.send(tcp(server, client, sport, cport, flags="A", in_port=lab.hosts[server],
                        eth_src=mac_of(server), eth_dst=mac_of(client), payload=b"y" * size))


def nat_lab(rules_path=None):
    lab = DirectorLab(rules_path=rules_path)
    lab.lvsadm("-A -t 10.0.0.100:80 -s rr")
    lab.lvsadm("-a -t 10.0.0.100:80 -r 10.0.0.11 -m")
    return lab


def test_flow_counters_become_ipvs_counters_in_ip_bytes():
    lab = nat_lab()
    lab.syn(C1, 40000)                               # through the controller: counted too
    for _ in range(3):
        data(lab, C1, 40000, 100)                    # 3 x (40 + 100) IP bytes, in the switch
    for _ in range(2):
        reply(lab, "10.0.0.11", C1, 40000, 1000)     # 2 x 1040 IP bytes, the reverse flow
    assert stats(lab)["inpkts"] == 0                 # what is shown changes at a poll
    lab.advance(POLL)
    expected = {"conns": 1, "inpkts": 4, "outpkts": 2, "inbytes": 40 + 3 * 140,
                "outbytes": 2 * 1040}
    assert stats(lab) == expected
    assert stats(lab, "10.0.0.11") == expected


def test_final_counts_of_an_ended_connection_are_kept():
    lab = nat_lab()
    lab.lvsadm("--set 5 5 5")
    lab.syn(C1, 40001)
    data(lab, C1, 40001, 10)
    lab.advance(POLL)
    data(lab, C1, 40001, 10)                         # after the poll, before the end
    reply(lab, "10.0.0.11", C1, 40001, 10)
    lab.advance(90)                                   # the connection's flows end
    assert lab.director.switches[1].conns == {}
    assert stats(lab)["inpkts"] == 3 and stats(lab)["outpkts"] == 1
    assert stats(lab)["inbytes"] == 40 + 2 * 50 and stats(lab)["outbytes"] == 50


def test_a_padded_frame_the_controller_forwards_counts_its_ip_length():
    """A SYN in a 60-byte frame (6 bytes of Ethernet padding, as a physical
    link delivers it): 40 IP bytes, as IPVS counts it."""
    import struct

    from lvs_app import pipeline as pl
    eth = bytes.fromhex("021f0a000064") + bytes.fromhex(mac_of(C1).replace(":", "")) + b"\x08\x00"
    ip = struct.pack("!BBHHHBBHII", 0x45, 0, 40, 0, 0, 64, 6, 0, 0x0A000001, 0x0A000064)
    syn = struct.pack("!HHIIBBHHH", 40020, 80, 1, 0, 0x50, 0x02, 65535, 0, 0)
    frame = eth + ip + syn + bytes(6)
    lab = nat_lab()
    lab.manager.packet_in(1, 1, frame, pl.SERVICE)
    lab.advance(POLL)
    assert stats(lab) == {"conns": 1, "inpkts": 1, "outpkts": 0, "inbytes": 40, "outbytes": 0}


def test_direct_routing_counts_nothing_outbound():
    lab = DirectorLab()
    lab.lvsadm("-A -t 10.0.0.100:80 -s rr")
    lab.lvsadm("-a -t 10.0.0.100:80 -r 10.0.0.12 -g")
    lab.syn(C2, 40002)
    data(lab, C2, 40002, 60)
    lab.advance(POLL)
    assert stats(lab) == {"conns": 1, "inpkts": 2, "outpkts": 0, "inbytes": 40 + 100,
                          "outbytes": 0}


def test_zero_starts_again_from_0_and_counts_on():
    lab = nat_lab()
    lab.syn(C1, 40003)
    data(lab, C1, 40003, 10)
    lab.advance(POLL)
    lab.lvsadm("-Z")
    assert stats(lab) == {"conns": 0, "inpkts": 0, "outpkts": 0, "inbytes": 0, "outbytes": 0}
    data(lab, C1, 40003, 10)
    lab.advance(POLL)
    assert stats(lab)["inpkts"] == 1 and stats(lab)["inbytes"] == 50


def test_counters_never_go_backwards_over_a_poll_flowremoved_and_restart(tmp_path):
    lab = nat_lab(str(tmp_path / "lvs.rules"))
    lab.lvsadm("--set 30 30 30")
    seen = []
    for i in range(4):
        lab.syn(C1, 41000 + i)
        data(lab, C1, 41000 + i, 20)
        lab.advance(POLL)
        seen.append(stats(lab)["inpkts"])
    lab.advance(40)                                  # the first connections end
    seen.append(stats(lab)["inpkts"])
    lab.syn(C2, 42000)
    data(lab, C2, 42000, 20)
    lab.advance(POLL)                                # written to lvs.rules.stats
    before = stats(lab)
    seen.append(before["inpkts"])
    lab.restart_controller()                         # kill -9: the switch keeps its flows
    assert stats(lab) == before                      # before its first poll too
    lab.advance(POLL)
    after = stats(lab)
    seen.append(after["inpkts"])
    assert seen == sorted(seen) and seen[-1] == 10
    assert after == before
    data(lab, C2, 42000, 20)
    lab.advance(POLL)
    assert stats(lab)["inpkts"] == 11


def controller_down(lab, seconds, c2_packets=0):
    """The controller is dead for ``seconds``: the switch expires flows (their
    FlowRemoveds reach nobody: the restart drops them); ``c2_packets`` of
    C2's connection cross the switch meanwhile, one every 10 s (its flow
    carries them and lives on)."""
    for second in range(1, seconds + 1):
        lab.clock.advance(1)
        lab.sw.expire()
        if second % 10 == 0 and second // 10 <= c2_packets:
            lab.sw.send(tcp(C2, "10.0.0.100", 43001, 80, flags="A", in_port=1,
                            eth_src=mac_of(C2), eth_dst="02:1f:0a:00:00:64",
                            payload=b"x" * 20), now=lab.now)


def test_a_flow_that_ends_while_no_controller_listens_takes_nothing_away(tmp_path):
    lab = nat_lab(str(tmp_path / "lvs.rules"))
    lab.lvsadm("--set 30 30 30")
    lab.syn(C1, 43000)
    for _ in range(3):
        data(lab, C1, 43000, 20)
    lab.syn(C2, 43001)
    data(lab, C2, 43001, 20)
    lab.advance(POLL)                                # shown and saved
    before = stats(lab)
    assert before["inpkts"] == 6 and before["conns"] == 2
    c1_flows = [f for f in lab.sw.flows() if f.match.get("tcp_src") == 43000]
    assert c1_flows
    controller_down(lab, 35, c2_packets=2)           # C1's flows idle out unheard
    assert not [f for f in lab.sw.flows() if f.match.get("tcp_src") == 43000]
    assert [f for f in lab.sw.flows() if f.match.get("tcp_src") == 43001]
    lab.restart_controller()
    assert stats(lab) == before                      # at once: what was shown
    lab.advance(POLL)
    # the switch's counts now: 2 SYNs + C2's 4 data packets = 6 - C1's 3 + C2's 2:
    # 5 < 6, so the figures stay where they were
    assert stats(lab) == before
    for _ in range(3):
        data(lab, C2, 43001, 20)
    lab.advance(POLL)
    after = stats(lab)
    assert after["inpkts"] == 8 and after["inbytes"] == 2 * 40 + 6 * 60
    assert after["conns"] == 2


def test_rates_come_from_the_estimator():
    lab = nat_lab()
    lab.syn(C1, 40004)
    for _ in range(10):
        for _ in range(100):
            data(lab, C1, 40004, 0)                  # 100 packets of 40 bytes a second
        lab.advance(1)
    rates = lab.client.request("GET", "/ipvs")["services"][0]["rates"]
    # 200 packets per 2 s sample, moving a quarter of the way each time
    assert 50 <= rates["inpps"] <= 100 and rates["inbps"] == pytest.approx(
        rates["inpps"] * 40, rel=0.1)
    listing = lab.lvsadm("-L -n --rate")
    assert f"{rates['inpps']:>8}" in listing.replace("  ", "  ")


def metrics(lab):
    import webob
    from prometheus_client.parser import text_string_to_metric_families

    from lvs_app.rest import RestApp
    response = webob.Request.blank("/metrics").get_response(RestApp(lab.api))
    assert response.status_int == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.text)
            for s in family.samples}


def test_metrics_agree_with_the_listing_and_count_the_controllers_work():
    lab = nat_lab()
    lab.syn(C1, 40005)
    data(lab, C1, 40005, 100)
    reply(lab, "10.0.0.11", C1, 40005, 500)
    lab.advance(POLL)
    values = metrics(lab)
    svc = (("local_address", "10.0.0.100"), ("local_mark", ""), ("local_port", "80"),
           ("proto", "TCP"))
    backend = tuple(sorted(svc + (("forward", "masq"), ("remote_address", "10.0.0.11"),
                                  ("remote_port", "80"))))
    shown = stats(lab)
    assert values[("lvs_ipvs_service_incoming_bytes_total", svc)] == shown["inbytes"] == 180
    assert values[("lvs_ipvs_backend_outgoing_bytes_total", backend)] == shown["outbytes"] == 540
    assert values[("lvs_ipvs_backend_connections_active", backend)] == 1
    assert values[("lvs_ipvs_connections_total", ())] == 1
    scheduled = (("outcome", "scheduled"), ("table", "service"))
    assert values[("lvs_app_packet_ins_total", scheduled)] == 1
    assert values[("lvs_app_flow_mods_total", ())] > 0
    assert values[("lvs_app_connections", (("dpid", "0000000000000001"),))] == 1
    assert values[("lvs_app_flow_entries", (("dpid", "0000000000000001"), ("table", "service")))] > 0
    assert values[("lvs_app_packet_in_duration_seconds_count", ())] >= 1


def test_flow_entries_are_the_switchs_table_counts_and_an_emptied_table_shows_0():
    from ryu.ofproto import ofproto_v1_3 as ofp
    from ryu.ofproto import ofproto_v1_3_parser as parser

    from lvs_app import pipeline as pl
    lab = nat_lab()
    lab.advance(POLL)
    entries = ("lvs_app_flow_entries", (("dpid", "0000000000000001"), ("table", "forward")))
    forward = [f for f in lab.sw.flows() if f.table_id == pl.FORWARD]
    assert metrics(lab)[entries] == len(forward) > 0
    # an operator empties the table (ovs-ofctl del-flows): 0, not a series gone
    lab.sw.apply(parser.OFPFlowMod(None, table_id=pl.FORWARD, command=ofp.OFPFC_DELETE,
                                   out_port=ofp.OFPP_ANY, out_group=ofp.OFPG_ANY,
                                   match=parser.OFPMatch()))
    lab.advance(POLL)
    assert metrics(lab)[entries] == 0


def test_packet_ins_count_what_became_of_them_and_drops_their_reasons():
    from lvs_app.director import DROP_REASONS, OUTCOMES
    from tests.fakeswitch import arp_request
    lab = nat_lab()
    lab.lvsadm("-A -t 10.0.0.100:81 -s rr")
    lab.lvsadm("-a -t 10.0.0.100:81 -r 10.0.0.14:80 -m")     # a server that never answers ARP
    lab.syn(C1, 40010)                                       # scheduled
    lab.syn(C1, 40010, flags="R")                            # forwarded (its connection's)
    lab.syn(C2, 40011, flags="A")                            # dropped: no connection
    lab.syn("127.0.0.1", 40012)                              # dropped: martian
    lab.syn(C1, 40013, dport=82)                             # dropped: no service
    lab.syn(C1, 40014, dport=81)                             # queued: the server's MAC
    lab.send(arp_request(C1, "10.0.0.100", sha=mac_of(C1), in_port=1))   # answered
    lab.send(tcp(C1, C2, 1000, 2000, in_port=1, eth_src=mac_of(C1),
                 eth_dst=mac_of(C2)))                        # switched
    lab.manager.packet_in(1, 1, b"\x00" * 10, 0)            # dropped: malformed
    values = metrics(lab)
    packet_ins = {dict(labels)["outcome"] + "@" + dict(labels)["table"]: n
                  for (name, labels), n in values.items() if name == "lvs_app_packet_ins_total"}
    assert {key.split("@")[0] for key in packet_ins} <= set(OUTCOMES)
    assert packet_ins["scheduled@service"] == 1
    assert packet_ins["forwarded@service"] == 1
    assert packet_ins["dropped@service"] == 3
    assert packet_ins["queued@service"] == 1
    assert packet_ins["answered@classify"] == 1
    assert packet_ins["dropped@classify"] == 1
    assert packet_ins["switched@forward"] >= 1
    assert packet_ins["consumed@classify"] >= 1      # the servers' answers to ARP probes
    dropped = {dict(labels)["reason"]: n for (name, labels), n in values.items()
               if name == "lvs_app_dropped_packets_total"}
    assert set(dropped) == set(DROP_REASONS)          # every reason, 0 until it happens
    assert {r: n for r, n in dropped.items() if n} == {
        "no_connection": 1, "martian": 1, "no_service": 1, "malformed": 1}
    assert values[("lvs_app_connections_dropped_total", ())] == 0


def test_drops_counted_elsewhere_are_exported_too():
    """A later fragment without its first, a SYN refused at the table's cap and
    the half-open entries drop_entry ended."""
    from lvs_app.director import DROPPED
    lab = DirectorLab(max_connections=10)
    lab.lvsadm("-A -t 10.0.0.100:80 -s rr")
    lab.lvsadm("-a -t 10.0.0.100:80 -r 10.0.0.11 -m")
    for i in range(4):                                # half-open entries, old enough to go
        lab.syn(C1, 44000 + i)
    lab.advance(2)
    for i in range(12):                               # a burst: drop_entry, then the cap
        lab.syn(C1, 44100 + i)
    frame = bytes.fromhex("021f0a000064" "02000a000001" "0800"
                          "45000020000100104011" "0000" "0a000001" "0a000064") + b"x" * 12
    lab.manager.packet_in(1, 1, frame, 1)              # offset 8 bytes: a later fragment
    assert lab.director.outcome == DROPPED
    values = metrics(lab)
    dropped = {dict(labels)["reason"]: n for (name, labels), n in values.items()
               if name == "lvs_app_dropped_packets_total"}
    limits = lab.director.limits.counters
    assert dropped["orphan_fragment"] == lab.director.fragments.dropped == 1
    assert dropped["table_full"] == limits["refused"] > 0
    assert values[("lvs_app_packet_ins_total", (("outcome", "dropped"), ("table", "service")))] \
        == limits["refused"] + 1
    assert values[("lvs_app_connections_dropped_total", ())] == limits["drop_entry"] > 0

