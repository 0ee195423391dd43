"""lvs_app.keepalived: keepalived.conf -> the service table and health-check specs.

The inputs are written the way keepalived's own sample configurations are
(``!`` comments, ``global_defs`` and ``vrrp_instance`` around the LVS part,
one keyword per line).  What the parser builds is compared with what the
equivalent ipvsadm rules build (``-S`` text of both tables).
"""

import ipaddress
import textwrap

import pytest

from lvs_app import ipvsadm, keepalived
from lvs_app.api import DirectorAPI
from lvs_app.keepalived import (ConfigError, DnsCheck, HttpCheck, MiscCheck, PingCheck, Script,
                                SmtpCheck, TcpCheck, UdpCheck, Url)
from lvs_app.model import FirewallMark, ServiceTable, parse_mark_match, service_key


def conf(text, **kwargs):
    return keepalived.parse(textwrap.dedent(text), **kwargs)


def refused(text, **kwargs):
    with pytest.raises(ConfigError) as info:
        conf(text, **kwargs)
    return info.value.message


def saved(table):
    """``ipvsadm -S -n`` of a table, through the API as the controller writes it."""
    api = DirectorAPI()
    api.table = table
    return api.rules_text()


def ipvsadm_table(rules, table=None):
    return ipvsadm.restore(table or ServiceTable(), textwrap.dedent(rules))


def marks(*specs):
    """{mark: FirewallMark} from "N proto:VIP:port ..." strings."""
    out = {}
    for spec in specs:
        number, *matches = spec.split()
        out[int(number)] = FirewallMark(int(number), [parse_mark_match(m) for m in matches])
    return out


def ip(text):
    return ipaddress.ip_address(text)


def only_server(cfg):
    (vs,) = cfg.health
    (rs,) = vs.real_servers
    return rs


def only_checker(cfg):
    (checker,) = only_server(cfg).checkers
    return checker


def vs(body, header="10.0.0.100 80", protocol="TCP"):
    """A virtual_server block around ``body``, with one real server unless body has one."""
    body = textwrap.dedent(body)
    if "real_server" not in body:
        body += "real_server 10.0.0.11 80 {\n    weight 1\n}\n"
    proto = f"    protocol {protocol}\n" if protocol else ""
    return (f"virtual_server {header} {{\n{proto}"
            + textwrap.indent(body, "    ") + "}\n")


def rs(body, header="10.0.0.11 80"):
    return vs(f"real_server {header} {{\n" + textwrap.indent(textwrap.dedent(body), "    ")
              + "}\n")


SAMPLE = """\
! Configuration File for keepalived

global_defs {
   notification_email {
     ops@example.org
   }
   smtp_server 192.0.2.25
   router_id LVS_LAB
   lvs_timeouts tcp 7200 tcpfin 60 udp 120
}

vrrp_instance VI_1 {
    state MASTER
    interface eth0
    virtual_router_id 51
    priority 150
    advert_int 1
    virtual_ipaddress {
        10.0.0.100
    }
}

virtual_server 10.0.0.100 80 {
    delay_loop 10
    lb_algo wrr
    lb_kind NAT
    persistence_timeout 600
    persistence_granularity 255.255.255.0
    protocol TCP

    real_server 10.0.0.11 8080 {
        weight 3
        HTTP_GET {
            url {
              path /health
              status_code 200
            }
            connect_timeout 2
            retry 2
            delay_before_retry 1
        }
    }
    real_server 10.0.0.12 8080 {
        weight 2
        TCP_CHECK {
            connect_timeout 3
        }
    }
}
"""


# -- the whole path: a sample-style file ----------------------------------------

def test_sample_file_builds_what_the_equivalent_ipvsadm_rules_build():
    cfg = conf(SAMPLE)
    assert saved(cfg.table) == saved(ipvsadm_table("""\
        -A -t 10.0.0.100:80 -s wrr -p 600 -M 255.255.255.0
        -a -t 10.0.0.100:80 -r 10.0.0.11:8080 -m -w 3
        -a -t 10.0.0.100:80 -r 10.0.0.12:8080 -m -w 2
        """))
    assert cfg.keys == [service_key("tcp", "10.0.0.100", 80)]
    assert cfg.table.timeouts == {"tcp": 7200, "tcpfin": 60, "udp": 120}
    assert cfg.timeouts == {"tcp": 7200, "tcpfin": 60, "udp": 120}
    assert cfg.files == ["keepalived.conf"]


def test_ignored_sections_are_warnings_naming_section_file_and_line():
    cfg = conf(SAMPLE)
    assert cfg.warnings == [
        "keepalived.conf:3: global_defs: ignored by lvs_app: notification_email, "
        "smtp_server, router_id",
        "keepalived.conf:12: vrrp_instance VI_1: ignored (not LVS configuration)",
    ]


@pytest.mark.parametrize("section", [
    "vrrp_instance VI_2 {\n  interface eth1\n}", "vrrp_sync_group G1 {\n  VI_1\n}",
    "vrrp_script chk {\n  script /bin/true\n}", "static_ipaddress {\n  192.0.2.1/24 dev eth0\n}",
    "static_routes {\n  192.0.2.0/24 via 10.0.0.1\n}",
    "static_rules {\n  from 192.0.2.1 table 1\n}",
    "track_file tf {\n  file /tmp/x\n}", "bfd_instance b1 {\n  neighbor_ip 10.0.0.1\n}",
    "linkbeat_interfaces {\n  eth0\n}", "garp_group {\n  interface eth0\n}",
    "net_namespace blue", "use_pid_dir",
])
def test_other_top_level_sections_are_accepted_and_ignored(section):
    cfg = conf(section + "\n" + vs(""))
    assert len(cfg.keys) == 1
    assert cfg.warnings[0] == (f"keepalived.conf:1: {section.split(' {')[0].strip()}: "
                               "ignored (not LVS configuration)")


def test_ignored_sections_are_not_checked_inside():
    cfg = conf("vrrp_instance X {\n  nonsense { deeper } more words\n}\n" + vs(""))
    assert len(cfg.keys) == 1


# -- the text: braces, comments, quotes, conditionals ------------------------------

def test_blocks_on_one_line_and_statements_after_a_closing_brace():
    cfg = conf("""\
        virtual_server 10.0.0.100 80 { protocol TCP
          real_server 10.0.0.11 80 { weight 2 }  real_server 10.0.0.12 80 { weight 1
            TCP_CHECK { connect_timeout 2 } } }
        """)
    assert [(s.address, s.port, s.options["weight"]) for s in cfg.services[0].servers] == [
        (ip("10.0.0.11"), 80, 2), (ip("10.0.0.12"), 80, 1)]
    assert cfg.health[0].real_servers[1].checkers[0].connect_timeout == 2.0


def test_opening_brace_on_the_next_line():
    cfg = conf("virtual_server 10.0.0.100 80\n{\n protocol TCP\n real_server 10.0.0.11 80\n"
               " {\n  weight 4\n }\n}\n")
    assert cfg.services[0].servers[0].options["weight"] == 4


def test_brace_attached_to_a_word():
    cfg = conf("virtual_server 10.0.0.100 80{\nprotocol TCP\nreal_server 10.0.0.11 80{\n}}\n")
    assert cfg.keys == [service_key("tcp", "10.0.0.100", 80)]


def test_comments_start_anywhere_outside_quotes():
    cfg = conf(rs("""\
        weight 2   # two
        ! a whole-line comment
        MISC_CHECK {
            misc_path "/usr/local/bin/check --tag a#b!c"   ! quoted # and ! are text
        }
        """))
    assert only_server(cfg).weight == 2
    assert only_checker(cfg).script.argv == ("/usr/local/bin/check", "--tag", "a#b!c")


def test_quotes_join_adjacent_text_and_keep_blanks():
    cfg = conf(vs('virtualhost www."example org"\nlb_algo "r"r\n'))
    assert cfg.health[0].virtualhost == "www.example org"
    assert cfg.services[0].options["scheduler"] == "rr"


def test_escapes_inside_quotes():
    cfg = conf(rs(r"""
        SMTP_CHECK {
            helo_name "a\tb\x41\101\"q\\"
        }
        """))
    assert only_checker(cfg).helo_name == 'a\tbAA"q\\'


