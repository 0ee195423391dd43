"""lvs_app.metrics: the exposition text, parsed back with prometheus_client's parser."""

import copy

import pytest
from prometheus_client.parser import text_string_to_metric_families

from lvs_app import metrics
from lvs_app.director import DROP_REASONS, OUTCOMES
from lvs_app.figures import METER_NAMES, TABLES
from lvs_app.manager import Manager

SERVICE_LABELS = ("local_address", "local_port", "local_mark", "proto")
BACKEND_LABELS = SERVICE_LABELS + ("remote_address", "remote_port", "forward")

TYPES = {
    "lvs_ipvs_connections_total": "counter",
    "lvs_ipvs_incoming_packets_total": "counter",
    "lvs_ipvs_outgoing_packets_total": "counter",
    "lvs_ipvs_incoming_bytes_total": "counter",
    "lvs_ipvs_outgoing_bytes_total": "counter",
    "lvs_ipvs_service_connections_total": "counter",
    "lvs_ipvs_service_incoming_packets_total": "counter",
    "lvs_ipvs_service_outgoing_packets_total": "counter",
    "lvs_ipvs_service_incoming_bytes_total": "counter",
    "lvs_ipvs_service_outgoing_bytes_total": "counter",
    "lvs_ipvs_service_connections_per_second": "gauge",
    "lvs_ipvs_service_incoming_packets_per_second": "gauge",
    "lvs_ipvs_service_outgoing_packets_per_second": "gauge",
    "lvs_ipvs_service_incoming_bytes_per_second": "gauge",
    "lvs_ipvs_service_outgoing_bytes_per_second": "gauge",
    "lvs_ipvs_backend_connections_active": "gauge",
    "lvs_ipvs_backend_connections_inactive": "gauge",
    "lvs_ipvs_backend_connections_persistent": "gauge",
    "lvs_ipvs_backend_weight": "gauge",
    "lvs_ipvs_backend_overloaded": "gauge",
    "lvs_ipvs_backend_connections_total": "counter",
    "lvs_ipvs_backend_incoming_packets_total": "counter",
    "lvs_ipvs_backend_outgoing_packets_total": "counter",
    "lvs_ipvs_backend_incoming_bytes_total": "counter",
    "lvs_ipvs_backend_outgoing_bytes_total": "counter",
    "lvs_app_health_real_server_up": "gauge",
    "lvs_app_health_checker_up": "gauge",
    "lvs_app_health_quorum_up": "gauge",
    "lvs_app_health_sorry_server_active": "gauge",
    "lvs_app_health_probes_total": "counter",
    "lvs_app_switches_connected": "gauge",
    "lvs_app_packet_ins_total": "counter",
    "lvs_app_dropped_packets_total": "counter",
    "lvs_app_connections_dropped_total": "counter",
    "lvs_app_packet_in_duration_seconds": "histogram",
    "lvs_app_flow_mods_total": "counter",
    "lvs_app_packet_outs_total": "counter",
    "lvs_app_openflow_errors_total": "counter",
    "lvs_app_punts_rate_limited_total": "counter",
    "lvs_app_flow_entries": "gauge",
    "lvs_app_connections": "gauge",
    "lvs_app_templates": "gauge",
    "lvs_app_stats_polls_total": "counter",
    "lvs_app_stats_poll_age_seconds": "gauge",
}


def _stats(conns, inpkts, outpkts, inbytes, outbytes):
    return {"conns": conns, "inpkts": inpkts, "outpkts": outpkts, "inbytes": inbytes,
            "outbytes": outbytes}


def _rates(cps, inpps, outpps, inbps, outbps):
    return {"cps": cps, "inpps": inpps, "outpps": outpps, "inbps": inbps, "outbps": outbps}


