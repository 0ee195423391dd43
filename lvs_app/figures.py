"""The controller's own figures for /metrics: what it was asked and what it did.

Counted where it happens, cheaply (a list increment, one clock read per
PacketIn): PacketIns per table and outcome (what the director says became of
each: ``Director.outcome``, see :data:`lvs_app.director.OUTCOMES`), the time
each took, messages sent per OpenFlow type, OpenFlow errors, and the punts
each switch's meters dropped (read with the flow counters).
:meth:`ControllerFigures.as_dict` adds what is read from the director when
/metrics is asked for: switches, connections and templates per switch, flow
entries per table, packets dropped by reason, entries ended by drop_entry.
"""

import bisect
import collections

from lvs_app import pipeline as pl
from lvs_app.director import DROP_REASONS, OUTCOMES

# upper bounds (s) of the PacketIn duration histogram: ~20 µs is a repeated
# SYN, ~50 µs a new NAT connection, milliseconds mean the controller is busy
PACKET_IN_BUCKETS = (25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 10e-3, 50e-3, 0.25)
TABLES = {table_id: table.name for table_id, table in pl.TABLES.items()}
METER_NAMES = {pl.PuntMeters.SERVICE: "service", pl.PuntMeters.L2: "l2",
               pl.PuntMeters.HEALTH: "health"}
FLOW_MOD, PACKET_OUT = 14, 13       # OpenFlow 1.3 message types


class ControllerFigures:
    """Counters of one manager."""

    def __init__(self):
        # table id -> a count per outcome (OUTCOMES); the last bucket counts
        # what is above every bound (only the cumulative +Inf shows it)
        self.packet_ins = collections.defaultdict(lambda: [0] * len(OUTCOMES))
        self.buckets = [0] * (len(PACKET_IN_BUCKETS) + 1)
        self.took_sum = 0.0
        self.took_count = 0
        self.sent = collections.Counter()            # OpenFlow message type -> count
        self.errors = 0
        self.rate_limited = {}                       # (dpid, meter id) -> packets dropped

    def packet_in(self, table_id, took, outcome, _bisect=bisect.bisect_left):
        """One PacketIn and its ``outcome`` (an index into OUTCOMES; the hot
        path: a few list increments)."""
        self.packet_ins[table_id][outcome] += 1
        self.took_sum += took
        self.took_count += 1
        self.buckets[_bisect(PACKET_IN_BUCKETS, took)] += 1

    def meter_stats(self, dpid, body):
        """A meter statistics reply: packets each punt meter dropped."""
        for meter in body:
            dropped = sum(band.packet_band_count for band in meter.band_stats)
            self.rate_limited[(dpid, meter.meter_id)] = dropped

    def as_dict(self, director, traffic, dpids, now):
        """The ``controller`` input of :func:`lvs_app.metrics.render`."""
        cumulative, total = [], 0
        for bound, count in zip(PACKET_IN_BUCKETS, self.buckets):
            total += count
            cumulative.append((bound, total))
        switches = director.switches
        return {
            "switches": len(dpids),
            "packet_ins": {(TABLES.get(t, str(t)), outcome): n
                           for t, counts in self.packet_ins.items()
                           for outcome, n in zip(OUTCOMES, counts) if n},
            "dropped": dict({reason: director.dropped[reason] for reason in DROP_REASONS},
                            orphan_fragment=director.fragments.dropped,
                            table_full=director.limits.counters["refused"]),
            "connections_dropped": director.limits.counters["drop_entry"],
            "packet_in_seconds": {"count": self.took_count, "sum": self.took_sum,
                                  "buckets": cumulative},
            "flow_mods": self.sent[FLOW_MOD], "packet_outs": self.sent[PACKET_OUT],
            "openflow_errors": self.errors,
            "rate_limited": {(dpid, METER_NAMES.get(m, str(m))): n
                             for (dpid, m), n in self.rate_limited.items()},
            "flow_entries": {(dpid, TABLES.get(t, str(t))): n
                             for dpid, tables in traffic.entries.items()
                             for t, n in tables.items()},
            "connections": {dpid: len(sw.conns) for dpid, sw in switches.items()},
            "templates": {dpid: len(sw.templates) for dpid, sw in switches.items()},
            "stats_polls": traffic.polls,
            "stats_poll_seconds": (None if traffic.last_poll is None
                                   else max(0.0, now - traffic.last_poll)),
        }
