"""Traffic counters from the switches: IPVS's InPkts, OutPkts, InBytes, OutBytes.

The packets of a connection never reach the controller: the switch's flow
counters count them.  Every ``interval`` seconds (a timed job) each switch is
asked, per real server, for the *aggregate* counters of that server's flows
(OpenFlow aggregate statistics, selected by cookie: kind, service number,
server number), and every FlowRemoved brings a flow's final counts, so a
connection that lives and ends between two polls is counted too.

Aggregates, not every flow: a switch's answer is five small replies per
real server whatever the number of connections, where a flow statistics
reply grows with them (Ryu parses each flow's match and actions, about
0.1 ms a flow: 10,000 connections would cost a second every poll; see
benchmarks/stats_poll.py).

Which flow counts what, by its cookie (see ids.py):

* connection and template flows (SERVICE) carry client -> server packets:
  IPVS's *in* direction; a ``--pe switch`` template's SYN flow's packets
  are also the connections the switch carried (they count in Conns);
* NAT reverse flows (REVERSE), and a ``--pe switch`` template's reply
  flow, carry server -> client packets: *out*.  Direct
  routing and tunnel replies bypass the director, so their *out* stays 0, as
  in IPVS;
* packets the controller forwards itself (a connection's first SYN, FIN and
  RST, FTP control packets) are counted as it forwards them, with the
  length their IP header gives.

Bytes are counted as IPVS counts them, by IP length: the switch counts
Ethernet frames, so 14 bytes per packet come off (a tunnel flow counts the
frame before it is encapsulated, so the same holds).  What the switch
cannot tell apart stays in: the padding of a short frame (a 40-byte TCP ACK
travels in a 60-byte minimum frame on a physical link, 6 bytes more) and a
VLAN tag (4), so InBytes and OutBytes can read slightly high there.

Never backwards.  Each service and server keeps ``base`` (the final counts of
flows that ended, and what the controller forwarded), ``live`` (the
aggregates of its flows now in the switches, per switch and kind) and
``offset`` (what ``ipvsadm -Z`` took away).  What is shown is
``base + live - offset``, recomputed when every answer of a poll is in, and
never lower than what was shown before: a flow that vanished without its
FlowRemoved (a lost message) takes its counts out of ``live`` without
putting them into ``base``, and what is shown then waits until the traffic
catches up.

A FlowRemoved's final counts wait in ``pending`` while the last aggregate
answer of its switch, kind and server (in ``live``) may still hold the
flow's counts so far: they move to ``base`` when the next answer for that
aggregate replaces it (an answer the switch sent after the FlowRemoved no
longer has the flow).  So a flow is counted once, also when its FlowRemoved
comes in the middle of a poll, after its kind's answer and before the
poll's last one, and when several switches' polls overlap.

``base`` (with ``pending``), ``offset``, the connection counts and what is
shown are saved beside the rules file (``FILE.stats``) after every poll that
changed them, so a restarted controller (or an HA backup that takes over)
starts from what was shown last: the flows still in the switch bring their
``live`` counts back at its first poll, and until then, or while the counts
of flows that ended with no controller to hear their FlowRemoved are
missing, what is shown stays where it was until the traffic catches up.
Those counts are not in the totals; they are never taken away from what
was shown either.

Stdlib only, plus ids, packet and the atomic file writer.
"""

import json
import logging
import os

from lvs_app import ids as idmod
from lvs_app import packet as pkt
from lvs_app.atomicfile import remove_stale_temporaries, write_atomic

LOG = logging.getLogger(__name__)

ETH_HEADER = pkt.ETH_HEADER           # bytes per frame that IPVS does not count
IN_KINDS = (idmod.KIND_CONN, idmod.KIND_TEMPLATE, idmod.KIND_TEMPLATE_SYN)
# reverse templates punt: the controller counts those
OUT_KINDS = (idmod.KIND_REVERSE, idmod.KIND_TEMPLATE_NAT)
SWITCH_CONNS = 4       # the counts' fifth value: connections the switch carried (--pe switch)
DIRECTION = {kind: 0 for kind in IN_KINDS}
DIRECTION.update({kind: 1 for kind in OUT_KINDS})


