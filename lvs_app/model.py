"""The virtual-service table: what ipvsadm configures in the kernel.

Stdlib only.  Every change goes through :class:`ServiceTable`, which validates
a request completely before it touches anything, so a rejected request leaves
the table exactly as it was.  Errors are :class:`LvsError` subclasses whose
message names the object and the rule that was broken.
"""

import copy
from dataclasses import dataclass, field

from lvs_app.addresses import (PROTOCOLS, check_int, check_port, format_addr_port,  # noqa: F401
                               format_netmask, full_mask, parse_forwarding_ip, parse_ip, parse_netmask,
                               prefix_mask)
from lvs_app.errors import BadRequest, Conflict, LvsError, NotFound  # noqa: F401
from lvs_app.marks import FirewallMark, MarkMatch, parse_mark_match  # noqa: F401

# Limits and defaults from ipvsadm 1.31 and the kernel (reference/ipvs.md §3, §5).
IPVS_VERSION = "1.2.1"             # what ipvsadm prints in its header
CONN_TAB_SIZE = 4096               # 1 << conn_tab_bits, printed as "size="
DEFAULT_SCHEDULER = "wlc"
DEFAULT_PERSISTENCE = 360          # IPVS_SVC_PERSISTENT_TIMEOUT
MAX_PERSISTENCE = 86400 * 31       # MAX_TIMEOUT
MAX_WEIGHT = 65535
MAX_THRESHOLD = 2 ** 31 - 1        # ipvsadm accepts 0..INT_MAX
MAX_FWMARK = 2 ** 32 - 1
DEFAULT_TIMEOUTS = {"tcp": 900, "tcpfin": 120, "udp": 300}
SCHEDULERS = ("rr", "wrr", "lc", "wlc", "sed", "nq", "fo", "ovf", "dh", "sh",
              "mh", "lblc", "lblcr", "twos")
# 1999-era spelling from the founding document: "pcc" is a persistent service
# (today: -p with the default timeout) scheduled by rr, which is what the
# original PCC code did for the first connection of a client.
LEGACY_SCHEDULERS = {"pcc": "rr"}
PERSISTENCE_ENGINES = ("", "switch")  # --pe: "switch" carries repeat connections in the switch
SCHED_FLAGS = ("flag-1", "flag-2", "flag-3", "sh-fallback", "sh-port",
               "mh-fallback", "mh-port")
# sh-fallback/mh-fallback are SCHED1, sh-port/mh-port SCHED2: the flag bits
# are shared, the names only make sense with their scheduler.
SCHED_FLAG_BITS = {"flag-1": 1, "sh-fallback": 1, "mh-fallback": 1,
                   "flag-2": 2, "sh-port": 2, "mh-port": 2, "flag-3": 4}
FORWARDING_METHODS = ("droute", "masq", "tunnel")
DEFAULT_METHOD = "droute"          # ipvsadm's default is -g
FORWARD_NAMES = {"masq": "Masq", "droute": "Route", "tunnel": "Tunnel"}
TUNNEL_TYPES = ("vxlan",)
FTP_CONTROL, FTP_DATA = 21, 20     # ip_vs_ftp's ports; data connections use 20 or >= 1024
UNPRIVILEGED = 1024


# --------------------------------------------------------------------------
# services and real servers

