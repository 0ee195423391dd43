"""keepalived.conf -> lvs_app's service table and health-check specifications.

A parser only: nothing here probes a server (:mod:`lvs_app.health` does)
or changes a running director.
:func:`load` (a file) and :func:`parse` (text) read the LVS part of a
keepalived 2.2 configuration (keepalived.conf(5), "LVS CONFIGURATION") and
return a :class:`KeepalivedConfig`:

* ``table``: a new :class:`lvs_app.model.ServiceTable` holding the services
  and real servers of every ``virtual_server`` (``IP PORT``, ``fwmark N``,
  ``group NAME`` expanded over its ``virtual_server_group``), the marks the
  caller passed and the ``lvs_timeouts`` of ``global_defs``;
* ``services``: the same services as :class:`ServiceEntry` objects (with the
  line that made each); :meth:`KeepalivedConfig.entries` gives them as
  ``(key, service options, [(address, port, server options)])`` in the
  model's keywords, and :meth:`KeepalivedConfig.apply` adds them to another
  table all or nothing;
* ``keys``: the services the file defines, so that the caller decides what
  wins when the ``--lvs-rules`` file names the same service;
* ``health``: per virtual_server block its quorum settings, sorry server and,
  per real server, its checkers with every option resolved
  (:mod:`lvs_app.keepalived.checks`);
* ``warnings``: what was accepted but ignored or corrected, each
  ``FILE:LINE: ...``.

A file lvs_app cannot take whole raises :class:`ConfigError` (a
:class:`lvs_app.errors.BadRequest`) whose message is ``FILE:LINE: ...``;
values the model refuses carry the model's message.

Unknown keywords: a keyword keepalived itself does not know, in a section
lvs_app reads (the top level, ``virtual_server``, ``real_server``, checkers,
``url``, ``SSL``), is an error with a "did you mean" hint, because it is a
typo that keepalived too would have skipped (``lb_algoo wrr`` leaves the
scheduler wlc).  Keywords keepalived knows but lvs_app does not use
(``smtp_alert``, ``snmp_name``, ``BFD_CHECK``, ``vrrp_instance``,
``global_defs`` settings ...) are accepted with a warning.  ``strict=False``
turns unknown keywords into warnings too, for a file written for a newer
keepalived.  The contents of ignored sections (``vrrp_*``, ``global_defs``
apart from ``lvs_timeouts`` and the warnings for ``lvs_flush``/``lvs_sync_daemon``, ``static_*``
...) are not checked.

Timers (``delay_loop``, ``connect_timeout``, ``delay_before_retry``,
``warmup``) take fractions of a second, as keepalived 2's ``<TIMER>`` does;
``misc_timeout`` is whole seconds, as in keepalived.

Groups: ``virtual_server group NAME`` makes one lvs_app service per address
and mark of the group, all with the block's settings and real servers, and
one health entry (keepalived too runs one set of checkers per group).

Firewall marks: ``virtual_server fwmark N`` becomes lvs_app's fwmark service
N, which needs the mark's matches (``lvsadm --add-mark``): pass the marks of
the table it will join (``marks=api.table.marks``).  A mark that is not
defined there is refused with the model's message.

Stdlib only (plus lvs_app's model).
"""

from dataclasses import dataclass

from lvs_app.errors import LvsError
from lvs_app.keepalived.checks import (Checker, DnsCheck, HttpCheck, MiscCheck, PingCheck,
                                       RealServerHealth, SmtpCheck, SorryServer, SslContext,
                                       TcpCheck, UdpCheck, Url, VirtualServerHealth)
from lvs_app.keepalived.sections import Reader
from lvs_app.keepalived.syntax import ConfigError, Origin, read
from lvs_app.keepalived.table import ServerEntry, ServiceEntry, TableBuilder
from lvs_app.keepalived.values import Report, Script

__all__ = [
    "Checker", "ConfigError", "DnsCheck", "HttpCheck", "KeepalivedConfig", "MiscCheck",
    "Origin", "PingCheck", "RealServerHealth", "Script", "ServerEntry", "ServiceEntry",
    "SmtpCheck", "SorryServer", "SslContext", "TcpCheck", "UdpCheck", "Url",
    "VirtualServerHealth", "load", "parse",
]


@dataclass
class KeepalivedConfig:
    """What a keepalived.conf says to lvs_app (see the module docstring)."""

    table: object                  # model.ServiceTable
    services: list                 # ServiceEntry, in file order
    health: list                   # VirtualServerHealth, one per virtual_server block
    warnings: list                 # "FILE:LINE: ..." strings
    files: list                    # every file read, the main one first
    timeouts: dict = None          # lvs_timeouts: {"tcp", "tcpfin", "udp"}, 0 = unchanged
    ssl: SslContext = None         # the SSL { } block for SSL_GET

    @property
    def keys(self):
        """The ServiceKeys the file defines, in file order."""
        return [entry.key for entry in self.services]

    def entries(self):
        """``[(key, service options, [(address, port, server options)])]`` (model keywords)."""
        return [(entry.key, dict(entry.options),
                 [(s.address, s.port, dict(s.options)) for s in entry.servers])
                for entry in self.services]

    def apply(self, table, replace=False):
        """A copy of ``table`` with these services (and timeouts) added, all or nothing.

        ``replace=True`` first removes the services of ``table`` that the file
        defines too; otherwise such a service is the model's conflict.  The
        fwmark services need their marks in ``table``.  ``table`` is never
        changed; the caller swaps the copy in.
        """
        new = table.copy()
        if replace:
            for key in self.keys:
                new.services.pop(key, None)
        if self.timeouts:
            new.set_timeouts(**self.timeouts)
        for entry in self.services:
            origin = entry.origin
            try:
                new.add_service(entry.key, **entry.options)
                for server in entry.servers:
                    origin = server.origin
                    new.add_server(entry.key, server.address, server.port, **server.options)
            except LvsError as err:
                raise ConfigError(err.message, origin) from None
        return new


def _load(marks, strict, **source):
    report = Report(strict)
    statements, files = read(warnings=report.warnings, **source)
    tables = TableBuilder(report, marks)
    reader = Reader(report, tables)
    reader.run(statements)
    return KeepalivedConfig(tables.table, tables.services, tables.health, report.warnings,
                            files, reader.timeouts, reader.ssl)


def load(path, marks=None, config_id=None, strict=True):
    """Read keepalived.conf at ``path`` (and its includes).

    ``marks``: the firewall marks fwmark services may use (``table.marks``);
    ``config_id``: keepalived's ``-i`` for ``@id`` lines (default: the host
    name up to its first dot, as keepalived); ``strict``: unknown keywords
    are errors (True) or warnings.
    """
    return _load(marks, strict, path=path, config_id=config_id)


def parse(text, name="keepalived.conf", marks=None, config_id=None, strict=True):
    """Like :func:`load` for ``text``; ``name`` names it in messages and its
    directory is where relative includes are looked for."""
    return _load(marks, strict, text=text, name=name, config_id=config_id)
