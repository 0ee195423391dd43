"""Health checks on the fake switch and clock: keepalived's checkers, in-band.

The real servers here are simulated TCP peers on the switch's ports: they
answer the probes that leave the switch (SYN/ACK, or RST when their port is
closed, or nothing when they are dead; an HTTP response to a request), and
their answers enter the switch again, to the director's health flow.
"""

import ipaddress

import pytest

from ryu.ofproto import ofproto_v1_3 as ofp
from ryu.ofproto import ofproto_v1_3_parser as parser

from lvs_app import director as director_module
from lvs_app import ids
from lvs_app import pipeline as pl
from lvs_app.health import probes, wire
from tests.behaviour.conftest import SERVERS, VIP, DirectorLab, mac_of

HC = "10.0.0.250"                 # the health-check address
DIRECTOR_MAC = "02:1f:00:00:00:00"
SORRY = "10.0.0.14"


class FakeServers:
    """Real servers as TCP peers: ``mode[ip]`` is "up", "refuse" or "dead";
    ``http[ip]`` the status of their HTTP answer."""

    def __init__(self, lab):
        self.lab = lab
        self.mode = {ip: "up" for ip in list(SERVERS) + [SORRY]}
        self.http = {ip: 200 for ip in self.mode}
        self.body = {ip: ip.encode() for ip in self.mode}
        self.syns = {ip: 0 for ip in self.mode}      # probes' SYNs seen
        self.last_probe = None                       # (port, packet) of the last SYN

    def reply(self, port, p, flags, seq, ack, payload=b""):
        reply = {"in_port": port, "eth_src": mac_of(p["ipv4_dst"]), "eth_dst": p["eth_src"],
                 "eth_type": 0x0800, "ipv4_src": p["ipv4_dst"], "ipv4_dst": p["ipv4_src"],
                 "ip_proto": 6, "tcp_src": p["tcp_dst"], "tcp_dst": p["tcp_src"],
                 "tcp_flags": flags, "tcp_seq": seq, "tcp_ack": ack}
        if payload:
            reply["payload"] = payload
        return reply

    def answer(self, outputs):
        """Answer what the switch sent to the servers; returns everything else."""
        rest = []
        while outputs:
            port, p = outputs.pop(0)
            ip = p.get("ipv4_dst")
            if ip not in self.mode or p.get("ipv4_src") != HC or p.get("ip_proto") != 6:
                rest.append((port, p))
                continue
            flags, seq = p.get("tcp_flags", 0), p.get("tcp_seq", 0)
            data = p.get("payload", b"")
            if self.mode[ip] == "dead" or flags & 0x04:          # dead, or an RST
                continue
            if flags & 0x02:                                     # SYN
                self.syns[ip] += 1
                self.last_probe = (port, p)
                if self.mode[ip] == "refuse":
                    outputs += self.lab.send(self.reply(port, p, 0x14, 0, seq + 1))
                else:
                    outputs += self.lab.send(self.reply(port, p, 0x12, 1000, seq + 1))
            elif data:
                status = self.http[ip]
                body = self.body[ip]
                answer = (f"HTTP/1.0 {status} X\r\nContent-Length: {len(body)}\r\n\r\n"
                          .encode() + body)
                outputs += self.lab.send(self.reply(port, p, 0x19, 1001, seq + len(data),
                                                    answer))
        return rest

    def run(self, seconds, step=0.5):
        """Let ``seconds`` pass in steps; the servers answer as it goes."""
        rest = []
        for _ in range(int(round(seconds / step))):
            self.lab.clock.advance(step)
            self.lab.sw.expire()
            self.lab.manager.tick()
            rest += self.answer(self.lab._settle())
        return rest


def config(checker="TCP_CHECK { connect_timeout 1 }", extra="", rs_extra="", servers=SERVERS,
           timing="delay_loop 2\n    retry 1\n    delay_before_retry 1\n    warmup 0"):
    reals = "".join(
        f"    real_server {ip} 80 {{\n        weight 1\n        {rs_extra}\n"
        f"        {checker}\n    }}\n" for ip in servers)
    return (f"virtual_server {VIP} 80 {{\n    lvs_sched rr\n    lvs_method NAT\n"
            f"    protocol TCP\n    {timing}\n    {extra}\n{reals}}}\n")


