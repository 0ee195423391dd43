"""The lab's address plan (mininet/lvslab_topology.py): no Mininet, no root.

The dual-stack plan (``ipv6_of``), the IPv6 twin of a topology's lvsadm
commands, the refusal of a dual-stack fabric, and each host's set-up
commands with and without IPv6.
"""

import ipaddress
import shlex
import sys
from pathlib import Path

import pytest

# mininet/ has no __init__.py, so this never shadows the mininet library.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "mininet"))

import lvslab_topology as topo  # noqa: E402
from lvs_app.ipvsadm import cmdline  # noqa: E402


@pytest.mark.parametrize("ipv4, ipv6", [
    ("10.0.0.11", "fd00::10:0:0:11"),
    ("10.0.0.1", "fd00::10:0:0:1"),
    ("10.0.0.100", "fd00::10:0:0:100"),
    ("10.0.0.254", "fd00::10:0:0:254"),
    ("192.168.1.2", "fd00::192:168:1:2"),
    ("0.0.0.0", "fd00::"),
])
def test_ipv6_of_writes_each_octet_as_a_hex_group(ipv4, ipv6):
    assert topo.ipv6_of(ipv4) == ipv6
    assert ipaddress.IPv6Address(topo.ipv6_of(ipv4)) in topo.IPV6_NETWORK
    assert topo.ipv6_of(ipaddress.IPv4Address(ipv4)) == ipv6


def test_ipv6_of_is_one_to_one_on_a_subnet():
    hosts = [str(a) for a in ipaddress.IPv4Network("10.0.0.0/24")]
    assert len({topo.ipv6_of(a) for a in hosts}) == len(hosts)


@pytest.mark.parametrize("bad", ["10.0.0", "fd00::1", "10.0.0.256", ""])
def test_ipv6_of_refuses_what_is_not_ipv4(bad):
    with pytest.raises(ValueError):
        topo.ipv6_of(bad)


@pytest.mark.parametrize("plen, plen6", [(0, 64), (8, 80), (16, 96), (24, 112), (25, 112),
                                         (32, 128)])
def test_ipv6_prefix_covers_whole_octets(plen, plen6):
    assert topo.ipv6_prefix_of(plen) == plen6


def test_ipv6_prefix_of_a_24_covers_the_twins_of_its_addresses():
    net6 = ipaddress.IPv6Network(f"{topo.ipv6_of('10.0.0.0')}/{topo.ipv6_prefix_of(24)}")
    assert all(ipaddress.IPv6Address(topo.ipv6_of(str(a))) in net6
               for a in ipaddress.IPv4Network("10.0.0.0/24"))
    assert ipaddress.IPv6Address(topo.ipv6_of("10.0.1.1")) not in net6


@pytest.mark.parametrize("name", ["leafspine", "leafspine_tunnel"])
def test_a_fabric_is_refused_as_dual_stack(name):
    with pytest.raises(topo.TopologyError) as err:
        topo.check_ipv6(topo.load_topology(name))
    assert str(err.value).startswith(f"topology {name}: ipv6=True (a dual-stack lab) needs "
                                     "a one-switch topology (")
    assert "nat" in str(err.value)


def test_lab_refuses_a_dual_stack_fabric_at_once():
    import lvslab
    with pytest.raises(lvslab.TopologyError, match="a fabric of several switches is IPv4 only"):
        lvslab.Lab("leafspine", ipv6=True)


def test_lab_helpers_without_and_with_ipv6():
    import lvslab
    lab = lvslab.Lab("droute")
    assert lab.ipv6 is False and lab.vip6 is None
    with pytest.raises(lvslab.LabError, match="lab droute is IPv4 only: host rs1 has no IPv6"):
        lab.ip6("rs1")
    with pytest.raises(lvslab.LabError, match="IPv4 only"):
        lab.lvsadm_commands(ipv6=True)
    assert lab.lvsadm_commands() == lab.topology["lvsadm"]
    lab = lvslab.Lab("droute", ipv6=True)
    assert lab.vip6 == "fd00::10:0:0:100" and lab.ip6("rs2") == "fd00::10:0:0:12"
    assert lab.ip6("c1") == "fd00::10:0:0:1"
    assert lab.server_by_ip("fd00::10:0:0:13") == "rs3" == lab.server_by_ip("10.0.0.13")


