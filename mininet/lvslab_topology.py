"""Lab descriptions: ``topologies/*.json``, the address plan and the forwarding recipes.

:func:`load_topology` reads and validates a lab description and fills in
the defaults of its address plan (host MACs, the VIP's MAC, the switch's
tunnel address).  A lab has one switch (``"switch": {...}``, the labs
``nat``, ``droute``, ``tunnel``, ``persist``) or a fabric of several
(``"switches": [...]`` and ``"links": [...]``, the lab ``leafspine``); see
:func:`load_topology` for both forms.  :data:`NAT_RECIPE`, :data:`DR_RECIPE` and
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
from lvs_app.packet import mac_text, tunnel_mac, virtual_mac

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
# The IPv6 plan of a dual-stack lab: ipv6_of() puts every host (and the VIP)
# into this /64.
IPV6_NETWORK = ipaddress.IPv6Network("fd00::/64")

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
    ip link add vx0 address <the server's tunnel MAC, 02:1e:<its IPv4>> \
        type vxlan dstport 4789 external
    ip link set vx0 up; ip addr add <VIP>/32 dev vx0
    sysctl net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2 \\
           net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.vx0.rp_filter=0
  flows (what the director installs):
    table=0,priority=P,tcp,in_port=<client port>,nw_dst=<VIP>,tp_dst=80
        actions=set_field:<server ip>->tun_dst,set_field:<vx0 MAC>->eth_dst,output:100
        # inner eth_dst must be vx0's MAC: the director sets the server's
        # tunnel MAC, which vx0 carries, so vx0 takes every VIP it holds;
        # tun_id defaults to 0
    table=0,priority=P,in_port=LOCAL,udp,nw_dst=<server ip>,tp_dst=4789
        actions=output:<server port>
        # the encapsulated frame re-enters the bridge from LOCAL; any L2
        # forwarding that treats LOCAL like a host port does the same
"""

FABRIC_VXLAN_RECIPE = """\
Tunnel (-i) across a fabric, with a VXLAN port on every leaf that holds a
tunnel_ip (proven by tests/e2e/test_fabric.py, clients on two leaves):

  Every bridge of the lab runs in one ovs-vswitchd and its LOCAL port lives in
  the root namespace, so the leaves share one routing table.  OVS's
  userspace tunnelling (datapath_type=netdev) picks the bridge an outer
  packet enters by a route lookup on (tun_dst, pkt_mark) in its own table
  (ovs/route; the source address is that bridge's address in the route's
  subnet) and addresses it with that bridge's neighbour entry (tnl/neigh).
  Without marks every leaf's outer packets would leave by the one bridge
  whose route for the subnet OVS cached last.  So each tunnel leaf gets
  (done by Lab.start; <mark> = the leaf's dpid):

    ovs-vsctl add-port <leaf> vxlan-<leaf> -- set interface vxlan-<leaf> \\
        type=vxlan options:remote_ip=flow options:in_key=<mark> \\
        options:out_key=flow options:egress_pkt_mark=<mark> ofport_request=100
        # interface names are global in OVS: one name per leaf; the
        # director finds "vxlan" in it.  OVS refuses a second tunnel port
        # whose receive side (remote_ip, local_ip, in_key, UDP port) equals
        # another's ("attempting to add tunnel port with same config"), so
        # each leaf receives on a key of its own (nothing is received: the
        # servers answer the clients directly); out_key=flow sends VNI 0 as
        # key=flow did.  egress_pkt_mark marks the outer packet before OVS
        # looks its route up (the datapath flow shows
        # set(skb_mark(<mark>)),tnl_push(...ipv4(src=<tunnel_ip>,...)))
    ip addr add <tunnel_ip>/<plen> dev <leaf> noprefixroute; ip link set <leaf> up
        # the leaf's own source address; no kernel route for the subnet (the
        # root namespace would otherwise hold one /24 route per leaf)
    ovs-appctl ovs/route/add <subnet> <leaf> pkt_mark=<mark>
        # "User: 10.0.0.0/24 MARK <mark> dev <leaf> SRC <tunnel_ip>": the outer
        # packet re-enters <leaf> itself from LOCAL and the fabric carries it
        # to the server's leaf by the server's MAC.  User routes outlive the
        # bridge: the lab deletes them when it stops (remove_leftovers)
    ovs-appctl tnl/neigh/set <leaf> <server ip> <server eth0 MAC>
        # per leaf: an ARP from LOCAL would never be answered (the director
        # floods at edge ports only, and LOCAL is none)

  The real servers are set up as in VXLAN_RECIPE.  (Not tried here: a
  kernel datapath routes the outer packets with the kernel's own table,
  where the mark would need an ip rule per leaf.)
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


def ipv6_of(ipv4):
    """The IPv6 twin of a lab IPv4 address in a dual-stack lab (the one place
    the plan is written down): ``a.b.c.d`` -> ``fd00::a:b:c:d``, each decimal
    octet written as the text of a hex group, so ``10.0.0.11`` ->
    ``fd00::10:0:0:11`` (the group 0x11) and ``10.0.0.100`` ->
    ``fd00::10:0:0:100``.  Every twin is in :data:`IPV6_NETWORK` (/64); the
    text is ``ipaddress``'s compressed form."""
    octets = str(ipaddress.IPv4Address(ipv4)).split(".")
    return str(ipaddress.IPv6Address(f"{IPV6_NETWORK.network_address}{':'.join(octets)}"))


