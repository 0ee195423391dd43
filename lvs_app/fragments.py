"""IP fragments: what the switch cannot match by port, the controller maps by IP id.

IPVS reassembles fragments before it looks a packet up
(``ip_vs_gather_frags()``).  A switch cannot reassemble, and only a first
fragment carries the transport ports, so every fragment to a VIP (and every
fragment from a NAT real server) is sent to the controller by a flow that
matches OVS's ``ip_frag``:

* a first fragment is handled like any packet of its connection (it may
  schedule a new one) and the actions that carried it are remembered under
  (source, destination, protocol, IP id);
* a later fragment leaves with the same actions, less the transport-port
  rewrites (it has no transport header);
* a later fragment whose first fragment was not seen (out of order, or its
  datagram was dropped) is dropped and counted: it can never become a
  connection from port 0.

Entries live FRAGMENT_TIMEOUT seconds (Linux's ipfrag_time) and at most
MAX_DATAGRAMS per switch.
"""

import logging

from ryu.ofproto import ofproto_v1_3_parser as parser

LOG = logging.getLogger(__name__)

FRAGMENT_TIMEOUT = 30.0        # s
MAX_DATAGRAMS = 4096           # datagrams remembered per switch
_L4_FIELDS = frozenset({"tcp_src", "tcp_dst", "udp_src", "udp_dst"})


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
        """Remember how the first fragment ``data`` left (from ``messages``)."""
        actions = next((msg.actions for _, msg in messages
                        if isinstance(msg, parser.OFPPacketOut) and msg.data is data), None)
        table = self.datagrams.setdefault(dpid, {})
        if len(table) >= MAX_DATAGRAMS:
            self.expire(now)
            if len(table) >= MAX_DATAGRAMS:
                del table[next(iter(table))]
        table[(p.ip_src, p.ip_dst, p.proto, p.ip_id)] = (
            without_ports(actions) if actions is not None else None, now + FRAGMENT_TIMEOUT)

    def later(self, dpid, p, now):
        """The actions for a later fragment, or None (drop it)."""
        entry = self.datagrams.get(dpid, {}).get((p.ip_src, p.ip_dst, p.proto, p.ip_id))
        if entry is None or entry[0] is None or entry[1] < now:
            self.dropped += 1
            return None
        return entry[0]

    def expire(self, now):
        """Timed job: forget datagrams older than FRAGMENT_TIMEOUT."""
        for table in self.datagrams.values():
            for key in [k for k, (_, expiry) in table.items() if expiry < now]:
                del table[key]
        return []

    def forget_switch(self, dpid):
        self.datagrams.pop(dpid, None)
