"""lvs_app.ipvsadm.parse_args / parse_rules / apply / restore.

The messages and exit codes are ipvsadm 1.31's (ipvsadm.c: ``fail(2, ...)``,
popt errors and ``tryhelp_exit`` return -1, i.e. exit status 255).
"""

import socket

import pytest

from lvs_app import ipvsadm, model
from lvs_app.ipvsadm import UsageError, cmdline, parse_args


@pytest.fixture(autouse=True)
def no_dns(monkeypatch):
    """Host names resolve from a fixed table: the tests never wait for a resolver."""
    monkeypatch.setattr(cmdline, "_host_to_addr", {"localhost": "127.0.0.1"}.get)


def args(line):
    return parse_args(line.split())


def usage_error(line):
    with pytest.raises(UsageError) as info:
        args(line)
    return info.value


# -- accepted spellings ---------------------------------------------------------

def test_no_arguments_lists_the_table():
    assert parse_args([]).command == "list"


def test_add_service_short_and_long_forms_agree():
    short = args("-A -t 10.0.0.1:80 -s rr -p 600 -M 255.255.255.0")
    long_ = args("--add-service --tcp-service=10.0.0.1:80 --scheduler rr "
                 "--persistent=600 --netmask 255.255.255.0")
    for cmd in (short, long_):
        assert (cmd.command, cmd.protocol, cmd.address, cmd.port) == (
            "add-service", "tcp", "10.0.0.1", 80)
        assert cmd.service == {"scheduler": "rr", "persistent": True, "timeout": 600,
                               "netmask": "255.255.255.0"}
    assert short.service_body() == {"protocol": "tcp", "address": "10.0.0.1", "port": 80,
                                    "scheduler": "rr", "persistent": True, "timeout": 600,
                                    "netmask": "255.255.255.0"}


@pytest.mark.parametrize("line, timeout", [
    ("-A -t 10.0.0.1:80 -p 600", 600),
    ("-A -t 10.0.0.1:80 -p600", 600),
    ("-A -t 10.0.0.1:80 --persistent=600", 600),
    ("-A -t 10.0.0.1:80 --persistent 600", 600),
    ("-A -t 10.0.0.1:80 -p", 360),
    ("-A -t 10.0.0.1:80 -p -s rr", 360),
    ("-A -p -t 10.0.0.1:80", 360),
])
def test_persistent_takes_an_optional_argument(line, timeout):
    assert args(line).service["timeout"] == timeout


def test_only_given_options_are_kept_for_edits():
    cmd = args("-E -t 10.0.0.1:80 -s wrr")
    assert cmd.service == {"scheduler": "wrr"}
    cmd = args("-e -t 10.0.0.1:80 -r 10.0.1.1 -w 5")
    assert cmd.server == {"weight": 5}
    assert cmd.server_port is None and cmd.server_id() == "10.0.1.1"


def test_clustered_short_options_and_attached_arguments():
    cmd = args("-Ln")
    assert cmd.command == "list" and cmd.numeric
    assert args("-a -t 10.0.0.1:80 -r 10.0.1.1 -w=3").server == {"weight": 3}
    cmd = args("-at10.0.0.1:80 -r10.0.1.1:8080 -mw3")
    assert (cmd.command, cmd.address, cmd.port) == ("add-server", "10.0.0.1", 80)
    assert (cmd.server_address, cmd.server_port) == ("10.0.1.1", 8080)
    assert cmd.server == {"method": "masq", "weight": 3}


def test_server_options():
    cmd = args("-a -t 10.0.0.1:80 -r 10.0.1.1:8080 -m -w 0 -x 100 -y 50")
    assert cmd.server_body() == {"address": "10.0.1.1", "port": 8080, "method": "masq",
                                 "weight": 0, "u_threshold": 100, "l_threshold": 50}
    assert cmd.server_id() == "10.0.1.1-8080"
    cmd = args("-a -f 1 -r 172.16.0.1 -i --tun-type vxlan")
    assert cmd.server == {"method": "tunnel", "tun_type": "vxlan"}
    assert args("-a -t 10.0.0.1:80 -r 10.0.1.1 -g").server == {"method": "droute"}


