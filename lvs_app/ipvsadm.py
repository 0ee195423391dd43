"""ipvsadm 1.31's command line and text formats, shared by ``lvsadm`` and the controller.

Stdlib only (plus :mod:`lvs_app.model`).  Three parts:

* :func:`parse_args` turns an ipvsadm command line into a :class:`Command`,
  enforcing ipvsadm's option table (``commands_v_options``) and its extra
  checks with ipvsadm's own messages; usage errors raise :class:`UsageError`.
* :func:`apply`, :func:`parse_rules` and :func:`restore` execute commands on a
  :class:`lvs_app.model.ServiceTable` (``ipvsadm -R`` / ``ipvsadm-restore``).
* ``format_*`` print the JSON forms of services, servers, marks and
  connections (``VirtualService.to_dict()`` ...) byte for byte as ipvsadm
  prints the kernel's table (``-L -n`` and its variants, ``-S -n``, ``-L -c -n``,
  ``--timeout``), so the CLI can format what the REST API returns.

Deliberate differences from ipvsadm, each for a reason:

* ``-E`` and ``-e`` change only the settings given on the command line (the
  REST API PATCHes); ipvsadm resets every omitted setting to its default.
* Addresses are always printed numerically, as with ``-n``: ipvsadm's reverse
  DNS lookups would make a listing slow and depend on the resolver.  The
  layout (column widths, truncation) is ipvsadm's either way.
* ``-M 24`` is a /24 prefix (the model's rule); ipvsadm would read it with
  ``inet_aton`` as the mask 0.0.0.24.
* ``--tun-type vxlan`` is the only tunnel the switch can build; ``ipip``,
  ``gue`` and ``gre`` parse as in ipvsadm and are then refused by the model.
* Firewall marks are defined here (``--add-mark``), because an OpenFlow switch
  has no ``skb->mark`` set by iptables; ``-S`` saves them before the services.
* Connection synchronisation (``--start-daemon``, ``--stop-daemon``,
  ``--daemon``) and SCTP services are refused with a clear message.
"""

import ipaddress
import re
import shlex
import socket
import struct
from dataclasses import dataclass, field

from lvs_app import __version__, model
from lvs_app.model import BadRequest, LvsError

IPVS_VERSION = model.IPVS_VERSION
CONN_TAB_SIZE = model.CONN_TAB_SIZE
MAX_TIMEOUT = model.MAX_PERSISTENCE  # 86400 * 31, ipvsadm's MAX_TIMEOUT
INT_MAX = 2 ** 31 - 1
UINT_MAX = 2 ** 32 - 1
DEF_SCHED = model.DEFAULT_SCHEDULER
PERSISTENT_TIMEOUT = model.DEFAULT_PERSISTENCE   # what a bare -p means
TUNNEL_TYPES = ("ipip", "gue", "gre", "vxlan")   # parsed; the model keeps vxlan


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
}
assert all(len(row) == len(OPTNAMES) for row in _MATRIX.values())

# The names ipvsadm's messages use for its commands.
_CMDNAMES = {"clear": "flush", "set-timeouts": "set"}

# Tunnel types x (tun-port, tun-nocsum, tun-csum, tun-remcsum), as ipvsadm;
# vxlan takes none of them (the switch's vxlan port is fixed).
_TUN_OPTS = ("tun-port", "tun-nocsum", "tun-csum", "tun-remcsum")
_TUN_MATRIX = {"ipip": "xxxx", "gue": "+111", "gre": "x11x", "vxlan": "xxxx"}

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
        opts = {"scheduler": "wlc", "sched_flags": [], "ops": False,
                "netmask": "128" if self.key().version == 6 else "255.255.255.255"}
        if self.service.get("scheduler") not in model.LEGACY_SCHEDULERS:
            opts["persistent"] = False
        opts.update(self.service)
        if not opts.get("persistent") and "persistent" in opts:
            opts.pop("timeout", None)
        return opts

    def edit_server_options(self):
        """ipvsadm -e sets every option: forwarding -g, weight 1, no thresholds."""
        opts = {"method": "droute", "weight": 1, "u_threshold": 0, "l_threshold": 0}
        opts.update(self.server)
        return opts

    def list_options(self):
        """The listing flags that are set, as a set of names."""
        return {name for name in LIST_FLAGS if getattr(self, name)}


# --------------------------------------------------------------------------
# value parsers (ipvsadm's rules)

_NUMBER = re.compile(r"[ \t\n\v\f\r]*[+-]?[0-9]+\Z")


def string_to_number(text, lo, hi):
    """ipvsadm's string_to_number: a whole base-10 number in lo..hi, else None."""
    if text is None or not _NUMBER.match(text):
        return None
    value = int(text)
    return value if lo <= value <= hi else None


def parse_timeout(text, lo, hi):
    if text is None:
        return PERSISTENT_TIMEOUT
    value = string_to_number(text, lo, hi)
    if value is None:
        raise UsageError(f"invalid timeout value `{text}' specified")
    return value


def parse_fwmark(text):
    value = string_to_number(text, 1, UINT_MAX)
    if value is None:
        raise UsageError(f"invalid fwmark value `{text}' specified")
    return value


def _inet_aton(text):
    """C inet_aton (accepts 10.1 and hex forms too); dotted quad or None."""
    try:
        return socket.inet_ntoa(socket.inet_aton(text))
    except (OSError, ValueError, UnicodeError):
        return None


