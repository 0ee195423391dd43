"""The lvs_app lab: Mininet hosts around Open vSwitch, driven by a Ryu controller.

A lab is described by a JSON file under ``topologies/`` (see
:func:`load_topology`): one switch (or a fabric of switches and the links
between them, e.g. ``leafspine``), clients, real servers with a forwarding
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
``lvslab``; tests put the directory on ``sys.path`` first.  The lab's other
parts are top-level modules next to it, for the same reason; this module
re-exports every name the library had before it was split (``__all__``:
``lvslab.load_topology``, ``lvslab.FTP_PORT``, ...), so callers need only
``import lvslab``:

* ``lvslab_procs``: errors, paths, commands and bounded background
  processes, readiness polling, the state file and lock, removing what a
  dead lab left behind;
* ``lvslab_topology``: ``topologies/*.json``, the address plan (and
  :class:`AddressPlan`, a mixin of :class:`Lab` that answers ``lab.ip(name)``
  and the like; ``ipv6_of`` and ``lab.ip6(name)``/``lab.vip6`` in a
  dual-stack lab), the NAT, direct routing and VXLAN recipes and the hosts'
  part of them;
* ``lvslab_hosts``: the HTTP, FTP and TLS servers on the real servers and
  the curl, ftplib and ``openssl s_client`` clients (mixins of :class:`Lab`);
* ``lvslab_logs``: the controller's and the switch's logs, read for errors
  (a mixin of :class:`Lab`);
* ``lvslab_fabric``: the links between switches (their ports, taking one
  down and up), the switches' port descriptions, and the controller's view
  of a fabric against what the lab built (a mixin of :class:`Lab`);
* ``lvslab`` (here): :class:`Lab` itself (start/stop, controller, switches
  and the links between them, hosts, ``lvsadm``, ``dump``) and
  :func:`environment_problem`.

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
  bridge again with ``in_port=LOCAL`` (see :data:`VXLAN_RECIPE`).  In a
  fabric each leaf with a ``tunnel_ip`` gets a VXLAN port of its own, and
  its outer packets a mark and an OVS route of their own (every bridge shares
  one ovs-vswitchd and one routing table; see :data:`FABRIC_VXLAN_RECIPE`).

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
import ipaddress
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from lvslab_fabric import FabricUnavailable, LabFabric
from lvslab_hosts import (
    CURL_FTP_MODES, FTP_DATA_PORT, FTP_PASSIVE_PORTS, FTP_PORT, FTP_SERVER, FTPLIB_CLIENT,
    HTTP_SERVER, SYSTEM_PYTHON, TLS_PORT, VENV_PYTHON, VIP_FTP_HINT, FtpResult, HostClients,
    HostServers, TlsResult, url_host)
from lvslab_logs import (
    LOG_BENIGN_PATTERNS, LOG_ERROR_PATTERNS, OVS_LOG, LabLogs, find_log_errors)
from lvslab_procs import (
    REPO, RUN_DIR, VENV, CommandError, LabError, Processes, StateFile, file_size,
    free_tcp_port, remove_leftovers, run, stop_process, tcp_listening, wait_or_raise,
    wait_until)
from lvslab_topology import (
    DEFAULT_HTTP_PORTS, DR_RECIPE, FABRIC_CONTROLLER_ARGS, FABRIC_VXLAN_RECIPE, IPV6_NETWORK,
    LVSADM_METHOD_FLAGS, METHODS, NAT_RECIPE, TOPOLOGIES, VXLAN_DEVICE, VXLAN_OFPORT,
    VXLAN_PORT_NAME, VXLAN_RECIPE, VXLAN_UDP_PORT, AddressPlan, TopologyError, check_ipv6,
    controller_args_of, host_setup_commands, ipv6_lvsadm, ipv6_of, load_topology, mac_for,
    topology_names, vip_mac_for)

# What ``import lvslab`` gives: the names callers used before the lab was
# split into modules, and Lab.
__all__ = [
    "CURL_FTP_MODES", "DEFAULT_HTTP_PORTS", "DR_RECIPE", "FABRIC_CONTROLLER_ARGS",
    "FABRIC_VXLAN_RECIPE", "FTPLIB_CLIENT", "FTP_DATA_PORT", "FTP_PASSIVE_PORTS", "FTP_PORT",
    "FTP_SERVER", "HTTP_SERVER", "IPV6_NETWORK", "LOG_BENIGN_PATTERNS", "LOG_ERROR_PATTERNS",
    "LOG_ROOT", "LVSADM_METHOD_FLAGS", "LVS_APP_CMD", "METHODS", "NAT_RECIPE", "OVS_LOG",
    "REPO", "RUN_DIR", "SIMPLE_SWITCH_13_CMD", "SYSTEM_PYTHON", "TLS_PORT", "TOPOLOGIES",
    "VENV", "VENV_PYTHON", "VIP_FTP_HINT", "VXLAN_DEVICE", "VXLAN_OFPORT", "VXLAN_PORT_NAME",
    "VXLAN_RECIPE", "VXLAN_UDP_PORT", "CommandError", "FabricUnavailable", "FtpResult", "Lab",
    "LabError", "TlsResult", "TopologyError", "check_ipv6", "controller_args_of",
    "environment_problem", "find_log_errors", "free_tcp_port", "ipv6_lvsadm", "ipv6_of",
    "load_topology", "mac_for", "run", "stop_process", "tcp_listening", "topology_names",
    "url_host", "vip_mac_for", "wait_until",
]

LOG_ROOT = REPO / "lab-logs"

# Controller commands.  Placeholders: {venv} {repo} {of_port} {rest_port}.
# ``ryu-manager`` starts because the install step put lvs_app's compat hook
# (lvs_app/compat.py, a .pth file) into the venv.
LVS_APP_CMD = ("{venv}/bin/ryu-manager lvs_app "
               "--ofp-tcp-listen-port {of_port} --wsapi-port {rest_port}")
# A plain learning switch, to prove the lab without the director.
SIMPLE_SWITCH_13_CMD = ("{venv}/bin/ryu-manager ryu.app.simple_switch_13 "
                        "--ofp-tcp-listen-port {of_port} --wsapi-port {rest_port}")


def _ovsdb_value(value):
    """An OVSDB JSON value as Python: a uuid as its text, a set as a list."""
    if isinstance(value, list) and len(value) == 2:
        kind, body = value
        if kind in ("uuid", "named-uuid"):
            return body
        if kind == "set":
            return [_ovsdb_value(v) for v in body]
        if kind == "map":
            return {_ovsdb_value(k): _ovsdb_value(v) for k, v in body}
    return value


def _ovsdb_rows(args):
    """``ovs-vsctl --format=json ARGS`` (a ``list``) as dicts; [] when it fails.
    A set column with one element comes back as that element."""
    out = run(["ovs-vsctl", "--timeout=5", "--format=json", *args], check=False).stdout
    if not out.strip():
        return []
    data = json.loads(out)
    return [{h: _ovsdb_value(v) for h, v in zip(data["headings"], row)}
            for row in data["data"]]


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


class Lab(AddressPlan, HostServers, HostClients, LabLogs, LabFabric):
    """One lab: controller process, OVS switches, Mininet hosts, HTTP servers.

    ``topology``: dict, path or name (see :func:`load_topology`).
    ``controller_cmd``: command string or list with placeholders {venv}
    {repo} {of_port} {rest_port}; default :data:`LVS_APP_CMD` (plus
    ``--lvs-rules FILE`` when ``rules_file`` is given, plus the topology's
    :func:`controller_args_of`: ``--observe-links`` for a fabric);
    ``extra_args`` are appended to it (e.g. the high-availability options,
    see lvslab_ha.py).
    ``openflow_tls``: OpenFlow over TLS between the switches and the controller
    (:class:`lvslab_tls.SwitchTls`).
    ``of_port``/``rest_port``: default free ports.
    ``wait_rest``: wait until the REST port listens (default: only for the
    default controller, since a plain Ryu app opens no REST port); in a
    fabric it also says whether start() asks ``GET /ipvs/fabric``.
    ``ready_flows``: a switch counts as ready once connected and holding
    at least this many flows (the controller's initial pipeline).
    ``ipv6``: a dual-stack lab (one-switch topologies only; a fabric raises
    TopologyError): IPv6 stays on in the hosts (quiet: no DAD, no router
    solicitations), every host and the VIP get the IPv6 twin of their IPv4
    address (:func:`lvslab_topology.ipv6_of`, ``lab.ip6(name)``,
    ``lab.vip6``; direct routing servers hold it on ``lo``, tunnel servers
    on ``vx0``), and the servers listen on IPv6 too.  Default: IPv6 off in
    every host, as always.

    The switches (every one an ``OVSSwitch(datapath='user')`` speaking
    OpenFlow13, all connected to the one controller): :attr:`switch_names`,
    :meth:`dpid_of`, :meth:`switch_of` (a host's switch), :meth:`port_of`
    (a host's port on its switch), :attr:`links` and :meth:`link_ports`
    (the links between switches), :meth:`link_down`/:meth:`link_up`,
    :meth:`ofctl`/:meth:`dump_flows`/:meth:`flow_count`/:meth:`port_desc`
    (``switch=None``: the one switch, or a fabric's first leaf),
    :meth:`fabric`/:meth:`fabric_links`/:meth:`wait_fabric` (what the
    controller learned by LLDP against what the lab built).

    Mixed in: :class:`AddressPlan` (``lvslab_topology``: ``vip``, ``ip()``,
    ``spec()`` ...), :class:`HostServers` and :class:`HostClients`
    (``lvslab_hosts``: servers and clients in the hosts), :class:`LabLogs`
    (``lvslab_logs``: the controller's and the switch's logs) and
    :class:`LabFabric` (``lvslab_fabric``: the links between switches,
    ``port_desc()``, the controller's view of the fabric).
    """

    def __init__(self, topology, controller_cmd=None, of_port=None, rest_port=None,
                 log_dir=None, rules_file=None, wait_rest=None, ready_flows=1,
                 lock_timeout=120.0, start_timeout=30.0, mn_cleanup=None,
                 mn_log_level="warning", extra_args=(), openflow_tls=None, ipv6=False):
        self.topology = load_topology(topology)
        self.name = self.topology["name"]
        self.ipv6 = bool(ipv6)
        if self.ipv6:
            check_ipv6(self.topology)
        self.of_port = of_port or free_tcp_port()
        self.rest_port = rest_port or free_tcp_port()
        while self.rest_port == self.of_port:
            self.rest_port = free_tcp_port()
        self.rules_file = rules_file
        self.of_tls = openflow_tls    # OpenFlow over TLS (lvslab_tls.SwitchTls), or None
        # the topology's extra controller arguments (--observe-links for a
        # fabric); only the default controller gets them
        self.controller_args = controller_args_of(self.topology) if controller_cmd is None \
            else []
        self.controller_cmd = (self._controller_argv(controller_cmd) + list(extra_args)
                               + (openflow_tls.controller_args(self.of_port)
                                  if openflow_tls else []))
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
        self.ports = {}               # host name (or vxlan0) -> OpenFlow port on its switch
        self.link_port_map = {}       # (switch a, switch b) of a link -> (port on a, port on b)
        self._links_down = set()      # frozenset({a, b}) of links link_down() took down
        self._switches_down = set()   # switches switch_down() stopped
        # what start() learned about the controller's view of a fabric (GET
        # /ipvs/fabric), in words; None for one switch
        self.fabric_status = None
        self.controller = None
        self.timings = {}
        self.failure_dump = None      # dump taken when start() failed
        self._state_file = StateFile()
        self.processes = Processes(self._state_file)   # what stop() stops
        self._started = False

    # ---- set-up ---------------------------------------------------------

    def _controller_argv(self, controller_cmd):
        cmd = controller_cmd or LVS_APP_CMD
        argv = shlex.split(cmd) if isinstance(cmd, str) else list(cmd)
        values = {"venv": str(VENV), "repo": str(REPO),
                  "of_port": self.of_port, "rest_port": self.rest_port}
        argv = [str(a).format(**values) for a in argv]
        if controller_cmd is None and self.rules_file:
            argv += ["--lvs-rules", str(self.rules_file)]
        return argv + self.controller_args

    def start(self):
        """Start everything; on failure stop what was started and raise.

        Readiness is polled with bounds: the controller's OpenFlow (and REST)
        port listens, every switch is connected with ``ready_flows`` flows,
        in a fabric the controller knows every switch and link (``GET
        /ipvs/fabric``; see :meth:`wait_fabric` and :attr:`fabric_status`),
        OVS has a route for the lab subnet (when a switch is the tunnel
        endpoint), every HTTP server has bound.
        """
        if self._started:
            return self
        t0 = time.monotonic()
        self._state_file.lock(self.lock_timeout, f"pid {os.getpid()} lab {self.name}")
        self._started = True
        self._ovs_log_start = file_size(OVS_LOG)
        atexit.register(self.stop)
        try:
            self._phase("cleanup", self.cleanup_leftovers)
            self.log_dir.mkdir(parents=True, exist_ok=True)
            (self.log_dir / "topology.json").write_text(json.dumps(self.topology, indent=2))
            self.processes.begin(owner=os.getpid(), topology=self.name,
                                 bridges=self.switch_names)
            self._phase("controller", self._start_controller)
            self._phase("network", self._start_network)
            self._phase("connected", self._wait_connected)
            if self.multi_switch:
                self._phase("fabric", self._wait_fabric_known)
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

        See :func:`lvslab_procs.remove_leftovers`; the topology's bridges are
        removed too.  ``mn_cleanup``: default the Lab's setting.
        """
        remove_leftovers(self._state_file, self.switch_names,
                         self.mn_cleanup if mn_cleanup is None else mn_cleanup)

    def _start_controller(self):
        log = open(self.controller_log_path, "ab")
        try:
            self.controller = subprocess.Popen(
                self.controller_cmd, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, cwd=str(REPO), start_new_session=True)
        finally:
            log.close()
        self.processes.add("controller", self.controller, group=True)
        ports = [self.of_port] + ([self.rest_port] if self.wait_rest else [])

        def listening():
            if self.controller.poll() is not None:
                raise LabError(f"controller exited with {self.controller.returncode}: "
                               f"{shlex.join(self.controller_cmd)}\n"
                               + self.controller_log()[-3000:])
            return all(tcp_listening(p) for p in ports)

        wait_or_raise(listening, self.start_timeout, f"the controller to listen on {ports}")

    def _start_network(self):
        from mininet.log import setLogLevel
        from mininet.net import Mininet
        from mininet.node import OVSSwitch, RemoteController

        setLogLevel(self.mn_log_level)
        topo = self.topology
        self.ports, self.link_port_map, self._links_down = {}, {}, set()
        self._switches_down = set()
        self.fabric_status = None
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

        net.addController("c0", controller=KnownListening, ip="127.0.0.1", port=self.of_port,
                          protocol=self.of_tls.protocol if self.of_tls else "tcp")
        # every switch connects to the one controller (Mininet gives each its
        # own Controller row with the same target)
        switches = {sw["name"]: net.addSwitch(sw["name"], dpid="%x" % sw["dpid"],
                                              datapath="user", protocols="OpenFlow13")
                    for sw in self.switch_specs}
        # ports: each switch numbers its hosts from 1 (clients, then servers),
        # then its links to other switches in the topology's order
        next_port = dict.fromkeys(switches, 1)
        for host in topo["clients"] + topo["servers"]:
            sw = self.switch_of(host["name"])
            port, next_port[sw] = next_port[sw], next_port[sw] + 1
            node = net.addHost(host["name"], ip=f"{host['ip']}/{subnet.prefixlen}",
                               mac=host["mac"])
            net.addLink(node, switches[sw], port2=port)
            self.ports[host["name"]] = port
        for a, b in self.links:
            pa, pb = next_port[a], next_port[b]
            next_port[a], next_port[b] = pa + 1, pb + 1
            link = net.addLink(switches[a], switches[b], port1=pa, port2=pb)
            self.link_port_map[(a, b)] = (pa, pb)
            for intf in (link.intf1.name, link.intf2.name):
                # both ends of a link between switches are in the root
                # namespace: no IPv6 from its stack (MLD/RS would enter the
                # neighbour switch and reach the controller as PacketIns), and
                # complete checksums (TCP through the userspace datapath)
                run(["sysctl", "-qw", f"net.ipv6.conf.{intf}.disable_ipv6=1"], check=False)
                run(["ethtool", "-K", intf, "tx", "off"])
        net.build()
        if self.of_tls:
            self.of_tls.switch_setup()
        net.start()
        self._controller_backoff()
        self.processes.add_pids((f"host {host.name}", host.pid) for host in net.hosts)
        for tunnel in self.tunnel_switches:      # s1 in a one-switch lab
            name = self.vxlan_port_name(tunnel["name"])
            self.ports[name] = VXLAN_OFPORT
            if self.multi_switch:
                # a fabric's leaves (FABRIC_VXLAN_RECIPE): the mark picks each
                # leaf's own route for its outer packets; a receive key of its
                # own tells the ports apart (OVS refuses a second port of the
                # same receive configuration)
                keys = [f"options:in_key={tunnel['dpid']}", "options:out_key=flow",
                        f"options:egress_pkt_mark={tunnel['dpid']}"]
            else:
                keys = ["options:key=flow"]
            run(["ovs-vsctl", "--timeout=10", "add-port", tunnel["name"], name,
                 "--", "set", "interface", name, "type=vxlan", "options:remote_ip=flow",
                 *keys, f"options:dst_port={VXLAN_UDP_PORT}", f"ofport_request={VXLAN_OFPORT}"])

    @property
    def controller_target(self):
        """The switches' controller target: ``tcp:127.0.0.1:<of_port>`` (``ssl:``
        with OpenFlow over TLS)."""
        return f"{self.of_tls.protocol if self.of_tls else 'tcp'}:127.0.0.1:{self.of_port}"

    def _controller_backoff(self):
        """Reconnect within a second when the controller restarts (OVS backs
        off up to 8 s by default): every Controller row of the lab's target."""
        for uuid in run(["ovs-vsctl", "--timeout=5", "--bare", "--columns=_uuid", "find",
                         "Controller", f"target=\"{self.controller_target}\""]
                        ).stdout.split():
            run(["ovs-vsctl", "--timeout=5", "set", "Controller", uuid, "max_backoff=1000"])

    def kill_controller(self):
        """``kill -9`` of the controller (its whole process group); the switch
        keeps its flows (fail mode secure) and keeps trying to reconnect."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.controller.pid, signal.SIGKILL)
        self.controller.wait(timeout=10)

    def restart_controller(self, timeout=30.0):
        """Start the controller again with the same command line (the same
        rules file) and wait until the switch is back and its flows were read
        (in a fabric: every switch, and every link known again when the
        controller has ``GET /ipvs/fabric``)."""
        mark = len(self.controller_log())
        self._start_controller()

        def back():
            log = self.controller_log()[mark:]
            if not self.multi_switch:
                return "lvs_app: switch" in log and "recovered" in log
            return (log.count("recovered") >= len(self.switch_names)
                    and all(f"lvs_app: switch {self.dpid_of(sw):016x}" in log
                            for sw in self.switch_names))
        wait_or_raise(back, timeout, "the switches to reconnect and the controller to "
                                     "read their flows back")
        if self.multi_switch and self.wait_rest:
            with contextlib.suppress(FabricUnavailable):
                self.wait_fabric(timeout)

    def switch_connected(self, switch=None):
        """Is ``switch`` (default: every switch of the lab) connected to the
        controller (ovsdb ``is_connected`` of a Controller row of the bridge
        with the lab's OpenFlow port)?  ovs-vswitchd refreshes it only every
        ~5 s."""
        names = self.switch_names if switch is None else [self.switch_spec(switch)["name"]]
        bridges = _ovsdb_rows(["--columns=name,controller", "list", "Bridge"] + names)
        rows = _ovsdb_rows(["--columns=_uuid,target,is_connected", "list", "Controller"])
        connected = {row["_uuid"] for row in rows
                     if row["is_connected"] is True
                     and str(row["target"]).endswith(f":127.0.0.1:{self.of_port}")}
        return (len(bridges) == len(names)
                and all(connected & set([row["controller"]] if isinstance(row["controller"], str)
                                        else row["controller"]) for row in bridges))

    def flow_count(self, switch=None):
        """The number of flows in ``switch`` (default: the one switch, or a
        fabric's first leaf), from ``ovs-ofctl dump-flows``."""
        return sum(1 for line in self.dump_flows(switch).splitlines() if "actions=" in line)

    def _pipeline_flow_count(self, switch):
        """Flows in ``switch`` but Ryu's LLDP trap (installed by ``ryu.topology``
        with --observe-links: ``priority=65535,dl_dst=01:80:c2:00:00:0e,
        dl_type=0x88cc``)."""
        return sum(1 for line in self.dump_flows(switch).splitlines()
                   if "actions=" in line and "dl_type=0x88cc" not in line)

    def flow_counts(self):
        """``{switch name: number of flows}`` for every switch."""
        return {sw: self.flow_count(sw) for sw in self.switch_names}

    def _wait_connected(self):
        waiting = list(self.switch_names)

        def ready():
            if self.controller.poll() is not None:
                raise LabError(f"controller exited with {self.controller.returncode}")
            # ovs-vswitchd refreshes is_connected in ovsdb only every ~5 s, so the
            # flows the controller installs on connection are the quicker sign
            # (a fresh bridge in fail mode secure has none of its own); Ryu's
            # LLDP trap (--observe-links) is not the application's pipeline
            for sw in list(waiting):
                if (self._pipeline_flow_count(sw) >= self.ready_flows if self.ready_flows
                        else self.switch_connected(sw)):
                    waiting.remove(sw)
            return not waiting

        try:
            wait_or_raise(ready, self.start_timeout,
                          f"switch(es) to connect to 127.0.0.1:{self.of_port} "
                          f"and hold {self.ready_flows} flow(s)")
        except LabError as err:
            raise LabError(f"{err}; not ready: {', '.join(waiting)}") from None

    def _configure_hosts(self):
        for spec in self.topology["clients"] + self.topology["servers"]:
            intf = self.host(spec["name"]).defaultIntf().name
            self.host_run(spec["name"], " && ".join(
                host_setup_commands(spec, self.vip, intf, ipv6=self.ipv6)))

    def _configure_tunnel_endpoint(self):
        """Give each tunnel switch's LOCAL port its tunnel source address and
        OVS a route and neighbour entries for its outer packets (one switch:
        VXLAN_RECIPE; a fabric's leaves: FABRIC_VXLAN_RECIPE); no IPv6 on any
        bridge's LOCAL port."""
        for name in self.switch_names:
            run(["sysctl", "-qw", f"net.ipv6.conf.{name}.disable_ipv6=1"], check=False)
        subnet = ipaddress.IPv4Network(self.topology["subnet"])
        for tunnel in self.tunnel_switches:     # none in a fabric without tunnel servers
            sw, tunnel_ip = tunnel["name"], tunnel["tunnel_ip"]
            if not self.multi_switch:
                run(["ip", "addr", "add", f"{tunnel_ip}/{subnet.prefixlen}", "dev", sw])
                run(["ip", "link", "set", sw, "up"])
                wait_or_raise(
                    lambda: f"{subnet} dev {sw}" in run(["ovs-appctl",
                                                         "ovs/route/show"]).stdout,
                    10, f"OVS to learn the route {subnet} dev {sw}")
            else:
                run(["ip", "addr", "add", f"{tunnel_ip}/{subnet.prefixlen}", "dev", sw,
                     "noprefixroute"])
                run(["ip", "link", "set", sw, "up"])
                route = f"MARK {tunnel['dpid']} dev {sw} SRC {tunnel_ip}"

                def routed(sw=sw, tunnel=tunnel, route=route):
                    # OVS takes the source from the bridge's addresses, which it
                    # may not have read yet: added again until the route is there
                    run(["ovs-appctl", "ovs/route/add", str(subnet), sw,
                         f"pkt_mark={tunnel['dpid']}"], check=False)
                    return route in run(["ovs-appctl", "ovs/route/show"]).stdout
                wait_or_raise(routed, 10, f"OVS to take the route {subnet} {route}")
            for spec in self.topology["servers"]:
                if spec["method"] == "tunnel":
                    run(["ovs-appctl", "tnl/neigh/set", sw, spec["ip"], spec["mac"]])

    # ---- stopping -------------------------------------------------------

    def stop(self):
        """Stop everything this lab started (bounded); safe to call twice."""
        if not self._started:
            return
        self._started = False
        self._forget_servers()
        t0 = time.monotonic()
        problems = self.processes.stop_all(3, skip=("controller",))
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
        if self.of_tls:
            self.of_tls.switch_teardown()
        # a bridge or link Mininet did not remove would break the next lab
        try:
            self.cleanup_leftovers(mn_cleanup=False)
        except Exception as err:  # noqa: BLE001
            problems.append(f"cleanup: {err!r}")
        self._state_file.unlock()
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

    def port_of(self, name):
        """The OpenFlow port number of host ``name`` on its own switch
        (:meth:`switch_of`), or of a VXLAN port (:meth:`vxlan_port_name`:
        ``vxlan0`` on the one switch, ``vxlan-<leaf>`` on a fabric's leaf)."""
        try:
            return self.ports[name]
        except KeyError:
            if name.startswith("vxlan"):
                have = [self.vxlan_port_name(sw["name"]) for sw in self.tunnel_switches]
                raise LabError(f"lab {self.name}: no port {name} (VXLAN ports: "
                               f"{', '.join(have) or 'none, no switch holds a tunnel_ip'})"
                               ) from None
            raise LabError(f"lab {self.name}: no host or port {name}") from None

    def popen(self, name, cmd, description=None, **kwargs):
        """Start a background process in host ``name``; it is killed on stop()."""
        proc = self.host(name).popen(cmd, **kwargs)
        self.processes.add(description or f"{name}: {cmd}", proc)
        return proc

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

    def apply_lvsadm(self, ipv6=False):
        """Run the topology's lvsadm commands in order; ``ipv6``: their IPv6
        twin instead (:meth:`lvsadm_commands`, a dual-stack lab only)."""
        for command in self.lvsadm_commands(ipv6):
            self.lvsadm(command)

    def connection_table(self, timeout=5):
        """The director's connections and templates (REST ``GET /ipvs/connections``).

        A list of dicts with ``client``, ``cport``, ``vip``, ``vport``,
        ``server``, ``dport``, ``state`` (templates have ``template: True``);
        quicker than parsing ``lvsadm -L -c -n`` when a test looks after
        every transfer.
        """
        return self.rest("GET", "/ipvs/connections", timeout=timeout)["connections"]

    def rest(self, method, path, body=None, timeout=10):
        """One request to the controller's REST API; the decoded JSON answer.
        ``body``: text (sent as text/plain) or a JSON-able object.  An error
        status raises urllib's HTTPError (its ``read()`` has the JSON error)."""
        import urllib.request
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        data, headers = None, {}
        if isinstance(body, str):
            data, headers = body.encode(), {"Content-Type": "text/plain"}
        elif body is not None:
            data, headers = json.dumps(body).encode(), {"Content-Type": "application/json"}
        request = urllib.request.Request(f"http://127.0.0.1:{self.rest_port}{path}", data=data,
                                         headers=headers, method=method)
        with opener.open(request, timeout=timeout) as response:
            raw = response.read().decode()
        return json.loads(raw) if raw.strip() else None

    def ofctl(self, command, *args, switch=None, check=True):
        """``ovs-ofctl -O OpenFlow13 <command> <switch> ARGS``; ``switch``:
        a name of :attr:`switch_names`, default :attr:`switch_name` (the one
        switch, or a fabric's first leaf)."""
        bridge = self.switch_spec(switch)["name"]
        return run(["ovs-ofctl", "-O", "OpenFlow13", command, bridge, *args], check=check)

    def add_flow(self, flow, switch=None):
        """Install a flow with ovs-ofctl syntax (``priority=..,match actions=..``)."""
        return self.ofctl("add-flow", flow, switch=switch)

    def dump_flows(self, switch=None):
        """``ovs-ofctl dump-flows`` of ``switch`` (default :attr:`switch_name`)."""
        return self.ofctl("dump-flows", switch=switch, check=False).stdout

    # ---- failure reports ------------------------------------------------

    def dump(self, log_lines=300):
        """Everything needed to understand a failure, as one text."""
        sections = []

        def add(title, func):
            try:
                body = func()
            except Exception as err:  # noqa: BLE001
                body = f"(failed: {err!r})"
            sections.append(f"===== {title} =====\n{body.rstrip()}\n")

        add("lab", lambda: (f"topology {self.name}{' (dual-stack)' if self.ipv6 else ''}; "
                            f"controller {shlex.join(self.controller_cmd)}; "
                            f"of_port {self.of_port}; rest_port {self.rest_port}; "
                            f"log_dir {self.log_dir}; timings {self._timings_text()}"))
        if self.multi_switch:
            add("fabric: switches, links (ports), the controller's view", self._fabric_text)
        for sw in self.switch_names:
            add(f"ovs-ofctl -O OpenFlow13 dump-flows {sw}",
                lambda sw=sw: self.dump_flows(sw))
            add(f"ovs-ofctl -O OpenFlow13 dump-ports-desc {sw}",
                lambda sw=sw: self.ofctl("dump-ports-desc", switch=sw, check=False).stdout)
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
                    where = (f"switch {self.switch_of(h.name)} " if self.multi_switch else "")
                    out.append(f"--- {h.name} ({where}port {self.ports.get(h.name)})\n"
                               f"{text.rstrip()}")
                return "\n".join(out)
            add("hosts: ip -br addr; ip neigh", hosts)
        add(f"controller log {self.controller_log_path}",
            lambda: self.controller_log_tail(log_lines))
        add(f"{OVS_LOG} since the lab started (warnings, errors, error replies)",
            self.ovs_log_warnings)
        add("topology", lambda: json.dumps(self.topology, indent=1))
        return "\n".join(sections)

    def _timings_text(self):
        return ", ".join(f"{k} {v:.2f}s" for k, v in self.timings.items())
