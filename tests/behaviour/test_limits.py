"""A cap on the connection table, and IPVS's defences as it nears (limits.py)."""

from lvs_app import ids
from lvs_app import pipeline as pl
from lvs_app.limits import SECURE_SYN_RECV
from tests.behaviour.conftest import DirectorLab


def conn_flow(lab, client, sport):
    return [f for f in lab.sw.flows(table_id=pl.SERVICE)
            if ids.Cookie.parse(f.cookie).kind == ids.KIND_CONN
            and f.match.get("ipv4_src") == client and f.match.get("tcp_src") == sport]


def test_near_the_cap_half_open_entries_go_first_and_at_it_syns_are_refused():
    lab = DirectorLab(max_connections=10)
    lab.lvsadm("-A -t 10.0.0.100:80 -s rr")
    lab.lvsadm("-a -t 10.0.0.100:80 -r 10.0.0.11 -g")
    for i in range(9):                                     # a flood: SYNs, nothing more
        lab.syn(f"10.0.3.{i + 1}", 50000 + i)
    assert len(lab.director.switches[1].conns) == 9
    limits = lab.director.limits
    lab.advance(2)
    # 9 of 10: under pressure, a new connection first ends the two oldest half-open
    assert lab.connect("10.0.0.1", 40000) == "10.0.0.11"
    assert limits.counters["drop_entry"] == 2 and not conn_flow(lab, "10.0.3.1", 50000)
    assert conn_flow(lab, "10.0.0.1", 40000)[0].idle_timeout == SECURE_SYN_RECV   # secure_tcp
    # newer SYNs keep replacing the flood's older half-open entries
    for i in range(3):
        lab.syn(f"10.0.4.{i + 1}", 51000 + i)
    assert len(lab.director.switches[1].conns) == 9 and limits.counters["drop_entry"] == 4


def test_a_full_table_of_young_entries_refuses_new_syns():
    lab = DirectorLab(max_connections=10)
    lab.lvsadm("-A -t 10.0.0.100:80 -s rr")
    lab.lvsadm("-a -t 10.0.0.100:80 -r 10.0.0.11 -g")
    for i in range(10):                                    # all within the same second
        lab.syn(f"10.0.3.{i + 1}", 50000 + i)
    assert len(lab.director.switches[1].conns) == 10
    assert lab.server_of(lab.syn("10.0.0.2", 40001)) is None          # refused
    assert lab.director.limits.counters["refused"] == 1
    assert len(lab.director.switches[1].conns) == 10


def test_without_pressure_nothing_is_dropped(lab):
    lab.lvsadm("-A -t 10.0.0.100:80 -s rr")
    lab.lvsadm("-a -t 10.0.0.100:80 -r 10.0.0.11 -g")
    for i in range(50):
        lab.syn(f"10.0.3.{i + 1}", 50000 + i)
    assert len(lab.director.switches[1].conns) == 50
    assert not lab.director.limits.counters