def test_semicolon_is_not_a_separator_as_in_keepalived():
    # keepalived reads "rr;" as the scheduler's name; so does lvs_app, and the model refuses it
    message = refused(vs("lb_algo rr;\n"))
    assert message.startswith("keepalived.conf:3: service tcp 10.0.0.100:80: scheduler 'rr;' "
                              "is unknown")


def test_conditional_lines_follow_the_config_id():
    text = vs("@main lb_algo rr\n@backup lb_algo wrr\n@^main lb_kind DR\n")
    assert conf(text, config_id="main").entries()[0][1]["scheduler"] == "rr"
    backup = conf(text, config_id="backup").entries()[0]
    assert backup[1]["scheduler"] == "wrr"
    assert backup[2][0][2]["method"] == "droute"
    assert conf(text, config_id="other").entries()[0][1]["scheduler"] == "wlc"


def test_conditional_default_is_the_host_name(monkeypatch):
    from lvs_app.keepalived import syntax
    monkeypatch.setattr(syntax.platform, "node", lambda: "lb1.example.org")
    assert conf(vs("@lb1 lb_algo sh\n")).entries()[0][1]["scheduler"] == "sh"


# -- virtual_server keywords ---------------------------------------------------------

@pytest.mark.parametrize("keyword", ["lvs_sched", "lb_algo"])
def test_scheduler_both_spellings(keyword):
    assert conf(vs(f"{keyword} sed\n")).entries()[0][1]["scheduler"] == "sed"


def test_default_scheduler_is_wlc():
    assert conf(vs("")).entries()[0][1]["scheduler"] == "wlc"


@pytest.mark.parametrize("keyword", ["lvs_method", "lb_kind"])
@pytest.mark.parametrize("method, model", [("NAT", "masq"), ("DR", "droute"),
                                           ("TUN", "tunnel")])
def test_forwarding_methods(keyword, method, model):
    cfg = conf(vs(f"{keyword} {method}\n"))
    assert cfg.entries()[0][2][0][2]["method"] == model
    assert only_server(cfg).method == model


def test_default_method_is_nat_as_in_keepalived_with_its_warning():
    cfg = conf(vs(""))
    assert cfg.entries()[0][2][0][2]["method"] == "masq"
    assert cfg.warnings == ["keepalived.conf:3: virtual_server 10.0.0.100 80: real_server "
                            "10.0.0.11 80: no lvs_method - NAT, keepalived's default"]


def test_real_server_method_overrides_the_virtual_servers():
    cfg = conf(vs("lb_kind DR\nreal_server 10.0.0.11 80 {\n  lvs_method NAT\n}\n"
                  "real_server 10.0.0.12 80 {\n}\n"))
    assert [s[2]["method"] for s in cfg.entries()[0][2]] == ["masq", "droute"]


def test_persistence_timeout_alone_is_360():
    options = conf(vs("persistence_timeout\n")).entries()[0][1]
    assert (options["persistent"], options["timeout"]) == (True, 360)


def test_persistence_granularity_alone_makes_the_service_persistent():
    cfg = conf(vs("persistence_granularity 255.255.0.0\n"))
    service = cfg.table.sorted_services()[0]
    assert (service.persistent, service.timeout, service.netmask) == (True, 360, 0xFFFF0000)


def test_persistence_engine_switch():
    cfg = conf(vs("persistence_timeout 60\npersistence_engine switch\n"))
    service = cfg.table.sorted_services()[0]
    assert (service.persistent, service.timeout, service.pe) == (True, 60, "switch")


def test_ipv6_granularity_is_a_prefix_length():
    cfg = conf(vs("persistence_timeout 60\npersistence_granularity 64\n"
                  "real_server 2001:db8::11 80 {\n}\n", header="2001:db8::100 80"))
    assert cfg.table.sorted_services()[0].netmask == ((1 << 64) - 1) << 64


@pytest.mark.parametrize("protocol, proto", [("TCP", "tcp"), ("UDP", "udp"), ("udp", "udp")])
def test_protocol(protocol, proto):
    assert conf(vs("", protocol=protocol)).keys[0].protocol == proto


def test_ops_for_udp():
    assert conf(vs("ops\n", protocol="UDP")).entries()[0][1]["ops"] is True


@pytest.mark.parametrize("flag, scheduler", [
    ("sh-port", "sh"), ("sh-fallback", "sh"), ("mh-port", "mh"), ("mh-fallback", "mh"),
    ("flag-1", "rr"), ("flag-2", "rr"), ("flag-3", "rr")])
def test_scheduler_flags(flag, scheduler):
    cfg = conf(vs(f"{flag}\nlvs_sched {scheduler}\n"))
    assert cfg.table.sorted_services()[0].sched_flags == (flag,)


def test_virtual_server_weight_is_the_real_servers_default():
    cfg = conf(vs("weight 7\nreal_server 10.0.0.11 80 {\n}\n"
                  "real_server 10.0.0.12 80 {\n  weight 2\n}\n"))
    assert [s[2]["weight"] for s in cfg.entries()[0][2]] == [7, 2]


def test_quorum_settings_are_health_data():
    cfg = conf(vs("""\
        alpha
        omega
        quorum 3
        hysteresis 1
        quorum_up "/usr/local/sbin/vs-up.sh web 'up now'"
        quorum_down /usr/local/sbin/vs-down.sh keepalived_script
        inhibit_on_failure
        virtualhost www.example.org
        real_server 10.0.0.11 80 {
            weight 2
        }
        real_server 10.0.0.12 80 {
            weight 2
        }
        """))
    (health,) = cfg.health
    assert (health.name, health.origin) == ("10.0.0.100 80", "keepalived.conf:1")
    assert health.keys == (service_key("tcp", "10.0.0.100", 80),)
    assert (health.alpha, health.omega, health.quorum, health.hysteresis) == (True, True, 3, 1)
    assert health.quorum_up == Script(("/usr/local/sbin/vs-up.sh", "web", "up now"))
    assert health.quorum_down == Script(("/usr/local/sbin/vs-down.sh",), "keepalived_script")
    assert health.inhibit_on_failure and health.virtualhost == "www.example.org"
    assert [rs.inhibit_on_failure for rs in health.real_servers] == [True, True]
    assert [rs.alpha for rs in health.real_servers] == [True, True]


def test_sorry_server_and_its_options():
    cfg = conf(vs("lb_kind DR\nsorry_server 10.0.0.99 80\nsorry_server_inhibit\n"))
    assert cfg.health[0].sorry_server == keepalived.SorryServer(ip("10.0.0.99"), 80, "droute",
                                                                True)
    nat = conf(vs("lb_kind DR\nsorry_server 10.0.0.99 8080\nsorry_server_lvs_method NAT\n"))
    assert nat.health[0].sorry_server == keepalived.SorryServer(ip("10.0.0.99"), 8080, "masq")
    # the sorry server is not in the table: keepalived adds it only when the quorum is lost
    assert [s[0] for s in nat.entries()[0][2]] == [ip("10.0.0.11")]


def test_sorry_server_without_port_takes_the_service_port():
    cfg = conf(vs("lb_kind NAT\nsorry_server 10.0.0.99\n"))
    assert cfg.health[0].sorry_server.port == 80


def test_ha_suspend_is_accepted_and_ignored_with_a_warning():
    cfg = conf(vs("lb_kind NAT\nha_suspend\n"))
    assert cfg.warnings == ["keepalived.conf:4: virtual_server 10.0.0.100 80: ha_suspend "
                            "ignored (lvs_app holds no VIP on this host to watch)"]


@pytest.mark.parametrize("keyword", ["smtp_alert", "snmp_name web", "hashed"])
def test_keepalived_keywords_lvs_app_does_not_use_are_warnings(keyword):
    cfg = conf(vs(f"lb_kind NAT\n{keyword}\n"))
    assert len(cfg.warnings) == 1 and f"{keyword.split()[0]} ignored" in cfg.warnings[0]


def test_delay_loop_and_timers_take_fractions_of_a_second():
    cfg = conf(rs("TCP_CHECK {\n    delay_loop 0.5\n    connect_timeout 1.25\n}\n"))
    checker = only_checker(cfg)
    assert (checker.delay_loop, checker.connect_timeout, checker.warmup) == (0.5, 1.25, 0.5)


# -- real_server keywords ------------------------------------------------------------

