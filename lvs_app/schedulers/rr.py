"""Round robin: ip_vs_rr.c (rr) and ip_vs_wrr.c (wrr)."""

import math

from lvs_app.schedulers.base import Scheduler, _key, _usable


class RoundRobin(Scheduler):
    """ip_vs_rr.c: walk on from the last chosen server."""

    name = "rr"
    stateful = True

    def __init__(self, flags=(), rng=None):
        super().__init__(flags, rng)
        self.cursor = None        # (address, port) of the last chosen; None = head

    def _changed(self, old, new):
        # Only deletion matters (rr has no add/upd hook): if the cursor's
        # server went away, the cursor steps back to the entry before it.
        cur = self.cursor
        new_keys = set(map(_key, new))
        if cur is None or cur in new_keys:
            return
        old_keys = [_key(s) for s in old]
        self.cursor = None
        if cur not in old_keys:
            return
        for prev in reversed(old_keys[:old_keys.index(cur)]):
            if prev in new_keys:
                self.cursor = prev
                return

    def _pick(self, servers, key, now):
        n = len(servers)
        start = 0
        if self.cursor is not None:
            index = next((i for i, s in enumerate(servers)
                          if _key(s) == self.cursor), None)
            if index is not None:
                start = index + 1
        # From the head: one pass.  From a server: the rest of the list, then
        # from the head up to and including that server.
        for step in range(n):
            server = servers[(start + step) % n]
            if _usable(server):
                self.cursor = _key(server)
                return server
        return None


class WeightedRoundRobin(Scheduler):
    """ip_vs_wrr.c: gcd-stepped current weight with the "last pass" rule."""

    name = "wrr"
    stateful = True

    def __init__(self, flags=(), rng=None):
        super().__init__(flags, rng)
        self.cl = -1     # index of the last chosen server; -1 = list head
        self.cw = 0      # current weight
        self.mw = 0      # max weight - (di - 1)
        self.di = 1      # gcd of the positive weights

    def _signature(self, servers):
        return tuple((s.address, s.port, s.weight) for s in servers)

    def _changed(self, old, new):
        g = 0
        for server in new:
            if server.weight > 0:
                g = math.gcd(server.weight, g) if g > 0 else server.weight
        self.di = g or 1
        self.mw = max([s.weight for s in new] + [0]) - (self.di - 1)
        self.cl = -1
        if self.cw > self.mw or self.cw == 0:
            self.cw = self.mw
        elif self.di > 1:
            self.cw = (self.cw // self.di) * self.di + 1

    def _pick(self, servers, key, now):
        if self.mw == 0:
            return None
        n = len(servers)
        pos = self.cl if self.cl < n else -1
        last = pos
        stop = None
        last_pass = restarted = False
        while True:
            for j in range(pos + 1, n):
                server = servers[j]
                if not server.overloaded and server.weight >= self.cw:
                    self.cl = j
                    return server
                if j == stop:
                    self.cl = j
                    return None
            pos = -1                      # fell off the end: back at the head
            self.cw -= self.di
            if self.cw <= 0:
                self.cw = self.mw
                if last_pass or last == -1:
                    self.cl = -1
                    return None
                restarted = True
            last_pass = self.cw <= self.di
            if last_pass and restarted and last != -1:
                stop = last