def test_ipv6_service_and_servers():
    cmd = args("-A -t [2001:db8::80]:80 -s mh -b mh-port -p 600 -M 64")
    assert (cmd.address, cmd.af, cmd.port) == ("2001:db8::80", 6, 80)
    assert cmd.service == {"scheduler": "mh", "sched_flags": ["mh-port"], "persistent": True,
                           "timeout": 600, "netmask": 64}
    assert cmd.service_id() == "tcp-2001:db8::80-80"
    cmd = args("-a -t [2001:db8::80]:80 -r [2001:db8::a0a0]:8080 -m")
    assert (cmd.server_address, cmd.server_port) == ("2001:db8::a0a0", 8080)


def test_bare_ipv6_address_has_port_zero():
    cmd = args("-A -t 2001:db8::80 -p")
    assert (cmd.address, cmd.port) == ("2001:db8::80", 0)


def test_port_omitted_is_zero_and_names_are_looked_up():
    assert args("-A -t 10.0.0.1 -p").port == 0
    try:
        http = socket.getservbyname("http", "tcp")
    except OSError:
        pytest.skip("no services database")
    assert args("-A -t 10.0.0.1:http").port == http
    assert args("-L -t 10.0.0.1:http -n").port == http


def test_inet_aton_forms_and_host_names():
    assert args("-A -t 10.1:80").address == "10.0.0.1"
    assert args("-A -t localhost:80").address == "127.0.0.1"


def test_fwmark_services():
    cmd = args("-A -f 1 -s wrr")
    assert (cmd.protocol, cmd.fwmark, cmd.af) == ("fwmark", 1, 4)
    assert cmd.service_id() == "fwmark-1"
    assert cmd.service_body() == {"protocol": "fwmark", "fwmark": 1, "af": 4,
                                  "scheduler": "wrr"}
    cmd = args("-A -f 2 -6 -s sed")
    assert cmd.af == 6 and cmd.service_id() == "fwmark-2-6"


def test_founding_document_spellings():
    cmd = args("-A -t 10.0.0.100:0 -s pcc")
    assert cmd.service == {"scheduler": "pcc"}
    cmd = args("-a -t 10.0.0.100:0 -R 10.0.1.1")
    assert cmd.command == "add-server"
    assert (cmd.server_address, cmd.server_port) == ("10.0.1.1", None)
    assert args("-d -t 10.0.0.100:0 -R 10.0.1.1").server_address == "10.0.1.1"
    assert args("-R").command == "restore"


def test_list_variants():
    cmd = args("-L -n --stats --exact --nosort --sort")
    assert cmd.list_options() == {"numeric", "stats", "exact", "nosort"}
    assert args("-l -c -n --persistent-conn").connection
    assert args("-L --timeout").timeout
    cmd = args("-L -t 10.0.0.1:80 -n --tun-info")
    assert cmd.has_service and cmd.tun_info
    assert args("-L -X").exact


def test_other_commands():
    assert args("-C").command == "clear"
    assert args("-S -n").command == "save"
    assert args("-Z").command == "zero" and not args("-Z").has_service
    assert args("-Z -u 10.0.0.1:53").service_id() == "udp-10.0.0.1-53"
    assert args("-D -t 10.0.0.1:80").command == "delete-service"
    assert args("--set 900 0 300").timeouts == (900, 0, 300)
    assert args("-h").command == "help"
    assert args("--help --no-such-option").command == "help"
    assert args("-v").command == "version"


def test_mark_commands():
    cmd = args("--add-mark 1 --match tcp:10.0.0.100:80 --match udp:10.0.0.100:5000-5100 "
               "--mark-name web")
    assert (cmd.command, cmd.mark, cmd.mark_name) == ("add-mark", 1, "web")
    assert cmd.matches == ["tcp:10.0.0.100:80", "udp:10.0.0.100:5000-5100"]
    assert args("--delete-mark 1").mark == 1
    assert args("--list-marks").command == "list-marks"


def test_double_dash_ends_options():
    assert args("--set -- 1 2 3").timeouts == (1, 2, 3)


# -- one test per validation message ------------------------------------------