@pytest.fixture
def lab():
    lab = DirectorLab(health_source=ipaddress.IPv4Address(HC))
    lab.add_host(SORRY, 14)
    return lab


def load(lab, text):
    doc = lab.client.request("PUT", "/ipvs/keepalived", text)
    lab._settle()
    return doc


def in_table(lab):
    """{real server: weight} of the VIP's service, as lvsadm -L -n shows it."""
    rows = [line.split() for line in lab.lvsadm("-L -n").splitlines()
            if line.startswith("  -> 10.")]
    return {r[1].split(":")[0]: int(r[3]) for r in rows}


def health(lab):
    return lab.client.request("GET", "/ipvs/health")


def test_probes_leave_from_the_health_address_and_replies_come_back_through_their_flow(lab):
    servers = FakeServers(lab)
    load(lab, config())
    servers.run(1)
    port, probe = servers.last_probe
    assert probe["eth_src"] == DIRECTOR_MAC and probe["ipv4_src"] == HC
    assert port == SERVERS[probe["ipv4_dst"]]                 # straight to the server's port
    flows = lab.sw.flows(pl.CLASSIFY, match={"eth_type": 0x0800, "ipv4_dst": HC})
    assert [(f.priority, ids.Cookie.parse(f.cookie).kind) for f in flows] == [
        (pl.PRIO_HEALTH, ids.KIND_BASE)]
    assert all(s == 1 for ip, s in servers.syns.items() if ip in SERVERS)
    status = health(lab)["virtual_servers"][0]["real_servers"]
    assert [c["last_result"] for rs in status for c in rs["checkers"]] == ["ok: connected"] * 3


def test_a_refusing_server_leaves_after_its_retry_and_comes_back_on_success(lab):
    servers = FakeServers(lab)
    load(lab, config())
    servers.run(2)
    assert set(in_table(lab)) == set(SERVERS)
    servers.mode["10.0.0.12"] = "refuse"     # checks ran at 0.5 and 2.5 s
    servers.run(0.5)                     # first failure: retried 1 s later, still in
    assert "10.0.0.12" in in_table(lab)
    assert health(lab)["virtual_servers"][0]["real_servers"][1]["checkers"][0]["retries"] == 1
    servers.run(0.5)
    assert "10.0.0.12" in in_table(lab)
    servers.run(0.5)                     # the retry fails too: out
    assert set(in_table(lab)) == {"10.0.0.11", "10.0.0.13"}
    rs = health(lab)["virtual_servers"][0]["real_servers"][1]
    assert rs["state"] == "down" and "refused" in rs["checkers"][0]["last_result"]
    for _ in range(4):                   # new connections go to the others only
        assert lab.server_of(lab.syn("10.0.1.5", 5000 + _)) != "10.0.0.12"
    servers.mode["10.0.0.12"] = "up"
    servers.run(2.5)
    assert set(in_table(lab)) == set(SERVERS)


def test_a_dead_server_fails_by_timeout(lab):
    servers = FakeServers(lab)
    load(lab, config())
    servers.run(2)
    servers.mode["10.0.0.13"] = "dead"
    servers.run(6)
    assert "10.0.0.13" not in in_table(lab)
    rs = health(lab)["virtual_servers"][0]["real_servers"][2]
    assert "no answer" in rs["checkers"][0]["last_result"]


def test_a_probe_is_looked_at_only_when_its_retransmission_or_timeout_is_due(lab, monkeypatch):
    """The running probes wait in one heap by their next timer, so thousands of
    unanswered probes cost nothing between their timers: a dead server's probe
    is polled for its two SYN retransmissions (0.2 s, then 0.4 s later) and its
    timeout (connect_timeout 1), not at every tick of the health job."""
    polls = []
    poll = probes.TcpProbe.poll

    def counted(probe, now):
        frames = poll(probe, now)
        polls.append((round(now - probe.deadline + 1, 2), len(frames), probe.done))
        return frames
    monkeypatch.setattr(probes.TcpProbe, "poll", counted)
    servers = FakeServers(lab)
    for ip in SERVERS:
        servers.mode[ip] = "dead"
    load(lab, config())
    servers.run(1.2, step=0.01)
    # (time since the probe started, SYNs sent again, done), for each probe
    assert sorted(polls) == sorted([(0.2, 1, False), (0.6, 1, False), (1.0, 0, True)]
                                   * len(SERVERS))
    rs = health(lab)["virtual_servers"][0]["real_servers"][0]
    assert rs["checkers"][0]["last_result"] == "failed: no answer within 1 s (connecting)"


