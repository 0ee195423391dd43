"""The switch is the state store: a restarted controller reads its flows back.

A restart here is a new Manager (the object ryu-manager builds) with the same
rules file, connecting to the same fake switch, whose flows stayed in place.
"""

import re

import pytest

from lvs_app import ids
from lvs_app import pipeline as pl
from tests.behaviour.conftest import VIP, VMAC, DirectorLab, mac_of
from tests.fakeswitch import tcp

RS = ("10.0.0.11", "10.0.0.12", "10.0.0.13")
CLIENTS = ("10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4")


@pytest.fixture
def rlab(tmp_path):
    return DirectorLab(rules_path=str(tmp_path / "lvs.rules"))


def service(lab, opts, method, port=80):
    lab.lvsadm(f"-A -t 10.0.0.100:{port} {opts}")
    for rs in RS:
        lab.lvsadm(f"-a -t 10.0.0.100:{port} -r {rs}{':8080' if method == '-m' else ''} "
                   f"{method}")


def state(lab):
    """What lvsadm shows, without the expiry times (they move on)."""
    listing = [re.sub(r"^(\w+) \d\d:\d\d ", r"\1 ", line)
               for line in lab.lvsadm("-L -c -n").splitlines()[2:]]
    table = lab.lvsadm("-L -n --persistent-conn")
    return sorted(listing), table


def flows_of(lab, kind):
    return [f for f in lab.sw.flows() if ids.Cookie.parse(f.cookie).kind == kind]


@pytest.mark.parametrize("method", ["-m", "-g", "-i"])
def test_a_restart_recovers_connections_templates_and_counters(rlab, method):
    lab = rlab
    service(lab, "-s rr -p 300", method)
    homes = {c: lab.connect(c, 40000 + i) for i, c in enumerate(CLIENTS)}
    lab.close(CLIENTS[0], 40000)                             # one in FIN_WAIT
    lab.advance(70)                                         # the others ESTABLISHED
    before = state(lab)
    counts = {server: lab.counts(server) for server in RS}
    assert before[0] and "NONE" in "".join(before[0]) and "FIN_WAIT" in "".join(before[0])
    lab.restart_controller()
    # a closed connection's FIN_WAIT entry lived in the controller alone (its
    # flow ended FIN_IDLE after its FIN, see lifecycle.py): a restart forgets
    # it, one InActConn less; everything else comes back as it was
    assert state(lab)[0] == [row for row in before[0] if "FIN_WAIT" not in row]
    closed = homes[CLIENTS[0]]
    counts[closed] = (counts[closed][0], counts[closed][1] - 1, counts[closed][2])
    assert {server: lab.counts(server) for server in RS} == counts
    # clients asked in the reverse order keep their servers (the templates)
    for i, c in enumerate(reversed(CLIENTS)):
        assert lab.connect(c, 41000 + i) == homes[c]
    # an established connection goes on in the switch alone
    out = lab.syn(CLIENTS[1], 40001, flags="A")
    assert lab.server_of(out) == homes[CLIENTS[1]]


def test_a_restart_keeps_nat_replies_and_ftp_less_flows_in_place(rlab):
    lab = rlab
    service(lab, "-s rr", "-m")
    server = lab.connect(CLIENTS[0], 40100)
    before = {f.cookie: f.match for f in lab.sw.flows()}
    lab.restart_controller()
    after = {f.cookie: f.match for f in lab.sw.flows()}
    assert before == after                                  # nothing wiped, nothing new
    reply = tcp(server, CLIENTS[0], 8080, 40100, flags="A", in_port=lab.hosts[server],
                eth_src=mac_of(server), eth_dst=mac_of(CLIENTS[0]))
    out = dict(lab.send(reply))        # flooded if the client's port is not known yet
    assert (out[1]["ipv4_src"], out[1]["tcp_src"], out[1]["eth_src"]) == (VIP, 80, VMAC)
    assert all(pkt["ipv4_src"] == VIP for pkt in out.values())


def test_a_recovered_entry_expires_and_counts_down_as_before(rlab):
    lab = rlab
    service(lab, "-s rr", "-g")
    server = lab.connect(CLIENTS[0], 40200)
    lab.close(CLIENTS[0], 40200)                             # FIN_WAIT, 120 s
    lab.restart_controller()
    assert lab.counts(server) == (0, 1, 0)
    lab.advance(121)
    assert lab.counts(server) == (0, 0, 0) and lab.director.switches[1].conns == {}