@pytest.mark.parametrize("name", topo.topology_names())
def test_ipv6_lvsadm_is_the_twin_of_every_one_switch_lab(name):
    loaded = topo.load_topology(name)
    vip6 = topo.ipv6_of(loaded["vip"])
    twin = topo.ipv6_lvsadm(loaded)
    assert len(twin) == len(loaded["lvsadm"])
    for old, new in zip(loaded["lvsadm"], twin):
        a, b = cmdline.parse_args(shlex.split(old)), cmdline.parse_args(shlex.split(new))
        assert (b.command, b.protocol, b.port, b.af) == (a.command, a.protocol, a.port, 6)
        assert b.address == vip6
        if a.server_address is not None:
            server = next(s for s in loaded["servers"] if s["ip"] == a.server_address)
            expect = a.server_address if server["method"] == "tunnel" \
                else topo.ipv6_of(a.server_address)
            assert (b.server_address, b.server_port) == (expect, a.server_port)
            assert b.server == a.server        # method, weight
        else:
            assert {k: v for k, v in b.service.items() if k != "netmask"} == \
                {k: v for k, v in a.service.items() if k != "netmask"}


def test_ipv6_lvsadm_examples():
    assert topo.ipv6_lvsadm(topo.load_topology("persist"))[0] == \
        "-A -t [fd00::10:0:0:100]:80 -s rr -p 30 -M 112"
    assert topo.ipv6_lvsadm(topo.load_topology("nat"))[3] == \
        "-a -t [fd00::10:0:0:100]:80 -r [fd00::10:0:0:13]:8080 -m"
    # an IPv6 VIP served by IPv4 tunnel endpoints
    assert topo.ipv6_lvsadm(topo.load_topology("tunnel"))[1] == \
        "-a -t [fd00::10:0:0:100]:80 -r 10.0.0.11:80 -i"


def _spec(name, method=None):
    loaded = topo.load_topology({"droute": "droute", "tunnel": "tunnel"}.get(method, "nat"))
    hosts = loaded["clients"] + loaded["servers"]
    return next(h for h in hosts if h["name"] == name)


def test_host_setup_without_ipv6_is_as_before():
    """ipv6=False (the default): IPv6 off in every host, exactly as always."""
    assert topo.host_setup_commands(_spec("c1"), "10.0.0.100", "c1-eth0") == [
        "ethtool -K c1-eth0 tx off",
        "sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1",
        "sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0",
    ]
    dr = topo.host_setup_commands(_spec("rs1", "droute"), "10.0.0.100", "rs1-eth0")
    assert dr[-1] == "ip addr add 10.0.0.100/32 dev lo"
    assert not any("ip -6" in c or "disable_ipv6=0" in c for c in dr)
    vx = topo.host_setup_commands(_spec("rs1", "tunnel"), "10.0.0.100", "rs1-eth0")
    assert vx[-1] == "ip addr add 10.0.0.100/32 dev vx0"
    assert not any("ip -6" in c for c in vx)


def test_host_setup_with_ipv6():
    cmds = topo.host_setup_commands(_spec("c1"), "10.0.0.100", "c1-eth0", ipv6=True)
    text = "\n".join(cmds)
    assert "disable_ipv6=1 net.ipv6.conf.default" not in text      # IPv6 stays on
    assert cmds.index("sysctl -qw net.ipv6.conf.c1-eth0.disable_ipv6=1") \
        < next(i for i, c in enumerate(cmds) if "c1-eth0.accept_dad=0" in c) \
        < cmds.index("sysctl -qw net.ipv6.conf.c1-eth0.disable_ipv6=0")
    for dev in ("all", "default", "c1-eth0"):
        for setting in ("accept_dad=0", "router_solicitations=0"):
            assert f"net.ipv6.conf.{dev}.{setting}" in text
    assert "ip -6 addr add fd00::10:0:0:1/64 dev c1-eth0 nodad" in cmds
    assert "ethtool -K c1-eth0 tx off" in cmds
    dr = topo.host_setup_commands(_spec("rs1", "droute"), "10.0.0.100", "rs1-eth0", ipv6=True)
    assert "ip -6 addr add fd00::10:0:0:11/64 dev rs1-eth0 nodad" in dr
    assert dr[-2:] == ["ip addr add 10.0.0.100/32 dev lo",
                       "ip -6 addr add fd00::10:0:0:100/128 dev lo"]
    vx = topo.host_setup_commands(_spec("rs1", "tunnel"), "10.0.0.100", "rs1-eth0", ipv6=True)
    assert vx[-1] == "ip -6 addr add fd00::10:0:0:100/128 dev vx0 nodad"
    # the quiet defaults are set before vx0 exists
    assert next(i for i, c in enumerate(vx) if "default.accept_dad=0" in c) \
        < next(i for i, c in enumerate(vx) if c.startswith("ip link add vx0"))
