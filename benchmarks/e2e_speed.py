"""End-to-end speed: new connections per second through the VIP, against the
same lab's data plane with static flows (issue 15, the measuring).

    sudo .venv/bin/python benchmarks/e2e_speed.py [--duration 10] [--connections 8]
    sudo .venv/bin/python benchmarks/e2e_speed.py --smoke          # a few seconds a case
    sudo .venv/bin/python benchmarks/e2e_speed.py --write-baseline # keep this run's ratios

Three Mininet labs on Open vSwitch's userspace datapath (``mininet/lvslab.py``,
topologies ``nat``, ``droute`` and ``tunnel``, each with ``--clients`` client
hosts, default 4) and a real ``ryu-manager lvs_app``.  Every real server runs
``nginx`` on port 8000 (``mininet/lvslab_load.py``: one process, its own
configuration and logs under the lab's log directory, ``GET /`` answers the
server's name).  Every host has permanent ARP entries for the others and the
clients for the VIP, so no ARP crosses the switch while we measure.

Load: in every client at once, one single-threaded generator (this machine
has 2 cores, shared with OVS, the controller and nginx): ``ab`` by default
(HTTP/1.0 without keep-alive: one new TCP connection per request;
``--tool wrk`` runs ``wrk -t1 -H 'Connection: close'`` instead), each with
``--connections`` connections open, for ``--duration`` seconds.  The fresh
clients case uses ``mininet/pool_client.py``: each connection binds a new
source address from a block the client answers for (``ip route add local
10.(101+k).0.0/16 dev lo`` in client k; the servers route the block
through the client), so every connection comes from a client the director has never seen, and the
pool client has its own ceiling row.

Figures, per case:

* conn/s: connections answered (HTTP 200), summed over the clients' own
  rates (connections / the generator's own elapsed time);
* x ceil: conn/s over the ceiling of the same lab and the same load tool,
  measured in the same run;
* p50/p99 ms: the whole request including connect() (ab and the pool
  client start the clock before connect(); with ``--tool wrk`` it is from
  the request's write on, connect() left out).  Each generator reports its
  percentiles; the clients' curves are merged weighted by their
  connections, so p99 is good to about a percentile;
* lone p50/p99: connect() alone, before the load: one client (c1), one
  connection at a time for ``--lone`` seconds (the pool client: from c1's
  own address, or for a pool row from addresses never used), so nothing
  queues in front of it: what the controller's round trip adds to a SYN;
* PacketIn/conn: packets that matched a flow whose actions send to the
  controller (the sum of ``n_packets`` of every flow with ``CONTROLLER`` in
  its actions, ``ovs-ofctl dump-flows`` before and after the run), over the
  connections answered.  The PacketIn meter is off by default
  (``--lvs-packetin-pps 0``); ``--packetin-pps N`` turns it on, and its
  drops are then printed;
* ctl: the PacketIns from the service table that the controller handled
  (its ``/metrics`` counter), over the connections answered.  It can be
  higher than PacketIn/conn: under load Open vSwitch credits a packet that
  went to the controller to the rule its datapath flow maps to when the
  statistics are pushed, which for a ``--pe switch`` client is its new
  template's SYN flow by then;
* flows/conn: the app's per-connection flows (cookie kind 3, connection,
  and 5, reverse NAT; ``lvs_app/ids.py``) that the switch added during the
  run, over the connections answered.  They are counted as they are added,
  by OVS's flow monitor (``ovs-ofctl monitor s1 watch:``), because a
  connection's flows may be gone by the end of the run (``fin_timeout``);
* live, templ: the connection and reverse NAT flows, and the template
  flows (kinds 4 and 6, and 10 and 11 of ``--pe switch``), standing in the
  switch right after the run.

The p50/p99 under load are those of a closed loop (each client keeps
``--connections`` open): they follow from the rate (Little's law), and the
lone connect times are the latency of one connection.

Cases: per lab a ceiling, the same clients and servers with ``lvsadm -C``
(no service) and static flows of ours at priority 1000 in table 0 (client i
to server i mod 3: NAT rewrite both ways, direct routing's MAC rewrite,
VXLAN encapsulation; the replies by destination MAC), no PacketIn (checked:
a ceiling that saw one is an error); then the director with ``-s rr`` and
``-m``/``-g``/``-i``; in the NAT lab also ``-p 300`` with repeat clients
(each client host is one address, so one template each) and with fresh
clients (the pool client), each also with ``--pe switch`` (the template
carries its client's later connections in the switch), and a row without
the director whose static flows make the switch learn each connection's two
flows itself (OVS ``learn``): what per-connection flows cost without any
OpenFlow message.  ``--smoke``: one ceiling and one director case per lab,
1 s each.  ``--rounds N`` runs a lab's cases N times in turn and keeps,
for each case, the round of median conn/s (the machine is shared, and the
ceilings move between runs).

The baseline (``benchmarks/e2e_speed_baseline.json``) keeps ratios, not
rates: each run prints its difference; ``--write-baseline`` replaces it.
Exit status 1 when a case answered nothing, a ceiling saw a PacketIn, or
more than 1% of a case's connections failed.
"""

