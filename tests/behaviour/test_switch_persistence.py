"""``--pe switch``: a template's later connections stay in the switch."""

import pytest

from lvs_app import ids
from lvs_app import ofmsg
from lvs_app import pipeline as pl
from tests.behaviour.conftest import VIP, VMAC, DirectorLab, mac_of, tcp

RS = ("10.0.0.11", "10.0.0.12", "10.0.0.13")
C1, C2 = "10.0.0.1", "10.0.0.2"


def service(lab, method="-m", opts="-s rr -p 60 --pe switch", vip=VIP):
    lab.lvsadm(f"-A -t {vip}:80 {opts}")
    for rs in RS:
        lab.lvsadm(f"-a -t {vip}:80 -r {rs} {method}")


def kinds(lab, kind):
    return [f for f in lab.sw.flows() if ids.Cookie.parse(f.cookie).kind == kind]


@pytest.fixture
def punts(lab):
    """The PacketIns of client traffic (from SERVICE) the controller handles."""
    seen = []
    handle = lab.manager.packet_in

    def counted(*args, **kwargs):
        if args[3] == pl.SERVICE:
            seen.append(args)
        return handle(*args, **kwargs)

    lab.manager.packet_in = counted
    return seen


def reply(lab, server, client, cport, flags="A"):
    return lab.send(tcp(server, client, 80, cport, flags=flags, in_port=lab.hosts[server],
                        eth_src=mac_of(server), eth_dst=mac_of(client)))


def test_later_connections_of_a_client_never_reach_the_controller(lab, punts):
    service(lab)
    first = lab.connect(C1, 41000)
    assert len(punts) == 1                                   # the first SYN
    [syn_flow] = kinds(lab, ids.KIND_TEMPLATE_SYN)
    [carry] = kinds(lab, ids.KIND_TEMPLATE)
    [nat] = kinds(lab, ids.KIND_TEMPLATE_NAT)
    assert (syn_flow.priority, syn_flow.idle_timeout) == (pl.PRIO_TEMPLATE_SYN, 60)
    assert carry.idle_timeout == 900                         # lives while they do
    assert (nat.table_id, nat.priority) == (pl.REVERSE, pl.PRIO_TEMPLATE_NAT)
    # the reply flow serves the first connection too; no conn_out punt
    assert kinds(lab, ids.KIND_REVERSE) == kinds(lab, ids.KIND_REVERSE_TEMPLATE) == []
    [(port, pkt)] = reply(lab, first, C1, 41000, "SA")
    assert (port, pkt["ipv4_src"], pkt["tcp_src"]) == (1, VIP, 80)
    before = len(lab.director.switches[1].conns)
    for cport in range(41001, 41011):
        assert lab.connect(C1, cport) == first
        [(port, pkt)] = reply(lab, first, C1, cport, "SA")
        assert (port, pkt["ipv4_src"], pkt["tcp_src"], pkt["eth_src"]) == (1, VIP, 80, VMAC)
        assert lab.close(C1, cport) == first
    assert len(punts) == 1 and len(lab.director.switches[1].conns) == before
    assert kinds(lab, ids.KIND_TEMPLATE_SYN)[0].packet_count == 10
    # another client gets its own template, through the controller once
    assert lab.connect(C2, 41000) != first and len(punts) == 2


def test_the_syn_flow_is_the_template_timer_and_the_carrying_flow_keeps_it(lab, punts):
    service(lab)
    first = lab.connect(C1, 41100)                  # stays open
    lab.advance(30)
    assert lab.connect(C1, 41101) == first          # re-arms the SYN flow in the switch
    lab.advance(40)
    assert len(kinds(lab, ids.KIND_TEMPLATE_SYN)) == 1     # t=70: armed at 30
    lab.advance(25)
    assert kinds(lab, ids.KIND_TEMPLATE_SYN) == []  # t=95: no new connection for 60 s
    assert len(kinds(lab, ids.KIND_TEMPLATE)) == 1  # its connections still live
    n = len(punts)
    assert lab.connect(C1, 41102) == first          # through the controller, same server
    assert len(punts) == n + 1 and len(kinds(lab, ids.KIND_TEMPLATE_SYN)) == 1
    assert lab.counts(first) == (2, 0, 1)           # the controller's connections
    assert lab.connect(C1, 41103) == first and len(punts) == n + 1


