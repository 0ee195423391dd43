"""The manager: what the Ryu shim builds, its timed jobs, its one way out."""

import ipaddress
import logging
from types import SimpleNamespace

import pytest
from ryu.ofproto import ofproto_v1_3 as ofp
from ryu.ofproto import ofproto_v1_3_parser as parser

from lvs_app import ids as idmod
from lvs_app.hosts import MAX_PROBES
from lvs_app.ids import StableIds
from lvs_app.jobs import JobTable, TimedJob
from lvs_app.manager import Manager
from lvs_app.model import service_key
from lvs_app.pipeline import PipelineError
from tests.fakeswitch import FakeClock, packet_to_bytes, tcp


class RecordingDatapath:
    """A datapath that encodes what it is sent, as Ryu's does."""

    ofproto = ofp
    ofproto_parser = parser

    def __init__(self, dpid=1):
        self.id = dpid
        self.sent = []

    def send_msg(self, msg):
        msg.serialize()
        self.sent.append(msg)


def connect(manager, datapath, flows=()):
    """A switch connects and sends back ``flows`` (its flow statistics)."""
    manager.switch_connected(datapath.id, datapath)
    manager.flow_stats(datapath.id, list(flows))


def web_service(manager, method="masq"):
    manager.api.add_service({"protocol": "tcp", "address": "10.0.0.100", "port": 80,
                             "scheduler": "rr"})
    manager.api.add_server("tcp-10.0.0.100-80", {"address": "10.0.0.11", "method": method})


# -- the shim ------------------------------------------------------------------------

class FakeWsgi:
    def __init__(self):
        self.registory, self.routes = {}, []
        self.mapper = SimpleNamespace(connect=lambda *a, **k: self.routes.append(a))


def event(**msg):
    return SimpleNamespace(msg=SimpleNamespace(**msg))


def test_the_shim_builds_a_manager_and_hands_it_every_event():
    from lvs_app.ryuapp import LVSDirector
    wsgi = FakeWsgi()
    app = LVSDirector(wsgi=wsgi)
    assert isinstance(app.manager, Manager)
    clock = FakeClock()
    app.manager.clock = lambda: clock.now        # the shim's manager, on a fake clock
    assert wsgi.registory["IpvsController"].api is app.manager.api   # REST serves its API
    web_service(app.manager, method="droute")
    datapath = RecordingDatapath()
    datapath.ofproto_parser = parser
    app._switch_features(event(datapath=datapath))
    assert app.manager.datapaths[1] is datapath
    kinds = [type(m).__name__ for m in datapath.sent]
    assert kinds == ["OFPPortDescStatsRequest", "OFPFlowStatsRequest",   # flows first
                     "OFPMeterConfigStatsRequest"]                       # and the meters
    app._flow_stats(event(datapath=datapath, body=[], flags=0, xid=0))
    assert "OFPFlowMod" not in [type(m).__name__ for m in datapath.sent]   # meters to come
    app._meter_config(event(datapath=datapath, body=[], flags=0))
    kinds = [type(m).__name__ for m in datapath.sent]
    assert "OFPFlowMod" in kinds
    app._port_desc(event(datapath=datapath, body=[SimpleNamespace(port_no=5, name=b"vxlan0")]))
    assert app.manager.director.switches[1].tunnel_port == 5

    app.manager.director.hosts.macs[0x0A00000B] = bytes.fromhex("02000a00000b")
    before = len(datapath.sent)
    frame = packet_to_bytes(tcp("10.0.1.1", "10.0.0.100", 40000, 80, flags="S"))
    app._packet_in(event(datapath=datapath, match={"in_port": 1}, data=frame,
                         table_id=1))
    new = datapath.sent[before:]
    assert [type(m).__name__ for m in new] == ["OFPFlowMod", "OFPPacketOut"]
    assert [r["client"] for r in app.manager.connection_rows()] == ["10.0.1.1"]

    flow = new[0]
    clock.advance(60)                            # a half-open connection's SYN_RECV ends
    app._flow_removed(event(datapath=datapath, cookie=flow.cookie, match=flow.match,
                            duration_sec=60, duration_nsec=0, reason=ofp.OFPRR_IDLE_TIMEOUT,
                            packet_count=0, byte_count=0, table_id=1, hard_timeout=0))
    assert app.manager.connection_rows() == []

    other = RecordingDatapath()
    app._switch_gone(SimpleNamespace(datapath=other))            # not the current one
    assert 1 in app.manager.director.switches
    app._switch_gone(SimpleNamespace(datapath=datapath))
    assert 1 not in app.manager.director.switches and 1 not in app.manager.datapaths


