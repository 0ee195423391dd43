"""The fabric lab itself: topologies/leafspine.json, five switches with loops.

Only what needs no forwarding across the fabric: the topology file and its
errors, and a running lab: five OVS bridges (userspace datapath, OpenFlow13,
their dpids) all connected to lvs_app's controller started with
``--observe-links``, the lab's names for switches, dpids, hosts' switches and
ports, the links' veth ports on the bridges, and ``link_down``/``link_up``
changing the ports' state.  Traffic across the fabric is the director's
business and is tested with it.  When the controller has ``GET
/ipvs/fabric``, one more test compares what it learned by LLDP with what the
lab built (skipped on 404).
"""

import json
import re

import pytest

import lvslab
from lvslab_procs import RUN_DIR, run, wait_until

FABRIC = "leafspine"
DPIDS = {"l1": 1, "l2": 2, "l3": 3, "sp1": 101, "sp2": 102}
HOSTS = {"c1": ("l1", 1), "c2": ("l1", 2), "c3": ("l2", 1),
         "rs1": ("l2", 2), "rs2": ("l3", 1), "rs3": ("l3", 2)}
# (a, b): (port on a, port on b): hosts first on a leaf, then links in order
LINKS = {("l1", "sp1"): (3, 1), ("l1", "sp2"): (4, 1), ("l2", "sp1"): (3, 2),
         ("l2", "sp2"): (4, 2), ("l3", "sp1"): (3, 3), ("l3", "sp2"): (4, 3)}


# --------------------------------------------------------------------------
# no lab needed


def test_leafspine_topology():
    topo = lvslab.load_topology(FABRIC)
    assert "switch" not in topo
    assert {sw["name"]: sw["dpid"] for sw in topo["switches"]} == DPIDS
    assert [sw["role"] for sw in topo["switches"]] == ["leaf"] * 3 + ["spine"] * 2
    assert [tuple(link) for link in topo["links"]] == list(LINKS)
    assert {h["name"]: h["switch"] for h in topo["clients"] + topo["servers"]} == {
        name: sw for name, (sw, _) in HOSTS.items()}
    assert topo["controller_args"] == ["--observe-links"]
    assert topo["subnet"] == "10.0.0.0/24" and topo["vip"] == "10.0.0.100"
    assert {s["method"] for s in topo["servers"]} == {"masq"}
    assert lvslab.load_topology(topo) == topo          # a loaded topology loads again


def test_topology_names_keep_the_fabrics_apart():
    """The sweeps over every lab (also with Ryu's flooding learning switch) stay
    on the one-switch labs."""
    assert FABRIC not in lvslab.topology_names()
    assert FABRIC in lvslab.topology_names(fabric=True)
    assert set(lvslab.topology_names(fabric=None)) == (
        set(lvslab.topology_names()) | set(lvslab.topology_names(fabric=True)))


def test_controller_arguments():
    fabric = lvslab.Lab(FABRIC)
    assert fabric.controller_cmd[-1] == "--observe-links"
    assert fabric.controller_args == ["--observe-links"]
    # without the key: --observe-links for several switches, nothing for one
    topo = _fabric()
    del topo["controller_args"]
    assert lvslab.controller_args_of(lvslab.load_topology(topo)) == ["--observe-links"]
    one = lvslab.Lab("nat")
    assert one.controller_args == [] and "--observe-links" not in one.controller_cmd
    assert one.switch_names == ["s1"] and one.links == [] and one.switch_of("c1") == "s1"
    # a controller command of one's own gets no topology arguments
    plain = lvslab.Lab(FABRIC, controller_cmd=lvslab.SIMPLE_SWITCH_13_CMD)
    assert "--observe-links" not in plain.controller_cmd


def test_leafspine_tunnel_has_a_tunnel_endpoint_on_each_leaf_with_clients():
    lab = lvslab.Lab("leafspine_tunnel")
    assert {sw["name"]: sw["tunnel_ip"] for sw in lab.tunnel_switches} == {
        "l1": "10.0.0.254", "l2": "10.0.0.253"}
    assert {lab.switch_of(c) for c in lab.clients} == {"l1", "l2"}
    assert [lab.vxlan_port_name(sw) for sw in ("l1", "l2")] == ["vxlan-l1", "vxlan-l2"]
    assert lvslab.Lab("tunnel").vxlan_port_name() == lvslab.VXLAN_PORT_NAME


