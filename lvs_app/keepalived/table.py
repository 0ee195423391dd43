"""A parsed virtual_server -> lvs_app services, real servers and health specifications.

Each ``virtual_server`` block becomes one lvs_app service per address it
names (one for ``IP PORT`` or ``fwmark N``, one per member address and mark
for ``group NAME``), with the same scheduler, persistence and real servers.
Every service and server goes through :class:`lvs_app.model.ServiceTable`,
so a value the model refuses is refused with the model's message, prefixed
with the file and the line that set it.

keepalived's own defaults apply, not ipvsadm's: the forwarding method is NAT
(``masq``) unless ``lvs_method``/``lb_kind`` says DR or TUN; a virtual server
with no ``protocol`` is UDP; ``persistence_timeout`` alone is 360 s and
``persistence_granularity`` alone makes a service persistent for 360 s; a
real server without a port has the service's.

Where keepalived 2.2.7 accepts a file and corrects it with a logged message,
lvs_app makes the same correction and returns the message as a warning, so
the file means the same to both: no protocol (UDP), port 0 without
persistence (made persistent), a DR/TUN real server on another port (the
service port), a port on a DR/TUN server of a fwmark service (dropped), a
duplicated real server (the second is dropped), a real or sorry server of
the other address family (dropped unless tunnelled), ``ops`` without UDP,
``sh-*``/``mh-*`` flags without their scheduler, a virtual server with no
real servers (dropped), a quorum above the total weight or a hysteresis not
below the quorum (lowered).

Where lvs_app differs: weights are 0..65535 (ipvsadm's range; keepalived
allows up to 2^31-1); ``lvs_method TUN`` is a VXLAN tunnel and an explicit
keepalived tunnel type (ipip, gue, gre) is refused with the model's message;
``fwmark N`` needs the mark's matches defined in lvs_app (``lvsadm
--add-mark``), since no iptables marks packets for the switch: the caller
passes the defined marks, and an undefined mark is the model's error.

Stdlib only (plus the model).
"""

import ipaddress
from dataclasses import dataclass, field

from lvs_app.errors import LvsError
from lvs_app.keepalived.checks import RealServerHealth, SorryServer, VirtualServerHealth
from lvs_app.keepalived.syntax import ConfigError
from lvs_app.model import DEFAULT_PERSISTENCE, TUNNEL_TYPES, ServiceTable, service_key

KEEPALIVED_DEFAULT_METHOD = "masq"


@dataclass
class ServerEntry:
    """One real server as the table gets it (``options`` are add_server's keywords)."""

    address: object
    port: int
    options: dict
    origin: object


@dataclass
class ServiceEntry:
    """One virtual service as the table gets it (``options`` are add_service's keywords)."""

    key: object
    options: dict
    servers: list
    origin: object


@dataclass
class RealServerDraft:
    """A real_server block as written (settings: keyword -> (value, origin))."""

    address: object
    port: int                      # None when not written
    origin: object
    where: str                     # "virtual_server ...: real_server ..." for messages
    settings: dict = field(default_factory=dict)
    timing: dict = field(default_factory=dict)     # delay_loop, retry ... as written
    drafts: list = field(default_factory=list)     # checks.CheckerDraft


@dataclass
class VirtualServerDraft:
    """A virtual_server block as written.

    ``members``: ("ip", [addresses], port, origin) and ("fwmark", mark,
    family or None, origin) entries; ``flags``: [(flag, origin)].
    """

    stmt: object
    where: str
    members: list
    settings: dict = field(default_factory=dict)
    timing: dict = field(default_factory=dict)
    flags: list = field(default_factory=list)
    servers: list = field(default_factory=list)

    @property
    def origin(self):
        return self.stmt.origin

    def get(self, name, default=None):
        return self.settings[name][0] if name in self.settings else default

    def origin_of(self, *names):
        return next((self.settings[n][1] for n in names if n in self.settings), self.origin)

    @property
    def method(self):
        """The virtual server's lvs_method/lb_kind options, or None."""
        return self.get("lvs_method", self.get("lb_kind"))