def test_inhibit_on_failure_keeps_the_server_with_weight_0(lab):
    servers = FakeServers(lab)
    load(lab, config(extra="inhibit_on_failure"))
    servers.run(2)
    servers.mode["10.0.0.11"] = "refuse"
    servers.run(4)
    assert in_table(lab) == {"10.0.0.11": 0, "10.0.0.12": 1, "10.0.0.13": 1}
    servers.mode["10.0.0.11"] = "up"
    servers.run(3)
    assert in_table(lab)["10.0.0.11"] == 1


def test_alpha_starts_servers_down_until_their_first_success(lab):
    servers = FakeServers(lab)
    servers.mode["10.0.0.13"] = "refuse"
    load(lab, config(extra="alpha"))
    assert in_table(lab) == {}
    servers.run(1)
    assert set(in_table(lab)) == {"10.0.0.11", "10.0.0.12"}


def test_http_get_checks_status_codes_per_url(lab):
    servers = FakeServers(lab)
    checker = ("HTTP_GET {\n url {\n path /health\n status_code 200\n }\n"
               " connect_timeout 1\n }")
    load(lab, config(checker=checker))
    servers.run(2)
    servers.http["10.0.0.11"] = 500
    servers.run(4)
    assert set(in_table(lab)) == {"10.0.0.12", "10.0.0.13"}
    rs = health(lab)["virtual_servers"][0]["real_servers"][0]
    assert "500" in rs["checkers"][0]["last_result"]


def test_all_servers_down_bring_the_sorry_server_and_quorum_down_runs(lab):
    ran = []

    def run_script(argv, timeout, user, group, done):
        ran.append(argv[0])

    lab = DirectorLab(health_source=ipaddress.IPv4Address(HC), run_script=run_script)
    lab.add_host(SORRY, 14)
    servers = FakeServers(lab)
    load(lab, config(extra=f"sorry_server {SORRY} 80\n    quorum_down /bin/qdown\n"
                           "    quorum_up /bin/qup"))
    servers.run(2)
    assert SORRY not in in_table(lab)
    for ip in SERVERS:
        servers.mode[ip] = "refuse"
    servers.run(4)
    assert in_table(lab) == {SORRY: 1}
    assert ran == ["/bin/qdown"]
    assert lab.server_of(lab.syn("10.0.1.9", 6000)) == SORRY
    servers.mode["10.0.0.12"] = "up"
    servers.run(3)
    assert in_table(lab) == {"10.0.0.12": 1}
    assert ran == ["/bin/qdown", "/bin/qup"]


def test_quorum_and_hysteresis(lab):
    servers = FakeServers(lab)
    load(lab, config(extra=f"quorum 2\n    hysteresis 1\n    sorry_server {SORRY} 80"))
    servers.run(2)
    servers.mode["10.0.0.11"] = "refuse"
    servers.mode["10.0.0.12"] = "refuse"
    servers.run(4)            # alive weight 1: not below quorum - hysteresis = 1
    assert in_table(lab) == {"10.0.0.13": 1}
    servers.mode["10.0.0.13"] = "refuse"
    servers.run(4)            # alive weight 0: lost
    assert in_table(lab) == {SORRY: 1}
    servers.mode["10.0.0.11"] = "up"
    servers.mode["10.0.0.12"] = "up"
    servers.run(3)            # 2 < quorum + hysteresis = 3: still lost
    assert in_table(lab) == {SORRY: 1}
    servers.mode["10.0.0.13"] = "up"
    servers.run(3)
    assert set(in_table(lab)) == set(SERVERS)


