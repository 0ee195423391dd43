"""A fabric's cost per connection: PacketIns and flow entries per switch.

    .venv/bin/python benchmarks/fabric.py [--connections 600]

The leaf-spine of tests/behaviour/test_fabric.py (five fake switches with
loops: leaves 1-3, spines 101-102), driven by the real Manager: clients on
leaves 1 and 2 open ``--connections`` NAT connections (SYN, then data) to a
service whose three real servers sit on leaves 2 and 3.  Printed: PacketIns
per new connection over the whole fabric, and each switch's flow entries by
kind before and after, so that what grows with connections (and where) shows.
"""

import argparse
import collections
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lvs_app import ids  # noqa: E402
from tests.behaviour.test_fabric import HOSTS, FabricLab, SPINES  # noqa: E402
from tests.fakeswitch import arp_request  # noqa: E402
from tests.behaviour.conftest import mac_of  # noqa: E402


def entries(lab):
    out = {}
    for dpid, sw in sorted(lab.switches.items()):
        kinds = collections.Counter(ids.KIND_NAMES.get(ids.Cookie.parse(f.cookie).kind, "?")
                                    if ids.Cookie.parse(f.cookie) else "foreign"
                                    for f in sw.flows())
        out[dpid] = kinds
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--connections", type=int, default=600)
    n = ap.parse_args().connections
    lab = FabricLab()
    for ip in HOSTS:
        lab.send(ip, arp_request(ip, "10.0.0.250", sha=mac_of(ip)))
    lab.lvsadm("-A -t 10.0.0.100:80 -s rr")
    for rs in ("10.0.0.11", "10.0.0.12", "10.0.0.13"):
        lab.lvsadm(f"-a -t 10.0.0.100:80 -r {rs} -m")
    lab.syn("10.0.0.1", 1024)                    # server MACs resolved
    before = entries(lab)
    lab.punts = 0
    for i in range(n):
        client = ("10.0.0.1", "10.0.0.2")[i % 2]
        lab.syn(client, 2000 + i)
        lab.syn(client, 2000 + i, flags="A", payload=b"data")
    after = entries(lab)
    print(f"new connections: {n}; PacketIns over the whole fabric: {lab.punts} "
          f"({lab.punts / n:.2f} per new connection)")
    print("switch   flows before -> after   (by kind after)")
    for dpid in sorted(after):
        role = "spine" if dpid in SPINES else "leaf"
        print(f"{role} {dpid:<4} {sum(before[dpid].values()):6} -> {sum(after[dpid].values()):6}"
              f"   {dict(sorted(after[dpid].items()))}")


if __name__ == "__main__":
    main()