@pytest.mark.parametrize("line", ["-t 10.0.0.1:80 -A", "foo", "--weight 1"])
def test_first_option_must_be_a_command(line):
    err = usage_error(line)
    assert err.message == "Try `lvsadm -h' or 'lvsadm --help' for more information."
    assert err.exit_code == 255


def test_unknown_long_option():
    err = usage_error("-L --frobnicate")
    assert (err.message, err.exit_code) == ("--frobnicate: unknown option", 255)


def test_unknown_short_option_names_the_word():
    err = usage_error("-L -nq")
    assert (err.message, err.exit_code) == ("-nq: unknown option", 255)


def test_missing_argument():
    err = usage_error("-A -t")
    assert (err.message, err.exit_code) == ("-t: missing argument", 255)


def test_option_does_not_take_an_argument():
    err = usage_error("-L --numeric=1")
    assert err.message == "--numeric=1: option does not take an argument"


def test_second_command_is_an_invalid_option():
    err = usage_error("-L -A")
    assert (err.message, err.exit_code) == ("invalid option `-A'", 2)


def test_illegal_virtual_server():
    for line in ("-A -t 80", "-A -t 10.0.0.1:99999", "-A -t [2001:db8::1]",
                 "-A -t 10.0.0.1:", "-A -t no.such.host.invalid:80"):
        assert usage_error(line).message == "illegal virtual server address[:port] specified"


def test_invalid_fwmark():
    assert usage_error("-A -f 0").message == "invalid fwmark value `0' specified"
    assert usage_error("-A -f 4294967296").message == \
        "invalid fwmark value `4294967296' specified"
    assert usage_error("--add-mark x").message == "invalid fwmark value `x' specified"


def test_invalid_persistence_timeout():
    assert usage_error("-A -t 10.0.0.1:80 -p 0").message == \
        "invalid timeout value `0' specified"
    assert usage_error("-A -t 10.0.0.1:80 -p 2678401").message == \
        "invalid timeout value `2678401' specified"


def test_invalid_set_timeout():
    assert usage_error("--set 900 x 300").message == "invalid timeout value `x' specified"


def test_set_needs_three_values():
    assert usage_error("--set 900 120").message == "--set option requires 3 timeout values"


def test_unexpected_argument():
    assert usage_error("-L foo").message == "unexpected argument foo"
    assert usage_error("--set 1 2 3 4").message == "unexpected argument 4"


def test_illegal_ipv4_netmask():
    assert usage_error("-A -t 10.0.0.1:80 -p -M 255.255.255.300").message == \
        "illegal virtual server persistent mask specified"


def test_illegal_ipv6_netmask():
    assert usage_error("-A -t [2001:db8::1]:80 -p -M 129").message == \
        "illegal ipv6 netmask specified"


def test_illegal_real_server():
    assert usage_error("-a -t 10.0.0.1:80 -r 10.0.0.300").message == \
        "illegal real server address[:port] specified"


@pytest.mark.parametrize("option, name", [("-w 65536", "weight"), ("-w -1", "weight"),
                                          ("-x 2147483648", "u_threshold"),
                                          ("-y x", "l_threshold")])
def test_illegal_server_numbers(option, name):
    assert usage_error(f"-a -t 10.0.0.1:80 -r 10.0.1.1 {option}").message == \
        f"illegal {name} specified"


def test_ipv6_flag_before_fwmark():
    assert usage_error("-A -6 -f 1").message == "-6 used before -f"


def test_illegal_tunnel_type():
    assert usage_error("-a -f 1 -r 10.0.1.1 -i --tun-type foo").message == \
        "illegal tunnel type specified"


def test_illegal_tunnel_port():
    assert usage_error("-a -f 1 -r 10.0.1.1 -i --tun-type gue --tun-port 0").message == \
        "illegal tunnel port specified"


def test_incompatible_scheduler_flag():
    assert usage_error("-A -t 10.0.0.1:80 -s rr -b sh-port").message == \
        "incompatible scheduler flag `sh-port'"
    # -A without -s checks against the default scheduler, wlc
    assert usage_error("-A -t 10.0.0.1:80 -b mh-port").message == \
        "incompatible scheduler flag `mh-port'"