def _host_to_addr(name):
    """ipvsadm's host_to_addr: an IPv4 address for a host name, or None."""
    if not name or "\0" in name:
        return None
    try:
        return socket.gethostbyname(name)
    except (OSError, UnicodeError):
        return None


def _service_to_port(name, protocol):
    if protocol not in ("tcp", "udp"):
        return None
    try:
        return socket.getservbyname(name, protocol)
    except (OSError, UnicodeError):
        return None


def parse_service(text, protocol):
    """ipvsadm's parse_service: ``host[:port]``, ``[v6addr]:port`` or a bare v6 address.

    Returns ``(address, af, port)`` with port None when omitted, or None when
    the text is not a service address.  The port may be a service name.
    """
    if text is None or text.isdigit() or text == "":
        return None
    buf, portp = text, None
    if buf.startswith("["):
        end = buf.find("]")
        if end < 0 or buf[end + 1:end + 2] != ":":
            return None
        buf, portp = buf[1:end], buf[end + 2:]
        try:
            addr = ipaddress.IPv6Address(buf)
        except ValueError:
            return None
        address, af = str(addr), 6
    else:
        try:
            address, af = str(ipaddress.IPv6Address(buf)), 6
        except ValueError:
            host, sep, port_text = buf.rpartition(":")
            if sep:
                buf, portp = host, port_text
            address = _inet_aton(buf) or _host_to_addr(buf)
            if address is None:
                return None
            af = 4
    if portp is None:
        return address, af, None
    port = string_to_number(portp, 0, 65535)
    if port is None:
        port = _service_to_port(portp, protocol)
    if port is None:
        return None
    return address, af, port


def parse_sched_flags(scheduler, text, check_scheduler=True):
    """ipvsadm's parse_sched_flags: check names against the scheduler; a list."""
    scheduler = scheduler or DEF_SCHED
    flags = [f for f in text.split(",") if f] or [""]
    for flag in flags:
        if flag in ("flag-1", "flag-2", "flag-3"):
            continue
        if flag in ("sh-fallback", "sh-port", "mh-fallback", "mh-port"):
            if check_scheduler and scheduler != flag[:2]:
                raise UsageError(f"incompatible scheduler flag `{flag}'")
            continue
        raise UsageError(f"invalid scheduler flag `{flag}'")
    return list(dict.fromkeys(flags))


# --------------------------------------------------------------------------
# the command line parser

class _PoptError(Exception):
    def __init__(self, text, reason):
        super().__init__(f"{text}: {reason}")
        self.text, self.reason = text, reason


class _Tokens:
    """popt's view of argv: options in order, positional arguments collected."""

    def __init__(self, argv):
        self.argv = list(argv)
        self.i = 0
        self.cluster = None        # (text, remaining short option letters)
        self.positional = []
        self.server_quirk = False  # -R means -r (the 1999 spelling)

    def _take_arg(self, spec, text, attached):
        if attached is not None:
            return attached
        argv = self.argv
        if self.i < len(argv):
            nxt = argv[self.i]
            if spec.arg == OPTIONAL and nxt.startswith("-"):
                return None
            self.i += 1
            return nxt
        if spec.arg == OPTIONAL:
            return None
        raise _PoptError(text, "missing argument")

    def next(self):
        """The next (spec, value, text), or None at the end of argv."""
        argv = self.argv
        if self.cluster:
            text, rest = self.cluster
            return self._short(text, rest)
        while self.i < len(argv):
            text = argv[self.i]
            self.i += 1
            if text == "--":
                self.positional.extend(argv[self.i:])
                self.i = len(argv)
                return None
            if text.startswith("--"):
                name, eq, value = text[2:].partition("=")
                spec = _LONG.get(name)
                if spec is None:
                    raise _PoptError(text, "unknown option")
                if spec.arg == NONE:
                    if eq:
                        raise _PoptError(text, "option does not take an argument")
                    return spec, None, text
                return spec, self._take_arg(spec, text, value if eq else None), text
            if text.startswith("-") and len(text) > 1:
                return self._short(text, text[1:])
            self.positional.append(text)
        return None

    def _short(self, text, letters):
        letter, rest = letters[0], letters[1:]
        self.cluster = (text, rest) if rest else None
        spec = _SHORT.get(letter)
        if letter == "R" and self.server_quirk:
            spec = _REAL_SERVER
        if spec is None:
            raise _PoptError(text, "unknown option")
        if spec.arg == NONE:
            return spec, None, text
        self.cluster = None
        if rest.startswith("="):          # popt accepts -w=3 as well as -w3
            rest = rest[1:]
        return spec, self._take_arg(spec, text, rest or None), text


def parse_args(argv, prog="lvsadm"):
    """Parse an ipvsadm 1.31 command line (without the program name) into a Command.

    Raises :class:`UsageError` with ipvsadm's message and exit code.  No
    arguments at all means ``-L`` (ipvsadm lists the table).
    """
    argv = list(argv)
    if not argv:
        return Command("list")
    return _Parser(argv, prog).parse()


