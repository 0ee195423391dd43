"""What ipvsadm's command line is made of, as data: the commands and options.

* :class:`UsageError`, the error of a command line ipvsadm itself refuses;
* the option table (long and short names, arguments) and ipvsadm 1.31's
  legality matrices (``commands_v_options``, the tunnel options), which
  :mod:`lvs_app.ipvsadm.cmdline` reads a command line against;
* :class:`Command`, a parsed command line, with the REST bodies it maps to
  and ipvsadm's reset-to-default rules of ``-E``/``-e``;
* ``lvsadm -h`` and ``-v``, the text that documents the same table.

Kept apart from the parser so that the rules text and the output formats can
use a Command without the parser's machinery.
"""

from dataclasses import dataclass, field

from lvs_app import __version__, model
from lvs_app.model import BadRequest

# ``--server``'s default: the controller's REST API (``lvsadm -h`` names it).
DEFAULT_SERVER = "http://127.0.0.1:8080"


class UsageError(BadRequest):
    """A command line ipvsadm itself would refuse before talking to the kernel.

    ``exit_code`` is ipvsadm's: 2 for ``fail(2, ...)``, 255 for popt's errors
    (ipvsadm returns -1 from ``main``).  It is a :class:`BadRequest` so that
    the REST layer answers 400 with the same message.
    """

    def __init__(self, message, exit_code=2):
        super().__init__(message)
        self.exit_code = exit_code


class _NoCommand(UsageError):
    """The first option is not a command (ipvsadm's ``tryhelp_exit``)."""


# --------------------------------------------------------------------------
# the option table

# ipvsadm's option names, in the column order of commands_v_options, then the
# lvs_app extension options for firewall marks.
OPTNAMES = (
    "numeric", "connection", "service-address", "scheduler", "persistent",
    "netmask", "real-server", "forwarding-method", "weight", "u-threshold",
    "l-threshold", "mcast-interface", "timeout", "daemon", "stats", "rate",
    "thresholds", "persistent-conn", "nosort", "syncid", "exact", "ops", "pe",
    "sched-flags", "mcast-group", "mcast-port", "mcast-ttl", "sync-maxlen",
    "tun-info", "tun-type", "tun-port", "tun-nocsum", "tun-csum", "tun-remcsum",
    "match", "mark-name",
)

# '+' compulsory, 'x' illegal, '1' at most one of the '1's, ' ' optional.
# The first 34 columns are ipvsadm 1.31's table; the last two are --match and
# --mark-name.
_EXT_X = "xx"
_MATRIX = {
    "add-service":    "xx+   " + "x" * 15 + "   " + "x" * 10 + _EXT_X,
    "edit-service":   "xx+   " + "x" * 15 + "   " + "x" * 10 + _EXT_X,
    "delete-service": "xx+" + "x" * 31 + _EXT_X,
    "clear":          "x" * 34 + _EXT_X,
    "list":           " 11" + "x" * 9 + "11" + " " * 7 + "x" * 7 + " " + "x" * 5 + _EXT_X,
    "add-server":     "xx+xxx+    " + "x" * 18 + " " * 5 + _EXT_X,
    "delete-server":  "xx+xxx+" + "x" * 27 + _EXT_X,
    "edit-server":    "xx+xxx+    " + "x" * 18 + " " * 5 + _EXT_X,
    "set-timeouts":   "x" * 34 + _EXT_X,
    "restore":        "x" * 34 + _EXT_X,
    "save":           " " + "x" * 33 + _EXT_X,
    "zero":           "xx " + "x" * 31 + _EXT_X,
    "add-mark":       "x" * 34 + "+ ",
    "delete-mark":    "x" * 34 + _EXT_X,
    "list-marks":     " " + "x" * 33 + _EXT_X,
    "list-health":    " " + "x" * 33 + _EXT_X,
}
assert all(len(row) == len(OPTNAMES) for row in _MATRIX.values())

# The names ipvsadm's messages use for its commands.
_CMDNAMES = {"clear": "flush", "set-timeouts": "set"}