def ipv6_prefix_of(plen):
    """The prefix length that covers, in :func:`ipv6_of`'s plan, what an IPv4
    prefix ``plen`` covers: 24 -> 112 (``fd00::10:0:0:*``), 32 -> 128,
    0 -> 64.  Each octet is one whole group (its decimal digits written as
    hex digits), so a prefix that cuts into an octet has no exact twin: it
    is widened to the whole octet (25 -> 112, like 24)."""
    plen = int(plen)
    if not 0 <= plen <= 32:
        raise ValueError(f"IPv4 prefix length {plen} must be 0..32")
    return IPV6_NETWORK.prefixlen + 16 * (plen // 8)


def vip_mac_for(vip):
    """The MAC the director answers ARP for a VIP with (lvs_app.packet.virtual_mac)."""
    return mac_text(virtual_mac(ipaddress.IPv4Address(vip)))


_NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,9}$")   # "<name>-eth0" fits IFNAMSIZ
# a fabric switch's interfaces are "<name>-eth<port>" (ports up to 999)
_SWITCH_NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,7}$")
SWITCH_ROLES = ("leaf", "spine")
SWITCH_KEYS = ("name", "dpid", "role", "tunnel_ip")
# the controller's extra arguments when the topology names none: LLDP link
# discovery (Ryu's ryu.topology) for a fabric, nothing for one switch
FABRIC_CONTROLLER_ARGS = ("--observe-links",)