def _server(address, port, seq, method, forward, weight, active, inact, persist, overloaded,
            stats, rates=None):
    return {"address": address, "port": port, "seq": seq, "method": method,
            "forward": forward, "weight": weight, "u_threshold": 0, "l_threshold": 0,
            "tun_type": "vxlan" if method == "tunnel" else None, "activeconns": active,
            "inactconns": inact, "persistconns": persist, "overloaded": overloaded,
            "stats": stats, "rates": rates or _rates(0, 0, 0, 0, 0)}


def _service(protocol, address, port, fwmark, af, stats, rates, servers):
    sid = (f"fwmark-{fwmark}" + ("-6" if af == 6 else "") if protocol == "fwmark"
           else f"{protocol}-{address}-{port}")
    return {"id": sid, "protocol": protocol, "address": address, "port": port,
            "fwmark": fwmark, "af": af, "scheduler": "wrr", "persistent": False,
            "timeout": None, "netmask": "255.255.255.255", "sched_flags": [], "ops": False,
            "stats": stats, "rates": rates, "servers": servers}


FWM = _service("fwmark", None, 0, 7, 4, _stats(30, 3000, 0, 240000, 0),
               _rates(2, 150, 0, 12000, 0), [
                   _server("10.0.0.11", 0, 1, "droute", "Route", 3, 4, 5, 1, False,
                           _stats(20, 2000, 0, 160000, 0)),
                   _server("10.0.0.12", 0, 2, "tunnel", "Tunnel", 1, 1, 2, 0, True,
                           _stats(10, 1000, 0, 80000, 0))])
V6 = _service("tcp", "2001:db8::100", 443, 0, 6, _stats(12, 700, 650, 91000, 1300000),
              _rates(1, 30, 28, 4000, 60000), [
                  _server("2001:db8::11", 8443, 3, "masq", "Masq", 2, 6, 0, 0, False,
                          _stats(12, 700, 650, 91000, 1300000), _rates(1, 30, 28, 4000, 60000))])
SNAPSHOT = {"version": "1.2.1", "size": 4096, "services": [FWM, V6], "marks": [],
            "timeouts": {"tcp": 900, "tcpfin": 120, "udp": 300}}

FWM_LABELS = {"local_address": "", "local_port": "0", "local_mark": "7", "proto": "FWM"}
V6_LABELS = {"local_address": "2001:db8::100", "local_port": "443", "local_mark": "",
             "proto": "TCP"}


def _checker(kind, target, state):
    return {"checker": kind, "target": target, "origin": "keepalived.conf:9", "state": state,
            "for_seconds": 3.5, "last_result": "ok", "last_run_seconds_ago": 1.0, "retries": 0}


HEALTH = {"source": "10.0.0.250", "counts": {"probes": 40, "ok": 31, "failed": 8,
                                             "replies": 39, "strays": 2},
          "virtual_servers": [{
              "virtual_server": "fwmark 7", "origin": "keepalived.conf:3",
              "services": ["fwmark 7"], "quorum": 2, "hysteresis": 0, "alive_weight": 3,
              "quorum_state": "up", "sorry_server": "10.0.0.99:80",
              "sorry_server_active": False, "real_servers": [
                  {"address": "10.0.0.11", "port": 0, "state": "up", "for_seconds": 60.0,
                   "weight": 3, "checkers": [_checker("TCP_CHECK", "10.0.0.11:80", "up"),
                                             _checker("HTTP_GET", "10.0.0.11:8080", "up")]},
                  {"address": "10.0.0.12", "port": 0, "state": "down", "for_seconds": 5.0,
                   "weight": 1, "checkers": [_checker("TCP_CHECK", "10.0.0.12:80", "down")]}]}, {
              "virtual_server": "2001:db8::100 443", "origin": "keepalived.conf:20",
              "services": ["tcp [2001:db8::100]:443"], "quorum": 5, "hysteresis": 0,
              "alive_weight": 2, "quorum_state": "down", "sorry_server": "[2001:db8::99]:443",
              "sorry_server_active": True, "real_servers": []}]}