def test_one_switch_topologies_are_loaded_as_before():
    topo = lvslab.load_topology("nat")
    assert "switches" not in topo and "links" not in topo
    assert topo["switch"] == {"name": "s1", "dpid": 1, "tunnel_ip": "10.0.0.254"}


def _fabric(**changes):
    topo = json.loads((lvslab.TOPOLOGIES / f"{FABRIC}.json").read_text())
    topo.update(name=FABRIC, **changes)
    return topo


def _hosts(**switch_of):
    """The leafspine servers with some moved to other switches (None: no key)."""
    servers = _fabric()["servers"]
    for server in servers:
        if server["name"] in switch_of:
            if switch_of[server["name"]] is None:
                del server["switch"]
            else:
                server["switch"] = switch_of[server["name"]]
    return servers


_SWITCHES = _fabric()["switches"]


@pytest.mark.parametrize("changes, message", [
    ({"switch": {"name": "s1", "dpid": 1}},
     "topology leafspine: both 'switch' (one switch) and 'switches' (a fabric): say one of "
     "them"),
    ({"servers": _hosts(rs1=None)},
     "topology leafspine: server rs1: no 'switch' (in a fabric each host names the switch "
     "it hangs off: one of l1, l2, l3, sp1, sp2)"),
    ({"servers": _hosts(rs1="l9")},
     "topology leafspine: server rs1: switch 'l9' is not a switch of this topology "
     "(l1, l2, l3, sp1, sp2)"),
    ({"servers": _hosts(rs1="sp1")},
     "topology leafspine: host rs1: switch sp1 is a spine (hosts hang off leaves)"),
    ({"links": [["l1", "sp1"], ["l2", "sp9"]]},
     "topology leafspine: link l2-sp9: sp9 is not a switch of this topology "
     "(l1, l2, l3, sp1, sp2)"),
    ({"links": [["l1", "sp1"], ["sp1", "l1"]]},
     "topology leafspine: link sp1-l1: link l1-sp1 already joins these switches "
     "(one link between two switches)"),
    ({"links": [["l1", "sp1"], ["l2", "sp1"], ["l3", "sp1"], ["l1", "l2"]]},
     "topology leafspine: switch sp2: no path of links from switch l1 "
     "(the fabric is one L2 segment)"),
    ({"switches": _SWITCHES[:4] + [dict(_SWITCHES[4], dpid=101)]},
     "topology leafspine: switch sp2: dpid 101 is already the dpid of switch sp1"),
    ({"switches": _SWITCHES[:4] + [dict(_SWITCHES[4], port=7)]},
     "topology leafspine: switch sp2: unknown key(s) port (a switch has name, dpid, "
     "role, tunnel_ip)"),
    ({"switches": _SWITCHES[:4] + [dict(_SWITCHES[4], role="core")]},
     "topology leafspine: switch sp2: role 'core' must be one of leaf, spine"),
    ({"switches": _SWITCHES[:4] + [dict(_SWITCHES[4], name="spine0002")]},
     "topology leafspine: switch spine0002: name must match ^[a-z][a-z0-9]{0,7}$"),
    ({"switches": [dict(_SWITCHES[0], tunnel_ip="10.0.0.254"),
                   dict(_SWITCHES[1], tunnel_ip="10.0.0.254")] + _SWITCHES[2:]},
     "topology leafspine: switch l2: address 10.0.0.254 is already used by switch l1"),
    ({"switches": [dict(_SWITCHES[0], dpid=2 ** 32, tunnel_ip="10.0.0.254")] + _SWITCHES[1:]},
     "topology leafspine: switch l1: tunnel_ip: a tunnel endpoint's dpid 4294967296 must be "
     "below 2^32 (it is the pkt_mark of its outer packets' route)"),
    ({"servers": [dict(s, method="tunnel") for s in _fabric()["servers"]], "lvsadm": []},
     "topology leafspine: server rs1: method tunnel needs a switch with a tunnel_ip "
     "(the VXLAN endpoint)"),
    ({"controller_args": "--observe-links"},
     "topology leafspine: controller_args must be a list of strings (ryu-manager options)"),
], ids=["switch-and-switches", "host-without-switch", "host-unknown-switch",
        "host-on-spine", "link-unknown-switch", "link-twice", "not-connected", "dpid-twice",
        "unknown-key", "role", "switch-name", "tunnel-ip-twice", "tunnel-dpid",
        "tunnel-without-endpoint",
        "controller-args"])
