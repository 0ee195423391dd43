"""The lvs_app lab: Mininet hosts around one Open vSwitch, driven by a Ryu controller.

A lab is described by a JSON file under ``topologies/`` (see
:func:`load_topology`): one switch, clients, real servers with a forwarding
method each, the VIP and the ``lvsadm`` commands that configure the director.
:class:`Lab` starts it and gives tests and the lab script what they need::

    lab = Lab("nat")                 # topologies/nat.json, controller = lvs_app
    lab.start()
    lab.apply_lvsadm()               # the topology's lvsadm commands
    lab.curl("c1", "http://10.0.0.100/")   # -> "rs2"
    print(lab.dump())                # flows, ovs-vsctl show, controller log ...
    lab.stop()

This module is ``mininet/lvslab.py`` in the repository on purpose: the
directory ``mininet/`` has no ``__init__.py``, so it never shadows the
``mininet`` library (a regular package found anywhere on ``sys.path`` wins over
a directory without ``__init__.py``).  Scripts in the directory import it as
``lvslab``; tests put the directory on ``sys.path`` first.

What this machine needs (see DESIGN.md, "This machine and Open vSwitch"):

* no OVS kernel module: the switch is ``OVSSwitch(datapath='user')``;
* TCP through the userspace datapath over veth needs ``ethtool -K <intf> tx
  off`` in every host, or handshakes never complete;
* direct routing: the real server holds the VIP on ``lo`` with
  ``arp_ignore=1``/``arp_announce=2``;
* tunnelling: the switch has a VXLAN port ``vxlan0`` (``remote_ip=flow
  key=flow``); the real server decapsulates with a kernel VXLAN device
  ``vx0`` in ``external`` mode that holds the VIP.  OVS's userspace tunnel
  code routes the outer packet with its own copy of the host's routing table,
  so the bridge's LOCAL port gets an address in the lab subnet
  (``switch.tunnel_ip``), and the encapsulated frame then enters the same
  bridge again with ``in_port=LOCAL`` (see :data:`VXLAN_RECIPE`).

Cleaning up: a lab records what it creates (bridges, processes with their
command lines) in ``/run/lvslab/state.json`` and holds ``/run/lvslab/lock``
while it runs.  :meth:`Lab.start` first removes what a previous lab that died
left behind, by those records and by the names in the topology; Mininet's
own ``cleanup()`` (``mn -c``) also kills every ``ryu-manager``, ``controller``
and ``ping`` process on the machine, deletes every OVS bridge and every
``/tmp/*.log``, so it only runs when asked (``mn_cleanup=True`` or
``LVSLAB_MN_CLEANUP=1``).
"""

import atexit
import contextlib
import errno
import fcntl
import ipaddress
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV = REPO / ".venv"
TOPOLOGIES = REPO / "topologies"
LOG_ROOT = REPO / "lab-logs"
RUN_DIR = Path(os.environ.get("LVSLAB_RUN_DIR", "/run/lvslab"))
OVS_LOG = Path(os.environ.get("LVSLAB_OVS_LOG", "/var/log/openvswitch/ovs-vswitchd.log"))

# The real servers' HTTP servers run with the system interpreter: ``python3``
# on PATH may be a pyenv shim or the venv, neither of which we want inside
# the hosts.
SYSTEM_PYTHON = "/usr/bin/python3"
HTTP_SERVER = Path(__file__).resolve().parent / "http_name_server.py"
# The FTP server needs pyftpdlib (requirements.txt), so it runs with the
# venv's interpreter; the TLS server is ``openssl s_server``.
VENV_PYTHON = VENV / "bin" / "python"
FTP_SERVER = Path(__file__).resolve().parent / "ftp_server.py"
FTP_PORT = 21
FTP_PASSIVE_PORTS = (30000, 30100)
FTP_DATA_PORT = 20
TLS_PORT = 443
# curl's FTP modes: passive EPSV (curl's default), passive PASV, active EPRT
# (curl's default active command), active PORT
CURL_FTP_MODES = {"epsv": [], "pasv": ["--disable-epsv"],
                  "eprt": ["--ftp-port", "-"], "port": ["--ftp-port", "-", "--disable-eprt"]}
VIP_FTP_HINT = ("epsv/pasv: passive, curl's default / --disable-epsv; "
                "eprt/port: active, --ftp-port - / --ftp-port - --disable-eprt")

# Controller commands.  Placeholders: {venv} {repo} {of_port} {rest_port}.
# ``ryu-manager`` starts because the install step put lvs_app's compat hook
# (lvs_app/compat.py, a .pth file) into the venv.
LVS_APP_CMD = ("{venv}/bin/ryu-manager lvs_app "
               "--ofp-tcp-listen-port {of_port} --wsapi-port {rest_port}")
# A plain learning switch, to prove the lab without the director.
SIMPLE_SWITCH_13_CMD = ("{venv}/bin/ryu-manager ryu.app.simple_switch_13 "
                        "--ofp-tcp-listen-port {of_port} --wsapi-port {rest_port}")

METHODS = ("masq", "droute", "tunnel")
LVSADM_METHOD_FLAGS = {"-m": "masq", "--masquerading": "masq",
                       "-g": "droute", "--gatewaying": "droute",
                       "-i": "tunnel", "--ipip": "tunnel"}
DEFAULT_HTTP_PORTS = (80, 8080)
VXLAN_PORT_NAME = "vxlan0"
VXLAN_OFPORT = 100
VXLAN_DEVICE = "vx0"
VXLAN_UDP_PORT = 4789

VXLAN_RECIPE = """\
Tunnel (-i) as the lab does it, proven by tests/e2e/test_lab_smoke.py:

  switch (root namespace; done by Lab.start):
    ovs-vsctl add-port s1 vxlan0 -- set interface vxlan0 type=vxlan \\
        options:remote_ip=flow options:key=flow ofport_request=100
    ip addr add <tunnel_ip>/<plen> dev s1; ip link set s1 up
        # OVS userspace tunnelling routes the outer packet by its own copy of
        # the root namespace's routes: 10.0.0.0/24 dev s1 src <tunnel_ip>
    ovs-appctl tnl/neigh/set s1 <server ip> <server eth0 MAC>
        # seeded so the first packet is not dropped while OVS ARPs (it would
        # ARP through the bridge pipeline, in_port=LOCAL; entries age in 900 s)
  real server namespace (done by Lab.start):
    ip link add vx0 address <vip_mac> type vxlan dstport 4789 external
    ip link set vx0 up; ip addr add <VIP>/32 dev vx0
    sysctl net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2 \\
           net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.vx0.rp_filter=0
  flows (what the director installs):
    table=0,priority=P,tcp,in_port=<client port>,nw_dst=<VIP>,tp_dst=80
        actions=set_field:<server ip>->tun_dst,set_field:<vx0 MAC>->eth_dst,output:100
        # inner eth_dst must be vx0's MAC (the lab gives vx0 the vip_mac, so
        # a client's frame to the VIP already carries it); tun_id defaults to 0
    table=0,priority=P,in_port=LOCAL,udp,nw_dst=<server ip>,tp_dst=4789
        actions=output:<server port>
        # the encapsulated frame re-enters the bridge from LOCAL; any L2
        # forwarding that treats LOCAL like a host port does the same
"""