def load_topology(source):
    """Load and validate a lab description; return a new dict with defaults filled.

    ``source``: a dict, a path to a JSON file, or the name of a file in
    ``topologies/`` (``"nat"`` -> ``topologies/nat.json``).

    Keys: ``name``, ``description``, ``subnet``, ``vip``, ``vip_mac``,
    ``switch`` {``name``, ``dpid``, ``tunnel_ip``}, ``clients`` [{``name``,
    ``ip``, ``mac``}], ``servers`` [{``name``, ``ip``, ``mac``, ``method``,
    ``http_ports``, ``vxlan_mac``}], ``lvsadm`` [command strings],
    ``controller_args`` [strings, optional].
    Host MACs default to :func:`mac_for` of the address, ``vip_mac`` to
    :func:`vip_mac_for` (the director's ARP answer), ``vxlan_mac`` (the MAC
    of a tunnel server's vx0) to the server's tunnel MAC
    (``lvs_app.packet.tunnel_mac``): the director addresses the inner frame
    to it, and the server's kernel only accepts frames addressed to vx0's MAC.

    A fabric (several switches) says ``switches`` instead of ``switch``:
    ``switches`` [{``name``, ``dpid``, ``role``, ``tunnel_ip``}] (``role``
    ``leaf`` or ``spine``, default ``leaf`` when hosts hang off it, else
    ``spine``; ``tunnel_ip`` optional, on any leaf whose clients use tunnel
    servers: it then gets a VXLAN port ``vxlan-<name>`` and that source
    address on its LOCAL port, see :data:`FABRIC_VXLAN_RECIPE`; its dpid is
    its outer packets' pkt_mark, so below 2^32),
    ``links`` [[switch, switch], ...] (each a Mininet veth link between two
    switches; the fabric must be connected, loops are allowed) and every
    host names its switch: ``{"name": "c1", "ip": ..., "switch": "l1"}``.
    ``controller_args`` (appended to the default controller command, see
    :func:`controller_args_of`) default to :data:`FABRIC_CONTROLLER_ARGS`
    there.  A one-switch topology is loaded as before (no ``switches``
    key is added); a host there may name the one switch too.
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
            known = ", ".join(topology_names(fabric=None))
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
    if "switches" in topo:
        if "switch" in topo:
            fail("both 'switch' (one switch) and 'switches' (a fabric): say one of them")
        switch_names = _load_fabric_switches(topo, fail, address, claim)
    else:
        if "links" in topo:
            fail("'links' joins the switches of a 'switches' list; this topology has "
                 "one 'switch'")
        switch = topo.setdefault("switch", {})
        switch.setdefault("name", "s1")
        switch.setdefault("dpid", 1)
        switch.setdefault("tunnel_ip", str(subnet.broadcast_address - 1))
        switch["tunnel_ip"] = address(switch["tunnel_ip"], "switch tunnel_ip")
        claim(switch["tunnel_ip"], f"switch {switch['name']}")
        if not isinstance(switch["dpid"], int) or not 0 < switch["dpid"] < 2 ** 64:
            fail(f"switch dpid {switch['dpid']!r} must be an integer 1..2^64-1")
        switch_names = [switch["name"]]
    if "controller_args" in topo and not (
            isinstance(topo["controller_args"], list)
            and all(isinstance(a, str) for a in topo["controller_args"])):
        fail("controller_args must be a list of strings (ryu-manager options)")

    names = set(switch_names)
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
            _check_host_switch(topo, host, what, switch_names, fail)
            if role == "servers":
                if host.get("method") not in METHODS:
                    fail(f"{what}: method {host.get('method')!r} must be one of "
                         f"{', '.join(METHODS)}")
                host.setdefault("http_ports", list(DEFAULT_HTTP_PORTS))
                if host["method"] == "tunnel":
                    host.setdefault("vxlan_mac", mac_text(tunnel_mac(
                        int(ipaddress.IPv4Address(host["ip"])))))
    if not all(isinstance(c, str) for c in topo["lvsadm"]):
        fail("lvsadm must be a list of command strings")
    if "switches" in topo:
        _check_fabric_hosts(topo, fail)
    _check_lvsadm_methods(topo, fail)
    return topo


def _load_fabric_switches(topo, fail, address, claim):
    """Validate ``switches`` and ``links`` of a fabric; return the switch names."""
    switches = topo["switches"]
    if not isinstance(switches, list) or not switches:
        fail("switches must be a non-empty list of {name, dpid, role, tunnel_ip}")
    names, dpids = [], {}
    for sw in switches:
        if not isinstance(sw, dict):
            fail(f"switches: {sw!r} is not an object {{name, dpid, ...}}")
        sname = sw.get("name")
        what = f"switch {sname}"
        if not isinstance(sname, str) or not _SWITCH_NAME_RE.match(sname):
            fail(f"{what}: name must match {_SWITCH_NAME_RE.pattern}")
        if sname in names:
            fail(f"{what}: name is used twice")
        names.append(sname)
        unknown = sorted(set(sw) - set(SWITCH_KEYS))
        if unknown:
            fail(f"{what}: unknown key(s) {', '.join(unknown)} "
                 f"(a switch has {', '.join(SWITCH_KEYS)})")
        dpid = sw.get("dpid")
        if isinstance(dpid, bool) or not isinstance(dpid, int) or not 0 < dpid < 2 ** 64:
            fail(f"{what}: dpid {dpid!r} must be an integer 1..2^64-1")
        if dpid in dpids:
            fail(f"{what}: dpid {dpid} is already the dpid of switch {dpids[dpid]}")
        dpids[dpid] = sname
        if "role" in sw and sw["role"] not in SWITCH_ROLES:
            fail(f"{what}: role {sw['role']!r} must be one of {', '.join(SWITCH_ROLES)}")
        if "tunnel_ip" in sw:
            # the switch's pkt_mark picks its own route for the outer packets
            # (see FABRIC_VXLAN_RECIPE): a 32-bit mark
            if dpid >= 2 ** 32:
                fail(f"{what}: tunnel_ip: a tunnel endpoint's dpid {dpid} must be below 2^32 "
                     "(it is the pkt_mark of its outer packets' route)")
            sw["tunnel_ip"] = address(sw["tunnel_ip"], f"{what} tunnel_ip")
            claim(sw["tunnel_ip"], what)
    links = topo.setdefault("links", [])
    if not isinstance(links, list):
        fail("links must be a list of [switch, switch] pairs")
    seen = {}
    for link in links:
        if (not isinstance(link, list) or len(link) != 2
                or not all(isinstance(n, str) for n in link)):
            fail(f"links: {link!r} must be a pair of switch names [\"a\", \"b\"]")
        a, b = link
        for end in (a, b):
            if end not in names:
                fail(f"link {a}-{b}: {end} is not a switch of this topology "
                     f"({', '.join(names)})")
        if a == b:
            fail(f"link {a}-{b}: a link joins two different switches")
        key = frozenset(link)
        if key in seen:
            fail(f"link {a}-{b}: {seen[key]} already joins these switches "
                 "(one link between two switches)")
        seen[key] = f"link {a}-{b}"
    # every switch reachable from the first: one L2 segment
    reach, todo = {names[0]}, [names[0]]
    while todo:
        here = todo.pop()
        for a, b in links:
            for x, y in ((a, b), (b, a)):
                if x == here and y not in reach:
                    reach.add(y)
                    todo.append(y)
    apart = [n for n in names if n not in reach]
    if apart:
        fail(f"switch {apart[0]}: no path of links from switch {names[0]} "
             "(the fabric is one L2 segment)")
    return names


def _check_host_switch(topo, host, what, switch_names, fail):
    """A host's ``switch``: required in a fabric, the one switch otherwise."""
    if "switches" in topo:
        if "switch" not in host:
            fail(f"{what}: no 'switch' (in a fabric each host names the switch it "
                 f"hangs off: one of {', '.join(switch_names)})")
        if host["switch"] not in switch_names:
            fail(f"{what}: switch {host['switch']!r} is not a switch of this topology "
                 f"({', '.join(switch_names)})")
    elif "switch" in host and host["switch"] != switch_names[0]:
        fail(f"{what}: switch {host['switch']!r}: this topology has one switch, "
             f"{switch_names[0]}")


