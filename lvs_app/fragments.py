"""IP fragments: what the switch cannot match by port, the controller maps by IP id.

IPVS reassembles fragments before it looks a packet up
(``ip_vs_gather_frags()``).  A switch cannot reassemble, and only a first
fragment carries the transport ports, so every fragment to a VIP (and every
fragment from a NAT real server) is sent to the controller by a flow that
matches OVS's ``ip_frag``:

IPv6 fragments (a fragment header) are handled the same way, by the 32-bit
identification of that header.

* a first fragment is handled like any packet of its connection (it may
  schedule a new one) and the actions that carried it are remembered under
  (source, destination, protocol, IP id);
* a later fragment leaves with the same actions, less the transport-port
  rewrites (it has no transport header);
* the address and port rewrites of every fragment are done here, in its
  bytes, with the checksums updated incrementally; the switch is left the
  Ethernet and tunnel ones.  Open vSwitch's own address rewrite of a later
  fragment changes bytes of its payload as if they were a UDP checksum
  (measured: the real server counts InCsumErrors and drops the datagram);
* a later fragment whose first fragment was not seen (out of order, or its
  datagram was dropped) is dropped and counted: it can never become a
  connection from port 0.

Entries live FRAGMENT_TIMEOUT seconds (Linux's ipfrag_time) and at most
MAX_DATAGRAMS per switch.
"""

import ipaddress
import logging
import struct

from ryu.ofproto import ofproto_v1_3_parser as parser

from lvs_app import packet as pkt

LOG = logging.getLogger(__name__)

FRAGMENT_TIMEOUT = 30.0        # s
MAX_DATAGRAMS = 4096           # datagrams remembered per switch
_L4_FIELDS = frozenset({"tcp_src", "tcp_dst", "udp_src", "udp_dst"})
_IP_FIELDS = {"ipv4_src": 12, "ipv4_dst": 16}               # offsets in the IP header
_IPV6_FIELDS = {"ipv6_src": 8, "ipv6_dst": 24}
_PORT_FIELDS = {"tcp_src": 0, "tcp_dst": 2, "udp_src": 0, "udp_dst": 2}
_L4_CSUM = {pkt.PROTO_TCP: 16, pkt.PROTO_UDP: 6}             # checksum offsets


def _csum_update(csum, old, new):
    """RFC 1624: the checksum after 16-bit words ``old`` became ``new``."""
    total = ~csum & 0xFFFF
    for i in range(0, len(old), 2):
        total += (~((old[i] << 8) | old[i + 1]) & 0xFFFF) + ((new[i] << 8) | new[i + 1])
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def rewrite_fragment(data, actions, first):
    """Apply the address and port set-fields of ``actions`` to a fragment's
    bytes (IPv4 or IPv6); returns (new bytes, the actions left for the
    switch).  Only a ``first`` fragment holds a transport header (ports,
    checksum)."""
    frame = bytearray(data)
    p = pkt.parse(data)
    l3 = 18 if frame[12:14] == b"\x81\x00" else 14
    v6 = p.eth_type == pkt.ETH_IPV6
    fields = _IPV6_FIELDS if v6 else _IP_FIELDS
    l4, proto = p.l4_offset, p.proto
    csum_at = _L4_CSUM.get(proto) if first else None
    rest = []
    for action in actions:
        key = getattr(action, "key", None) if isinstance(action, parser.OFPActionSetField) \
            else None
        if key in fields:
            at = l3 + fields[key]
            new = ipaddress.ip_address(action.value).packed
            old = bytes(frame[at:at + len(new)])
            frame[at:at + len(new)] = new
            if not v6:                            # IPv6 has no header checksum
                _fix(frame, l3 + 10, old, new, udp=False)
            if csum_at is not None:               # the pseudo-header has the address
                _fix(frame, l4 + csum_at, old, new, udp=proto == pkt.PROTO_UDP)
        elif key in _PORT_FIELDS and csum_at is not None:
            at, new = l4 + _PORT_FIELDS[key], struct.pack("!H", action.value)
            old = bytes(frame[at:at + 2])
            frame[at:at + 2] = new
            _fix(frame, l4 + csum_at, old, new, udp=proto == pkt.PROTO_UDP)
        else:
            rest.append(action)
    return bytes(frame), rest


def _fix(frame, at, old, new, udp):
    csum = (frame[at] << 8) | frame[at + 1]
    if udp and csum == 0:
        return                                     # UDP without a checksum
    csum = _csum_update(csum, old, new)
    frame[at:at + 2] = struct.pack("!H", 0xFFFF if udp and csum == 0 else csum)


def without_ports(actions):
    """The actions of a first fragment, fit for the later ones."""
    return [a for a in actions
            if not (isinstance(a, parser.OFPActionSetField) and a.key in _L4_FIELDS)]


class Fragments:
    """Datagrams whose first fragment was seen, per switch."""

    def __init__(self):
        self.datagrams = {}        # dpid -> {(src, dst, proto, ip id): (actions, expiry)}
        self.dropped = 0           # later fragments with no first fragment

    def first(self, dpid, p, data, messages, now):
        """Remember how the first fragment ``data`` left (from ``messages``),
        and move its address and port rewrites into its bytes."""
        out = next((msg for _, msg in messages
                    if isinstance(msg, parser.OFPPacketOut) and msg.data is data), None)
        actions = out.actions if out is not None else None
        if out is not None:
            out.data, out.actions = rewrite_fragment(data, actions, first=True)
        table = self.datagrams.setdefault(dpid, {})
        if len(table) >= MAX_DATAGRAMS:
            self.expire(now)
            if len(table) >= MAX_DATAGRAMS:
                del table[next(iter(table))]
        table[(p.ip_src, p.ip_dst, p.proto, p.ip_id)] = (
            without_ports(actions) if actions is not None else None, now + FRAGMENT_TIMEOUT)

    def later(self, dpid, p, data, now):
        """(rewritten bytes, actions) for a later fragment, or None (drop it)."""
        entry = self.datagrams.get(dpid, {}).get((p.ip_src, p.ip_dst, p.proto, p.ip_id))
        if entry is None or entry[0] is None or entry[1] < now:
            self.dropped += 1
            return None
        return rewrite_fragment(data, entry[0], first=False)

    def expire(self, now):
        """Timed job: forget datagrams older than FRAGMENT_TIMEOUT."""
        for table in self.datagrams.values():
            for key in [k for k, (_, expiry) in table.items() if expiry < now]:
                del table[key]
        return []

    def forget_switch(self, dpid):
        self.datagrams.pop(dpid, None)
