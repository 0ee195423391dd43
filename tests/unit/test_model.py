"""The service table's validation: one test per error message, nothing changed."""

import copy

import pytest

from lvs_app.model import (BadRequest, Conflict, NotFound, ServiceTable, format_netmask,
                           parse_mark_match, parse_netmask, parse_service_id, service_key)

VIP = "10.0.0.100"
HTTP = service_key("tcp", VIP, 80)


@pytest.fixture
def table():
    t = ServiceTable()
    t.add_service(HTTP, scheduler="rr")
    t.add_server(HTTP, "10.0.0.11", 8080, method="masq")
    t.add_mark(1, ["tcp:10.0.0.100:443"])
    return t


def snapshot(table):
    return copy.deepcopy((table.services, table.marks, table.timeouts))


def refused(table, error, message, call, *args, **kwargs):
    before = snapshot(table)
    with pytest.raises(error) as info:
        call(*args, **kwargs)
    assert info.value.message == message
    assert snapshot(table) == before, "a refused request changed the table"
    return info.value


# -- keys and addresses ------------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (("sctp", VIP, 80), "service protocol 'sctp' must be tcp, udp or fwmark"),
    (("tcp", "10.0.0.300", 80), "service tcp address '10.0.0.300' is not an IPv4 or IPv6 address"),
    (("tcp", VIP, 70000), "service tcp 10.0.0.100 port 70000 must be 0..65535"),
    (("tcp", VIP, "80"), "service tcp 10.0.0.100 port '80' must be 0..65535"),
])
def test_service_key_errors(args, message):
    with pytest.raises(BadRequest) as info:
        service_key(*args)
    assert info.value.message == message


def test_fwmark_key_errors():
    with pytest.raises(BadRequest, match=r"^fwmark 0 must be 1\.\.4294967295$"):
        service_key("fwmark", fwmark=0)
    with pytest.raises(BadRequest, match=r"^fwmark 3: address family 5 must be 4 or 6$"):
        service_key("fwmark", fwmark=3, af=5)


def test_service_ids_round_trip_and_errors():
    for key in (HTTP, service_key("udp", "2001:db8::1", 53), service_key("fwmark", fwmark=7),
                service_key("fwmark", fwmark=7, af=6)):
        assert parse_service_id(key.to_id()) == key
    with pytest.raises(BadRequest, match="service id 'http-1-2' must be proto-VIP-port"):
        parse_service_id("http-1-2")


def test_netmask_forms():
    assert format_netmask(parse_netmask("255.255.255.0", 4), 4) == "255.255.255.0"
    assert format_netmask(parse_netmask("24", 4), 4) == "255.255.255.0"
    assert format_netmask(parse_netmask("/16", 4), 4) == "255.255.0.0"
    assert format_netmask(parse_netmask(64, 6), 6) == "64"
    with pytest.raises(BadRequest, match=r"^netmask 'x' must be a dotted IPv4 mask or a prefix length$"):
        parse_netmask("x", 4)
    with pytest.raises(BadRequest, match=r"^IPv6 netmask prefix 0 must be 1\.\.128$"):
        parse_netmask(0, 6)
    with pytest.raises(BadRequest, match=r"^IPv4 netmask prefix 33 must be 0\.\.32$"):
        parse_netmask("33", 4)


@pytest.mark.parametrize("text, message", [
    (5, "mark match 5 must be a string 'proto:VIP[:port[-port]]'"),
    ("icmp:10.0.0.1", "mark match 'icmp:10.0.0.1' must start with tcp: or udp:"),
    ("tcp:[2001:db8::1", "mark match 'tcp:[2001:db8::1': unterminated IPv6 address"),
    ("tcp:[2001:db8::1]80", "mark match 'tcp:[2001:db8::1]80' must be 'proto:VIP[:port[-port]]'"),
    ("tcp:10.0.0.1:a-b", "mark match 'tcp:10.0.0.1:a-b': port range 'a-b' is not numeric"),
    ("tcp:10.0.0.1:90-80", "mark match 'tcp:10.0.0.1:90-80': port range 90-80 is reversed"),
    ("tcp:10.0.0.1:70000", "mark match 'tcp:10.0.0.1:70000': port 70000 must be 0..65535"),
    ("tcp:nowhere:80", "mark match 'tcp:nowhere:80': address 'nowhere' is not an IPv4 or IPv6 address"),
])
def test_mark_match_errors(text, message):
    with pytest.raises(BadRequest) as info:
        parse_mark_match(text)
    assert info.value.message == message