def ip_bytes(frame_bytes, packets):
    """IPVS counts IP bytes; the switch counted Ethernet frames."""
    return max(0, frame_bytes - ETH_HEADER * packets)


def _five(values):
    """A saved counts list (four values before --pe switch) as five."""
    return (list(values or ()) + [0] * 5)[:5]


def _add(values, kind, packets, octets):
    """Add a flow kind's packets and IP bytes to five counts."""
    direction = DIRECTION[kind]
    values[direction] += packets
    values[2 + direction] += octets
    if kind == idmod.KIND_TEMPLATE_SYN:
        values[SWITCH_CONNS] += packets


class Totals:
    """One IPVS ``ip_vs_stats`` (a service's or a server's)."""

    __slots__ = ("base", "live", "pending", "offset", "conns", "shown")

    def __init__(self, base=None, offset=None, conns=0, shown=None):
        # inpkts, outpkts, inbytes, outbytes, and the connections the switch
        # carried (a --pe switch template's SYN flow counts them)
        self.base = _five(base)
        self.live = {}          # (dpid, kind, server number) -> (packets, IP bytes)
        # (dpid, kind, server number) -> [packets, IP bytes]: final counts of
        # flows that ended after that aggregate's last answer (see flow_ended)
        self.pending = {}
        self.offset = _five(offset)
        self.conns = conns              # restored from the file (counted before a restart)
        self.shown = _five(shown)       # restored: what was shown before a restart

    def true_value(self):
        value = list(self.base)
        for (_, kind, _), (packets, octets) in self.live.items():
            _add(value, kind, packets, octets)
        return value

    def add_base(self, kind, packets, octets):
        """Counts of flows of ``kind`` no longer in any aggregate."""
        _add(self.base, kind, packets, octets)

    def answer(self, key, value):
        """A new aggregate answer for ``key``: the flows that ended before it
        are no longer in it, so their final counts join ``base`` now."""
        held = self.pending.pop(key, None)
        if held is not None:
            self.add_base(key[1], *held)
        if value == (0, 0):
            self.live.pop(key, None)
        else:
            self.live[key] = value

    def flow_ended(self, key, packets, octets):
        """A flow's final counts: into ``base`` at once when no answer for its
        aggregate is live (none can hold it), else held until the next answer."""
        if key not in self.live:
            self.add_base(key[1], packets, octets)
            return
        held = self.pending.get(key)
        if held is None:
            self.pending[key] = [packets, octets]
        else:
            held[0] += packets
            held[1] += octets

    def drop_switch(self, dpid):
        """A switch went away: its aggregates are no longer live, and what
        waited for their next answer is final."""
        for key in [k for k in self.pending if k[0] == dpid]:
            self.add_base(key[1], *self.pending.pop(key))
        for key in [k for k in self.live if k[0] == dpid]:
            del self.live[key]

    def update(self):
        """What is shown: base + live - offset, never lower than before.
        True when it changed."""
        current = [max(c - o, s) for c, o, s in zip(self.true_value(), self.offset, self.shown)]
        changed = current != self.shown
        self.shown = current
        return changed

    def zero(self):
        self.offset = self.true_value()
        self.shown = [0] * 5
        self.conns = 0

    def to_dict(self):
        """What the file keeps: the held final counts are saved in ``base``
        (a restarted controller's answers no longer have those flows)."""
        base = list(self.base)
        for (_, kind, _), (packets, octets) in self.pending.items():
            _add(base, kind, packets, octets)
        return {"base": base, "offset": self.offset, "conns": self.conns,
                "shown": self.shown}


