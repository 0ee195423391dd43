"""ryu-manager lvs_app --lvs-keepalived FILE: keepalived.conf's virtual servers at start,
PUT /ipvs/keepalived as a reload, and the start options of the health checks and
the counters (--lvs-health-address, --lvs-stats-interval)."""

import json
import urllib.request

from conftest import Controller, assert_clean_log, refused_start, wait_until

CONF = """\
! the LVS part of a keepalived.conf
global_defs {
    router_id LVS_TEST
}
virtual_server 10.0.0.100 80 {
    delay_loop 2
    lb_algo wrr
    lb_kind DR
    protocol TCP
    real_server 10.0.0.11 80 {
        weight 3
        TCP_CHECK {
            connect_timeout 1
        }
    }
    real_server 10.0.0.12 80 {
        weight 1
    }
}
"""


def put(ctl, text):
    request = urllib.request.Request(ctl.url + "/ipvs/keepalived", data=text.encode(),
                                     method="PUT", headers={"Content-Type": "text/plain"})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_keepalived_virtual_servers_win_over_the_rules_file_and_reload(tmp_path):
    rules = tmp_path / "lvs.rules"
    rules.write_text("-A -t 10.0.0.100:80 -s rr\n-A -t 10.0.0.100:443 -s lc\n")
    conf = tmp_path / "keepalived.conf"
    conf.write_text(CONF)
    ctl = Controller(tmp_path, rules=rules, extra=["--lvs-keepalived", str(conf),
                                                   "--lvs-health-address", "10.0.0.250"]).start()
    try:
        saved = ctl.lvsadm("-S", "-n").stdout.splitlines()
        assert "-A -t 10.0.0.100:80 -s wrr" in saved                 # the file's scheduler
        assert "-a -t 10.0.0.100:80 -r 10.0.0.11:80 -g -w 3" in saved
        assert "-A -t 10.0.0.100:443 -s lc" in saved                 # the rules file's own
        assert "global_defs" in ctl.log_text()                       # ignored, with a warning
        # the checker is there; with no switch connected it has nothing to probe through
        health = ctl.lvsadm("--list-health").stdout
        assert "Health checks from 10.0.0.250" in health
        assert "TCP_CHECK 10.0.0.11:80 up" in health, health
        # a reload: the 80 block changes, a new block comes
        status, body = put(ctl, CONF.replace("lb_algo wrr", "lb_algo rr").replace(
            "virtual_server 10.0.0.100 80", "virtual_server 10.0.0.100 8080"))
        assert status == 200 and body["services"] == ["tcp 10.0.0.100:8080"], body
        saved = ctl.lvsadm("-S", "-n").stdout.splitlines()
        assert "-A -t 10.0.0.100:8080 -s rr" in saved
        assert not [line for line in saved if "10.0.0.100:80 " in line + " "]   # gone with it
        # a bad reload names the line and changes nothing
        status, body = put(ctl, CONF.replace("weight 3", "weight -1"))
        assert status == 400 and ":11: " in body["error"]["message"], body
        assert ctl.lvsadm("-S", "-n").stdout.splitlines() == saved
    finally:
        ctl.stop()
    assert_clean_log(ctl.log_text())


def test_a_bad_keepalived_conf_stops_the_start_naming_file_and_line(tmp_path):
    conf = tmp_path / "keepalived.conf"
    conf.write_text(CONF.replace("lb_algo wrr", "lb_algoo wrr"))
    log = refused_start(Controller(tmp_path, extra=["--lvs-keepalived", str(conf)]).start(
        expect_ready=False))
    assert f"{conf}:7: " in log and "lb_algoo" in log


def test_checkers_need_the_health_address_or_the_start_stops_naming_the_checker(tmp_path):
    conf = tmp_path / "keepalived.conf"
    conf.write_text(CONF)
    log = refused_start(Controller(tmp_path, extra=["--lvs-keepalived", str(conf)]).start(
        expect_ready=False))
    assert f"{conf}:12: TCP_CHECK probes leave through the switch" in log
    assert "--lvs-health-address" in log


def test_a_bad_health_address_stops_the_start(tmp_path):
    log = refused_start(Controller(tmp_path, extra=["--lvs-health-address", "10.0.0.999"]).start(
        expect_ready=False))
    assert "--lvs-health-address" in log and "10.0.0.999" in log


MISC = """\
virtual_server 10.0.0.100 80 {
    delay_loop 0.3
    lvs_sched rr
    protocol TCP
    real_server 10.0.0.11 80 {
        MISC_CHECK {
            misc_path "/bin/sh -c 'test -e GOOD11'"
        }
    }
    real_server 10.0.0.12 80 {
        notify_down "/bin/sh -c 'touch DOWN12'"
        MISC_CHECK {
            misc_path "/bin/sh -c 'test -e GOOD12'"
            misc_timeout 2
        }
    }
}
"""


def test_misc_check_scripts_run_beside_ryu_and_take_a_failing_server_out(tmp_path):
    conf = tmp_path / "keepalived.conf"
    conf.write_text(MISC.replace("GOOD", str(tmp_path / "good")).replace(
        "DOWN12", str(tmp_path / "down12")))
    (tmp_path / "good11").touch()
    (tmp_path / "good12").touch()
    ctl = Controller(tmp_path, extra=["--lvs-keepalived", str(conf)]).start()
    try:
        def servers():
            return [line.split()[4] for line in ctl.lvsadm("-S", "-n").stdout.splitlines()
                    if line.startswith("-a ")]
        assert servers() == ["10.0.0.11:80", "10.0.0.12:80"]
        (tmp_path / "good12").unlink()                 # its script now exits 1
        wait_until(lambda: servers() == ["10.0.0.11:80"], 10, 0.1, "10.0.0.12 to go")
        wait_until((tmp_path / "down12").exists, 5, 0.1, "notify_down to run")
        assert "failed: exit 1" in ctl.lvsadm("--list-health").stdout
        (tmp_path / "good12").touch()
        wait_until(lambda: servers() == ["10.0.0.11:80", "10.0.0.12:80"], 10, 0.1,
                   "10.0.0.12 to come back")
    finally:
        ctl.stop()
    assert_clean_log(ctl.log_text())


def test_a_bad_stats_interval_stops_the_start(tmp_path):
    log = refused_start(Controller(tmp_path, extra=["--lvs-stats-interval", "0.1"]).start(
        expect_ready=False))
    assert "--lvs-stats-interval 0.1: must be 0.5 to 3600 seconds" in log