def _check_matrix(row, names, given, what):
    """ipvsadm's legality matrices: '+' required, 'x' illegal, '1' at most one of."""
    last = None
    for rule, name in zip(row, names):
        if name not in given:
            if rule == "+":
                raise UsageError(f"You need to supply the '{name}' option for {what}")
            continue
        if rule == "x":
            raise UsageError(f"Illegal '{name}' option with {what}")
        if rule == "1":
            if last is not None:
                raise UsageError(f"The option '{name}' conflicts with the '{last}' "
                                 f"option in {what}")
            last = name


class _Parser:
    def __init__(self, argv, prog):
        self.tokens = _Tokens(argv)
        self.prog = prog
        self.options = set()      # option column names set so far
        self.cmd = None

    def tryhelp(self):
        return _NoCommand(f"Try `{self.prog} -h' or '{self.prog} --help' "
                          "for more information.", exit_code=255)

    def set_option(self, name):
        if name in self.options:
            raise UsageError(f"multiple '{name}' options specified")
        self.options.add(name)

    def parse(self):
        tokens = self.tokens
        try:
            first = tokens.next()
        except _PoptError:
            raise self.tryhelp() from None
        if first is None or not first[0].is_command:
            raise self.tryhelp()
        spec, value, _ = first
        cmd = self.cmd = Command(spec.key)
        if spec.key in ("help", "version"):
            return cmd
        if spec.key in ("start-daemon", "stop-daemon"):
            raise UsageError(f"--{spec.key}: connection synchronisation is not supported: "
                             "lvs_app keeps its table in the controller, not in a "
                             "kernel that a backup director could sync from")
        if spec.key in ("add-mark", "delete-mark"):
            cmd.mark = parse_fwmark(value)
        tokens.server_quirk = spec.key in SERVER_COMMANDS

        self.sched_flags_text = None
        self.netmask_text = None
        self.fwd = None
        self.dest_af = None
        self.tun_type = None
        while True:
            try:
                item = tokens.next()
            except _PoptError as err:
                raise UsageError(str(err), exit_code=255) from None
            if item is None:
                break
            self.option(*item)
        self.netmask()      # needs the final address family (-M may come before -t)

        if cmd.command == "set-timeouts":
            args = tokens.positional
            if len(args) < 3:
                raise UsageError("--set option requires 3 timeout values")
            cmd.timeouts = tuple(parse_timeout(a, 0, MAX_TIMEOUT) for a in args[:3])
            del args[:3]
        if tokens.positional:
            raise UsageError(f"unexpected argument {tokens.positional[0]}")
        if self.sched_flags_text is not None:
            # -E without -s keeps the scheduler: the model checks the flags against it.
            keep = cmd.command == "edit-service" and "scheduler" not in cmd.service
            cmd.service["sched_flags"] = parse_sched_flags(
                cmd.service.get("scheduler"), self.sched_flags_text, check_scheduler=not keep)
        self.generic_opt_check()
        self.service_checks()
        self.server_checks()
        if cmd.command == "list":
            o = self.options
            if (o & {"connection", "timeout", "daemon"} and o & {"stats", "rate", "thresholds"}
                    or o & {"timeout", "daemon"} and "persistent-conn" in o):
                raise UsageError("options conflicts in the list command")
        return cmd

    # -- one option --------------------------------------------------------
    def option(self, spec, value, text):
        cmd = self.cmd
        key = spec.key
        if spec.is_command:
            raise UsageError(f"invalid option `{text}'")
        if key in ("tcp", "udp", "sctp"):
            self.set_option("service-address")
            if key == "sctp":
                raise UsageError("--sctp-service: SCTP virtual services are not supported; "
                                 "lvs_app balances TCP and UDP (-t, -u) and firewall marks (-f)")
            cmd.protocol = key
            parsed = parse_service(value, key)
            if parsed is None:
                raise UsageError("illegal virtual server address[:port] specified")
            cmd.address, cmd.af, port = parsed
            cmd.port = port or 0
        elif key == "fwmark":
            self.set_option("service-address")
            cmd.protocol, cmd.af = "fwmark", 4
            cmd.fwmark = parse_fwmark(value)
        elif key == "scheduler":
            self.set_option("scheduler")
            cmd.service["scheduler"] = value
        elif key == "persistent":
            self.set_option("persistent")
            cmd.service["persistent"] = True
            cmd.service["timeout"] = parse_timeout(value, 1, MAX_TIMEOUT)
        elif key == "netmask":
            self.set_option("netmask")
            self.netmask_text = value
        elif key == "real-server":
            self.set_option("real-server")
            # an fwmark service looks names up as tcp, as ipvsadm does
            proto = "tcp" if cmd.protocol in (None, "fwmark") else cmd.protocol
            parsed = parse_service(value, proto)
            if parsed is None:
                raise UsageError("illegal real server address[:port] specified")
            cmd.server_address, self.dest_af, cmd.server_port = parsed
        elif key in ("masq", "tunnel", "droute"):
            self.set_option("forwarding-method")
            self.fwd = key
            cmd.server["method"] = key
        elif key in ("weight", "u-threshold", "l-threshold"):
            self.set_option(key)
            hi = 65535 if key == "weight" else INT_MAX
            number = string_to_number(value, 0, hi)
            if number is None:
                raise UsageError(f"illegal {key.replace('-', '_')} specified")
            cmd.server[key.replace("-", "_")] = number
        elif key in ("numeric", "connection", "timeout", "stats", "rate", "thresholds",
                     "persistent-conn", "nosort", "exact", "tun-info"):
            self.set_option(key)
            setattr(cmd, key.replace("-", "_"), True)
        elif key == "daemon":
            raise UsageError("--daemon: connection synchronisation is not supported: "
                             "there is no sync daemon to list")
        elif key == "sort":
            pass                      # ipvsadm: no-op for backwards compatibility
        elif key == "ipv6":
            if cmd.protocol != "fwmark":
                raise UsageError("-6 used before -f")
            cmd.af = 6
        elif key == "ops":
            self.set_option("ops")
            cmd.service["ops"] = True
        elif key == "pe":
            self.set_option("pe")
            cmd.service["pe"] = value
        elif key == "sched-flags":
            self.set_option("sched-flags")
            self.sched_flags_text = value
        elif key == "tun-type":
            self.set_option("tun-type")
            if value not in TUNNEL_TYPES:
                raise UsageError("illegal tunnel type specified")
            self.tun_type = value
            cmd.server["tun_type"] = value
        elif key == "tun-port":
            self.set_option("tun-port")
            if string_to_number(value, 1, 65535) is None:
                raise UsageError("illegal tunnel port specified")
        elif key in ("tun-nocsum", "tun-csum", "tun-remcsum"):
            self.set_option(key)
        elif key in ("mcast-interface", "syncid", "mcast-group", "mcast-port",
                     "mcast-ttl", "sync-maxlen"):
            # sync daemon options: the option table refuses them below
            self.set_option(key)
        elif key == "match":
            self.options.add("match")
            try:
                model.parse_mark_match(value)
            except LvsError as err:
                raise UsageError(err.message) from None
            cmd.matches.append(value)
        elif key == "mark-name":
            self.set_option("mark-name")
            cmd.mark_name = value
        else:                          # pragma: no cover - every spec is handled
            raise UsageError(f"invalid option `{text}'")

    # -- checks after parsing -------------------------------------------------
    def generic_opt_check(self):
        command = self.cmd.command
        _check_matrix(_MATRIX[command], OPTNAMES, self.options,
                      f"the '{_CMDNAMES.get(command, command)}' command")

    def netmask(self):
        cmd = self.cmd
        text = self.netmask_text
        if text is None:
            return
        if cmd.af == 6:
            digits = re.match(r"[ \t]*[+-]?[0-9]*", text).group()
            try:
                plen = int(digits)       # ipvsadm uses atoi()
            except ValueError:
                plen = 0
            if not 1 <= plen <= 128:
                raise UsageError("illegal ipv6 netmask specified")
            cmd.service["netmask"] = plen
            return
        stripped = text[1:] if text.startswith("/") else text
        value = text if stripped.isdigit() else (_inet_aton(text) or _host_to_addr(text))
        try:
            if value is None:
                raise BadRequest(text)
            model.parse_netmask(value, 4)
        except LvsError:
            raise UsageError("illegal virtual server persistent mask specified") from None
        cmd.service["netmask"] = value

    def service_checks(self):
        cmd = self.cmd
        if cmd.command not in ("add-service", "edit-service"):
            return
        persistent = ("persistent" in cmd.service
                      or cmd.service.get("scheduler") in model.LEGACY_SCHEDULERS)
        # -E keeps the current persistence (the model checks the result).
        if (cmd.command == "add-service" and cmd.protocol != "fwmark"
                and not cmd.port and not persistent):
            raise UsageError("Zero port specified for non-persistent service")
        if cmd.service.get("ops") and cmd.protocol not in ("fwmark", "udp"):
            raise UsageError("One-Packet Scheduling is only for UDP virtual services")

    def server_checks(self):
        cmd = self.cmd
        if cmd.command not in ("add-server", "edit-server"):
            return
        # -a defaults to -g as ipvsadm; -e without a method keeps the server's.
        fwd = self.fwd or ("droute" if cmd.command == "add-server" else None)
        if fwd is not None and self.dest_af != cmd.af and fwd != "tunnel":
            raise UsageError("Different address family is allowed only for tunneling servers")
        tun_options = [o for o in ("tun-type",) + _TUN_OPTS if o in self.options]
        if tun_options and fwd is not None and fwd != "tunnel":
            raise UsageError("Tunnel options conflict with forward method")
        tun_type = self.tun_type or "vxlan"
        _check_matrix(_TUN_MATRIX[tun_type], _TUN_OPTS, self.options,
                      f"the '{tun_type}' tunnel type")


