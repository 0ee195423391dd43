"""A scripted OpenFlow 1.3 switch over TCP against ``ryu-manager lvs_app``."""

import socket
import struct
import time

from ryu.ofproto import ofproto_parser
from ryu.ofproto import ofproto_v1_3 as ofp
from ryu.ofproto import ofproto_v1_3_parser as parser

from conftest import wait_until
from lvs_app import packet as pkt
from lvs_app import ids
from lvs_app import pipeline as pl


class _Datapath:
    ofproto = ofp
    ofproto_parser = parser


def _packet_out(raw):
    """Ryu parses only switch-to-controller messages; decode a PacketOut here."""
    buffer_id, in_port, actions_len = struct.unpack_from("!IIH6x", raw, 8)
    offset, actions = 24, []
    while offset < 24 + actions_len:
        action = parser.OFPAction.parser(raw, offset)
        actions.append(action)
        offset += action.len
    return parser.OFPPacketOut(None, buffer_id, in_port, actions, raw[24 + actions_len:])


class ScriptedSwitch:
    """Just enough of a switch: hello, features, port desc, echo; records the rest."""

    def __init__(self, port, dpid=0x42):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.dpid = dpid
        self.buf = b""
        self.received = []
        self.send(ofp.OFPT_HELLO, b"")

    def send(self, msg_type, body, xid=1):
        self.sock.sendall(struct.pack("!BBHI", ofp.OFP_VERSION, msg_type, 8 + len(body), xid)
                          + body)

    def pump(self, seconds=0.2):
        """Read and answer messages for a while; returns what arrived."""
        deadline = time.monotonic() + seconds
        self.sock.settimeout(0.05)
        while time.monotonic() < deadline:
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                break
            self.buf += chunk
            while len(self.buf) >= 8:
                version, msg_type, length, xid = struct.unpack_from("!BBHI", self.buf)
                if len(self.buf) < length:
                    break
                raw, self.buf = self.buf[:length], self.buf[length:]
                self._handle(msg_type, length, xid, raw)
        return self.received

    def _handle(self, msg_type, length, xid, raw):
        if msg_type == ofp.OFPT_FEATURES_REQUEST:
            body = struct.pack("!QIBB2xII", self.dpid, 0, 4, 0, 0, 0)
            self.send(ofp.OFPT_FEATURES_REPLY, body, xid)
        elif msg_type == ofp.OFPT_ECHO_REQUEST:
            self.send(ofp.OFPT_ECHO_REPLY, raw[8:], xid)
        elif msg_type == ofp.OFPT_MULTIPART_REQUEST:
            # no ports and no flows: a switch that starts empty
            kind = struct.unpack_from("!H", raw, 8)[0]
            self.send(ofp.OFPT_MULTIPART_REPLY, struct.pack("!HH4x", kind, 0), xid)
            self.received.append(("multipart", kind, raw))
            return
        elif msg_type == ofp.OFPT_BARRIER_REQUEST:
            self.send(ofp.OFPT_BARRIER_REPLY, b"", xid)
        if msg_type == ofp.OFPT_PACKET_OUT:
            self.received.append(_packet_out(raw))
        elif msg_type != ofp.OFPT_HELLO:
            self.received.append(ofproto_parser.msg(_Datapath(), ofp.OFP_VERSION, msg_type,
                                                    length, xid, raw))

    def packet_in(self, table_id, in_port, data):
        match = parser.OFPMatch(in_port=in_port)
        buf = bytearray()
        match_len = match.serialize(buf, 0)
        body = struct.pack("!IHBBQ", ofp.OFP_NO_BUFFER, len(data), ofp.OFPR_ACTION, table_id,
                           0) + bytes(buf[:match_len]) + b"\x00\x00" + data
        self.send(ofp.OFPT_PACKET_IN, body)

    def flow_mods(self):
        return [m for m in self.received if isinstance(m, parser.OFPFlowMod)]

    def close(self):
        self.sock.close()


def test_pipeline_arrives_and_vip_arp_is_answered(controller):
    assert controller.lvsadm("-A", "-t", "10.0.0.100:80", "-s", "rr").returncode == 0
    switch = ScriptedSwitch(controller.of_port)
    try:
        wait_until(lambda: len(switch.pump()) and any(
            m.table_id == pl.FORWARD for m in switch.flow_mods()), what="pipeline flows")
        switch.pump(0.3)
        mods = switch.flow_mods()
        # the app's flows are read back first (by cookie, every table); nothing is wiped
        [flows] = [m for m in switch.received if isinstance(m, tuple) and m[1] == ofp.OFPMP_FLOW]
        table_id, cookie, mask = struct.unpack_from("!B3x4x4x4xQQ", flows[2], 16)
        assert (table_id, cookie, mask) == (ofp.OFPTT_ALL, ids.APP_TAG << 56, ids.TAG_MASK)
        assert switch.received.index(flows) < switch.received.index(mods[0])
        assert not [m for m in mods if m.command in (ofp.OFPFC_DELETE, ofp.OFPFC_DELETE_STRICT)]
        tables = {m.table_id for m in mods if m.command == ofp.OFPFC_ADD}
        assert tables == {pl.CLASSIFY, pl.SERVICE, pl.REVERSE, pl.FORWARD}
        for mod in mods:
            if mod.command == ofp.OFPFC_ADD:
                assert ids.Cookie.parse(mod.cookie) is not None
                pl.check(mod)
        syn = [m for m in mods if m.table_id == pl.SERVICE
               and dict(m.match.items()).get("tcp_flags") == (pkt.TCP_SYN, pkt.TCP_SYN)]
        assert syn and dict(syn[0].match.items())["ipv4_dst"] == "10.0.0.100"

        # a client asks who has the VIP: the controller answers with its virtual MAC
        client_mac = bytes.fromhex("0a0000000001")
        request = pkt.arp_frame(pkt.ARP_REQUEST, client_mac, 0x0A000001, b"\0" * 6,
                                0x0A000064, eth_dst=pkt.BROADCAST)
        switch.received.clear()
        switch.packet_in(pl.CLASSIFY, 3, request)
        wait_until(lambda: any(isinstance(m, parser.OFPPacketOut) for m in switch.pump()),
                   what="ARP reply")
        [out] = [m for m in switch.received if isinstance(m, parser.OFPPacketOut)]
        assert [a.port for a in out.actions] == [3]
        reply = pkt.parse(out.data)
        assert (reply.proto, reply.ip_src, reply.ip_dst) == (pkt.ARP_REPLY, 0x0A000064, 0x0A000001)
        assert reply.arp_sha == pkt.virtual_mac(0x0A000064) and reply.eth_dst == client_mac

        # deleting the service takes its VIP flows out of the switch
        switch.received.clear()
        assert controller.lvsadm("-D", "-t", "10.0.0.100:80").returncode == 0
        wait_until(lambda: any(m.command == ofp.OFPFC_DELETE_STRICT for m in
                               [x for x in switch.pump() if isinstance(x, parser.OFPFlowMod)]),
                   what="VIP flows removed")
    finally:
        switch.close()
