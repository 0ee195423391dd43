"""The arguments of one keepalived statement: counts, numbers, timers, addresses.

keepalived.conf(5) "PARAMETER SYNTAX": a ``<BOOL>`` is on|off|true|false|yes|no,
a ``<TIMER>`` is seconds with an optional fraction (resolution a microsecond).
keepalived logs a bad value and goes on without it; lvs_app refuses the file,
naming the line, because the line was meant to say something and did not.

Stdlib only.
"""

import difflib
import ipaddress
import re
from dataclasses import dataclass

from lvs_app.keepalived.syntax import ConfigError

BOOLS = {"on": True, "yes": True, "true": True, "off": False, "no": False, "false": False}
_TIMER = re.compile(r"(\d+(\.\d*)?|\.\d+)")
MAX_TIMER = 2 ** 32 - 1          # seconds; keepalived keeps timers in unsigned microseconds
MAX_INT = 2 ** 31 - 1
METHODS = {"NAT": "masq", "DR": "droute", "TUN": "tunnel"}
TUNNEL_CSUM = ("nocsum", "csum", "remcsum")


@dataclass(frozen=True)
class Script:
    """A script keepalived would run: its argv, and the user/group to run it as."""

    argv: tuple
    user: str = None
    group: str = None

    def __str__(self):
        return " ".join(self.argv)


def split_command(text):
    """A script's command line: words split on unquoted blanks, ``'...'``/``"..."`` keep blanks.

    This is keepalived's rule for script strings ("unquoted spaces will
    separate the parameters ... enclosed in single quotes"); there is no
    backslash processing here, the reading of the quoted string did that.
    """
    words, word, quote = [], None, None
    for c in text:
        if quote:
            if c == quote:
                quote = None
            else:
                word += c
        elif c in "'\"":
            quote, word = c, word or ""
        elif c.isspace():
            if word is not None:
                words.append(word)
            word = None
        else:
            word = (word or "") + c
    if quote:
        raise ValueError(f"unterminated {quote} in {text!r}")
    if word is not None:
        words.append(word)
    return words


def suggest(word, known):
    """`` (did you mean 'x'?)`` for a close known keyword, else ``""``."""
    close = difflib.get_close_matches(word, sorted(known), n=1, cutoff=0.75)
    return f"; did you mean '{close[0]}'?" if close else ""


class Report:
    """Warnings, and the policy for unknown keywords (an error, or a warning if not strict)."""

    def __init__(self, strict=True):
        self.strict = strict
        self.warnings = []

    def warn(self, origin, message):
        text = f"{origin}: {message}"
        if text not in self.warnings:
            self.warnings.append(text)

    def unknown(self, stmt, where, known):
        message = f"unknown keyword '{stmt.keyword}' in {where}{suggest(stmt.keyword, known)}"
        if self.strict:
            raise ConfigError(message, stmt.origin)
        self.warn(stmt.origin, message + " (ignored)")