def test_what_the_table_no_longer_has_is_removed_from_the_switch(tmp_path):
    rules = tmp_path / "lvs.rules"
    lab = DirectorLab(rules_path=str(rules))
    service(lab, "-s rr -p 300", "-g")
    lab.lvsadm("-A -t 10.0.0.100:443 -s rr")
    lab.lvsadm("-a -t 10.0.0.100:443 -r 10.0.0.11 -g")
    for i, c in enumerate(CLIENTS[:3]):
        lab.connect(c, 40300 + i)
        lab.connect(c, 40310 + i, dport=443)
    # while the controller is away, the operator edits the rules file
    text = rules.read_text()
    text = "\n".join(line for line in text.splitlines()
                     if ":443" not in line and "10.0.0.12" not in line) + "\n"
    rules.write_text(text)
    lab.restart_controller()
    assert not [f for f in flows_of(lab, ids.KIND_CONN) if f.match["tcp_dst"] == 443]
    dead = [s for s in lab.director.switches[1].conns.values()
            if str(s.dest.address) == "10.0.0.12"]
    assert dead == [] and not [t for t in lab.director.switches[1].templates.values()
                               if str(t.dest.address) == "10.0.0.12"]
    assert not [f for f in flows_of(lab, ids.KIND_CONN) + flows_of(lab, ids.KIND_TEMPLATE)
                if ids.Cookie.parse(f.cookie).server == 2]     # 10.0.0.12's number
    punts = [f for f in flows_of(lab, ids.KIND_VIP) if f.table_id == pl.SERVICE]
    assert punts and all(f.match.get("ipv4_dst") == VIP for f in punts)


def test_a_flow_of_another_pipeline_version_is_rebuilt(rlab):
    lab = rlab
    service(lab, "-s rr", "-g")
    server = lab.connect(CLIENTS[0], 40400)
    [flow] = flows_of(lab, ids.KIND_CONN)
    old = ids.Cookie(ids.KIND_CONN, *divmod(flow.cookie & 0xFFFFFFFFFFFF, 1 << 24),
                     version=(ids.PIPELINE_VERSION + 1) & 0xF)
    flow.cookie = old.value                                  # as an older release left it
    lab.restart_controller()
    [flow] = flows_of(lab, ids.KIND_CONN)
    assert ids.Cookie.parse(flow.cookie).version == ids.PIPELINE_VERSION
    assert lab.server_of(lab.syn(CLIENTS[0], 40400, flags="A")) == server


# -- a second connection for a connected datapath id ----------------------------------

def test_a_quick_reconnect_leaves_no_phantom_counts(lab):
    service(lab, "-s rr", "-g")
    server = lab.connect(CLIENTS[0], 40500)
    old, new = lab.datapath, type(lab.datapath)(lab)
    lab.manager.switch_connected(1, new, {20: "vxlan0"})    # the old session is not dead yet
    assert old.echoes and not new.closed                    # the first one is asked
    lab.advance(4)                                          # ...and never answers
    assert lab.manager.datapaths[1] is new
    assert lab.counts(server) == (1, 0, 0)                  # once, not twice
    lab.manager.switch_disconnected(1, old)                 # its death, reported late
    assert lab.counts(server) == (1, 0, 0) and lab.manager.datapaths[1] is new


def test_a_second_connection_for_a_live_switch_is_refused(lab):
    service(lab, "-s rr", "-g")
    server = lab.connect(CLIENTS[0], 40600)
    old, intruder = lab.datapath, type(lab.datapath)(lab)
    lab.manager.switch_connected(1, intruder, {})
    [echo] = old.echoes
    lab.manager.echo_reply(1, old, echo.data)               # the first one answers
    assert intruder.closed and lab.manager.datapaths[1] is old
    lab.advance(4)
    assert lab.manager.datapaths[1] is old and lab.counts(server) == (1, 0, 0)


def test_a_switch_of_an_older_version_loses_its_fin_punts_and_gains_the_stray_punt(rlab):
    """Older versions punted every FIN to a VIP; now a FIN stays in the switch
    (lifecycle.py).  A restarted controller finds such a switch and fixes it."""
    from lvs_app import ofmsg
    from lvs_app import packet as lvspkt
    lab = rlab
    service(lab, "-s rr", "-g")
    # what an older version left behind: no stray punt, a FIN punt
    lab.sw.apply(pl.TABLES[pl.SERVICE].delete(
        ids.cookie_mask(ids.KIND_VIP), ofmsg.match(eth_type=lvspkt.ETH_IP, ip_proto=6,
                                                   ipv4_dst=VIP), pl.PRIO_STRAY))
    assert pl.PRIO_STRAY not in {f.priority for f in lab.sw.flows(table_id=pl.SERVICE)}
    lab.sw.apply(pl.TABLES[pl.SERVICE].flow(
        pl.PRIO_PUNT_TCP + lvspkt.TCP_FIN,
        ofmsg.match(eth_type=lvspkt.ETH_IP, ip_proto=6, ipv4_dst=VIP,
                    tcp_flags=(lvspkt.TCP_FIN, lvspkt.TCP_FIN)),
        ofmsg.punt(), ids.Cookie(ids.KIND_VIP).value))
    lab.restart_controller()
    priorities = {f.priority for f in lab.sw.flows(table_id=pl.SERVICE)}
    assert pl.PRIO_PUNT_TCP + lvspkt.TCP_FIN not in priorities and pl.PRIO_STRAY in priorities
    server = lab.connect(CLIENTS[0], 40400)
    lab.close(CLIENTS[0], 40400)
    lab.advance(2)
    assert lab.counts(server) == (0, 1, 0)