def test_mark_match_forms():
    assert parse_mark_match("udp:[2001:db8::1]:5000-5100").describe() == "udp:[2001:db8::1]:5000-5100"
    assert parse_mark_match("tcp:10.0.0.1").describe() == "tcp:10.0.0.1"
    assert parse_mark_match("tcp:10.0.0.1:21").covers("tcp", parse_mark_match("tcp:10.0.0.1").address, 21)


# -- services ----------------------------------------------------------------

S = f"service tcp {VIP}"


@pytest.mark.parametrize("options, message", [
    ({"colour": "red"}, f"{S}:81: unknown option(s) colour; allowed: scheduler, persistent, "
                        "timeout, netmask, sched_flags, ops, pe"),
    ({"pe": "sip"}, f"{S}:81: persistence engine 'sip' is not supported; the one engine is "
                    "'switch' (IPVS's sip needs SIP parsing the switch cannot do)"),
    ({"pe": "switch"}, f"{S}:81: persistence engine switch needs a persistent service (-p)"),
    ({"scheduler": ""}, f"{S}:81: scheduler '' must be a name"),
    ({"scheduler": "random"}, f"{S}:81: scheduler 'random' is unknown; choose one of rr, wrr, "
                              "lc, wlc, sed, nq, fo, ovf, dh, sh, mh, lblc, lblcr, twos"),
    ({"persistent": "yes"}, f"{S}:81: persistent 'yes' must be true or false"),
    ({"persistent": True, "timeout": 0}, f"{S}:81: persistence timeout 0 must be 1..2678400"),
    ({"timeout": 2678401}, f"{S}:81: persistence timeout 2678401 must be 1..2678400"),
    ({"persistent": False, "timeout": 30}, f"{S}:81: persistence timeout 30 needs persistent"),
    ({"sched_flags": 3}, f"{S}:81: sched_flags 3 must be a list of names"),
    ({"sched_flags": ["sh-magic"]}, f"{S}:81: scheduler flag 'sh-magic' is unknown; choose from "
                                    "flag-1, flag-2, flag-3, sh-fallback, sh-port, mh-fallback, mh-port"),
    ({"scheduler": "rr", "sched_flags": "sh-port"}, f"{S}:81: scheduler flag sh-port needs "
                                                    "scheduler sh, not rr"),
    ({"ops": "on"}, f"{S}:81: ops 'on' must be true or false"),
    ({"ops": True}, f"{S}:81: one-packet scheduling is only for UDP and fwmark services"),
])
def test_add_service_errors(table, options, message):
    refused(table, BadRequest, message, table.add_service, service_key("tcp", VIP, 81), **options)


def test_port_zero_needs_persistence(table):
    refused(table, BadRequest, f"{S}:0: port 0 is only allowed for a persistent service "
            "(Zero port specified for non-persistent service)",
            table.add_service, service_key("tcp", VIP, 0))


@pytest.mark.parametrize("key, message", [
    (("udp", VIP, 53), f"service udp {VIP}:53: persistence engine switch is for TCP services, "
                       "not UDP or firewall-mark ones"),
    (("fwmark", None, 0, 1), "service fwmark 1: persistence engine switch is for TCP "
                             "services, not UDP or firewall-mark ones"),
    (("tcp", VIP, 0), f"{S}:0: persistence engine switch needs a service port other than 0 "
                      "and 21 (FTP's control connection goes through the controller)"),
    (("tcp", VIP, 21), f"{S}:21: persistence engine switch needs a service port other than 0 "
                       "and 21 (FTP's control connection goes through the controller)"),
])
def test_switch_engine_rules(table, key, message):
    refused(table, BadRequest, message, table.add_service, service_key(*key),
            persistent=True, pe="switch")


def test_switch_engine_on_a_persistent_tcp_service_and_off_again(table):
    table.add_service(service_key("tcp", VIP, 443), persistent=True, timeout=60, pe="switch")
    service = table.services[service_key("tcp", VIP, 443)]
    assert service.pe == "switch" and service.to_dict()["pe"] == "switch"
    refused(table, BadRequest, f"{S}:443: persistence engine switch needs a persistent "
            "service (-p)", table.edit_service, service.key, persistent=False)
    table.edit_service(service.key, pe="")
    assert service.pe == ""