@dataclass(frozen=True)
class ServiceKey:
    """What identifies a virtual service: ``tcp``/``udp`` + VIP + port, or a fwmark."""

    protocol: str            # "tcp", "udp" or "fwmark"
    address: object = None   # ipaddress object; None for fwmark
    port: int = 0
    fwmark: int = 0
    af: int = 4              # address family of a fwmark service (-6)

    @property
    def is_fwmark(self):
        return self.protocol == "fwmark"

    @property
    def version(self):
        return self.af if self.is_fwmark else self.address.version

    def __str__(self):
        if self.is_fwmark:
            return f"fwmark {self.fwmark}" + (" IPv6" if self.af == 6 else "")
        return f"{self.protocol} {format_addr_port(self.address, self.port)}"

    def to_id(self):
        """The REST path segment: ``tcp-10.0.0.1-80``, ``fwmark-1``, ``fwmark-1-6``."""
        if self.is_fwmark:
            return f"fwmark-{self.fwmark}" + ("-6" if self.af == 6 else "")
        return f"{self.protocol}-{self.address}-{self.port}"

    def sort_key(self):
        return (self.fwmark, self.version, self.protocol,
                int(self.address) if self.address is not None else 0, self.port)


def service_key(protocol, address=None, port=0, fwmark=0, af=4):
    """Build and validate a ServiceKey from plain values."""
    if protocol == "fwmark":
        check_int(fwmark, 1, MAX_FWMARK, "fwmark")
        if af not in (4, 6):
            raise BadRequest(f"fwmark {fwmark}: address family {af!r} must be 4 or 6")
        return ServiceKey("fwmark", None, 0, fwmark, af)
    if protocol not in PROTOCOLS:
        raise BadRequest(f"service protocol {protocol!r} must be tcp, udp or fwmark")
    addr = parse_forwarding_ip(address, f"service {protocol} address")
    check_port(port, f"service {protocol} {address}")
    return ServiceKey(protocol, addr, port, 0, addr.version)


def parse_service_id(text):
    """Inverse of :meth:`ServiceKey.to_id`."""
    parts = text.split("-") if isinstance(text, str) else []
    try:
        if parts and parts[0] == "fwmark" and len(parts) in (2, 3):
            af = 4 if len(parts) == 2 else int(parts[2])
            return service_key("fwmark", fwmark=int(parts[1]), af=af)
        if len(parts) == 3 and parts[0] in PROTOCOLS:
            return service_key(parts[0], parts[1], int(parts[2]))
    except ValueError:
        pass
    raise BadRequest(f"service id {text!r} must be proto-VIP-port (tcp-10.0.0.1-80) "
                     "or fwmark-N[-6]")


