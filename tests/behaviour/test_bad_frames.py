"""Frames that must not become connections, and MACs that must not move on a say-so."""

import struct

import pytest

from lvs_app import packet as pkt
from tests.behaviour.conftest import VIP, VMAC, mac_of
from tests.fakeswitch import arp_reply, packet_to_bytes, tcp

RS = ("10.0.0.11", "10.0.0.12")


@pytest.fixture
def web(lab):
    lab.lvsadm("-A -t 10.0.0.100:80 -s rr")
    for rs in RS:
        lab.lvsadm(f"-a -t 10.0.0.100:80 -r {rs} -m")
    return lab


@pytest.mark.parametrize("source", ["0.0.0.0", "255.255.255.255", "224.0.0.1", "127.0.0.1",
                                    VIP, "240.0.0.1"])
def test_a_martian_source_makes_no_connection(web, source):
    assert web.server_of(web.syn(source, 40000)) is None
    assert web.director.switches[1].conns == {}
    assert web.director.dropped["martian"] == 1


def frame_with(lab, change):
    """A client SYN to the VIP whose IPv4 header ``change`` edits."""
    raw = bytearray(packet_to_bytes(tcp("10.0.0.1", VIP, 40100, 80, flags="S", in_port=1,
                                        eth_src=mac_of("10.0.0.1"), eth_dst=VMAC)))
    change(raw)
    return bytes(raw)


@pytest.mark.parametrize("change", [
    lambda raw: raw.__setitem__(14, 0x44),                           # IHL 4
    lambda raw: raw.__setitem__(slice(16, 18), struct.pack("!H", 200)),  # longer than the frame
    lambda raw: raw.__setitem__(slice(16, 18), struct.pack("!H", 10)),   # shorter than its header
], ids=["ihl-below-5", "total-length-too-long", "total-length-below-header"])
def test_a_header_that_lies_about_its_lengths_is_dropped(web, change):
    data = frame_with(web, change)
    assert pkt.parse(data) is None
    web.manager.packet_in(1, 1, data, 1)
    assert web.director.switches[1].conns == {} and web.director.dropped["malformed"] == 1


def test_a_packet_in_without_in_port_is_dropped_not_a_traceback(web):
    good = packet_to_bytes(tcp("10.0.0.1", VIP, 40200, 80, flags="S", in_port=1,
                               eth_src=mac_of("10.0.0.1"), eth_dst=VMAC))
    web.manager.packet_in(1, None, good, 1)
    assert web.director.switches[1].conns == {} and web.director.dropped["malformed"] == 1


def ip_int(text):
    return int.from_bytes(bytes(map(int, text.split("."))), "big")


def test_an_arp_reply_does_not_move_a_known_server(web, caplog):
    server = web.connect("10.0.0.1", 40300)
    known = web.director.hosts.macs[ip_int(server)]
    # someone on port 5 claims the server's address
    web.send(arp_reply(server, "10.0.0.1", "02:66:66:66:66:66", mac_of("10.0.0.1"), in_port=5))
    assert web.director.hosts.macs[ip_int(server)] == known
    assert web.director.hosts.refused == 1
    assert "refused" in caplog.text
    # the next connection to that server still reaches it
    port = web.hosts[server]
    out = web.syn("10.0.0.2", 40301)
    if web.server_of(out) == server:
        assert [p for p, _ in out] == [port]


def test_a_server_that_answers_our_probe_from_a_new_mac_is_believed(web):
    server = RS[0]
    ip = ip_int(server)
    web.director.hosts.confirmed[ip] = -1000.0              # stale: the next tick asks again
    web.hosts.pop(server)                                    # the fake host stops answering
    web.advance(1)
    assert ip in web.director.hosts.pending
    web.send(arp_reply(server, "0.0.0.0", "02:77:77:77:77:77", "02:1f:00:00:00:00",
                       in_port=9, eth_dst="02:1f:00:00:00:00"))
    assert web.director.hosts.macs[ip] == bytes.fromhex("027777777777")
