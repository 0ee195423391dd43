"""The declared pipeline, its checks, the cookie layout and the packed encodings."""

import struct

import pytest
from ryu.ofproto import ofproto_v1_3 as ofp
from ryu.ofproto import ofproto_v1_3_parser as parser

from lvs_app import ids
from lvs_app import ofmsg
from lvs_app import pipeline as pl

def wire(obj):
    buf = bytearray()
    length = obj.serialize(buf, 0)
    return bytes(buf), length

@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_five_tuple_match_is_byte_identical_to_ryus(proto):
    packed = ofmsg.five_tuple_match(proto, 0x0A000001, 40000, 0xC0A80064, 65535)
    ryu = parser.OFPMatch(**{"eth_type": 0x800, "ip_proto": 6 if proto == "tcp" else 17,
                             "ipv4_src": "10.0.0.1", f"{proto}_src": 40000,
                             "ipv4_dst": "192.168.0.100", f"{proto}_dst": 65535})
    assert wire(packed) == wire(ryu)
    assert packed.length == ryu.length
    assert dict(packed.items()) == dict(ryu.items())

FAST_SHAPES = [
    {"eth_type": 0x800, "ip_proto": 6, "ipv4_src": "10.0.0.1", "ipv4_dst": "10.0.0.100",
     "tcp_dst": 80},
    {"eth_type": 0x800, "ip_proto": 6, "ipv4_src": ("10.0.1.0", "255.255.255.0"),
     "ipv4_dst": "10.0.0.100", "tcp_dst": 80, "tcp_flags": (2, 18)},
    {"eth_type": 0x800, "ip_proto": 17, "ipv4_src": "10.0.0.1", "ipv4_dst": "10.0.0.100",
     "udp_dst": (1024, 0xFC00)},
    {"eth_type": 0x800, "ip_proto": 6, "ipv4_src": "10.0.0.11", "tcp_src": 8080,
     "ipv4_dst": ("10.0.0.0", "255.0.0.0")},
    {"eth_type": 0x86DD, "ip_proto": 6, "ipv6_src": ("fd00::", "ffff:ffff:ffff:ffff::"),
     "ipv6_dst": "fd00::10:0:0:100", "tcp_dst": 443, "tcp_flags": (2, 18)},
    {"eth_type": 0x800, "ip_proto": 6, "ipv4_src": "10.0.0.1", "ipv4_dst": "10.0.0.100"},
]


@pytest.mark.parametrize("fields", FAST_SHAPES)
def test_fast_match_is_byte_identical_to_ryus(fields):
    for _ in range(2):                       # the first learns the shape, the second packs
        packed = ofmsg.fast_match(**fields)
        ryu = parser.OFPMatch(**fields)
        assert wire(packed) == wire(ryu)
        assert packed.length == ryu.length
        assert packed.items() == ryu.items()
        assert ofmsg.match_key(packed) == ofmsg.match_key(ryu)
    other = dict(fields)
    if "tcp_dst" in other and isinstance(other["tcp_dst"], int):
        other["tcp_dst"] = 8443                # same shape, another value
        assert wire(ofmsg.fast_match(**other)) == wire(parser.OFPMatch(**other))


def test_frozen_parts_replay_the_same_bytes():
    inst = parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, [
        parser.OFPActionSetField(ipv4_dst="10.0.0.11"), parser.OFPActionOutput(3)])
    expected = wire(parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, [
        parser.OFPActionSetField(ipv4_dst="10.0.0.11"), parser.OFPActionOutput(3)]))[0]
    frozen = ofmsg.frozen(inst)
    assert isinstance(frozen, parser.OFPInstructionActions)
    for _ in range(2):                        # first encodes, second replays
        buf = bytearray(b"xx")
        frozen.serialize(buf, 2)
        assert bytes(buf[2:]) == expected and frozen.len == len(expected)

class _Datapath:
    ofproto, ofproto_parser = ofp, parser