class Args:
    """The arguments of ``stmt``; errors name ``where`` (the enclosing block) and the line."""

    def __init__(self, stmt, where=""):
        self.stmt = stmt
        self.where = where
        self.keyword = stmt.keyword
        self.args = stmt.args

    def fail(self, message):
        raise ConfigError(f"{self.where}: {message}" if self.where else message,
                          self.stmt.origin)

    def count(self, lo, hi=None):
        """Check lo..hi arguments (hi None: exactly lo; -1: no upper bound)."""
        hi = lo if hi is None else hi
        n = len(self.args)
        if n < lo:
            need = ("a value" if hi == 1 else "an argument") if lo == 1 else \
                f"at least {lo} arguments"
            self.fail(f"{self.keyword} needs {need}")
        if hi >= 0 and n > hi:
            allowed = "no arguments" if hi == 0 else f"at most {hi} argument(s)"
            self.fail(f"{self.keyword} takes {allowed}, not '{' '.join(self.args)}'")
        return self.args

    def no_block(self):
        if self.stmt.block is not None:
            self.fail(f"{self.keyword} does not take a block {{ ... }}")
        return self

    def need_block(self):
        if self.stmt.block is None:
            self.fail(f"{self.keyword} needs a block {{ ... }}")
        return self.stmt.block

    def one(self):
        return self.count(1)[0]

    # -- value parsers (``text`` is one argument) -----------------------
    def integer(self, text, lo=None, hi=None, what=None):
        what = what or self.keyword
        if not re.fullmatch(r"[+-]?\d+", text):
            self.fail(f"{what} '{text}' is not a whole number")
        value = int(text)
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            self.fail(f"{what} {value} must be {lo}..{hi}")
        return value

    def timer(self, text, positive=False):
        if not _TIMER.fullmatch(text):
            self.fail(f"{self.keyword} '{text}' is not a time in seconds (such as 3 or 1.5)")
        value = round(float(text), 6)
        if value > MAX_TIMER or (positive and value <= 0):
            low = "more than 0 and at most" if positive else "0 to"
            self.fail(f"{self.keyword} {text} must be {low} {MAX_TIMER} seconds")
        return value

    def boolean(self):
        """An optional <BOOL>: the keyword alone means true."""
        if not self.count(0, 1):
            return True
        value = BOOLS.get(self.args[0].lower())
        if value is None:
            self.fail(f"{self.keyword} '{self.args[0]}' must be one of {', '.join(BOOLS)}")
        return value

    def address(self, text, what=None):
        try:
            raw = text[1:-1] if text.startswith("[") and text.endswith("]") else text
            return ipaddress.ip_address(raw)
        except ValueError:
            self.fail(f"{what or self.keyword} '{text}' is not an IPv4 or IPv6 address")

    def port(self, text, what=None, lo=0):
        return self.integer(text, lo, 65535, f"{what or self.keyword} port")

    def script(self, allow_user=True):
        """``keyword "command args" [user [group]]`` or ``keyword command [args...]``."""
        args = self.count(1, 3 if allow_user else -1)
        try:
            argv = split_command(args[0])
            if not allow_user:
                argv += args[1:]
        except ValueError as err:
            self.fail(f"{self.keyword}: {err}")
        if not argv:
            self.fail(f"{self.keyword} needs a command")
        user = args[1] if allow_user and len(args) > 1 else None
        group = args[2] if allow_user and len(args) > 2 else None
        return Script(tuple(argv), user, group)

    def method(self):
        """``NAT|DR|TUN [type ipip|gue port N|gre] [nocsum|csum|remcsum]`` -> model options.

        keepalived spells the method in capitals and nothing else; lvs_app's
        tunnel is VXLAN, so an explicit keepalived tunnel type is passed to the
        model, which refuses it with its own message.
        """
        args = self.count(1, -1)
        method = METHODS.get(args[0])
        if method is None:
            self.fail(f"{self.keyword} '{args[0]}' must be NAT, DR or TUN")
        options = {"method": method}
        rest = list(args[1:])
        if rest and method != "tunnel":
            self.fail(f"{self.keyword} {args[0]} takes no options, not '{' '.join(rest)}'")
        if rest[:1] == ["type"]:
            if len(rest) < 2:
                self.fail(f"{self.keyword} TUN type needs ipip, gue or gre")
            options["tun_type"] = rest[1]
            rest = rest[2:]
            if rest[:1] == ["port"]:
                if len(rest) < 2:
                    self.fail(f"{self.keyword} TUN type {options['tun_type']} port needs a number")
                self.port(rest[1], "tunnel", lo=1)
                rest = rest[2:]
            if rest[:1] and rest[0] in TUNNEL_CSUM:
                rest = rest[1:]
        if rest:
            self.fail(f"{self.keyword}: unexpected '{' '.join(rest)}' (TUN takes "
                      "[type ipip|gue port N|gre] [nocsum|csum|remcsum])")
        return options


def hex_bytes(args, text, wildcard=False):
    """keepalived's free-form hex string: ``Ab12f 3 456`` -> AB 12 0F 03 45 06.

    Each blank-separated group is read two digits at a time from the left; a
    last lone digit is a byte of its own.  With ``wildcard``, ``X``/``x`` is
    a nibble not compared: returns (data, mask), mask nibble 0 where ignored.
    """
    data, mask = bytearray(), bytearray()
    digits = "0123456789abcdefABCDEF" + ("Xx" if wildcard else "")
    for group in text.split():
        if any(c not in digits for c in group):
            args.fail(f"{args.keyword} '{group}' is not hexadecimal"
                      + (" (X for an ignored digit)" if wildcard else ""))
        for i in range(0, len(group), 2):
            pair = group[i:i + 2].rjust(2, "0")
            value = int("".join("0" if c in "Xx" else c for c in pair), 16)
            data.append(value)
            mask.append((0x00 if pair[0] in "Xx" else 0xF0) | (0x00 if pair[1] in "Xx" else 0x0F))
    return bytes(data), bytes(mask)