DPID = 0xA1
CONTROLLER = {
    "switches": 2,
    "packet_ins": {("service", "scheduled"): 100, ("service", "forwarded"): 20,
                   ("classify", "answered"): 3, ("classify", "dropped"): 4,
                   ("reverse-nat", "forwarded"): 9},
    "dropped": {"malformed": 4, "no_connection": 0, "table_full": 2},
    "connections_dropped": 5,
    "packet_in_seconds": {"count": 133, "sum": 0.412,
                          "buckets": [(0.001, 50), (0.005, 120), (0.025, 131)]},
    "flow_mods": 800, "packet_outs": 260, "openflow_errors": 1,
    "rate_limited": {(DPID, "service"): 17, (2, "health"): 0},
    "flow_entries": {(DPID, "service"): 40, (DPID, "forward"): 12},
    "connections": {DPID: 25, 2: 0},
    "templates": {DPID: 3},
    "stats_polls": 57, "stats_poll_seconds": 1.25,
}


def parse(text):
    """The families by their exposition name; checks the text's own shape too."""
    assert text.endswith("\n") and not text.endswith("\n\n")
    typed = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")]
    helped = [line.split()[2] for line in text.splitlines() if line.startswith("# HELP ")]
    assert typed == helped and len(set(typed)) == len(typed), "a family HELP/TYPE twice"
    families = {}
    for family in text_string_to_metric_families(text):
        name = family.name + "_total" if family.type == "counter" else family.name
        assert name not in families
        keys = [(s.name, tuple(sorted(s.labels.items()))) for s in family.samples]
        assert len(keys) == len(set(keys)), f"{name}: a series twice"
        families[name] = family
    assert list(families) == typed, "samples outside their family"
    return families


def values(families, name):
    """{label tuple (sorted pairs): value} of one family's plain samples."""
    return {tuple(sorted(s.labels.items())): s.value for s in families[name].samples}


def one(families, name, **labels):
    matching = [s.value for s in families[name].samples if s.labels == labels]
    assert len(matching) == 1, (name, labels, families[name].samples)
    return matching[0]


@pytest.fixture
def families():
    return parse(metrics.render(SNAPSHOT, HEALTH, CONTROLLER))


def test_content_type():
    assert metrics.CONTENT_TYPE == "text/plain; version=0.0.4; charset=utf-8"


def test_every_family_has_its_type_and_a_help(families):
    assert {name: f.type for name, f in families.items()} == TYPES
    for name, family in families.items():
        assert family.documentation.endswith("."), name


def test_empty_inputs_render_every_family():
    for args in [({}, {}, {}), (None, None, None),
                 ({"version": "1.2.1", "size": 4096, "services": [], "marks": [],
                   "timeouts": {}}, {"source": None, "virtual_servers": [], "counts": {}},
                  {"packet_in_seconds": {"count": 0, "sum": 0.0, "buckets": []}})]:
        families = parse(metrics.render(*args))
        assert {name: f.type for name, f in families.items()} == TYPES
        assert values(families, "lvs_ipvs_connections_total") == {(): 0}
        assert values(families, "lvs_app_flow_mods_total") == {(): 0}
        assert values(families, "lvs_app_health_probes_total") == {
            (("result", "ok"),): 0, (("result", "failed"),): 0}
        assert families["lvs_ipvs_service_incoming_packets_total"].samples == []
        assert families["lvs_app_stats_poll_age_seconds"].samples == []
        assert [(s.name, s.labels, s.value) for s in
                families["lvs_app_packet_in_duration_seconds"].samples] == [
            ("lvs_app_packet_in_duration_seconds_bucket", {"le": "+Inf"}, 0),
            ("lvs_app_packet_in_duration_seconds_sum", {}, 0),
            ("lvs_app_packet_in_duration_seconds_count", {}, 0)]


