"""The fake OpenFlow 1.3 switch behaves like Open vSwitch's tables.

Each test states one behaviour the director's behaviour tests rely on.
"""

import pytest
from ryu.ofproto import nicira_ext
from ryu.ofproto import ofproto_v1_3 as ofp
from ryu.ofproto import ofproto_v1_3_parser as parser

from tests.fakeswitch import (
    FakeClock, FakeSwitch, FakeSwitchError, FakeSwitchUnsupported,
    arp_request, packet_from_bytes, packet_to_bytes, tcp, udp)

VIP = '10.0.0.100'
IPV4_TCP = dict(eth_type=0x0800, ip_proto=6)


def flow(match=None, actions=None, table_id=0, priority=100, goto=None,
         write=None, clear=False, command=ofp.OFPFC_ADD, **kw):
    insts = []
    if actions is not None:
        insts.append(parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS,
                                                  actions))
    if clear:
        insts.append(parser.OFPInstructionActions(ofp.OFPIT_CLEAR_ACTIONS, []))
    if write is not None:
        insts.append(parser.OFPInstructionActions(ofp.OFPIT_WRITE_ACTIONS,
                                                  write))
    if goto is not None:
        insts.append(parser.OFPInstructionGotoTable(goto))
    return parser.OFPFlowMod(None, table_id=table_id, priority=priority,
                             command=command,
                             match=parser.OFPMatch(**(match or {})),
                             instructions=insts, **kw)


def delete(match=None, table_id=ofp.OFPTT_ALL, strict=False, **kw):
    kw.setdefault('out_port', ofp.OFPP_ANY)
    kw.setdefault('out_group', ofp.OFPG_ANY)
    return parser.OFPFlowMod(
        None, table_id=table_id,
        command=ofp.OFPFC_DELETE_STRICT if strict else ofp.OFPFC_DELETE,
        match=parser.OFPMatch(**(match or {})), **kw)


def out(port):
    return parser.OFPActionOutput(port)


def ports_of(outputs):
    return [p for p, _ in outputs]


@pytest.fixture
def sw():
    return FakeSwitch(n_tables=4, ports=[1, 2, 3, 4])


def test_ipv4_mask_really_masks(sw):
    sw.apply(flow(dict(IPV4_TCP, ipv4_src=('10.0.1.0', '255.255.255.0')),
                  [out(3)]))
    assert ports_of(sw.send(tcp('10.0.1.5', VIP, 40000, 80))) == [3]
    assert ports_of(sw.send(tcp('10.0.1.200', VIP, 40001, 80))) == [3]
    assert sw.send(tcp('10.0.2.5', VIP, 40000, 80)) == [], sw.last_trace
    assert sw.flows()[0].packet_count == 2


def test_mac_metadata_and_ipv6_masks(sw):
    sw.apply(flow({'eth_dst': ('02:00:00:00:00:00', 'ff:ff:ff:00:00:00')},
                  [out(2)], priority=10))
    sw.apply(flow(dict(eth_type=0x86dd,
                       ipv6_src=('2001:db8::', 'ffff:ffff::')), [out(3)],
                  priority=20))
    assert ports_of(sw.send(udp('10.0.0.1', VIP, 1, 2,
                                eth_dst='02:00:00:aa:bb:cc'))) == [2]
    assert sw.send(udp('10.0.0.1', VIP, 1, 2, eth_dst='02:00:01:aa:bb:cc')) == []
    assert ports_of(sw.send(tcp('2001:db8:1::5', '2001:db8::100', 1, 80))) == [3]
    # metadata written in table 0 and matched under a mask in table 1
    sw.apply(parser.OFPFlowMod(
        None, table_id=0, priority=30, match=parser.OFPMatch(in_port=4),
        instructions=[parser.OFPInstructionWriteMetadata(0x1234, 0xff00),
                      parser.OFPInstructionGotoTable(1)]))
    sw.apply(flow({'metadata': (0x1200, 0xff00)}, [out(1)], table_id=1))
    assert ports_of(sw.send(tcp('10.0.0.1', VIP, 1, 80, in_port=4))) == [1]