def test_real_server_keywords():
    cfg = conf(rs("""\
        weight 5
        uthreshold 100
        lthreshold 50
        inhibit_on_failure
        notify_up "/usr/local/bin/rs-notify.sh UP 'web one'" nobody nogroup
        notify_down /usr/local/bin/rs-down.sh
        """, header="10.0.0.11 8080"))
    server = cfg.table.sorted_services()[0].servers[0]
    assert (server.port, server.weight, server.u_threshold, server.l_threshold) == (
        8080, 5, 100, 50)
    health = only_server(cfg)
    assert health.inhibit_on_failure is True
    assert health.notify_up == Script(("/usr/local/bin/rs-notify.sh", "UP", "web one"),
                                      "nobody", "nogroup")
    assert health.notify_down == Script(("/usr/local/bin/rs-down.sh",))


def test_inhibit_on_failure_takes_a_bool():
    cfg = conf(vs("inhibit_on_failure\nreal_server 10.0.0.11 80 {\n inhibit_on_failure off\n}\n"))
    assert only_server(cfg).inhibit_on_failure is False


def test_real_server_without_block_or_port():
    cfg = conf(vs("lb_kind NAT\nreal_server 10.0.0.11\n"))
    assert cfg.entries()[0][2] == [(ip("10.0.0.11"), 80, {"method": "masq"})]


# -- checkers --------------------------------------------------------------------------

def test_tcp_check_defaults_come_from_real_server_and_keepalived():
    checker = only_checker(conf(rs("TCP_CHECK {\n}\n", header="10.0.0.11 8080")))
    assert checker == TcpCheck(
        "TCP_CHECK", "keepalived.conf:4", connect_ip=ip("10.0.0.11"), connect_port=8080,
        connect_timeout=5.0, retry=1, delay_before_retry=1.0, warmup=60.0, delay_loop=60.0,
        alpha=False)


def test_common_checker_options():
    checker = only_checker(conf(rs("""\
        TCP_CHECK {
            connect_ip 10.0.1.11
            connect_port 8443
            bindto 10.0.0.2
            bind_if eth1
            bind_port 40000
            fwmark 9
            connect_timeout 4
            retry 5
            delay_before_retry 2.5
            warmup 0
            delay_loop 15
            alpha yes
            log_all_failures
        }
        """)))
    assert checker == TcpCheck(
        "TCP_CHECK", "keepalived.conf:4", connect_ip=ip("10.0.1.11"), connect_port=8443,
        bindto=ip("10.0.0.2"), bind_if="eth1", bind_port=40000, fwmark=9, connect_timeout=4.0,
        retry=5, delay_before_retry=2.5, warmup=0.0, delay_loop=15.0, alpha=True,
        log_all_failures=True)


def test_nb_get_retry_is_the_old_name_of_retry():
    cfg = conf(rs("HTTP_GET {\n nb_get_retry 4\n url {\n  path /\n }\n}\n"))
    assert only_checker(cfg).retry == 4
    assert ("keepalived.conf:5: virtual_server 10.0.0.100 80: real_server 10.0.0.11 80: "
            "HTTP_GET: nb_get_retry is deprecated - it is retry") in cfg.warnings


def test_timing_is_inherited_checker_from_real_server_from_virtual_server():
    cfg = conf(vs("""\
        delay_loop 20
        connect_timeout 7
        retry 4
        delay_before_retry 6
        warmup 2
        real_server 10.0.0.11 80 {
            delay_loop 10
            retry 3
            TCP_CHECK {
                retry 1
            }
        }
        """))
    checker = only_checker(cfg)
    assert (checker.delay_loop, checker.connect_timeout, checker.retry,
            checker.delay_before_retry, checker.warmup) == (10.0, 7.0, 1, 6.0, 2.0)


@pytest.mark.parametrize("block, retry, before", [
    ("HTTP_GET {\n url {\n  path /\n }\n}", 1, 3.0),
    ("SSL_GET {\n url {\n  path /\n }\n}", 1, 3.0),
    ("DNS_CHECK {\n}", 3, 30.0),
    ("MISC_CHECK {\n misc_path /bin/true\n}", 0, 1.0),
    ("UDP_CHECK {\n}", 1, 1.0),
    ("PING_CHECK {\n}", 1, 1.0),
    ("SMTP_CHECK {\n}", 1, 1.0),
])
def test_per_checker_defaults(block, retry, before):
    checker = only_checker(conf(vs("delay_loop 30\nreal_server 10.0.0.11 80 {\n"
                                   + block + "\n}\n")))
    assert (checker.retry, checker.delay_before_retry) == (retry, before)


@pytest.mark.parametrize("where, before", [
    ("", 0.2),                                  # a sub-second loop: the loop
    ("delay_before_retry 0.5\n", 0.5),          # written: kept
])
@pytest.mark.parametrize("block", ["TCP_CHECK {\n}", "HTTP_GET {\n url {\n  path /\n }\n}"])
def test_a_sub_second_delay_loop_retries_after_the_loop(block, where, before):
    checker = only_checker(conf(vs("delay_loop 0.2\n" + where + "real_server 10.0.0.11 80 {\n"
                                   + block + "\n}\n")))
    assert (checker.delay_loop, checker.retry, checker.delay_before_retry) == (0.2, 1, before)


def test_http_get_urls():
    cfg = conf(vs("""\
        virtualhost vs.example.org
        real_server 10.0.0.11 80 {
            virtualhost rs.example.org
            HTTP_GET {
                http_protocol 1.1
                fast_recovery
                url {
                    path /index.html
                    digest 9B3A0C85A887A256D6939DA88AABD8CD
                    status_code 200-299 404 503
                }
                url {
                    path /status
                    virtualhost status.example.org
                    regex "up|ok"
                    regex_no_match
                    regex_options caseless multiline
                    regex_stack 1024 65536
                    regex_min_offset 10
                    regex_max_offset 400
                }
            }
        }
        """))
    checker = only_checker(cfg)
    assert isinstance(checker, HttpCheck) and not checker.ssl
    assert (checker.http_protocol, checker.fast_recovery) == ("1.1", True)
    assert checker.urls == (
        Url("/index.html", digest="9b3a0c85a887a256d6939da88aabd8cd",
            status_codes=((200, 299), (404, 404), (503, 503)), virtualhost="rs.example.org"),
        Url("/status", virtualhost="status.example.org", regex="up|ok", regex_no_match=True,
            regex_options=("caseless", "multiline"), regex_stack=(1024, 65536),
            regex_min_offset=10, regex_max_offset=400))


def test_url_default_status_and_virtualhost_from_the_virtual_server():
    cfg = conf(vs("virtualhost vs.example.org\n"
                  "real_server 10.0.0.11 80 {\n HTTP_GET {\n  url {\n   path /\n  }\n }\n}\n"))
    assert only_checker(cfg).urls == (Url("/", status_codes=((200, 299),),
                                          virtualhost="vs.example.org"),)


def test_ssl_get_and_the_ssl_block():
    cfg = conf("SSL {\n password secret\n ca /etc/ssl/ca.pem\n certificate /etc/ssl/c.pem\n"
               " key /etc/ssl/k.pem\n}\n" + rs("""\
        SSL_GET {
            enable_sni
            sni_name www.example.org
            tls_compliant
            connect_port 443
            url {
                path /
            }
        }
        """))
    checker = only_checker(cfg)
    assert checker.ssl and checker.enable_sni and checker.tls_compliant
    assert (checker.sni_name, checker.connect_port) == ("www.example.org", 443)
    assert cfg.ssl == keepalived.SslContext("secret", "/etc/ssl/ca.pem", "/etc/ssl/c.pem",
                                            "/etc/ssl/k.pem")


def test_udp_check_payload_and_reply_pattern():
    checker = only_checker(conf(rs("""\
        UDP_CHECK {
            payload Ab12f 3 456
            require_reply 0X 1x
            min_reply_length 2
            max_reply_length 64
        }
        """)))
    assert isinstance(checker, UdpCheck)
    assert checker.payload == bytes([0xAB, 0x12, 0x0F, 0x03, 0x45, 0x06])
    assert checker.require_reply
    assert (checker.reply_data, checker.reply_mask) == (bytes([0x00, 0x10]),
                                                        bytes([0xF0, 0xF0]))
    assert (checker.min_reply_length, checker.max_reply_length) == (2, 64)


def test_udp_check_require_reply_alone():
    checker = only_checker(conf(rs("UDP_CHECK {\n require_reply\n}\n")))
    assert checker.require_reply and checker.reply_data is None and checker.payload is None