def test_the_shim_logs_an_openflow_error_with_the_message_that_caused_it(caplog):
    from lvs_app.ryuapp import LVSDirector
    app = LVSDirector(wsgi=FakeWsgi())
    datapath = RecordingDatapath()
    app._switch_features(event(datapath=datapath))
    app._flow_stats(event(datapath=datapath, body=[], flags=0, xid=0))
    app._meter_config(event(datapath=datapath, body=[], flags=0))
    flow = next(m for m in datapath.sent if type(m).__name__ == "OFPFlowMod"
                and m.command == ofp.OFPFC_ADD)
    with caplog.at_level(logging.ERROR, logger="lvs_app"):
        app._error(event(datapath=datapath, xid=flow.xid, type=4, code=9, data=b""))
    [line] = [r.getMessage() for r in caplog.records]
    assert f"type=4 code=9 for xid={flow.xid} OFPFlowMod" in line
    assert f"table={flow.table_id} priority={flow.priority} cookie={flow.cookie:#x}" in line


def test_an_error_for_a_forgotten_xid_is_still_logged(caplog):
    manager = Manager()
    manager.switch_connected(1, RecordingDatapath())
    with caplog.at_level(logging.ERROR, logger="lvs_app"):
        assert manager.error(1, 0xDEAD, 1, 2, b"\x04\x0e") is None
    assert "message no longer known" in caplog.text


def test_every_message_gets_its_own_xid():
    manager = Manager()
    datapath = RecordingDatapath()
    manager.switch_connected(1, datapath)
    xids = [m.xid for m in datapath.sent]
    assert len(set(xids)) == len(xids) and all(xids)


def test_a_flow_that_breaks_the_pipeline_is_not_sent_and_the_controller_goes_on(caplog):
    def breaks(*args):
        raise PipelineError("bad flow")

    manager = Manager()
    datapath = RecordingDatapath()
    connect(manager, datapath)
    manager.director.packet_in = breaks
    before = len(datapath.sent)
    with caplog.at_level(logging.ERROR, logger="lvs_app"):
        manager.packet_in(1, 1, b"", 1)
    assert len(datapath.sent) == before
    assert "breaks the pipeline, nothing sent: bad flow" in caplog.text
    strict = Manager(strict=True)                  # the behaviour tests' manager
    strict.director.packet_in = breaks
    with pytest.raises(PipelineError, match="bad flow"):
        strict.packet_in(1, 1, b"", 1)


# -- timed jobs ----------------------------------------------------------------------

def test_timed_jobs_run_on_the_clock_they_are_given():
    clock = FakeClock()
    runs = []
    table = JobTable([TimedJob("a", 2, lambda now: runs.append(("a", now)) or []),
                      TimedJob("b", 5, lambda now: runs.append(("b", now)) or [])],
                     start=clock.now)
    for _ in range(10):
        clock.advance(1)
        table.run_due(clock.now)
    assert runs == [("a", 2), ("a", 4), ("b", 5), ("a", 6), ("a", 8), ("a", 10), ("b", 10)]


def test_a_late_timer_does_not_pile_up_missed_runs_and_a_failing_job_is_isolated(caplog):
    runs = []
    table = JobTable([TimedJob("boom", 1, lambda now: 1 / 0),
                      TimedJob("ok", 1, lambda now: runs.append(now) or [])])
    table.run_due(10.0)                  # 9 runs missed: one run, then the rhythm again
    table.run_due(10.5)
    table.run_due(11.0)
    assert runs == [10.0, 11.0]
    assert "timed job boom failed" in caplog.text


def test_a_timed_job_declaration_is_checked():
    with pytest.raises(ValueError, match="interval 0 must be > 0"):
        TimedJob("x", 0, lambda now: [])
    with pytest.raises(ValueError, match="declared twice"):
        JobTable([TimedJob("x", 1, lambda now: []), TimedJob("x", 2, lambda now: [])])