def test_duplicate_service_is_a_conflict(table):
    err = refused(table, Conflict, f"{S}:80 already exists", table.add_service, HTTP)
    assert err.status == 409


def test_unknown_service_is_not_found(table):
    err = refused(table, NotFound, f"{S}:81 does not exist",
                  table.edit_service, service_key("tcp", VIP, 81), scheduler="rr")
    assert err.status == 404
    refused(table, NotFound, f"{S}:81 does not exist", table.delete_service,
            service_key("tcp", VIP, 81))


def test_fwmark_service_needs_its_mark(table):
    refused(table, BadRequest, "service fwmark 2: firewall mark 2 is not defined; define its "
            "matches first (lvsadm --add-mark)", table.add_service, service_key("fwmark", fwmark=2))
    refused(table, BadRequest, "service fwmark 1 IPv6: firewall mark 1 matches IPv4 addresses",
            table.add_service, service_key("fwmark", fwmark=1, af=6))


def test_edit_keeps_unmentioned_options_and_checks_the_result(table):
    table.edit_service(HTTP, persistent=True, timeout=600, netmask="255.255.255.0")
    table.edit_service(HTTP, scheduler="wrr")
    svc = table.services[HTTP]
    assert (svc.scheduler, svc.persistent, svc.timeout) == ("wrr", True, 600)
    assert format_netmask(svc.netmask, 4) == "255.255.255.0"
    table.edit_service(HTTP, persistent=False)
    assert (svc.persistent, svc.timeout) == (False, 0)


def test_pcc_is_a_persistent_rr_service(table):
    key = service_key("tcp", VIP, 0)
    svc = table.add_service(key, scheduler="pcc")
    assert (svc.scheduler, svc.persistent, svc.timeout) == ("rr", True, 360)


def test_persistent_without_timeout_gets_360(table):
    svc = table.add_service(service_key("tcp", VIP, 443), persistent=True)
    assert svc.timeout == 360


# -- real servers --------------------------------------------------------------

R = f"{S}:80: real server 10.0.0.12"


@pytest.mark.parametrize("port, options, message", [
    (80, {"method": "nat"}, f"{R}:80: forwarding method 'nat' must be one of droute, masq, tunnel"),
    (80, {"weight": -1}, f"{R}:80 weight -1 must be 0..65535"),
    (80, {"weight": 65536}, f"{R}:80 weight 65536 must be 0..65535"),
    (80, {"u_threshold": -1}, f"{R}:80 upper threshold -1 must be 0..2147483647"),
    (80, {"l_threshold": "5"}, f"{R}:80 lower threshold '5' must be 0..2147483647"),
    (80, {"u_threshold": 5, "l_threshold": 6},
     f"{R}:80: lower threshold 6 must not exceed upper threshold 5"),
    (80, {"method": "tunnel", "tun_type": "gre"},
     f"{R}:80: tunnel type 'gre' is not supported; the switch tunnels with vxlan"),
    (80, {"bogus": 1}, f"{R}:80: unknown option(s) bogus; allowed: method, weight, u_threshold, "
                       "l_threshold, tun_type"),
    (70000, {"method": "masq"}, f"{S}:80: real server 10.0.0.12 port 70000 must be 0..65535"),
])
def test_add_server_errors(table, port, options, message):
    refused(table, BadRequest, message, table.add_server, HTTP, "10.0.0.12", port, **options)


def test_server_address_family(table):
    refused(table, BadRequest, f"{S}:80: real server [2001:db8::1]:80: a different address "
            "family is allowed only for tunnelling servers",
            table.add_server, HTTP, "2001:db8::1", 80)
    table.add_server(HTTP, "2001:db8::1", 80, method="tunnel")


def test_server_address_must_parse(table):
    refused(table, BadRequest, f"{S}:80: real server address 'rs1' is not an IPv4 or IPv6 address",
            table.add_server, HTTP, "rs1")