def test_ping_check():
    checker = only_checker(conf(rs("PING_CHECK {\n retry 4\n}\n")))
    assert isinstance(checker, PingCheck)
    assert (checker.connect_ip, checker.connect_port, checker.retry) == (ip("10.0.0.11"),
                                                                         None, 4)


def test_dns_check():
    checker = only_checker(conf(rs("DNS_CHECK {\n type aaaa\n name www.example.org\n}\n",
                                   header="10.0.0.11 53")))
    assert isinstance(checker, DnsCheck)
    assert (checker.type, checker.name, checker.connect_port) == ("AAAA", "www.example.org", 53)
    assert (only_checker(conf(rs("DNS_CHECK {\n}\n"))).type,
            only_checker(conf(rs("DNS_CHECK {\n}\n"))).name) == ("SOA", ".")


def test_smtp_check_and_its_old_host_blocks():
    cfg = conf(rs("""\
        SMTP_CHECK {
            helo_name "lb.example.org"
            connect_timeout 10
            host {
                connect_ip 10.0.0.11
            }
            host {
                connect_ip 192.0.2.11
                connect_port 587
                bindto 192.0.2.2
            }
        }
        """, header="10.0.0.11 25"))
    first, second = only_server(cfg).checkers
    assert isinstance(first, SmtpCheck) and first.helo_name == "lb.example.org"
    assert (first.connect_ip, first.connect_port, first.connect_timeout) == (
        ip("10.0.0.11"), 25, 10.0)
    assert (second.connect_ip, second.connect_port, second.bindto) == (
        ip("192.0.2.11"), 587, ip("192.0.2.2"))
    assert any("host blocks are deprecated" in w for w in cfg.warnings)


def test_misc_check():
    checker = only_checker(conf(rs("""\
        MISC_CHECK {
            misc_path "/usr/local/bin/probe.sh 10.0.0.11 'two words'"
            misc_timeout 5
            misc_dynamic
            user nobody nogroup
        }
        """)))
    assert isinstance(checker, MiscCheck)
    assert checker.script == Script(("/usr/local/bin/probe.sh", "10.0.0.11", "two words"),
                                    "nobody", "nogroup")
    assert (checker.timeout, checker.dynamic, checker.connect_ip) == (5.0, True, None)


def test_misc_check_unquoted_arguments_and_default_timeout():
    checker = only_checker(conf(rs("MISC_CHECK {\n misc_path /bin/probe -q 'a b'\n"
                                   " delay_loop 9\n}\n")))
    assert checker.script.argv == ("/bin/probe", "-q", "a b")
    assert checker.timeout == 9.0


def test_several_checkers_per_real_server():
    cfg = conf(rs("TCP_CHECK {\n}\nPING_CHECK {\n}\nTCP_CHECK {\n connect_port 22\n}\n"))
    assert [type(c).__name__ for c in only_server(cfg).checkers] == [
        "TcpCheck", "PingCheck", "TcpCheck"]


@pytest.mark.parametrize("kind", ["BFD_CHECK", "FILE_CHECK"])
def test_bfd_and_file_checkers_are_ignored_with_a_warning(kind):
    cfg = conf(rs(f"{kind} {{\n name x\n}}\n"))
    assert only_server(cfg).checkers == []
    assert any(f"{kind} ignored" in w for w in cfg.warnings)


# -- virtual_server_group --------------------------------------------------------------

def test_group_expands_to_one_service_per_member():
    cfg = conf("""\
        virtual_server_group WEB {
            10.0.0.1 8080
            10.0.0.2 80
            192.168.200.3-5 80
            192.168.201.254-192.168.202.1 80
            10.1.0.8/30 443
        }
        virtual_server group WEB {
            lb_algo rr
            lb_kind DR
            protocol TCP
            real_server 10.0.0.11 {
                weight 2
            }
        }
        """)
    assert [str(k) for k in cfg.keys] == [
        "tcp 10.0.0.1:8080", "tcp 10.0.0.2:80", "tcp 192.168.200.3:80", "tcp 192.168.200.4:80",
        "tcp 192.168.200.5:80", "tcp 192.168.201.254:80", "tcp 192.168.201.255:80",
        "tcp 192.168.202.0:80", "tcp 192.168.202.1:80", "tcp 10.1.0.8:443", "tcp 10.1.0.9:443",
        "tcp 10.1.0.10:443", "tcp 10.1.0.11:443"]
    assert {(s[2][0][1]) for s in cfg.entries()} == {8080, 80, 443}   # DR: the service port
    assert cfg.health[0].name == "group WEB" and len(cfg.health[0].keys) == 13


def test_group_with_ipv6_range_and_fwmarks():
    cfg = conf("""\
        virtual_server_group MIXED {
            2001:db8::a-c 80
            fwmark 3
            fwmark 4 inet6
        }
        virtual_server group MIXED {
            protocol TCP
            lb_kind TUN
            persistence_timeout 60
            real_server 2001:db8::11 80 {
            }
        }
        """, marks=marks("3 tcp:[2001:db8::1]:80", "4 tcp:[2001:db8::2]:443"))
    assert [str(k) for k in cfg.keys] == ["tcp [2001:db8::a]:80", "tcp [2001:db8::b]:80",
                                          "tcp [2001:db8::c]:80", "fwmark 3 IPv6",
                                          "fwmark 4 IPv6"]


def test_group_may_be_defined_after_its_use():
    cfg = conf("virtual_server group G {\n protocol UDP\n real_server 10.0.0.11 53 {\n }\n}\n"
               "virtual_server_group G {\n 10.0.0.53 53\n}\n")
    assert [str(k) for k in cfg.keys] == ["udp 10.0.0.53:53"]


def test_group_member_without_port_makes_the_service_persistent_as_keepalived():
    cfg = conf("virtual_server_group G {\n 10.0.0.1\n}\n"
               "virtual_server group G {\n protocol TCP\n real_server 10.0.0.11 {\n }\n}\n")
    assert cfg.entries()[0][1]["timeout"] == 360
    assert any("made persistent" in w for w in cfg.warnings)


def test_empty_group_is_a_warning_and_its_virtual_server_makes_nothing():
    cfg = conf("virtual_server_group G {\n}\n"
               "virtual_server group G {\n protocol TCP\n real_server 10.0.0.11 80 {\n }\n}\n")
    assert cfg.keys == []
    assert cfg.warnings[0] == "keepalived.conf:1: virtual_server_group G has no entries"


# -- fwmark services --------------------------------------------------------------------

FWMARK = """\
virtual_server fwmark 1 {
    delay_loop 6
    lb_algo rr
    lb_kind DR
    persistence_timeout 900
    real_server 10.0.0.11 {
        weight 1
        TCP_CHECK {
            connect_port 80
        }
    }
}
"""


def test_fwmark_service_uses_the_marks_the_caller_passes():
    defined = marks("1 tcp:10.0.0.100:80 tcp:10.0.0.100:443")
    cfg = conf(FWMARK, marks=defined)
    table = ServiceTable()
    table.marks.update(defined)
    assert saved(cfg.table) == saved(ipvsadm_table("""\
        -A -f 1 -s rr -p 900
        -a -f 1 -r 10.0.0.11:0 -g -w 1
        """, table))
    assert only_checker(cfg).connect_port == 80


def test_fwmark_without_its_mark_is_the_models_error():
    assert refused(FWMARK) == (
        "keepalived.conf:1: service fwmark 1: firewall mark 1 is not defined; define its "
        "matches first (lvsadm --add-mark)")


def test_fwmark_family_from_ip_family_or_the_real_servers():
    defined = marks("2 tcp:[2001:db8::1]:80")
    by_family = conf("virtual_server fwmark 2 {\n ip_family inet6\n lb_kind TUN\n"
                     " real_server 10.0.0.11 {\n }\n}\n", marks=defined)
    by_server = conf("virtual_server fwmark 2 {\n real_server 2001:db8::11 80 {\n }\n}\n",
                     marks=defined)
    assert by_family.keys == by_server.keys == [service_key("fwmark", fwmark=2, af=6)]