def test_invalid_scheduler_flag():
    assert usage_error("-A -t 10.0.0.1:80 -b foo").message == "invalid scheduler flag `foo'"


def test_edit_without_scheduler_leaves_flag_check_to_the_model():
    assert args("-E -t 10.0.0.1:80 -b sh-port").service == {"sched_flags": ["sh-port"]}


def test_missing_compulsory_option():
    assert usage_error("-A -s rr").message == \
        "You need to supply the 'service-address' option for the 'add-service' command"
    assert usage_error("-a -t 10.0.0.1:80").message == \
        "You need to supply the 'real-server' option for the 'add-server' command"
    assert usage_error("--add-mark 1").message == \
        "You need to supply the 'match' option for the 'add-mark' command"


def test_illegal_option_for_command():
    assert usage_error("-A -t 10.0.0.1:80 -w 1").message == \
        "Illegal 'weight' option with the 'add-service' command"
    assert usage_error("-C -t 10.0.0.1:80").message == \
        "Illegal 'service-address' option with the 'flush' command"
    assert usage_error("--set 1 2 3 -n").message == \
        "Illegal 'numeric' option with the 'set' command"
    assert usage_error("-S -c").message == "Illegal 'connection' option with the 'save' command"
    assert usage_error("-d -t 10.0.0.1:80 -r 10.0.1.1 -m").message == \
        "Illegal 'forwarding-method' option with the 'delete-server' command"
    assert usage_error("-L --syncid 3 -x 1").message == \
        "Illegal 'u-threshold' option with the 'list' command"
    assert usage_error("-A -t 10.0.0.1:80 --match tcp:10.0.0.1:80").message == \
        "Illegal 'match' option with the 'add-service' command"


def test_exclusive_list_options():
    assert usage_error("-L -c -t 10.0.0.1:80").message == (
        "The option 'service-address' conflicts with the 'connection' option "
        "in the 'list' command")


def test_multiple_options():
    assert usage_error("-a -t 10.0.0.1:80 -r 10.0.1.1 -m -g").message == \
        "multiple 'forwarding-method' options specified"
    assert usage_error("-A -t 10.0.0.1:80 -f 1").message == \
        "multiple 'service-address' options specified"


def test_zero_port_needs_persistence():
    assert usage_error("-A -t 10.0.0.1:0 -s rr").message == \
        "Zero port specified for non-persistent service"
    assert usage_error("-A -t 10.0.0.1 -s rr").message == \
        "Zero port specified for non-persistent service"


def test_one_packet_scheduling_only_for_udp():
    assert usage_error("-A -t 10.0.0.1:80 -o").message == \
        "One-Packet Scheduling is only for UDP virtual services"
    assert args("-A -u 10.0.0.1:53 -o").service == {"ops": True}
    assert args("-A -f 1 -o").service == {"ops": True}


def test_address_family_mismatch_needs_tunnel():
    assert usage_error("-a -t 10.0.0.1:80 -r [2001:db8::1]:80").message == \
        "Different address family is allowed only for tunneling servers"
    assert args("-a -t 10.0.0.1:80 -r [2001:db8::1]:80 -i").server == {"method": "tunnel"}


def test_tunnel_options_need_tunnel_method():
    assert usage_error("-a -t 10.0.0.1:80 -r 10.0.1.1 -m --tun-type vxlan").message == \
        "Tunnel options conflict with forward method"


def test_tunnel_type_options():
    assert usage_error("-a -f 1 -r 10.0.1.1 -i --tun-type gue").message == \
        "You need to supply the 'tun-port' option for the 'gue' tunnel type"
    assert usage_error("-a -f 1 -r 10.0.1.1 -i --tun-type ipip --tun-port 5").message == \
        "Illegal 'tun-port' option with the 'ipip' tunnel type"
    assert usage_error("-a -f 1 -r 10.0.1.1 -i --tun-nocsum").message == \
        "Illegal 'tun-nocsum' option with the 'vxlan' tunnel type"
    assert usage_error("-a -f 1 -r 10.0.1.1 -i --tun-type gue --tun-port 6080 "
                       "--tun-nocsum --tun-csum").message == (
        "The option 'tun-csum' conflicts with the 'tun-nocsum' option in the 'gue' "
        "tunnel type")


