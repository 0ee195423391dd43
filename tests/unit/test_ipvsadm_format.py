"""Golden tests: lvs_app.ipvsadm's formats against reference/ipvs.md §5.5, byte for byte.

The reference outputs were generated with ipvsadm 1.31 over a mock table; the
table is rebuilt here with the model (TCP/UDP/fwmark, IPv4/IPv6, NAT/DR/tunnel).
Our tunnels are VXLAN, so the three ipip/gue/gre servers of the reference are
vxlan servers and the two outputs that show tunnel types (-S, --tun-info) are
compared after replacing exactly those fields.  ``|`` marks an end of line in
the reference (trailing blanks matter).
"""

import pytest

from lvs_app import ipvsadm, model
from lvs_app.ipvsadm import formats
from lvs_app.state import RuntimeState


def _ref(text):
    lines = text.splitlines()
    assert all(line.endswith("|") for line in lines)
    return "".join(line[:-1] + "\n" for line in lines)


REF_LIST = _ref("""\
IP Virtual Server version 1.2.1 (size=4096)|
Prot LocalAddress:Port Scheduler Flags|
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn|
TCP  192.168.10.100:21 rr persistent 360|
  -> 192.168.10.11:21             Route   1      0          0         |
TCP  192.168.10.100:80 wlc|
  -> 10.0.0.1:80                  Masq    0      1          3         |
  -> 10.0.0.2:80                  Masq    1      12         340       |
  -> 10.0.0.3:8080                Masq    2      25         600       |
TCP  192.168.10.100:443 sh (sh-fallback,sh-port) persistent 360 mask 255.255.255.0|
  -> 192.168.10.11:443            Route   1      3          4         |
  -> 192.168.10.12:443            Route   1      5          6         |
TCP  192.168.10.101:0 lc persistent 360|
  -> 192.168.10.11:0              Route   1      0          0         |
UDP  192.168.10.100:53 rr ops|
  -> 10.0.0.2:53                  Masq    1      0          7         |
TCP  [2001:db8::80]:80 mh (mh-port) persistent 600 mask 64|
  -> [2001:db8::a0a0]:80          Masq    1      0          0         |
FWM  1 wrr persistent 300|
  -> 172.16.0.1:0                 Tunnel  3      1          1         |
  -> 172.16.0.2:0                 Tunnel  2      0          0         |
  -> 172.16.0.3:0                 Tunnel  1      0          0         |
FWM  2 IPv6 sed|
  -> [2001:db8::1]:0              Route   1      0          0         |
""")

REF_SAVE = _ref("""\
-A -t 192.168.10.100:21 -s rr -p 360|
-a -t 192.168.10.100:21 -r 192.168.10.11:21 -g -w 1|
-A -t 192.168.10.100:80 -s wlc|
-a -t 192.168.10.100:80 -r 10.0.0.1:80 -m -w 0|
-a -t 192.168.10.100:80 -r 10.0.0.2:80 -m -w 1|
-a -t 192.168.10.100:80 -r 10.0.0.3:8080 -m -w 2|
-A -t 192.168.10.100:443 -s sh -p 360 -M 255.255.255.0 -b sh-fallback,sh-port|
-a -t 192.168.10.100:443 -r 192.168.10.11:443 -g -w 1|
-a -t 192.168.10.100:443 -r 192.168.10.12:443 -g -w 1|
-A -t 192.168.10.101:0 -s lc -p 360|
-a -t 192.168.10.101:0 -r 192.168.10.11:0 -g -w 1|
-A -u 192.168.10.100:53 -s rr -o|
-a -u 192.168.10.100:53 -r 10.0.0.2:53 -m -w 1|
-A -t [2001:db8::80]:80 -s mh -p 600 -M 64 -b mh-port|
-a -t [2001:db8::80]:80 -r [2001:db8::a0a0]:80 -m -w 1|
-A -f 1 -s wrr -p 300|
-a -f 1 -r 172.16.0.1:0 -i -w 3 --tun-type ipip|
-a -f 1 -r 172.16.0.2:0 -i -w 2 --tun-type gue --tun-port 6080 --tun-csum|
-a -f 1 -r 172.16.0.3:0 -i -w 1 --tun-type gre --tun-nocsum|
-A -f 2 -6 -s sed|
-a -f 2 -6 -r [2001:db8::1]:0 -g -w 1|
""")