def _check_fabric_hosts(topo, fail):
    """Roles (hosts hang off leaves), the tunnel endpoint, controller_args' default."""
    hosts = topo["clients"] + topo["servers"]
    attached = {h["switch"] for h in hosts}
    for sw in topo["switches"]:
        sw.setdefault("role", "leaf" if sw["name"] in attached else "spine")
        if sw["role"] == "spine" and sw["name"] in attached:
            host = next(h["name"] for h in hosts if h["switch"] == sw["name"])
            fail(f"host {host}: switch {sw['name']} is a spine (hosts hang off leaves)")
    if not any(sw["role"] == "leaf" for sw in topo["switches"]):
        fail("switches: no leaf (a switch hosts hang off)")
    tunnelled = [s["name"] for s in topo["servers"] if s["method"] == "tunnel"]
    if tunnelled and not any("tunnel_ip" in sw for sw in topo["switches"]):
        fail(f"server {tunnelled[0]}: method tunnel needs a switch with a tunnel_ip "
             "(the VXLAN endpoint)")
    topo.setdefault("controller_args",
                    list(FABRIC_CONTROLLER_ARGS) if len(topo["switches"]) > 1 else [])


def vxlan_port_name(topo, switch):
    """The VXLAN port of ``switch``: :data:`VXLAN_PORT_NAME` in a one-switch
    lab, ``vxlan-<switch>`` in a fabric (OVS's interface names are global)."""
    return VXLAN_PORT_NAME if "switches" not in topo else f"vxlan-{switch}"


