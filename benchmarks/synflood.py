"""A SYN flood against the VIP: real clients' success and the controller's memory,
with the defences off and on.

    sudo .venv/bin/python benchmarks/synflood.py [--count 60000] [--requests 20]

A Mininet lab (NAT, three real servers, OVS userspace datapath) with
``ryu-manager lvs_app``: two client hosts send ``--count`` SYNs each from
random spoofed addresses inside the lab (mininet/probe_client.py flood)
while a third fetches the VIP ``--requests`` times with curl.  Printed for
the defences off (no meter, no cap) and on (the defaults, or
``--pps``/``--max-connections``): the requests answered, their p50/p99 time,
the entries the controller holds, its resident memory, and what the switch's
meter dropped.  Everything stays inside the lab's network namespaces.
"""

import argparse
import os
import re
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "mininet"))

import lvslab  # noqa: E402

VIP = "10.0.0.100"


def rss_mib(pid):
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", text).group(1)) / 1024


def meter_drops(lab):
    out = lab.ofctl("meter-stats", check=False).stdout
    return sum(int(n) for n in re.findall(r"0: packet_count:(\d+)", out))


def run(defences, args):
    extra = (["--lvs-packetin-pps", str(args.pps), "--lvs-max-connections",
              str(args.max_connections)] if defences
             else ["--lvs-packetin-pps", "0", "--lvs-max-connections", "0"])
    lab = lvslab.Lab("nat", extra_args=extra)
    lab.start()
    try:
        lab.lvsadm("-C")
        lab.lvsadm(f"-A -t {VIP}:80 -s rr")
        for rs in ("10.0.0.11", "10.0.0.12", "10.0.0.13"):
            lab.lvsadm(f"-a -t {VIP}:80 -r {rs} -m")
        rss_before = rss_mib(lab.controller.pid)
        floods = [lab.probe_background(host, "flood", VIP, 80, "--count", args.count,
                                       "--spoof", spoof)
                  for host, spoof in (("c2", "10.0.0.128/26"), ("c3", "10.0.0.192/26"))]
        times, answered = [], 0
        for _ in range(args.requests):
            rc, out, _ = lab.host_run("c1", f"curl -s -o /dev/null -w '%{{time_total}}' "
                                            f"--max-time 5 http://{VIP}/", timeout=10,
                                      check=False)
            if rc == 0:
                answered += 1
                times.append(float(out))
        sent = rate = 0.0
        for flood in floods:
            out, _ = flood.communicate(timeout=300)
            n, r = map(float, out.split()[-2:])
            sent, rate = sent + n, rate + r
        entries = lab.lvsadm("-L", "-n").stdout
        held = sum(int(line.split()[4]) + int(line.split()[5])
                   for line in entries.splitlines() if line.startswith("  -> 10."))
        return {"answered": answered, "times": times, "held": held, "sent": sent,
                "rate": rate, "rss_before": rss_before, "rss": rss_mib(lab.controller.pid),
                "dropped": meter_drops(lab)}
    finally:
        lab.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=60000, help="SYNs per flooding host")
    ap.add_argument("--requests", type=int, default=20, help="real requests during the flood")
    ap.add_argument("--pps", type=int, default=2000, help="--lvs-packetin-pps when on")
    ap.add_argument("--max-connections", type=int, default=200000)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("synflood.py: run as root (it builds a Mininet lab)")
    rows = {}
    for defences in (False, True):
        rows[defences] = run(defences, args)
    print(f"SYN flood: 2 hosts x {args.count} SYNs from spoofed sources; "
          f"{args.requests} real requests meanwhile")
    print(f"{'defences':<10} {'flood/s':>8} {'answered':>9} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'entries':>8} {'RSS MiB':>8} {'meter drops':>12}")
    for defences, r in rows.items():
        times = sorted(r["times"]) or [float("nan")]
        p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
        print(f"{'on' if defences else 'off':<10} {r['rate']:8.0f} "
              f"{r['answered']:>4}/{args.requests:<4} {statistics.median(times) * 1000:7.1f} "
              f"{p99 * 1000:7.1f} {r['held']:8d} {r['rss']:8.1f} {r['dropped']:12d}")
    print(f"(controller RSS before the flood: off {rows[False]['rss_before']:.1f} MiB, "
          f"on {rows[True]['rss_before']:.1f} MiB)")


if __name__ == "__main__":
    main()
