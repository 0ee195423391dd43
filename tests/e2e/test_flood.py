"""A SYN flood from spoofed sources: the switch's meter drops it before the controller.

The lab's controller runs with a low ``--lvs-packetin-pps``; a client host
sends thousands of SYNs from random addresses (a raw socket, inside the lab);
the meter's drop counter rises in Open vSwitch, the controller holds at most
about what the meter let through, and a real client is still answered.
"""

import re

import pytest

VIP = "10.0.0.100"
PPS = 100


@pytest.fixture
def flood_lab(lab_factory):
    return lab_factory("nat", extra_args=["--lvs-packetin-pps", str(PPS)])


def meter_drops(lab, meter_id):
    out = lab.ofctl("meter-stats").stdout
    block = re.search(rf"meter:{meter_id} .*?(?=meter:|\Z)", out, re.S)
    assert block, out
    return int(re.search(r"0: packet_count:(\d+)", block.group(0)).group(1))


def test_a_syn_flood_is_metered_in_the_switch_and_real_clients_are_served(flood_lab):
    lab = flood_lab
    lab.lvsadm("-C")
    lab.lvsadm(f"-A -t {VIP}:80 -s rr")
    for rs in ("10.0.0.11", "10.0.0.12", "10.0.0.13"):
        lab.lvsadm(f"-a -t {VIP}:80 -r {rs} -m")
    before = meter_drops(lab, 1)
    flood = lab.probe_background("c2", "flood", VIP, 80, "--count", 5000,
                                 "--spoof", "10.0.0.128/25")
    answers = [lab.curl("c1", f"http://{VIP}/", timeout=10) for _ in range(3)]
    out, _ = flood.communicate(timeout=60)
    assert flood.returncode == 0, out
    sent, rate = map(float, out.split())
    assert all(a.strip().startswith("rs") for a in answers)
    dropped = meter_drops(lab, 1) - before
    assert dropped > 0, lab.ofctl("meter-stats").stdout      # the switch shed the flood
    held = sum(1 for line in lab.lvsadm("-L", "-c", "-n").stdout.splitlines()
               if re.search(r" 10\.0\.0\.(1[2-9]\d|2\d\d):\d+ ", line))
    # what reached the controller: at most the meter's rate for the flood's
    # duration, plus its burst
    assert held <= PPS * (sent / rate + 2) + PPS, (held, sent, rate, dropped)