def test_checker_with_no_port_to_connect_to_is_a_warning():
    cfg = conf(FWMARK.replace("            connect_port 80\n", ""),
               marks=marks("1 tcp:10.0.0.100:80"))
    assert only_checker(cfg).connect_port == 0
    assert cfg.warnings == ["keepalived.conf:8: virtual_server fwmark 1: real_server 10.0.0.11: "
                            "TCP_CHECK has no port to connect to (the real server has none); "
                            "set connect_port"]


def test_fwmark_nat_server_keeps_its_port():
    cfg = conf("virtual_server fwmark 1 {\n real_server 10.0.0.11 8080 {\n }\n}\n",
               marks=marks("1 tcp:10.0.0.100:80"))
    assert cfg.entries()[0][2] == [(ip("10.0.0.11"), 8080, {"method": "masq"})]


# -- lvs_timeouts ---------------------------------------------------------------------

def test_lvs_timeouts_partial_keeps_the_others():
    cfg = conf("global_defs {\n lvs_timeouts udp 30\n}\n" + vs(""))
    assert cfg.table.timeouts == {"tcp": 900, "tcpfin": 120, "udp": 30}
    assert cfg.timeouts == {"tcp": 0, "tcpfin": 0, "udp": 30}
    assert not [w for w in cfg.warnings if "global_defs" in w]


def test_lvs_flush_and_sync_daemon():
    cfg = conf("global_defs {\n lvs_flush\n lvs_sync_daemon eth1 VI_1\n}\n" + vs(""))
    assert any("lvs_flush ignored" in w for w in cfg.warnings)
    assert any("lvs_sync_daemon ignored" in w for w in cfg.warnings)


# -- same table as ipvsadm's rules --------------------------------------------------

@pytest.mark.parametrize("text, rules", [
    (vs("lb_algo rr\nlb_kind DR\nreal_server 10.0.0.11 80 {\n weight 1\n}\n"
        "real_server 10.0.0.12 80 {\n weight 0\n}\n"),
     "-A -t 10.0.0.100:80 -s rr\n-a -t 10.0.0.100:80 -r 10.0.0.11:80 -g -w 1\n"
     "-a -t 10.0.0.100:80 -r 10.0.0.12:80 -g -w 0\n"),
    (vs("lb_algo sh\nsh-port\nsh-fallback\nlb_kind TUN\n", protocol="UDP"),
     "-A -u 10.0.0.100:80 -s sh -b sh-fallback,sh-port\n"
     "-a -u 10.0.0.100:80 -r 10.0.0.11:80 -i -w 1\n"),
    (vs("ops\nlvs_sched mh\nmh-port\nlvs_method NAT\n"
        "real_server 10.0.0.11 5353 {\n weight 9\n uthreshold 10\n}\n", protocol="UDP"),
     "-A -u 10.0.0.100:80 -s mh -o -b mh-port\n-a -u 10.0.0.100:80 -r 10.0.0.11:5353 -m -w 9"
     " -x 10\n"),
    (vs("persistence_timeout 3600\nlb_kind DR\n", header="10.0.0.100 0"),
     "-A -t 10.0.0.100:0 -s wlc -p 3600\n-a -t 10.0.0.100:0 -r 10.0.0.11:0 -g -w 1\n"),
    (vs("lb_algo lc\nlb_kind NAT\nreal_server 2001:db8::11 8080 {\n}\n",
        header="2001:db8::100 443"),
     "-A -t [2001:db8::100]:443 -s lc\n-a -t [2001:db8::100]:443 -r [2001:db8::11]:8080 -m\n"),
])
def test_same_table_as_the_equivalent_ipvsadm_rules(text, rules):
    assert saved(conf(text).table) == saved(ipvsadm_table(rules))


def test_same_table_as_ipvsadm_for_a_group():
    cfg = conf("virtual_server_group G {\n 10.0.0.1-2 80\n}\n"
               "virtual_server group G {\n protocol TCP\n lb_algo wrr\n lb_kind NAT\n"
               " real_server 10.0.0.11 8080 {\n  weight 2\n }\n}\n")
    assert saved(cfg.table) == saved(ipvsadm_table("""\
        -A -t 10.0.0.1:80 -s wrr
        -a -t 10.0.0.1:80 -r 10.0.0.11:8080 -m -w 2
        -A -t 10.0.0.2:80 -s wrr
        -a -t 10.0.0.2:80 -r 10.0.0.11:8080 -m -w 2
        """))


# -- applying to another table ------------------------------------------------------

def test_apply_adds_to_a_copy_all_or_nothing():
    cfg = conf(SAMPLE)
    base = ipvsadm_table("-A -u 10.0.0.100:53 -s rr\n")
    new = cfg.apply(base)
    assert [str(k) for k in new.services] == ["udp 10.0.0.100:53", "tcp 10.0.0.100:80"]
    assert list(base.services) == [service_key("udp", "10.0.0.100", 53)]
    assert new.timeouts == {"tcp": 7200, "tcpfin": 60, "udp": 120}


def test_apply_conflict_names_the_file_line_and_leaves_the_table():
    base = ipvsadm_table("-A -t 10.0.0.100:80 -s rr\n")
    with pytest.raises(ConfigError) as info:
        conf(SAMPLE).apply(base)
    assert info.value.message == ("keepalived.conf:23: service tcp 10.0.0.100:80 already "
                                  "exists")
    assert base.services[service_key("tcp", "10.0.0.100", 80)].scheduler == "rr"


def test_apply_replace_lets_the_file_win_for_the_keys_it_defines():
    base = ipvsadm_table("-A -t 10.0.0.100:80 -s rr\n-A -t 10.0.0.100:81 -s rr\n")
    new = conf(SAMPLE).apply(base, replace=True)
    assert new.services[service_key("tcp", "10.0.0.100", 80)].scheduler == "wrr"
    assert service_key("tcp", "10.0.0.100", 81) in new.services


def test_entries_are_model_keywords():
    key, options, servers = conf(SAMPLE).entries()[0]
    assert options == {"scheduler": "wrr", "persistent": True, "timeout": 600,
                       "netmask": "255.255.255.0"}
    assert servers[0] == (ip("10.0.0.11"), 8080, {"method": "masq", "weight": 3})
    table = ServiceTable()
    table.add_service(key, **options)
    for address, port, server_options in servers:
        table.add_server(key, address, port, **server_options)
    assert saved(table).splitlines()[0] == "-A -t 10.0.0.100:80 -s wrr -p 600 -M 255.255.255.0"


# -- include ---------------------------------------------------------------------------

def test_include_is_relative_to_the_including_file(tmp_path):
    (tmp_path / "conf.d" / "vs").mkdir(parents=True)
    (tmp_path / "keepalived.conf").write_text("include conf.d/services.conf\n")
    (tmp_path / "conf.d" / "services.conf").write_text("include vs/*.conf\n")
    (tmp_path / "conf.d" / "vs" / "b.conf").write_text(vs("", header="10.0.0.2 80"))
    (tmp_path / "conf.d" / "vs" / "a.conf").write_text(vs("", header="10.0.0.1 80"))
    cfg = keepalived.load(str(tmp_path / "keepalived.conf"))
    assert [str(k) for k in cfg.keys] == ["tcp 10.0.0.1:80", "tcp 10.0.0.2:80"]
    assert cfg.files == [str(tmp_path / p) for p in (
        "keepalived.conf", "conf.d/services.conf", "conf.d/vs/a.conf", "conf.d/vs/b.conf")]
    assert cfg.health[0].origin == f"{tmp_path}/conf.d/vs/a.conf:1"


def test_include_inside_a_block_and_brace_patterns(tmp_path):
    (tmp_path / "web1.inc").write_text("real_server 10.0.0.11 80 {\n weight 1\n}\n")
    (tmp_path / "web2.inc").write_text("real_server 10.0.0.12 80 {\n weight 2\n}\n")
    main = tmp_path / "keepalived.conf"
    main.write_text("virtual_server 10.0.0.100 80 {\n protocol TCP\n"
                    " include web{1,2}.inc\n}\n")
    cfg = keepalived.load(str(main))
    assert [s.port for s in cfg.services[0].servers] == [80, 80]
    assert [s.options["weight"] for s in cfg.services[0].servers] == [1, 2]


def test_include_wildcard_matching_nothing_is_a_warning(tmp_path):
    main = tmp_path / "keepalived.conf"
    main.write_text("include conf.d/*.conf\n" + vs(""))
    cfg = keepalived.load(str(main))
    assert cfg.warnings[0] == (f"{main}:1: include conf.d/*.conf: nothing matches "
                               f"{tmp_path}/conf.d/*.conf")


