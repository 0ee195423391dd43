"""ipvsadm 1.31's command line and text formats, shared by ``lvsadm`` and the controller.

Stdlib only (plus :mod:`lvs_app.model`).  Callers use the names re-exported
here (``from lvs_app import ipvsadm``; ``ipvsadm.parse_args(...)``); the parts:

* :mod:`~lvs_app.ipvsadm.commands`: the option table, the legality matrices,
  the parsed :class:`Command`, :class:`UsageError`, the ``-h``/``-v`` text;
* :mod:`~lvs_app.ipvsadm.cmdline`: :func:`parse_args` turns an ipvsadm command
  line into a :class:`Command`, enforcing ipvsadm's option table
  (``commands_v_options``) and its extra checks with ipvsadm's own messages;
* :mod:`~lvs_app.ipvsadm.rules`: :func:`apply`, :func:`parse_rules` and
  :func:`restore` execute commands on a :class:`lvs_app.model.ServiceTable`
  (``ipvsadm -R`` / ``ipvsadm-restore``), :func:`format_save` is ``-S -n``;
* :mod:`~lvs_app.ipvsadm.formats`: ``format_*`` print the JSON forms of
  services, servers, marks and connections (``VirtualService.to_dict()`` ...)
  byte for byte as ipvsadm prints the kernel's table (``-L -n`` and its
  variants, ``-L -c -n``, ``--timeout``), so the CLI can format what the REST
  API returns.

Underscored names are private to this package: its modules share them.

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

from lvs_app.ipvsadm.cmdline import (
    parse_args, parse_fwmark, parse_sched_flags, parse_service, parse_timeout,
    string_to_number)
from lvs_app.ipvsadm.commands import (
    DEFAULT_SERVER, LIST_FLAGS, MUTATING_COMMANDS, NONE, OPTIONAL, OPTNAMES, REQUIRED,
    SERVER_COMMANDS, TUNNEL_TYPES, Command, UsageError, format_usage, format_version)
from lvs_app.ipvsadm.formats import (
    format_connections, format_header, format_health, format_list, format_marks, format_timeout,
    print_largenum, sort_servers, sort_services)
from lvs_app.ipvsadm.rules import apply, format_mark_rule, format_save, parse_rules, restore
from lvs_app.model import CONN_TAB_SIZE, IPVS_VERSION

__all__ = [
    "CONN_TAB_SIZE", "DEFAULT_SERVER", "IPVS_VERSION", "LIST_FLAGS", "MUTATING_COMMANDS",
    "NONE", "OPTIONAL", "OPTNAMES", "REQUIRED", "SERVER_COMMANDS", "TUNNEL_TYPES",
    "Command", "UsageError", "apply", "format_connections", "format_header", "format_health",
    "format_list", "format_mark_rule", "format_marks", "format_save", "format_timeout",
    "format_usage",
    "format_version", "parse_args", "parse_fwmark", "parse_rules", "parse_sched_flags",
    "parse_service", "parse_timeout", "print_largenum", "restore", "sort_servers",
    "sort_services", "string_to_number",
]