import argparse
import datetime
import ipaddress
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "mininet"))

import lvslab  # noqa: E402
import lvslab_load as load  # noqa: E402

VIP = "10.0.0.100"
PORT = load.NGINX_PORT
STATIC_COOKIE = "0xe2e5"         # our static flows (not the app's 0x4c tag)
STATIC_PRIORITY = 1000           # above everything the director puts in table 0
# the learned flows' cookies: the app's tag and kinds 3 and 5 (the flow monitor
# counts them as connection flows), and the static flows' number
LEARNED_COOKIES = ("0x4c0300000000e2e5", "0x4c0500000000e2e5")
PERSISTENCE = 300
BASELINE = HERE / "e2e_speed_baseline.json"
# the fresh clients' address blocks: client k answers for 10.(101+k).0.0/16;
# each use of the pool client has its own part of it (offset, addresses), so
# no address of the fresh-clients case has been seen before, by anyone
POOL_SECOND = 101
POOL_PARTS = {("load", True): (1, 32766),          # the pool ceiling's load
              ("load", False): (32769, 28000),     # the fresh clients' load
              ("lone", True): (61441, 2000),       # the lone connections, ceiling
              ("lone", False): (63489, 1700)}      # the lone connections, fresh
MAX_ERROR_SHARE = 0.01

# lab -> (short name, lvsadm forwarding flag)
LABS = {"nat": ("NAT", "-m"), "droute": ("DR", "-g"), "tunnel": ("TUN", "-i")}


@dataclass
class Case:
    name: str
    lab: str
    tool: str                    # "ab", "wrk" or "pool"
    static: bool = False         # the ceiling: static flows, no service
    learned: bool = False        # static flows that learn per-connection flows (OVS learn)
    persistent: bool = False
    pe: str = ""                 # --pe (persistence engine): "switch"
    ceiling: str = ""            # the name of the row this one is compared with
    result: dict = field(default_factory=dict)     # the round of median conn/s
    rounds: list = field(default_factory=list)     # every round's result


def cases_for(lab, tool, smoke):
    short, flag = LABS[lab]
    ceiling = f"{short} ceiling (static)"
    cases = [Case(ceiling, lab, tool, static=True),
             Case(f"{short} {flag} rr", lab, tool, ceiling=ceiling)]
    if lab == "nat" and not smoke:
        pool_ceiling = f"{short} ceiling (static), pool"
        cases[1:1] = [Case(pool_ceiling, lab, "pool", static=True)]
        cases += [Case(f"{short} learned flows (no controller)", lab, tool, static=True,
                       learned=True, ceiling=ceiling)]
        cases += [Case(f"{short} {flag} rr -p {PERSISTENCE} repeat", lab, tool,
                       persistent=True, ceiling=ceiling),
                  Case(f"{short} {flag} rr -p {PERSISTENCE} fresh", lab, "pool",
                       persistent=True, ceiling=pool_ceiling)]
        cases += [Case(f"{short} {flag} rr -p {PERSISTENCE} --pe switch repeat", lab, tool,
                       persistent=True, pe="switch", ceiling=ceiling),
                  Case(f"{short} {flag} rr -p {PERSISTENCE} --pe switch fresh", lab, "pool",
                       persistent=True, pe="switch", ceiling=pool_ceiling)]
    return cases


def topology(name, clients):
    """The lab's topology with ``clients`` clients 10.0.0.1..N."""
    topo = lvslab.load_topology(name)
    topo["clients"] = [{"name": f"c{i}", "ip": f"10.0.0.{i}"} for i in range(1, clients + 1)]
    return topo


