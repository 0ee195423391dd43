"""The switch protects the controller: punts pass OpenFlow meters."""

from lvs_app import ids
from lvs_app import pipeline as pl
from tests.behaviour.conftest import DirectorLab


def meters_of(flow):
    return [i.meter_id for i in flow.instructions if type(i).__name__ == "OFPInstructionMeter"]


def test_punts_pass_meters_and_connections_do_not(tmp_path):
    lab = DirectorLab(rules_path=str(tmp_path / "lvs.rules"), packetin_pps=500)
    assert set(lab.meters) == {pl.PuntMeters.SERVICE, pl.PuntMeters.L2, pl.PuntMeters.STRAY}
    assert [b.rate for b in lab.meters[1].bands] == [500]
    assert [b.rate for b in lab.meters[2].bands] == [250]
    assert [b.rate for b in lab.meters[4].bands] == [50]
    lab.lvsadm("-A -t 10.0.0.100:21 -s rr")
    lab.lvsadm("-a -t 10.0.0.100:21 -r 10.0.0.11 -m")
    lab.connect("10.0.0.1", 40000, dport=21)
    by_kind = {}
    for flow in lab.sw.flows():
        by_kind.setdefault(ids.Cookie.parse(flow.cookie).kind, []).append(flow)
    vip_punts = [f for f in by_kind[ids.KIND_VIP] if f.table_id == pl.SERVICE]
    assert vip_punts and all(meters_of(f) == [pl.PuntMeters.SERVICE] for f in vip_punts
                             if f.priority != pl.PRIO_STRAY)
    # packets no flow carries have a meter of their own: they cannot crowd out SYNs
    assert [meters_of(f) for f in vip_punts if f.priority == pl.PRIO_STRAY] == \
        [[pl.PuntMeters.STRAY]]
    arp = [f for f in by_kind[ids.KIND_VIP] if f.table_id == pl.CLASSIFY
           and f.priority == pl.PRIO_ARP]
    assert [meters_of(f) for f in arp] == [[pl.PuntMeters.L2]]
    assert all(meters_of(f) == [pl.PuntMeters.SERVICE] for f in by_kind[ids.KIND_FRAG])
    [miss] = [f for f in by_kind[ids.KIND_BASE] if f.table_id == pl.FORWARD]
    assert meters_of(miss) == [pl.PuntMeters.L2]
    # an FTP control connection's packets pass through the controller: never metered
    assert all(meters_of(f) == [] for f in by_kind[ids.KIND_CONN])
    # a restarted controller finds the meters there and modifies them
    lab.restart_controller()
    assert lab.meters[1].command == 1 and lab.director.switches[1].conns   # OFPMC_MODIFY


def test_no_meters_when_turned_off(lab):
    assert lab.meters == {}
    assert all(meters_of(f) == [] for f in lab.sw.flows())


def test_punt_meters_declare_add_or_modify():
    meters = pl.PuntMeters(1000)
    assert [(m.meter_id, m.command) for m in meters.mods()] == [(1, 0), (2, 0), (4, 0)]
    assert [(m.meter_id, m.command) for m in meters.mods([2])] == [(1, 0), (2, 1), (4, 0)]
    assert pl.PuntMeters(0).mods() == [] and pl.PuntMeters(0).service is None
