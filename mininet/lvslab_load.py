"""Load through a running lab: nginx on the real servers, wrk/ab/pool clients,
and the switch's own counters (benchmarks/e2e_speed.py uses it).

Functions of a running :class:`lvslab.Lab`; nothing here changes ``Lab``.

* :func:`start_nginx`: one ``nginx`` per real server on ``port`` (default
  8000, beside the lab's own name servers on 80 and 8080), each with its own
  configuration, pid, error log and temporary directories under
  ``<log_dir>/nginx/<server>/`` (the hosts share the file system), one
  process (``master_process off``) that ``lab.stop()`` stops; ``GET /``
  answers the server's name.
* :func:`pin_neighbours`: permanent ARP entries in every host for every
  other host and, in the clients, for the VIP (its ``vip_mac``), so that no
  ARP crosses the switch during a measurement, with or without a director.
* :func:`add_client_pool`: a client answers for a whole address block
  ("AnyIP": ``ip route add local BLOCK dev lo``) and the real servers route
  the block through that client; ``mininet/pool_client.py`` then opens every
  connection from a new address.
* :func:`start_ab`, :func:`start_wrk`, :func:`start_pool_client` start one
  load generator in a client (background, recorded by the lab); the
  matching ``parse_*`` turn its output into one dict: ``connections``,
  ``errors``, ``elapsed``, ``latency_ms`` ({percent: ms}) and ``latency``
  (what that time is).
* :func:`punted_packets`, :func:`cookie_flow_count`, :func:`meter_drops`:
  the switch's counters, read with ``ovs-ofctl``; :class:`FlowMonitor`:
  the flows the switch adds while it runs (``ovs-ofctl monitor``).
"""

import json
import re
import shlex
import subprocess
import time
from pathlib import Path

from lvslab_hosts import SYSTEM_PYTHON
from lvslab_procs import LabError, stop_process

HERE = Path(__file__).resolve().parent
POOL_CLIENT = HERE / "pool_client.py"
NGINX = "/usr/sbin/nginx"
NGINX_PORT = 8000

NGINX_CONF = """\
# {name}: written by mininet/lvslab_load.py for one lab run
daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
worker_rlimit_nofile 65536;
events {{
    worker_connections 8192;
}}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen {port} backlog=4096;
        location / {{
            default_type text/plain;
            return 200 "{name}\\n";
        }}
    }}
}}
"""


def nginx_dir(lab, name):
    return lab.log_dir / "nginx" / name