def test_duplicate_and_unknown_servers(table):
    refused(table, Conflict, f"{S}:80: real server 10.0.0.11:8080 already exists",
            table.add_server, HTTP, "10.0.0.11", 8080, method="masq")
    refused(table, NotFound, f"{S}:80: real server 10.0.0.11:80 does not exist",
            table.edit_server, HTTP, "10.0.0.11", 80, weight=3)
    refused(table, NotFound, f"{S}:80: real server 10.0.0.99:80 does not exist",
            table.delete_server, HTTP, "10.0.0.99")


def test_droute_and_tunnel_force_the_service_port(table):
    assert table.add_server(HTTP, "10.0.0.12", 8080).port == 80
    assert table.add_server(HTTP, "10.0.0.13", 8080, method="tunnel").port == 80
    assert table.add_server(HTTP, "10.0.0.14", None, method="masq").port == 80


def test_server_edit_keeps_last_nonzero_weight(table):
    server = table.edit_server(HTTP, "10.0.0.11", 8080, weight=5)
    assert server.last_weight == 5
    table.edit_server(HTTP, "10.0.0.11", 8080, weight=0)
    assert (server.weight, server.last_weight) == (0, 5)


def test_kernel_list_order_is_newest_first(table):
    table.add_server(HTTP, "10.0.0.12", 80, method="masq")
    table.add_server(HTTP, "10.0.0.13", 80, method="masq")
    order = [str(s.address) for s in table.services[HTTP].sched_list]
    assert order == ["10.0.0.13", "10.0.0.12", "10.0.0.11"]


# -- timeouts and marks --------------------------------------------------------

def test_set_timeouts(table):
    assert table.set_timeouts(tcp=60, tcpfin=0, udp=0) == {"tcp": 60, "tcpfin": 120, "udp": 300}
    refused(table, BadRequest, "udp timeout -1 must be 0..2147483647",
            table.set_timeouts, udp=-1)


@pytest.mark.parametrize("args, error, message", [
    ((0, ["tcp:10.0.0.1"]), BadRequest, "firewall mark 0 must be 1..4294967295"),
    ((1, ["tcp:10.0.0.1"]), Conflict, "firewall mark 1 already exists"),
    ((2, []), BadRequest, "firewall mark 2 needs at least one match 'proto:VIP[:port[-port]]'"),
    ((2, ["tcp:10.0.0.1"], 5), BadRequest, "firewall mark 2: name 5 must be a string"),
    ((2, ["tcp:10.0.0.1"], "web\n-C"), BadRequest, "firewall mark 2: name 'web\\n-C' must be "
     "printable text (no line breaks or other control characters)"),
    ((2, ["tcp:10.0.0.1"], "\ud800"), BadRequest, "firewall mark 2: name '\\ud800' must be "
     "printable text (no line breaks or other control characters)"),
    ((2, ["tcp:10.0.0.1:1-100", "tcp:10.0.0.1:80"]), BadRequest,
     "firewall mark 2: matches tcp:10.0.0.1:1-100 and tcp:10.0.0.1:80 overlap"),
    ((2, ["tcp:10.0.0.100:400-500"]), Conflict,
     "firewall mark 2: match tcp:10.0.0.100:400-500 overlaps tcp:10.0.0.100:443 of firewall mark 1"),
    ((2, ["tcp:10.0.0.1", "tcp:[2001:db8::1]"]), BadRequest,
     "firewall mark 2: matches mix IPv4 and IPv6 addresses"),
])
def test_add_mark_errors(table, args, error, message):
    refused(table, error, message, table.add_mark, *args)


def test_delete_mark_errors(table):
    table.add_service(service_key("fwmark", fwmark=1), persistent=True)
    refused(table, NotFound, "firewall mark 9 does not exist", table.delete_mark, 9)
    refused(table, Conflict, "firewall mark 1 is used by fwmark 1; delete the service first",
            table.delete_mark, 1)


def test_error_envelope():
    err = NotFound("service tcp 10.0.0.1:80 does not exist")
    assert err.to_dict() == {"error": {"status": 404, "kind": "not-found",
                                       "message": "service tcp 10.0.0.1:80 does not exist"}}


def test_edit_cannot_give_a_nat_port_to_direct_routing(table):
    refused(table, BadRequest, f"{S}:80: real server 10.0.0.11:8080: forwarding method droute "
            "needs the service port 80; only masq may change it",
            table.edit_server, HTTP, "10.0.0.11", 8080, method="droute")