# --------------------------------------------------------------------------
# executing commands on the table

def apply(table, command):
    """Execute a mutating Command on a model.ServiceTable; returns what the table returns."""
    c = command.command
    if c == "add-service":
        return table.add_service(command.key(), **command.service)
    if c == "edit-service":
        return table.edit_service(command.key(), **command.edit_service_options())
    if c == "delete-service":
        return table.delete_service(command.key())
    if c == "clear":
        return table.clear()
    if c == "add-server":
        return table.add_server(command.key(), command.server_address,
                                command.server_port, **command.server)
    if c == "edit-server":
        return table.edit_server(command.key(), command.server_address,
                                 command.server_port, **command.edit_server_options())
    if c == "delete-server":
        return table.delete_server(command.key(), command.server_address,
                                   command.server_port)
    if c == "zero":
        return table.zero(command.key() if command.has_service else None)
    if c == "set-timeouts":
        return table.set_timeouts(*command.timeouts)
    if c == "add-mark":
        return table.add_mark(command.mark, list(command.matches), command.mark_name or "")
    if c == "delete-mark":
        return table.delete_mark(command.mark)
    raise BadRequest(f"the '{_CMDNAMES.get(c, c)}' command does not change the table")


def parse_rules(text, prog="lvsadm"):
    """Parse ``ipvsadm -R`` input: one command per line -> list of Commands.

    A line may start with ``ipvsadm`` or ``lvsadm``; ``#`` starts a comment;
    blank lines are skipped.  Only commands that change the table are allowed.
    Errors raise :class:`UsageError` whose message starts with ``line N:``.
    """
    commands = []
    for lineno, line in enumerate(text.splitlines(), 1):
        try:
            words = shlex.split(line, comments=True)
        except ValueError as err:
            raise UsageError(f"line {lineno}: {err}") from None
        if words and (words[0] in ("ipvsadm", "lvsadm")
                      or words[0].endswith(("/ipvsadm", "/lvsadm"))):
            words = words[1:]
        if not words:
            continue
        try:
            command = parse_args(words, prog)
        except _NoCommand:
            raise UsageError(f"line {lineno}: {line.strip()!r} does not start with a "
                             "command (-A, -E, -D, -C, -a, -e, -d, -Z, --set, "
                             "--add-mark, --delete-mark)") from None
        except UsageError as err:
            raise UsageError(f"line {lineno}: {err.message}", err.exit_code) from None
        if command.command not in MUTATING_COMMANDS:
            raise UsageError(f"line {lineno}: the "
                             f"'{_CMDNAMES.get(command.command, command.command)}' "
                             "command cannot be used in rules")
        command.lineno = lineno
        commands.append(command)
    return commands