# Tunnel types x (tun-port, tun-nocsum, tun-csum, tun-remcsum), as ipvsadm;
# vxlan takes none of them (the switch's vxlan port is fixed).
_TUN_OPTS = ("tun-port", "tun-nocsum", "tun-csum", "tun-remcsum")
_TUN_MATRIX = {"ipip": "xxxx", "gue": "+111", "gre": "x11x", "vxlan": "xxxx"}
TUNNEL_TYPES = tuple(_TUN_MATRIX)   # parsed; the model keeps vxlan

NONE, REQUIRED, OPTIONAL = 0, 1, 2


@dataclass(frozen=True)
class _Spec:
    key: str            # command name or option key
    long: str
    short: str = ""
    arg: int = NONE
    is_command: bool = False


_SPECS = [
    _Spec("add-service", "add-service", "A", is_command=True),
    _Spec("edit-service", "edit-service", "E", is_command=True),
    _Spec("delete-service", "delete-service", "D", is_command=True),
    _Spec("clear", "clear", "C", is_command=True),
    _Spec("list", "list", "L", is_command=True),
    _Spec("list", "", "l", is_command=True),
    _Spec("zero", "zero", "Z", is_command=True),
    _Spec("add-server", "add-server", "a", is_command=True),
    _Spec("edit-server", "edit-server", "e", is_command=True),
    _Spec("delete-server", "delete-server", "d", is_command=True),
    _Spec("set-timeouts", "set", is_command=True),
    _Spec("help", "help", "h", is_command=True),
    _Spec("version", "version", "v", is_command=True),
    _Spec("restore", "restore", "R", is_command=True),
    _Spec("save", "save", "S", is_command=True),
    _Spec("start-daemon", "start-daemon", arg=REQUIRED, is_command=True),
    _Spec("stop-daemon", "stop-daemon", arg=REQUIRED, is_command=True),
    _Spec("add-mark", "add-mark", arg=REQUIRED, is_command=True),
    _Spec("delete-mark", "delete-mark", arg=REQUIRED, is_command=True),
    _Spec("list-marks", "list-marks", is_command=True),
    _Spec("list-health", "list-health", is_command=True),
    _Spec("tcp", "tcp-service", "t", REQUIRED),
    _Spec("udp", "udp-service", "u", REQUIRED),
    _Spec("sctp", "sctp-service", "", REQUIRED),
    _Spec("fwmark", "fwmark-service", "f", REQUIRED),
    _Spec("scheduler", "scheduler", "s", REQUIRED),
    _Spec("persistent", "persistent", "p", OPTIONAL),
    _Spec("netmask", "netmask", "M", REQUIRED),
    _Spec("real-server", "real-server", "r", REQUIRED),
    _Spec("masq", "masquerading", "m"),
    _Spec("tunnel", "ipip", "i"),
    _Spec("droute", "gatewaying", "g"),
    _Spec("weight", "weight", "w", REQUIRED),
    _Spec("u-threshold", "u-threshold", "x", REQUIRED),
    _Spec("l-threshold", "l-threshold", "y", REQUIRED),
    _Spec("numeric", "numeric", "n"),
    _Spec("connection", "connection", "c"),
    _Spec("mcast-interface", "mcast-interface", "", REQUIRED),
    _Spec("syncid", "syncid", "", REQUIRED),
    _Spec("timeout", "timeout"),
    _Spec("daemon", "daemon"),
    _Spec("stats", "stats"),
    _Spec("rate", "rate"),
    _Spec("thresholds", "thresholds"),
    _Spec("persistent-conn", "persistent-conn"),
    _Spec("nosort", "nosort"),
    _Spec("sort", "sort"),
    _Spec("exact", "exact", "X"),
    _Spec("ipv6", "ipv6", "6"),
    _Spec("ops", "ops", "o"),
    _Spec("pe", "pe", "", REQUIRED),
    _Spec("sched-flags", "sched-flags", "b", REQUIRED),
    _Spec("mcast-group", "mcast-group", "", REQUIRED),
    _Spec("mcast-port", "mcast-port", "", REQUIRED),
    _Spec("mcast-ttl", "mcast-ttl", "", REQUIRED),
    _Spec("sync-maxlen", "sync-maxlen", "", REQUIRED),
    _Spec("tun-info", "tun-info"),
    _Spec("tun-type", "tun-type", "", REQUIRED),
    _Spec("tun-port", "tun-port", "", REQUIRED),
    _Spec("tun-nocsum", "tun-nocsum"),
    _Spec("tun-csum", "tun-csum"),
    _Spec("tun-remcsum", "tun-remcsum"),
    _Spec("match", "match", "", REQUIRED),
    _Spec("mark-name", "mark-name", "", REQUIRED),
]
_LONG = {s.long: s for s in _SPECS if s.long}
_SHORT = {s.short: s for s in _SPECS if s.short}
_REAL_SERVER = _LONG["real-server"]

