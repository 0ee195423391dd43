"""Traffic counters from aggregate flow counters (lvs_app.stats), answer by answer."""

import ipaddress

from lvs_app import ids
from lvs_app.model import service_key
from lvs_app.stats import IN_KINDS, OUT_KINDS, TrafficCounters, ip_bytes

KEY = service_key("tcp", "10.0.0.100", 80)
CONN, TEMPLATE, REVERSE = ids.KIND_CONN, ids.KIND_TEMPLATE, ids.KIND_REVERSE


def counters(path=None):
    stable = ids.StableIds()
    sid = stable.service(KEY)
    rid = stable.server(KEY, ipaddress.ip_address("10.0.0.11"), 80)
    return TrafficCounters(stable, path), sid, rid


def poll(traffic, sid, rid, answers, dpid=1):
    """One poll round: ``answers`` {kind: (packets, frame bytes)}, the rest 0."""
    queries = traffic.queries([(sid, rid)])
    traffic.poll_started(dpid, len(queries))
    for kind, s, r in queries:
        traffic.aggregate(dpid, kind, s, r, *answers.get(kind, (0, 0)))


def shown(traffic):
    return traffic.server_counts(KEY.to_id(), "10.0.0.11-80")[0]


def test_ip_bytes_take_the_ethernet_header_off_every_packet():
    assert ip_bytes(1514 * 10, 10) == 1500 * 10 and ip_bytes(0, 0) == 0


def test_one_poll_asks_five_kinds_per_server_and_shows_when_all_answered():
    traffic, sid, rid = counters()
    assert traffic.queries([(sid, rid)]) == [(k, sid, rid) for k in IN_KINDS + OUT_KINDS]
    assert len(IN_KINDS + OUT_KINDS) == 5
    traffic.poll_started(1, 5)
    traffic.aggregate(1, CONN, sid, rid, 5, 5 * 154)
    assert shown(traffic) == [0, 0, 0, 0]            # not all in yet
    traffic.aggregate(1, TEMPLATE, sid, rid, 1, 64)
    traffic.aggregate(1, ids.KIND_TEMPLATE_SYN, sid, rid, 0, 0)
    traffic.aggregate(1, ids.KIND_TEMPLATE_NAT, sid, rid, 0, 0)
    assert shown(traffic) == [0, 0, 0, 0]            # not all in yet
    traffic.aggregate(1, REVERSE, sid, rid, 3, 3 * 1054)
    assert shown(traffic) == [6, 3, 5 * 140 + 50, 3 * 1040]
    assert traffic.service_counts(KEY.to_id())[0] == [6, 3, 750, 3120]
    assert traffic.polls == 1


def test_a_switch_templates_syn_flow_counts_packets_and_connections():
    traffic, sid, rid = counters()
    syn, nat = ids.KIND_TEMPLATE_SYN, ids.KIND_TEMPLATE_NAT
    poll(traffic, sid, rid, {syn: (7, 7 * 74), nat: (9, 9 * 74)})
    assert shown(traffic) == [7, 9, 7 * 60, 9 * 60]
    assert traffic.server_counts(KEY.to_id(), "10.0.0.11-80")[1] == 7
    traffic.flow_removed(ids.Cookie(syn, sid, rid).value, 8, 8 * 74)   # one more SYN, then idle
    poll(traffic, sid, rid, {nat: (9, 9 * 74)})
    assert shown(traffic) == [8, 9, 8 * 60, 9 * 60]
    assert traffic.service_counts(KEY.to_id())[1] == 8
    traffic.zero()
    assert traffic.service_counts(KEY.to_id()) == ([0, 0, 0, 0], 0)


def test_a_flow_that_ends_moves_from_live_to_base():
    traffic, sid, rid = counters()
    poll(traffic, sid, rid, {CONN: (4, 4 * 64)})
    traffic.flow_removed(ids.Cookie(CONN, sid, rid).value, 6, 6 * 64)
    assert shown(traffic) == [4, 0, 200, 0]          # until the next poll
    poll(traffic, sid, rid, {})                      # the flow is gone from the aggregate
    assert shown(traffic) == [6, 0, 300, 0]