def test_fabric_errors_name_the_rule(changes, message):
    with pytest.raises(lvslab.TopologyError) as err:
        lvslab.load_topology(_fabric(**changes))
    assert str(err.value) == message


def test_one_switch_errors_name_the_rule():
    topo = json.loads((lvslab.TOPOLOGIES / "nat.json").read_text())
    with pytest.raises(lvslab.TopologyError) as err:
        lvslab.load_topology(dict(topo, name="nat", links=[["s1", "s2"]]))
    assert str(err.value) == ("topology nat: 'links' joins the switches of a 'switches' "
                              "list; this topology has one 'switch'")
    topo["clients"][0]["switch"] = "l1"
    with pytest.raises(lvslab.TopologyError) as err:
        lvslab.load_topology(dict(topo, name="nat"))
    assert str(err.value) == ("topology nat: client c1: switch 'l1': this topology has one "
                              "switch, s1")


# --------------------------------------------------------------------------
# the running lab (lvs_app, --observe-links)

lab_marker = pytest.mark.lab(FABRIC)


@lab_marker
def test_lab_names_switches_hosts_and_ports(lab):
    assert lab.switch_names == list(DPIDS)
    assert lab.switch_name == "l1" and lab.multi_switch
    assert {sw: lab.dpid_of(sw) for sw in lab.switch_names} == DPIDS
    assert {h: (lab.switch_of(h), lab.port_of(h)) for h in HOSTS} == HOSTS
    assert lab.links == list(LINKS)
    for (a, b), ports in LINKS.items():
        assert lab.link_ports(a, b) == ports
        assert lab.link_ports(b, a) == ports[::-1]
    with pytest.raises(lvslab.LabError, match="no link between l1 and l2"):
        lab.link_ports("l1", "l2")
    with pytest.raises(lvslab.LabError, match="no switch s1"):
        lab.dpid_of("s1")
    with pytest.raises(lvslab.LabError, match="none, no switch holds a tunnel_ip"):
        lab.port_of(lvslab.VXLAN_PORT_NAME)


@lab_marker
def test_every_switch_is_connected_to_the_controller(lab):
    """lvs_app runs with --observe-links; each bridge has its initial flows and
    ovsdb says it is connected (is_connected lags by up to ~5 s)."""
    assert "--observe-links" in lab.controller_cmd
    assert lab.controller_cmd[1] == "lvs_app"
    counts = lab.flow_counts()
    assert set(counts) == set(DPIDS) and all(n >= lab.ready_flows for n in counts.values()), \
        counts
    assert lab.switch_name == "l1" and lab.flow_count() >= lab.ready_flows   # the default
    wait_until(lab.switch_connected, 15, 0.5, "every switch to be connected")
    for sw in DPIDS:
        assert lab.switch_connected(sw)
        targets = run(["ovs-vsctl", "get-controller", sw]).stdout.split()
        assert targets == [f"tcp:127.0.0.1:{lab.of_port}"], (sw, targets)
    assert lab.fabric_status, "start() says what it knew of the fabric"
    # the state file lists every bridge for a later lab's cleanup
    state = json.loads((RUN_DIR / "state.json").read_text())
    assert state["bridges"] == list(DPIDS) and state["topology"] == FABRIC