DR_RECIPE = """\
Direct routing (-g), proven by tests/e2e/test_lab_smoke.py:

  real server namespace (done by Lab.start):
    ip addr add <VIP>/32 dev lo
    sysctl net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2
  flow:
    table=0,priority=P,tcp,in_port=<client port>,nw_dst=<VIP>,tp_dst=80
        actions=set_field:<server eth0 MAC>->eth_dst,output:<server port>
  the reply leaves the server from VIP:80 straight to the client (L2).
"""

NAT_RECIPE = """\
NAT (-m), proven by tests/e2e/test_lab_smoke.py:

    table=0,priority=P,tcp,in_port=<client port>,nw_src=<client>,nw_dst=<VIP>,tp_dst=80
        actions=set_field:<server MAC>->eth_dst,set_field:<server ip>->ip_dst,
                set_field:<server port>->tcp_dst,output:<server port>
    table=0,priority=P,tcp,in_port=<server port>,nw_src=<server ip>,tp_src=<rport>,nw_dst=<client>
        actions=set_field:<vip_mac>->eth_src,set_field:<VIP>->ip_src,
                set_field:80->tcp_src,output:<client port>
  OVS fixes the IP and TCP checksums itself.  Every host is in one subnet, so
  the server's reply goes to the client's MAC and crosses the switch, where
  the reverse flow rewrites it: no gateway is needed.
"""


class LabError(Exception):
    """A lab could not be described, started or used."""


class TopologyError(LabError):
    """A topology file is invalid; the message names the file and the rule."""


class CommandError(LabError):
    """A command in the lab failed; carries its output."""

    def __init__(self, message, returncode=None, stdout="", stderr=""):
        super().__init__(message)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr


# --------------------------------------------------------------------------
# small helpers


def wait_until(predicate, timeout=10.0, interval=0.1, message=None):
    """Poll ``predicate()`` until it returns a true value; return that value.

    Exceptions from the predicate count as "not yet" (it may be probing
    something that is still starting), except :class:`LabError`, which
    stops the wait at once (something that will not get better, e.g. the
    controller process exited).  Raises :class:`TimeoutError` after
    ``timeout`` seconds, naming ``message`` and the last exception seen.
    """
    deadline = time.monotonic() + timeout
    last_error = None
    while True:
        try:
            value = predicate()
        except LabError:
            raise
        except Exception as err:  # noqa: BLE001 - the predicate may be probing
            value, last_error = None, err
        if value:
            return value
        if time.monotonic() >= deadline:
            what = message or getattr(predicate, "__name__", "condition")
            extra = f" (last error: {last_error!r})" if last_error else ""
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}{extra}")
        time.sleep(interval)


def free_tcp_port():
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tcp_listening(port, host="127.0.0.1"):
    """Does something accept TCP connections on host:port?"""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def run(cmd, timeout=15, check=True, **kwargs):
    """Run a command in the root namespace; return CompletedProcess (text)."""
    if isinstance(cmd, str):
        cmd = shlex.split(cmd)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace",
                              timeout=timeout, **kwargs)
    except subprocess.TimeoutExpired as err:
        raise CommandError(f"{shlex.join(cmd)}: no answer within {timeout}s") from err
    if check and proc.returncode:
        raise CommandError(f"{shlex.join(cmd)}: exit {proc.returncode}: "
                           f"{(proc.stderr or proc.stdout).strip()}",
                           proc.returncode, proc.stdout, proc.stderr)
    return proc