def test_packets_the_controller_forwarded_count_and_other_cookies_do_not():
    traffic, sid, rid = counters()
    traffic.count(sid, rid, 0, 60)
    traffic.count(sid, rid, 1, 40)
    traffic.flow_removed(ids.Cookie(ids.KIND_VIP, sid, rid).value, 9, 900)
    traffic.flow_removed(0x1234, 9, 900)
    traffic.count(sid, 99, 0, 60)                    # a number nobody has
    poll(traffic, sid, rid, {})
    assert shown(traffic) == [1, 1, 60, 40]


def test_never_lower_than_shown_before_even_when_a_flow_vanishes():
    traffic, sid, rid = counters()
    poll(traffic, sid, rid, {CONN: (10, 640)})
    poll(traffic, sid, rid, {CONN: (2, 128)})        # one flow vanished, no FlowRemoved
    assert shown(traffic) == [10, 0, 500, 0]
    poll(traffic, sid, rid, {CONN: (12, 768)})       # the traffic catches up
    assert shown(traffic) == [12, 0, 600, 0]


def test_two_switches_add_up_and_a_switch_that_goes_keeps_what_was_shown():
    traffic, sid, rid = counters()
    poll(traffic, sid, rid, {CONN: (3, 192)}, dpid=1)
    poll(traffic, sid, rid, {CONN: (4, 256)}, dpid=2)
    assert shown(traffic) == [7, 0, 350, 0]
    traffic.switch_gone(2)
    poll(traffic, sid, rid, {CONN: (5, 320)}, dpid=1)
    assert shown(traffic) == [7, 0, 350, 0]           # 5 < 7: wait for the traffic


def test_zero_and_the_file(tmp_path):
    path = tmp_path / "lvs.rules.stats"
    traffic, sid, rid = counters(str(path))
    cookie = ids.Cookie(CONN, sid, rid).value
    poll(traffic, sid, rid, {CONN: (4, 256)})
    traffic.zero()
    assert shown(traffic) == [0, 0, 0, 0]
    traffic.flow_removed(cookie, 6, 384)
    poll(traffic, sid, rid, {})
    assert shown(traffic) == [2, 0, 100, 0]
    traffic.save({(KEY.to_id(), "10.0.0.11-80"): 3, (KEY.to_id(), None): 3})
    again = TrafficCounters(traffic.ids, str(path))
    assert again.server_counts(KEY.to_id(), "10.0.0.11-80") == ([2, 0, 100, 0], 3)
    path.write_text("{not json")
    broken = TrafficCounters(traffic.ids, str(path))        # logged, from 0
    assert broken.server_counts(KEY.to_id(), "10.0.0.11-80") == ([0, 0, 0, 0], 0)


def test_a_flowremoved_in_the_middle_of_a_poll_is_counted_once():
    """The switch answered the poll's CONN aggregate (the flow's 5 packets so
    far in it), then the flow ended (FlowRemoved: 6), then the poll's other
    answers came: 5 is shown, then 6 once the flow has left its aggregate."""
    traffic, sid, rid = counters()
    cookie = ids.Cookie(CONN, sid, rid).value
    poll(traffic, sid, rid, {CONN: (4, 4 * 64)})
    queries = traffic.queries([(sid, rid)])
    assert queries[0][0] == CONN
    traffic.poll_started(1, len(queries))
    for kind, s, r in queries:
        traffic.aggregate(1, kind, s, r, *{CONN: (5, 5 * 64)}.get(kind, (0, 0)))
        if kind == CONN:
            traffic.flow_removed(cookie, 6, 6 * 64, dpid=1)
    assert shown(traffic) == [5, 0, 250, 0]          # not 5 + 6
    poll(traffic, sid, rid, {})                      # the flow is gone from its aggregate
    assert shown(traffic) == [6, 0, 300, 0]
    poll(traffic, sid, rid, {})
    assert shown(traffic) == [6, 0, 300, 0]