# ---- static flows: the ceiling ----------------------------------------------

def _hex(text):
    """An address or MAC as the hex number a learn action loads."""
    return "0x" + (text.replace(":", "") if ":" in text
                   else ipaddress.IPv4Address(text).packed.hex())


def learn_actions(lab, server):
    """NAT through flows the switch learns itself, no controller: the first
    packet of each connection makes OVS's ``learn`` action add its two exact
    5-tuple flows (client -> server rewritten to the server, server ->
    client rewritten to the VIP), as the director would, with its cookie
    kinds (3, 5) and a FIN timeout; the rest of the connection uses them."""
    s_port = lab.port_of(server)
    head = "table=0,priority=%d,idle_timeout=60,fin_idle_timeout=1,fin_hard_timeout=120" % (
        STATIC_PRIORITY + 1)
    forward = (f"learn({head},cookie={LEARNED_COOKIES[0]},eth_type=0x800,nw_proto=6,"
               "NXM_OF_IN_PORT[],NXM_OF_IP_SRC[],NXM_OF_IP_DST[],NXM_OF_TCP_SRC[],"
               f"NXM_OF_TCP_DST[],load:{_hex(lab.mac(server))}->NXM_OF_ETH_DST[],"
               f"load:{_hex(lab.ip(server))}->NXM_OF_IP_DST[],output:NXM_NX_REG0[0..15])")
    reverse = (f"learn({head},cookie={LEARNED_COOKIES[1]},eth_type=0x800,nw_proto=6,"
               "NXM_OF_IN_PORT[]=NXM_NX_REG0[0..15],NXM_OF_IP_SRC[]=NXM_NX_REG1[],"
               "NXM_OF_TCP_SRC[]=NXM_OF_TCP_DST[],NXM_OF_IP_DST[]=NXM_OF_IP_SRC[],"
               "NXM_OF_TCP_DST[]=NXM_OF_TCP_SRC[],"
               f"load:{_hex(lab.topology['vip_mac'])}->NXM_OF_ETH_SRC[],"
               f"load:{_hex(VIP)}->NXM_OF_IP_SRC[],output:NXM_OF_IN_PORT[])")
    return (f"load:{s_port}->NXM_NX_REG0[],load:{_hex(lab.ip(server))}->NXM_NX_REG1[],"
            f"{forward},{reverse},")


def static_flows(lab, learned=False):
    """The flows that carry client i to server i mod 3 without the director
    (``learned``: NAT through per-connection flows the switch learns)."""
    method = lab.topology["servers"][0]["method"]
    servers = lab.servers
    vip_mac = lab.topology["vip_mac"]
    head = f"cookie={STATIC_COOKIE},priority={STATIC_PRIORITY}"
    flows = []
    for i, client in enumerate(lab.clients):
        server = servers[i % len(servers)]
        c_port, s_port = lab.port_of(client), lab.port_of(server)
        to_vip = f"{head},tcp,in_port={c_port},nw_dst={VIP},tp_dst={PORT}"
        if method == "masq":
            learn = learn_actions(lab, server) if learned else ""
            flows += [f"{to_vip},actions={learn}set_field:{lab.mac(server)}->eth_dst,"
                      f"set_field:{lab.ip(server)}->ip_dst,output:{s_port}",
                      f"{head},tcp,in_port={s_port},tp_src={PORT},dl_dst={lab.mac(client)},"
                      f"actions=set_field:{vip_mac}->eth_src,set_field:{VIP}->ip_src,"
                      f"output:{c_port}"]
            continue
        if method == "droute":
            flows.append(f"{to_vip},actions=set_field:{lab.mac(server)}->eth_dst,"
                         f"output:{s_port}")
        else:
            flows.append(f"{to_vip},actions=set_field:{lab.ip(server)}->tun_dst,"
                         f"set_field:{lab.spec(server)['vxlan_mac']}->eth_dst,"
                         f"output:{lab.port_of(lvslab.VXLAN_PORT_NAME)}")
        # the reply leaves the server from the VIP straight to the client
        flows.append(f"{head},in_port={s_port},dl_dst={lab.mac(client)},"
                     f"actions=output:{c_port}")
    if method == "tunnel":
        # the encapsulated frame re-enters the bridge from LOCAL
        flows += [f"{head},udp,in_port=LOCAL,nw_dst={lab.ip(s)},"
                  f"tp_dst={lvslab.VXLAN_UDP_PORT},actions=output:{lab.port_of(s)}"
                  for s in servers]
    return flows