SERVER_COMMANDS = ("add-server", "edit-server", "delete-server")
MUTATING_COMMANDS = ("add-service", "edit-service", "delete-service", "clear",
                     "add-server", "edit-server", "delete-server", "zero",
                     "set-timeouts", "add-mark", "delete-mark")
LIST_FLAGS = ("numeric", "connection", "stats", "rate", "exact", "thresholds",
              "persistent_conn", "tun_info", "timeout", "nosort")


# --------------------------------------------------------------------------
# the parsed command

@dataclass
class Command:
    """One ipvsadm command line, parsed and checked.

    ``service`` and ``server`` hold only the options the user gave, with the
    model's keys, so that an edit keeps every other setting.
    """

    command: str
    protocol: str = None          # "tcp", "udp", "fwmark"; None = no service given
    address: str = None
    port: int = 0
    fwmark: int = 0
    af: int = 4
    service: dict = field(default_factory=dict)
    server_address: str = None
    server_port: int = None       # None: -r without a port (= the service port)
    server: dict = field(default_factory=dict)
    numeric: bool = False
    connection: bool = False
    stats: bool = False
    rate: bool = False
    exact: bool = False
    thresholds: bool = False
    persistent_conn: bool = False
    tun_info: bool = False
    timeout: bool = False
    nosort: bool = False
    timeouts: tuple = None        # (tcp, tcpfin, udp) for --set; 0 keeps a value
    mark: int = 0
    matches: list = field(default_factory=list)
    mark_name: str = None
    lineno: int = None            # set by parse_rules

    @property
    def has_service(self):
        return self.protocol is not None

    def key(self):
        """The model's ServiceKey of the virtual service given."""
        if self.protocol == "fwmark":
            return model.service_key("fwmark", fwmark=self.fwmark, af=self.af)
        return model.service_key(self.protocol, self.address, self.port)

    def service_id(self):
        """The REST path segment of the service (``tcp-10.0.0.1-80``)."""
        return self.key().to_id()

    def server_id(self):
        """The REST path segment of the real server (``10.0.0.2-80`` or ``10.0.0.2``)."""
        if self.server_port is None:
            return self.server_address
        return f"{self.server_address}-{self.server_port}"

    def service_body(self):
        """The JSON body of ``POST /ipvs/services``."""
        if self.protocol == "fwmark":
            body = {"protocol": "fwmark", "fwmark": self.fwmark, "af": self.af}
        else:
            body = {"protocol": self.protocol, "address": self.address, "port": self.port}
        body.update(self.service)
        return body

    def server_body(self):
        """The JSON body of ``POST /ipvs/services/{sid}/servers``."""
        body = {"address": self.server_address, "port": self.server_port}
        body.update(self.server)
        return body

    def edit_service_options(self):
        """ipvsadm -E sets every option: what is omitted returns to its default.

        (So ``-E -t VIP:80 -s rr`` turns persistence off, as with ipvsadm.)
        """
        opts = {"scheduler": model.DEFAULT_SCHEDULER, "sched_flags": [], "ops": False, "pe": "",
                "netmask": "128" if self.key().version == 6 else "255.255.255.255"}
        if self.service.get("scheduler") not in model.LEGACY_SCHEDULERS:
            opts["persistent"] = False
        opts.update(self.service)
        if not opts.get("persistent") and "persistent" in opts:
            opts.pop("timeout", None)
        return opts

    def edit_server_options(self):
        """ipvsadm -e sets every option: forwarding -g, weight 1, no thresholds."""
        opts = {"method": model.DEFAULT_METHOD, "weight": 1, "u_threshold": 0,
                "l_threshold": 0}
        opts.update(self.server)
        return opts

    def list_options(self):
        """The listing flags that are set, as a set of names."""
        return {name for name in LIST_FLAGS if getattr(self, name)}