def test_highest_priority_wins_and_ties_take_the_earliest(sw):
    sw.apply(flow(dict(IPV4_TCP, tcp_dst=80), [out(2)], priority=100))
    sw.apply(flow(dict(IPV4_TCP, ipv4_dst=VIP), [out(3)], priority=200))
    sw.apply(flow({}, [out(4)], priority=0))
    assert ports_of(sw.send(tcp('10.0.1.5', VIP, 1, 80))) == [3]
    assert ports_of(sw.send(tcp('10.0.1.5', '10.0.0.7', 1, 80))) == [2]
    assert ports_of(sw.send(tcp('10.0.1.5', '10.0.0.7', 1, 22))) == [4]
    # a priority-300 flow with the same fields as the tcp_dst=80 one must
    # not lift that flow above the priority-200 one
    sw.apply(flow(dict(IPV4_TCP, tcp_dst=443), [out(1)], priority=300))
    assert ports_of(sw.send(tcp('10.0.1.5', VIP, 1, 80))) == [3]
    assert ports_of(sw.send(tcp('10.0.1.5', VIP, 1, 443, in_port=2))) == [1]
    assert not sw.ambiguities
    # Equal priorities: OpenFlow leaves it undefined; the fake takes the
    # earliest installed and records the ambiguity.
    sw.apply(flow(dict(IPV4_TCP, tcp_src=5), [out(1)], priority=100))
    assert ports_of(sw.send(tcp('10.0.1.5', '10.0.0.7', 5, 80, in_port=4))) == [2]
    assert len(sw.ambiguities) == 1


def test_add_identical_replaces_and_keeps_counters(sw):
    sw.apply(flow(dict(IPV4_TCP, tcp_dst=80), [out(2)], cookie=1))
    sw.send(tcp('10.0.1.5', VIP, 1, 80))
    sw.apply(flow(dict(IPV4_TCP, tcp_dst=80), [out(3)], cookie=2))
    (f,) = sw.flows()
    assert (f.cookie, f.packet_count) == (2, 1)
    assert ports_of(sw.send(tcp('10.0.1.5', VIP, 1, 80))) == [3]
    sw.apply(flow(dict(IPV4_TCP, tcp_dst=80), [out(3)],
                  flags=ofp.OFPFF_RESET_COUNTS))
    assert sw.flows()[0].packet_count == 0


def test_check_overlap_is_an_error(sw):
    sw.apply(flow(dict(IPV4_TCP, tcp_dst=80), [out(2)]))
    with pytest.raises(FakeSwitchError) as e:
        sw.apply(flow(dict(IPV4_TCP, ipv4_dst=VIP), [out(3)],
                      flags=ofp.OFPFF_CHECK_OVERLAP))
    assert e.value.code_name == 'OFPFMFC_OVERLAP'
    sw.apply(flow(dict(IPV4_TCP, ipv4_dst=VIP), [out(3)], priority=101,
                  flags=ofp.OFPFF_CHECK_OVERLAP))
    assert len(sw.flows()) == 2


def test_goto_write_clear_actions_and_action_set_order(sw):
    # table 0 writes output:2 and a rewrite, table 1 replaces the output,
    # table 2 clears everything and writes its own: only table 2's set runs.
    sw.apply(flow({'in_port': 1}, goto=1,
                  write=[out(2), parser.OFPActionSetField(eth_dst='02:00:00:00:00:22')]))
    sw.apply(flow({'in_port': 1}, table_id=1, goto=2, write=[out(3)]))
    outputs = sw.send(tcp('10.0.1.5', VIP, 1, 80))
    assert outputs == [] and 'no match -> drop' in '\n'.join(sw.last_trace)
    sw.apply(flow({}, table_id=2, priority=0))   # table-miss: run the set
    (port, pkt), = sw.send(tcp('10.0.1.5', VIP, 1, 80))
    assert port == 3 and pkt['eth_dst'] == '02:00:00:00:00:22'
    sw.apply(flow({}, table_id=2, priority=0, clear=True, write=[out(4)]))
    (port, pkt), = sw.send(tcp('10.0.1.5', VIP, 1, 80))
    assert port == 4 and pkt['eth_dst'] == '02:00:00:00:00:fe'
    # apply-actions happen before the action set, set_field before output
    sw.apply(flow({'in_port': 2}, [out(1)], write=[
        out(4), parser.OFPActionSetField(eth_src='02:00:00:00:00:99')]))
    res = sw.send(tcp('10.0.1.5', VIP, 1, 80, in_port=2))
    assert [(p, o['eth_src']) for p, o in res] == [
        (1, '02:00:00:00:00:01'), (4, '02:00:00:00:00:99')]