REF_STATS = _ref("""\
IP Virtual Server version 1.2.1 (size=4096)|
Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes|
  -> RemoteAddress:Port|
TCP  192.168.10.100:21                   0        0        0        0        0|
  -> 192.168.10.11:21                    0        0        0        0        0|
TCP  192.168.10.100:80              123456 99999999  100000K  987654K     123G|
  -> 10.0.0.1:80                         0        0        0        0        0|
  -> 10.0.0.2:80                    123456 99999999  100000K  987654K     123G|
  -> 10.0.0.3:8080                       0        0        0        0        0|
TCP  192.168.10.100:443                  0        0        0        0        0|
  -> 192.168.10.11:443                   0        0        0        0        0|
  -> 192.168.10.12:443                   0        0        0        0        0|
TCP  192.168.10.101:0                    0        0        0        0        0|
  -> 192.168.10.11:0                     0        0        0        0        0|
UDP  192.168.10.100:53                   0        0        0        0        0|
  -> 10.0.0.2:53                         0        0        0        0        0|
TCP  [2001:db8::80]:80                   0        0        0        0        0|
  -> [2001:db8::a0a0]:80                 0        0        0        0        0|
FWM  1                                   0        0        0        0        0|
  -> 172.16.0.1:0                        0        0        0        0        0|
  -> 172.16.0.2:0                        0        0        0        0        0|
  -> 172.16.0.3:0                        0        0        0        0        0|
FWM  2 IPv6                              0        0        0        0        0|
  -> [2001:db8::1]:0                     0        0        0        0        0|
""")

REF_EXACT = _ref("""\
IP Virtual Server version 1.2.1 (size=4096)|
Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes|
  -> RemoteAddress:Port|
TCP  192.168.10.100:21                   0        0        0        0        0|
  -> 192.168.10.11:21                    0        0        0        0        0|
TCP  192.168.10.100:80              123456 99999999 100000000 987654321 123456789012|
  -> 10.0.0.1:80                         0        0        0        0        0|
  -> 10.0.0.2:80                    123456 99999999 100000000 987654321 123456789012|
  -> 10.0.0.3:8080                       0        0        0        0        0|
TCP  192.168.10.100:443                  0        0        0        0        0|
  -> 192.168.10.11:443                   0        0        0        0        0|
  -> 192.168.10.12:443                   0        0        0        0        0|
TCP  192.168.10.101:0                    0        0        0        0        0|
  -> 192.168.10.11:0                     0        0        0        0        0|
UDP  192.168.10.100:53                   0        0        0        0        0|
  -> 10.0.0.2:53                         0        0        0        0        0|
TCP  [2001:db8::80]:80                   0        0        0        0        0|
  -> [2001:db8::a0a0]:80                 0        0        0        0        0|
FWM  1                                   0        0        0        0        0|
  -> 172.16.0.1:0                        0        0        0        0        0|
  -> 172.16.0.2:0                        0        0        0        0        0|
  -> 172.16.0.3:0                        0        0        0        0        0|
FWM  2 IPv6                              0        0        0        0        0|
  -> [2001:db8::1]:0                     0        0        0        0        0|
""")

REF_RATE = _ref("""\
IP Virtual Server version 1.2.1 (size=4096)|
Prot LocalAddress:Port                 CPS    InPPS   OutPPS    InBPS   OutBPS|
  -> RemoteAddress:Port|
TCP  192.168.10.100:21                   0        0        0        0        0|
  -> 192.168.10.11:21                    0        0        0        0        0|
TCP  192.168.10.100:80                  12      345      321    45678  1234567|
  -> 10.0.0.1:80                         0        0        0        0        0|
  -> 10.0.0.2:80                        12      345      321    45678  1234567|
  -> 10.0.0.3:8080                       0        0        0        0        0|
TCP  192.168.10.100:443                  0        0        0        0        0|
  -> 192.168.10.11:443                   0        0        0        0        0|
  -> 192.168.10.12:443                   0        0        0        0        0|
TCP  192.168.10.101:0                    0        0        0        0        0|
  -> 192.168.10.11:0                     0        0        0        0        0|
UDP  192.168.10.100:53                   0        0        0        0        0|
  -> 10.0.0.2:53                         0        0        0        0        0|
TCP  [2001:db8::80]:80                   0        0        0        0        0|
  -> [2001:db8::a0a0]:80                 0        0        0        0        0|
FWM  1                                   0        0        0        0        0|
  -> 172.16.0.1:0                        0        0        0        0        0|
  -> 172.16.0.2:0                        0        0        0        0        0|
  -> 172.16.0.3:0                        0        0        0        0        0|
FWM  2 IPv6                              0        0        0        0        0|
  -> [2001:db8::1]:0                     0        0        0        0        0|
""")

