"""Traffic counters from the switches: IPVS's InPkts, OutPkts, InBytes, OutBytes.

The packets of a connection never reach the controller: the switch's flow
counters count them.  Every ``interval`` seconds (a timed job) each switch is
asked for the app's flows (one flow statistics request, filtered by the
app's cookie tag), and every FlowRemoved brings a flow's final counts, so a
connection that lives and ends between two polls is counted too.

Which flow counts what, by its cookie (see ids.py):

* connection and template flows (SERVICE) carry client -> server packets:
  IPVS's *in* direction;
* NAT reverse flows (REVERSE) carry server -> client packets: *out*.  Direct
  routing and tunnel replies bypass the director, so their *out* stays 0, as
  in IPVS;
* the cookie's service and server numbers say whose they are (StableIds).

Bytes are counted as IPVS counts them, by IP length: the switch counts
Ethernet frames, so 14 bytes per packet come off (a tunnel flow counts the
frame before it is encapsulated, so the same holds).

Never backwards.  Each service and server keeps ``base`` (the final counts of
flows that ended), ``live`` (the counts of its flows now in the switches,
as of the last poll) and ``offset`` (what ``ipvsadm -Z`` took away); what is
shown is ``base + live - offset``.  A flow seen again adds its increase; one
whose counts went down was replaced (its old counts move to ``base``); one
that ended moves its final counts to ``base``; one that vanished without a
FlowRemoved moves what was last seen.  ``base`` and ``offset`` (with the
connection counts) are saved beside the rules file (``FILE.stats``) after
every poll that changed them, so a restarted controller starts from them,
and the flows still in the switch bring their ``live`` counts back at its
first poll.  What ended while no controller listened is lost.

Stdlib only, plus ids and the atomic file writer.
"""

import json
import logging
import os

from lvs_app import ids as idmod
from lvs_app import ofmsg
from lvs_app import packet as pkt
from lvs_app.atomicfile import remove_stale_temporaries, write_atomic

LOG = logging.getLogger(__name__)

ETH_HEADER = pkt.ETH_HEADER           # bytes per frame that IPVS does not count
IN_KINDS = frozenset({idmod.KIND_CONN, idmod.KIND_TEMPLATE})
OUT_KINDS = frozenset({idmod.KIND_REVERSE, idmod.KIND_REVERSE_TEMPLATE})
FIELDS = ("inpkts", "outpkts", "inbytes", "outbytes")


class Totals:
    """One IPVS ``ip_vs_stats`` (a service's or a server's) as the sum of its flows."""

    __slots__ = ("base", "live", "offset", "conns")

    def __init__(self, base=None, offset=None, conns=0):
        self.base = list(base or (0, 0, 0, 0))
        self.live = [0, 0, 0, 0]
        self.offset = list(offset or (0, 0, 0, 0))
        self.conns = conns              # restored from the file (counted before a restart)

    def shown(self):
        return [b + v - o for b, v, o in zip(self.base, self.live, self.offset)]

    def zero(self):
        self.offset = [b + v for b, v in zip(self.base, self.live)]
        self.conns = 0

    def to_dict(self):
        return {"base": self.base, "offset": self.offset, "conns": self.conns}


def ip_bytes(frame_bytes, packets):
    """IPVS counts IP bytes; the switch counted Ethernet frames."""
    return max(0, frame_bytes - ETH_HEADER * packets)