@dataclass
class Stats:
    conns: int = 0
    inpkts: int = 0
    outpkts: int = 0
    inbytes: int = 0
    outbytes: int = 0

    def add(self, other):
        for name in ("conns", "inpkts", "outpkts", "inbytes", "outbytes"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def to_dict(self):
        return dict(self.__dict__)


@dataclass
class Rates:
    cps: int = 0
    inpps: int = 0
    outpps: int = 0
    inbps: int = 0
    outbps: int = 0

    def to_dict(self):
        return dict(self.__dict__)


@dataclass
class RealServer:
    address: object
    port: int
    method: str = DEFAULT_METHOD
    weight: int = 1
    u_threshold: int = 0
    l_threshold: int = 0
    tun_type: str = "vxlan"
    last_weight: int = 1      # mh keeps a server's last non-zero weight
    seq: int = 0              # order of addition; the kernel lists newest first

    @property
    def forward_name(self):
        return FORWARD_NAMES[self.method]

    def __str__(self):
        return f"real server {format_addr_port(self.address, self.port)}"

    def to_dict(self, runtime=None):
        """Configuration as JSON; ``runtime`` (a dict of counters) is merged in."""
        return {"address": str(self.address), "port": self.port, "seq": self.seq,
                "method": self.method, "forward": self.forward_name,
                "weight": self.weight, "u_threshold": self.u_threshold,
                "l_threshold": self.l_threshold,
                "tun_type": self.tun_type if self.method == "tunnel" else None,
                **(runtime or {})}


@dataclass
class VirtualService:
    key: ServiceKey
    scheduler: str = DEFAULT_SCHEDULER
    persistent: bool = False
    timeout: int = 0                 # persistence timeout, seconds (0 = not persistent)
    netmask: int = 0                 # persistence granularity as an integer mask
    sched_flags: tuple = ()
    ops: bool = False
    pe: str = ""                     # persistence engine: "" or "switch" (see persistence.py)
    servers: list = field(default_factory=list)   # in order of addition

    def __post_init__(self):
        if not self.netmask:
            self.netmask = full_mask(self.key.version)

    def __str__(self):
        return f"service {self.key}"

    @property
    def sched_list(self):
        """Servers in kernel list order: the most recently added first."""
        return sorted(self.servers, key=lambda s: -s.seq)

    def find_server(self, address, port):
        for server in self.servers:
            if server.address == address and server.port == port:
                return server
        return None

    def flags_value(self):
        bits = 0
        for name in self.sched_flags:
            bits |= SCHED_FLAG_BITS[name]
        return bits

    def to_dict(self, runtime=None):
        """Configuration as JSON; ``runtime`` (a RuntimeState) adds the counters."""
        key = self.key
        return {"id": key.to_id(), "protocol": key.protocol,
                "address": str(key.address) if key.address is not None else None,
                "port": key.port, "fwmark": key.fwmark, "af": key.version,
                "scheduler": self.scheduler, "persistent": self.persistent,
                "timeout": self.timeout if self.persistent else None,
                "netmask": format_netmask(self.netmask, key.version),
                "sched_flags": list(self.sched_flags), "ops": self.ops, "pe": self.pe,
                **(runtime.service_view(self) if runtime else {}),
                "servers": [s.to_dict(runtime and runtime.server_view(self, s)) for s in sorted(
                    self.servers, key=lambda s: (int(s.address), s.port))]}


# --------------------------------------------------------------------------
# option specs: what a request may carry

SERVICE_OPTIONS = ("scheduler", "persistent", "timeout", "netmask", "sched_flags", "ops", "pe")
SERVER_OPTIONS = ("method", "weight", "u_threshold", "l_threshold", "tun_type")


def _check_known(options, allowed, what):
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise BadRequest(f"{what}: unknown option(s) {', '.join(unknown)}; "
                         f"allowed: {', '.join(allowed)}")


def _service_settings(key, options, current=None):
    """Validate service options; return the complete new settings dict."""
    what = f"service {key}"
    _check_known(options, SERVICE_OPTIONS, what)
    base = current or {"scheduler": DEFAULT_SCHEDULER, "persistent": False,
                       "timeout": 0, "netmask": full_mask(key.version),
                       "sched_flags": (), "ops": False, "pe": ""}
    new = dict(base)
    if "pe" in options:
        pe = options["pe"] or ""
        if pe not in PERSISTENCE_ENGINES:
            raise BadRequest(f"{what}: persistence engine {pe!r} is not supported; the one "
                             "engine is 'switch' (IPVS's sip needs SIP parsing the switch "
                             "cannot do)")
        new["pe"] = pe
    sched = options.get("scheduler", None)
    if sched is not None:
        if not isinstance(sched, str) or not sched:
            raise BadRequest(f"{what}: scheduler {sched!r} must be a name")
        if sched in LEGACY_SCHEDULERS:
            # "-s pcc": persistent client connection scheduling (founding document)
            new["scheduler"] = LEGACY_SCHEDULERS[sched]
            if not options.get("persistent") and not new["persistent"]:
                new["persistent"] = True
                new["timeout"] = DEFAULT_PERSISTENCE
        elif sched not in SCHEDULERS:
            raise BadRequest(f"{what}: scheduler {sched!r} is unknown; "
                             f"choose one of {', '.join(SCHEDULERS)}")
        else:
            new["scheduler"] = sched
    if "persistent" in options or "timeout" in options:
        persistent = options.get("persistent", new["persistent"] or "timeout" in options)
        if not isinstance(persistent, bool):
            raise BadRequest(f"{what}: persistent {persistent!r} must be true or false")
        timeout = options.get("timeout")
        if persistent:
            if timeout is None:
                timeout = new["timeout"] or DEFAULT_PERSISTENCE
            check_int(timeout, 1, MAX_PERSISTENCE, f"{what}: persistence timeout")
            new["persistent"], new["timeout"] = True, timeout
        else:
            if timeout not in (None, 0):
                raise BadRequest(f"{what}: persistence timeout {timeout} needs persistent")
            new["persistent"], new["timeout"] = False, 0
    if options.get("netmask") is not None:
        new["netmask"] = parse_netmask(options["netmask"], key.version)
    if "sched_flags" in options:
        flags = options["sched_flags"]
        if isinstance(flags, str):
            flags = [f for f in flags.split(",") if f]
        if not isinstance(flags, (list, tuple)):
            raise BadRequest(f"{what}: sched_flags {flags!r} must be a list of names")
        for flag in flags:
            if flag not in SCHED_FLAGS:
                raise BadRequest(f"{what}: scheduler flag {flag!r} is unknown; "
                                 f"choose from {', '.join(SCHED_FLAGS)}")
        new["sched_flags"] = tuple(dict.fromkeys(flags))
    for flag in new["sched_flags"]:
        owner = flag.split("-")[0]
        if owner in ("sh", "mh") and new["scheduler"] != owner:
            raise BadRequest(f"{what}: scheduler flag {flag} needs scheduler {owner}, "
                             f"not {new['scheduler']}")
    if "ops" in options:
        if not isinstance(options["ops"], bool):
            raise BadRequest(f"{what}: ops {options['ops']!r} must be true or false")
        new["ops"] = options["ops"]
    if new["ops"] and key.protocol == "tcp":
        raise BadRequest(f"{what}: one-packet scheduling is only for UDP and fwmark services")
    if new["pe"] == "switch":
        _check_switch_engine(key, new, what)
    if not key.is_fwmark and key.port == 0 and not new["persistent"]:
        raise BadRequest(f"{what}: port 0 is only allowed for a persistent service "
                         "(Zero port specified for non-persistent service)")
    # a netmask without persistence is kept, as ipvsadm sends it; only
    # persistence uses it
    return new


def _check_switch_engine(key, new, what):
    """``--pe switch`` carries a template's new connections in the switch: a
    persistent TCP service on one port, other than FTP's (the FTP helper
    reads the control connection in the controller)."""
    if not new["persistent"]:
        raise BadRequest(f"{what}: persistence engine switch needs a persistent service (-p)")
    if key.is_fwmark or key.protocol != "tcp":
        raise BadRequest(f"{what}: persistence engine switch is for TCP services, "
                         "not UDP or firewall-mark ones")
    if key.port in (0, FTP_CONTROL):
        raise BadRequest(f"{what}: persistence engine switch needs a service port other than "
                         f"0 and {FTP_CONTROL} (FTP's control connection goes through the "
                         "controller)")


def _server_settings(service, address, port, options, current=None):
    what = f"service {service.key}: real server {format_addr_port(address, port)}"
    _check_known(options, SERVER_OPTIONS, what)
    new = dict(current or {"method": DEFAULT_METHOD, "weight": 1,
                           "u_threshold": 0, "l_threshold": 0, "tun_type": "vxlan"})
    for name in ("method", "weight", "u_threshold", "l_threshold", "tun_type"):
        if options.get(name) is not None:
            new[name] = options[name]
    if new["method"] not in FORWARDING_METHODS:
        raise BadRequest(f"{what}: forwarding method {new['method']!r} must be one of "
                         f"{', '.join(FORWARDING_METHODS)}")
    check_int(new["weight"], 0, MAX_WEIGHT, f"{what} weight")
    check_int(new["u_threshold"], 0, MAX_THRESHOLD, f"{what} upper threshold")
    check_int(new["l_threshold"], 0, MAX_THRESHOLD, f"{what} lower threshold")
    if new["u_threshold"] and new["l_threshold"] > new["u_threshold"]:
        raise BadRequest(f"{what}: lower threshold {new['l_threshold']} must not exceed "
                         f"upper threshold {new['u_threshold']}")
    if new["tun_type"] not in TUNNEL_TYPES:
        raise BadRequest(f"{what}: tunnel type {new['tun_type']!r} is not supported; the "
                         "switch tunnels with vxlan")
    if address.version != service.key.version and new["method"] != "tunnel":
        raise BadRequest(f"{what}: a different address family is allowed only for "
                         "tunnelling servers")
    return new


# --------------------------------------------------------------------------
# the table

class ServiceTable:
    """All virtual services, firewall marks and timeouts of one director."""

    def __init__(self):
        self.services = {}                 # ServiceKey -> VirtualService
        self.marks = {}                    # mark number -> FirewallMark
        self.timeouts = dict(DEFAULT_TIMEOUTS)
        self._seq = 0

    # -- lookups -------------------------------------------------------
    def get_service(self, key):
        service = self.services.get(key)
        if service is None:
            raise NotFound(f"service {key} does not exist")
        return service

    def get_server(self, key, address, port=None):
        service = self.get_service(key)
        address = parse_forwarding_ip(address, f"service {key}: real server address")
        port = service.key.port if port is None else port
        check_port(port, f"service {key}: real server {address}")
        server = service.find_server(address, port)
        if server is None:
            raise NotFound(f"service {key}: real server "
                           f"{format_addr_port(address, port)} does not exist")
        return server

    def sorted_services(self):
        return [self.services[k] for k in sorted(self.services, key=ServiceKey.sort_key)]

    def copy(self):
        return copy.deepcopy(self)

    # -- services ------------------------------------------------------
    def add_service(self, key, **options):
        new = _service_settings(key, options)
        if key in self.services:
            raise Conflict(f"service {key} already exists")
        if key.is_fwmark and key.fwmark not in self.marks:
            raise BadRequest(f"service {key}: firewall mark {key.fwmark} is not defined; "
                             "define its matches first (lvsadm --add-mark)")
        if key.is_fwmark and self.mark_version(key.fwmark) != key.af:
            raise BadRequest(f"service {key}: firewall mark {key.fwmark} matches IPv"
                             f"{self.mark_version(key.fwmark)} addresses"
                             + ("" if key.af == 6 else "; add -6 for an IPv6 fwmark service"))
        service = VirtualService(key)
        self._apply_service(service, new)
        self.services[key] = service
        return service

    def edit_service(self, key, **options):
        service = self.get_service(key)
        new = _service_settings(key, options, self._service_settings_of(service))
        self._apply_service(service, new)
        return service

    def delete_service(self, key):
        self.get_service(key)
        return self.services.pop(key)

    def clear(self):
        self.services.clear()

    @staticmethod
    def _service_settings_of(service):
        return {"scheduler": service.scheduler, "persistent": service.persistent,
                "timeout": service.timeout, "netmask": service.netmask,
                "sched_flags": service.sched_flags, "ops": service.ops, "pe": service.pe}

    @staticmethod
    def _apply_service(service, new):
        for name, value in new.items():
            setattr(service, name, value)

    # -- real servers --------------------------------------------------
    @staticmethod
    def _server_port(service, address, port, options):
        """ipvsadm's rule: omitted port = service port; DR/TUN force it."""
        method = options.get("method") or DEFAULT_METHOD
        if port is None:
            port = service.key.port
        check_port(port, f"service {service.key}: real server {address}")
        if method != "masq" and not service.key.is_fwmark:
            port = service.key.port
        return port

    def add_server(self, key, address, port=None, **options):
        service = self.get_service(key)
        address = parse_forwarding_ip(address, f"service {key}: real server address")
        port = self._server_port(service, address, port, options)
        new = _server_settings(service, address, port, options)
        if service.find_server(address, port) is not None:
            raise Conflict(f"service {key}: real server "
                           f"{format_addr_port(address, port)} already exists")
        self._seq += 1
        server = RealServer(address, port, seq=self._seq)
        for name, value in new.items():
            setattr(server, name, value)
        server.last_weight = server.weight
        service.servers.append(server)
        return server

    def edit_server(self, key, address, port=None, **options):
        service = self.get_service(key)
        server = self.get_server(key, address, port)
        current = {n: getattr(server, n) for n in SERVER_OPTIONS}
        new = _server_settings(service, server.address, server.port, options, current)
        if (new["method"] != "masq" and not key.is_fwmark and server.port != key.port):
            raise BadRequest(f"service {key}: {server}: forwarding method {new['method']} "
                             f"needs the service port {key.port}; only masq may change it")
        for name, value in new.items():
            setattr(server, name, value)
        if server.weight:
            server.last_weight = server.weight   # kernel keeps the latest non-0 weight
        return server

    def delete_server(self, key, address, port=None):
        service = self.get_service(key)
        server = self.get_server(key, address, port)
        service.servers.remove(server)
        return server

    # -- counters and timeouts ----------------------------------------
    def zero(self, key=None):
        """ipvsadm -Z: checks that the service exists.  The counters are
        runtime state (lvs_app.state), zeroed on the "zero" change."""
        if key is not None:
            self.get_service(key)

    def set_timeouts(self, tcp=0, tcpfin=0, udp=0):
        """ipvsadm --set: 0 keeps the current value."""
        new = dict(self.timeouts)
        for name, value in (("tcp", tcp), ("tcpfin", tcpfin), ("udp", udp)):
            check_int(value, 0, 2 ** 31 - 1, f"{name} timeout")
            if value:
                new[name] = value
        self.timeouts = new
        return new

    # -- firewall marks ------------------------------------------------
    def add_mark(self, mark, matches, name=""):
        check_int(mark, 1, MAX_FWMARK, "firewall mark")
        what = f"firewall mark {mark}"
        if mark in self.marks:
            raise Conflict(f"{what} already exists")
        if not isinstance(name, str):
            raise BadRequest(f"{what}: name {name!r} must be a string")
        if not name.isprintable():
            # a line break would split its rules-file line: the next start fails
            raise BadRequest(f"{what}: name {name!r} must be printable text "
                             "(no line breaks or other control characters)")
        if not isinstance(matches, (list, tuple)) or not matches:
            raise BadRequest(f"{what} needs at least one match 'proto:VIP[:port[-port]]'")
        parsed = [m if isinstance(m, MarkMatch) else parse_mark_match(m) for m in matches]
        for i, one in enumerate(parsed):
            for other in parsed[i + 1:]:
                if one.overlaps(other):
                    raise BadRequest(f"{what}: matches {one.describe()} and "
                                     f"{other.describe()} overlap")
            for other_mark in self.marks.values():
                for other in other_mark.matches:
                    if one.overlaps(other):
                        raise Conflict(f"{what}: match {one.describe()} overlaps "
                                       f"{other.describe()} of firewall mark {other_mark.mark}")
        versions = {m.address.version for m in parsed}
        if len(versions) > 1:
            raise BadRequest(f"{what}: matches mix IPv4 and IPv6 addresses")
        self.marks[mark] = FirewallMark(mark, parsed, name)
        return self.marks[mark]

    def delete_mark(self, mark):
        if mark not in self.marks:
            raise NotFound(f"firewall mark {mark} does not exist")
        users = [str(k) for k in self.services if k.is_fwmark and k.fwmark == mark]
        if users:
            raise Conflict(f"firewall mark {mark} is used by {', '.join(users)}; "
                           "delete the service first")
        return self.marks.pop(mark)

    def mark_version(self, mark):
        return self.marks[mark].matches[0].address.version