def switch_specs(topo):
    """The switches of a loaded topology, in order: ``[topo["switch"]]`` for a
    one-switch lab, ``topo["switches"]`` for a fabric."""
    return topo["switches"] if "switches" in topo else [topo["switch"]]


def controller_args_of(topo):
    """The arguments a topology adds to the default controller command: its
    ``controller_args``, else :data:`FABRIC_CONTROLLER_ARGS` for more than
    one switch and none for one."""
    if "controller_args" in topo:
        return list(topo["controller_args"])
    return list(FABRIC_CONTROLLER_ARGS) if len(switch_specs(topo)) > 1 else []


def is_fabric_file(path):
    """Is the JSON file ``path`` written in the fabric form (a ``switches`` list)?"""
    try:
        return "switches" in json.loads(Path(path).read_text())
    except (OSError, ValueError, TypeError):
        return False


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


def topology_names(fabric=False):
    """Names of the topology files in ``topologies/``.

    ``fabric``: False (the default) the one-switch labs (``"switch"``: nat,
    droute, tunnel, persist), which every e2e sweep over "all labs" runs,
    also with Ryu's learning switch, which would flood a fabric's loops
    forever; True the fabrics (``"switches"``: leafspine); None all of them.
    """
    paths = sorted(TOPOLOGIES.glob("*.json"))
    return [p.stem for p in paths if fabric is None or is_fabric_file(p) == fabric]


def check_ipv6(topo):
    """Refuse a dual-stack lab on a topology that cannot have one (TopologyError).

    Only the one-switch labs (``"switch"``: nat, droute, tunnel, persist)
    are dual-stack; a fabric's links and spines keep IPv6 off in the root
    namespace, and nothing proves IPv6 across one.
    """
    if "switches" in topo:
        one = ", ".join(topology_names()) or "the one-switch labs"
        raise TopologyError(
            f"topology {topo.get('name', '<dict>')}: ipv6=True (a dual-stack lab) needs a "
            f"one-switch topology ({one}); a fabric of several switches is IPv4 only")


_SERVICE_OPTS = ("-t", "--tcp-service", "-u", "--udp-service")
_REAL_OPTS = ("-r", "--real-server", "-R")
_MASK_OPTS = ("-M", "--netmask")


def ipv6_lvsadm(topo):
    """The IPv6 twin of a loaded topology's ``lvsadm`` commands.

    The VIP becomes ``[ipv6_of(VIP)]``, every real server that is not a
    tunnel server ``[ipv6_of(its IPv4)]`` (ports kept), a dotted
    persistence netmask its :func:`ipv6_prefix_of`; tunnel servers stay
    IPv4 endpoints (an IPv6 VIP served through IPv4 tunnels, IPVS's
    mixed-family tunnel).  Everything else is kept as it is::

        -A -t 10.0.0.100:80 -s rr -p 30 -M 255.255.255.0
        -> -A -t [fd00::10:0:0:100]:80 -s rr -p 30 -M 112
        -a -t 10.0.0.100:80 -r 10.0.0.13:8080 -m
        -> -a -t [fd00::10:0:0:100]:80 -r [fd00::10:0:0:13]:8080 -m
    """
    check_ipv6(topo)
    tunnel_ips = {s["ip"] for s in topo["servers"] if s["method"] == "tunnel"}

    def address(text, keep=()):
        host, sep, port = text.rpartition(":") if text.count(":") == 1 else (text, "", "")
        if host in keep:
            return text
        try:
            twin = ipv6_of(host)
        except ValueError:
            return text
        return f"[{twin}]{sep}{port}"

    commands = []
    for command in topo["lvsadm"]:
        args = shlex.split(command)
        out = []
        for i, arg in enumerate(args):
            option = args[i - 1] if i else None
            if option in _SERVICE_OPTS:
                arg = address(arg)
            elif option in _REAL_OPTS:
                arg = address(arg, keep=tunnel_ips)
            elif option in _MASK_OPTS:
                try:
                    arg = str(ipv6_prefix_of(ipaddress.IPv4Network(f"0.0.0.0/{arg}").prefixlen))
                except ValueError:
                    pass
            out.append(arg)
        # quoted only where a shell would split: "[fd00::10:0:0:100]:80" as
        # ipvsadm's manual writes it
        commands.append(" ".join(arg if arg and not re.search(r"[\s'\"\\]", arg)
                                 else shlex.quote(arg) for arg in out))
    return commands