def stop_process(proc, timeout=5.0, group=False):
    """SIGTERM, wait up to ``timeout``, then SIGKILL; return the exit code.

    ``group``: signal the process group that ``proc`` leads (a process
    started with ``start_new_session=True``).
    """
    if proc is None or proc.poll() is not None:
        return None if proc is None else proc.returncode

    def signal_it(sig):
        with contextlib.suppress(ProcessLookupError):
            if group:
                os.killpg(proc.pid, sig)
            else:
                proc.send_signal(sig)

    signal_it(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        signal_it(signal.SIGKILL)
        return proc.wait(timeout)


def mac_for(address, prefix="02:00"):
    """The lab's MAC for a host address: locally administered 02:00 + the IPv4 address."""
    return prefix + ":" + ":".join(f"{b:02x}" for b in ipaddress.IPv4Address(address).packed)


def vip_mac_for(vip):
    """The MAC the director answers ARP for a VIP with (lvs_app.packet.virtual_mac)."""
    return mac_for(vip, "02:1f")


def _file_size(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _cmdline(pid):
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        return raw.replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return None


# --------------------------------------------------------------------------
# topology files

_NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,9}$")   # "<name>-eth0" fits IFNAMSIZ


def load_topology(source):
    """Load and validate a lab description; return a new dict with defaults filled.

    ``source``: a dict, a path to a JSON file, or the name of a file in
    ``topologies/`` (``"nat"`` -> ``topologies/nat.json``).

    Keys: ``name``, ``description``, ``subnet``, ``vip``, ``vip_mac``,
    ``switch`` {``name``, ``dpid``, ``tunnel_ip``}, ``clients`` [{``name``,
    ``ip``, ``mac``}], ``servers`` [{``name``, ``ip``, ``mac``, ``method``,
    ``http_ports``, ``vxlan_mac``}], ``lvsadm`` [command strings].
    Host MACs default to :func:`mac_for` of the address, ``vip_mac`` to
    :func:`vip_mac_for` (the director's ARP answer), ``vxlan_mac`` (the MAC
    of a tunnel server's vx0) to ``vip_mac``: the director leaves a client's
    frame to the VIP unchanged when it tunnels it, and the server's kernel
    only accepts frames addressed to vx0's MAC.
    """
    if isinstance(source, dict):
        topo, origin = json.loads(json.dumps(source)), source.get("name", "<dict>")
    else:
        path = Path(source)
        if not path.suffix and not path.exists():
            path = TOPOLOGIES / f"{source}.json"
        origin = str(path)
        try:
            topo = json.loads(path.read_text())
        except FileNotFoundError:
            known = ", ".join(sorted(p.stem for p in TOPOLOGIES.glob("*.json")))
            raise TopologyError(f"topology {source}: no file {path} (known: {known})") from None
        except json.JSONDecodeError as err:
            raise TopologyError(f"topology {path}: invalid JSON: {err}") from None
        topo.setdefault("name", path.stem)
    name = topo.get("name", origin)

    def fail(message):
        raise TopologyError(f"topology {name}: {message}")

    for key in ("description", "subnet", "vip", "clients", "servers", "lvsadm"):
        if key not in topo:
            fail(f"missing key {key!r}")
    try:
        subnet = ipaddress.IPv4Network(topo["subnet"])
    except ValueError as err:
        fail(f"subnet {topo['subnet']!r}: {err}")

    def address(value, what):
        try:
            addr = ipaddress.IPv4Address(value)
        except ValueError:
            fail(f"{what}: {value!r} is not an IPv4 address")
        if addr not in subnet or addr in (subnet.network_address, subnet.broadcast_address):
            fail(f"{what}: {addr} is not a host address of subnet {subnet}")
        return str(addr)

    used = {}

    def claim(addr, what):
        if addr in used:
            fail(f"{what}: address {addr} is already used by {used[addr]}")
        used[addr] = what

    topo["vip"] = address(topo["vip"], "vip")
    claim(topo["vip"], "the VIP")
    topo.setdefault("vip_mac", vip_mac_for(topo["vip"]))
    switch = topo.setdefault("switch", {})
    switch.setdefault("name", "s1")
    switch.setdefault("dpid", 1)
    switch.setdefault("tunnel_ip", str(subnet.broadcast_address - 1))
    switch["tunnel_ip"] = address(switch["tunnel_ip"], "switch tunnel_ip")
    claim(switch["tunnel_ip"], f"switch {switch['name']}")
    if not isinstance(switch["dpid"], int) or not 0 < switch["dpid"] < 2 ** 64:
        fail(f"switch dpid {switch['dpid']!r} must be an integer 1..2^64-1")

    names = {switch["name"]}
    for role in ("clients", "servers"):
        hosts = topo[role]
        if not isinstance(hosts, list) or not hosts:
            fail(f"{role} must be a non-empty list")
        for host in hosts:
            hname = host.get("name")
            what = f"{role[:-1]} {hname}"
            if not isinstance(hname, str) or not _NAME_RE.match(hname):
                fail(f"{what}: name must match {_NAME_RE.pattern}")
            if hname in names:
                fail(f"{what}: name is used twice")
            names.add(hname)
            host["ip"] = address(host.get("ip"), what)
            claim(host["ip"], what)
            host.setdefault("mac", mac_for(host["ip"]))
            if role == "servers":
                if host.get("method") not in METHODS:
                    fail(f"{what}: method {host.get('method')!r} must be one of "
                         f"{', '.join(METHODS)}")
                host.setdefault("http_ports", list(DEFAULT_HTTP_PORTS))
                if host["method"] == "tunnel":
                    host.setdefault("vxlan_mac", topo["vip_mac"])
    if not all(isinstance(c, str) for c in topo["lvsadm"]):
        fail("lvsadm must be a list of command strings")
    _check_lvsadm_methods(topo, fail)
    return topo


def _check_lvsadm_methods(topo, fail):
    """Every ``-a``/``-e`` command names a lab server with the lab's method for it."""
    by_ip = {s["ip"]: s for s in topo["servers"]}
    for command in topo["lvsadm"]:
        args = shlex.split(command)
        if not {"-a", "--add-server", "-e", "--edit-server"} & set(args):
            continue
        real = None
        for opt in ("-r", "--real-server"):
            if opt in args[:-1]:
                real = args[args.index(opt) + 1]
        if real is None:
            fail(f"lvsadm {command!r}: no -r real server")
        ip = real.rsplit(":", 1)[0] if real.count(":") == 1 else real
        server = by_ip.get(ip)
        if server is None:
            fail(f"lvsadm {command!r}: {ip} is not a server of this lab")
        flags = [LVSADM_METHOD_FLAGS[a] for a in args if a in LVSADM_METHOD_FLAGS]
        method = flags[-1] if flags else "droute"     # ipvsadm's default is -g
        if method != server["method"]:
            fail(f"lvsadm {command!r}: server {server['name']} is set up for "
                 f"{server['method']}, the command asks for {method}")


def environment_problem():
    """Why a lab cannot run on this machine, or None when it can."""
    import shutil
    if os.geteuid() != 0:
        return "the lab needs root (network namespaces, veth links, OVS bridges)"
    try:
        import mininet.net  # noqa: F401
    except ImportError as err:
        return f"the mininet Python module is missing ({err}); apt-get install mininet"
    for tool in ("ovs-vsctl", "ovs-ofctl", "ovs-appctl", "mnexec", "ip", "ethtool",
                 "curl", "tcpdump"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (see scripts/install.sh)"
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return f"{SYSTEM_PYTHON} (the real servers' HTTP servers) is missing"
    try:
        proc = subprocess.run(["ovs-vsctl", "--timeout=5", "show"], capture_output=True,
                              text=True, timeout=10)
    except subprocess.TimeoutExpired:
        return "Open vSwitch does not answer (ovs-vsctl show timed out)"
    if proc.returncode:
        return ("Open vSwitch is not running (ovs-vsctl show: "
                f"{proc.stderr.strip()}); start it with "
                "/usr/share/openvswitch/scripts/ovs-ctl start --system-id=random")
    return None


def topology_names():
    """Names of the topology files in ``topologies/``."""
    return sorted(p.stem for p in TOPOLOGIES.glob("*.json"))


# --------------------------------------------------------------------------
# controller log

LOG_ERROR_PATTERNS = (
    re.compile(r"OFPError(Experimenter)?Msg"),
    re.compile(r"(?i)\berror\b"),
    re.compile(r"(?i)\bexception\b"),
    re.compile(r"\bCRITICAL\b"),
)
# Known harmless lines of Ryu 4.34 on eventlet 0.41.
LOG_BENIGN_PATTERNS = (
    re.compile(r"RLock\(s\) were not greened"),
)


def find_log_errors(text, ignore=()):
    """Python tracebacks, OpenFlow errors and error lines in a controller log.

    Returns a list of strings: a whole traceback (up to its exception line)
    or a single line.  ``ignore``: extra regexes of lines that are expected.
    """
    benign = LOG_BENIGN_PATTERNS + tuple(re.compile(p) for p in ignore)
    found = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if any(p.search(line) for p in benign):
            i += 1
            continue
        if "Traceback (most recent call last)" in line:
            block = [line]
            i += 1
            # frames are indented; the block ends with the first unindented line
            while i < len(lines) and (lines[i].startswith((" ", "\t")) or not lines[i]):
                block.append(lines[i])
                i += 1
            if i < len(lines):
                block.append(lines[i])
                i += 1
            found.append("\n".join(block))
            continue
        if any(p.search(line) for p in LOG_ERROR_PATTERNS):
            # an OFPErrorMsg report spans the next few lines
            block = [line]
            if "OFPError" in line or "EventOFPErrorMsg" in line:
                while i + 1 < len(lines) and lines[i + 1].startswith((" ", "\t", "OFPError",
                                                                       "version=")):
                    i += 1
                    block.append(lines[i])
            found.append("\n".join(block))
        i += 1
    return found


# --------------------------------------------------------------------------
# one lab at a time: a lock and a record of what the lab created


class _Records:
    """``/run/lvslab/state.json``: what the running lab created, for cleanup."""

    def __init__(self, run_dir=RUN_DIR):
        self.dir = Path(run_dir)
        self.path = self.dir / "state.json"
        self.lock_path = self.dir / "lock"
        self._lock_file = None

    def lock(self, timeout, owner):
        """Take the machine-wide lab lock, waiting up to ``timeout`` seconds."""
        self.dir.mkdir(parents=True, exist_ok=True)
        handle = open(self.lock_path, "a+")

        def try_lock():
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except OSError as err:
                if err.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                return False

        try:
            wait_until(try_lock, timeout, 0.2, "the lab lock")
        except TimeoutError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise LabError(f"another lab is running on this machine ({holder}); "
                           f"waited {timeout:g}s for {self.lock_path}") from None
        handle.seek(0)
        handle.truncate()
        handle.write(owner + "\n")
        handle.flush()
        self._lock_file = handle

    def unlock(self):
        if self._lock_file is not None:
            with contextlib.suppress(OSError):
                self._lock_file.truncate(0)
            self._lock_file.close()    # closing releases the flock
            self._lock_file = None

    def read(self):
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    def write(self, state):
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1))
        tmp.replace(self.path)

    def remove(self):
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


# --------------------------------------------------------------------------
# the lab


