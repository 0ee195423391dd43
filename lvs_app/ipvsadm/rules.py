"""The rules text: ``ipvsadm -S`` out of a table, ``ipvsadm -R`` into one.

A rules file is one ipvsadm command line per line (:func:`parse_rules`);
:func:`apply` runs one parsed command on a :class:`lvs_app.model.ServiceTable`
and :func:`restore` runs a whole text on a copy, all or nothing, so that the
controller's ``--lvs-rules`` file and ``/ipvs/rules`` share one reading.
:func:`format_save` writes what :func:`restore` reads back; it lays out
names and flags with the listing's helpers (:mod:`lvs_app.ipvsadm.formats`),
as ipvsadm's ``-S`` and ``-L`` share theirs.
"""

import re
import shlex

from lvs_app.ipvsadm.cmdline import parse_args
from lvs_app.ipvsadm.commands import _CMDNAMES, MUTATING_COMMANDS, UsageError, _NoCommand
from lvs_app.ipvsadm.formats import (
    _addrport, _flag_bits, _netmask_suffix, _sched_flags_text, _svc_name, _tun_info,
    sort_servers, sort_services)
from lvs_app.model import BadRequest, LvsError


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
# ipvsadm -S

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