def start_nginx(lab, port=NGINX_PORT, timeout=10.0):
    """Start nginx on ``port`` in every real server; return once each listens.
    Returns {server name: Popen}."""
    procs = {}
    for name in lab.servers:
        directory = nginx_dir(lab, name)
        directory.mkdir(parents=True, exist_ok=True)
        conf = directory / "nginx.conf"
        conf.write_text(NGINX_CONF.format(name=name, dir=directory, port=port))
        log = open(directory / "stdout.log", "w")
        try:
            procs[name] = lab.popen(name, [NGINX, "-p", str(directory), "-c", str(conf),
                                           "-e", str(directory / "error.log")],
                                    description=f"nginx {name}", stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        finally:
            log.close()
    for name, proc in procs.items():
        lab.wait_listening(name, port, timeout, proc=proc,
                           log=nginx_dir(lab, name) / "error.log")
    return procs


def pin_neighbours(lab):
    """Permanent ARP entries: every host knows every other host's MAC, the
    clients the VIP's (``vip_mac``, what the director answers ARP with)."""
    hosts = lab.clients + lab.servers
    for name in hosts:
        intf = lab.host(name).defaultIntf().name
        entries = [(lab.ip(other), lab.mac(other)) for other in hosts if other != name]
        if name in lab.clients:
            entries.append((lab.vip, lab.topology["vip_mac"]))
        lab.host_run(name, " && ".join(
            f"ip neigh replace {ip} lladdr {mac} dev {intf} nud permanent"
            for ip, mac in entries))


def tune_clients(lab):
    """Every client may use ports 1024-65535 for its connections (the
    namespace's own setting)."""
    for name in lab.clients:
        lab.host_run(name, "sysctl -qw net.ipv4.ip_local_port_range='1024 65535'")


def add_client_pool(lab, client, block):
    """``client`` answers for every address of ``block`` (e.g. ``10.101.0.0/16``)
    and each real server routes ``block`` through the client's address."""
    lab.host_run(client, f"ip route replace local {block} dev lo")
    for name in lab.servers:
        intf = lab.host(name).defaultIntf().name
        lab.host_run(name, f"ip route replace {block} via {lab.ip(client)} dev {intf}")


# ---- load generators ------------------------------------------------------

WRK_SCRIPT = r"""
-- written by mininet/lvslab_load.py: one JSON line with wrk's own figures
done = function(summary, latency, requests)
  local e = summary.errors
  local pct = {}
  for p = 0, 100 do
    pct[#pct + 1] = string.format("%.3f", latency:percentile(p) / 1000.0)
  end
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, ' ..
    '"write": %d, "status": %d, "timeout": %d, "pct": [%s]}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status,
    e.timeout, table.concat(pct, ", ")))
end
"""


def _background(lab, client, argv, what):
    return lab.popen(client, argv, description=f"{client}: {what}", stdout=subprocess.PIPE,
                     stderr=subprocess.PIPE, text=True, errors="replace")


def start_ab(lab, client, url, concurrency, duration, csv_path, max_rate=30000):
    """``ab -r -c C -t D`` (HTTP/1.0, no keep-alive: one connection per
    request) from ``client``; its percentiles go to ``csv_path`` (``-e``)."""
    # -n after -t: -t alone caps the run at 50000 requests
    argv = ["ab", "-q", "-r", "-s", "10", "-c", str(concurrency), "-t", str(duration),
            "-n", str(max(1000, int(duration * max_rate))), "-e", str(csv_path), url]
    return _background(lab, client, argv, "ab")


def parse_ab(stdout, csv_path):
    """ab's report: complete and failed requests, its own elapsed time, and the
    percentiles of the whole request (ab starts the clock before connect())."""
    def number(label, cast=float):
        m = re.search(rf"^{label}:\s+([\d.]+)", stdout, re.M)
        if not m:
            raise LabError(f"ab printed no {label!r}:\n{stdout[-2000:]}")
        return cast(m.group(1))
    pct = {}
    for line in Path(csv_path).read_text().splitlines()[1:]:
        p, _, ms = line.partition(",")
        pct[int(p)] = float(ms)
    complete = number("Complete requests", int)
    failed = number("Failed requests", int)
    return {"connections": complete - failed, "errors": failed,
            "elapsed": number("Time taken for tests"), "latency_ms": pct,
            "latency": "request incl. connect (ab)"}


def start_wrk(lab, client, url, concurrency, duration, script_path):
    """``wrk -t1 -c C -d D -H 'Connection: close'`` from ``client``: one
    connection per request, one thread (this machine has 2 cores)."""
    Path(script_path).write_text(WRK_SCRIPT)
    # wrk takes whole seconds
    argv = ["wrk", "-t1", "-c", str(concurrency), "-d", f"{max(1, round(duration))}s",
            "--timeout", "10s",
            "-H", "Connection: close", "-s", str(script_path), url]
    return _background(lab, client, argv, "wrk")


def parse_wrk(stdout):
    """wrk's figures (requests are connections here); its latency is from the
    request's write to the response, so it leaves out connect()."""
    m = re.search(r"^WRKJSON (\{.*\})$", stdout, re.M)
    if not m:
        raise LabError(f"wrk printed no figures:\n{stdout[-2000:]}")
    data = json.loads(m.group(1))
    errors = sum(data[k] for k in ("connect", "read", "write", "status", "timeout"))
    return {"connections": data["requests"] - data["status"], "errors": errors,
            "elapsed": data["duration_us"] / 1e6,
            "latency_ms": dict(enumerate(data["pct"])),
            "latency": "request after connect (wrk)"}


def start_pool_client(lab, client, host, port, first, sources, concurrency, duration,
                      repeat=False):
    """``pool_client.py`` in ``client``: every connection from a new address of
    the pool ``first`` .. ``first + sources - 1`` (see :func:`add_client_pool`);
    ``repeat``: round the pool again (``sources=1``: one address, e.g. the
    client's own)."""
    argv = [SYSTEM_PYTHON, str(POOL_CLIENT), host, str(port), "--first", str(first),
            "--sources", str(sources), "--concurrency", str(concurrency),
            "--duration", str(duration)] + (["--repeat"] if repeat else [])
    return _background(lab, client, argv, "pool client")


def parse_pool_client(stdout):
    try:
        data = json.loads(stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        raise LabError(f"pool_client printed no figures:\n{stdout[-2000:]}") from None
    return {"connections": data["connections"], "errors": data["errors"],
            "elapsed": data["elapsed"], "latency_ms": dict(enumerate(data["total_ms"])),
            "connect_ms": dict(enumerate(data["connect_ms"])),
            "sources_used": data["sources_used"], "exhausted": data["exhausted"],
            "latency": "request incl. connect (pool client)"}


def wait_all(procs, timeout):
    """Wait for background load generators; {name: (rc, stdout, stderr)}."""
    results = {}
    for name, proc in procs.items():
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            raise LabError(f"{name}: {shlex.join(proc.args)}: no end within {timeout}s")
        results[name] = (proc.returncode, out, err)
    return results


# ---- the switch's counters ------------------------------------------------

_PACKETS = re.compile(r"\bn_packets=(\d+)")


def punted_packets(lab, switch=None):
    """Packets that matched a flow whose actions send to the controller
    (``CONTROLLER``), summed over the switch's flows: PacketIns sent, or
    dropped by a meter before they became PacketIns (see :func:`meter_drops`)."""
    total = 0
    for line in lab.dump_flows(switch).splitlines():
        _, _, actions = line.partition("actions=")
        if "CONTROLLER" in actions:
            m = _PACKETS.search(line)
            total += int(m.group(1)) if m else 0
    return total


def cookie_flow_count(lab, kind, switch=None, what="flow_count"):
    """Flows whose cookie has the app's tag (0x4c) and ``kind`` (lvs_app.ids:
    3 connection, 4 template, 5 reverse NAT, 6 reverse template, 10 and 11 a
    --pe switch template's SYN and reply flows), whatever
    the pipeline version; from ``ovs-ofctl dump-aggregate``.  ``what``:
    ``packet_count`` for the packets they carried instead."""
    cookie = (0x4C << 56) | (kind << 48)
    out = lab.ofctl("dump-aggregate", f"cookie={cookie:#x}/0xff0f000000000000",
                    switch=switch).stdout
    m = re.search(what + r"=(\d+)", out)
    if not m:
        raise LabError(f"dump-aggregate printed no {what}: {out!r}")
    return int(m.group(1))


class FlowMonitor:
    """Every flow the switch adds while it runs: ``ovs-ofctl monitor SWITCH
    watch:!initial`` (OVS's flow monitor, which reports each flow added,
    modified or deleted as it happens), its output in ``path``.

    ``start()`` returns once the monitor reports a flow of ours (a marker,
    added and deleted again); ``stop()`` returns {cookie kind: flows added}
    for the app's flows (tag 0x4c) and ``paused``: whether OVS paused the
    monitor because it fell behind (then counts are low)."""

    MARKER = "0xe2e5f10f"
    _ADDED = re.compile(r"event=ADDED\b.*?\bcookie=0x([0-9a-f]+)")

    def __init__(self, lab, path, switch=None):
        self.lab, self.path, self.switch = lab, Path(path), switch
        self.proc = None

    def start(self, timeout=10.0):
        bridge = self.lab.switch_spec(self.switch)["name"]
        out = open(self.path, "w")
        try:
            self.proc = subprocess.Popen(
                ["ovs-ofctl", "-O", "OpenFlow13", "monitor", bridge, "watch:!initial"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        finally:
            out.close()
        # a flow no packet matches (table 3 is L2 forwarding: a MAC nobody has)
        marker = f"cookie={self.MARKER},table=3,priority=1,dl_dst=02:ff:ff:ff:ff:fe"
        deadline = time.monotonic() + timeout
        while self.MARKER not in self.path.read_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise LabError(f"ovs-ofctl monitor {bridge} did not start: "
                               f"{self.path.read_text()[-500:]}")
            self.lab.add_flow(f"{marker},actions=drop", switch=self.switch)
            time.sleep(0.1)
        self.lab.ofctl("del-flows", f"cookie={self.MARKER}/-1", switch=self.switch)
        return self

    def stop(self):
        if self.proc is not None:
            stop_process(self.proc, 3)
            self.proc = None
        text = self.path.read_text()
        added = {}
        for m in self._ADDED.finditer(text):
            cookie = int(m.group(1), 16)
            if cookie >> 56 == 0x4C:
                kind = (cookie >> 48) & 0x0F
                added[kind] = added.get(kind, 0) + 1
        return {"added": added, "paused": "PAUSED" in text.upper()}


def controller_packet_ins(lab, table="service"):
    """PacketIns from ``table`` the controller handled (its /metrics counter
    ``lvs_app_packet_ins_total``), to check the switch's punt counters by."""
    import urllib.request
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"http://127.0.0.1:{lab.rest_port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(int(float(m.group(1))) for m in re.finditer(
        r'^lvs_app_packet_ins_total\{[^}]*table="%s"[^}]*\} (\S+)$' % table, text, re.M))


def meter_drops(lab, switch=None):
    """Packets the switch's meters dropped (every meter, every band)."""
    out = lab.ofctl("meter-stats", switch=switch, check=False).stdout
    return sum(int(n) for n in re.findall(r"\b\d+: packet_count:(\d+)", out))