def test_service_counters_and_rates(families):
    assert one(families, "lvs_ipvs_service_connections_total", **FWM_LABELS) == 30
    assert one(families, "lvs_ipvs_service_incoming_bytes_total", **FWM_LABELS) == 240000
    assert one(families, "lvs_ipvs_service_outgoing_packets_total", **V6_LABELS) == 650
    assert one(families, "lvs_ipvs_service_outgoing_bytes_total", **V6_LABELS) == 1300000
    assert one(families, "lvs_ipvs_service_connections_per_second", **FWM_LABELS) == 2
    assert one(families, "lvs_ipvs_service_incoming_packets_per_second", **FWM_LABELS) == 150
    assert one(families, "lvs_ipvs_service_outgoing_packets_per_second", **V6_LABELS) == 28
    assert one(families, "lvs_ipvs_service_incoming_bytes_per_second", **V6_LABELS) == 4000
    assert one(families, "lvs_ipvs_service_outgoing_bytes_per_second", **V6_LABELS) == 60000
    assert len(families["lvs_ipvs_service_connections_total"].samples) == 2


def test_backends_of_all_three_methods(families):
    droute = dict(FWM_LABELS, remote_address="10.0.0.11", remote_port="0", forward="droute")
    tunnel = dict(FWM_LABELS, remote_address="10.0.0.12", remote_port="0", forward="tunnel")
    masq = dict(V6_LABELS, remote_address="2001:db8::11", remote_port="8443", forward="masq")
    expected = {   # active, inactive, persistent, weight, overloaded, conns, inpkts, outbytes
        "droute": (droute, (4, 5, 1, 3, 0, 20, 2000, 0)),
        "tunnel": (tunnel, (1, 2, 0, 1, 1, 10, 1000, 0)),
        "masq": (masq, (6, 0, 0, 2, 0, 12, 700, 1300000)),
    }
    names = ("connections_active", "connections_inactive", "connections_persistent", "weight",
             "overloaded", "connections_total", "incoming_packets_total",
             "outgoing_bytes_total")
    for labels, figures in expected.values():
        got = tuple(one(families, f"lvs_ipvs_backend_{name}", **labels) for name in names)
        assert got == figures, labels
    for name in names:
        samples = families[f"lvs_ipvs_backend_{name}"].samples
        assert {s.labels["forward"] for s in samples} == {"droute", "tunnel", "masq"}
        assert all(tuple(sorted(s.labels)) == tuple(sorted(BACKEND_LABELS)) for s in samples)


def test_totals_are_the_sums_over_the_services(families):
    for total, part in [("connections", "conns"), ("incoming_packets", "inpkts"),
                        ("outgoing_packets", "outpkts"), ("incoming_bytes", "inbytes"),
                        ("outgoing_bytes", "outbytes")]:
        want = FWM["stats"][part] + V6["stats"][part]
        assert values(families, f"lvs_ipvs_{total}_total") == {(): want}
        per_service = values(families, f"lvs_ipvs_service_{total}_total")
        assert sum(per_service.values()) == want


def test_health(families):
    fwm, v6 = "fwmark 7", "2001:db8::100 443"
    assert values(families, "lvs_app_health_real_server_up") == {
        (("remote_address", "10.0.0.11"), ("remote_port", "0"), ("virtual_server", fwm)): 1,
        (("remote_address", "10.0.0.12"), ("remote_port", "0"), ("virtual_server", fwm)): 0}
    checkers = {(s.labels["remote_address"], s.labels["checker"], s.labels["target"]): s.value
                for s in families["lvs_app_health_checker_up"].samples}
    assert checkers == {("10.0.0.11", "TCP_CHECK", "10.0.0.11:80"): 1,
                        ("10.0.0.11", "HTTP_GET", "10.0.0.11:8080"): 1,
                        ("10.0.0.12", "TCP_CHECK", "10.0.0.12:80"): 0}
    assert values(families, "lvs_app_health_quorum_up") == {
        (("virtual_server", fwm),): 1, (("virtual_server", v6),): 0}
    assert values(families, "lvs_app_health_sorry_server_active") == {
        (("virtual_server", fwm),): 0, (("virtual_server", v6),): 1}
    assert values(families, "lvs_app_health_probes_total") == {
        (("result", "ok"),): 31, (("result", "failed"),): 8}