class FtpResult:
    """What one curl FTP command line did (see :meth:`Lab.ftp`)."""

    def __init__(self, client, mode, cmd, returncode, body, log):
        self.client, self.mode, self.cmd = client, mode, cmd
        self.returncode, self.body, self.log = returncode, body, log

    @property
    def ok(self):
        return self.returncode == 0

    @property
    def banner(self):
        """The server name of the ``220`` greeting (the control connection's server)."""
        m = re.search(r"^< 220[ -](\S+)", self.log, re.M)
        return m.group(1) if m else None

    @property
    def replies(self):
        """The server's replies, in order (curl's ``< `` lines)."""
        return [line[2:] for line in self.log.splitlines() if line.startswith("< ")]

    @property
    def commands(self):
        """The commands curl sent (its ``> `` lines)."""
        return [line[2:] for line in self.log.splitlines() if line.startswith("> ")]

    def transcript(self):
        return f"$ {self.cmd}\n{self.log.rstrip()}\n--- body:\n{self.body}"

    def __repr__(self):
        return (f"FtpResult({self.client} {self.mode}: rc={self.returncode} "
                f"banner={self.banner!r} body={self.body[:60]!r})")


class TlsResult:
    """What one ``openssl s_client`` connection saw (see :meth:`Lab.tls`)."""

    def __init__(self, client, cmd, returncode, output):
        self.client, self.cmd, self.returncode, self.output = client, cmd, returncode, output
        m = re.search(r"^subject=\s*CN\s*=\s*(\S+)", output, re.M)
        self.server = m.group(1) if m else None
        # s_client prints "New, TLSv1.2, Cipher is ..." or "Reused, ...";
        # the -www page of s_server prints the same line from its side
        states = re.findall(r"^(New|Reused), (TLSv[\d.]+)", output, re.M)
        self.reused = states[0][0] == "Reused" if states else None
        self.server_reused = states[1][0] == "Reused" if len(states) > 1 else None
        self.version = states[0][1] if states else None

    def __repr__(self):
        return (f"TlsResult({self.client}: server={self.server} reused={self.reused} "
                f"server_reused={self.server_reused} rc={self.returncode})")


# Run by Lab.ftplib in a client host: argv = address passive(0/1) trust(0/1)
# upload_name upload_text timeout [SITE command...]; prints one JSON object.
FTPLIB_CLIENT = r"""
import ftplib, io, json, sys
address, passive, trust, up_name, up_text, timeout = sys.argv[1:7]
site = sys.argv[7:]
out = {"replies": [], "data_peers": []}

class FTP(ftplib.FTP):
    trust_server_pasv_ipv4_address = trust == "1"
    def getresp(self):
        resp = super().getresp()
        out["replies"].append(resp)
        return resp
    def ntransfercmd(self, cmd, rest=None):
        conn, size = super().ntransfercmd(cmd, rest)
        out["data_peers"].append("%s:%d" % conn.getpeername()[:2])
        return conn, size

try:
    f = FTP()
    out["banner"] = f.connect(address, 21, timeout=float(timeout))
    f.login()
    f.set_pasv(passive == "1")
    for command in site:
        f.sendcmd("SITE " + command)
    chunks = []
    f.retrbinary("RETR whoami.txt", chunks.append)
    out["whoami"] = b"".join(chunks).decode()
    out["names"] = sorted(f.nlst())
    if up_name:
        f.storbinary("STOR " + up_name, io.BytesIO(up_text.encode()))
        chunks = []
        f.retrbinary("RETR " + up_name, chunks.append)
        out["uploaded"] = b"".join(chunks).decode()
    f.quit()
except Exception as err:
    out["error"] = "%s: %s" % (type(err).__name__, err)
print(json.dumps(out))
"""