def test_a_quiet_client_loses_its_template_after_the_established_timeout(lab):
    service(lab, opts="-s rr -p 60 --pe switch")
    lab.lvsadm("--set 900 120 300")
    first = lab.connect(C1, 41200)
    lab.close(C1, 41200)
    lab.advance(901)
    assert kinds(lab, ids.KIND_TEMPLATE) == kinds(lab, ids.KIND_TEMPLATE_SYN) == []
    assert kinds(lab, ids.KIND_TEMPLATE_NAT) == [] and lab.counts(first) == (0, 0, 0)
    assert lab.connect(C1, 41201) != first          # scheduled afresh: rr moves on


def test_a_clients_rst_of_a_carried_connection_reaches_its_server(lab, punts):
    service(lab, method="-g")
    first = lab.connect(C1, 41300)
    assert lab.connect(C1, 41301) == first
    [(port, pkt)] = lab.syn(C1, 41301, flags="R")   # the RST punt sits above the template
    assert (port, pkt["eth_dst"], pkt["tcp_flags"] & 0x04) == (lab.hosts[first],
                                                                mac_of(first), 0x04)
    assert kinds(lab, ids.KIND_TEMPLATE_NAT) == []  # direct routing: no reply flow
    assert lab.syn(C2, 41302, flags="R") == []      # no template: dropped, as IPVS does


def test_a_deleted_server_sends_new_connections_elsewhere_and_comes_back(lab, punts):
    service(lab)
    first = lab.connect(C1, 41400)
    lab.lvsadm(f"-d -t {VIP}:80 -r {first}")
    assert kinds(lab, ids.KIND_TEMPLATE_SYN) == []
    second = lab.connect(C1, 41401)                 # the template is invalid: a new one
    assert second not in (first, None)
    n = len(punts)
    assert lab.connect(C1, 41402) == second and len(punts) == n
    # the old template's reply flow stays while its connection's entry lives
    assert sorted(f.match["ipv4_src"] for f in kinds(lab, ids.KIND_TEMPLATE_NAT)) == sorted(
        [first, second])
    assert lab.server_of(lab.syn(C1, 41400, flags="A")) is None   # dropped, as IPVS does
    lab.lvsadm(f"-a -t {VIP}:80 -r {first} -m")       # the dest trash: it continues
    assert lab.server_of(lab.syn(C1, 41400, flags="A")) == first
    [(_, pkt)] = reply(lab, first, C1, 41400)
    assert pkt["ipv4_src"] == VIP


def test_quiescing_with_expire_quiescent_template(lab):
    service(lab)
    first = lab.connect(C1, 41500)
    lab.lvsadm(f"-e -t {VIP}:80 -r {first} -m -w 0")
    assert lab.connect(C1, 41501) == first          # IPVS keeps quiesced servers' templates
    lab.client.request("PUT", "/ipvs/settings", {"expire_quiescent_template": True})
    lab.lvsadm(f"-e -t {VIP}:80 -r {first} -m -w 0")
    assert kinds(lab, ids.KIND_TEMPLATE_SYN) == []
    assert lab.connect(C1, 41502) != first


def test_two_vips_that_share_a_server_port_for_one_client(lab, punts):
    vip2 = "10.0.0.101"
    lab.lvsadm(f"-A -t {VIP}:80 -s rr -p 60 --pe switch")
    lab.lvsadm(f"-a -t {VIP}:80 -r 10.0.0.11 -m")
    lab.lvsadm(f"-A -t {vip2}:80 -s rr -p 60 --pe switch")
    lab.lvsadm(f"-a -t {vip2}:80 -r 10.0.0.11 -m")
    lab.connect(C1, 41700)
    lab.connect(C1, 41701, vip=vip2)
    assert {f.match["ipv4_dst"] for f in kinds(lab, ids.KIND_TEMPLATE_SYN)} == {VIP}
    n = len(punts)
    lab.connect(C1, 41702, vip=vip2)                 # an ordinary template: its SYN punts
    assert len(punts) == n + 1
    [(_, pkt)] = reply(lab, "10.0.0.11", C1, 41702, "SA")
    assert (pkt["ipv4_src"], pkt["tcp_src"]) == (vip2, 80)
    lab.connect(C1, 41703)                           # VIP's stays in the switch
    [(_, pkt)] = reply(lab, "10.0.0.11", C1, 41703, "SA")
    assert (pkt["ipv4_src"], len(punts)) == (VIP, n + 1)