REF_THRESHOLDS = _ref("""\
IP Virtual Server version 1.2.1 (size=4096)|
Prot LocalAddress:Port            Uthreshold Lthreshold ActiveConn InActConn |
  -> RemoteAddress:Port|
TCP  192.168.10.100:21 rr persistent 360|
  -> 192.168.10.11:21             0          0          0          0         |
TCP  192.168.10.100:80 wlc|
  -> 10.0.0.1:80                  100        50         1          3         |
  -> 10.0.0.2:80                  0          0          12         340       |
  -> 10.0.0.3:8080                0          0          25         600       |
TCP  192.168.10.100:443 sh (sh-fallback,sh-port) persistent 360 mask 255.255.255.0|
  -> 192.168.10.11:443            0          0          3          4         |
  -> 192.168.10.12:443            0          0          5          6         |
TCP  192.168.10.101:0 lc persistent 360|
  -> 192.168.10.11:0              0          0          0          0         |
UDP  192.168.10.100:53 rr ops|
  -> 10.0.0.2:53                  0          0          0          7         |
TCP  [2001:db8::80]:80 mh (mh-port) persistent 600 mask 64|
  -> [2001:db8::a0a0]:80          0          0          0          0         |
FWM  1 wrr persistent 300|
  -> 172.16.0.1:0                 0          0          1          1         |
  -> 172.16.0.2:0                 0          0          0          0         |
  -> 172.16.0.3:0                 0          0          0          0         |
FWM  2 IPv6 sed|
  -> [2001:db8::1]:0              0          0          0          0         |
""")

REF_PERSISTENT_CONN = _ref("""\
IP Virtual Server version 1.2.1 (size=4096)|
Prot LocalAddress:Port            Weight    PersistConn ActiveConn InActConn |
  -> RemoteAddress:Port|
TCP  192.168.10.100:21 rr persistent 360|
  -> 192.168.10.11:21             1         0           0          0         |
TCP  192.168.10.100:80 wlc|
  -> 10.0.0.1:80                  0         0           1          3         |
  -> 10.0.0.2:80                  1         0           12         340       |
  -> 10.0.0.3:8080                2         0           25         600       |
TCP  192.168.10.100:443 sh (sh-fallback,sh-port) persistent 360 mask 255.255.255.0|
  -> 192.168.10.11:443            1         2           3          4         |
  -> 192.168.10.12:443            1         3           5          6         |
TCP  192.168.10.101:0 lc persistent 360|
  -> 192.168.10.11:0              1         0           0          0         |
UDP  192.168.10.100:53 rr ops|
  -> 10.0.0.2:53                  1         0           0          7         |
TCP  [2001:db8::80]:80 mh (mh-port) persistent 600 mask 64|
  -> [2001:db8::a0a0]:80          1         0           0          0         |
FWM  1 wrr persistent 300|
  -> 172.16.0.1:0                 3         1           1          1         |
  -> 172.16.0.2:0                 2         0           0          0         |
  -> 172.16.0.3:0                 1         0           0          0         |
FWM  2 IPv6 sed|
  -> [2001:db8::1]:0              1         0           0          0         |
""")

REF_TUN_INFO = _ref("""\
IP Virtual Server version 1.2.1 (size=4096)|
Prot LocalAddress:Port Scheduler Flags|
  -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn|
TCP  192.168.10.100:21 rr persistent 360|
  -> 192.168.10.11:21             Route   n/a           1      0          0         |
TCP  192.168.10.100:80 wlc|
  -> 10.0.0.1:80                  Masq    n/a           0      1          3         |
  -> 10.0.0.2:80                  Masq    n/a           1      12         340       |
  -> 10.0.0.3:8080                Masq    n/a           2      25         600       |
TCP  192.168.10.100:443 sh (sh-fallback,sh-port) persistent 360 mask 255.255.255.0|
  -> 192.168.10.11:443            Route   n/a           1      3          4         |
  -> 192.168.10.12:443            Route   n/a           1      5          6         |
TCP  192.168.10.101:0 lc persistent 360|
  -> 192.168.10.11:0              Route   n/a           1      0          0         |
UDP  192.168.10.100:53 rr ops|
  -> 10.0.0.2:53                  Masq    n/a           1      0          7         |
TCP  [2001:db8::80]:80 mh (mh-port) persistent 600 mask 64|
  -> [2001:db8::a0a0]:80          Masq    n/a           1      0          0         |
FWM  1 wrr persistent 300|
  -> 172.16.0.1:0                 Tunnel  ipip          3      1          1         |
  -> 172.16.0.2:0                 Tunnel  gue:6080:+c   2      0          0         |
  -> 172.16.0.3:0                 Tunnel  gre:-c        1      0          0         |
FWM  2 IPv6 sed|
  -> [2001:db8::1]:0              Route   n/a           1      0          0         |
""")

