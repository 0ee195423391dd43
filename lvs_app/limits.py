"""Bounded state: a cap on connection-table entries, and IPVS's defences near it.

Every entry (connection or template) costs controller memory, and a SYN
flood from spoofed sources makes one per SYN that passes the punt meter.
So the table has a cap (``--lvs-max-connections``), and as it nears the cap
(PRESSURE of it) the director defends itself the way IPVS does under memory
pressure:

* drop_entry: each new connection first ends up to DROP_PER_NEW of the
  oldest SYN_RECV entries (a flood's entries are half-open; IPVS picks them
  at random, here the oldest go first);
* secure_tcp: a new connection's SYN_RECV flow idles out after
  SECURE_SYN_RECV seconds instead of 60, so half-open entries leave sooner.

At the cap a new connection is refused (its SYN is dropped; the client tries
again).  What was dropped and refused is counted.
"""

import collections

PRESSURE = 0.9          # of the cap: the defences start
DROP_PER_NEW = 2        # oldest half-open entries ended per new connection under pressure
SECURE_SYN_RECV = 10    # s: SYN_RECV's flow under pressure (IPVS secure_tcp)
MIN_AGE = 1.0           # s: an entry younger than this is not dropped


class Limits:
    """The cap and the defences, over every switch's connection table."""

    def __init__(self, conns, max_entries=0):
        self.conns = conns
        self.max_entries = max_entries      # 0: no cap
        self.pressure = False
        self.counters = collections.Counter()

    def entries(self):
        return sum(len(sw.conns) + len(sw.templates) for sw in self.conns.switches.values())

    def admit(self, sw, now, end):
        """May a new connection be made on ``sw``?  Returns (yes, messages);
        ``end(sw, conn)`` ends an entry and returns its messages."""
        if not self.max_entries:
            return True, []
        used = self.entries()
        self.pressure = used >= PRESSURE * self.max_entries
        if not self.pressure:
            return True, []
        out = []
        for _ in range(DROP_PER_NEW):
            conn = self._oldest_half_open(sw, now)
            if conn is None:
                break
            out += end(sw, conn)
            used -= 1
            self.counters["drop_entry"] += 1
        if used >= self.max_entries:
            self.counters["refused"] += 1
            return False, out
        return True, out

    @staticmethod
    def _oldest_half_open(sw, now):
        while sw.half_open:
            key = sw.half_open[0]
            conn = sw.conns.get(key)
            if conn is None or conn.state != "SYN_RECV":
                sw.half_open.popleft()
                continue
            if now - conn.seen < MIN_AGE:
                return None
            sw.half_open.popleft()
            return conn
        return None

    @staticmethod
    def track(sw, conn):
        """A new TCP connection (SYN_RECV): a candidate for drop_entry."""
        sw.half_open.append(conn.key)
        if len(sw.half_open) > 2 * len(sw.conns) + 64:
            # forget the keys of entries that have left or moved on
            sw.half_open = collections.deque(
                k for k in sw.half_open
                if getattr(sw.conns.get(k), "state", None) == "SYN_RECV")