def test_overlapping_polls_of_two_switches_count_an_ended_flow_once():
    """Switch 2's flow ends between polls; switch 1's poll is done before
    switch 2 answers again: its last answer still holds the flow."""
    traffic, sid, rid = counters()
    cookie = ids.Cookie(CONN, sid, rid).value
    poll(traffic, sid, rid, {CONN: (3, 3 * 64)}, dpid=1)
    poll(traffic, sid, rid, {CONN: (4, 4 * 64)}, dpid=2)
    traffic.flow_removed(cookie, 5, 5 * 64, dpid=2)
    poll(traffic, sid, rid, {CONN: (3, 3 * 64)}, dpid=1)
    assert shown(traffic) == [7, 0, 350, 0]          # not 3 + 4 + 5
    poll(traffic, sid, rid, {}, dpid=2)
    assert shown(traffic) == [8, 0, 400, 0]
    # switch 1's flow ends likewise, then the switch goes: its final count stays
    traffic.flow_removed(cookie, 4, 4 * 64, dpid=1)
    traffic.switch_gone(1)
    poll(traffic, sid, rid, {}, dpid=2)
    assert shown(traffic) == [9, 0, 450, 0]


def test_a_restart_starts_from_what_was_shown(tmp_path):
    """The file keeps what was shown (never less after a restart, even before
    the first poll, or with flows gone that nobody heard end) and the final
    counts still waiting for their aggregate's next answer."""
    path = tmp_path / "lvs.rules.stats"
    traffic, sid, rid = counters(str(path))
    cookie = ids.Cookie(CONN, sid, rid).value
    poll(traffic, sid, rid, {CONN: (4, 4 * 64), REVERSE: (2, 2 * 64)})
    traffic.flow_removed(cookie, 5, 5 * 64, dpid=1)  # waits for the next CONN answer
    traffic.save({})
    again = TrafficCounters(traffic.ids, str(path))
    assert shown(again) == [5, 2, 250, 100]          # before any poll: the ended flow's 5
    poll(again, sid, rid, {})                        # the reverse flow ended unheard
    assert shown(again) == [5, 2, 250, 100]          # not less
    poll(again, sid, rid, {REVERSE: (3, 3 * 64)})
    assert shown(again) == [5, 3, 250, 150]
    # a file from before "shown" was kept: base - offset
    path.write_text('{"services": {}, "servers": [["%s", "10.0.0.11-80", '
                    '{"base": [7, 0, 70, 0], "offset": [1, 0, 10, 0], "conns": 2}]]}\n'
                    % KEY.to_id())
    old = TrafficCounters(traffic.ids, str(path))
    assert old.server_counts(KEY.to_id(), "10.0.0.11-80") == ([6, 0, 60, 0], 2)


def test_table_statistics_keep_a_table_that_falls_empty_at_0():
    traffic, _, _ = counters()
    traffic.table_stats(1, {0: 5, 1: 7, 2: 0, 3: 0})     # the switch's unused tables: 0
    assert traffic.entries == {1: {0: 5, 1: 7}}
    traffic.table_stats(1, {0: 5, 1: 0, 2: 0, 3: 2})
    assert traffic.entries == {1: {0: 5, 1: 0, 3: 2}}
    traffic.switch_gone(1)
    assert traffic.entries == {}


def test_the_ip_length_of_a_frame_ignores_padding_and_a_vlan_tag():
    from lvs_app import packet as pkt
    ip = bytes.fromhex("45000028000100004006" "0000" "0a000001" "0a000064") + bytes(20)
    eth = bytes.fromhex("021f0a000064" "020000000001")
    padded = eth + b"\x08\x00" + ip + bytes(6)                  # a 60-byte minimum frame
    assert len(padded) == 60 and pkt.ip_length(padded) == 40
    tagged = eth + b"\x81\x00\x00\x05\x08\x00" + ip + bytes(2)
    assert pkt.ip_length(tagged) == 40
    v6 = eth + b"\x86\xdd" + bytes.fromhex("60000000001406ff") + bytes(32) + bytes(20)
    assert pkt.ip_length(v6) == 60
    assert pkt.ip_length(eth + b"\x88\xcc" + bytes(46)) == 46      # not IP: past Ethernet