def test_turning_the_engine_off_retires_the_templates(lab, punts):
    service(lab)
    first = lab.connect(C1, 41800)
    lab.lvsadm(f"-E -t {VIP}:80 -s rr -p 60")
    assert kinds(lab, ids.KIND_TEMPLATE_SYN) == []
    # the first connection's replies still need the reply flow
    [(_, pkt)] = reply(lab, first, C1, 41800)
    assert pkt["ipv4_src"] == VIP
    n = len(punts)
    second = lab.connect(C1, 41801)
    assert len(punts) == n + 1 and kinds(lab, ids.KIND_TEMPLATE_SYN) == []
    assert len(kinds(lab, ids.KIND_REVERSE)) == 1            # an ordinary connection's
    [(_, pkt)] = reply(lab, second, C1, 41801)
    assert pkt["ipv4_src"] == VIP
    lab.close(C1, 41800)
    lab.advance(5)                                           # its entry ends
    lab.advance(120)
    assert kinds(lab, ids.KIND_TEMPLATE_NAT) == []


def test_listing_and_saving_name_the_engine(lab):
    service(lab)
    assert f"TCP  {VIP}:80 rr persistent 60 pe switch" in lab.lvsadm("-L -n")
    assert f"-A -t {VIP}:80 -s rr -p 60 --pe switch" in lab.lvsadm("-S -n")


def hot_flows(lab):
    return sorted((f.table_id, f.priority, f.cookie, str(f.match)) for f in lab.sw.flows()
                  if ids.Cookie.parse(f.cookie).kind in (ids.KIND_TEMPLATE_SYN,
                                                         ids.KIND_TEMPLATE_NAT))


def test_a_restarted_controller_keeps_the_templates_in_the_switch(tmp_path):
    lab = DirectorLab(rules_path=str(tmp_path / "lvs.rules"))
    service(lab)
    first = lab.connect(C1, 41900)
    lab.connect(C2, 41900)
    before = hot_flows(lab)
    assert len(before) == 4
    lab.restart_controller()
    assert hot_flows(lab) == before
    templates = lab.director.switches[1].templates.values()
    assert len(templates) == 2 and all(t.hot and t.hot_nat for t in templates)
    handled = []
    handle = lab.manager.packet_in
    lab.manager.packet_in = lambda *a, **k: handled.append(a[3]) or handle(*a, **k)
    assert lab.connect(C1, 41901) == first and pl.SERVICE not in handled


def test_a_restart_deletes_switch_flows_whose_template_is_gone(tmp_path):
    lab = DirectorLab(rules_path=str(tmp_path / "lvs.rules"))
    service(lab)
    lab.connect(C1, 42000)
    [carry] = kinds(lab, ids.KIND_TEMPLATE)
    lab.sw.apply(lab.director.flows.delete_template(
        lab.director.switches[1], next(iter(lab.director.switches[1].templates.values())),
        ids.Cookie.parse(carry.cookie).service)[0][1])       # only its carrying flow
    assert len(hot_flows(lab)) == 2
    lab.restart_controller()
    assert hot_flows(lab) == []


def test_the_sweep_ends_a_template_whose_carrying_flow_vanished_and_its_syn_flow(lab):
    """A carrying flow deleted behind the director's back (no FlowRemoved it
    acts on): the sweep finds it gone and takes the SYN flow, which the
    client's SYNs kept alive, with it."""
    service(lab, opts="-s rr -p 600 --pe switch")
    lab.connect(C1, 42100)
    [carry] = kinds(lab, ids.KIND_TEMPLATE)
    [template] = lab.director.switches[1].templates.values()
    lab.sw.apply(pl.TABLES[pl.SERVICE].delete((carry.cookie, (1 << 64) - 1),
                                              ofmsg.match(**template.matches[0]),
                                              pl.PRIO_TEMPLATE))
    assert kinds(lab, ids.KIND_TEMPLATE) == []
    lab.advance(1)
    assert len(kinds(lab, ids.KIND_TEMPLATE_SYN)) == 1 and lab.director.switches[1].templates
    for i in range(10):                     # t=1..1001: its SYNs keep the SYN flow alive
        lab.syn(C1, 42101 + i)
        lab.advance(100)
    assert kinds(lab, ids.KIND_TEMPLATE_SYN) == [] and not lab.director.switches[1].templates
