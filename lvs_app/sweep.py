"""The sweep: entries whose FlowRemoved never came are checked against the switch.

An entry normally ends when its flow's FlowRemoved arrives.  One that never
arrives (lost, or the flow deleted behind the director's back) would leak
the entry and its counts forever.  Every SWEEP_INTERVAL (a timed job of the
manager) the director looks for entries whose time has been up for
SWEEP_GRACE or more, and if there are any asks their switch for its flows:
an entry whose flow is gone ends; one whose flow is there (a busy
connection, whose packets the controller does not see) has its time
counted again from the flow's idle timeout.
"""

from lvs_app import ids as idmod
from lvs_app import ofmsg
from lvs_app.conntable import conn_key
from lvs_app.recovery import flow_stats_request

SWEEP_GRACE = 10.0         # s past an entry's time before the sweep asks the switch


class Sweep:
    """The timed sweep over every switch's connection table."""

    def __init__(self, director):
        self.director = director

    def __call__(self, now):
        """Timed job: entries whose time is long up but whose FlowRemoved never
        came (a lost message) are checked against the switch: one flow
        statistics request per switch, answered by :meth:`swept`."""
        out = []
        for sw in self.director.switches.values():
            late = now - SWEEP_GRACE
            # with their times now: an entry re-timed before the answer comes
            # (its FlowRemoved crossed the request) is left alone
            conns = [(c, c.expires_at) for c in sw.conns.values() if c.expires_at < late]
            templates = [(t, t.expires_at) for t in sw.templates.values()
                         if t.expires_at < late]
            if not conns and not templates:
                continue
            request = flow_stats_request()
            request.on_reply = (lambda flows, when, sw=sw, conns=conns, templates=templates:
                                self.swept(sw, conns, templates, flows, when))
            out.append((sw.dpid, request))
        return out

    def swept(self, sw, conns, templates, flows, now):
        """The switch's flows for a sweep: an entry whose flow is there lives
        on (a busy connection: its time is counted again from now); one whose
        flow is gone ends."""
        present, template_matches = {}, {}
        for flow in flows:
            cookie = idmod.Cookie.parse(flow.cookie)
            kind = cookie.kind if cookie else None
            if kind == idmod.KIND_CONN:
                present[conn_key(flow.match)] = flow.idle_timeout
            elif kind == idmod.KIND_TEMPLATE:
                template_matches[ofmsg.match_key(flow.match)] = flow.idle_timeout
        out = []
        for conn, expires_at in conns:
            if sw.conns.get(conn.key) is not conn or conn.expires_at != expires_at:
                continue
            idle = present.get(conn.key)
            if idle is None:
                self.director.dropped["swept"] += 1
                out += self.director.end_connection(sw, conn)
            else:
                conn.expires_at = now + idle
        for template, expires_at in templates:
            if sw.templates.get(template.key) is not template or template.expires_at != expires_at:
                continue
            idle = [template_matches[k] for k in map(ofmsg.match_key, template.matches)
                    if k in template_matches]
            if idle:
                # its flow's own idle time: a --pe switch template's carrying
                # flow outlives the persistence timeout
                template.expires_at = now + max(idle)
            else:
                self.director.dropped["swept"] += 1
                out += self.director.templates.carrier_gone(sw, template)
        return out