def test_goto_backwards_or_past_the_last_table_is_rejected(sw):
    with pytest.raises(FakeSwitchError, match='later table'):
        sw.apply(flow({}, table_id=2, goto=1))
    with pytest.raises(FakeSwitchError, match='tables 0..3'):
        sw.apply(flow({}, table_id=2, goto=4))
    with pytest.raises(FakeSwitchError, match='OFPFMFC_BAD_TABLE_ID'):
        sw.apply(flow({}, table_id=4))
    assert sw.flows() == []


def test_set_field_rewrite_is_visible_in_the_output_packet(sw):
    sw.apply(flow(dict(IPV4_TCP, ipv4_dst=VIP, tcp_dst=80), [
        parser.OFPActionSetField(ipv4_dst='10.0.1.2'),
        parser.OFPActionSetField(eth_dst='02:00:00:00:01:02'),
        parser.OFPActionSetField(tcp_dst=8080),
        parser.OFPActionDecNwTtl(),
        out(3)]))
    ((port, pkt),) = sw.send(tcp('10.0.1.5', VIP, 40000, 80))
    assert port == 3
    assert (pkt['ipv4_dst'], pkt['eth_dst'], pkt['tcp_dst'], pkt['nw_ttl'],
            pkt['ipv4_src']) == ('10.0.1.2', '02:00:00:00:01:02', 8080, 63,
                                 '10.0.1.5')


def test_tunnel_fields_and_nicira_reg_load_move_resubmit(sw):
    sw.apply(flow(dict(IPV4_TCP, ipv4_dst=VIP), [
        parser.NXActionRegLoad(ofs_nbits=nicira_ext.ofs_nbits(0, 31),
                               dst='reg0', value=3),
        parser.NXActionRegMove(src_field='reg0', dst_field='tunnel_id',
                               n_bits=32),
        parser.NXActionResubmitTable(table_id=2),
        out(4)]))
    sw.apply(flow({'reg0': 3}, [
        parser.OFPActionSetField(tun_ipv4_dst='192.168.0.3')], table_id=2))
    ((port, pkt),) = sw.send(tcp('10.0.1.5', VIP, 1, 80))
    assert (port, pkt['tun_ipv4_dst'], pkt['tunnel_id']) == (4, '192.168.0.3', 3)
    assert 'reg0' not in pkt


def test_cookie_mask_delete_removes_one_cookie_space(sw):
    for svc in (1, 2):
        for server in (1, 2, 3):
            sw.apply(flow(dict(IPV4_TCP, tcp_src=svc * 10 + server), [out(2)],
                          cookie=svc << 32 | server))
    sw.apply(delete(cookie=2 << 32, cookie_mask=0xffffffff00000000))
    assert sorted(f.cookie >> 32 for f in sw.flows()) == [1, 1, 1]
    assert len(sw.flows(cookie=1 << 32, cookie_mask=0xffffffff00000000)) == 3


def test_delete_with_ryu_default_out_port_deletes_nothing(sw):
    """Ryu's OFPFlowMod defaults out_port=0/out_group=0; OVS then keeps
    only flows that output to port 0: none.  Pass OFPP_ANY/OFPG_ANY."""
    sw.apply(flow(dict(IPV4_TCP, tcp_dst=80), [out(2)]))
    sw.apply(parser.OFPFlowMod(None, table_id=ofp.OFPTT_ALL,
                               command=ofp.OFPFC_DELETE))
    assert len(sw.flows()) == 1
    sw.apply(delete(out_port=3))
    assert len(sw.flows()) == 1
    sw.apply(delete(out_port=2))
    assert sw.flows() == []


def test_non_strict_delete_takes_more_specific_flows_strict_takes_one(sw):
    sw.apply(flow(dict(IPV4_TCP, ipv4_dst=VIP), [out(2)], priority=10))
    sw.apply(flow(dict(IPV4_TCP, ipv4_dst=VIP, tcp_dst=80), [out(2)]))
    sw.apply(flow(dict(IPV4_TCP, ipv4_dst='10.0.0.7'), [out(2)]))
    sw.apply(delete(dict(IPV4_TCP, ipv4_dst=VIP), table_id=0, strict=True,
                    priority=100))
    assert len(sw.flows()) == 3          # strict: priority 100 has tcp_dst too
    sw.apply(delete(dict(IPV4_TCP, ipv4_dst=VIP)))
    assert [f.match['ipv4_dst'] for f in sw.flows()] == ['10.0.0.7']