def restore(table, text, replace=False):
    """Apply rules text to a copy of ``table`` and return the copy.

    ``replace=True`` is ipvsadm-restore (the services and marks are cleared
    first); ``replace=False`` is ``ipvsadm -R`` (the rules are added).  All or
    nothing: any error raises BadRequest/Conflict/NotFound with a ``line N:``
    prefix, and ``table`` is never touched; the caller swaps the copy in.
    """
    commands = parse_rules(text)
    new = table.copy()
    if replace:
        new.clear()
        for mark in sorted(new.marks):
            new.delete_mark(mark)
    for command in commands:
        try:
            apply(new, command)
        except UsageError:
            raise
        except LvsError as err:
            raise type(err)(f"line {command.lineno}: {err.message}") from None
    return new


# --------------------------------------------------------------------------
# output formats

_AF_INET, _AF_INET6 = 2, 10
_PROTO_NUM = {"tcp": 6, "udp": 17, "fwmark": 0}


def _ntop(text):
    """glibc inet_ntop() of an address string (differs from Python for ::ffff:a.b.c.d)."""
    addr = ipaddress.ip_address(str(text).strip("[]"))
    if addr.version == 4:
        return str(addr)
    words = struct.unpack("!8H", addr.packed)
    best_base, best_len, cur_base, cur_len = -1, 0, -1, 0
    for i, word in enumerate(words):
        if word == 0:
            if cur_base == -1:
                cur_base, cur_len = i, 1
            else:
                cur_len += 1
            if cur_len > best_len:
                best_base, best_len = cur_base, cur_len
        else:
            cur_base, cur_len = -1, 0
    if best_len < 2:
        best_base = -1
    out = ""
    for i in range(8):
        if best_base != -1 and best_base <= i < best_base + best_len:
            if i == best_base:
                out += ":"
            continue
        if i:
            out += ":"
        if i == 6 and best_base == 0 and (best_len == 6 or (best_len == 5
                                                          and words[5] == 0xFFFF)):
            out += socket.inet_ntoa(addr.packed[12:])
            break
        out += f"{words[i]:x}"
    if best_base != -1 and best_base + best_len == 8:
        out += ":"
    return out


def _is_v6(text):
    return ":" in str(text)


def _addrport(address, port):
    """ipvsadm's numeric addrport_to_anyname: ``a.b.c.d:p`` / ``[v6]:p``."""
    if _is_v6(address):
        return f"[{_ntop(address)}]:{port}"
    return f"{_ntop(address)}:{port}"