REF_SINGLE = _ref("""\
Prot LocalAddress:Port Scheduler Flags|
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn|
TCP  192.168.10.100:80 wlc|
  -> 10.0.0.1:80                  Masq    0      1          3         |
  -> 10.0.0.2:80                  Masq    1      12         340       |
  -> 10.0.0.3:8080                Masq    2      25         600       |
""")

REF_CONN = _ref("""\
IPVS connection entries|
pro expire state       source             virtual            destination|
TCP 14:57  ESTABLISHED 192.168.10.5:54321 192.168.10.100:80  10.0.0.2:80|
TCP 01:59  FIN_WAIT    192.168.10.5:54322 192.168.10.100:80  10.0.0.3:8080|
TCP 05:59  NONE        192.168.10.0:0     192.168.10.100:443 192.168.10.11:443|
UDP 04:59  UDP         192.168.10.5:32769 192.168.10.100:53  10.0.0.2:53|
IP  04:59  NONE        192.168.10.7:0     0.0.0.1:0          172.16.0.1:0|
TCP 00:58  SYN_RECV    [2001:db8::5]:54323 [2001:db8::80]:80  [2001:db8::a0a0]:80|
UDP 02:59  NONE        192.168.10.5:5060  192.168.10.100:5060 10.0.0.2:5060|
""")

REF_CONN_PC = _ref("""\
IPVS connection entries|
pro expire state       source             virtual            destination        pe name          pe_data|
TCP 14:57  ESTABLISHED 192.168.10.5:54321 192.168.10.100:80  10.0.0.2:80|
TCP 01:59  FIN_WAIT    192.168.10.5:54322 192.168.10.100:80  10.0.0.3:8080|
TCP 05:59  NONE        192.168.10.0:0     192.168.10.100:443 192.168.10.11:443|
UDP 04:59  UDP         192.168.10.5:32769 192.168.10.100:53  10.0.0.2:53|
IP  04:59  NONE        192.168.10.7:0     0.0.0.1:0          172.16.0.1:0|
TCP 00:58  SYN_RECV    [2001:db8::5]:54323 [2001:db8::80]:80  [2001:db8::a0a0]:80|
UDP 02:59  NONE        192.168.10.5:5060  192.168.10.100:5060 10.0.0.2:5060    sip                1-2-3@example|
""")

REF_TIMEOUT_DAEMON = _ref("""\
Timeout (tcp tcpfin udp): 900 120 300|
master sync daemon (mcast=eth0, syncid=0, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)|
backup sync daemon (mcast=eth1, syncid=7)|
""")


MARKS = [
    # FWM 1 (IPv4) and FWM 2 (IPv6) need definitions in lvs_app
    ("--add-mark 1 --match tcp:192.168.10.100:8000-8100 --match udp:192.168.10.100:8000-8100"
     " --mark-name web-range"),
    "--add-mark 2 --match tcp:[2001:db8::90]:80",
]


