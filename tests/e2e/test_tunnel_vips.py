"""Tunnel real servers behind two VIPs, on one VXLAN device each (IPv4).

The director addresses the inner frame to the server's tunnel MAC (02:1e:
and its address), which the server's vx0 carries; vx0 holds both VIPs, so
one device serves both services, as IPVS's one tunl0 does.
"""

import json

import pytest

pytestmark = pytest.mark.lab("tunnel")

VIPS = ("10.0.0.100", "10.0.0.101")
SERVERS = {"10.0.0.11": "rs1", "10.0.0.12": "rs2", "10.0.0.13": "rs3"}


def test_two_vips_share_the_same_tunnel_servers(lab):
    hosts = [lab.host(name) for name in SERVERS.values()]
    for host in hosts:
        host.cmd(f"ip addr add {VIPS[1]}/32 dev vx0")
    try:
        lab.lvsadm("-C")
        for vip in VIPS:
            lab.lvsadm(f"-A -t {vip}:80 -s rr")
            for ip in SERVERS:
                lab.lvsadm(f"-a -t {vip}:80 -r {ip} -i")
        for vip in VIPS:
            seen = [json.loads(lab.curl(client, f"http://{vip}/info"))
                    for _ in range(3) for client in ("c1", "c2")]
            assert sorted(answer["server"] for answer in seen) == [
                "rs1", "rs1", "rs2", "rs2", "rs3", "rs3"]
            # each request arrived for the VIP it was sent to, through vx0
            assert {answer["local"] for answer in seen} == {f"{vip}:80"}
        flows = lab.dump_flows()
        for ip in SERVERS:
            mac = "02:1e:" + ":".join(f"{int(x):02x}" for x in ip.split("."))
            assert f"set_field:{mac}->eth_dst,set_field:{ip}->tun_dst" in flows
    finally:
        for host in hosts:
            host.cmd(f"ip addr del {VIPS[1]}/32 dev vx0")
        lab.lvsadm("-C")
        lab.apply_lvsadm()
