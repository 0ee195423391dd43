"""The director API: one object that owns the service table.

REST calls, the rules file and the data-plane director all go through here.
Every operation validates completely before it changes anything (the model
does that per operation; multi-line rules are applied to a copy that replaces
the table only when every line was accepted).  After a change the rules file
is rewritten and the listeners (the manager, which adjusts the switches) are
told what changed.  Reads merge in the runtime view (counters, connections)
that the manager gives the API: the API never reaches into the director.

Stdlib only, plus the model and the ipvsadm text module.
"""

import logging
import os
from dataclasses import dataclass

from lvs_app import ipvsadm
from lvs_app.atomicfile import previous_path, remove_stale_temporaries, write_atomic
from lvs_app.model import (CONN_TAB_SIZE, IPVS_VERSION, BadRequest, Conflict, LvsError, ServiceKey, parse_ip,
                           parse_service_id, service_key)

LOG = logging.getLogger(__name__)

SETTINGS = {
    # name: (default, description) -- IPVS sysctls the director honours
    "expire_quiescent_template": (False, "a template to a weight-0 server is not used"),
    "expire_nodest_conn": (False, "connections of a deleted real server are removed at once"),
}

# What the rules file holds for an empty table: never zero bytes, so that a
# zero-length file can only be a truncated one (see load_rules).
EMPTY_RULES = "# lvs_app: no virtual services\n"


@dataclass
class Change:
    """What a committed operation changed, for listeners."""

    kind: str                 # service-added, service-edited, service-deleted,
    #                           server-added, server-edited, server-deleted,
    #                           table-replaced, timeouts, settings, zero, marks
    key: ServiceKey = None
    server: object = None     # the RealServer concerned


def _body_dict(body, what):
    if not isinstance(body, dict):
        raise BadRequest(f"{what}: request body must be a JSON object")
    return dict(body)


def _key_from_body(body):
    protocol = body.pop("protocol", None)
    if protocol is None:
        raise BadRequest("service: 'protocol' is required (tcp, udp or fwmark)")
    if protocol == "fwmark":
        return service_key("fwmark", fwmark=body.pop("fwmark", None), af=body.pop("af", 4))
    for name in ("fwmark", "af"):
        body.pop(name, None)
    if "address" not in body:
        raise BadRequest(f"service {protocol}: 'address' is required")
    return service_key(protocol, body.pop("address"), body.pop("port", 0))


def parse_server_id(text):
    """``10.0.0.1-80``, ``2001:db8::1-80`` or an address alone (service port)."""
    address, dash, port = text.rpartition("-")
    if not dash:
        return parse_ip(text, "real server id"), None
    if not port.isdigit():
        raise BadRequest(f"real server id {text!r} must be ADDRESS or ADDRESS-PORT")
    return parse_ip(address, "real server id"), int(port)


def _write(method):
    """A change of the table: refused (409) while the API is read-only."""
    def checked(self, *args, **kwargs):
        if self.read_only:
            raise Conflict(self.read_only)
        return method(self, *args, **kwargs)
    checked.__name__, checked.__doc__ = method.__name__, method.__doc__
    return checked