def build_table():
    """The §5.5 mock table, with its counters."""
    t = model.ServiceTable()
    for line in MARKS:
        ipvsadm.apply(t, ipvsadm.parse_args(line.split()))
    web = model.service_key("tcp", "192.168.10.100", 80)
    t.add_service(web, scheduler="wlc")
    t.add_server(web, "10.0.0.1", 80, method="masq", weight=0, u_threshold=100, l_threshold=50)
    t.add_server(web, "10.0.0.2", 80, method="masq", weight=1)
    t.add_server(web, "10.0.0.3", 8080, method="masq", weight=2)
    https = model.service_key("tcp", "192.168.10.100", 443)
    t.add_service(https, scheduler="sh", sched_flags=["sh-fallback", "sh-port"],
                  persistent=True, timeout=360, netmask="255.255.255.0")
    t.add_server(https, "192.168.10.11", 443)
    t.add_server(https, "192.168.10.12", 443)
    dns = model.service_key("udp", "192.168.10.100", 53)
    t.add_service(dns, scheduler="rr", ops=True)
    t.add_server(dns, "10.0.0.2", 53, method="masq")
    fwm1 = model.service_key("fwmark", fwmark=1)
    t.add_service(fwm1, scheduler="wrr", persistent=True, timeout=300)
    for addr, weight in (("172.16.0.1", 3), ("172.16.0.2", 2), ("172.16.0.3", 1)):
        t.add_server(fwm1, addr, 0, method="tunnel", weight=weight)
    v6 = model.service_key("tcp", "2001:db8::80", 80)
    t.add_service(v6, scheduler="mh", sched_flags=["mh-port"], persistent=True,
                  timeout=600, netmask=64)
    t.add_server(v6, "2001:db8::a0a0", 80, method="masq")
    ftp = model.service_key("tcp", "192.168.10.100", 21)
    t.add_service(ftp, scheduler="rr", persistent=True)
    t.add_server(ftp, "192.168.10.11", 21)
    allports = model.service_key("tcp", "192.168.10.101", 0)
    t.add_service(allports, scheduler="lc", persistent=True)
    t.add_server(allports, "192.168.10.11", 0)
    fwm2 = model.service_key("fwmark", fwmark=2, af=6)
    t.add_service(fwm2, scheduler="sed")
    t.add_server(fwm2, "2001:db8::1", 0)

    def server(key, addr, port):
        return t.get_server(key, addr, port)

    runtime = RuntimeState()
    for key, addr, port, active, inact, persist in (
            (web, "10.0.0.1", 80, 1, 3, 0), (web, "10.0.0.2", 80, 12, 340, 0),
            (web, "10.0.0.3", 8080, 25, 600, 0), (https, "192.168.10.11", 443, 3, 4, 2),
            (https, "192.168.10.12", 443, 5, 6, 3), (dns, "10.0.0.2", 53, 0, 7, 0),
            (fwm1, "172.16.0.1", 0, 1, 1, 1)):
        s = runtime.dest(t.get_service(key), server(key, addr, port))
        s.activeconns, s.inactconns, s.persistconns = active, inact, persist
    busy = runtime.dest(t.get_service(web), server(web, "10.0.0.2", 80))
    for obj in (busy, runtime.service(t.get_service(web))):
        obj.stats = model.Stats(123456, 99999999, 100000000, 987654321, 123456789012)
        obj.rates = model.Rates(12, 345, 321, 45678, 1234567)
    t.runtime = runtime      # the counters a running director would show
    return t


def services(table):
    return [s.to_dict(getattr(table, "runtime", None)) for s in table.sorted_services()]


def marks(table):
    return [m.to_dict() for m in table.marks.values()]


@pytest.fixture(scope="module")
def table():
    return build_table()


VXLAN_SAVE = REF_SAVE.replace(" --tun-type ipip\n", " --tun-type vxlan\n").replace(
    " --tun-type gue --tun-port 6080 --tun-csum\n", " --tun-type vxlan\n").replace(
    " --tun-type gre --tun-nocsum\n", " --tun-type vxlan\n")
VXLAN_TUN_INFO = REF_TUN_INFO.replace("ipip         ", "vxlan        ").replace(
    "gue:6080:+c  ", "vxlan        ").replace("gre:-c       ", "vxlan        ")
SAVED = "".join(line + "\n" for line in MARKS) + VXLAN_SAVE


def test_list_numeric(table):
    assert ipvsadm.format_list(services(table), ipvsadm.parse_args(["-L", "-n"])) == REF_LIST


def test_list_stats(table):
    assert ipvsadm.format_list(services(table), {"stats": True}) == REF_STATS


def test_list_stats_exact(table):
    cmd = ipvsadm.parse_args(["-L", "-n", "--stats", "--exact"])
    assert ipvsadm.format_list(services(table), cmd) == REF_EXACT


def test_list_rate(table):
    assert ipvsadm.format_list(services(table), ["rate"]) == REF_RATE


def test_list_thresholds(table):
    assert ipvsadm.format_list(services(table), ["thresholds"]) == REF_THRESHOLDS


def test_list_persistent_conn(table):
    assert ipvsadm.format_list(services(table), ["persistent_conn"]) == REF_PERSISTENT_CONN


def test_list_tun_info_prints_vxlan(table):
    assert VXLAN_TUN_INFO != REF_TUN_INFO
    assert ipvsadm.format_list(services(table), ["tun_info"]) == VXLAN_TUN_INFO


def test_list_single_service_has_no_version_header(table):
    svc = table.get_service(model.service_key("tcp", "192.168.10.100", 80)).to_dict(table.runtime)
    assert ipvsadm.format_list([svc], ["numeric"], header=False) == REF_SINGLE


def test_save_emits_marks_first_then_services(table):
    assert ipvsadm.format_save(services(table), marks(table)) == SAVED