def _dotted_mask(text):
    """keepalived's IPv4 granularity: a dotted mask whose ones are contiguous."""
    try:
        inverse = ~int(ipaddress.IPv4Address(text)) & 0xFFFFFFFF
    except ValueError:
        return False
    return inverse & (inverse + 1) == 0


def _values(options):
    return {name: value for name, (value, _) in options.items()}


class TableBuilder:
    """Adds parsed virtual servers to a new ServiceTable; keeps the entries and health specs."""

    def __init__(self, report, marks=None):
        self.report = report
        self.table = ServiceTable()
        self.table.marks.update(marks or {})
        self.services, self.health = [], []

    def warn(self, origin, message):
        self.report.warn(origin, message)

    def located(self, attempt, options, origin):
        """``attempt(table, kwargs)`` on the table; a refusal names the line that caused it.

        ``options`` maps each keyword to (value, origin).  On a refusal the
        options are tried again on a scratch table in the order of their lines;
        the first line whose option makes the model refuse is the one named.
        """
        try:
            return attempt(self.table, _values(options))
        except LvsError as err:
            ordered = sorted(options.items(), key=lambda item: item[1][1].line)
            for n in range(len(ordered) + 1):
                scratch = ServiceTable()
                scratch.marks = self.table.marks
                try:
                    attempt(scratch, _values(dict(ordered[:n])))
                except LvsError as first:
                    raise ConfigError(first.message, ordered[n - 1][1][1] if n else origin) \
                        from None
            raise ConfigError(err.message, origin) from None

    def set_timeouts(self, values, origin):
        self.located(lambda table, kw: table.set_timeouts(**kw),
                     {name: (value, origin) for name, value in values.items()}, origin)

    # -- one virtual_server ----------------------------------------------
    def add(self, vs):
        """Add a :class:`lvs_app.keepalived.sections.VirtualServerDraft`."""
        addresses = [m for m in vs.members if m[0] == "ip"]
        protocol = vs.get("protocol")
        if addresses and protocol is None:
            self.warn(vs.origin, f"{vs.where}: no protocol set - UDP, as keepalived defaults")
            protocol = "udp"
        elif not addresses and protocol:
            self.warn(vs.origin_of("protocol"), f"{vs.where}: protocol ignored for a fwmark "
                      "service")
        family = self.family(vs, addresses)
        options = self.service_options(vs, addresses, protocol, family)
        keys = []
        for member in vs.members:
            if member[0] == "fwmark":
                keys.append(service_key("fwmark", fwmark=member[1], af=member[2] or family))
            else:
                keys += [service_key(protocol, address, member[2]) for address in member[1]]
        if not keys:
            return                      # an empty group: reported where it is defined
        servers = self.usable_servers(vs, family)
        if not servers:
            self.warn(vs.origin, f"{vs.where} has no real servers - ignored, as keepalived does")
            return
        for key in keys:
            self.located(lambda table, kw, key=key: table.add_service(key, **kw), options,
                         vs.origin)
            self.services.append(ServiceEntry(key, _values(options), [], vs.origin))
            for server, method in servers:
                self.add_server(key, options, server, method, vs.settings.get("weight"))
        self.health.append(self.vs_health(vs, keys, servers, family))

    def service_options(self, vs, addresses, protocol, family):
        """The model's service keywords, each with the origin of the line that set it."""
        options = {"scheduler": (vs.get("lvs_sched", vs.get("lb_algo", "wlc")),
                                 vs.origin_of("lvs_sched", "lb_algo"))}
        if "persistence_timeout" in vs.settings or "persistence_granularity" in vs.settings:
            at = vs.origin_of("persistence_timeout", "persistence_granularity")
            options["persistent"] = (True, at)
            options["timeout"] = (vs.get("persistence_timeout", DEFAULT_PERSISTENCE), at)
        elif any(m[2] == 0 for m in addresses):
            self.warn(vs.origin, f"{vs.where}: port 0 is only valid for a persistent service "
                      f"- made persistent ({DEFAULT_PERSISTENCE} s), as keepalived does")
            options["persistent"] = (True, vs.origin)
            options["timeout"] = (DEFAULT_PERSISTENCE, vs.origin)
        granularity = vs.get("persistence_granularity")
        if granularity is not None:
            at = vs.origin_of("persistence_granularity")
            if family == 4 and not _dotted_mask(granularity):
                raise ConfigError(f"{vs.where}: persistence_granularity '{granularity}' must "
                                  "be a contiguous dotted netmask such as 255.255.255.0", at)
            options["netmask"] = (granularity, at)
        kept = []
        for flag, at in vs.flags:
            owner = flag.split("-")[0]
            if owner in ("sh", "mh") and options["scheduler"][0] != owner:
                self.warn(at, f"{vs.where}: {flag} only applies to the {owner} scheduler "
                          "- ignored")
            else:
                kept.append((flag, at))
        if kept:
            options["sched_flags"] = ([flag for flag, _ in kept], kept[0][1])
        if vs.get("ops"):
            if addresses and protocol != "udp":
                self.warn(vs.origin_of("ops"), f"{vs.where}: one packet scheduling requires "
                          "UDP - ignored")
            else:
                options["ops"] = (True, vs.origin_of("ops"))
        if "persistence_engine" in vs.settings:
            options["pe"] = vs.settings["persistence_engine"]
        if vs.get("ha_suspend"):
            self.warn(vs.origin_of("ha_suspend"), f"{vs.where}: ha_suspend ignored (lvs_app "
                      "holds no VIP on this host to watch)")
        return options

    @staticmethod
    def family(vs, addresses):
        """The address family of a virtual server (keepalived's rule for fwmark ones)."""
        if addresses:
            return addresses[0][1][0].version
        if vs.get("ip_family"):
            return vs.get("ip_family")
        granularity = vs.get("persistence_granularity")
        if granularity:
            return 4 if "." in granularity else 6
        own = vs.method or {}
        for server in vs.servers:
            if server.settings.get("lvs_method", (own,))[0].get("method") != "tunnel":
                return server.address.version
        versions = {server.address.version for server in vs.servers}
        return versions.pop() if len(versions) == 1 else 4

    def usable_servers(self, vs, family):
        """[(server, (method options, origin))] after keepalived's corrections."""
        usable, seen = [], set()
        for server in vs.servers:
            ident = (server.address, server.port)
            if ident in seen:
                self.warn(server.origin, f"{server.where} is duplicated - ignored, as "
                          "keepalived does")
                continue
            seen.add(ident)
            chosen = server.settings.get("lvs_method")
            if chosen is None and vs.method is None:
                self.warn(server.origin, f"{server.where}: no lvs_method - NAT, keepalived's "
                          "default")
                chosen = ({"method": KEEPALIVED_DEFAULT_METHOD}, server.origin)
            elif chosen is None:
                chosen = (vs.method, vs.origin_of("lvs_method", "lb_kind"))
            if chosen[0]["method"] != "tunnel" and server.address.version != family:
                self.warn(server.origin, f"{server.where}: address family differs from the "
                          "virtual server's - ignored, as keepalived does")
                continue
            usable.append((server, chosen))
        return usable

    def server_port(self, key, server, method):
        """keepalived's port rule: NAT keeps its port; DR/TUN use the service's (0 for fwmark)."""
        if method == "masq":
            return server.port if server.port is not None else key.port
        if server.port not in (None, key.port):
            self.warn(server.origin, f"{server.where}: {method} server port "
                      + ("ignored for a fwmark service" if key.is_fwmark else
                         f"differs from the service port {key.port} - the service port is used"))
        return key.port

    def add_server(self, key, service_options, server, chosen, vs_weight):
        method_options, method_at = chosen
        options = {name: (value, method_at) for name, value in method_options.items()}
        for name, model_name in (("weight", "weight"), ("uthreshold", "u_threshold"),
                                 ("lthreshold", "l_threshold")):
            value = server.settings.get(name, vs_weight if name == "weight" else None)
            if value is not None:
                options[model_name] = value
        port = self.server_port(key, server, method_options["method"])
        service_kwargs = _values(service_options)

        def attempt(table, kw):
            if key not in table.services:
                table.add_service(key, **service_kwargs)
            table.add_server(key, server.address, port, **kw)
        self.located(attempt, options, server.origin)
        self.services[-1].servers.append(
            ServerEntry(server.address, port, _values(options), server.origin))

    # -- health ---------------------------------------------------------------
    def vs_health(self, vs, keys, servers, family):
        health = VirtualServerHealth(
            " ".join(vs.stmt.args), str(vs.origin), tuple(keys), quorum=vs.get("quorum", 1),
            hysteresis=vs.get("hysteresis", 0), quorum_up=vs.get("quorum_up"),
            quorum_down=vs.get("quorum_down"), alpha=vs.get("alpha", False),
            omega=vs.get("omega", False), inhibit_on_failure=vs.get("inhibit_on_failure", False),
            virtualhost=vs.get("virtualhost"))
        vs_settings = dict(vs.timing, alpha=health.alpha)
        for server, (method_options, _) in servers:
            settings = _values(server.settings)
            rs = RealServerHealth(
                server.address, self.server_port(keys[0], server, method_options["method"]),
                str(server.origin), weight=settings.get("weight", vs.get("weight", 1)),
                method=method_options["method"],
                inhibit_on_failure=settings.get("inhibit_on_failure", health.inhibit_on_failure),
                alpha=settings.get("alpha", health.alpha), notify_up=settings.get("notify_up"),
                notify_down=settings.get("notify_down"))
            rs_settings = dict(server.timing)
            for name in ("alpha", "virtualhost"):
                if name in settings:
                    rs_settings[name] = settings[name]
            for draft in server.drafts:
                rs.checkers += draft.resolve(rs, vs_settings, rs_settings, health.virtualhost)
            for checker in rs.checkers:
                if checker.connect_port == 0:
                    self.warn(checker.origin, f"{server.where}: {checker.kind} has no port to "
                              "connect to (the real server has none); set connect_port")
            health.real_servers.append(rs)
        total = sum(rs.weight for rs in health.real_servers)
        if health.quorum > total:
            self.warn(vs.origin, f"{vs.where}: quorum {health.quorum} exceeds the total weight "
                      f"{total} of the real servers - lowered to {total}, as keepalived does")
            health.quorum = total
        if vs.get("hysteresis") is not None and health.hysteresis >= health.quorum:
            lowered = max(health.quorum - 1, 0)
            self.warn(vs.origin, f"{vs.where}: hysteresis {health.hysteresis} is not below "
                      f"quorum {health.quorum} - lowered to {lowered}, as keepalived does")
            health.hysteresis = lowered
        if vs.get("sorry_server") is not None:
            health.sorry_server = self.sorry(vs, keys[0], family)
        return health

    def sorry(self, vs, key, family):
        address, port = vs.get("sorry_server")
        origin = vs.origin_of("sorry_server")
        chosen = (vs.get("sorry_server_lvs_method") or vs.method
                  or {"method": KEEPALIVED_DEFAULT_METHOD})
        server = RealServerDraft(address, port, origin, f"{vs.where}: sorry_server {address}")
        if chosen["method"] != "tunnel" and address.version != family:
            self.warn(origin, f"{server.where}: address family differs from the virtual "
                      "server's - ignored, as keepalived does")
            return None
        if chosen.get("tun_type", "vxlan") not in TUNNEL_TYPES:
            raise ConfigError(f"{server.where}: tunnel type {chosen['tun_type']!r} is not "
                              "supported; the switch tunnels with vxlan",
                              vs.origin_of("sorry_server_lvs_method", "lvs_method", "lb_kind"))
        return SorryServer(address, self.server_port(key, server, chosen["method"]),
                           chosen["method"], bool(vs.get("sorry_server_inhibit", False)))