# IPv6 on a dual-stack lab's host, quietly: no duplicate address detection
# (addresses usable at once, no DAD solicitations), no router solicitations,
# unsolicited MLD reports as rare as the kernel allows (milliseconds)
IPV6_QUIET_SYSCTLS = ("accept_dad=0", "router_solicitations=0",
                      "mldv1_unsolicited_report_interval=3600000",
                      "mldv2_unsolicited_report_interval=3600000")


def host_setup_commands(spec, vip, intf, ipv6=False):
    """The shell commands that set up host ``spec`` (a client or a real server).

    ``intf``: the host's interface to the switch.  Every host gets full
    checksums (tx offload off), no IPv6 and no reverse path filter; a real
    server gets its method's part of :data:`DR_RECIPE` or :data:`VXLAN_RECIPE`.

    ``ipv6``: a dual-stack host instead: IPv6 stays on, quiet
    (:data:`IPV6_QUIET_SYSCTLS` for ``all``, ``default`` and ``intf``, set
    while IPv6 is off on ``intf``, so its link-local address comes back
    without DAD), and the host gets ``ipv6_of(its IPv4)/64`` on ``intf``
    (``nodad``); a direct routing server also holds ``ipv6_of(vip)/128`` on ``lo`` (Linux answers
    Neighbour Solicitations only for addresses of the interface they arrive
    on, so nothing like ``arp_ignore`` is needed), a tunnel server on
    ``vx0`` (whose outer network stays IPv4).
    """
    if ipv6:
        quiet = " ".join(f"net.ipv6.conf.{dev}.{setting}"
                         for dev in ("all", "default", intf)
                         for setting in IPV6_QUIET_SYSCTLS)
        family = [
            # IPv6 off and on again around the settings: the link-local
            # address made at link-up is made again without DAD, and what
            # reaches the controller is one MLD report or two per host
            # (measured: 10 PacketIns for 5 hosts at start, none after)
            f"sysctl -qw net.ipv6.conf.{intf}.disable_ipv6=1",
            f"sysctl -qw {quiet}",
            f"sysctl -qw net.ipv6.conf.{intf}.disable_ipv6=0",
            f"ip -6 addr add {ipv6_of(spec['ip'])}/{IPV6_NETWORK.prefixlen} dev {intf} nodad",
        ]
    else:
        # no IPv6 chatter (RS/MLD) reaching the controller as PacketIns
        family = ["sysctl -qw net.ipv6.conf.all.disable_ipv6=1 "
                  "net.ipv6.conf.default.disable_ipv6=1"]
    cmds = [
        # TCP through the userspace datapath over veth: checksums must
        # be complete when the frame leaves the host
        f"ethtool -K {intf} tx off",
        *family,
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
        if ipv6:
            cmds.append(f"ip -6 addr add {ipv6_of(vip)}/128 dev lo")
    if method == "tunnel":
        cmds += [f"ip link add {VXLAN_DEVICE} address {spec['vxlan_mac']} type vxlan "
                 f"dstport {VXLAN_UDP_PORT} external",
                 f"sysctl -qw net.ipv4.conf.{VXLAN_DEVICE}.rp_filter=0",
                 f"ip link set {VXLAN_DEVICE} up",
                 f"ip addr add {vip}/32 dev {VXLAN_DEVICE}"]
        if ipv6:
            cmds.append(f"ip -6 addr add {ipv6_of(vip)}/128 dev {VXLAN_DEVICE} nodad")
    return cmds


class AddressPlan:
    """Questions a loaded topology answers (a mixin of :class:`lvslab.Lab`).

    Needs ``topology`` (from :func:`load_topology`) and ``name`` from the
    class it is mixed into, and ``ipv6`` (a dual-stack lab) when it is one.
    """

    ipv6 = False                  # a dual-stack lab (Lab(..., ipv6=True))

    @property
    def switch_specs(self):
        """The switches' topology entries, in order (see :func:`switch_specs`)."""
        return switch_specs(self.topology)

    @property
    def switch_names(self):
        """The switches' names in the topology's order: ``["s1"]``, or
        ``["l1", "l2", "l3", "sp1", "sp2"]`` for leafspine."""
        return [sw["name"] for sw in self.switch_specs]

    @property
    def switch_name(self):
        """The default switch: the one switch, or a fabric's first leaf."""
        if "switch" in self.topology:
            return self.topology["switch"]["name"]
        return next(sw["name"] for sw in self.switch_specs if sw["role"] == "leaf")

    @property
    def multi_switch(self):
        """More than one switch (a fabric with links between the switches)."""
        return len(self.switch_specs) > 1

    @property
    def links(self):
        """The links between switches as (name, name) pairs, in the topology's
        order (none in a one-switch lab)."""
        return [tuple(link) for link in self.topology.get("links", [])]

    @property
    def tunnel_switches(self):
        """The topology entries of the switches that hold a ``tunnel_ip`` and
        a VXLAN port (``[s1]`` in a one-switch lab), in order."""
        return [sw for sw in self.switch_specs if "tunnel_ip" in sw]

    @property
    def tunnel_switch(self):
        """The first of :attr:`tunnel_switches` (``s1`` in a one-switch lab), or None."""
        return next(iter(self.tunnel_switches), None)

    def vxlan_port_name(self, switch=None):
        """The name of ``switch``'s VXLAN port (default :attr:`switch_name`):
        ``vxlan0`` in a one-switch lab, ``vxlan-<switch>`` in a fabric."""
        return vxlan_port_name(self.topology, self.switch_spec(switch)["name"])

    def switch_spec(self, name=None):
        """The topology entry of switch ``name`` (default: :attr:`switch_name`)."""
        name = self.switch_name if name is None else name
        for sw in self.switch_specs:
            if sw["name"] == name:
                return sw
        raise LabError(f"lab {self.name}: no switch {name} "
                       f"(switches: {', '.join(self.switch_names)})")

    def dpid_of(self, name):
        """The datapath id (an int) of switch ``name``."""
        return self.switch_spec(name)["dpid"]

    def switch_of(self, host):
        """The name of the switch host ``host`` hangs off."""
        return self.spec(host).get("switch", self.switch_name)

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

    @property
    def vip6(self):
        """The IPv6 VIP of a dual-stack lab (``fd00::10:0:0:100``), else None."""
        return ipv6_of(self.vip) if self.ipv6 else None

    def ip6(self, name):
        """Host ``name``'s IPv6 address in a dual-stack lab (:func:`ipv6_of` of
        its IPv4 address); LabError in an IPv4-only lab."""
        if not self.ipv6:
            raise LabError(f"lab {self.name} is IPv4 only: host {name} has no IPv6 "
                           "address (start the lab with ipv6=True)")
        return ipv6_of(self.ip(name))

    def lvsadm_commands(self, ipv6=False):
        """The topology's lvsadm commands, or (``ipv6``) their IPv6 twin
        (:func:`ipv6_lvsadm`; LabError in an IPv4-only lab)."""
        if not ipv6:
            return list(self.topology["lvsadm"])
        if not self.ipv6:
            raise LabError(f"lab {self.name} is IPv4 only: no IPv6 twin of its lvsadm "
                           "commands (start the lab with ipv6=True)")
        return ipv6_lvsadm(self.topology)

    def mac(self, name):
        return self.spec(name)["mac"]

    def server_by_ip(self, ip):
        """The name of the real server with address ``ip`` (its IPv6 address
        too, in a dual-stack lab)."""
        for spec in self.topology["servers"]:
            if spec["ip"] == ip or (self.ipv6 and ipv6_of(spec["ip"]) == ip):
                return spec["name"]
        raise LabError(f"lab {self.name}: no real server {ip}")