def test_one_probe_per_server_and_checker_shared_by_services(lab):
    servers = FakeServers(lab)
    text = config() + config().replace(f"{VIP} 80", f"{VIP} 8080")
    load(lab, text)
    servers.run(2)
    assert {ip: servers.syns[ip] for ip in SERVERS} == {ip: 1 for ip in SERVERS}
    servers.mode["10.0.0.12"] = "refuse"
    servers.run(4)
    listing = lab.lvsadm("-L -n")
    assert "10.0.0.12" not in listing and listing.count("10.0.0.11") == 2


def test_misc_check_exit_codes_and_dynamic_weight(lab):
    codes = {"10.0.0.11": 0, "10.0.0.12": 0, "10.0.0.13": 0}
    pending = []

    def run_script(argv, timeout, user, group, done):
        pending.append((argv, done))

    lab = DirectorLab(health_source=ipaddress.IPv4Address(HC), run_script=run_script)
    text = "".join(
        f"    real_server {ip} 80 {{\n        weight 1\n        MISC_CHECK {{\n"
        f"            misc_path \"/bin/check {ip}\"\n            misc_dynamic\n"
        f"        }}\n    }}\n" for ip in SERVERS)
    load(lab, f"virtual_server {VIP} 80 {{\n    lvs_sched wrr\n    protocol TCP\n"
              f"    delay_loop 2\n    warmup 0\n{text}}}\n")

    def step():
        lab.clock.advance(1)
        lab.manager.tick()
        while pending:
            argv, done = pending.pop(0)
            lab.manager.report_script(done, codes[argv[1]], "")
        lab._settle()

    step()
    codes["10.0.0.11"], codes["10.0.0.12"] = 1, 7
    for _ in range(3):
        step()
    assert in_table(lab) == {"10.0.0.12": 5, "10.0.0.13": 1}
    rs = health(lab)["virtual_servers"][0]["real_servers"]
    assert rs[0]["checkers"][0]["last_result"] == "failed: exit 1"
    assert rs[1]["weight"] == 5


def test_a_stray_segment_to_the_health_address_gets_a_reset(lab):
    load(lab, config())
    out = lab.send({"in_port": 11, "eth_src": mac_of("10.0.0.11"), "eth_dst": DIRECTOR_MAC,
                    "eth_type": 0x0800, "ipv4_src": "10.0.0.11", "ipv4_dst": HC,
                    "ip_proto": 6, "tcp_src": 80, "tcp_dst": 45678, "tcp_flags": 0x12,
                    "tcp_seq": 5, "tcp_ack": 77})
    assert [(port, p["tcp_flags"] & 0x04, p.get("tcp_seq")) for port, p in out] == [(11, 4, 77)]


def _encoded(messages):
    class Datapath:
        ofproto, ofproto_parser = ofp, parser
    out = []
    for dpid, msg in messages:
        msg.datapath, msg.xid = Datapath(), 0
        msg.serialize()
        out.append((dpid, bytes(msg.buf)))
    return out