def test_include_of_text_is_relative_to_its_name(tmp_path):
    (tmp_path / "rs.inc").write_text("real_server 10.0.0.11 80 {\n}\n")
    cfg = keepalived.parse("virtual_server 10.0.0.1 80 {\nprotocol TCP\ninclude rs.inc\n}\n",
                           name=str(tmp_path / "keepalived.conf"))
    assert len(cfg.services[0].servers) == 1


def test_the_same_file_may_be_included_twice(tmp_path):
    (tmp_path / "rs.inc").write_text("weight 2\n")
    main = tmp_path / "keepalived.conf"
    main.write_text("virtual_server 10.0.0.1 80 {\nprotocol TCP\nreal_server 10.0.0.11 80 {\n"
                    "include rs.inc\ninclude rs.inc\n}\n}\n")
    assert keepalived.load(str(main)).services[0].servers[0].options["weight"] == 2


# -- keepalived's corrections, as warnings ---------------------------------------------

@pytest.mark.parametrize("text, warning, check", [
    (vs("lb_kind NAT\n", protocol=None),
     "keepalived.conf:1: virtual_server 10.0.0.100 80: no protocol set - UDP, as keepalived "
     "defaults", lambda cfg: cfg.keys[0].protocol == "udp"),
    (vs("lb_kind NAT\n", header="10.0.0.100 0"),
     "keepalived.conf:1: virtual_server 10.0.0.100 0: port 0 is only valid for a persistent "
     "service - made persistent (360 s), as keepalived does",
     lambda cfg: cfg.entries()[0][1]["timeout"] == 360),
    (vs("lb_kind DR\nreal_server 10.0.0.11 8080 {\n}\n"),
     "keepalived.conf:4: virtual_server 10.0.0.100 80: real_server 10.0.0.11 8080: droute "
     "server port differs from the service port 80 - the service port is used",
     lambda cfg: cfg.entries()[0][2][0][1] == 80),
    (vs("lb_kind NAT\nreal_server 10.0.0.11 80 {\n weight 1\n}\n"
        "real_server 10.0.0.11 80 {\n weight 5\n}\n"),
     "keepalived.conf:7: virtual_server 10.0.0.100 80: real_server 10.0.0.11 80 is duplicated "
     "- ignored, as keepalived does", lambda cfg: cfg.entries()[0][2][0][2]["weight"] == 1),
    (vs("lb_kind NAT\nreal_server 10.0.0.11 80 {\n}\nreal_server 2001:db8::11 80 {\n}\n"),
     "keepalived.conf:6: virtual_server 10.0.0.100 80: real_server 2001:db8::11 80: address "
     "family differs from the virtual server's - ignored, as keepalived does",
     lambda cfg: len(cfg.entries()[0][2]) == 1),
    (vs("lb_kind NAT\nops\n"),
     "keepalived.conf:4: virtual_server 10.0.0.100 80: one packet scheduling requires UDP "
     "- ignored", lambda cfg: "ops" not in cfg.entries()[0][1]),
    (vs("lb_kind NAT\nlb_algo rr\nsh-port\n"),
     "keepalived.conf:5: virtual_server 10.0.0.100 80: sh-port only applies to the sh "
     "scheduler - ignored", lambda cfg: "sched_flags" not in cfg.entries()[0][1]),
    ("virtual_server 10.0.0.100 80 {\n protocol TCP\n}\n",
     "keepalived.conf:1: virtual_server 10.0.0.100 80 has no real servers - ignored, as "
     "keepalived does", lambda cfg: cfg.keys == [] and cfg.health == []),
    (vs("lb_kind NAT\nquorum 5\n"),
     "keepalived.conf:1: virtual_server 10.0.0.100 80: quorum 5 exceeds the total weight 1 of "
     "the real servers - lowered to 1, as keepalived does",
     lambda cfg: cfg.health[0].quorum == 1),
    (vs("lb_kind NAT\nquorum 1\nhysteresis 1\n"),
     "keepalived.conf:1: virtual_server 10.0.0.100 80: hysteresis 1 is not below quorum 1 - "
     "lowered to 0, as keepalived does", lambda cfg: cfg.health[0].hysteresis == 0),
    ("virtual_server fwmark 1 {\n protocol TCP\n lb_kind NAT\n real_server 10.0.0.11 80 {\n"
     " }\n}\n",
     "keepalived.conf:2: virtual_server fwmark 1: protocol ignored for a fwmark service",
     lambda cfg: cfg.keys[0].is_fwmark),
    ("virtual_server fwmark 1 {\n lb_kind DR\n real_server 10.0.0.11 80 {\n }\n}\n",
     "keepalived.conf:3: virtual_server fwmark 1: real_server 10.0.0.11 80: droute server "
     "port ignored for a fwmark service", lambda cfg: cfg.entries()[0][2][0][1] == 0),
])
def test_keepalived_corrections_are_made_and_reported(text, warning, check):
    cfg = conf(text, marks=marks("1 tcp:10.0.0.100:80"))
    assert warning in cfg.warnings
    assert check(cfg)


# -- unknown keywords ----------------------------------------------------------------

def test_unknown_keyword_in_a_virtual_server_is_an_error_with_a_hint():
    assert refused(vs("lb_algoo wrr\n")) == (
        "keepalived.conf:3: unknown keyword 'lb_algoo' in virtual_server 10.0.0.100 80; "
        "did you mean 'lb_algo'?")


@pytest.mark.parametrize("text, message", [
    ("virtual_sever 10.0.0.1 80 {\n}\n",
     "keepalived.conf:1: unknown keyword 'virtual_sever' in the top level; did you mean "
     "'virtual_server'?"),
    (rs("wieght 2\n"),
     "keepalived.conf:4: unknown keyword 'wieght' in virtual_server 10.0.0.100 80: "
     "real_server 10.0.0.11 80; did you mean 'weight'?"),
    (rs("TCP_CHECK {\n conect_port 80\n}\n"),
     "keepalived.conf:5: unknown keyword 'conect_port' in virtual_server 10.0.0.100 80: "
     "real_server 10.0.0.11 80: TCP_CHECK; did you mean 'connect_port'?"),
    (rs("HTTP_GET {\n url {\n  paht /\n }\n}\n"),
     "keepalived.conf:6: unknown keyword 'paht' in virtual_server 10.0.0.100 80: real_server "
     "10.0.0.11 80: HTTP_GET: url; did you mean 'path'?"),
    (rs("TCP_CHECK {\n helo_name x\n}\n"),
     "keepalived.conf:5: unknown keyword 'helo_name' in virtual_server 10.0.0.100 80: "
     "real_server 10.0.0.11 80: TCP_CHECK"),
    (rs("MISC_CHECK {\n misc_path /bin/true\n connect_port 80\n}\n"),
     "keepalived.conf:6: unknown keyword 'connect_port' in virtual_server 10.0.0.100 80: "
     "real_server 10.0.0.11 80: MISC_CHECK"),
    ("SSL {\n cafile x\n}\n", "keepalived.conf:2: unknown keyword 'cafile' in SSL"),
])
def test_unknown_keywords_everywhere_lvs_app_reads(text, message):
    assert refused(text).startswith(message)


def test_unknown_keywords_are_warnings_when_not_strict():
    cfg = conf(vs("lb_algoo wrr\nnew_keyword_from_2030 yes\n"), strict=False)
    assert len(cfg.keys) == 1
    assert cfg.warnings[:2] == [
        "keepalived.conf:3: unknown keyword 'lb_algoo' in virtual_server 10.0.0.100 80; did "
        "you mean 'lb_algo'? (ignored)",
        "keepalived.conf:4: unknown keyword 'new_keyword_from_2030' in virtual_server "
        "10.0.0.100 80 (ignored)"]


# -- errors: one test per message ------------------------------------------------------

