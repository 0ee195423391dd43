"""What every IPVS scheduler shares: the packet key, the base class, helpers.

``Scheduler`` mirrors the kernel's ``struct ip_vs_scheduler`` hooks
(net/netfilter/ipvs/ip_vs_sched.c, include/net/ip_vs.h): ``update`` stands
for ``add_dest``/``del_dest``/``upd_dest``, ``schedule`` for ``schedule``,
and ``gc`` for the periodic timers some schedulers arm in ``init_service``.
"""

import random
from dataclasses import dataclass

from lvs_app.model import SCHED_FLAG_BITS

U32 = 0xFFFFFFFF

# Scheduler flag names -> IP_VS_SVC_F_SCHED{1,2,3} (one table, in the model).
FLAG_BITS = SCHED_FLAG_BITS
SCHED1 = FLAG_BITS["flag-1"]   # 1: sh-fallback / mh-fallback
SCHED2 = FLAG_BITS["flag-2"]   # 2: sh-port / mh-port


@dataclass(frozen=True)
class SchedKey:
    """What a packet offers the scheduler."""

    src: object            # client address (ipaddress object)
    sport: int             # client port (0 for protocols without ports)
    dst: object            # packet destination address (the VIP)
    dport: int


# --------------------------------------------------------------------------
# helpers shared by several schedulers

def overhead(server):
    """``ip_vs_dest_conn_overhead()``: activeconns*256 + inactconns."""
    return (server.activeconns << 8) + server.inactconns


def _key(server):
    """What identifies a destination within its service."""
    return (server.address, server.port)


def _usable(server):
    """Not overloaded and weight > 0: what rr/lc/nq/... accept."""
    return not server.overloaded and server.weight > 0


def _wlc_pick(servers, cost):
    """First usable server, then anyone cheaper by cross-multiplication."""
    least = None
    for server in servers:
        if least is None:
            if _usable(server):
                least, loh = server, cost(server)
            continue
        if server.overloaded:
            continue
        doh = cost(server)
        if loh * server.weight > doh * least.weight:
            least, loh = server, doh
    return least


# --------------------------------------------------------------------------
# the base class

class Scheduler:
    """One scheduler instance per virtual service."""

    name = "?"
    # Does the scheduler keep state derived from the server list?
    stateful = False

    def __init__(self, flags=(), rng=None):
        bits = 0
        for flag in flags:
            if flag not in FLAG_BITS:
                raise ValueError(f"unknown scheduler flag {flag!r}")
            bits |= FLAG_BITS[flag]
        self.flags = tuple(flags)
        self.flag_bits = bits
        self.rng = rng if rng is not None else random.Random()
        self._servers = None      # the list seen at the last update
        self._sig = None

    def __repr__(self):
        return f"<{type(self).__name__} {self.name} flags={self.flags}>"

    # -- state bookkeeping ---------------------------------------------
    def _signature(self, servers):
        """What the scheduler's state depends on (compared by ``schedule``)."""
        return tuple(map(_key, servers))

    def _changed(self, old, new):
        """React to a list change (the kernel's add/del/upd_dest hooks)."""

    def update(self, servers):
        """Call after every add/delete/edit of a real server (kernel list order)."""
        new = list(servers)
        old = self._servers if self._servers is not None else []
        self._changed(old, new)
        self._servers = new
        self._sig = self._signature(new)

    def _sync(self, servers):
        if self.stateful and (self._servers is None
                              or self._signature(servers) != self._sig):
            self.update(servers)

    # -- scheduling ----------------------------------------------------
    def schedule(self, servers, key, now=0.0):
        """Pick a real server for ``key`` or return None."""
        self._sync(servers)
        return self._pick(servers, key, now)

    def _pick(self, servers, key, now):
        raise NotImplementedError

    # -- periodic ageing -----------------------------------------------
    def gc(self, now):
        """Age the scheduler's own state; returns how many entries it removed.

        The hook for a timed job: call ``gc(now)`` on every scheduler,
        whatever its type, about every ``CHECK_EXPIRE_INTERVAL`` (60) seconds,
        ``now`` on the same clock as the ``now`` given to ``schedule``.  In
        the kernel only lblc and lblcr keep timed state (their per-address
        caches, cleaned by a 60-second timer); they override this.  Every
        other scheduler has nothing to age: this does nothing and returns 0,
        and never changes what ``schedule`` picks.
        """
        return 0
