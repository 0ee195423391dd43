"""Reading an ipvsadm 1.31 command line into a :class:`Command`.

popt's view of argv (option clusters, ``--opt=value``, optional arguments),
ipvsadm's value parsers (``string_to_number``, ``parse_service``, ...), and
its checks after parsing: the legality matrices of
:mod:`lvs_app.ipvsadm.commands` and the extra rules, each with ipvsadm's own
message and exit code.  Nothing here talks to a table or a controller.
"""

import ipaddress
import re
import socket

from lvs_app import model
from lvs_app.ipvsadm.commands import (
    _CMDNAMES, _LONG, _MATRIX, _SHORT, _TUN_MATRIX, _TUN_OPTS, NONE, OPTIONAL, OPTNAMES,
    SERVER_COMMANDS, TUNNEL_TYPES, Command, UsageError, _NoCommand)
from lvs_app.model import BadRequest, LvsError

_REAL_SERVER = _LONG["real-server"]


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
        return model.DEFAULT_PERSISTENCE      # what a bare -p means
    value = string_to_number(text, lo, hi)
    if value is None:
        raise UsageError(f"invalid timeout value `{text}' specified")
    return value


def parse_fwmark(text):
    value = string_to_number(text, 1, model.MAX_FWMARK)
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
    scheduler = scheduler or model.DEFAULT_SCHEDULER
    flags = [f for f in text.split(",") if f] or [""]
    for flag in flags:
        if flag not in model.SCHED_FLAGS:
            raise UsageError(f"invalid scheduler flag `{flag}'")
        # sh-* and mh-* belong to their scheduler; flag-N to any
        if (flag.startswith(("sh-", "mh-")) and check_scheduler
                and scheduler != flag[:2]):
            raise UsageError(f"incompatible scheduler flag `{flag}'")
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
            cmd.timeouts = tuple(parse_timeout(a, 0, model.MAX_PERSISTENCE) for a in args[:3])
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
            cmd.service["timeout"] = parse_timeout(value, 1, model.MAX_PERSISTENCE)
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
            hi = model.MAX_WEIGHT if key == "weight" else model.MAX_THRESHOLD
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
        fwd = self.fwd or (model.DEFAULT_METHOD if cmd.command == "add-server" else None)
        if fwd is not None and self.dest_af != cmd.af and fwd != "tunnel":
            raise UsageError("Different address family is allowed only for tunneling servers")
        tun_options = [o for o in ("tun-type",) + _TUN_OPTS if o in self.options]
        if tun_options and fwd is not None and fwd != "tunnel":
            raise UsageError("Tunnel options conflict with forward method")
        tun_type = self.tun_type or "vxlan"
        _check_matrix(_TUN_MATRIX[tun_type], _TUN_OPTS, self.options,
                      f"the '{tun_type}' tunnel type")