def test_frames_to_the_health_address_take_a_short_way_with_the_same_outcome(lab, monkeypatch):
    """Replies to probes skip the director's general parse: for every kind of frame
    to the health address (a reply, a tagged one, UDP, ICMP, broken lengths, not
    IPv4) and every table it may come from, the messages, the learned ports and the
    drop counters are those of the general way, which the short one only skips."""
    director, hc = lab.director, int(ipaddress.IPv4Address(HC))
    server, mac = int(ipaddress.IPv4Address("10.0.0.11")), bytes.fromhex("02000a00000b")
    me = bytes.fromhex(DIRECTOR_MAC.replace(":", ""))
    reply = wire.build_tcp(mac, me, server, hc, 80, 41000, 5, 6, wire.SYN | wire.ACK,
                           ip_ident=1)
    long_total = bytearray(reply)
    long_total[16:18] = (len(reply) - 13).to_bytes(2, "big")       # longer than the frame
    short_ihl = bytearray(reply)
    short_ihl[14] = 0x44
    frames = {
        "reply": reply,
        "tagged": reply[:12] + b"\x81\x00\x00\x0a" + reply[12:],
        "udp": wire.build_udp(mac, me, server, hc, 53, 41001, b"x", ip_ident=2),
        "icmp": wire.build_icmp_echo(mac, me, server, hc, 7, 1, b"p", reply=True, ip_ident=3),
        "long total": bytes(long_total), "short ihl": bytes(short_ihl),
        "not ipv4": reply[:12] + b"\x86\xdd" + reply[14:],
        "elsewhere": wire.build_tcp(mac, me, server, hc + 1, 80, 41000, 5, 6, wire.ACK),
    }
    parsed = []
    monkeypatch.setattr(wire, "_ip_ident", wire._ip_ident)
    parse = director_module.pkt.parse
    monkeypatch.setattr(director_module.pkt, "parse", lambda data: parsed.append(1) or
                        parse(data))
    for name, frame in frames.items():
        for table in (pl.CLASSIFY, pl.SERVICE, pl.REVERSE):
            outcomes = []
            for short_way in (True, False):
                director.health_source = hc
                if not short_way:
                    director._health_bytes = None          # the general way only
                lab.director.hosts.ports.setdefault(1, {}).pop(mac, None)
                dropped, parsed[:] = dict(director.dropped), []
                wire._ip_ident = iter(range(100, 200))     # the same RST both ways
                out = _encoded(director.packet_in(1, 7, frame, table, 5.0))
                outcomes.append((out, lab.director.hosts.ports[1].get(mac),
                                 dict(director.dropped) == dropped))
                if short_way and name == "reply" and table == pl.CLASSIFY:
                    assert not parsed and out       # the short way, answered (an RST)
            assert outcomes[0] == outcomes[1], (name, table)
    director.health_source = hc


def test_arp_for_the_health_address_is_answered_with_the_director_mac(lab):
    out = lab.send({"in_port": 11, "eth_src": mac_of("10.0.0.11"), "eth_dst": "ff:ff:ff:ff:ff:ff",
                    "eth_type": 0x0806, "arp_op": 1, "arp_spa": "10.0.0.11", "arp_tpa": HC,
                    "arp_sha": mac_of("10.0.0.11"), "arp_tha": "00:00:00:00:00:00"})
    assert [(port, p["arp_op"], p["arp_sha"]) for port, p in out] == [(11, 2, DIRECTOR_MAC)]


def test_a_reload_keeps_what_the_checks_know(lab):
    servers = FakeServers(lab)
    load(lab, config())
    servers.run(2)
    servers.mode["10.0.0.12"] = "refuse"
    servers.run(4)
    assert "10.0.0.12" not in in_table(lab)
    load(lab, config())                  # the same file again: the dead server stays out
    assert "10.0.0.12" not in in_table(lab)


def test_checkers_without_a_health_address_are_refused_naming_file_and_line():
    lab = DirectorLab()
    with pytest.raises(Exception) as err:
        load(lab, config())
    assert "keepalived.conf:13: TCP_CHECK probes leave through the switch" in str(err.value)
    assert lab.lvsadm("-L -n").count("->") == 1          # nothing was applied


def test_in_band_checkers_of_ipv6_real_servers_are_refused_naming_the_line(lab):
    text = ("virtual_server fd00::10:0:0:100 80 {\n    lvs_method DR\n    protocol TCP\n"
            "    real_server fd00::10:0:0:11 80 {\n        TCP_CHECK {\n        }\n    }\n}\n")
    with pytest.raises(Exception) as err:
        load(lab, text)
    assert "keepalived.conf:5: TCP_CHECK to fd00::10:0:0:11: in-band probes are IPv4 only" \
        in str(err.value)
    assert "fd00::" not in lab.lvsadm("-L -n")               # nothing was applied


def test_omega_runs_the_down_scripts_of_a_virtual_server_a_reload_removes():
    ran = []
    lab = DirectorLab(health_source=ipaddress.IPv4Address(HC),
                      run_script=lambda argv, timeout, user, group, done: ran.append(argv[0]))
    FakeServers(lab).run(0)
    load(lab, config(extra="omega\n    quorum_down /bin/qdown",
                     rs_extra="notify_down /bin/rsdown"))
    load(lab, config().replace(f"{VIP} 80", f"{VIP} 81"))
    assert ran == ["/bin/rsdown"] * 3 + ["/bin/qdown"]