def test_modify_replaces_instructions_keeps_cookie_and_counters(sw):
    sw.apply(flow(dict(IPV4_TCP, tcp_dst=80), [out(2)], cookie=7,
                  idle_timeout=30))
    sw.send(tcp('10.0.1.5', VIP, 1, 80))
    sw.apply(flow(dict(IPV4_TCP), [out(3)], command=ofp.OFPFC_MODIFY,
                  cookie=9))
    (f,) = sw.flows()
    assert (f.cookie, f.idle_timeout, f.packet_count) == (7, 30, 1)
    assert ports_of(sw.send(tcp('10.0.1.5', VIP, 1, 80))) == [3]


def test_idle_timeout_refreshed_by_traffic_then_expires(sw):
    sw.apply(flow(dict(IPV4_TCP, ipv4_src='10.0.1.5'), [out(2)], cookie=0x42,
                  idle_timeout=10, flags=ofp.OFPFF_SEND_FLOW_REM))
    for _ in range(3):
        sw.advance(9)
        assert ports_of(sw.send(tcp('10.0.1.5', VIP, 1, 80, len=100))) == [2]
    sw.advance(9.5)
    assert len(sw.flows()) == 1 and sw.flow_removed == []
    sw.advance(0.5)
    assert sw.flows() == []
    (rec,) = sw.flow_removed
    assert rec.reason == ofp.OFPRR_IDLE_TIMEOUT
    assert (rec.cookie, rec.packet_count, rec.byte_count) == (0x42, 3, 300)
    assert rec.duration_sec == 37 and rec.match['ipv4_src'] == '10.0.1.5'
    assert sw.send(tcp('10.0.1.5', VIP, 1, 80)) == []
    msg = sw.flow_removed_message(rec)
    assert msg.reason == ofp.OFPRR_IDLE_TIMEOUT
    assert msg.match['ipv4_src'] == '10.0.1.5' and msg.packet_count == 3


def test_hard_timeout_ignores_traffic_and_timestamps_the_removal(sw):
    sw.apply(flow({'in_port': 1}, [out(2)], hard_timeout=5, idle_timeout=3,
                  flags=ofp.OFPFF_SEND_FLOW_REM))
    sw.apply(flow({'in_port': 2}, [out(1)], hard_timeout=5))
    for _ in range(4):
        sw.advance(1)
        sw.send(tcp('10.0.1.5', VIP, 1, 80))
    sw.advance(100)
    assert sw.flows() == []
    (rec,) = sw.flow_removed          # the other flow had no SEND_FLOW_REM
    assert rec.reason == ofp.OFPRR_HARD_TIMEOUT and rec.duration == 5


def test_fin_timeout_shortens_life_after_a_fin(sw):
    sw.apply(flow(dict(IPV4_TCP, ipv4_src='10.0.1.5', tcp_src=40000), [
        parser.NXActionFinTimeout(fin_idle_timeout=2, fin_hard_timeout=0),
        out(3)], idle_timeout=300, flags=ofp.OFPFF_SEND_FLOW_REM))
    sw.send(tcp('10.0.1.5', VIP, 40000, 80, flags='A'))
    sw.advance(50)
    assert sw.flows()[0].idle_timeout == 300
    sw.send(tcp('10.0.1.5', VIP, 40000, 80, flags='FA'))
    assert sw.flows()[0].idle_timeout == 2
    sw.advance(1)
    assert len(sw.flows()) == 1
    sw.advance(1)
    assert sw.flows() == []
    assert sw.flow_removed[0].reason == ofp.OFPRR_IDLE_TIMEOUT
    assert sw.flow_removed[0].idle_timeout == 2


def test_match_prerequisites_are_enforced(sw):
    with pytest.raises(FakeSwitchError) as e:
        sw.apply(flow({'ipv4_dst': VIP}, [out(2)]))
    assert e.value.code_name == 'OFPBMC_BAD_PREREQ'
    assert 'eth_type=0x0800' in str(e.value)
    with pytest.raises(FakeSwitchError, match='ip_proto=6'):
        sw.apply(flow({'eth_type': 0x0800, 'tcp_dst': 80}, [out(2)]))
    with pytest.raises(FakeSwitchError, match='ip_proto=6'):
        sw.apply(flow({'eth_type': 0x0800, 'ip_proto': 17,
                       'tcp_flags': (2, 2)}, [out(2)]))
    with pytest.raises(FakeSwitchError, match='cannot be masked'):
        sw.apply(flow({'in_port': (1, 1)}, [out(2)]))
    assert sw.flows() == []