def test_controller(families):
    dpid = "00000000000000a1"
    assert values(families, "lvs_app_switches_connected") == {(): 2}
    assert values(families, "lvs_app_packet_ins_total") == {
        (("outcome", "scheduled"), ("table", "service")): 100,
        (("outcome", "forwarded"), ("table", "service")): 20,
        (("outcome", "answered"), ("table", "classify")): 3,
        (("outcome", "dropped"), ("table", "classify")): 4,
        (("outcome", "forwarded"), ("table", "reverse-nat")): 9}
    assert values(families, "lvs_app_dropped_packets_total") == {
        (("reason", "malformed"),): 4, (("reason", "no_connection"),): 0,
        (("reason", "table_full"),): 2}
    assert values(families, "lvs_app_connections_dropped_total") == {(): 5}
    for name, want in [("flow_mods", 800), ("packet_outs", 260), ("openflow_errors", 1),
                       ("stats_polls", 57)]:
        assert values(families, f"lvs_app_{name}_total") == {(): want}
    assert values(families, "lvs_app_punts_rate_limited_total") == {
        (("dpid", dpid), ("meter", "service")): 17,
        (("dpid", "0000000000000002"), ("meter", "health")): 0}
    assert values(families, "lvs_app_flow_entries") == {
        (("dpid", dpid), ("table", "service")): 40, (("dpid", dpid), ("table", "forward")): 12}
    # the switch's own count of every entry in the table, not the controller's
    assert "table statistics (active_count)" in families["lvs_app_flow_entries"].documentation
    assert values(families, "lvs_app_connections") == {
        (("dpid", dpid),): 25, (("dpid", "0000000000000002"),): 0}
    assert values(families, "lvs_app_templates") == {(("dpid", dpid),): 3}
    assert values(families, "lvs_app_stats_poll_age_seconds") == {(): 1.25}


def test_the_fixture_speaks_the_controllers_words():
    """The fixture's outcomes, reasons and tables are ones the code emits."""
    assert {outcome for _, outcome in CONTROLLER["packet_ins"]} <= set(OUTCOMES)
    assert set(CONTROLLER["dropped"]) <= set(DROP_REASONS)
    assert {table for table, _ in CONTROLLER["packet_ins"]} <= set(TABLES.values())
    assert {table for _, table in CONTROLLER["flow_entries"]} <= set(TABLES.values())
    assert {meter for _, meter in CONTROLLER["rate_limited"]} <= set(METER_NAMES.values())


def test_histogram_buckets_are_cumulative_and_end_with_inf(families):
    samples = families["lvs_app_packet_in_duration_seconds"].samples
    buckets = [(s.labels["le"], s.value) for s in samples if s.name.endswith("_bucket")]
    assert buckets == [("0.001", 50), ("0.005", 120), ("0.025", 131), ("+Inf", 133)]
    counts = [count for _, count in buckets]
    assert counts == sorted(counts)
    [total] = [s.value for s in samples if s.name.endswith("_count")]
    [seconds] = [s.value for s in samples if s.name.endswith("_sum")]
    assert (total, seconds) == (counts[-1], 0.412)


def test_label_values_are_escaped():
    awkward = 'web "blue"\\green\nred'
    health = copy.deepcopy(HEALTH)
    health["virtual_servers"][0]["virtual_server"] = awkward
    text = metrics.render({}, health, {})
    assert 'virtual_server="web \\"blue\\"\\\\green\\nred"' in text
    families = parse(text)
    assert values(families, "lvs_app_health_quorum_up")[(("virtual_server", awkward),)] == 1
    assert {s.labels["virtual_server"] for s in
            families["lvs_app_health_real_server_up"].samples} == {awkward}