ERRORS = [
    # the text
    ('virtual_server 10.0.0.1 80 {\n virtualhost "www\n}\n',
     "keepalived.conf:2: unterminated quoted string \"www"),
    ("virtual_server 10.0.0.1 80 {\n protocol TCP\n}\n}\n",
     "keepalived.conf:4: unbalanced '}': no block is open here"),
    ("virtual_server 10.0.0.1 80 {\n protocol TCP\n",
     "keepalived.conf:1: missing '}' for 'virtual_server 10.0.0.1 80' opened at "
     "keepalived.conf:1"),
    ("{\n}\n", "keepalived.conf:1: '{' without a keyword before it"),
    ("$VIP=10.0.0.1\n", "keepalived.conf:1: parameter substitution ($NAME=value) is not "
     "supported by lvs_app's keepalived parser"),
    ("~SEQ(N, 1, 3) virtual_server 10.0.0.$N 80 {\n}\n",
     "keepalived.conf:1: ~SEQ and ~LST blocks are not supported"),
    # arguments
    (vs("lb_algo\n"), "keepalived.conf:3: virtual_server 10.0.0.100 80: lb_algo needs a value"),
    ("virtual_server 10.0.0.1 {\n}\n".replace("10.0.0.1 ", ""),
     "keepalived.conf:1: virtual_server needs an argument"),
    (vs("lb_algo rr wrr\n"), "keepalived.conf:3: virtual_server 10.0.0.100 80: lb_algo takes "
     "at most 1 argument(s), not 'rr wrr'"),
    (vs("ops yes please\n"), "keepalived.conf:3: virtual_server 10.0.0.100 80: ops takes at "
     "most 1 argument(s)"),
    (rs("TCP_CHECK {\n}\nweight 1 {\n}\n"),
     "keepalived.conf:6: virtual_server 10.0.0.100 80: real_server 10.0.0.11 80: weight does "
     "not take a block { ... }"),
    ("virtual_server 10.0.0.1 80\n", "keepalived.conf:1: virtual_server 10.0.0.1 80: "
     "virtual_server needs a block { ... }"),
    (rs("weight heavy\n"), "keepalived.conf:4: virtual_server 10.0.0.100 80: real_server "
     "10.0.0.11 80: weight 'heavy' is not a whole number"),
    (vs("quorum 0\n"), "keepalived.conf:3: virtual_server 10.0.0.100 80: quorum 0 must be "
     "1..2147483647"),
    (vs("delay_loop soon\n"), "keepalived.conf:3: virtual_server 10.0.0.100 80: delay_loop "
     "'soon' is not a time in seconds (such as 3 or 1.5)"),
    (vs("delay_loop 0\n"), "keepalived.conf:3: virtual_server 10.0.0.100 80: delay_loop 0 "
     "must be more than 0 and at most 4294967295 seconds"),
    (vs("warmup 5000000000\n"), "keepalived.conf:3: virtual_server 10.0.0.100 80: warmup "
     "5000000000 must be 0 to 4294967295 seconds"),
    (vs("alpha maybe\n"), "keepalived.conf:3: virtual_server 10.0.0.100 80: alpha 'maybe' "
     "must be one of on, yes, true, off, no, false"),
    (vs("", header="10.0.0.300 80"), "keepalived.conf:1: virtual_server address '10.0.0.300' "
     "is not an IPv4 or IPv6 address"),
    (vs("", header="10.0.0.1 http"), "keepalived.conf:1: virtual_server port 'http' is not a "
     "whole number"),
    (vs("", header="10.0.0.1 70000"), "keepalived.conf:1: virtual_server port 70000 must be "
     "0..65535"),
    (vs("real_server 10.0.0.1.1 80 {\n}\n"), "keepalived.conf:3: virtual_server 10.0.0.100 80: "
     "real_server address '10.0.0.1.1' is not an IPv4 or IPv6 address"),
    (rs("TCP_CHECK {\n connect_port 0\n}\n"), "keepalived.conf:5: virtual_server 10.0.0.100 "
     "80: real_server 10.0.0.11 80: TCP_CHECK: connect port 0 must be 1..65535"),
    (rs("notify_up \"/bin/x 'a\"\n"), "keepalived.conf:4: virtual_server 10.0.0.100 80: "
     "real_server 10.0.0.11 80: notify_up: unterminated ' in \"/bin/x 'a\""),
    (rs('notify_up ""\n'), "keepalived.conf:4: virtual_server 10.0.0.100 80: real_server "
     "10.0.0.11 80: notify_up needs a command"),
    (rs("notify_up /bin/x user group extra\n"), "keepalived.conf:4: virtual_server 10.0.0.100 "
     "80: real_server 10.0.0.11 80: notify_up takes at most 3 argument(s)"),
    # methods
    (vs("lb_kind dr\n"), "keepalived.conf:3: virtual_server 10.0.0.100 80: lb_kind 'dr' must "
     "be NAT, DR or TUN"),
    (vs("lb_kind DR csum\n"), "keepalived.conf:3: virtual_server 10.0.0.100 80: lb_kind DR "
     "takes no options, not 'csum'"),
    (vs("lvs_method TUN type\n"), "keepalived.conf:3: virtual_server 10.0.0.100 80: "
     "lvs_method TUN type needs ipip, gue or gre"),
    (vs("lvs_method TUN type gue port\n"), "keepalived.conf:3: virtual_server 10.0.0.100 80: "
     "lvs_method TUN type gue port needs a number"),
    (vs("lvs_method TUN fast\n"), "keepalived.conf:3: virtual_server 10.0.0.100 80: "
     "lvs_method: unexpected 'fast'"),
    (vs("lvs_method TUN type gue port 5555 csum\n"), "keepalived.conf:3: service tcp "
     "10.0.0.100:80: real server 10.0.0.11:80: tunnel type 'gue' is not supported; the switch "
     "tunnels with vxlan"),
    (vs("lvs_method TUN type gre\nsorry_server 10.0.0.99 80\n"
        "real_server 10.0.0.11 80 {\n lvs_method DR\n}\n"), "keepalived.conf:3: virtual_server "
     "10.0.0.100 80: sorry_server 10.0.0.99: tunnel type 'gre' is not supported; the switch "
     "tunnels with vxlan"),
    # protocols, families, granularity
    (vs("", protocol="SCTP"), "keepalived.conf:2: virtual_server 10.0.0.100 80: protocol SCTP: "
     "SCTP services are not supported by lvs_app (the switch pipeline handles TCP and UDP)"),
    (vs("", protocol="ICMP"), "keepalived.conf:2: virtual_server 10.0.0.100 80: protocol "
     "'ICMP' must be TCP, UDP or SCTP"),
    ("virtual_server fwmark 1 {\n ip_family ipx\n}\n", "keepalived.conf:2: virtual_server "
     "fwmark 1: ip_family 'ipx' must be inet or inet6"),
    (vs("persistence_granularity 255.0.255.0\n"), "keepalived.conf:3: virtual_server "
     "10.0.0.100 80: persistence_granularity '255.0.255.0' must be a contiguous dotted "
     "netmask such as 255.255.255.0"),
    (vs("persistence_granularity 24\n"), "keepalived.conf:3: virtual_server 10.0.0.100 80: "
     "persistence_granularity '24' must be a contiguous dotted netmask"),
    ("virtual_server fwmark {\n}\n", "keepalived.conf:1: virtual_server fwmark needs one mark "
     "number"),
    ("virtual_server group {\n}\n", "keepalived.conf:1: virtual_server group needs one group "
     "name"),
    ("virtual_server fwmark 0 {\n}\n", "keepalived.conf:1: fwmark 0 must be 1..4294967295"),
    # groups
    ("virtual_server group NOPE {\n real_server 10.0.0.1 80 {\n }\n}\n",
     "keepalived.conf:1: virtual_server group NOPE: virtual_server_group NOPE is not defined"),
    ("virtual_server_group {\n}\n", "keepalived.conf:1: virtual_server_group needs one name"),
    ("virtual_server_group G {\n 10.0.0.1 80\n}\nvirtual_server_group G {\n 10.0.0.2 80\n}\n",
     "keepalived.conf:4: virtual_server_group G is already defined at keepalived.conf:1"),
    ("virtual_server_group G {\n fwmark 1 inet5\n}\n", "keepalived.conf:2: "
     "virtual_server_group G: fwmark family 'inet5' must be inet or inet6"),
    ("virtual_server_group G {\n www.example.org 80\n}\n", "keepalived.conf:2: "
     "virtual_server_group G: 'www.example.org' is not an address, a range"),
    ("virtual_server_group G {\n 10.0.1.9/29 80\n}\n", "keepalived.conf:2: "
     "virtual_server_group G: 10.0.1.9/29 has bits set beyond its /29 mask"),
    ("virtual_server_group G {\n 10.0.0.9-3 80\n}\n", "keepalived.conf:2: "
     "virtual_server_group G: range 10.0.0.9-3 is empty or reversed"),
    ("virtual_server_group G {\n 10.0.0.0/16 80\n}\n", "keepalived.conf:2: "
     "virtual_server_group G: range 10.0.0.0/16 has 65536 addresses; lvs_app makes at most "
     "4096 services of one entry"),
    # lvs_timeouts
    ("global_defs {\n lvs_timeouts tcp\n}\n", "keepalived.conf:2: global_defs: lvs_timeouts "
     "needs at least 2 arguments"),
    ("global_defs {\n lvs_timeouts tcp 10 fin 5\n}\n", "keepalived.conf:2: global_defs: "
     "lvs_timeouts takes tcp SECS, tcpfin SECS and udp SECS, not 'fin 5'"),
    ("global_defs {\n lvs_timeouts udp -5\n}\n", "keepalived.conf:2: udp timeout -5 must be "
     "0..2147483647"),
    # checkers
    (rs("HTTP_GET {\n url {\n  path /\n  status_code 299-200\n }\n}\n"), "keepalived.conf:7: "
     "virtual_server 10.0.0.100 80: real_server 10.0.0.11 80: HTTP_GET: url: status_code range "
     "299-200 is reversed"),
    (rs("HTTP_GET {\n url {\n  path /\n  status_code 99\n }\n}\n"), "keepalived.conf:7: "
     "virtual_server 10.0.0.100 80: real_server 10.0.0.11 80: HTTP_GET: url: status_code 99 "
     "must be 100..599"),
    (rs("HTTP_GET {\n url {\n  path /\n  digest abc\n }\n}\n"), "keepalived.conf:7: "
     "virtual_server 10.0.0.100 80: real_server 10.0.0.11 80: HTTP_GET: url: digest 'abc' must "
     "be 32 hexadecimal digits (an MD5 sum, as genhash prints it)"),
    (rs("HTTP_GET {\n url {\n  path /\n  regex_options caseles\n }\n}\n"),
     "keepalived.conf:7: virtual_server 10.0.0.100 80: real_server 10.0.0.11 80: HTTP_GET: "
     "url: regex_options 'caseles' is unknown; did you mean 'caseless'?"),
    (rs("HTTP_GET {\n url {\n  digest 9b3a0c85a887a256d6939da88aabd8cd\n }\n}\n"),
     "keepalived.conf:5: virtual_server 10.0.0.100 80: real_server 10.0.0.11 80: HTTP_GET: "
     "url: url needs a path"),
    (rs("HTTP_GET {\n http_protocol 2\n url {\n  path /\n }\n}\n"), "keepalived.conf:5: "
     "virtual_server 10.0.0.100 80: real_server 10.0.0.11 80: HTTP_GET: http_protocol '2' must "
     "be one of 1.0, 1.0C, 1.1"),
    (rs("HTTP_GET {\n connect_timeout 3\n}\n"), "keepalived.conf:4: virtual_server 10.0.0.100 "
     "80: real_server 10.0.0.11 80: HTTP_GET: HTTP_GET needs at least one url { path ... }"),
    (rs("DNS_CHECK {\n type PTR\n}\n"), "keepalived.conf:5: virtual_server 10.0.0.100 80: "
     "real_server 10.0.0.11 80: DNS_CHECK: type 'PTR' must be one of A, NS, CNAME, SOA, MX, "
     "TXT, AAAA"),
    (rs("MISC_CHECK {\n misc_timeout 5\n}\n"), "keepalived.conf:4: virtual_server 10.0.0.100 "
     "80: real_server 10.0.0.11 80: MISC_CHECK: MISC_CHECK needs misc_path"),
    (rs("UDP_CHECK {\n payload 12zz\n}\n"), "keepalived.conf:5: virtual_server 10.0.0.100 80: "
     "real_server 10.0.0.11 80: UDP_CHECK: payload '12zz' is not hexadecimal"),
    (rs("UDP_CHECK {\n require_reply 1y\n}\n"), "keepalived.conf:5: virtual_server 10.0.0.100 "
     "80: real_server 10.0.0.11 80: UDP_CHECK: require_reply '1y' is not hexadecimal (X for an "
     "ignored digit)"),
    (rs("UDP_CHECK {\n min_reply_length 10\n max_reply_length 5\n}\n"), "keepalived.conf:4: "
     "virtual_server 10.0.0.100 80: real_server 10.0.0.11 80: UDP_CHECK: max_reply_length 5 is "
     "less than min_reply_length 10"),
    # the model's messages, at the line that set the value
    (rs("weight -1\n"), "keepalived.conf:4: service tcp 10.0.0.100:80: real server "
     "10.0.0.11:80 weight -1 must be 0..65535"),
    (rs("weight 70000\n"), "keepalived.conf:4: service tcp 10.0.0.100:80: real server "
     "10.0.0.11:80 weight 70000 must be 0..65535"),
    (rs("uthreshold 5\nlthreshold 10\n"), "keepalived.conf:5: service tcp 10.0.0.100:80: real "
     "server 10.0.0.11:80: lower threshold 10 must not exceed upper threshold 5"),
    (vs("lb_algo fastest\n"), "keepalived.conf:3: service tcp 10.0.0.100:80: scheduler "
     "'fastest' is unknown"),
    (vs("persistence_timeout 0\n"), "keepalived.conf:3: service tcp 10.0.0.100:80: persistence "
     "timeout 0 must be 1..2678400"),
    (vs("persistence_engine sip\n"), "keepalived.conf:3: service tcp 10.0.0.100:80: "
     "persistence engine 'sip' is not supported"),
    (vs("persistence_engine switch\n"), "keepalived.conf:3: service tcp 10.0.0.100:80: "
     "persistence engine switch needs a persistent service (-p)"),
    (vs("persistence_granularity 255.255.255.0\nreal_server 2001:db8::11 80 {\n}\n",
        header="2001:db8::1 80"),
     "keepalived.conf:3: IPv6 netmask prefix '255.255.255.0' must be 1..128"),
    (vs("") + vs(""), "keepalived.conf:7: service tcp 10.0.0.100:80 already exists"),
]