def test_save_is_the_reference_without_marks(table):
    assert ipvsadm.format_save(services(table)) == VXLAN_SAVE


CONNS = [
    dict(protocol="TCP", expire=897, state="ESTABLISHED", client="192.168.10.5", cport=54321,
         vip="192.168.10.100", vport=80, server="10.0.0.2", dport=80),
    dict(protocol="TCP", expire=119, state="FIN_WAIT", client="192.168.10.5", cport=54322,
         vip="192.168.10.100", vport=80, server="10.0.0.3", dport=8080),
    dict(protocol="TCP", expire=359, state="NONE", client="192.168.10.0", cport=0,
         vip="192.168.10.100", vport=443, server="192.168.10.11", dport=443),
    dict(protocol="UDP", expire=299, state="UDP", client="192.168.10.5", cport=32769,
         vip="192.168.10.100", vport=53, server="10.0.0.2", dport=53),
    dict(protocol="IP", expire=299, state="NONE", client="192.168.10.7", cport=0,
         vip="0.0.0.1", vport=0, server="172.16.0.1", dport=0),
    dict(protocol="TCP", expire=58, state="SYN_RECV", client="2001:db8::5", cport=54323,
         vip="2001:db8::80", vport=80, server="2001:db8::a0a0", dport=80),
    dict(protocol="UDP", expire=179, state="NONE", client="192.168.10.5", cport=5060,
         vip="192.168.10.100", vport=5060, server="10.0.0.2", dport=5060,
         pe_name="sip", pe_data="1-2-3@example"),
]


def test_connections():
    assert ipvsadm.format_connections(CONNS) == REF_CONN


def test_connections_persistent_conn():
    assert ipvsadm.format_connections(CONNS, persistent_conn=True) == REF_CONN_PC


def test_connections_expire_minutes_not_capped():
    text = ipvsadm.format_connections([dict(CONNS[0], expire=7200 + 5)])
    assert text.splitlines()[2].startswith("TCP 120:05 ESTABLISHED ")


def test_timeout():
    first = REF_TIMEOUT_DAEMON.splitlines(keepends=True)[0]
    assert ipvsadm.format_timeout({"tcp": 900, "tcpfin": 120, "udp": 300}) == first


def test_version():
    assert ipvsadm.format_version() == (
        "lvsadm v0.1.0 (ipvsadm 1.31 compatible, IPVS v1.2.1 over OpenFlow)\n")


def test_usage_names_lvsadm():
    text = ipvsadm.format_usage()
    assert text.startswith(ipvsadm.format_version() + "Usage:\n  lvsadm -A|E virtual-service")
    assert "ipvsadm -" not in text


# -- details of ipvsadm's layout ---------------------------------------------

@pytest.mark.parametrize("value, text", [
    (0, "        0"), (99999999, " 99999999"), (100000000, "  100000K"),
    (999999999, "  999999K"), (1000000000, "    1000M"), (99999999999, "   99999M"),
    (100000000000, "     100G"), (99999999999999, "   99999G"),
    (100000000000000, "     100T"),
])
def test_print_largenum(value, text):
    assert ipvsadm.print_largenum(value) == text


@pytest.mark.parametrize("value, text", [
    (12345678, " 12345678"), (123456789, " 123456789"), (123456789012, " 123456789012"),
])
def test_print_largenum_exact(value, text):
    assert ipvsadm.print_largenum(value, exact=True) == text


def _svc(address, port=80, servers=(), **kw):
    d = {"protocol": "tcp", "address": address, "port": port, "fwmark": 0,
         "af": 6 if ":" in address else 4, "scheduler": "rr", "persistent": False,
         "timeout": None, "netmask": "255.255.255.255", "sched_flags": [], "ops": False,
         "servers": list(servers)}
    d.update(kw)
    return d


def _dest(address, port=80, **kw):
    d = {"address": address, "port": port, "method": "droute", "forward": "Route",
         "weight": 1, "u_threshold": 0, "l_threshold": 0, "activeconns": 0,
         "inactconns": 0, "persistconns": 0}
    d.update(kw)
    return d


def _service_lines(text):
    return [line for line in text.splitlines() if line[:4] in ("TCP ", "UDP ", "FWM ")]


def test_sorting_reproduces_ipvsadm_signed_int_quirk():
    # ntohl(a) - ntohl(b) as int: addresses 2^31 or more apart compare wrongly
    svcs = [_svc("10.0.0.1"), _svc("192.168.0.1"), _svc("172.16.0.1")]
    lines = _service_lines(ipvsadm.format_list(svcs))
    assert [line.split()[1] for line in lines] == [
        "172.16.0.1:80", "192.168.0.1:80", "10.0.0.1:80"]