@pytest.mark.parametrize("in_port, port", [(ofp.OFPP_CONTROLLER, 3), (ofp.OFPP_CONTROLLER,
                                            ofp.OFPP_FLOOD), (7, 65000), (1, ofp.OFPP_IN_PORT)])
@pytest.mark.parametrize("data", [b"", b"\x02" * 54, bytes(range(256)) * 6])
def test_packed_packet_out_is_byte_identical_to_ryus(in_port, port, data):
    ryu = ofmsg.packet_out(in_port, [ofmsg.output(port)], data)
    packed = ofmsg.packet_out_to(in_port, port, data)
    assert isinstance(packed, parser.OFPPacketOut)
    for msg, xid in ((ryu, 0x1234ABCD), (packed, 0x1234ABCD)):
        msg.datapath, msg.xid = _Datapath(), xid       # what the send path sets
        msg.serialize()
    assert bytes(packed.buf) == bytes(ryu.buf)
    assert (packed.version, packed.msg_type, packed.msg_len, packed.xid) == (
        ryu.version, ryu.msg_type, ryu.msg_len, ryu.xid)
    # readers see the PacketOut Ryu would have built
    assert (packed.buffer_id, packed.in_port, packed.data) == (ryu.buffer_id, ryu.in_port, data)
    assert [(a.port, a.max_len) for a in packed.actions] == [(port, ofp.OFPCML_MAX)]


def test_packed_packet_out_without_an_xid_is_sent_as_zero():
    packed = ofmsg.packet_out_to(ofp.OFPP_CONTROLLER, 2, b"frame")
    packed.serialize()
    assert packed.xid == 0 and struct.unpack_from("!I", packed.buf, 4) == (0,)


def test_cookie_layout_round_trips_and_masks_select():
    cookie = ids.Cookie(ids.KIND_CONN, 5, 7)
    assert ids.Cookie.parse(cookie.value) == cookie
    assert ids.Cookie.parse(0x1234) is None
    value, mask = ids.cookie_mask(service=5)
    assert cookie.value & mask == value
    assert ids.Cookie(ids.KIND_TEMPLATE, 6, 7).value & mask != value
    value, mask = ids.cookie_mask(service=5, server=7)
    assert cookie.value & mask == value and ids.Cookie(ids.KIND_CONN, 5, 8).value & mask != value

def _mod(table, match, inst, cookie=ids.Cookie(ids.KIND_BASE).value):
    return ofmsg.flow_mod(table, pl.PRIO_MISS, match, inst, cookie)

@pytest.mark.parametrize("mod, message", [
    (_mod(pl.SERVICE, parser.OFPMatch(), [parser.OFPInstructionGotoTable(pl.CLASSIFY)]),
     "table service may not go to table 0"),
    (_mod(pl.FORWARD, parser.OFPMatch(ipv4_dst="10.0.0.1", eth_type=0x800), []),
     "table forward does not match on ipv4_dst"),
    (_mod(7, parser.OFPMatch(), []), "table 7 is not in the pipeline"),
    (_mod(pl.SERVICE, parser.OFPMatch(), [], cookie=0x1), "table service: cookie 0x1 is not in"),
])
def test_check_refuses_flows_that_break_the_pipeline(mod, message):
    with pytest.raises(pl.PipelineError) as info:
        pl.check(mod)
    assert str(info.value).startswith(message)

def test_check_accepts_the_declared_jumps():
    pl.check(_mod(pl.CLASSIFY, parser.OFPMatch(), [parser.OFPInstructionGotoTable(pl.SERVICE)]))
    pl.check(_mod(pl.REVERSE, parser.OFPMatch(), [parser.OFPInstructionGotoTable(pl.FORWARD)]))


# -- the declaration refuses a wrong flow when it is built: one test per rule ------

SERVICE, CLASSIFY, FORWARD, REVERSE = (pl.TABLES[pl.SERVICE], pl.TABLES[pl.CLASSIFY],
                                       pl.TABLES[pl.FORWARD], pl.TABLES[pl.REVERSE])
CONN = ids.Cookie(ids.KIND_CONN, 1, 1).value


