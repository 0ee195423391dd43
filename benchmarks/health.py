"""Health checks beside the PacketIn hot path: thousands of checks, measured in one run.

    .venv/bin/python benchmarks/health.py [--n 60000] [--services 100] [--servers 20]

The director handles SYNs of new NAT connections (as benchmarks/packet_in.py)
on the real clock while its timed jobs run every few hundred PacketIns, as
the Ryu shim runs them between events.  Once without health checks (the
baseline, same run) and once with ``--services`` virtual servers of
``--servers`` real servers each, every one with its own TCP_CHECK at
``delay_loop 1`` (100 x 20 = 2,000 probes a second, none shared).  The real
servers are simulated: every probe's SYN is answered with a SYN/ACK frame
that goes back in as a PacketIn, so each check runs its whole exchange
(SYN, SYN/ACK, RST) through the manager.  Building those answers is the
servers' work and is subtracted; everything the controller does for the
checks (timers, probes, PacketOuts and their serialisation, the replies'
PacketIns) counts.  The issue's target: within 10 % of the baseline.
"""

import argparse
import ipaddress
import time

import packet_in
from packet_in import _Datapath, syn_frame

from lvs_app import keepalived
from lvs_app.health import wire

HC = "10.0.0.250"
HC_BYTES = ipaddress.IPv4Address(HC).packed
TARGET = 0.9
TICK_EVERY = 200          # PacketIns between two looks at the timed jobs


class _Servers(_Datapath):
    """The switch side: messages are serialised; probe SYNs are answered."""

    def __init__(self):
        self.syns = []
        self.answered = 0
        self.spent = 0.0          # s spent building the servers' answers

    def send_msg(self, msg):
        msg.serialize()
        data = getattr(msg, "data", None)
        if (data and type(msg).__name__ == "OFPPacketOut" and len(data) >= 54
                and data[26:30] == HC_BYTES):                 # from the health address
            self.syns.append((msg.actions[-1].port, bytes(data)))

    def answer(self, manager):
        while self.syns:
            port, data = self.syns.pop()
            start = time.perf_counter()
            seg = wire.parse(data)
            if seg is None or seg.proto != 6 or not seg.flags & wire.SYN:
                self.spent += time.perf_counter() - start
                continue
            reply = wire.build_tcp(seg.eth_dst, seg.eth_src, seg.ip_dst, seg.ip_src,
                                   seg.dport, seg.sport, 1000, seg.seq + 1,
                                   wire.SYN | wire.ACK)
            self.spent += time.perf_counter() - start
            self.answered += 1
            manager.packet_in(1, port, reply, 0)


def config(services, servers, shared):
    blocks = []
    for s in range(services):
        pool = 0 if shared else s
        reals = "".join(
            f"  real_server 10.{1 + pool // 200}.{pool % 200}.{10 + r} 80 {{\n"
            f"    TCP_CHECK {{ connect_timeout 1 }}\n  }}\n" for r in range(servers))
        blocks.append(f"virtual_server 10.2.{s // 200}.{1 + s % 200} 80 {{\n"
                      f"  delay_loop 1\n  warmup 1\n  lvs_sched rr\n  protocol TCP\n{reals}}}\n")
    return "".join(blocks)


def setup(services, servers, shared=False):
    """A NAT service of 3 servers; with ``services``: the keepalived file beside it."""
    dp = _Servers()
    manager = packet_in.setup(datapath=dp, clock=time.perf_counter,
                              health_source=ipaddress.IPv4Address(HC))
    api = manager.api
    cfg = keepalived.parse(config(services, servers, shared)) if services else None
    hosts = manager.director.hosts
    # every server's MAC and port known, as the switch would have taught them
    addresses = [server.address for service in api.table.services.values()
                 for server in service.servers]
    addresses += [server.address for entry in (cfg.services if cfg else [])
                  for server in entry.servers]
    for address in addresses:
        ip = int(address)
        hosts.macs[ip] = ip.to_bytes(6, "big")
        hosts.ports.setdefault(1, {})[ip.to_bytes(6, "big")] = 2 + ip % 40
    if cfg is not None:
        api.apply_keepalived(cfg, None)
    return manager, dp


def run(manager, dp, frames):
    """The PacketIns, the timed jobs every TICK_EVERY of them; seconds spent by
    the controller (the servers' answer-building taken out)."""
    packet_in = manager.packet_in
    start = time.perf_counter()
    for i, (in_port, data) in enumerate(frames):
        packet_in(1, in_port, data, 1)
        if i % TICK_EVERY == 0:
            manager.tick()
            dp.answer(manager)
    return time.perf_counter() - start - dp.spent


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=60000, help="PacketIns per run")
    ap.add_argument("--services", type=int, default=100)
    ap.add_argument("--servers", type=int, default=20)
    args = ap.parse_args()
    frames = [(1, syn_frame(0x0A010000 + i // 60000, 1024 + i % 60000)) for i in range(args.n)]
    base = min(run(*setup(0, 0), frames) for _ in range(2))
    print(f"PacketIns per run: {args.n}; {args.services} virtual servers x {args.servers} "
          "real servers, TCP_CHECK, delay_loop 1")
    print(f"without health checks:     {args.n / base:10.0f} PacketIns/s")
    for shared, what in ((True, "one shared pool"), (False, "servers of their own")):
        results = []
        for _ in range(2):
            manager, dp = setup(args.services, args.servers, shared)
            took = run(manager, dp, frames)
            results.append((took, dp.answered, manager.health.counts,
                            len(manager.health.checks)))
        took, answered, counts, checks = min(results, key=lambda r: r[0])
        print(f"{what + ':':<26} {args.n / took:10.0f} PacketIns/s   {base / took:.2f} of "
              f"without (target {TARGET}); {checks} probes, {counts['probes'] / took:.0f} "
              f"probes/s, {answered} answered, {counts['ok']} ok, {counts['failed']} failed")


if __name__ == "__main__":
    main()
