"""Reading the switch's flow counters beside the PacketIn path, measured in one run.

    .venv/bin/python benchmarks/stats_poll.py [--flows 5000] [--n 60000] [--interval 2]

The switch holds ``--flows`` NAT connections (a connection flow and a
reverse flow each), and every poll reads them all (the run's own new
connections are not added, so the table stays at that size).  The director then handles SYNs of
new NAT connections on the real clock with its timed jobs between them, as
the Ryu shim runs them, twice: without counter polling (the baseline) and
with a poll every ``--interval`` seconds.  Each poll asks for the aggregate
counters of every real server's flows (see lvs_app/stats.py); the answers
are OpenFlow reply bytes computed from the switch's real flow table (built
from the FlowMods the director sent), parsed by Ryu's own message parser as
its receive loop would, then folded by the manager: everything the
controller does for a poll counts (computing the answers is the switch's
work and is subtracted; Ryu's event dispatch is not included).  The issue's target: within 5 % of the baseline.
"""

import argparse
import struct
import time

import packet_in
from packet_in import _Datapath, syn_frame
from ryu.ofproto import ofproto_parser
from ryu.ofproto import ofproto_v1_3 as ofp


TARGET = 0.95
TICK_EVERY = 200          # PacketIns between two looks at the timed jobs


class _Switch(_Datapath):
    """Serialises what it is sent; keeps the flows and answers statistics requests
    with OpenFlow bytes, as a switch would."""

    def __init__(self):
        self.flows = {}               # (table, match bytes) -> FlowMod
        self.replies = []             # encoded replies owed to the controller
        self.frozen = False           # the measured run's own flows are not kept
        self.spent = 0.0              # s spent building replies (the switch's work)

    def send_msg(self, msg):
        msg.serialize()
        name = type(msg).__name__
        if name == "OFPFlowMod" and msg.command == ofp.OFPFC_ADD and not self.frozen:
            buf = bytearray()
            msg.match.serialize(buf, 0)
            self.flows[(msg.table_id, bytes(buf))] = msg
        elif name == "OFPAggregateStatsRequest":
            started = time.perf_counter()
            chosen = [n for n, mod in enumerate(self.flows.values())
                      if mod.cookie & msg.cookie_mask == msg.cookie & msg.cookie_mask]
            body = struct.pack(ofp.OFP_AGGREGATE_STATS_REPLY_PACK_STR,
                               sum(10 + n for n in chosen), sum(1500 * (10 + n) for n in chosen),
                               len(chosen))
            self.replies.append(self._reply(msg.xid, ofp.OFPMP_AGGREGATE, body))
            self.spent += time.perf_counter() - started
        elif name == "OFPTableStatsRequest":
            body = b"".join(struct.pack(ofp.OFP_TABLE_STATS_PACK_STR, t, len(self.flows), 0, 0)
                            for t in range(4))
            self.replies.append(self._reply(msg.xid, ofp.OFPMP_TABLE, body))

    @staticmethod
    def _reply(xid, kind, body):
        length = ofp.OFP_HEADER_SIZE + 8 + len(body)
        return (struct.pack(ofp.OFP_HEADER_PACK_STR, ofp.OFP_VERSION, ofp.OFPT_MULTIPART_REPLY,
                            length, xid)
                + struct.pack("!HH4x", kind, 0) + body)


def answer(manager, switch):
    """Ryu's parse of each reply (what its receive loop does), then the manager."""
    while switch.replies:
        data = switch.replies.pop(0)
        version, msg_type, length, xid = ofproto_parser.header(data)
        msg = ofproto_parser.msg(switch, version, msg_type, length, xid, data)
        manager.stats_reply(1, xid, msg.body)


def setup(flows, interval):
    switch = _Switch()
    manager = packet_in.setup(datapath=switch, clock=time.perf_counter,
                              stats_interval=interval)
    for i in range(flows):                    # the connections the switch holds
        manager.packet_in(1, 1, syn_frame(0x0B000000 + i, 2000), 1)
    switch.frozen = True
    return manager, switch


def run(manager, switch, frames):
    packet_in = manager.packet_in
    start = time.perf_counter()
    for i, (in_port, data) in enumerate(frames):
        packet_in(1, in_port, data, 1)
        if i % TICK_EVERY == 0:
            manager.tick()
            answer(manager, switch)
    return time.perf_counter() - start - switch.spent, manager.traffic.polls


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flows", type=int, default=5000, help="NAT connections in the switch")
    ap.add_argument("--n", type=int, default=60000, help="PacketIns per run")
    ap.add_argument("--interval", type=float, default=2.0)
    args = ap.parse_args()
    frames = [(1, syn_frame(0x0A010000 + i // 60000, 1024 + i % 60000)) for i in range(args.n)]
    base = min(run(*setup(args.flows, 0), frames)[0] for _ in range(2))
    results = []
    for _ in range(2):
        manager, switch = setup(args.flows, args.interval)
        size = len(switch.flows)
        results.append(run(manager, switch, frames) + (size,))
    took, polls, size = min(results)
    manager, switch = setup(args.flows, args.interval)
    start = time.perf_counter()
    manager.send(manager._poll_stats(time.perf_counter()))
    answer(manager, switch)
    one = time.perf_counter() - start - switch.spent
    print(f"PacketIns per run: {args.n}; flows in the switch: {size} "
          f"({args.flows} NAT connections to 3 real servers); poll every {args.interval:g} s")
    print(f"without polling:  {args.n / base:10.0f} PacketIns/s")
    print(f"with polling:     {args.n / took:10.0f} PacketIns/s   {base / took:.2f} of without "
          f"(target {TARGET}); {polls} polls in {took:.1f} s")
    print(f"one poll: {one * 1e3:.2f} ms of controller time (requests, Ryu's parse of the "
          f"replies, folding); it grows with real servers, not with flows")


if __name__ == "__main__":
    main()
