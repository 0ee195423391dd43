"""lvsadm against a running ``ryu-manager lvs_app``: the foundation's done-criteria."""

from pathlib import Path

from conftest import Controller, assert_clean_log

RULES = """\
-A -t 10.0.0.100:0 -s rr -p 360
-a -t 10.0.0.100:0 -r 10.0.0.11:0 -g -w 1
-a -t 10.0.0.100:0 -r 10.0.0.12:0 -g -w 1
-A -t 10.0.0.100:80 -s wrr
-a -t 10.0.0.100:80 -r 10.0.0.11:8080 -m -w 3
-a -t 10.0.0.100:80 -r 10.0.0.12:80 -m -w 0
-A -t 10.0.0.100:443 -s sh -p 600 -M 255.255.255.0 -b sh-fallback,sh-port
-a -t 10.0.0.100:443 -r 10.0.0.13:443 -i -w 2 --tun-type vxlan
-A -u 10.0.0.100:53 -s rr -o
-a -u 10.0.0.100:53 -r 10.0.0.14:53 -m -w 1
"""

LIST = """\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  10.0.0.100:0 rr persistent 360
  -> 10.0.0.11:0                  Route   1      0          0         
  -> 10.0.0.12:0                  Route   1      0          0         
TCP  10.0.0.100:80 wrr
  -> 10.0.0.11:8080               Masq    3      0          0         
  -> 10.0.0.12:80                 Masq    0      0          0         
TCP  10.0.0.100:443 sh (sh-fallback,sh-port) persistent 600 mask 255.255.255.0
  -> 10.0.0.13:443                Tunnel  2      0          0         
UDP  10.0.0.100:53 rr ops
  -> 10.0.0.14:53                 Masq    1      0          0         
"""


def test_restore_then_save_gives_back_the_same_rules(controller):
    result = controller.lvsadm("-R", stdin=RULES)
    assert (result.returncode, result.stderr) == (0, "")
    saved = controller.lvsadm("-S", "-n")
    assert saved.returncode == 0
    assert saved.stdout == RULES
    listed = controller.lvsadm("-L", "-n")
    assert listed.stdout == LIST


def test_the_seed_configuration_works_as_written(controller):
    assert controller.lvsadm("-A", "-t", "10.0.0.100:0", "-s", "pcc").returncode == 0
    for server in ("10.0.0.11", "10.0.0.12"):
        assert controller.lvsadm("-a", "-t", "10.0.0.100:0", "-R", server).returncode == 0
    assert controller.lvsadm("-S", "-n").stdout == (
        "-A -t 10.0.0.100:0 -s rr -p 360\n"
        "-a -t 10.0.0.100:0 -r 10.0.0.11:0 -g -w 1\n"
        "-a -t 10.0.0.100:0 -r 10.0.0.12:0 -g -w 1\n")


def test_errors_name_the_object_exit_nonzero_and_change_nothing(controller):
    controller.lvsadm("-R", stdin=RULES)
    before = controller.lvsadm("-S", "-n").stdout
    dup = controller.lvsadm("-A", "-t", "10.0.0.100:80", "-s", "rr")
    assert dup.returncode != 0 and dup.stdout == ""
    assert "10.0.0.100:80" in dup.stderr and "exists" in dup.stderr
    missing = controller.lvsadm("-d", "-t", "10.0.0.100:80", "-r", "10.0.0.99")
    assert missing.returncode != 0 and "10.0.0.99" in missing.stderr
    usage = controller.lvsadm("-A", "-t", "10.0.0.100:81", "-s", "rr", "-w", "5")
    assert usage.returncode == 2 and usage.stderr
    weight = controller.lvsadm("-a", "-t", "10.0.0.100:80", "-r", "10.0.0.15", "-w", "70000")
    assert weight.returncode != 0 and weight.stderr
    restore = controller.lvsadm("-R", stdin="-A -t 10.0.0.200:80 -s rr\n-A -t 10.0.0.200:80\n")
    assert restore.returncode != 0 and "line 2" in restore.stderr
    assert controller.lvsadm("-S", "-n").stdout == before


def test_timeouts_and_zero(controller):
    assert controller.lvsadm("--set", "60", "0", "30").returncode == 0
    assert controller.lvsadm("-L", "--timeout").stdout == "Timeout (tcp tcpfin udp): 60 120 30\n"
    controller.lvsadm("-R", stdin=RULES)
    assert controller.lvsadm("-Z").returncode == 0
    stats = controller.lvsadm("-L", "-n", "--stats")
    assert stats.returncode == 0
    # ipvsadm's layout: "%-33s" and five "%9llu" counters
    assert stats.stdout.splitlines()[3] == f"{'TCP  10.0.0.100:0':<33}" + f"{0:9d}" * 5


def test_connection_listing_is_empty_without_switches(controller):
    result = controller.lvsadm("-L", "-c", "-n")
    assert result.stdout == ("IPVS connection entries\n"
                             "pro expire state       source             virtual            "
                             "destination\n")


def test_restart_comes_back_with_the_same_table(tmp_path):
    rules = tmp_path / "lvs.rules"
    first = Controller(tmp_path, rules=rules).start()
    try:
        assert first.lvsadm("-R", stdin=RULES).returncode == 0
        assert first.lvsadm("-e", "-t", "10.0.0.100:80", "-r", "10.0.0.11:8080", "-m",
                            "-w", "5").returncode == 0
        saved = first.lvsadm("-S", "-n").stdout
    finally:
        first.stop()
    assert rules.read_text() == saved
    second = Controller(tmp_path, rules=rules).start()
    try:
        assert second.lvsadm("-S", "-n").stdout == saved
    finally:
        second.stop()
    assert_clean_log(second.log_text())


def test_a_bad_rules_file_stops_the_start_with_a_clear_error(tmp_path):
    rules = tmp_path / "lvs.rules"
    rules.write_text("-A -t 10.0.0.100:80 -s rr\n-a -t 10.0.0.100:80 -r 10.0.0.11 -w 99999\n")
    ctl = Controller(tmp_path, rules=rules).start(expect_ready=False)
    try:
        assert ctl.proc.wait(timeout=30) != 0
    finally:
        ctl.stop()
    log = ctl.log_text()
    assert f"rules file {rules}: line 2:" in log
    assert "Traceback" not in log
    assert rules.read_text().startswith("-A -t 10.0.0.100:80")   # untouched


def test_unreachable_controller_is_a_clear_error(tmp_path):
    ctl = Controller(Path(tmp_path))         # never started: nothing listens
    result = ctl.lvsadm("-L", "-n")
    assert result.returncode != 0 and ctl.url in result.stderr