@pytest.mark.parametrize("text, message", ERRORS, ids=[m.split(": ", 1)[1][:60] for _, m in ERRORS])
def test_error_messages_name_the_file_the_line_and_the_rule(text, message):
    assert refused(text).startswith(message)


def test_config_error_is_a_bad_request_with_its_origin():
    with pytest.raises(ConfigError) as info:
        conf(rs("weight -1\n"))
    err = info.value
    assert err.status == 400 and isinstance(err, keepalived.ConfigError)
    assert (err.origin.file, err.origin.line) == ("keepalived.conf", 4)
    assert err.reason.startswith("service tcp 10.0.0.100:80: real server")


def test_include_errors(tmp_path):
    main = tmp_path / "keepalived.conf"

    def message(text):
        main.write_text(text)
        with pytest.raises(ConfigError) as info:
            keepalived.load(str(main))
        return info.value.message

    assert message("include missing.conf\n") == (
        f"{main}:1: include missing.conf: no file {tmp_path}/missing.conf")
    assert message("includew conf.d/*.conf\n") == (
        f"{main}:1: includew conf.d/*.conf: nothing matches {tmp_path}/conf.d/*.conf")
    (tmp_path / "a.inc").write_text("x 1\n")
    assert message("includeb {a,b}.inc\n") == (
        f"{main}:1: includeb {{a,b}}.inc: nothing matches {tmp_path}/b.inc")
    assert message("include {c,d}.inc\n") == f"{main}:1: include {{c,d}}.inc: no file matches"
    assert message("include\n") == f"{main}:1: include needs one file name (quote a name with " \
        "spaces)"
    (tmp_path / "sub").mkdir()
    assert message("include sub\n") == f"{main}:1: include sub: {tmp_path}/sub is a directory"
    (tmp_path / "loop.inc").write_text("include keepalived.conf\n")
    assert message("include loop.inc\n") == (
        f"{tmp_path}/loop.inc:1: include loop: keepalived.conf -> loop.inc -> keepalived.conf")


def test_unreadable_main_file(tmp_path):
    with pytest.raises(ConfigError) as info:
        keepalived.load(str(tmp_path / "absent.conf"))
    assert info.value.message == f"cannot read {tmp_path}/absent.conf: No such file or directory"