def test_replies_to_probes_pass_their_own_meter():
    lab = DirectorLab(health_source=ipaddress.IPv4Address(HC), packetin_pps=1000)
    assert set(lab.meters) == {pl.PuntMeters.SERVICE, pl.PuntMeters.L2, pl.PuntMeters.HEALTH,
                               pl.PuntMeters.STRAY}
    assert lab.meters[pl.PuntMeters.HEALTH].bands[0].rate == 500
    (flow,) = lab.sw.flows(pl.CLASSIFY, match={"eth_type": 0x0800, "ipv4_dst": HC})
    meters = [i.meter_id for i in flow.instructions if hasattr(i, "meter_id")]
    assert meters == [pl.PuntMeters.HEALTH]


def test_a_server_that_fails_and_returns_gets_its_persistence_templates_back(lab):
    servers = FakeServers(lab)
    load(lab, config(extra="persistence_timeout 300"))
    servers.run(2)
    first = lab.server_of(lab.syn("10.0.1.7", 7000))
    servers.mode[first] = "refuse"
    servers.run(3)
    assert first not in in_table(lab)
    servers.mode[first] = "up"
    servers.run(3)
    assert first in in_table(lab)
    assert lab.server_of(lab.syn("10.0.1.7", 7001)) == first     # the template lived on


@pytest.mark.parametrize("expire_nodest_conn", [False, True])
def test_a_failed_server_s_connections_follow_expire_nodest_conn(lab, expire_nodest_conn):
    """A server the checks take out is deleted as by ``ipvsadm -d``: its
    established connections' packets are dropped (IPVS's default) or, with
    expire_nodest_conn, their entries end and their flows go at once."""
    servers = FakeServers(lab)
    lab.client.request("PUT", "/ipvs/settings", {"expire_nodest_conn": expire_nodest_conn})
    load(lab, config())
    servers.run(2)
    first = lab.connect("10.0.1.8", 8000)
    sw = lab.director.switches[1]
    assert len(sw.conns) == 1
    servers.mode[first] = "refuse"
    servers.run(3)
    assert first not in in_table(lab)
    assert lab.server_of(lab.syn("10.0.1.8", 8000, flags="A")) is None     # dropped
    assert len(sw.conns) == (0 if expire_nodest_conn else 1)
    conn_flows = lab.sw.flows(pl.SERVICE, priority=pl.PRIO_CONN)
    assert len(conn_flows) == (0 if expire_nodest_conn else 1)


def test_sorry_server_inhibit_keeps_the_sorry_server_with_weight_0_while_unused(lab):
    servers = FakeServers(lab)
    load(lab, config(extra=f"sorry_server {SORRY} 80\n    sorry_server_inhibit"))
    servers.run(2)
    assert in_table(lab) == {**{ip: 1 for ip in SERVERS}, SORRY: 0}
    assert all(lab.server_of(lab.syn("10.0.1.9", 6100 + i)) != SORRY for i in range(6))
    for ip in SERVERS:
        servers.mode[ip] = "refuse"
    servers.run(4)
    assert in_table(lab) == {SORRY: 1}
    servers.mode["10.0.0.11"] = "up"
    servers.run(3)
    assert in_table(lab) == {"10.0.0.11": 1, SORRY: 0}


def test_replies_to_probes_count_as_consumed_packet_ins(lab):
    """The probes' answers take the short way to the health checks; /metrics
    still counts them, as PacketIns the controller consumed."""
    import webob

    from lvs_app.rest import RestApp

    def consumed():
        text = webob.Request.blank("/metrics").get_response(RestApp(lab.api)).text
        return sum(float(row.split()[-1]) for row in text.splitlines()
                   if row.startswith("lvs_app_packet_ins_total{")
                   and 'outcome="consumed"' in row and 'table="classify"' in row)

    servers = FakeServers(lab)
    load(lab, config())
    servers.run(1)
    before = consumed()
    lab.director.outcome = director_module.DROPPED      # whatever the last one was
    servers.run(2)                                       # the next round of checks
    assert servers.syns["10.0.0.11"] == 2
    assert consumed() - before == 3                      # one SYN/ACK from each server