def test_set_field_prerequisites_are_enforced(sw):
    with pytest.raises(FakeSwitchError) as e:
        sw.apply(flow({'in_port': 1},
                      [parser.OFPActionSetField(ipv4_dst='10.0.1.2'), out(2)]))
    assert e.value.code_name == 'OFPBAC_MATCH_INCONSISTENT'
    with pytest.raises(FakeSwitchError, match='ip_proto=6'):
        sw.apply(flow({'eth_type': 0x0800},
                      write=[parser.OFPActionSetField(tcp_dst=8080)]))
    with pytest.raises(FakeSwitchError, match='read-only'):
        sw.apply(flow({}, [parser.OFPActionSetField(eth_type=0x0806)]))
    with pytest.raises(FakeSwitchError, match='VLAN'):
        sw.apply(flow({}, [parser.OFPActionSetField(vlan_vid=0x1000 | 5)]))
    sw.apply(flow({}, [parser.OFPActionPushVlan(),
                       parser.OFPActionSetField(vlan_vid=0x1000 | 5), out(2)]))
    ((port, pkt),) = sw.send(arp_request('10.0.0.1', VIP))
    assert (port, pkt['vlan_vid']) == (2, 5)
    with pytest.raises(FakeSwitchError, match='OFPBAC_BAD_OUT_GROUP'):
        sw.apply(flow({}, [parser.OFPActionGroup(9)]))


def test_values_ryu_would_truncate_are_caught_on_the_wire(sw):
    # (OFPMatch(tcp_dst=70000) is already truncated to 4464 by Ryu's
    # OFPMatch constructor, before any switch can see it.)
    with pytest.raises(FakeSwitchError, match='does not fit in 16 bits'):
        sw.apply(flow(dict(IPV4_TCP), [parser.OFPActionSetField(tcp_dst=-1)]))
    with pytest.raises(FakeSwitchError, match='RYU_ENCODING|cannot serialize'):
        sw.apply(flow({'in_port': 1}, [out('2')]))


def test_packet_in_on_table_miss_to_controller(sw):
    sw.apply(flow({}, [out(ofp.OFPP_CONTROLLER)], priority=0, cookie=0x99))
    sw.apply(flow(dict(IPV4_TCP, tcp_dst=22), [out(ofp.OFPP_CONTROLLER)],
                  table_id=0))
    assert sw.send(tcp('10.0.1.5', VIP, 40000, 80, in_port=2)) == []
    assert sw.send(tcp('10.0.1.5', VIP, 40000, 22, in_port=2)) == []
    miss, action = sw.take_packet_ins()
    assert (miss.reason, miss.table_id, miss.cookie) == (ofp.OFPR_NO_MATCH, 0, 0x99)
    assert miss.match == {'in_port': 2} and miss.data['tcp_dst'] == 80
    assert action.reason == ofp.OFPR_ACTION
    assert packet_from_bytes(miss.raw)['ipv4_dst'] == VIP
    msg = sw.packet_in_message(miss)
    assert msg.match['in_port'] == 2 and msg.data == miss.raw
    assert sw.packet_ins == []


def test_no_match_without_table_miss_flow_drops(sw):
    assert sw.send(tcp('10.0.1.5', VIP, 1, 80)) == []
    assert sw.packet_ins == []
    assert any('no match' in line for line in sw.trace(tcp('10.0.1.5', VIP, 1, 80)))