def _c_int(value):
    """A C unsigned difference read back as a 32-bit int (ipvsadm's comparators)."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def _words(address):
    """The address as the four 32-bit words of union nf_inet_addr."""
    if address is None:
        return (0, 0, 0, 0)
    addr = ipaddress.ip_address(str(address).strip("[]"))
    packed = addr.packed if addr.version == 6 else addr.packed + bytes(12)
    return struct.unpack("!4I", packed)


def _cmp_addr(af6, a, b):
    wa, wb = _words(a), _words(b)
    if af6:
        r = 0
        for i in range(4):
            r = _c_int(wa[i] - wb[i])
            if r:
                break
        return r
    return _c_int(wa[0] - wb[0])


def _svc_af(svc):
    return svc.get("af") or (6 if _is_v6(svc.get("address") or "") else 4)


def _cmp_services(s1, s2):
    """libipvs ipvs_cmp_services(), wrap-around of int differences included."""
    r = _c_int((s1.get("fwmark") or 0) - (s2.get("fwmark") or 0))
    if r:
        return r
    af1 = _AF_INET6 if _svc_af(s1) == 6 else _AF_INET
    af2 = _AF_INET6 if _svc_af(s2) == 6 else _AF_INET
    if af1 != af2:
        return af1 - af2
    # the kernel does not report the protocol of an fwmark service
    p1 = 0 if s1.get("fwmark") else _PROTO_NUM.get(s1.get("protocol"), 0)
    p2 = 0 if s2.get("fwmark") else _PROTO_NUM.get(s2.get("protocol"), 0)
    if p1 != p2:
        return p1 - p2
    r = _cmp_addr(af1 == _AF_INET6, s1.get("address"), s2.get("address"))
    if r:
        return r
    return (s1.get("port") or 0) - (s2.get("port") or 0)


def _cmp_dests(d1, d2):
    """libipvs ipvs_cmp_dests()."""
    r = _cmp_addr(_is_v6(d1["address"]), d1["address"], d2["address"])
    if r:
        return r
    return (d1.get("port") or 0) - (d2.get("port") or 0)


def _msort(items, cmp):
    """glibc qsort()'s merge sort, so that an inconsistent comparator gives
    the same order as in ipvsadm (first half n/2, ties from the left)."""
    items = list(items)
    if len(items) <= 1:
        return items
    n1 = len(items) // 2
    b1, b2 = _msort(items[:n1], cmp), _msort(items[n1:], cmp)
    out, i, j = [], 0, 0
    while i < len(b1) and j < len(b2):
        if cmp(b1[i], b2[j]) <= 0:
            out.append(b1[i])
            i += 1
        else:
            out.append(b2[j])
            j += 1
    out.extend(b1[i:])
    out.extend(b2[j:])
    return out


def sort_services(services):
    """Services in ipvsadm's listing order (ipvs_cmp_services with glibc's qsort)."""
    return _msort(services, _cmp_services)


def _kernel_order(servers):
    # The kernel lists a service's servers newest first; the JSON form may carry
    # "seq" (order of addition) to reproduce that, else its own order is kept.
    if all("seq" in s for s in servers):
        return sorted(servers, key=lambda s: -s["seq"])
    return list(servers)


def sort_servers(servers, nosort=False):
    """Real servers in ipvsadm's listing order (ipvs_cmp_dests), or kernel order."""
    servers = _kernel_order(servers)
    return servers if nosort else _msort(servers, _cmp_dests)


def print_largenum(value, exact=False):
    """ipvsadm's print_largenum(): 9 columns, K/M/G/T above 1e8 unless --exact."""
    value = int(value or 0)
    if exact:
        text = str(value)
        width = 9 if len(text) <= 8 else len(text) + 1
        return text.rjust(width)
    if value < 100000000:
        return f"{value:9d}"
    if value < 1000000000:
        return f"{value // 1000:8d}K"
    if value < 100000000000:
        return f"{value // 1000000:8d}M"
    if value < 100000000000000:
        return f"{value // 1000000000:8d}G"
    return f"{value // 1000000000000:8d}T"


def _flag_bits(svc):
    bits = 0
    for name in svc.get("sched_flags") or ():
        bits |= model.SCHED_FLAG_BITS.get(name, 0)
    return bits


def _sched_flags_text(svc):
    """ipvsadm's print_sched_flags(): names follow the scheduler, not the request."""
    bits = _flag_bits(svc)
    sched = svc.get("scheduler")
    if sched == "sh":
        names = [n for b, n in ((1, "sh-fallback"), (2, "sh-port")) if bits & b]
    elif sched == "mh":
        names = [n for b, n in ((1, "mh-fallback"), (2, "mh-port")) if bits & b]
    else:
        names = [n for b, n in ((1, "flag-1"), (2, "flag-2"), (4, "flag-3")) if bits & b]
    return ",".join(names)


def _netmask_suffix(svc, word):
    """`` mask 255.255.255.0`` / `` -M 64`` when not a single address."""
    mask = svc.get("netmask")
    if mask is None:
        return ""
    mask = str(mask)
    if _svc_af(svc) == 6:
        return "" if mask == "128" else f" {word} {int(mask)}"
    if mask in ("255.255.255.255", "32"):
        return ""
    if mask.isdigit():               # a prefix length from another producer
        mask = str(ipaddress.IPv4Address(model.prefix_mask(4, int(mask))))
    return f" {word} {mask}"


def _svc_name(svc, rule=False):
    if svc.get("protocol") == "fwmark" or svc.get("fwmark"):
        v6 = _svc_af(svc) == 6
        if rule:
            return f"-f {svc['fwmark']}" + (" -6" if v6 else "")
        return f"FWM  {svc['fwmark']}" + (" IPv6" if v6 else "")
    vname = _addrport(svc["address"], svc.get("port") or 0)
    if rule:
        return f"{'-t' if svc['protocol'] == 'tcp' else '-u'} {vname}"
    name = f"{svc['protocol'].upper():<4s} {vname}"
    return name if _svc_af(svc) == 6 else name[:33]


def _tun_info(server):
    if server.get("method") != "tunnel":
        return None
    return server.get("tun_type") or "vxlan"


def _opts(opts):
    if opts is None:
        return set()
    if isinstance(opts, Command):
        return opts.list_options()
    if isinstance(opts, dict):
        return {k.replace("-", "_") for k, v in opts.items() if v}
    return {str(o).replace("-", "_") for o in opts}