# ---- one lab ----------------------------------------------------------------

class Bench:
    def __init__(self, lab, args):
        self.lab, self.args = lab, args
        self.flag = LABS[lab.name][1]
        self.pool_blocks = {}        # client -> the first address of its block
        self.round = 0               # rounds share the pool's parts out

    def prepare(self, need_pool):
        lab = self.lab
        load.start_nginx(lab, PORT)
        load.pin_neighbours(lab)
        load.tune_clients(lab)
        if need_pool:
            for k, client in enumerate(lab.clients):
                block = f"10.{POOL_SECOND + k}.0.0/16"
                load.add_client_pool(lab, client, block)
                self.pool_blocks[client] = ipaddress.IPv4Address(f"10.{POOL_SECOND + k}.0.0")

    def configure(self, persistent, pe=""):
        lab = self.lab
        lab.lvsadm("-C")
        self.wait_no_connection_flows()
        lab.lvsadm(f"-A -t {VIP}:{PORT} -s rr" + (f" -p {PERSISTENCE}" if persistent else "")
                   + (f" --pe {pe}" if pe else ""))
        for server in lab.servers:
            lab.lvsadm(f"-a -t {VIP}:{PORT} -r {lab.ip(server)}:{PORT} {self.flag}")

    def wait_no_connection_flows(self, timeout=30):
        lvslab.wait_until(lambda: self.per_connection_flows() == (0, 0), timeout,
                          message="the director to remove the last case's flows")

    def per_connection_flows(self):
        """(connection + reverse NAT flows, template flows: the template's, its
        reverse, and a --pe switch template's SYN and reply flows)."""
        count = load.cookie_flow_count
        return (count(self.lab, 3) + count(self.lab, 5),
                sum(count(self.lab, kind) for kind in (4, 6, 10, 11)))

    def warm_up(self, expect=None):
        """A few requests from every client (the director learns the hosts'
        ports); ``expect``: {client: server name} the static flows promise."""
        for client in self.lab.clients:
            for _ in range(3):
                name = self.lab.curl(client, f"http://{VIP}:{PORT}/").strip()
                if name not in self.lab.servers or (expect and name != expect[client]):
                    raise lvslab.LabError(f"{client}: http://{VIP}:{PORT}/ answered {name!r}"
                                          + (f", expected {expect[client]}" if expect else ""))

    def run_case(self, case):
        """Run one round of ``case``; its result is appended to ``case.rounds``."""
        lab = self.lab
        if case.static:
            lab.lvsadm("-C")
            self.wait_no_connection_flows()
            for flow in static_flows(lab, case.learned):
                lab.add_flow(flow)
            servers = lab.servers
            self.warm_up({c: servers[i % len(servers)] for i, c in enumerate(lab.clients)})
        else:
            self.configure(case.persistent, case.pe)
            self.warm_up()
        try:
            case.rounds.append(self.measure(case))
        finally:
            if case.static:
                lab.ofctl("del-flows", f"cookie={STATIC_COOKIE}/-1")
                for cookie in LEARNED_COOKIES if case.learned else ():
                    lab.ofctl("del-flows", f"cookie={cookie}/-1")
            else:
                lab.lvsadm("-C")

    def pool_part(self, client, what, static):
        """(first address, addresses) of ``client``'s pool for one use; each
        round of the fresh clients gets its own share (their templates live
        for minutes)."""
        offset, count = POOL_PARTS[(what, static)]
        if not static:
            count //= self.args.rounds
            offset += self.round * count
        return self.pool_blocks[client] + offset, count

    def lone_connections(self, case):
        """Connect times at rest: one client, one connection at a time (the pool
        client; from the client's own address, or for a pool row from
        addresses never used before)."""
        client = self.lab.clients[0]
        if case.tool == "pool":
            first, count = self.pool_part(client, "lone", case.static)
            repeat = False
        else:
            first, count, repeat = self.lab.ip(client), 1, True
        proc = load.start_pool_client(self.lab, client, VIP, PORT, first, count, 1,
                                      self.args.lone, repeat=repeat)
        rc, out, err = load.wait_all({client: proc}, self.args.lone + 30)[client]
        if rc:
            raise lvslab.LabError(f"{client}: pool client exited with {rc}: {(err or out)[-1500:]}")
        return load.parse_pool_client(out)

    def measure(self, case):
        lab, args = self.lab, self.args
        lone = self.lone_connections(case) if args.lone else None
        tag = case.name.replace(" ", "_").replace(",", "").replace("(", "").replace(")", "")
        monitor = load.FlowMonitor(lab, lab.log_dir / f"monitor-{tag}-{self.round}.txt").start()
        punted_before = load.punted_packets(lab)
        handled_before = load.controller_packet_ins(lab)
        drops_before = load.meter_drops(lab)
        procs, files = {}, {}
        url = f"http://{VIP}:{PORT}/"
        for client in lab.clients:
            if case.tool == "ab":
                files[client] = lab.log_dir / f"{client}-{tag}.csv"
                procs[client] = load.start_ab(lab, client, url, args.connections,
                                              args.duration, files[client])
            elif case.tool == "wrk":
                procs[client] = load.start_wrk(lab, client, url, args.connections,
                                               args.duration,
                                               lab.log_dir / f"{client}-{tag}.lua")
            else:
                first, count = self.pool_part(client, "load", case.static)
                procs[client] = load.start_pool_client(lab, client, VIP, PORT, first, count,
                                                       args.connections, args.duration)
        try:
            outputs = load.wait_all(procs, args.duration + 60)
        finally:
            watched = monitor.stop()
        punted = load.punted_packets(lab) - punted_before
        handled = load.controller_packet_ins(lab) - handled_before
        drops = load.meter_drops(lab) - drops_before
        live, templates = self.per_connection_flows()
        # the SYNs a --pe switch template's SYN flow carried (its flows live on)
        syn_packets = load.cookie_flow_count(lab, 10, what="packet_count")
        added = watched["added"]
        flows_added = added.get(3, 0) + added.get(5, 0)
        per_client = {}
        for client, (rc, out, err) in outputs.items():
            if rc:
                raise lvslab.LabError(f"{client}: {case.tool} exited with {rc}: "
                                      f"{(err or out)[-1500:]}")
            if case.tool == "ab":
                per_client[client] = load.parse_ab(out, files[client])
            elif case.tool == "wrk":
                per_client[client] = load.parse_wrk(out)
            else:
                per_client[client] = load.parse_pool_client(out)
        connections = sum(r["connections"] for r in per_client.values())
        errors = sum(r["errors"] for r in per_client.values())
        rate = sum(r["connections"] / r["elapsed"] for r in per_client.values()
                   if r["elapsed"] > 0)
        curves = [(r["latency_ms"], r["connections"]) for r in per_client.values()]
        return {"connections": connections, "errors": errors, "conn_per_s": rate,
                "p50_ms": merged_percentile(curves, 50),
                "p99_ms": merged_percentile(curves, 99),
                "packetins": punted, "meter_drops": drops,
                "packetins_per_conn": punted / connections if connections else None,
                "handled_per_conn": handled / connections if connections else None,
                "syn_flow_packets": syn_packets,
                "flows_added": flows_added,
                "templates_added": sum(added.get(kind, 0) for kind in (4, 6, 10, 11)),
                "monitor_paused": watched["paused"],
                "live_flows": live, "templates": templates,
                "lone_connections": lone["connections"] if lone else None,
                "lone_connect_p50_ms": lone["connect_ms"].get(50) if lone else None,
                "lone_connect_p99_ms": lone["connect_ms"].get(99) if lone else None,
                "flows_per_conn": flows_added / connections if connections else None,
                "latency": next(iter(per_client.values()))["latency"],
                "per_client_conn_per_s": {c: round(r["connections"] / r["elapsed"])
                                          for c, r in per_client.items() if r["elapsed"]},
                "exhausted": any(r.get("exhausted") for r in per_client.values())}


