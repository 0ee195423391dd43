"""Entries whose FlowRemoved never came: the sweep asks the switch."""

from lvs_app import ids
from lvs_app import ofmsg
from lvs_app import pipeline as pl

C1 = "10.0.0.1"


def service(lab, opts="-s rr"):
    lab.lvsadm(f"-A -t 10.0.0.100:80 {opts}")
    lab.lvsadm("-a -t 10.0.0.100:80 -r 10.0.0.11 -g")


def key(sport):
    return ("tcp", 0x0A000001, sport, 0x0A000064, 80)


def test_an_entry_whose_flow_vanished_unannounced_is_swept(lab):
    service(lab, "-s rr -p 300")
    lab.connect(C1, 46000)
    assert lab.counts("10.0.0.11") == (1, 0, 1)
    # the switch loses the flows without a FlowRemoved the director would act on
    lab.sw.apply(ofmsg.flow_delete(ids.cookie_mask(ids.KIND_CONN)))
    lab.sw.apply(ofmsg.flow_delete(ids.cookie_mask(ids.KIND_TEMPLATE)))
    lab.sw.flow_removed.clear()
    lab.advance(60)
    assert key(46000) in lab.director.switches[1].conns      # not yet: its time is not up
    lab.advance(60)
    assert key(46000) not in lab.director.switches[1].conns
    lab.advance(300)
    assert lab.counts("10.0.0.11") == (0, 0, 0) and lab.director.switches[1].templates == {}
    assert lab.director.dropped["swept"] == 2


def test_a_busy_connection_is_kept_and_its_time_counted_again(lab):
    service(lab)
    lab.connect(C1, 46100)
    for _ in range(6):                                       # traffic every 20 s
        lab.advance(20)
        lab.syn(C1, 46100, flags="A")
    conn = lab.director.switches[1].conns[key(46100)]
    assert conn.expires_at > lab.now                         # re-timed from the switch
    assert lab.director.dropped["swept"] == 0
    assert [f for f in lab.sw.flows(table_id=pl.SERVICE)
            if ids.Cookie.parse(f.cookie).kind == ids.KIND_CONN]