def _title(o):
    if "stats" in o:
        return (f"{'Prot LocalAddress:Port':<33s} {'Conns':>8s} {'InPkts':>8s} "
                f"{'OutPkts':>8s} {'InBytes':>8s} {'OutBytes':>8s}\n"
                "  -> RemoteAddress:Port\n")
    if "rate" in o:
        return (f"{'Prot LocalAddress:Port':<33s} {'CPS':>8s} {'InPPS':>8s} "
                f"{'OutPPS':>8s} {'InBPS':>8s} {'OutBPS':>8s}\n"
                "  -> RemoteAddress:Port\n")
    if "thresholds" in o:
        return (f"{'Prot LocalAddress:Port':<33s} {'Uthreshold':<10s} {'Lthreshold':<10s} "
                f"{'ActiveConn':<10s} {'InActConn':<10s}\n"
                "  -> RemoteAddress:Port\n")
    if "persistent_conn" in o:
        return (f"{'Prot LocalAddress:Port':<33s} {'Weight':<9s} {'PersistConn':<11s} "
                f"{'ActiveConn':<10s} {'InActConn':<10s}\n"
                "  -> RemoteAddress:Port\n")
    if "tun_info" in o:
        return ("Prot LocalAddress:Port Scheduler Flags\n"
                "  -> RemoteAddress:Port           Forward TunnelInfo    Weight "
                "ActiveConn InActConn\n")
    return ("Prot LocalAddress:Port Scheduler Flags\n"
            "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n")


def _counters(block, names):
    block = block or {}
    return [int(block.get(n) or 0) for n in names]


_STATS = ("conns", "inpkts", "outpkts", "inbytes", "outbytes")
_RATES = ("cps", "inpps", "outpps", "inbps", "outbps")


def _service_lines(svc, o):
    exact = "exact" in o
    name = _svc_name(svc)
    if "stats" in o:
        line = f"{name:<33s}" + "".join(print_largenum(v, exact)
                                       for v in _counters(svc.get("stats"), _STATS))
    elif "rate" in o:
        line = f"{name:<33s}" + "".join(print_largenum(v, exact)
                                       for v in _counters(svc.get("rates"), _RATES))
    else:
        line = f"{name} {svc.get('scheduler')}"
        if _flag_bits(svc):
            line += f" ({_sched_flags_text(svc)})"
        if svc.get("persistent"):
            line += f" persistent {svc.get('timeout') or 0}"
            line += _netmask_suffix(svc, "mask")
            if svc.get("pe"):
                line += f" pe {svc['pe']}"
        if svc.get("ops"):
            line += " ops"
    lines = [line + "\n"]
    for dest in sort_servers(svc.get("servers") or [], "nosort" in o):
        dname = _addrport(dest["address"], dest.get("port") or 0)
        if not _is_v6(dest["address"]):
            dname = dname[:28]
        weight = int(dest.get("weight") or 0)
        active = int(dest.get("activeconns") or 0)
        inact = int(dest.get("inactconns") or 0)
        forward = dest.get("forward") or model.FORWARD_NAMES.get(dest.get("method"), "")
        if "stats" in o:
            row = f"  -> {dname:<28s}" + "".join(
                print_largenum(v, exact) for v in _counters(dest.get("stats"), _STATS))
        elif "rate" in o:
            cps, inpps, outpps, inbps, outbps = _counters(dest.get("rates"), _RATES)
            row = (f"  -> {dname:<28s} {cps:8d} {inpps:8d} {outpps:8d}"
                   + print_largenum(inbps, exact) + print_largenum(outbps, exact))
        elif "thresholds" in o:
            row = (f"  -> {dname:<28s} {int(dest.get('u_threshold') or 0):<10d} "
                   f"{int(dest.get('l_threshold') or 0):<10d} {active:<10d} {inact:<10d}")
        elif "persistent_conn" in o:
            row = (f"  -> {dname:<28s} {weight:<9d} {int(dest.get('persistconns') or 0):<11d} "
                   f"{active:<10d} {inact:<10d}")
        elif "tun_info" in o:
            info = _tun_info(dest) or "n/a"
            row = (f"  -> {dname:<28s} {forward:<7s} {info:<13s} {weight:<6d} "
                   f"{active:<10d} {inact:<10d}")
        else:
            row = f"  -> {dname:<28s} {forward:<7s} {weight:<6d} {active:<10d} {inact:<10d}"
        lines.append(row + "\n")
    return lines


def format_header(version=IPVS_VERSION, size=CONN_TAB_SIZE):
    return f"IP Virtual Server version {version} (size={size})\n"


def format_list(services, opts=None, header=True, version=IPVS_VERSION, size=CONN_TAB_SIZE):
    """``ipvsadm -L -n`` [--stats|--rate|--exact|--thresholds|--persistent-conn|
    --tun-info|--nosort] over service dicts.

    ``opts`` is a Command, a dict of flags or an iterable of flag names
    (``stats``, ``rate``, ``exact``, ``thresholds``, ``persistent_conn``,
    ``tun_info``, ``nosort``).  ``header=False`` is the single-service listing
    (``-L -t VIP:port``), which ipvsadm prints without the version line.
    """
    o = _opts(opts)
    out = [format_header(version, size)] if header else []
    out.append(_title(o))
    ordered = list(services) if "nosort" in o else sort_services(services)
    for svc in ordered:
        out.extend(_service_lines(svc, o))
    return "".join(out)