def test_list_option_conflicts():
    assert usage_error("-L -c --stats").message == "options conflicts in the list command"
    assert usage_error("-L --timeout --persistent-conn").message == \
        "options conflicts in the list command"


def test_sctp_is_refused():
    err = usage_error("-A --sctp-service 10.0.0.1:80")
    assert err.message.startswith("--sctp-service: SCTP virtual services are not supported")
    assert err.exit_code == 2


@pytest.mark.parametrize("line", ["--start-daemon master", "--stop-daemon backup",
                                  "-L --daemon"])
def test_sync_daemon_is_refused(line):
    err = usage_error(line)
    assert "connection synchronisation is not supported" in err.message
    assert err.exit_code == 2


def test_bad_mark_match_uses_the_model_message():
    assert usage_error("--add-mark 1 --match icmp:10.0.0.1").message == \
        "mark match 'icmp:10.0.0.1' must start with tcp: or udp:"


# -- parse_rules / apply / restore ---------------------------------------------

def test_parse_rules_skips_comments_blank_lines_and_program_names():
    cmds = ipvsadm.parse_rules("# header\n\n  ipvsadm -A -t 10.0.0.1:80  # web\n"
                               "lvsadm -a -t 10.0.0.1:80 -r 10.0.1.1\n")
    assert [(c.command, c.lineno) for c in cmds] == [("add-service", 3), ("add-server", 4)]


def test_parse_rules_names_the_line():
    with pytest.raises(UsageError) as info:
        ipvsadm.parse_rules("-A -t 10.0.0.1:80\n-a -t 10.0.0.1:80 -r 10.0.1.1 -w 70000\n")
    assert info.value.message == "line 2: illegal weight specified"


def test_parse_rules_refuses_non_mutating_commands():
    with pytest.raises(UsageError) as info:
        ipvsadm.parse_rules("-L -n\n")
    assert info.value.message == "line 1: the 'list' command cannot be used in rules"
    with pytest.raises(UsageError) as info:
        ipvsadm.parse_rules("\n-R\n")
    assert info.value.message == "line 2: the 'restore' command cannot be used in rules"


def test_parse_rules_line_without_a_command():
    with pytest.raises(UsageError) as info:
        ipvsadm.parse_rules("-t 10.0.0.1:80 -A\n")
    assert info.value.message.startswith(
        "line 1: '-t 10.0.0.1:80 -A' does not start with a command")


def test_parse_rules_unbalanced_quote():
    with pytest.raises(UsageError) as info:
        ipvsadm.parse_rules("--add-mark 1 --match tcp:10.0.0.1:80 --mark-name 'web\n")
    assert info.value.message.startswith("line 1: ")


def test_apply_every_mutating_command():
    t = model.ServiceTable()
    for line in ("--add-mark 1 --match tcp:10.0.0.1:80 --mark-name web",
                 "-A -t 10.0.0.1:80 -s rr", "-E -t 10.0.0.1:80 -s wrr",
                 "-a -t 10.0.0.1:80 -r 10.0.1.1 -w 2", "-e -t 10.0.0.1:80 -r 10.0.1.1 -w 3",
                 "-A -f 1 -s rr", "-Z", "-Z -t 10.0.0.1:80", "--set 100 0 50"):
        ipvsadm.apply(t, args(line))
    svc = t.get_service(model.service_key("tcp", "10.0.0.1", 80))
    assert svc.scheduler == "wrr" and svc.servers[0].weight == 3
    assert t.timeouts == {"tcp": 100, "tcpfin": 120, "udp": 50}
    ipvsadm.apply(t, args("-d -t 10.0.0.1:80 -r 10.0.1.1"))
    assert svc.servers == []
    ipvsadm.apply(t, args("-D -f 1"))
    ipvsadm.apply(t, args("--delete-mark 1"))
    ipvsadm.apply(t, args("-C"))
    assert t.services == {} and t.marks == {}
    with pytest.raises(model.BadRequest):
        ipvsadm.apply(t, args("-L"))