class TrafficCounters:
    """Every service's and real server's traffic, folded from flow counters."""

    def __init__(self, ids, path=None):
        self.ids = ids                  # StableIds: cookie numbers -> service and server
        self.path = path
        self.services = {}              # service id text -> Totals
        self.servers = {}               # (service id text, server text) -> Totals
        self.seen = {}                  # dpid -> {flow key: (owner keys, direction, pkts, bytes)}
        self._names = {}                # (service number, server number) -> (sid, rtext)
        self.dirty = False
        self.polls = 0
        self.last_poll = None           # when the last poll's answer came
        self.entries = {}               # dpid -> {table id: flows}, from the last poll
        if path:
            remove_stale_temporaries(path, "stats")
            self._load()

    # -- who a flow belongs to --------------------------------------------------------
    def _owner(self, cookie):
        """(direction, service id, server text) of one of our flows, or None."""
        parsed = idmod.Cookie.parse(cookie)
        if parsed is None or parsed.kind not in IN_KINDS | OUT_KINDS:
            return None
        names = self._name(parsed.service, parsed.server)
        return None if names is None else (0 if parsed.kind in IN_KINDS else 1,) + names

    def _name(self, service_number, server_number):
        names = self._names.get((service_number, server_number))
        if names is None:
            sid, rtext = self.ids.lookup(service_number, server_number)
            if sid is None or rtext is None:
                return None
            names = self._names[(service_number, server_number)] = (sid, rtext)
        return names

    def count(self, service_number, server_number, direction, ip_length):
        """One packet the controller forwarded itself (a connection's first
        SYN, a FIN or RST, an FTP control packet): no flow counted it."""
        names = self._name(service_number, server_number)
        if names is not None:
            self._add((direction,) + names, "base", 1, ip_length)
            self.dirty = True

    def _totals(self, sid, rtext):
        service = self.services.get(sid)
        if service is None:
            service = self.services[sid] = Totals()
        server = self.servers.get((sid, rtext))
        if server is None:
            server = self.servers[(sid, rtext)] = Totals()
        return service, server

    def _add(self, owner, part, packets, octets):
        """Add to ``part`` ("base" or "live") of the owner's service and server."""
        direction, sid, rtext = owner
        for totals in self._totals(sid, rtext):
            values = getattr(totals, part)
            values[direction] += packets
            values[2 + direction] += octets

    # -- folding ------------------------------------------------------------------------
    def flow_stats(self, dpid, flows, now=None):
        """A poll's answer: every flow of ours in switch ``dpid``, with its counts."""
        self.polls += 1
        self.last_poll = now
        old = self.seen.get(dpid, {})
        new, entries = {}, {}
        for flow in flows:
            entries[flow.table_id] = entries.get(flow.table_id, 0) + 1
            owner = self._owner(flow.cookie)
            if owner is None:
                continue
            key = (flow.table_id, flow.cookie, ofmsg.match_key(flow.match))
            packets, octets = flow.packet_count, ip_bytes(flow.byte_count, flow.packet_count)
            before = old.pop(key, None)
            if before is None:
                self._add(owner, "live", packets, octets)
            elif packets >= before[1] and octets >= before[2]:
                self._add(owner, "live", packets - before[1], octets - before[2])
            else:
                # replaced since (counts went down): the old flow's counts stay
                self._add(owner, "base", before[1], before[2])
                self._add(owner, "live", packets - before[1], octets - before[2])
            new[key] = (owner, packets, octets)
        for owner, packets, octets in old.values():
            # gone without a FlowRemoved: what was last seen is what it carried
            self._add(owner, "base", packets, octets)
            self._add(owner, "live", -packets, -octets)
        self.seen[dpid] = new
        self.entries[dpid] = entries
        self.dirty = self.dirty or bool(old)
        return []

    def flow_removed(self, dpid, table_id, cookie, match, packets, frame_bytes):
        """A flow ended in switch ``dpid`` with these final counts."""
        owner = self._owner(cookie)
        if owner is None:
            return
        octets = ip_bytes(frame_bytes, packets)
        before = self.seen.get(dpid, {}).pop((table_id, cookie, ofmsg.match_key(match)), None)
        if before is not None:
            _, seen_packets, seen_octets = before
            self._add(owner, "live", -seen_packets, -seen_octets)
            if packets < seen_packets or octets < seen_octets:
                packets, octets = packets + seen_packets, octets + seen_octets
        self._add(owner, "base", packets, octets)
        self.dirty = True

    # -- reading ------------------------------------------------------------------------
    def service_counts(self, sid):
        totals = self.services.get(sid)
        return (totals.shown(), totals.conns) if totals else ([0, 0, 0, 0], 0)

    def server_counts(self, sid, rtext):
        totals = self.servers.get((sid, rtext))
        return (totals.shown(), totals.conns) if totals else ([0, 0, 0, 0], 0)

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
        for seen in self.seen.values():
            for key in [k for k, v in seen.items() if v[0][1] == sid]:
                del seen[key]
        self.dirty = True

    def table_changed(self):
        """Numbers may have been handed out or freed: forget the name cache."""
        self._names.clear()

    # -- the file -------------------------------------------------------------------------
    def save(self, conns):
        """Write ``base``, ``offset`` and the connection counts (``conns``:
        {(sid, rtext or None): count} as the director holds them now) if anything
        changed since the last save."""
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

    def _load(self):
        if not os.path.exists(self.path):
            return
        try:
            with open(self.path, encoding="utf-8") as handle:
                doc = json.load(handle)
            for sid, t in doc.get("services", {}).items():
                self.services[sid] = Totals(t["base"], t["offset"], t["conns"])
            for sid, rtext, t in doc.get("servers", []):
                self.servers[(sid, rtext)] = Totals(t["base"], t["offset"], t["conns"])
        except (OSError, ValueError, KeyError, TypeError) as err:
            # counters are not worth refusing to start over: say so, start from 0
            LOG.error("lvs_app: counters file %s is unreadable (%s): counters start from 0",
                      self.path, err)
            self.services, self.servers = {}, {}