def _quote(word):
    # quote only what the rules splitter (shlex) would otherwise cut or drop
    return word if re.fullmatch(r"[^\s'\"#\\]+", word) else shlex.quote(word)


def format_mark_rule(mark):
    """One ``--add-mark`` line of ``-S``."""
    line = f"--add-mark {mark['mark']}"
    for match in mark.get("matches") or ():
        line += f" --match {_quote(match)}"
    if mark.get("name"):
        line += f" --mark-name {_quote(mark['name'])}"
    return line + "\n"


def format_save(services, marks=()):
    """``ipvsadm -S -n``: the mark definitions first, then the services as ipvsadm saves them.

    As ipvsadm, the thresholds (-x/-y) are not saved and ``-p`` always
    carries its timeout.
    """
    out = [format_mark_rule(m) for m in sorted(marks or (), key=lambda m: m["mark"])]
    for svc in sort_services(services):
        name = _svc_name(svc, rule=True)
        line = f"-A {name} -s {svc.get('scheduler')}"
        if svc.get("persistent"):
            line += f" -p {svc.get('timeout') or 0}"
            line += _netmask_suffix(svc, "-M")
        if svc.get("pe"):
            line += f" --pe {svc['pe']}"
        if svc.get("ops"):
            line += " -o"
        if _flag_bits(svc):
            line += f" -b {_sched_flags_text(svc)}"
        out.append(line + "\n")
        for dest in sort_servers(svc.get("servers") or []):
            dname = _addrport(dest["address"], dest.get("port") or 0)
            switch = {"masq": "-m", "tunnel": "-i"}.get(dest.get("method"), "-g")
            row = f"-a {name} -r {dname} {switch} -w {int(dest.get('weight') or 0)}"
            if dest.get("method") == "tunnel":
                row += f" --tun-type {_tun_info(dest)}"
            out.append(row + "\n")
    return "".join(out)


def format_connections(conns, persistent_conn=False):
    """``ipvsadm -L -c -n`` [--persistent-conn] over connection dicts.

    Keys: protocol ("TCP"/"UDP"/"IP"), expire (seconds), state, client, cport,
    vip, vport, server, dport, and optionally pe_name/pe_data.
    """
    out = ["IPVS connection entries\n"]
    if persistent_conn:
        out.append(f"pro expire {'state':<11s} {'source':<18s} {'virtual':<18s} "
                   f"{'destination':<18s} {'pe name':<16s} pe_data\n")
    else:
        out.append(f"pro expire {'state':<11s} {'source':<18s} {'virtual':<18s} "
                   "destination\n")
    for conn in conns:
        expire = max(int(conn.get("expire") or 0), 0)
        expire_str = f"{expire // 60:02d}:{expire % 60:02d}"
        cname = _addrport(conn["client"], conn.get("cport") or 0)
        vname = _addrport(conn["vip"], conn.get("vport") or 0)
        dname = _addrport(conn["server"], conn.get("dport") or 0)
        proto = str(conn.get("protocol") or "IP")
        state = str(conn.get("state") or "NONE")
        if persistent_conn and conn.get("pe_name") and conn.get("pe_data"):
            out.append(f"{proto:<3s} {expire_str:<6s} {state:<11s} {cname:<18s} "
                       f"{vname:<18s} {dname:<16s} {conn['pe_name']:<18s} "
                       f"{conn['pe_data']}\n")
        else:
            out.append(f"{proto:<3s} {expire_str:<6s} {state:<11s} {cname:<18s} "
                       f"{vname:<18s} {dname}\n")
    return "".join(out)


def format_timeout(timeouts):
    """``ipvsadm -L --timeout``."""
    return ("Timeout (tcp tcpfin udp): "
            f"{int(timeouts['tcp'])} {int(timeouts['tcpfin'])} {int(timeouts['udp'])}\n")


def format_marks(marks):
    """``lvsadm --list-marks`` (an lvs_app extension): each mark and its matches."""
    out = ["FWM  Name\n  -> Match\n"]
    for mark in sorted(marks or (), key=lambda m: m["mark"]):
        line = f"FWM  {mark['mark']}"
        if mark.get("name"):
            line += f" {mark['name']}"
        out.append(line + "\n")
        out.extend(f"  -> {m}\n" for m in mark.get("matches") or ())
    return "".join(out)


def format_version():
    """``lvsadm -v``."""
    return (f"lvsadm v{__version__} (ipvsadm 1.31 compatible, "
            f"IPVS v{IPVS_VERSION} over OpenFlow)\n")


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
  --help            -h        display this help message
  --version         -v        display the version

virtual-service:
  --tcp-service|-t  service-address   service-address is host[:port]
  --udp-service|-u  service-address   service-address is host[:port]
  --fwmark-service|-f fwmark          fwmark is an integer greater than zero

Options:
  --ipv6         -6                   fwmark entry uses IPv6
  --scheduler    -s scheduler         one of {'|'.join(model.SCHEDULERS)},
                                      the default scheduler is {DEF_SCHED}.
  --pe            engine              alternate persistence engine (none is supported),
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
                                      (default $LVSADM_SERVER or http://127.0.0.1:8080)
"""
