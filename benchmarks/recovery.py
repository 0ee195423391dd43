"""Recovery after a controller restart: time and memory to read a switch back.

    .venv/bin/python benchmarks/recovery.py [--connections 10000] [--templates 1000]

A Manager (the object ryu-manager builds) sets up ``--templates`` persistent
clients with ``--connections`` connections in all through a NAT service and a
direct-routing service; the FlowMods it sends are kept as a switch would keep
them (flow statistics: match, instructions, cookie, timeouts).  A second
Manager, with the same rules file, then recovers from those flows.  Printed:
the time to recover (once, and per 1,000 flows), the connections, templates
and counters it rebuilt, and the memory the recovered controller holds
(tracemalloc, in a run of its own), next to the time the first controller
spent setting the same connections up in the same run.
"""

import argparse
import ipaddress
import os
import struct
import tempfile
import time
import tracemalloc

from ryu.ofproto import ofproto_v1_3 as ofp
from ryu.ofproto import ofproto_v1_3_parser as parser

from lvs_app.manager import Manager

VIP = 0x0A000064


class FlowTable:
    """Keeps the FlowMods (ADDs replace, deletes ignored): what a switch holds."""

    ofproto = ofp
    ofproto_parser = parser

    def __init__(self):
        self.id = 1
        self.flows = {}

    def send_msg(self, msg):
        if isinstance(msg, parser.OFPFlowMod) and msg.command == ofp.OFPFC_ADD:
            key = (msg.table_id, msg.priority, tuple(sorted(msg.match.items())))
            self.flows[key] = msg

    def stats(self):
        return [parser.OFPFlowStats(
            table_id=m.table_id, duration_sec=5, duration_nsec=0, priority=m.priority,
            idle_timeout=m.idle_timeout, hard_timeout=m.hard_timeout, flags=m.flags,
            cookie=m.cookie, packet_count=0, byte_count=0, match=m.match,
            instructions=m.instructions) for m in self.flows.values()]


def syn(client, sport, dport):
    eth = bytes.fromhex("021f0a000064") + bytes.fromhex("020000000001") + b"\x08\x00"
    ip = struct.pack("!BBHHHBBHII", 0x45, 0, 40, 0, 0, 64, 6, 0, client, VIP)
    tcp = struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 0x50, 0x02, 65535, 0, 0)
    return eth + ip + tcp


def controller(rules):
    manager = Manager(rules_path=rules, clock=lambda: 0.0)
    manager.load_rules()
    return manager


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--connections", type=int, default=10000)
    ap.add_argument("--templates", type=int, default=1000)
    args = ap.parse_args()
    rules = os.path.join(tempfile.mkdtemp(prefix="lvs-bench-"), "lvs.rules")
    first = controller(rules)
    api = first.api
    for port, method in ((80, "masq"), (443, "droute")):
        api.add_service({"protocol": "tcp", "address": "10.0.0.100", "port": port,
                         "scheduler": "rr", "persistent": True, "timeout": 600})
        for i in range(3):
            api.add_server(f"tcp-10.0.0.100-{port}", {"address": f"10.0.0.{11 + i}",
                                                      "method": method})
    for i in range(3):
        first.director.hosts.macs[0x0A00000B + i] = bytes([2, 0, 10, 0, 0, 11 + i])
    switch = FlowTable()
    first.switch_connected(1, switch)
    first.flow_stats(1, [])

    per_client = max(1, args.connections // args.templates)
    start = time.perf_counter()
    made = 0
    for c in range(args.templates):
        client = int(ipaddress.IPv4Address("10.1.0.0")) + c
        for k in range(per_client):
            first.packet_in(1, 1, syn(client, 1024 + k, 80 if c % 2 else 443), 1)
            made += 1
    setup = time.perf_counter() - start
    flows = switch.stats()

    def recover():
        manager = controller(rules)
        manager.switch_connected(1, FlowTable())
        manager.flow_stats(1, flows)
        return manager

    start = time.perf_counter()
    second = recover()
    took = time.perf_counter() - start
    tracemalloc.start()                  # memory in a run of its own: tracing is slow
    base = tracemalloc.get_traced_memory()[0]
    kept = recover()
    memory = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    del kept
    sw = second.director.switches[1]
    counts = sum(d.activeconns + d.inactconns for s in second.runtime.services.values()
                 for d in s.dests.values())
    print(f"connections set up through the director: {made} ({len(flows)} flows)")
    print(f"  set-up time:            {setup:8.2f} s   {setup / made * 1e6:8.1f} us per connection")
    print("recovery after a restart (one switch):")
    print(f"  connections {len(sw.conns)}, templates {len(sw.templates)}, "
          f"ActiveConn+InActConn {counts}")
    print(f"  time:                   {took:8.2f} s   {took / len(flows) * 1e6 * 1000:8.0f} us "
          f"per 1,000 flows ({took / setup:.2f} of the set-up time)")
    print(f"  memory of the state:    {memory / 2**20:8.1f} MiB   "
          f"{memory / max(1, len(sw.conns)):8.0f} bytes per connection")
    assert len(sw.conns) == made and len(sw.templates) == args.templates


if __name__ == "__main__":
    main()
