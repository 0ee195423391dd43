"""The declared pipeline, its checks, the cookie layout and the packed encodings."""

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
