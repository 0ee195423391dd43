"""Lab descriptions: ``topologies/*.json``, the address plan and the forwarding recipes.

:func:`load_topology` reads and validates a lab description and fills in
the defaults of its address plan (host MACs, the VIP's MAC, the switch's
tunnel address).  :data:`NAT_RECIPE`, :data:`DR_RECIPE` and
:data:`VXLAN_RECIPE` say what each forwarding method needs from the switch
and the real server; :func:`host_setup_commands` is the real server's (and
the client's) part of them, which ``Lab.start`` runs in every host.
No Mininet and no processes here: this module only describes.
"""

import ipaddress
import json
import re
import shlex
from pathlib import Path

from lvs_app.model import DEFAULT_METHOD
from lvs_app.packet import mac_text, virtual_mac

from lvslab_procs import REPO, LabError

TOPOLOGIES = REPO / "topologies"

LVSADM_METHOD_FLAGS = {"-m": "masq", "--masquerading": "masq",
                       "-g": "droute", "--gatewaying": "droute",
                       "-i": "tunnel", "--ipip": "tunnel"}
# The names of lvs_app.model.FORWARDING_METHODS, in the order of the flags
# above (-m, -g, -i), which is the order the lab's error messages list them in.
METHODS = tuple(dict.fromkeys(LVSADM_METHOD_FLAGS.values()))
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


class TopologyError(LabError):
    """A topology file is invalid; the message names the file and the rule."""


def mac_for(address, prefix="02:00"):
    """The lab's MAC for a host address: locally administered 02:00 + the IPv4 address."""
    return prefix + ":" + ":".join(f"{b:02x}" for b in ipaddress.IPv4Address(address).packed)


def vip_mac_for(vip):
    """The MAC the director answers ARP for a VIP with (lvs_app.packet.virtual_mac)."""
    return mac_text(virtual_mac(ipaddress.IPv4Address(vip)))


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
            known = ", ".join(topology_names())
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
        method = flags[-1] if flags else DEFAULT_METHOD     # ipvsadm's default is -g
        if method != server["method"]:
            fail(f"lvsadm {command!r}: server {server['name']} is set up for "
                 f"{server['method']}, the command asks for {method}")


def topology_names():
    """Names of the topology files in ``topologies/``."""
    return sorted(p.stem for p in TOPOLOGIES.glob("*.json"))


def host_setup_commands(spec, vip, intf):
    """The shell commands that set up host ``spec`` (a client or a real server).

    ``intf``: the host's interface to the switch.  Every host gets full
    checksums (tx offload off), no IPv6 and no reverse path filter; a real
    server gets its method's part of :data:`DR_RECIPE` or :data:`VXLAN_RECIPE`.
    """
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
    return cmds


class AddressPlan:
    """Questions a loaded topology answers (a mixin of :class:`lvslab.Lab`).

    Needs ``topology`` (from :func:`load_topology`) and ``name`` from the
    class it is mixed into.
    """

    @property
    def switch_name(self):
        return self.topology["switch"]["name"]

    @property
    def vip(self):
        return self.topology["vip"]

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

    def server_by_ip(self, ip):
        """The name of the real server with address ``ip``."""
        for spec in self.topology["servers"]:
            if spec["ip"] == ip:
                return spec["name"]
        raise LabError(f"lab {self.name}: no real server {ip}")