@lab_marker
def test_ovs_has_the_bridges_and_the_links_ports(lab):
    assert set(DPIDS) <= set(run(["ovs-vsctl", "list-br"]).stdout.split())
    for sw, dpid in DPIDS.items():
        bridge = run(["ovs-vsctl", "--bare", "--columns=datapath_type,protocols,other_config",
                      "list", "Bridge", sw]).stdout
        assert "netdev" in bridge and "OpenFlow13" in bridge, bridge
        assert f'datapath-id="{dpid:016x}"' in bridge or f"datapath-id={dpid:016x}" in bridge, \
            bridge
        want = {f"{sw}-eth{port}": port for h, (hs, port) in HOSTS.items() if hs == sw}
        for (a, b), (pa, pb) in LINKS.items():
            if sw in (a, b):
                want[f"{sw}-eth{pa if sw == a else pb}"] = pa if sw == a else pb
        assert sorted(run(["ovs-vsctl", "list-ports", sw]).stdout.split()) == sorted(want)
        for intf, port in want.items():
            ofport = run(["ovs-vsctl", "get", "Interface", intf, "ofport"]).stdout.strip()
            assert int(ofport) == port, (intf, ofport)
    for (a, b), (pa, pb) in LINKS.items():
        for intf in (f"{a}-eth{pa}", f"{b}-eth{pb}"):
            # a veth pair in the root namespace between the two bridges, no
            # transmit checksum offload
            link = run(["ip", "-d", "link", "show", intf]).stdout
            assert "veth" in link, link
            assert re.search(r"^tx-checksumming: off", run(["ethtool", "-k", intf]).stdout,
                             re.M), intf


def _port_block(switch, port):
    """The lines of ``ovs-ofctl dump-ports-desc`` about one port, as text."""
    out = run(["ovs-ofctl", "-O", "OpenFlow13", "dump-ports-desc", switch]).stdout
    blocks = re.split(r"\n(?= \S)", out)
    found = [b for b in blocks if re.match(rf"\s*{port}\(", b)]
    assert len(found) == 1, out
    return found[0]


@lab_marker
def test_link_down_and_up_change_the_ports_state(lab):
    (pa, pb), (qa, qb) = LINKS[("l1", "sp1")], LINKS[("l1", "sp2")]
    assert "LINK_DOWN" not in _port_block("l1", pa)
    try:
        lab.link_down("l1", "sp1")
        assert re.search(r"state:\s+LINK_DOWN", _port_block("l1", pa))
        assert re.search(r"state:\s+LINK_DOWN", _port_block("sp1", pb))
        assert lab.port_state("l1", pa) == lab.port_state("sp1", pb) == "LINK_DOWN"
        assert "LINK_DOWN" not in _port_block("l1", qa)       # the other uplink stays
        assert "LINK_DOWN" not in _port_block("sp2", qb)
        assert lab.fabric_links() == sorted(
            link for (a, b), (x, y) in LINKS.items() if (a, b) != ("l1", "sp1")
            for link in ((DPIDS[a], x, DPIDS[b], y), (DPIDS[b], y, DPIDS[a], x)))
    finally:
        lab.link_up("l1", "sp1")
    assert "LINK_DOWN" not in _port_block("l1", pa)
    assert "LINK_DOWN" not in _port_block("sp1", pb)
    assert len(lab.fabric_links()) == 2 * len(LINKS)
    # a host's link too
    try:
        lab.link_down("rs2", "l3")
        assert lab.port_state("l3", lab.port_of("rs2")) == "LINK_DOWN"
    finally:
        lab.link_up("rs2", "l3")
    assert "LINK_DOWN" not in lab.port_state("l3", lab.port_of("rs2"))
    with pytest.raises(lvslab.LabError, match="no link between l1 and l2"):
        lab.link_down("l1", "l2")


@lab_marker
def test_dump_shows_every_switch(lab):
    text = lab.dump()
    for sw in DPIDS:
        assert f"===== ovs-ofctl -O OpenFlow13 dump-flows {sw} =====" in text
        assert f"===== ovs-ofctl -O OpenFlow13 dump-ports-desc {sw} =====" in text
    assert "link l1:3 - sp1:1" in text and "--- c3 (switch l2 port 1)" in text


@lab_marker
def test_the_controller_learns_the_links(lab):
    """GET /ipvs/fabric (the director's): every switch, every link both ways;
    a link taken down leaves it and comes back by LLDP."""
    try:
        lab.fabric()
    except lvslab.FabricUnavailable:
        pytest.skip("the controller has no GET /ipvs/fabric yet (404)")
    lab.wait_fabric(15)
    try:
        lab.link_down("l2", "sp2")
        lab.wait_fabric(15)
    finally:
        lab.link_up("l2", "sp2")
    answer = lab.wait_fabric(30)
    assert len(answer["links"]) == 2 * len(LINKS)