def test_packet_out_to_table_runs_the_pipeline(sw):
    sw.apply(flow(dict(IPV4_TCP, ipv4_dst=VIP), [
        parser.OFPActionSetField(ipv4_dst='10.0.1.3'), out(3)]))
    frame = packet_to_bytes(tcp('10.0.1.5', VIP, 40000, 80))
    res = sw.apply(parser.OFPPacketOut(
        None, buffer_id=ofp.OFP_NO_BUFFER, in_port=1,
        actions=[out(ofp.OFPP_TABLE)], data=frame))
    assert [(p, o['ipv4_dst']) for p, o in res] == [(3, '10.0.1.3')]
    assert sw.flows()[0].packet_count == 1
    res = sw.apply(parser.OFPPacketOut(
        None, buffer_id=ofp.OFP_NO_BUFFER, in_port=ofp.OFPP_CONTROLLER,
        actions=[out(2), out(ofp.OFPP_FLOOD)], data=frame))
    assert ports_of(res) == [2, 1, 2, 3, 4]
    with pytest.raises(FakeSwitchError, match='only valid in a PacketOut'):
        sw.apply(flow({}, [out(ofp.OFPP_TABLE)]))


def test_groups_select_all_indirect_and_delete(sw):
    sw = FakeSwitch(n_tables=2, ports=[1, 2, 3, 4], group_select='first')
    bucket = parser.OFPBucket
    sw.apply(parser.OFPGroupMod(None, ofp.OFPGC_ADD, ofp.OFPGT_SELECT, 1, [
        bucket(weight=0, actions=[out(2)]),
        bucket(weight=1, actions=[out(3)]),
        bucket(weight=1, actions=[out(4)])]))
    sw.apply(parser.OFPGroupMod(None, ofp.OFPGC_ADD, ofp.OFPGT_ALL, 2, [
        bucket(actions=[parser.OFPActionSetField(eth_dst='02:00:00:00:00:02'),
                        out(2)]),
        bucket(actions=[out(3)])]))
    sw.apply(flow({'in_port': 1}, [parser.OFPActionGroup(1)]))
    sw.apply(flow({'in_port': 2}, [parser.OFPActionGroup(2), out(4)]))
    assert ports_of(sw.send(tcp('10.0.1.5', VIP, 1, 80))) == [3]
    res = sw.send(tcp('10.0.1.5', VIP, 1, 80, in_port=2))
    # bucket 0 outputs to the input port: skipped; the group's rewrite does
    # not leak into the packet after the group.
    assert [(p, o['eth_dst']) for p, o in res] == [
        (3, '02:00:00:00:00:fe'), (4, '02:00:00:00:00:fe')]
    with pytest.raises(FakeSwitchError, match='GROUP_EXISTS'):
        sw.apply(parser.OFPGroupMod(None, ofp.OFPGC_ADD, ofp.OFPGT_ALL, 2, []))
    sw.apply(parser.OFPGroupMod(None, ofp.OFPGC_DELETE, ofp.OFPGT_ALL, 1))
    assert [f.match for f in sw.flows()] == [{'in_port': 2}]