class TrafficCounters:
    """Every service's and real server's traffic, from aggregate flow counters."""

    def __init__(self, ids, path=None):
        self.ids = ids                  # StableIds: cookie numbers -> service and server
        self.path = path
        self.services = {}              # service id text -> Totals
        self.servers = {}               # (service id text, server text) -> Totals
        self._names = {}                # (service number, server number) -> (sid, rtext)
        self._pairs = {}                # ... -> (service Totals, server Totals), for count()
        self.waiting = {}               # dpid -> answers of the current poll still to come
        self.dirty = False
        self.polls = 0
        self.last_poll = None           # when the last poll's answers were all in
        self.entries = {}               # dpid -> {table id: flows} (table statistics)
        if path:
            remove_stale_temporaries(path, "stats")
            self._load()

    # -- names ---------------------------------------------------------------------------
    def _name(self, service_number, server_number):
        names = self._names.get((service_number, server_number))
        if names is None:
            sid, rtext = self.ids.lookup(service_number, server_number)
            if sid is None or rtext is None:
                return None
            names = self._names[(service_number, server_number)] = (sid, rtext)
        return names

    def _totals(self, sid, rtext):
        service = self.services.get(sid)
        if service is None:
            service = self.services[sid] = Totals()
        server = self.servers.get((sid, rtext))
        if server is None:
            server = self.servers[(sid, rtext)] = Totals()
        return service, server

    # -- what comes in -------------------------------------------------------------------
    def queries(self, numbers):
        """The aggregate queries of one poll: ``(kind, service number, server
        number)`` for every server in ``numbers`` ((service number, server
        number) pairs) and every kind that carries traffic."""
        return [(kind, s, r) for s, r in numbers for kind in IN_KINDS + OUT_KINDS]

    def poll_started(self, dpid, count):
        self.waiting[dpid] = count

    def aggregate(self, dpid, kind, service_number, server_number, packets, frame_bytes,
                  now=None):
        """One aggregate answer: the counts of one server's flows of one kind.
        True when it was the last answer of the switch's poll (what is shown
        was recomputed)."""
        names = self._name(service_number, server_number)
        if names is not None:
            value = (packets, ip_bytes(frame_bytes, packets))
            key = (dpid, kind, server_number)
            for totals in self._totals(*names):
                totals.answer(key, value)
        left = self.waiting.get(dpid, 0) - 1
        self.waiting[dpid] = left
        if left == 0:
            self._poll_done(now)
            return True
        return False

    def _poll_done(self, now):
        self.polls += 1
        self.last_poll = now
        changed = False
        for totals in self.services.values():
            changed = totals.update() or changed
        for totals in self.servers.values():
            changed = totals.update() or changed
        if changed:
            self.dirty = True           # what is shown is saved: it must never go back

    def table_stats(self, dpid, counts):
        """Flow entries per table (``{table id: active count}``, every table
        the switch has), for /metrics: the tables that ever held an entry
        (a table that falls empty shows 0; the switch's many unused tables
        are left out)."""
        tables = self.entries.setdefault(dpid, {})
        for table_id, count in counts.items():
            if count or table_id in tables:
                tables[table_id] = count

    def flow_removed(self, cookie, packets, frame_bytes, dpid=None):
        """A flow of switch ``dpid`` ended with these final counts: they join
        ``base`` once its aggregate's answers no longer hold the flow (see
        Totals.flow_ended), and are shown from the poll after that."""
        parsed = idmod.Cookie.parse(cookie)
        if parsed is None or parsed.kind not in DIRECTION or not packets:
            return
        names = self._name(parsed.service, parsed.server)
        if names is None:
            return
        key, octets = (dpid, parsed.kind, parsed.server), ip_bytes(frame_bytes, packets)
        for totals in self._totals(*names):
            totals.flow_ended(key, packets, octets)
        self.dirty = True

    def count(self, service_number, server_number, direction, ip_length):
        """One packet the controller forwarded itself: no flow counted it (the
        PacketIn path: the service's and server's Totals are cached)."""
        pair = self._pairs.get((service_number, server_number))
        if pair is None:
            names = self._name(service_number, server_number)
            if names is None:
                return
            pair = self._pairs[(service_number, server_number)] = self._totals(*names)
        for totals in pair:
            base = totals.base
            base[direction] += 1
            base[2 + direction] += ip_length
        self.dirty = True

    def switch_gone(self, dpid):
        """A switch went away: its flows' counts are no longer live.  If it
        comes back with them, its next answers bring them back (a switch that
        restarted has lost them, as IPVS loses a rebooted director's)."""
        for totals in list(self.services.values()) + list(self.servers.values()):
            totals.drop_switch(dpid)
        self.waiting.pop(dpid, None)
        self.entries.pop(dpid, None)

    # -- reading ------------------------------------------------------------------------
    def service_counts(self, sid):
        """([inpkts, outpkts, inbytes, outbytes], connections: restored and
        carried by the switch)."""
        return self._counts(self.services.get(sid))

    def server_counts(self, sid, rtext):
        return self._counts(self.servers.get((sid, rtext)))

    @staticmethod
    def _counts(totals):
        if totals is None:
            return [0, 0, 0, 0], 0
        return totals.shown[:SWITCH_CONNS], totals.conns + totals.shown[SWITCH_CONNS]

    def zero(self, sid=None):
        """``ipvsadm -Z``: what is shown starts from 0 again."""
        for key, totals in self.services.items():
            if sid is None or key == sid:
                totals.zero()
        for (key, _), totals in self.servers.items():
            if sid is None or key == sid:
                totals.zero()
        self.dirty = True

    def forget_service(self, sid):
        """A deleted service's counters go with it (IPVS frees its stats)."""
        self.services.pop(sid, None)
        for key in [k for k in self.servers if k[0] == sid]:
            del self.servers[key]
        self._names.clear()
        self._pairs.clear()
        self.dirty = True

    def table_changed(self):
        """Numbers may have been handed out or freed: forget the name cache."""
        self._names.clear()
        self._pairs.clear()

    # -- the file -------------------------------------------------------------------------
    def save(self, conns):
        """Write ``base``, ``offset``, what is shown and the connection counts
        (``conns``: {(sid, rtext or None): count} as the director holds them
        now) if anything changed since the last save."""
        if not self.path or not self.dirty:
            return
        doc = {"services": {sid: dict(t.to_dict(), conns=t.conns + conns.get((sid, None), 0))
                            for sid, t in self.services.items()},
               "servers": [[sid, rtext, dict(t.to_dict(),
                                             conns=t.conns + conns.get((sid, rtext), 0))]
                           for (sid, rtext), t in self.servers.items()]}
        try:
            write_atomic(self.path, json.dumps(doc, sort_keys=True) + "\n", "stats")
        except OSError as err:
            LOG.error("lvs_app: counters file %s could not be written: %s", self.path, err)
            return
        self.dirty = False

    def reload(self):
        """Read the file again (an HA backup taking over: the master kept it)."""
        if not self.path:
            return
        self.services, self.servers = {}, {}
        self._names.clear()
        self._pairs.clear()
        self._load()

    def _load(self):
        if not os.path.exists(self.path):
            return
        try:
            with open(self.path, encoding="utf-8") as handle:
                doc = json.load(handle)
            # "shown": files written before it was kept start from base - offset
            for sid, t in doc.get("services", {}).items():
                self.services[sid] = Totals(t["base"], t["offset"], t["conns"],
                                            t.get("shown"))
            for sid, rtext, t in doc.get("servers", []):
                self.servers[(sid, rtext)] = Totals(t["base"], t["offset"], t["conns"],
                                                    t.get("shown"))
        except (OSError, ValueError, KeyError, TypeError) as err:
            # counters are not worth refusing to start over: say so, start from 0
            LOG.error("lvs_app: counters file %s is unreadable (%s): counters start from 0",
                      self.path, err)
            self.services, self.servers = {}, {}
        for totals in list(self.services.values()) + list(self.servers.values()):
            totals.update()