def merged_percentile(curves, percent):
    """The ``percent`` percentile of several generators' runs, each given as its
    percentile curve {percent: ms} and its number of connections: each point
    of a curve stands for an equal share of its run's connections."""
    points = []
    for curve, count in curves:
        if not curve or not count:
            continue
        values = [curve[p] for p in sorted(curve)]
        points += [(v, count / len(values)) for v in values]
    if not points:
        return None
    points.sort()
    total = sum(w for _, w in points)
    target, seen = total * percent / 100, 0.0
    for value, weight in points:
        seen += weight
        if seen >= target:
            return value
    return points[-1][0]


def run_lab(name, cases, args):
    short = LABS[name][0]
    extra = ["--lvs-packetin-pps", str(args.packetin_pps)]
    lab = lvslab.Lab(topology(name, args.clients), extra_args=extra,
                     lock_timeout=args.lock_timeout)
    try:
        lab.start()
    except Exception:
        if lab.failure_dump:
            print(lab.failure_dump[-6000:], file=sys.stderr)
        raise
    try:
        bench = Bench(lab, args)
        bench.prepare(any(c.tool == "pool" for c in cases))
        for bench.round in range(args.rounds):
            for case in cases:
                t = time.monotonic()
                bench.run_case(case)
                if args.verbose:
                    r = case.rounds[-1]
                    print(f"  round {bench.round + 1}: {case.name}: {r['conn_per_s']:.0f} "
                          f"conn/s ({time.monotonic() - t:.1f}s) {r['per_client_conn_per_s']}",
                          file=sys.stderr, flush=True)
        for case in cases:
            ordered = sorted(case.rounds, key=lambda r: r["conn_per_s"])
            case.result = dict(ordered[(len(ordered) - 1) // 2])
            case.result["conn_per_s_rounds"] = [round(r["conn_per_s"]) for r in case.rounds]
        problems = lab.problems()
        if problems:
            print(f"{short} lab: the controller log or the switch reported problems "
                  f"({lab.controller_log_path}):\n  " + "\n  ".join(p[:300] for p in problems),
                  file=sys.stderr)
    except Exception:
        print(lab.dump()[-8000:], file=sys.stderr)
        raise
    finally:
        lab.stop()


# ---- the table and the baseline -----------------------------------------------

def derive(cases):
    """Ratios to each row's ceiling (same lab, same tool, same run)."""
    by_name = {c.name: c for c in cases}
    for case in cases:
        r = case.result
        ceiling = by_name[case.ceiling].result if case.ceiling else r
        r["ratio"] = (r["conn_per_s"] / ceiling["conn_per_s"]
                      if ceiling.get("conn_per_s") else None)
        r["p99_ratio"] = (r["p99_ms"] / ceiling["p99_ms"]
                          if r.get("p99_ms") and ceiling.get("p99_ms") else None)


def fmt(value, spec, width):
    return f"{'-':>{width}}" if value is None else f"{value:{width}{spec}}"


def table(cases):
    head = (f"{'case':<36} {'tool':<4} {'conn/s':>7} {'x ceil':>6} {'p50 ms':>7} "
            f"{'p99 ms':>7} {'p99 x':>6} {'PacketIn/conn':>13} {'ctl':>5} {'flows/conn':>10} "
            f"{'live':>6} {'templ':>6} {'errors':>6} {'lone p50':>8} {'lone p99':>8}")
    lines = [head, "-" * len(head)]
    for case in cases:
        r = case.result
        lines.append(
            f"{case.name:<36} {case.tool:<4} {r['conn_per_s']:7.0f} {fmt(r['ratio'], '.2f', 6)} "
            f"{fmt(r['p50_ms'], '.1f', 7)} {fmt(r['p99_ms'], '.1f', 7)} "
            f"{fmt(r['p99_ratio'], '.1f', 6)} {fmt(r['packetins_per_conn'], '.2f', 13)} "
            f"{fmt(r.get('handled_per_conn'), '.2f', 5)} "
            f"{fmt(r['flows_per_conn'], '.2f', 10)} {r['live_flows']:6d} {r['templates']:6d} "
            f"{r['errors']:6d} "
            f"{fmt(r['lone_connect_p50_ms'], '.2f', 8)} {fmt(r['lone_connect_p99_ms'], '.2f', 8)}")
    return "\n".join(lines)


def baseline_entry(case):
    r = case.result
    return {"ratio": round(r["ratio"], 3) if r["ratio"] is not None else None,
            "p99_ratio": round(r["p99_ratio"], 2) if r["p99_ratio"] is not None else None,
            "packetins_per_conn": round(r["packetins_per_conn"], 3)
            if r["packetins_per_conn"] is not None else None,
            "flows_per_conn": round(r["flows_per_conn"], 3)
            if r["flows_per_conn"] is not None else None}


def compare(cases, path):
    """Lines comparing this run with the baseline file (ratios, not rates)."""
    if not path.exists():
        return [f"no baseline at {path} (--write-baseline writes one)"]
    base = json.loads(path.read_text())
    lines = [f"against the baseline {path.name} (written {base.get('written', '?')}, "
             f"{base.get('setup', '?')}; {base.get('code', '?')}):"]
    for case in cases:
        if not case.ceiling:
            continue
        now, old = baseline_entry(case), base.get("cases", {}).get(case.name)
        if old is None:
            lines.append(f"  {case.name:<36} not in the baseline")
            continue
        parts = []
        for key, label in (("ratio", "x ceil"), ("p99_ratio", "p99 x"),
                           ("packetins_per_conn", "PacketIn/conn"),
                           ("flows_per_conn", "flows/conn")):
            a, b = now.get(key), old.get(key)
            if a is None or b is None:
                parts.append(f"{label} {a} (was {b})")
            else:
                parts.append(f"{label} {a:.2f} (was {b:.2f}, {a - b:+.2f})")
        lines.append(f"  {case.name:<36} " + "; ".join(parts))
    return lines


def setup_text(args):
    return (f"{args.clients} clients x {args.tool} -c {args.connections}, "
            f"{args.duration:g}s a case, {args.rounds} round(s), "
            f"--lvs-packetin-pps {args.packetin_pps}, {os.cpu_count()} cores")


def code_state():
    """Which lvs_app the labs ran: the repository's (its commit, and whether
    lvs_app/ had uncommitted changes) or another tree's (PYTHONPATH), since
    the controller and lvsadm import the same one as this process."""
    import lvs_app
    where = Path(lvs_app.__file__).resolve().parent
    repo = HERE.parent

    def git(*argv):
        proc = subprocess.run(["git", "-C", str(repo), *argv], capture_output=True,
                              text=True, timeout=30)
        return proc.stdout.strip() if proc.returncode == 0 else ""
    if where != repo / "lvs_app":
        return f"lvs_app from {where}"
    head = git("rev-parse", "--short", "HEAD") or "?"
    dirty = git("status", "--porcelain", "--", "lvs_app")
    return f"lvs_app of {head}" + (" + uncommitted changes" if dirty else "")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=None,
                    help="seconds of load per case (default 10, --smoke 1)")
    ap.add_argument("--connections", type=int, default=None,
                    help="connections each client keeps open (ab/wrk -c; default 8, "
                         "--smoke 4)")
    ap.add_argument("--clients", type=int, default=4, help="client hosts per lab")
    ap.add_argument("--lone", type=float, default=None,
                    help="seconds of lone connections (one at a time, from one client) "
                         "before each case's load, for the connect time at rest "
                         "(default 2, --smoke 0.5; 0: none)")
    ap.add_argument("--tool", choices=("ab", "wrk"), default="ab",
                    help="the load generator in each client (default ab)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="run every case of a lab this many times, in turn, and keep "
                         "the round of median conn/s (this machine is shared: the "
                         "ceilings move by 10-40%% between runs)")
    ap.add_argument("--labs", default="nat,droute,tunnel",
                    help="comma-separated: nat, droute, tunnel")
    ap.add_argument("--packetin-pps", type=int, default=0,
                    help="the controller's --lvs-packetin-pps (default 0: no meter)")
    ap.add_argument("--smoke", action="store_true",
                    help="1 s per case, one ceiling and one director case per lab")
    ap.add_argument("--write-baseline", action="store_true",
                    help=f"write this run's ratios to {BASELINE.name}")
    ap.add_argument("--baseline", type=Path, default=BASELINE)
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--lock-timeout", type=float, default=900,
                    help="seconds to wait for another lab to finish")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    if args.duration is None:
        args.duration = 1.0 if args.smoke else 10.0
    if args.connections is None:
        args.connections = 4 if args.smoke else 8
    if args.lone is None:
        args.lone = 0.5 if args.smoke else 2.0
    if args.rounds < 1:
        ap.error("--rounds must be at least 1")
    if args.smoke and args.write_baseline:
        ap.error("--write-baseline needs a full run, not --smoke")
    labs = [name.strip() for name in args.labs.split(",") if name.strip()]
    unknown = [name for name in labs if name not in LABS]
    if unknown:
        ap.error(f"unknown lab(s) {', '.join(unknown)}: choose from {', '.join(LABS)}")
    if os.geteuid() != 0:
        sys.exit("e2e_speed.py: run as root (it builds Mininet labs)")
    problem = lvslab.environment_problem()
    if problem:
        sys.exit(f"e2e_speed.py: {problem}")
    missing = [tool for tool in ("ab", "wrk", load.NGINX) if not _which(tool)]
    if missing:
        sys.exit(f"e2e_speed.py: {', '.join(missing)} missing (scripts/install.sh installs "
                 "apache2-utils, wrk, nginx-light)")

    started = time.monotonic()
    code = code_state()
    cases = []
    for name in labs:
        lab_cases = cases_for(name, args.tool, args.smoke)
        run_lab(name, lab_cases, args)
        cases += lab_cases
    derive(cases)

    print(f"End-to-end speed ({'smoke' if args.smoke else 'full'} run, "
          f"{time.monotonic() - started:.0f}s): {setup_text(args)}; {code}")
    latency = sorted({c.result["latency"] for c in cases})
    print("p50/p99 under load: " + "; ".join(latency) + ".  x ceil, p99 x: over the "
          "same lab's ceiling with the same tool.  PacketIn/conn: from the switch's punt "
          "counters; ctl: PacketIns the controller handled, per connection.  flows/conn: "
          "connection + reverse NAT flows the switch added during the run (ovs-ofctl "
          "monitor), per connection answered.  live, templ: connection + reverse NAT "
          "flows, template + reverse template flows in the switch right after the run.  "
          "lone p50/p99: connect() alone, one connection at a time from c1 before the "
          "load, ms.")
    print(table(cases))
    if args.rounds > 1:
        print(f"conn/s of each round (the table shows the median round's figures): "
              + "; ".join(f"{c.name} {c.result['conn_per_s_rounds']}" for c in cases))
    if args.packetin_pps:
        print("meter drops: " + ", ".join(f"{c.name} {c.result['meter_drops']}"
                                          for c in cases))
    if any(r["monitor_paused"] for c in cases for r in c.rounds):
        print("note: OVS paused the flow monitor in a run (it fell behind): flows/conn "
              "may be low there")
    if any(c.result.get("exhausted") for c in cases):
        print("note: a pool client used up its addresses before the end (its rate "
              "is over its own elapsed time)")

    failures = []
    for case in cases:
        for r in case.rounds:
            if not r["connections"]:
                failures.append(f"{case.name}: no connection answered")
            elif r["errors"] > MAX_ERROR_SHARE * (r["connections"] + r["errors"]):
                failures.append(f"{case.name}: {r['errors']} of "
                                f"{r['connections'] + r['errors']} connections failed")
            if case.static and r["packetins"]:
                failures.append(f"{case.name}: {r['packetins']} packets reached the "
                                "controller with static flows (the ceiling is not "
                                "controller-free)")

    if args.write_baseline and not failures:
        data = {"about": "benchmarks/e2e_speed.py: ratios to the same run's ceiling "
                         "(not rates); compared by every run, replaced by --write-baseline",
                "written": datetime.date.today().isoformat(), "setup": setup_text(args),
                "code": code,
                "ceilings_conn_per_s": {c.name: round(c.result["conn_per_s"])
                                        for c in cases if not c.ceiling},
                "cases": {c.name: baseline_entry(c) for c in cases if c.ceiling}}
        args.baseline.write_text(json.dumps(data, indent=2) + "\n")
        print(f"baseline written: {args.baseline}")
    elif not args.smoke:
        print("\n".join(compare(cases, args.baseline)))

    if args.json:
        args.json.write_text(json.dumps(
            {"setup": setup_text(args), "code": code, "smoke": args.smoke,
             "cases": [{"name": c.name, "lab": c.lab, "tool": c.tool, "ceiling": c.ceiling,
                        **c.result} for c in cases]}, indent=2) + "\n")
    if failures:
        print("FAILED:\n  " + "\n  ".join(failures))
        sys.exit(1)


def _which(tool):
    import shutil
    return shutil.which(tool) or (os.access(tool, os.X_OK) and tool)


if __name__ == "__main__":
    main()