class DirectorAPI:
    """The service table of one controller, with persistence and listeners."""

    def __init__(self, rules_path=None, settings=None, runtime=None):
        from lvs_app.model import ServiceTable
        self.table = ServiceTable()
        self.rules_path = rules_path
        self._saved_text = None       # what the rules file holds, when known
        self.settings = {name: default for name, (default, _) in SETTINGS.items()}
        self.settings.update(settings or {})
        self.listeners = []
        # the read side of the running director: service_view(service),
        # server_view(service, server), connection_rows(); None when alone
        self.runtime = runtime
        self.read_only = None             # why changes are refused now (HA backup), or None
        self.keepalived_path = None       # --lvs-keepalived FILE, once loaded
        self.keepalived_keys = set()      # the services that file defines
        self.keepalived = None            # the KeepalivedConfig applied last (health checks)
        self.keepalived_checks = []       # callables(config) that may refuse a file (LvsError)

    # -- start-up ------------------------------------------------------
    def load_rules(self):
        """Load the rules file, if it exists; a bad file is refused whole.

        Temporaries left by an interrupted rewrite are removed first.  A
        zero-length file while ``FILE.prev`` has content is refused (it was
        truncated, or emptied by hand): the operator decides which table is
        meant, the controller does not come up empty or with old rules.
        """
        if not self.rules_path:
            return False
        remove_stale_temporaries(self.rules_path, "rules")
        if not os.path.exists(self.rules_path):
            return False
        try:
            with open(self.rules_path, encoding="utf-8") as handle:
                text = handle.read()
        except OSError as err:
            raise BadRequest(f"rules file {self.rules_path}: {err.strerror}") from None
        except UnicodeDecodeError:
            raise BadRequest(f"rules file {self.rules_path}: not UTF-8 text") from None
        if not text:
            self._refuse_truncated()
        try:
            self.table = ipvsadm.restore(self.table, text, replace=True)
        except LvsError as err:
            raise type(err)(f"rules file {self.rules_path}: {err.message}") from None
        self._saved_text = text
        self._notify(Change("table-replaced"))
        return True

    def _refuse_truncated(self):
        previous = previous_path(self.rules_path)
        try:
            size = os.path.getsize(previous)
        except OSError:
            return                        # no previous version: empty is empty
        if size:
            raise BadRequest(
                f"rules file {self.rules_path} is empty but {previous} is not "
                f"({size} bytes): it may have been truncated; copy {previous} to "
                f"{self.rules_path} to start with it, or delete {previous} to start "
                "with an empty table")

    # -- plumbing ------------------------------------------------------
    def _notify(self, change):
        for listener in self.listeners:
            listener(change)

    def _commit(self, change):
        self.save_rules()
        self._notify(change)

    def rules_text(self):
        return ipvsadm.format_save([s.to_dict() for s in self.table.sorted_services()],
                                   self.marks())

    def save_rules(self):
        """Rewrite the rules file durably, keeping the version before as FILE.prev.

        See :mod:`lvs_app.atomicfile`; an unchanged text is not rewritten, so
        FILE.prev stays the table before the last real change.
        """
        if not self.rules_path:
            return
        text = self.rules_text() or EMPTY_RULES
        if text == self._saved_text:
            return
        try:
            write_atomic(self.rules_path, text, "rules", keep_previous=True)
        except OSError as err:
            LOG.error("rules file %s could not be written: %s", self.rules_path, err)
            return
        self._saved_text = text

    # -- reading -------------------------------------------------------
    def snapshot(self):
        return {"version": IPVS_VERSION, "size": CONN_TAB_SIZE,
                "services": self.services(), "marks": self.marks(),
                "timeouts": dict(self.table.timeouts)}

    def services(self):
        return [s.to_dict(self.runtime) for s in self.table.sorted_services()]

    def service(self, sid):
        return self.table.get_service(parse_service_id(sid)).to_dict(self.runtime)

    def servers(self, sid):
        return self.service(sid)["servers"]

    def server(self, sid, rid):
        address, port = parse_server_id(rid)
        key = parse_service_id(sid)
        return self._server_dict(self.table.get_service(key),
                                 self.table.get_server(key, address, port))

    def _server_dict(self, service, server):
        return server.to_dict(self.runtime and self.runtime.server_view(service, server))

    def marks(self):
        return [self.table.marks[m].to_dict() for m in sorted(self.table.marks)]

    def mark(self, number):
        number = _mark_number(number)
        if number not in self.table.marks:
            from lvs_app.model import NotFound
            raise NotFound(f"firewall mark {number} does not exist")
        return self.table.marks[number].to_dict()

    def apply_keepalived(self, config, path):
        """keepalived.conf's virtual servers (a keepalived.KeepalivedConfig read
        from ``path``) into the table, all or nothing.  For the services it
        defines the file wins over the rules file and REST; the services the
        previous keepalived file defined and this one no longer does go, as a
        keepalived reload removes them."""
        for check in self.keepalived_checks:
            check(config)
        table = self.table.copy()
        for key in self.keepalived_keys - set(config.keys):
            table.services.pop(key, None)
        self.table = config.apply(table, replace=True)
        self.keepalived_path, self.keepalived_keys = path, set(config.keys)
        self.keepalived = config
        self._commit(Change("table-replaced"))
        self._notify(Change("keepalived"))       # the health checks follow the new file
        return {"services": [str(k) for k in config.keys], "warnings": config.warnings}

    @_write
    def reload_keepalived(self, text):
        """``PUT /ipvs/keepalived``: the keepalived.conf text again (a reload)."""
        from lvs_app import keepalived
        if not isinstance(text, str):
            raise BadRequest("keepalived.conf: body must be its text")
        config = keepalived.parse(text, name=self.keepalived_path or "keepalived.conf",
                                  marks=self.table.marks)
        return self.apply_keepalived(config, self.keepalived_path)

    def health(self):
        """``GET /ipvs/health``: the checkers' state (beyond ipvsadm)."""
        status = self.runtime.health_status() if self.runtime else None
        return status or {"source": None, "virtual_servers": [], "counts": {}}

    def fabric(self):
        """``GET /ipvs/fabric``: switches, links and where hosts attach (beyond ipvsadm)."""
        if self.runtime is None:
            return {"switches": [], "links": [], "hosts": {}}
        return self.runtime.fabric_view()

    def metrics(self):
        """``GET /metrics``: the Prometheus text (lvs_app.metrics)."""
        if self.runtime is None:
            from lvs_app import metrics
            return metrics.render(self.snapshot(), self.health(), {})
        return self.runtime.metrics_text()

    def health_set(self, key, address, port, options):
        """The health checks' change of one real server: ``options`` None takes
        it out of the service, else it is there with these add_server options
        (only its weight is changed when it is there already).  Not refused
        while read-only: only the serving controller runs checks."""
        service = self.table.services.get(key)
        if service is None:
            return
        server = service.find_server(address, port)
        if options is None:
            if server is not None:
                self.table.delete_server(key, address, port)
                self._commit(Change("server-deleted", key, server))
        elif server is None:
            server = self.table.add_server(key, address, port, **options)
            self._commit(Change("server-added", key, server))
        elif server.weight != options.get("weight", server.weight):
            server = self.table.edit_server(key, address, port, weight=options["weight"])
            self._commit(Change("server-edited", key, server))

    def ha_status(self):
        """This controller's high-availability role (see lvs_app.ha)."""
        status = self.runtime.ha_status() if self.runtime else None
        return status or {"role": "standalone"}

    def connections(self):
        return self.runtime.connection_rows() if self.runtime else []

    # -- services ------------------------------------------------------
    @_write
    def add_service(self, body):
        body = _body_dict(body, "service")
        key = _key_from_body(body)
        service = self.table.add_service(key, **body)
        self._commit(Change("service-added", key))
        return service.to_dict(self.runtime)

    @_write
    def edit_service(self, sid, body):
        key = parse_service_id(sid)
        body = _body_dict(body, f"service {key}")
        service = self.table.edit_service(key, **body)
        self._commit(Change("service-edited", key))
        return service.to_dict(self.runtime)

    @_write
    def delete_service(self, sid):
        key = parse_service_id(sid)
        self.table.delete_service(key)
        self._commit(Change("service-deleted", key))

    @_write
    def clear(self):
        self.table.clear()
        self._commit(Change("table-replaced"))

    # -- real servers ----------------------------------------------------
    @_write
    def add_server(self, sid, body):
        key = parse_service_id(sid)
        body = _body_dict(body, f"service {key}: real server")
        if "address" not in body:
            raise BadRequest(f"service {key}: real server 'address' is required")
        server = self.table.add_server(key, body.pop("address"), body.pop("port", None), **body)
        self._commit(Change("server-added", key, server))
        return self._server_dict(self.table.services[key], server)

    @_write
    def edit_server(self, sid, rid, body):
        key = parse_service_id(sid)
        address, port = parse_server_id(rid)
        body = _body_dict(body, f"service {key}: real server {rid}")
        for name in ("address", "port"):
            body.pop(name, None)
        server = self.table.edit_server(key, address, port, **body)
        self._commit(Change("server-edited", key, server))
        return self._server_dict(self.table.services[key], server)

    @_write
    def delete_server(self, sid, rid):
        key = parse_service_id(sid)
        address, port = parse_server_id(rid)
        server = self.table.delete_server(key, address, port)
        self._commit(Change("server-deleted", key, server))

    # -- the rest --------------------------------------------------------
    @_write
    def zero(self, sid=None):
        key = parse_service_id(sid) if sid is not None else None
        self.table.zero(key)                 # 404 for an unknown service
        self._notify(Change("zero", key))

    def timeouts(self):
        return dict(self.table.timeouts)

    @_write
    def set_timeouts(self, body):
        body = _body_dict(body, "timeouts")
        unknown = sorted(set(body) - {"tcp", "tcpfin", "udp"})
        if unknown:
            raise BadRequest(f"timeouts: unknown field(s) {', '.join(unknown)}; "
                             "allowed: tcp, tcpfin, udp")
        new = self.table.set_timeouts(**body)
        self._commit(Change("timeouts"))
        return new

    @_write
    def restore(self, text, replace):
        """Rules text in ``ipvsadm -S`` format: replace the table or append to it."""
        if not isinstance(text, str):
            raise BadRequest("rules: body must be text in 'ipvsadm -S' format")
        new = ipvsadm.restore(self.table, text, replace=replace)
        self.table = new
        self._commit(Change("table-replaced"))

    @_write
    def add_mark(self, body):
        body = _body_dict(body, "firewall mark")
        unknown = sorted(set(body) - {"mark", "name", "matches"})
        if unknown:
            raise BadRequest(f"firewall mark: unknown field(s) {', '.join(unknown)}; "
                             "allowed: mark, name, matches")
        mark = self.table.add_mark(body.get("mark"), body.get("matches"), body.get("name", ""))
        self._commit(Change("marks"))
        return mark.to_dict()

    @_write
    def delete_mark(self, number):
        self.table.delete_mark(_mark_number(number))
        self._commit(Change("marks"))

    def get_settings(self):
        return dict(self.settings)

    @_write
    def set_settings(self, body):
        body = _body_dict(body, "settings")
        for name, value in body.items():
            if name not in SETTINGS:
                raise BadRequest(f"setting {name!r} is unknown; "
                                 f"known: {', '.join(sorted(SETTINGS))}")
            if not isinstance(value, bool):
                raise BadRequest(f"setting {name} {value!r} must be true or false")
        self.settings.update(body)
        self._notify(Change("settings"))
        return dict(self.settings)


def _mark_number(number):
    try:
        return int(number)
    except (TypeError, ValueError):
        raise BadRequest(f"firewall mark {number!r} must be a number") from None