class Lab:
    """One lab: controller process, OVS switch, Mininet hosts, HTTP servers.

    ``topology``: dict, path or name (see :func:`load_topology`).
    ``controller_cmd``: command string or list with placeholders {venv}
    {repo} {of_port} {rest_port}; default :data:`LVS_APP_CMD` (plus
    ``--lvs-rules FILE`` when ``rules_file`` is given).
    ``of_port``/``rest_port``: default free ports.
    ``wait_rest``: wait until the REST port listens (default: only for the
    default controller, since a plain Ryu app opens no REST port).
    ``ready_flows``: the switch counts as ready once connected and holding
    at least this many flows (the controller's initial pipeline).
    """

    def __init__(self, topology, controller_cmd=None, of_port=None, rest_port=None,
                 log_dir=None, rules_file=None, wait_rest=None, ready_flows=1,
                 lock_timeout=120.0, start_timeout=30.0, mn_cleanup=None,
                 mn_log_level="warning"):
        self.topology = load_topology(topology)
        self.name = self.topology["name"]
        self.of_port = of_port or free_tcp_port()
        self.rest_port = rest_port or free_tcp_port()
        while self.rest_port == self.of_port:
            self.rest_port = free_tcp_port()
        self.rules_file = rules_file
        self.controller_cmd = self._controller_argv(controller_cmd)
        self.wait_rest = (controller_cmd is None) if wait_rest is None else wait_rest
        self.ready_flows = ready_flows
        self.lock_timeout = lock_timeout
        self.start_timeout = start_timeout
        if mn_cleanup is None:
            mn_cleanup = os.environ.get("LVSLAB_MN_CLEANUP", "") not in ("", "0")
        self.mn_cleanup = mn_cleanup
        self.mn_log_level = mn_log_level
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.log_dir = Path(log_dir) if log_dir else LOG_ROOT / f"{self.name}-{stamp}-{os.getpid()}"
        self.controller_log_path = self.log_dir / "controller.log"
        self._ovs_log_start = 0
        self.net = None
        self.ports = {}               # host name (or vxlan0) -> OpenFlow port
        self.controller = None
        self.timings = {}
        self.failure_dump = None      # dump taken when start() failed
        self._procs = []              # (description, Popen, is_group)
        self._records = _Records()
        self._state = {}
        self._started = False
        self._ftp_started = False     # start_ftp_servers() ran in this run
        self._tls_started = False     # start_tls_servers() ran in this run

    # ---- set-up ---------------------------------------------------------

    def _controller_argv(self, controller_cmd):
        cmd = controller_cmd or LVS_APP_CMD
        argv = shlex.split(cmd) if isinstance(cmd, str) else list(cmd)
        values = {"venv": str(VENV), "repo": str(REPO),
                  "of_port": self.of_port, "rest_port": self.rest_port}
        argv = [str(a).format(**values) for a in argv]
        if controller_cmd is None and self.rules_file:
            argv += ["--lvs-rules", str(self.rules_file)]
        return argv

    @property
    def switch_name(self):
        return self.topology["switch"]["name"]

    @property
    def vip(self):
        return self.topology["vip"]

    def start(self):
        """Start everything; on failure stop what was started and raise.

        Readiness is polled with bounds: the controller's OpenFlow (and REST)
        port listens, the switch is connected with ``ready_flows`` flows,
        OVS has a route for the lab subnet, every HTTP server has bound.
        """
        if self._started:
            return self
        t0 = time.monotonic()
        self._records.lock(self.lock_timeout, f"pid {os.getpid()} lab {self.name}")
        self._started = True
        self._ovs_log_start = _file_size(OVS_LOG)
        atexit.register(self.stop)
        try:
            self._phase("cleanup", self.cleanup_leftovers)
            self.log_dir.mkdir(parents=True, exist_ok=True)
            (self.log_dir / "topology.json").write_text(json.dumps(self.topology, indent=2))
            self._state = {"owner": os.getpid(), "topology": self.name, "procs": [],
                           "bridges": [self.switch_name]}
            self._phase("controller", self._start_controller)
            self._phase("network", self._start_network)
            self._phase("connected", self._wait_connected)
            self._phase("hosts", self._configure_hosts)
            self._phase("tunnel", self._configure_tunnel_endpoint)
            self._phase("http", self._start_http_servers)
        except BaseException:
            try:
                self.failure_dump = self.dump()
            except Exception as err:  # noqa: BLE001
                self.failure_dump = f"(dump failed: {err!r})"
            self.stop()
            raise
        self.timings["start"] = time.monotonic() - t0
        return self

    def _phase(self, name, func):
        t = time.monotonic()
        func()
        self.timings[name] = time.monotonic() - t

    def cleanup_leftovers(self, mn_cleanup=None):
        """Remove what a lab that died left behind (we hold the lock, so none runs).

        Kills the processes recorded in the state file (only while their
        command line is still the recorded one), deletes recorded bridges
        and the topology's bridge, and the root-namespace ends of veth links
        named after it.  With ``mn_cleanup`` (default: the Lab's setting)
        also runs Mininet's cleanup().
        """
        old = self._records.read()
        for entry in old.get("procs", []):
            pid, cmdline = entry.get("pid"), entry.get("cmdline")
            if pid and cmdline and _cmdline(pid) == cmdline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        bridges = set(old.get("bridges", [])) | {self.switch_name}
        for bridge in sorted(bridges):
            run(["ovs-vsctl", "--timeout=10", "--if-exists", "del-br", bridge], check=False)
            if Path(f"/sys/class/net/{bridge}").exists():    # netdev bridges leave a tap
                run(["ip", "link", "del", bridge], check=False)
        for link in Path("/sys/class/net").iterdir():
            if any(link.name.startswith(f"{b}-eth") for b in bridges):
                run(["ip", "link", "del", link.name], check=False)
        if self.mn_cleanup if mn_cleanup is None else mn_cleanup:
            from mininet.clean import cleanup
            cleanup()
        self._records.remove()

    def _record(self, description, proc, group=False):
        """Remember a process: stop() kills it, a later lab's cleanup too if we die."""
        self._procs.append((description, proc, group))

        def final_cmdline():
            # host processes start as "mnexec -da PID cmd..." and exec cmd
            line = _cmdline(proc.pid)
            return line if line and not line.startswith("mnexec") else None
        try:
            cmdline = wait_until(final_cmdline, 2, 0.01)
        except TimeoutError:
            cmdline = None        # already gone: nothing to clean up later
        if cmdline:
            self._state["procs"].append({"what": description, "pid": proc.pid,
                                         "cmdline": cmdline})
            self._records.write(self._state)

    def _start_controller(self):
        log = open(self.controller_log_path, "ab")
        try:
            self.controller = subprocess.Popen(
                self.controller_cmd, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, cwd=str(REPO), start_new_session=True)
        finally:
            log.close()
        self._record("controller", self.controller, group=True)
        ports = [self.of_port] + ([self.rest_port] if self.wait_rest else [])

        def listening():
            if self.controller.poll() is not None:
                raise LabError(f"controller exited with {self.controller.returncode}: "
                               f"{shlex.join(self.controller_cmd)}\n"
                               + self.controller_log()[-3000:])
            return all(tcp_listening(p) for p in ports)

        self._wait_or_raise(listening, self.start_timeout,
                            f"the controller to listen on {ports}")

    @staticmethod
    def _wait_or_raise(predicate, timeout, what):
        """wait_until with a LabError (for start()'s callers) on timeout."""
        try:
            return wait_until(predicate, timeout, 0.05, what)
        except TimeoutError as err:
            raise LabError(str(err)) from None

    def _start_network(self):
        from mininet.log import setLogLevel
        from mininet.net import Mininet
        from mininet.node import OVSSwitch, RemoteController

        setLogLevel(self.mn_log_level)
        topo = self.topology
        subnet = ipaddress.IPv4Network(topo["subnet"])
        net = Mininet(controller=None, switch=OVSSwitch, autoSetMacs=False,
                      autoStaticArp=False, build=False, waitConnected=False)
        self.net = net
        class KnownListening(RemoteController):
            # RemoteController probes the port with "echo A | telnet": Ryu
            # answers with a binary OpenFlow HELLO that Mininet then fails to
            # decode as UTF-8 (now and then), and the controller sees a bogus
            # switch.  _start_controller has already seen the port listen.
            def checkListening(self):
                pass

        net.addController("c0", controller=KnownListening, ip="127.0.0.1", port=self.of_port)
        switch = net.addSwitch(self.switch_name, dpid="%x" % topo["switch"]["dpid"],
                               datapath="user", protocols="OpenFlow13")
        for port, host in enumerate(topo["clients"] + topo["servers"], start=1):
            node = net.addHost(host["name"], ip=f"{host['ip']}/{subnet.prefixlen}",
                               mac=host["mac"])
            net.addLink(node, switch, port2=port)
            self.ports[host["name"]] = port
        net.build()
        net.start()
        for host in net.hosts:
            self._state["procs"].append({"what": f"host {host.name}", "pid": host.pid,
                                         "cmdline": _cmdline(host.pid) or ""})
        self._records.write(self._state)
        self.ports[VXLAN_PORT_NAME] = VXLAN_OFPORT
        run(["ovs-vsctl", "--timeout=10", "add-port", self.switch_name, VXLAN_PORT_NAME,
             "--", "set", "interface", VXLAN_PORT_NAME, "type=vxlan",
             "options:remote_ip=flow", "options:key=flow",
             f"options:dst_port={VXLAN_UDP_PORT}", f"ofport_request={VXLAN_OFPORT}"])

    def switch_connected(self):
        """Is the switch connected to the controller (ovsdb is_connected)?"""
        out = run(["ovs-vsctl", "--timeout=5", "--columns=is_connected", "find",
                   "Controller", f"target=\"tcp:127.0.0.1:{self.of_port}\""],
                  check=False).stdout
        return "true" in out

    def flow_count(self):
        out = self.ofctl("dump-flows", check=False).stdout
        return sum(1 for line in out.splitlines() if "actions=" in line)

    def _wait_connected(self):
        def ready():
            if self.controller.poll() is not None:
                raise LabError(f"controller exited with {self.controller.returncode}")
            # ovs-vswitchd refreshes is_connected in ovsdb only every ~5 s, so the
            # flows the controller installs on connection are the quicker sign
            if self.ready_flows:
                return self.flow_count() >= self.ready_flows
            return self.switch_connected()

        self._wait_or_raise(ready, self.start_timeout,
                            f"switch {self.switch_name} to connect to 127.0.0.1:{self.of_port} "
                            f"and hold {self.ready_flows} flow(s)")

    def _configure_hosts(self):
        topo = self.topology
        vip = topo["vip"]
        for spec in topo["clients"] + topo["servers"]:
            host = self.host(spec["name"])
            intf = host.defaultIntf().name
            cmds = [
                # TCP through the userspace datapath over veth: checksums must
                # be complete when the frame leaves the host
                f"ethtool -K {intf} tx off",
                # no IPv6 chatter (RS/MLD) reaching the controller as PacketIns
                "sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1",
                # tunnelled packets arrive on vx0, replies leave by eth0
                "sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0",
            ]
            method = spec.get("method")
            if method in ("droute", "tunnel"):
                cmds.append("sysctl -qw net.ipv4.conf.all.arp_ignore=1 "
                            "net.ipv4.conf.all.arp_announce=2 "
                            f"net.ipv4.conf.{intf}.arp_ignore=1 "
                            f"net.ipv4.conf.{intf}.arp_announce=2")
            if method == "droute":
                cmds.append(f"ip addr add {vip}/32 dev lo")
            if method == "tunnel":
                cmds += [f"ip link add {VXLAN_DEVICE} address {spec['vxlan_mac']} type vxlan "
                         f"dstport {VXLAN_UDP_PORT} external",
                         f"sysctl -qw net.ipv4.conf.{VXLAN_DEVICE}.rp_filter=0",
                         f"ip link set {VXLAN_DEVICE} up",
                         f"ip addr add {vip}/32 dev {VXLAN_DEVICE}"]
            self.host_run(spec["name"], " && ".join(cmds))

    def _configure_tunnel_endpoint(self):
        """Give the bridge's LOCAL port the tunnel source address (see VXLAN_RECIPE)."""
        sw = self.switch_name
        plen = ipaddress.IPv4Network(self.topology["subnet"]).prefixlen
        tunnel_ip = self.topology["switch"]["tunnel_ip"]
        run(["sysctl", "-qw", f"net.ipv6.conf.{sw}.disable_ipv6=1"], check=False)
        run(["ip", "addr", "add", f"{tunnel_ip}/{plen}", "dev", sw])
        run(["ip", "link", "set", sw, "up"])
        subnet = str(ipaddress.IPv4Network(self.topology["subnet"]))
        self._wait_or_raise(
            lambda: f"{subnet} dev {sw}" in run(["ovs-appctl", "ovs/route/show"]).stdout,
            10, f"OVS to learn the route {subnet} dev {sw}")
        for spec in self.topology["servers"]:
            if spec["method"] == "tunnel":
                run(["ovs-appctl", "tnl/neigh/set", sw, spec["ip"], spec["mac"]])

    def _start_http_servers(self):
        for spec in self.topology["servers"]:
            self.start_http_server(spec["name"], spec["http_ports"])
        for spec in self.topology["servers"]:
            log = self.log_dir / f"{spec['name']}-http.log"
            self._wait_or_raise(lambda log=log: "ready" in log.read_text(), 10,
                                f"the HTTP server of {spec['name']} ({log})")

    def start_http_server(self, name, ports=DEFAULT_HTTP_PORTS, body=None):
        """Start the name-answering HTTP server in host ``name`` on ``ports``.

        ``GET /`` answers ``body`` (default: the host's name); ``GET /info``
        answers JSON {server, local, peer} (local shows whether the request
        arrived for the VIP or the real address, peer the client's address).
        The process writes ``ready`` to its log once every port is bound.
        """
        log = open(self.log_dir / f"{name}-http.log", "w")
        try:
            proc = self.host(name).popen(
                [SYSTEM_PYTHON, "-u", str(HTTP_SERVER), body or name] + [str(p) for p in ports],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        finally:
            log.close()
        self._record(f"http {name}", proc)
        return proc

    def connection_table(self, timeout=5):
        """The director's connections and templates (REST ``GET /ipvs/connections``).

        A list of dicts with ``client``, ``cport``, ``vip``, ``vport``,
        ``server``, ``dport``, ``state`` (templates have ``template: True``);
        quicker than parsing ``lvsadm -L -c -n`` when a test looks after
        every transfer.
        """
        import urllib.request
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        url = f"http://127.0.0.1:{self.rest_port}/ipvs/connections"
        with opener.open(url, timeout=timeout) as response:
            return json.loads(response.read().decode())["connections"]

    # ---- FTP and TLS servers (the founding scenarios) ------------------

    def wait_listening(self, name, port, timeout=10.0, proc=None, log=None):
        """Wait until something in host ``name`` listens on TCP ``port`` (``ss``).

        ``proc``: the server process; its exit stops the wait at once (with
        the end of ``log`` in the error).
        """
        def listening():
            if proc is not None and proc.poll() is not None:
                text = Path(log).read_text()[-2000:] if log else ""
                raise LabError(f"{name}: the server for TCP port {port} exited with "
                               f"{proc.returncode}:\n{text}")
            _, out, _ = self.host_run(name, f"ss -Hltn 'sport = :{port}'", 5, check=False)
            return bool(out.strip())
        self._wait_or_raise(listening, timeout, f"{name} to listen on TCP port {port}")

    def ftp_root(self, name):
        """The directory real server ``name``'s FTP server serves (and stores uploads in)."""
        return self.log_dir / "ftp" / name

    def start_ftp_servers(self, passive=FTP_PASSIVE_PORTS, data_port=FTP_DATA_PORT,
                          port=FTP_PORT, timeout=15.0):
        """Start ``ftp_server.py`` on every real server (once); wait until all listen.

        Each one greets with ``220 <name>``, serves ``whoami.txt`` (its name)
        and ``served-by-<name>`` from :meth:`ftp_root`, allows anonymous
        uploads there, uses the passive ports ``passive`` (lo, hi) and
        connects actively from ``data_port``.  Logs: ``<log_dir>/<name>-ftp.log``.
        """
        if self._ftp_started:
            return
        procs = {}
        for spec in self.topology["servers"]:
            name = spec["name"]
            log = open(self.log_dir / f"{name}-ftp.log", "w")
            try:
                procs[name] = self.host(name).popen(
                    [str(VENV_PYTHON), "-u", str(FTP_SERVER), name, str(self.ftp_root(name)),
                     "--port", str(port), "--passive", f"{passive[0]}-{passive[1]}",
                     "--data-port", str(data_port)],
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            finally:
                log.close()
            self._record(f"ftp {name}", procs[name])
        for name, proc in procs.items():
            log = self.log_dir / f"{name}-ftp.log"

            def ready(log=log, proc=proc, name=name):
                if proc.poll() is not None:      # e.g. pyftpdlib is not installed
                    raise LabError(f"the FTP server of {name} exited with {proc.returncode}:\n"
                                   + log.read_text()[-2000:])
                return "ready" in log.read_text()
            self._wait_or_raise(ready, timeout, f"the FTP server of {name} ({log})")
        self._ftp_started = True

    def tls_cert(self, name):
        """(certificate, key) of real server ``name``: self-signed, CN=<name>."""
        d = self.log_dir / "tls"
        return d / f"{name}.pem", d / f"{name}.key"

    def start_tls_servers(self, port=TLS_PORT, timeout=15.0):
        """Start ``openssl s_server -www -no_ticket`` on every real server (once).

        Each server has its own self-signed certificate (CN = its name, made
        here in the lab's log dir) and its own session cache; ``-no_ticket``
        makes TLS 1.2 resumption use that cache (session ids), not stateless
        tickets, so a session resumes only on the server that made it.
        ``-www`` answers ``GET /`` with a status page that says ``New`` or
        ``Reused`` from the server's side.  Logs: ``<log_dir>/<name>-tls.log``.
        """
        if self._tls_started:
            return
        (self.log_dir / "tls").mkdir(parents=True, exist_ok=True)
        procs = {}
        for spec in self.topology["servers"]:
            name = spec["name"]
            cert, key = self.tls_cert(name)
            run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                 "ec_paramgen_curve:prime256v1", "-nodes", "-days", "7",
                 "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(cert)])
            log = open(self.log_dir / f"{name}-tls.log", "w")
            try:
                proc = self.host(name).popen(
                    ["openssl", "s_server", "-accept", str(port), "-cert", str(cert),
                     "-key", str(key), "-www", "-no_ticket"],
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            finally:
                log.close()
            self._record(f"tls {name}", proc)
            procs[name] = proc
        for name, proc in procs.items():
            self.wait_listening(name, port, timeout, proc, self.log_dir / f"{name}-tls.log")
        self._tls_started = True

    def ftp(self, client, path="whoami.txt", mode="epsv", upload=None, listing=False,
            quote=(), address=None, timeout=10, check=True):
        """One FTP command line with curl from host ``client`` to the VIP.

        ``mode``: ``epsv`` (passive, curl's default), ``pasv``, ``eprt`` (active,
        ``--ftp-port -``) or ``port`` (active, ``--disable-eprt``).
        ``listing``: ``-l`` (NLST) on ``path`` (a directory, e.g. ``""``);
        ``upload``: a local file sent with ``-T`` to ``path``; ``quote``: FTP
        commands sent first (``-Q``).  Returns an :class:`FtpResult` (the
        greeting's server name, the body, curl's exit code and verbose log);
        raises CommandError when curl fails and ``check``.
        """
        url = f"ftp://{address or self.vip}/{path}"
        cmd = ["curl", "-sS", "-v", "--noproxy", "*", "-m", str(timeout),
               *CURL_FTP_MODES[mode]]
        if listing:
            cmd.append("-l")
        if upload is not None:
            cmd += ["-T", str(upload)]
        for command in quote:
            cmd += ["-Q", command]
        cmd.append(url)
        rc, out, err = self._run_in_host(client, cmd, timeout + 5,
                                         f"{shlex.join(cmd)}: hung")
        result = FtpResult(client, mode, shlex.join(cmd), rc, out, err)
        if check and rc:
            raise CommandError(f"{client}: {shlex.join(cmd)}: exit {rc}\n"
                               f"{result.transcript()}", rc, out, err)
        return result

    def ftplib(self, client, passive=True, upload=None, site=(), trust_pasv_address=False,
               address=None, timeout=10):
        """An FTP session with Python's ftplib from host ``client``; returns a dict.

        Logs in anonymously, sends the ``site`` commands (``SITE <cmd>``),
        fetches ``whoami.txt``, lists the directory (NLST) and, with
        ``upload=(name, text)``, stores a file and reads it back, in passive
        (PASV) or active (PORT) mode.  ``trust_pasv_address``: connect to the
        address in the 227 reply (ftplib's default since Python 3.9 is the
        control connection's address).  The dict: ``banner``, ``whoami``,
        ``names``, ``uploaded`` (read back), ``replies`` (every reply),
        ``data_peers`` (the far end of each data connection, seen from the
        client), or ``error`` with a message.
        """
        name, text = upload if upload else ("", "")
        args = [address or self.vip, "1" if passive else "0",
                "1" if trust_pasv_address else "0", name, text, str(timeout), *site]
        rc, out, err = self._run_in_host(client, [str(VENV_PYTHON), "-c", FTPLIB_CLIENT, *args],
                                         4 * timeout + 5, "ftplib session hung")
        try:
            return json.loads(out)
        except ValueError:
            raise CommandError(f"{client}: ftplib session: exit {rc}: "
                               f"{(err or out).strip()}", rc, out, err) from None

    def tls(self, client, sess_out=None, sess_in=None, port=TLS_PORT, address=None,
            timeout=10, check=True):
        """One TLS 1.2 connection with ``openssl s_client`` from host ``client``.

        Sends ``GET /`` (the server's ``-www`` page says New/Reused from its
        side).  ``sess_out``: save the session to this file; ``sess_in``: offer
        the session from this file for resumption.  Returns a
        :class:`TlsResult` (the certificate's CN, i.e. the server that did the
        handshake, and whether the session was reused).
        """
        target = f"{address or self.vip}:{port}"
        cmd = ["openssl", "s_client", "-connect", target, "-tls1_2", "-ign_eof"]
        if sess_out:
            cmd += ["-sess_out", str(sess_out)]
        if sess_in:
            cmd += ["-sess_in", str(sess_in)]
        shell = (f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | timeout {timeout} "
                 f"{shlex.join(cmd)} 2>&1")
        rc, out, err = self.host_run(client, shell, timeout + 5, check=False)
        result = TlsResult(client, shell, rc, out + err)
        if check and (rc or result.server is None):
            raise CommandError(f"{client}: {shell}: exit {rc}\n{result.output[-3000:]}",
                               rc, out, err)
        return result

    # ---- stopping -------------------------------------------------------

    def stop(self):
        """Stop everything this lab started (bounded); safe to call twice."""
        if not self._started:
            return
        self._started = False
        self._ftp_started = self._tls_started = False
        t0 = time.monotonic()
        problems = []
        for description, proc, group in reversed(self._procs):
            if description == "controller":
                continue
            try:
                stop_process(proc, 3, group)
            except Exception as err:  # noqa: BLE001
                problems.append(f"{description}: {err!r}")
        if self.net is not None:
            try:
                self.net.stop()
            except Exception as err:  # noqa: BLE001
                problems.append(f"mininet stop: {err!r}")
            self.net = None
        try:
            stop_process(self.controller, 5, group=True)
        except Exception as err:  # noqa: BLE001
            problems.append(f"controller: {err!r}")
        self._procs = []
        # a bridge or link Mininet did not remove would break the next lab
        try:
            self.cleanup_leftovers(mn_cleanup=False)
        except Exception as err:  # noqa: BLE001
            problems.append(f"cleanup: {err!r}")
        self._records.unlock()
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)
        self.timings["stop"] = time.monotonic() - t0
        if problems:
            print("lvslab: problems while stopping: " + "; ".join(problems), file=sys.stderr)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def running(self):
        return self._started

    # ---- using the lab --------------------------------------------------

    def host(self, name):
        """The Mininet host ``name``."""
        if self.net is None:
            raise LabError(f"lab {self.name} is not running")
        return self.net.get(name)

    @property
    def clients(self):
        return [c["name"] for c in self.topology["clients"]]

    @property
    def servers(self):
        return [s["name"] for s in self.topology["servers"]]

    def spec(self, name):
        """The topology entry of host ``name``."""
        for spec in self.topology["clients"] + self.topology["servers"]:
            if spec["name"] == name:
                return spec
        raise LabError(f"lab {self.name}: no host {name}")

    def ip(self, name):
        return self.spec(name)["ip"]

    def mac(self, name):
        return self.spec(name)["mac"]

    def port_of(self, name):
        """The OpenFlow port number of host ``name`` (or ``vxlan0``) on the switch."""
        return self.ports[name]

    def server_by_ip(self, ip):
        """The name of the real server with address ``ip``."""
        for spec in self.topology["servers"]:
            if spec["ip"] == ip:
                return spec["name"]
        raise LabError(f"lab {self.name}: no real server {ip}")

    def host_run(self, name, cmd, timeout=15, check=True):
        """Run a shell command in host ``name``'s namespace; return (rc, out, err)."""
        # a list: Mininet's shell=True runs $SHELL, which may be unset or fish
        rc, out, err = self._run_in_host(name, ["/bin/sh", "-c", cmd], timeout,
                                         f"{cmd}: no answer within {timeout}s")
        if check and rc:
            raise CommandError(f"{name}: {cmd}: exit {rc}: {(err or out).strip()}",
                               rc, out, err)
        return rc, out, err

    def _run_in_host(self, name, argv, timeout, hung):
        """Run ``argv`` in host ``name`` to the end, killed after ``timeout``
        seconds (then CommandError "<name>: <hung>"); returns (rc, out, err)."""
        proc = self.host(name).popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, errors="replace")
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop_process(proc, 1)
            raise CommandError(f"{name}: {hung}") from None
        return proc.returncode, out, err

    def popen(self, name, cmd, description=None, **kwargs):
        """Start a background process in host ``name``; it is killed on stop()."""
        proc = self.host(name).popen(cmd, **kwargs)
        self._record(description or f"{name}: {cmd}", proc)
        return proc

    def curl(self, client, url, timeout=5, check=True):
        """GET ``url`` from host ``client``; return the body (str).

        Raises :class:`CommandError` with curl's exit code and message when
        the request fails (7 = refused, 28 = timeout) unless check=False
        (then the body is '' on failure).
        """
        cmd = ["curl", "-sS", "--noproxy", "*", "-m", str(timeout), url]
        rc, out, err = self._run_in_host(client, cmd, timeout + 5, f"curl {url}: hung")
        if rc:
            if check:
                raise CommandError(f"{client}: curl {url}: exit {rc}: {err.strip()}",
                                   rc, out, err)
            return ""
        return out

    def pingall(self, timeout=2):
        """Mininet pingAll between all hosts; return the loss in percent."""
        return self.net.pingAll(timeout=str(timeout))

    def lvsadm(self, *args, check=True, timeout=15):
        """Run ``.venv/bin/lvsadm --server http://127.0.0.1:<rest_port> ARGS``.

        One string argument with spaces is split like a shell would
        (``lab.lvsadm("-A -t 10.0.0.100:80 -s rr")``).  Returns the
        CompletedProcess; raises CommandError on a non-zero exit when check.
        """
        if len(args) == 1 and " " in args[0]:
            args = tuple(shlex.split(args[0]))
        env = dict(os.environ)
        env["no_proxy"] = env["NO_PROXY"] = "127.0.0.1,localhost"
        return run([str(VENV / "bin" / "lvsadm"), "--server",
                    f"http://127.0.0.1:{self.rest_port}", *args],
                   timeout=timeout, check=check, env=env)

    def apply_lvsadm(self):
        """Run the topology's lvsadm commands in order."""
        for command in self.topology["lvsadm"]:
            self.lvsadm(command)

    def ofctl(self, command, *args, check=True):
        """``ovs-ofctl -O OpenFlow13 <command> <switch> ARGS``."""
        return run(["ovs-ofctl", "-O", "OpenFlow13", command, self.switch_name, *args],
                   check=check)

    def add_flow(self, flow):
        """Install a flow with ovs-ofctl syntax (``priority=..,match actions=..``)."""
        return self.ofctl("add-flow", flow)

    def dump_flows(self):
        return self.ofctl("dump-flows", check=False).stdout

    # ---- failure reports ------------------------------------------------

    def controller_log(self, since=0):
        """The controller's log (from byte offset ``since``)."""
        try:
            with open(self.controller_log_path, "rb") as f:
                f.seek(since)
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def controller_log_errors(self, since=0, ignore=()):
        """Tracebacks, OpenFlow errors and error lines in the controller log."""
        return find_log_errors(self.controller_log(since), ignore)

    def ovs_log(self, since=None):
        """ovs-vswitchd's log since ``since`` (default: since this lab started)."""
        since = self._ovs_log_start if since is None else since
        try:
            with open(OVS_LOG, "rb") as f:
                f.seek(since)
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def openflow_errors(self, since=None):
        """Error replies the switch sent to the controller, from ovs-vswitchd's log.

        Ryu logs a received OFPErrorMsg only at DEBUG level, so the controller
        log alone misses them; OVS logs each one at INFO (rate-limited):
        ``s1<->tcp:127.0.0.1:PORT: sending OFPBAC_BAD_OUT_PORT error reply
        to OFPT_FLOW_MOD message``.
        """
        conn = f"{self.switch_name}<->tcp:127.0.0.1:{self.of_port}:"
        return [line for line in self.ovs_log(since).splitlines()
                if conn in line and "error reply" in line]

    def log_marks(self):
        """Current ends of the controller and OVS logs, for :meth:`problems`."""
        return {"controller": _file_size(self.controller_log_path), "ovs": _file_size(OVS_LOG)}

    def problems(self, marks=None, ignore=()):
        """Controller log errors and switch OpenFlow errors since ``marks``.

        ``marks``: from :meth:`log_marks` (default: since the lab started).
        ``ignore``: regexes of controller log lines that are expected.
        """
        marks = marks or {"controller": 0, "ovs": None}
        return (self.controller_log_errors(marks["controller"], ignore)
                + [f"switch: {line}" for line in self.openflow_errors(marks["ovs"])])

    def dump(self, log_lines=300):
        """Everything needed to understand a failure, as one text."""
        sections = []

        def add(title, func):
            try:
                body = func()
            except Exception as err:  # noqa: BLE001
                body = f"(failed: {err!r})"
            sections.append(f"===== {title} =====\n{body.rstrip()}\n")

        sw = self.switch_name
        add("lab", lambda: (f"topology {self.name}; controller {shlex.join(self.controller_cmd)}; "
                            f"of_port {self.of_port}; rest_port {self.rest_port}; "
                            f"log_dir {self.log_dir}; timings {self._timings_text()}"))
        add(f"ovs-ofctl -O OpenFlow13 dump-flows {sw}", self.dump_flows)
        add(f"ovs-ofctl -O OpenFlow13 dump-ports-desc {sw}",
            lambda: self.ofctl("dump-ports-desc", check=False).stdout)
        add("ovs-vsctl show", lambda: run(["ovs-vsctl", "--timeout=5", "show"],
                                          check=False).stdout)
        add("ovs-appctl ovs/route/show; tnl/neigh/show",
            lambda: run(["ovs-appctl", "ovs/route/show"], check=False).stdout
            + run(["ovs-appctl", "tnl/neigh/show"], check=False).stdout)
        if self.net is not None:
            def hosts():
                out = []
                for h in self.net.hosts:
                    _, text, _ = self.host_run(h.name, "ip -br addr; ip neigh", 5, check=False)
                    out.append(f"--- {h.name} (port {self.ports.get(h.name)})\n{text.rstrip()}")
                return "\n".join(out)
            add("hosts: ip -br addr; ip neigh", hosts)

        def log_tail():
            lines = self.controller_log().splitlines()
            skipped = max(0, len(lines) - log_lines)
            head = f"({skipped} earlier lines in {self.controller_log_path})\n" if skipped else ""
            return head + "\n".join(lines[-log_lines:])
        add(f"controller log {self.controller_log_path}", log_tail)
        add(f"{OVS_LOG} since the lab started (warnings, errors, error replies)",
            lambda: "\n".join([line for line in self.ovs_log().splitlines()
                               if re.search(r"\|(WARN|ERR|EMER)\||error reply", line)][-50:]))
        add("topology", lambda: json.dumps(self.topology, indent=1))
        return "\n".join(sections)

    def _timings_text(self):
        return ", ".join(f"{k} {v:.2f}s" for k, v in self.timings.items())
