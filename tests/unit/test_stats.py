"""Folding flow counters into IPVS counters (lvs_app.stats), flow by flow."""

import ipaddress
from types import SimpleNamespace

from lvs_app import ids
from lvs_app.model import service_key
from lvs_app.stats import TrafficCounters, ip_bytes

KEY = service_key("tcp", "10.0.0.100", 80)


def counters(path=None):
    stable = ids.StableIds()
    sid = stable.service(KEY)
    rid = stable.server(KEY, ipaddress.ip_address("10.0.0.11"), 80)
    return TrafficCounters(stable, path), sid, rid


def flow(sid, rid, packets, frame_bytes, kind=ids.KIND_CONN, sport=40000, table_id=1):
    return SimpleNamespace(table_id=table_id, cookie=ids.Cookie(kind, sid, rid).value,
                           match={"ipv4_src": "10.0.0.1", "tcp_src": sport},
                           packet_count=packets, byte_count=frame_bytes)


def shown(traffic):
    return traffic.server_counts(KEY.to_id(), "10.0.0.11-80")[0]


def test_ip_bytes_take_the_ethernet_header_off_every_packet():
    assert ip_bytes(1514 * 10, 10) == 1500 * 10 and ip_bytes(0, 0) == 0


def test_a_flow_adds_its_increase_and_directions_follow_the_kind():
    traffic, sid, rid = counters()
    traffic.flow_stats(1, [flow(sid, rid, 2, 2 * 154)])
    traffic.flow_stats(1, [flow(sid, rid, 5, 5 * 154),
                           flow(sid, rid, 3, 3 * 1054, ids.KIND_REVERSE, table_id=2)])
    assert shown(traffic) == [5, 3, 5 * 140, 3 * 1040]
    assert traffic.service_counts(KEY.to_id())[0] == [5, 3, 5 * 140, 3 * 1040]


def test_a_flow_removed_after_a_poll_adds_only_what_was_not_seen():
    traffic, sid, rid = counters()
    f = flow(sid, rid, 4, 4 * 64)
    traffic.flow_stats(1, [f])
    traffic.flow_removed(1, f.table_id, f.cookie, f.match, 6, 6 * 64)
    assert shown(traffic) == [6, 0, 6 * 50, 0]
    traffic.flow_stats(1, [])                        # gone: nothing moves twice
    assert shown(traffic) == [6, 0, 6 * 50, 0]


def test_a_replaced_flow_keeps_the_old_counts_and_a_vanished_one_its_last():
    traffic, sid, rid = counters()
    traffic.flow_stats(1, [flow(sid, rid, 10, 640), flow(sid, rid, 7, 448, sport=2)])
    traffic.flow_stats(1, [flow(sid, rid, 3, 192)])  # re-added (reset), the other vanished
    assert shown(traffic) == [10 + 3 + 7, 0, (10 + 3 + 7) * 50, 0]
    f = flow(sid, rid, 3, 192)
    traffic.flow_removed(1, f.table_id, f.cookie, f.match, 1, 64)   # reset again, then ended
    assert shown(traffic) == [21, 0, 21 * 50, 0]


def test_other_flows_and_unknown_numbers_count_nothing():
    traffic, sid, rid = counters()
    traffic.flow_stats(1, [flow(sid, rid, 5, 500, ids.KIND_VIP), flow(sid, 99, 5, 500),
                           SimpleNamespace(table_id=0, cookie=0x1234, match={},
                                           packet_count=9, byte_count=900)])
    assert shown(traffic) == [0, 0, 0, 0]
    assert traffic.entries[1] == {1: 2, 0: 1}        # flow-table occupancy per table


def test_zero_and_the_file(tmp_path):
    path = tmp_path / "lvs.rules.stats"
    traffic, sid, rid = counters(str(path))
    traffic.flow_stats(1, [flow(sid, rid, 4, 256)])
    traffic.zero()
    traffic.flow_removed(1, 1, flow(sid, rid, 0, 0).cookie, flow(sid, rid, 0, 0).match, 6, 384)
    assert shown(traffic) == [2, 0, 100, 0]
    traffic.save({(KEY.to_id(), "10.0.0.11-80"): 3, (KEY.to_id(), None): 3})
    again = TrafficCounters(traffic.ids, str(path))
    assert again.server_counts(KEY.to_id(), "10.0.0.11-80") == ([6 - 4, 0, 100, 0], 3)
    path.write_text("{not json")
    broken = TrafficCounters(traffic.ids, str(path))        # logged, from 0
    assert broken.server_counts(KEY.to_id(), "10.0.0.11-80") == ([0, 0, 0, 0], 0)