def test_select_group_hash_is_sticky_per_connection_and_weighted():
    sw = FakeSwitch(n_tables=1, ports=[1, 2, 3])
    sw.apply(parser.OFPGroupMod(None, ofp.OFPGC_ADD, ofp.OFPGT_SELECT, 1, [
        parser.OFPBucket(weight=3, actions=[out(2)]),
        parser.OFPBucket(weight=1, actions=[out(3)])]))
    sw.apply(flow({}, [parser.OFPActionGroup(1)], priority=0))
    counts = {2: 0, 3: 0}
    for i in range(400):
        pkt = tcp('10.0.%d.%d' % (i // 200, i % 200 + 1), VIP, 30000 + i, 80)
        (p,) = ports_of(sw.send(pkt))
        assert ports_of(sw.send(dict(pkt, tcp_flags=0x10))) == [p]
        counts[p] += 1
    assert 240 < counts[2] < 360, counts


def test_learn_installs_a_return_flow(sw):
    learn = parser.NXActionLearn(
        table_id=1, priority=50, idle_timeout=20, specs=[
            parser.NXFlowSpecMatch(src=0x0800, dst=('eth_type', 0), n_bits=16),
            parser.NXFlowSpecMatch(src=6, dst=('ip_proto', 0), n_bits=8),
            parser.NXFlowSpecMatch(src=('ipv4_src', 0), dst=('ipv4_dst', 0),
                                   n_bits=32),
            parser.NXFlowSpecMatch(src=('tcp_src', 0), dst=('tcp_dst', 0),
                                   n_bits=16),
            parser.NXFlowSpecOutput(src=('in_port', 0), n_bits=32)])
    sw.apply(flow(dict(IPV4_TCP, ipv4_dst=VIP), [learn, out(3)]))
    sw.send(tcp('10.0.1.5', VIP, 40000, 80, in_port=1))
    (f,) = sw.flows(table_id=1)
    assert f.match == {'eth_type': 0x0800, 'ip_proto': 6,
                       'ipv4_dst': '10.0.1.5', 'tcp_dst': 40000}
    assert f.idle_timeout == 20
    reply = tcp(VIP, '10.0.1.5', 80, 40000, flags='SA', in_port=3)
    sw.apply(flow({'in_port': 3}, priority=10, goto=1))
    assert ports_of(sw.send(reply)) == [1]


def test_shared_clock_expires_flows_on_all_switches():
    clock = FakeClock()
    a, b = FakeSwitch(dpid=1, clock=clock), FakeSwitch(dpid=2, clock=clock)
    for s in (a, b):
        s.apply(flow({}, [out(2)], hard_timeout=10))
    clock.advance(10)
    assert a.flows() == [] and b.flows() == []


def test_trace_and_dump_are_readable_and_side_effect_free(sw):
    sw.apply(flow(dict(IPV4_TCP, ipv4_dst=VIP), [out(3)], cookie=0x5,
                  goto=1))
    sw.apply(flow({}, table_id=1, priority=0))
    lines = sw.trace(tcp('10.0.1.5', VIP, 1, 80))
    text = '\n'.join(lines)
    assert 'table 0:' in text and 'table 1:' in text and 'port 3' in text
    assert sw.flows()[0].packet_count == 0
    dump = sw.dump()
    assert 'cookie=0x5' in dump and 'ipv4_dst=10.0.0.100' in dump
    assert 'goto_table:1' in dump


def test_bytes_round_trip_and_datapath_send_msg(sw):
    pkt = tcp('10.0.1.5', VIP, 40000, 80, flags='SA', payload=b'hello')
    back = packet_from_bytes(packet_to_bytes(pkt), in_port=1)
    for key in ('ipv4_src', 'ipv4_dst', 'tcp_src', 'tcp_dst', 'tcp_flags',
                'eth_src', 'eth_dst', 'payload'):
        assert back[key] == pkt[key], key
    dp = sw.datapath
    dp.send_msg(dp.ofproto_parser.OFPFlowMod(
        dp, match=dp.ofproto_parser.OFPMatch(in_port=1),
        instructions=[dp.ofproto_parser.OFPInstructionActions(
            ofp.OFPIT_APPLY_ACTIONS, [out(2)])]))
    assert ports_of(sw.send(packet_to_bytes(pkt), in_port=1)) == [2]


def test_unknown_packet_fields_and_unmodelled_actions_are_loud(sw):
    with pytest.raises(ValueError, match='ip_dst'):
        sw.send({'in_port': 1, 'ip_dst': VIP})
    with pytest.raises(FakeSwitchUnsupported):
        sw.apply(flow({}, [parser.NXActionCT(
            flags=0, zone_src='', zone_ofs_nbits=0, recirc_table=255,
            alg=0, actions=[])]))


def test_ip_fragments_match_ip_frag_and_only_a_first_fragment_has_ports(sw):
    sw.apply(flow(dict(eth_type=0x0800, ip_frag=(1, 1)), [out(3)], priority=200))
    sw.apply(flow(dict(eth_type=0x0800, ip_proto=17, udp_dst=53), [out(4)]))
    base = dict(in_port=1, eth_src='02:00:00:00:00:01', eth_dst='02:00:00:00:00:02',
                eth_type=0x0800, ip_proto=17, ipv4_src='10.0.0.1', ipv4_dst=VIP,
                ip_id=9, payload=b'x' * 40)
    first = dict(base, ip_frag=1, udp_src=5353, udp_dst=53)
    later = dict(base, ip_frag=3, frag_offset=1480)
    assert [p for p, _ in sw.send(first)] == [3]
    assert [p for p, _ in sw.send(later)] == [3]
    assert [p for p, _ in sw.send(udp('10.0.0.1', VIP, 5353, 53))] == [4]
    back = packet_from_bytes(packet_to_bytes(later))
    assert (back['ip_frag'], back['frag_offset'], back['frag_more']) == (3, 1480, False)
    assert 'udp_dst' not in back and back['payload'] == b'x' * 40
    assert packet_from_bytes(packet_to_bytes(first))['udp_dst'] == 53