def test_dest_sorting_quirk_too():
    svc = _svc("10.0.0.100", servers=[_dest("10.0.0.1"), _dest("192.168.0.1"),
                                      _dest("172.16.0.1")])
    rows = [line.split()[1] for line in ipvsadm.format_list([svc]).splitlines()
            if line.startswith("  -> ") and "Remote" not in line]
    assert rows == ["172.16.0.1:80", "192.168.0.1:80", "10.0.0.1:80"]


def test_nosort_keeps_given_service_order_and_kernel_server_order():
    svc = _svc("10.0.0.100", servers=[_dest("10.0.0.1", seq=1), _dest("10.0.0.3", seq=3),
                                      _dest("10.0.0.2", seq=2)])
    svcs = [_svc("10.0.0.9"), svc]
    text = ipvsadm.format_list(svcs, ["nosort"])
    assert [line.split()[1] for line in _service_lines(text)] == [
        "10.0.0.9:80", "10.0.0.100:80"]
    rows = [line.split()[1] for line in text.splitlines()
            if line.startswith("  -> ") and "Remote" not in line]
    assert rows == ["10.0.0.3:80", "10.0.0.2:80", "10.0.0.1:80"]   # newest first
    sorted_rows = [line.split()[1] for line in ipvsadm.format_list(svcs).splitlines()
                   if line.startswith("  -> ") and "Remote" not in line]
    assert sorted_rows == ["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"]


def test_services_sort_by_fwmark_af_protocol_address_port():
    svcs = [dict(_svc("10.0.0.1"), fwmark=2, protocol="fwmark", address=None, af=4),
            _svc("2001:db8::1"), _svc("10.0.0.2", protocol="udp"), _svc("10.0.0.2", 21),
            _svc("10.0.0.1", 443)]
    names = [line[:30].strip() for line in _service_lines(ipvsadm.format_list(svcs))]
    assert names == ["TCP  10.0.0.1:443 rr", "TCP  10.0.0.2:21 rr", "UDP  10.0.0.2:80 rr",
                     "TCP  [2001:db8::1]:80 rr", "FWM  2 rr"]


def test_ipv6_address_printed_as_inet_ntop():
    svc = _svc("::ffff:10.0.0.1", servers=[_dest("2001:db8:0:0:1:0:0:1")])
    text = ipvsadm.format_list([svc])
    assert "TCP  [::ffff:10.0.0.1]:80 rr\n" in text
    assert "  -> [2001:db8::1:0:0:1]:80" in text


def test_flags_printed_by_scheduler_names():
    # flag bits are shared: flag-1 under sh is printed as sh-fallback
    svc = _svc("10.0.0.1", scheduler="sh", sched_flags=["flag-1"])
    assert "TCP  10.0.0.1:80 sh (sh-fallback)\n" in ipvsadm.format_list([svc])
    assert "-A -t 10.0.0.1:80 -s sh -b sh-fallback\n" == ipvsadm.format_save([svc])
    svc = _svc("10.0.0.1", scheduler="wrr", sched_flags=["flag-2", "flag-3"])
    assert "TCP  10.0.0.1:80 wrr (flag-2,flag-3)\n" in ipvsadm.format_list([svc])


def test_netmask_only_shown_for_persistent_services():
    svc = _svc("10.0.0.1", netmask="255.255.0.0")
    assert "TCP  10.0.0.1:80 rr\n" in ipvsadm.format_list([svc])
    assert ipvsadm.format_save([svc]) == "-A -t 10.0.0.1:80 -s rr\n"


def test_list_truncates_long_names_to_ipvsadm_widths():
    # numeric IPv4 names are never long enough; check the truncation rule itself
    svc = _svc("10.0.0.1")
    assert formats._svc_name(dict(svc, address="255.255.255.255", port=65535)) == \
        "TCP  255.255.255.255:65535"
    assert len(formats._svc_name(svc)) <= 33


def test_tunnel_server_listing_and_save():
    svc = _svc("10.0.0.1", servers=[_dest("172.16.0.9", method="tunnel", forward="Tunnel",
                                          tun_type="vxlan")])
    assert "  -> 172.16.0.9:80                Tunnel  1      0          0         \n" in \
        ipvsadm.format_list([svc])
    assert ipvsadm.format_save([svc]).splitlines()[1] == \
        "-a -t 10.0.0.1:80 -r 172.16.0.9:80 -i -w 1 --tun-type vxlan"