def test_the_manager_declares_its_jobs_and_ticks_them_on_its_clock():
    clock = FakeClock()
    manager = Manager(clock=lambda: clock.now)
    assert set(manager.jobs.jobs) == {"scheduler-ageing", "host-refresh", "fragment-expiry",
                                      "switch-recovery", "sweep", "closed-expiry",
                                      "health-checks",
                                      "rate-estimator", "stats-poll"}
    datapath = RecordingDatapath()
    manager.switch_connected(1, datapath)
    web_service(manager)                           # 10.0.0.11's MAC is asked for once
    probes = [m for m in datapath.sent if type(m).__name__ == "OFPPacketOut"]
    assert len(probes) == 1
    for _ in range(60):                            # nobody answers: bounded retries
        clock.advance(1)
        manager.tick()
    probes = [m for m in datapath.sent if type(m).__name__ == "OFPPacketOut"]
    assert len(probes) == MAX_PROBES
    assert 0x0A00000B not in manager.director.hosts.pending      # given up


def test_servers_configured_before_any_switch_are_asked_for_when_one_connects(caplog):
    clock = FakeClock()
    manager = Manager(clock=lambda: clock.now)
    web_service(manager)
    clock.advance(5)
    manager.tick()                                 # no switch yet: nothing to do, no error
    assert "failed" not in caplog.text
    datapath = RecordingDatapath()
    connect(manager, datapath)
    probes = [m for m in datapath.sent if type(m).__name__ == "OFPPacketOut"]
    assert len(probes) == 1


# -- stable ids ----------------------------------------------------------------------

def test_ids_survive_a_restart_beside_the_rules_file(tmp_path):
    rules = str(tmp_path / "lvs.rules")
    first = Manager(rules_path=rules)
    for port in (80, 443):                 # numbers are handed out in order of first use
        first.api.add_service({"protocol": "tcp", "address": "10.0.0.100", "port": port})
        first.ids.service(service_key("tcp", "10.0.0.100", port))
        first.api.add_server(f"tcp-10.0.0.100-{port}", {"address": "10.0.0.11"})
        first.api.add_server(f"tcp-10.0.0.100-{port}", {"address": "10.0.0.12"})
    key = service_key("tcp", "10.0.0.100", 443)
    first.ids.server(key, ipaddress.ip_address("10.0.0.11"), 443)
    numbers = (first.ids.service(key), first.ids.server(key, ipaddress.ip_address("10.0.0.12"), 443))
    assert numbers == (2, 2)
    again = StableIds(rules + ".ids")
    assert (again.service(key), again.server(key, ipaddress.ip_address("10.0.0.12"), 443)) == numbers
    assert again.lookup(2, 2) == ("tcp-10.0.0.100-443", "10.0.0.12-443")


def test_a_server_keeps_its_number_across_delete_and_re_add_a_service_frees_its_own():
    ids = StableIds()
    key, other = service_key("tcp", "10.0.0.100", 80), service_key("udp", "10.0.0.100", 53)
    a, b = ipaddress.ip_address("10.0.0.11"), ipaddress.ip_address("10.0.0.12")
    assert (ids.service(key), ids.service(other)) == (1, 2)
    assert (ids.server(key, a, 80), ids.server(key, b, 80)) == (1, 2)
    assert ids.server(key, a, 80) == 1
    ids.forget_service(key)
    assert ids.lookup(1) == (None, None)
    assert ids.service(key) == 3 and ids.server(key, b, 80) == 1


def test_an_unreadable_ids_file_numbers_afresh(tmp_path, caplog):
    path = tmp_path / "lvs.rules.ids"
    path.write_text("{not json")
    ids = StableIds(str(path))
    assert ids.service(service_key("tcp", "10.0.0.100", 80)) == 1
    assert "unreadable" in caplog.text


def test_cookies_name_the_service_and_server_numbers():
    manager = Manager()
    datapath = RecordingDatapath()
    connect(manager, datapath)
    web_service(manager, method="droute")
    manager.director.hosts.macs[0x0A00000B] = bytes.fromhex("02000a00000b")
    manager.packet_in(1, 1, packet_to_bytes(tcp("10.0.1.1", "10.0.0.100", 40000, 80)), 1)
    flow = next(m for m in datapath.sent if type(m).__name__ == "OFPFlowMod"
                and idmod.Cookie.parse(m.cookie).kind == idmod.KIND_CONN)
    cookie = idmod.Cookie.parse(flow.cookie)
    assert manager.ids.lookup(cookie.service, cookie.server) == ("tcp-10.0.0.100-80",
                                                                 "10.0.0.11-80")
