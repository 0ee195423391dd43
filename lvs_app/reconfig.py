"""Reacting to changes of the service table (REST, lvsadm, the rules file).

Each kind of change (an :class:`lvs_app.api.Change`) adjusts the runtime
state and every switch's flows the way IPVS treats its own tables:

* table replaced (``ipvsadm -R``/``-C``): every connection and template goes;
* service deleted: its flows, connections and templates go;
* service edited: templates that no longer fit the persistence settings go
  (they wait for their connections, as IPVS's do);
* server deleted: its connections' and templates' packets are dropped until
  they time out, and its templates are not used (re-adding the server lets
  them all continue: the kernel's dest trash); with ``expire_nodest_conn``
  they end at once;
* server edited: the scheduler re-reads weights; thresholds may lift the
  overload flag; existing connections keep going.
"""

from lvs_app import ids as idmod
from lvs_app import ofmsg


class Reconfigure:
    """Turns table changes into runtime-state updates and flow changes."""

    def __init__(self, director):
        self.director = director

    def table_changed(self, change, now):
        """The service table changed: returns the messages for every switch."""
        director = self.director
        director.table_edited()
        handler = getattr(self, "_" + change.kind.replace("-", "_"), None)
        out = handler(change, now) if handler is not None else []
        for sw in director.switches.values():
            out += director.vips.sync(sw)
            director.ftp.prune(sw)
        if change.kind in ("server-added", "table-replaced"):
            out += director.resolve_servers(list(director.switches.values()), now)
        return out

    def _table_replaced(self, change, now):
        out = []
        for sw in self.director.switches.values():
            for kind in (idmod.KIND_CONN, idmod.KIND_TEMPLATE, idmod.KIND_REVERSE,
                         idmod.KIND_REVERSE_TEMPLATE, idmod.KIND_TEMPLATE_SYN,
                         idmod.KIND_TEMPLATE_NAT):
                out.append((sw.dpid, ofmsg.flow_delete(idmod.cookie_mask(kind))))
            self.director.conns.clear(sw)
        for key in list(self.director.runtime.services):
            if key not in self.director.config.table.services:
                self.director.runtime.forget(key)
        return out

    def _service_deleted(self, change, now):
        director = self.director
        sid = director.ids.service(change.key)
        out = []
        for sw in director.switches.values():
            out.append((sw.dpid, ofmsg.flow_delete(idmod.cookie_mask(service=sid))))
            director.conns.drop_service(sw, change.key)
        director.runtime.forget(change.key)
        director.ids.forget_service(change.key)
        return out

    def _service_edited(self, change, now):
        director = self.director
        service = director.config.table.services[change.key]
        out = []
        for sw in director.switches.values():
            # new persistence settings: old templates no longer apply
            for tkey, template in list(sw.templates.items()):
                if template.service == change.key and (
                        not service.persistent or template.hot != (service.pe == "switch")
                        or template.matches != director.templates.matches(service, tkey)):
                    out += director.templates.retire(sw, template)
        return out

    def _server_edited(self, change, now):
        director = self.director
        service = director.config.table.services[change.key]
        director.runtime.servers_changed(service, change.server)
        server = change.server
        if (service.pe == "switch" and server is not None and server.weight == 0
                and director.config.settings["expire_quiescent_template"]):
            # its templates are no longer used: their clients' SYNs come to
            # the controller again (ip_vs_check_template())
            return self._template_syns_gone(change.key, server)
        return []

    def _template_syns_gone(self, key, server):
        """``--pe switch``: a server's templates stop carrying new connections
        in the switch (their SYN flows go)."""
        director = self.director
        cm = idmod.cookie_mask(idmod.KIND_TEMPLATE_SYN, director.ids.service(key),
                               director.ids.server(key, server.address, server.port))
        return [(sw.dpid, ofmsg.flow_delete(cm)) for sw in director.switches.values()]

    def _server_deleted(self, change, now):
        """IPVS keeps a deleted server's templates: they are found invalid when
        next used (``ip_vs_check_template()``), and valid again if the server
        is added back first.  Until then their flows drop what they carry."""
        director = self.director
        key, server = change.key, change.server
        director.runtime.servers_changed(director.config.table.services[key])
        sid = director.ids.service(key)
        rid = director.ids.server(key, server.address, server.port)
        nodest_expire = director.config.settings["expire_nodest_conn"]
        out = []
        for sw in director.switches.values():
            conns = [c for c in sw.conns.values() if c.dest.server is server]
            templates = [t for t in sw.templates.values() if t.dest.server is server]
            if nodest_expire:
                # expire_nodest_conn=1: the connections and templates end now
                out += director.flows.delete_server_flows(
                    sw, sid, rid, (idmod.KIND_CONN, idmod.KIND_REVERSE, idmod.KIND_TEMPLATE,
                                   idmod.KIND_REVERSE_TEMPLATE, idmod.KIND_TEMPLATE_SYN,
                                   idmod.KIND_TEMPLATE_NAT))
                for conn in conns:
                    director.conns.remove(sw, conn)
                for template in templates:
                    director.conns.forget_template(sw, template)
            else:
                # IPVS default: packets of its connections are dropped until the
                # entries time out; re-adding the server lets them continue
                out += director.flows.drop_server_flows(sw, sid, rid)
                for conn in conns:
                    conn.nodest = True
        if not nodest_expire and director.config.table.services[key].pe == "switch":
            # new connections of its templates' clients are scheduled afresh
            out += self._template_syns_gone(key, server)
        return out

    def _server_added(self, change, now):
        """A server added again is the same destination (IPVS's dest trash): its
        dropped connections continue and its templates are valid again."""
        director = self.director
        key, server = change.key, change.server
        service = director.config.table.services[key]
        director.runtime.servers_changed(service, server)
        dest = director.runtime.dest(service, server)
        sid = director.ids.service(key)
        out = []
        for sw in director.switches.values():
            revived = [c for c in sw.conns.values()
                       if c.nodest and c.service == key and c.dest.address == server.address
                       and c.dest.port == server.port]
            for conn in revived:
                director.conns.move(conn, dest)
                conn.nodest = False
                # per connection: the forwarded port may differ (port-0 services)
                out.append(director.flows.conn_flow(sw, conn, sid,
                                                    max(1, int(conn.expires_at - now))))
            for template in sw.templates.values():
                if template.dest is dest and template.service == key:
                    # their flows come back with the time they had left
                    out += director.flows.template_flows(
                        sw, template, sid, max(1, int(template.expires_at - now)))
        return out

    def _zero(self, change, now):
        self.director.runtime.zero(change.key)
        return []