def _out(port=1):
    return ofmsg.apply([ofmsg.output(port)])


@pytest.mark.parametrize("build, message", [
    (lambda: SERVICE.flow(pl.PRIO_CONN, parser.OFPMatch(), _out(), cookie=0x1),
     "table service: cookie 0x1 is not in the app's cookie layout"),
    (lambda: FORWARD.flow(pl.PRIO_L2, parser.OFPMatch(), _out(), CONN),
     "table forward does not hold conn flows"),
    (lambda: SERVICE.flow(7, parser.OFPMatch(), _out(), CONN),
     "table service has no priority 7"),
    (lambda: FORWARD.flow(pl.PRIO_L2, parser.OFPMatch(eth_type=0x800, ipv4_dst="10.0.0.1"),
                          _out(), ids.Cookie(ids.KIND_L2).value),
     "table forward does not match on ipv4_dst"),
    (lambda: CLASSIFY.flow(pl.PRIO_VIP, parser.OFPMatch(eth_type=0x800,
                                                        ipv4_dst=("10.0.0.0", "255.0.0.0")),
                           [ofmsg.goto(pl.SERVICE)], ids.Cookie(ids.KIND_VIP).value),
     "table classify may not mask ipv4_dst"),
    (lambda: REVERSE.flow(pl.PRIO_CONN, parser.OFPMatch(), ofmsg.apply(
        [ofmsg.set_field(ipv4_dst="10.0.0.1")]), ids.Cookie(ids.KIND_REVERSE, 1, 1).value),
     "table reverse-nat may not set ipv4_dst"),
    (lambda: SERVICE.flow(pl.PRIO_CONN, parser.OFPMatch(), [ofmsg.goto(pl.REVERSE)], CONN),
     "table service may not go to table 2"),
    (lambda: SERVICE.delete(ids.cookie_mask(ids.KIND_CONN), parser.OFPMatch(), priority=5),
     "table service has no priority 5"),
    (lambda: FORWARD.modify(ids.cookie_mask(ids.KIND_L2), [ofmsg.goto(pl.SERVICE)]),
     "table forward may not go to table 1"),
])
def test_a_table_refuses_a_flow_that_breaks_its_declaration(build, message):
    with pytest.raises(pl.PipelineError) as info:
        build()
    assert str(info.value) == message


def test_only_a_delete_may_address_all_tables():
    mod = ofmsg.flow_mod(ofmsg.ALL_TABLES, 0, parser.OFPMatch(), [],
                         ids.Cookie(ids.KIND_BASE).value)
    with pytest.raises(pl.PipelineError, match="only a delete may address all tables"):
        pl.check(mod)
    pl.check(ofmsg.flow_delete(ids.cookie_mask()))


def test_base_flows_come_from_the_declaration():
    flows = pl.base_flows()
    misses = {f.table_id: f for f in flows if f.priority == pl.PRIO_MISS}
    assert set(misses) == set(pl.TABLES)
    assert [i.table_id for i in misses[pl.CLASSIFY].instructions] == [pl.REVERSE]
    assert misses[pl.SERVICE].instructions == []                   # drop
    assert misses[pl.FORWARD].instructions[0].actions[0].port == ofmsg.CONTROLLER
    for flow in flows:
        pl.check(flow)


def test_a_checked_cached_instruction_is_not_checked_again_but_not_for_another_table():
    inst = ofmsg.frozen(ofmsg.apply_then_goto([ofmsg.set_field(ipv4_dst="10.0.0.1")],
                                              pl.FORWARD)[0])
    SERVICE.flow(pl.PRIO_CONN, parser.OFPMatch(), [inst], CONN)
    SERVICE.flow(pl.PRIO_CONN, parser.OFPMatch(), [inst], CONN)
    with pytest.raises(pl.PipelineError, match="reverse-nat may not set ipv4_dst"):
        REVERSE.flow(pl.PRIO_CONN, parser.OFPMatch(), [inst],
                     ids.Cookie(ids.KIND_REVERSE, 1, 1).value)