# --------------------------------------------------------------------------
# help and version

def format_version():
    """``lvsadm -v``."""
    return (f"lvsadm v{__version__} (ipvsadm 1.31 compatible, "
            f"IPVS v{model.IPVS_VERSION} over OpenFlow)\n")


def format_usage(prog="lvsadm"):
    """``lvsadm -h``: ipvsadm's usage text, naming lvsadm and its extensions."""
    p = prog
    return format_version() + f"""Usage:
  {p} -A|E virtual-service [-s scheduler] [-p [timeout]] [-M netmask] [--pe persistence_engine] [-b sched-flags]
  {p} -D virtual-service
  {p} -C
  {p} -R
  {p} -S [-n]
  {p} -a|e virtual-service -r server-address [options]
  {p} -d virtual-service -r server-address
  {p} -L|l [virtual-service] [options]
  {p} -Z [virtual-service]
  {p} --set tcp tcpfin udp
  {p} --add-mark fwmark --match proto:VIP[:port[-port]] [--match ...] [--mark-name name]
  {p} --delete-mark fwmark
  {p} --list-marks
  {p} --list-health
  {p} -h

Commands:
Either long or short options are allowed.
  --add-service     -A        add virtual service with options
  --edit-service    -E        edit virtual service with options
  --delete-service  -D        delete virtual service
  --clear           -C        clear the whole table
  --restore         -R        restore rules from stdin
  --save            -S        save rules to stdout
  --add-server      -a        add real server with options
  --edit-server     -e        edit real server with options
  --delete-server   -d        delete real server
  --list            -L|-l     list the table
  --zero            -Z        zero counters in a service or all services
  --set tcp tcpfin udp        set connection timeout values
  --add-mark fwmark           define a firewall mark by its matches
  --delete-mark fwmark        delete a firewall mark
  --list-marks                list the firewall marks
  --list-health               list the health checks' state (keepalived's checkers)
  --help            -h        display this help message
  --version         -v        display the version

virtual-service:
  --tcp-service|-t  service-address   service-address is host[:port]
  --udp-service|-u  service-address   service-address is host[:port]
  --fwmark-service|-f fwmark          fwmark is an integer greater than zero

Options:
  --ipv6         -6                   fwmark entry uses IPv6
  --scheduler    -s scheduler         one of {'|'.join(model.SCHEDULERS)},
                                      the default scheduler is {model.DEFAULT_SCHEDULER}.
  --pe            engine              alternate persistence engine: switch (a template's
                                      new connections stay in the switch),
                                      not set by default.
  --persistent   -p [timeout]         persistent service
  --netmask      -M netmask           persistent granularity mask
  --real-server  -r server-address    server-address is host (and port)
  --gatewaying   -g                   gatewaying (direct routing) (default)
  --ipip         -i                   encapsulation (tunneling)
  --masquerading -m                   masquerading (NAT)
  --tun-type      type                vxlan (the only tunnel type the switch builds)
  --weight       -w weight            capacity of real server
  --u-threshold  -x uthreshold        upper threshold of connections
  --l-threshold  -y lthreshold        lower threshold of connections
  --connection   -c                   output of current IPVS connections
  --timeout                           output of timeout (tcp tcpfin udp)
  --stats                             output of statistics information
  --rate                              output of rate information
  --exact                             expand numbers (display exact values)
  --thresholds                        output of thresholds information
  --persistent-conn                   output of persistent connection info
  --tun-info                          output of tunnel information
  --nosort                            disable sorting output of service/server entries
  --sort                              does nothing, for backwards compatibility
  --ops          -o                   one-packet scheduling
  --numeric      -n                   numeric output of addresses and ports
  --sched-flags  -b flags             scheduler flags (comma-separated)
  --match        proto:VIP[:port[-port]]  what a firewall mark covers (tcp or udp)
  --mark-name    name                 a name for a firewall mark

lvsadm Options:
  --server       URL                  the lvs_app controller's REST API
                                      (default $LVSADM_SERVER or {DEFAULT_SERVER})
  --token-file   FILE                 the REST API's bearer token (default $LVSADM_TOKEN)
"""