def test_marks_listing():
    text = ipvsadm.format_marks([{"mark": 2, "name": "", "matches": ["udp:10.0.0.1:53"]},
                                 {"mark": 1, "name": "web",
                                  "matches": ["tcp:10.0.0.1:80", "tcp:10.0.0.1:443"]}])
    assert text == ("FWM  Name\n  -> Match\n"
                    "FWM  1 web\n  -> tcp:10.0.0.1:80\n  -> tcp:10.0.0.1:443\n"
                    "FWM  2\n  -> udp:10.0.0.1:53\n")


def test_mark_name_with_blank_is_quoted_and_restores():
    mark = {"mark": 7, "name": "my web", "matches": ["tcp:10.0.0.1:80"]}
    line = ipvsadm.format_mark_rule(mark)
    assert line == "--add-mark 7 --match tcp:10.0.0.1:80 --mark-name 'my web'\n"
    table = ipvsadm.restore(model.ServiceTable(), line)
    assert table.marks[7].to_dict() == mark


# -- round trips ---------------------------------------------------------------

def test_saved_reference_restores_to_the_same_table(table):
    restored = ipvsadm.restore(model.ServiceTable(), SAVED)
    assert ipvsadm.format_save(services(restored), marks(restored)) == SAVED
    assert ipvsadm.format_list(services(restored)) == ipvsadm.format_list(
        [dict(s, stats={}, rates={},
              servers=[dict(d, activeconns=0, inactconns=0, persistconns=0,
                            u_threshold=0, l_threshold=0) for d in s["servers"]])
         for s in services(table)], [])


def test_restore_with_ipvsadm_prefix_and_comments():
    text = ("# saved by ipvsadm-save\n\n"
            "ipvsadm -A -t 10.0.0.1:80 -s rr   # web\n"
            "lvsadm -a -t 10.0.0.1:80 -r 10.0.1.1:80 -m -w 2\n")
    restored = ipvsadm.restore(model.ServiceTable(), text)
    assert ipvsadm.format_save(services(restored)) == (
        "-A -t 10.0.0.1:80 -s rr\n-a -t 10.0.0.1:80 -r 10.0.1.1:80 -m -w 2\n")


def test_founding_document_pcc_rules():
    text = "ipvsadm -A -t 10.0.0.100:0 -s pcc\nipvsadm -a -t 10.0.0.100:0 -R 10.0.1.1\n"
    restored = ipvsadm.restore(model.ServiceTable(), text)
    assert ipvsadm.format_save(services(restored)) == (
        "-A -t 10.0.0.100:0 -s rr -p 360\n-a -t 10.0.0.100:0 -r 10.0.1.1:0 -g -w 1\n")
    assert ipvsadm.format_list(services(restored)) == (
        "IP Virtual Server version 1.2.1 (size=4096)\n"
        "Prot LocalAddress:Port Scheduler Flags\n"
        "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n"
        "TCP  10.0.0.100:0 rr persistent 360\n"
        "  -> 10.0.1.1:0                   Route   1      0          0         \n")


def test_list_health_shows_each_server_s_state_since_when_and_its_last_result():
    doc = {"source": "10.0.0.250", "virtual_servers": [{
        "virtual_server": "10.0.0.100 80", "origin": "keepalived.conf:1",
        "quorum_state": "up", "alive_weight": 1, "quorum": 1, "hysteresis": 0,
        "sorry_server": "10.0.0.3:80", "sorry_server_active": False,
        "real_servers": [
            {"address": "10.0.0.11", "port": 80, "state": "up", "for_seconds": 12.34,
             "weight": 1, "checkers": [
                 {"checker": "TCP_CHECK", "target": "10.0.0.11:80", "state": "up",
                  "for_seconds": 12.34, "last_result": "ok: connected",
                  "last_run_seconds_ago": 0.125}]},
            {"address": "10.0.0.12", "port": 80, "state": "down", "for_seconds": None,
             "weight": 0, "checkers": []}]}]}
    assert formats.format_health(doc) == (
        "Health checks from 10.0.0.250\n"
        "VS 10.0.0.100 80 (keepalived.conf:1): quorum up, alive weight 1, quorum 1"
        " hysteresis 0, sorry server 10.0.0.3:80 standing by\n"
        "  -> 10.0.0.11:80 up for 12.3s weight 1\n"
        "       TCP_CHECK 10.0.0.11:80 up for 12.3s: ok: connected (0.1s ago)\n"
        "  -> 10.0.0.12:80 down for - weight 0\n")
    assert formats.format_health({}) == "Health checks from (no health-check address)\n"