def test_output_is_deterministic_whatever_the_input_order():
    first = metrics.render(SNAPSHOT, HEALTH, CONTROLLER)
    assert metrics.render(SNAPSHOT, HEALTH, CONTROLLER) == first
    snapshot, health = copy.deepcopy(SNAPSHOT), copy.deepcopy(HEALTH)
    snapshot["services"].reverse()
    for service in snapshot["services"]:
        service["servers"].reverse()
    health["virtual_servers"].reverse()
    controller = {key: dict(reversed(value.items())) if isinstance(value, dict) else value
                  for key, value in reversed(CONTROLLER.items())}
    assert metrics.render(snapshot, health, controller) == first
    lines = [line for line in first.splitlines()
             if line.startswith("lvs_ipvs_backend_weight{")]
    assert [line.split('remote_address="')[1].split('"')[0] for line in lines] == [
        "2001:db8::11", "10.0.0.11", "10.0.0.12"]     # by local address: TCP's, then fwmark ""


def test_series_with_the_same_labels_are_combined():
    """An IPv4 and an IPv6 fwmark service with one mark have the same labels (as in
    node_exporter), as have two keepalived blocks of one name: one series each."""
    v6 = _service("fwmark", None, 0, 7, 6, _stats(5, 50, 0, 4000, 0), _rates(1, 2, 0, 3, 0),
                  [_server("2001:db8::21", 0, 9, "droute", "Route", 1, 0, 0, 0, False,
                           _stats(5, 50, 0, 4000, 0))])
    health = copy.deepcopy(HEALTH)
    health["virtual_servers"][1]["virtual_server"] = "fwmark 7"
    health["virtual_servers"][1]["sorry_server_active"] = True
    health["virtual_servers"][1]["real_servers"] = [    # down in the first block
        {"address": "10.0.0.12", "port": 0, "state": "up", "for_seconds": 9.0, "weight": 1,
         "checkers": [_checker("TCP_CHECK", "10.0.0.12:80", "up")]}]
    families = parse(metrics.render({"services": [FWM, v6]}, health, {}))
    assert values(families, "lvs_ipvs_service_connections_total") == {
        tuple(sorted(FWM_LABELS.items())): 35}
    assert values(families, "lvs_ipvs_service_connections_per_second") == {
        tuple(sorted(FWM_LABELS.items())): 3}
    assert len(families["lvs_ipvs_backend_weight"].samples) == 3
    assert values(families, "lvs_app_health_quorum_up") == {(("virtual_server", "fwmark 7"),): 0}
    assert values(families, "lvs_app_health_sorry_server_active") == {
        (("virtual_server", "fwmark 7"),): 1}
    assert one(families, "lvs_app_health_real_server_up", virtual_server="fwmark 7",
               remote_address="10.0.0.12", remote_port="0") == 0
    assert one(families, "lvs_app_health_checker_up", virtual_server="fwmark 7",
               remote_address="10.0.0.12", remote_port="0", checker="TCP_CHECK",
               target="10.0.0.12:80") == 0


def test_renders_what_the_api_returns():
    api = Manager().api
    api.add_mark({"mark": 3, "matches": ["tcp:10.0.0.100:443"]})
    api.add_service({"protocol": "fwmark", "fwmark": 3, "scheduler": "rr"})
    api.add_server("fwmark-3", {"address": "10.0.0.11", "method": "droute", "weight": 4})
    api.add_service({"protocol": "udp", "address": "10.0.0.100", "port": 53})
    api.add_server("udp-10.0.0.100-53", {"address": "10.0.0.12", "port": 5353,
                                         "method": "masq"})
    families = parse(metrics.render(api.snapshot(), api.health(), {}))
    assert values(families, "lvs_ipvs_backend_weight") == {
        tuple(sorted(dict(local_address="", local_port="0", local_mark="3", proto="FWM",
                          remote_address="10.0.0.11", remote_port="0",
                          forward="droute").items())): 4,
        tuple(sorted(dict(local_address="10.0.0.100", local_port="53", local_mark="",
                          proto="UDP", remote_address="10.0.0.12", remote_port="5353",
                          forward="masq").items())): 1}
    assert values(families, "lvs_ipvs_connections_total") == {(): 0}