def test_apply_edit_resets_settings_not_given_as_ipvsadm_does():
    t = model.ServiceTable()
    ipvsadm.apply(t, args("-A -t 10.0.0.1:80 -s sh -p 600 -b sh-port"))
    ipvsadm.apply(t, args("-E -t 10.0.0.1:80 -s sh -p 600 -M 255.255.255.0"))
    svc = t.get_service(model.service_key("tcp", "10.0.0.1", 80))
    assert (svc.scheduler, svc.timeout, svc.sched_flags) == ("sh", 600, ())
    ipvsadm.apply(t, args("-E -t 10.0.0.1:80 -s rr"))
    assert (svc.scheduler, svc.persistent, svc.timeout) == ("rr", False, 0)
    ipvsadm.apply(t, args("-a -t 10.0.0.1:80 -r 10.0.0.2 -m -w 3 -x 9"))
    ipvsadm.apply(t, args("-e -t 10.0.0.1:80 -r 10.0.0.2 -m"))
    server = t.get_server(svc.key, "10.0.0.2", 80)
    assert (server.weight, server.u_threshold, server.method) == (1, 0, "masq")


def test_model_errors_come_back_from_apply():
    t = model.ServiceTable()
    ipvsadm.apply(t, args("-A -t 10.0.0.1:80"))
    with pytest.raises(model.Conflict):
        ipvsadm.apply(t, args("-A -t 10.0.0.1:80"))
    with pytest.raises(model.NotFound):
        ipvsadm.apply(t, args("-a -t 10.0.0.2:80 -r 10.0.1.1"))
    with pytest.raises(model.BadRequest, match="tunnel type 'gre' is not supported"):
        ipvsadm.apply(t, args("-a -t 10.0.0.1:80 -r 10.0.1.1 -i --tun-type gre --tun-csum"))


def test_restore_is_all_or_nothing_and_names_the_line():
    t = model.ServiceTable()
    ipvsadm.apply(t, args("-A -t 10.0.0.1:80"))
    before = ipvsadm.format_save([s.to_dict() for s in t.sorted_services()])
    with pytest.raises(model.Conflict) as info:
        ipvsadm.restore(t, "-A -t 10.0.0.2:80\n-a -t 10.0.0.2:80 -r 10.0.1.1\n"
                           "-A -t 10.0.0.1:80\n")
    assert info.value.message == "line 3: service tcp 10.0.0.1:80 already exists"
    assert ipvsadm.format_save([s.to_dict() for s in t.sorted_services()]) == before


def test_restore_parse_error_is_a_bad_request():
    with pytest.raises(model.BadRequest) as info:
        ipvsadm.restore(model.ServiceTable(), "-A -t 10.0.0.1:80\n-A -t 80\n")
    assert info.value.message == "line 2: illegal virtual server address[:port] specified"
    assert info.value.status == 400


def test_restore_appends_or_replaces():
    t = model.ServiceTable()
    ipvsadm.apply(t, args("--add-mark 1 --match tcp:10.0.0.9:80"))
    ipvsadm.apply(t, args("-A -t 10.0.0.1:80"))
    added = ipvsadm.restore(t, "-A -t 10.0.0.2:80\n")
    assert len(added.services) == 2 and len(t.services) == 1
    replaced = ipvsadm.restore(t, "--add-mark 1 --match tcp:10.0.0.9:80\n-A -f 1\n",
                               replace=True)
    assert [str(k) for k in replaced.services] == ["fwmark 1"]
    assert len(t.services) == 1


def test_masq_server_on_another_port_can_be_deleted_and_edited():
    # ipvsadm forces the service port only for -a/-e with -g/-i, never for -d
    t = model.ServiceTable()
    ipvsadm.apply(t, args("-A -t 10.0.0.1:80"))
    ipvsadm.apply(t, args("-a -t 10.0.0.1:80 -r 10.0.1.1:8080 -m"))
    ipvsadm.apply(t, args("-e -t 10.0.0.1:80 -r 10.0.1.1:8080 -m -w 4"))
    assert t.get_service(model.service_key("tcp", "10.0.0.1", 80)).servers[0].weight == 4
    ipvsadm.apply(t, args("-d -t 10.0.0.1:80 -r 10.0.1.1:8080"))
    assert t.get_service(model.service_key("tcp", "10.0.0.1", 80)).servers == []
