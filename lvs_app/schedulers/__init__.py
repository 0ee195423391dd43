"""The IPVS job schedulers, selection for selection as the kernel codes them.

Stdlib only.  One :class:`Scheduler` instance belongs to one virtual service.
The director hands it the service's real servers in *kernel list order*
(most recently added first, see ``VirtualService.sched_list``) and a
:class:`SchedKey` describing the packet; ``schedule`` returns the chosen
``RealServer`` or ``None`` ("no destination available").

``update(servers)`` mirrors the kernel's ``add_dest``/``del_dest``/``upd_dest``
hooks and must be called after every add, delete or edit of a real server.
Schedulers that keep state also notice list changes by themselves (each keeps
a signature of what its state depends on), so ``schedule`` is correct even
if ``update`` was never called; the explicit call still matters where the
kernel reacts to an edit that changes nothing visible (wrr resets its cursor
on every edit).

A real server is identified by ``(address, port)``, as the kernel identifies
a destination within a service, never by Python object identity: tables hold
list positions and cursors hold keys, so handing over copies of the server
objects (e.g. a deep-copied service table) changes nothing.

Where this follows the kernel (reference/ipvs.md section 2 and the kernel
sources ``net/netfilter/ipvs/ip_vs_{rr,wrr,lc,wlc,sed,nq,fo,ovf,dh,sh,mh,
lblc,lblcr,twos}.c``, ``include/linux/hash.h``, ``include/linux/siphash.h``,
``lib/siphash.c``), the behaviour, quirks included, is deliberate:

* ties always go to the earlier list entry (= the most recently added server);
* weighted comparisons are integer cross-multiplications, never divisions;
* the hashing schedulers (dh, sh, mh) do not spread a quiesced (weight 0) or
  overloaded server's share over the others unless a ``*-fallback`` flag says
  so; dh has no fallback at all;
* lblc, like the kernel, does *not* look at the overload flag (upper
  threshold) when it re-uses a cached server; it only applies its own
  "activeconns > weight while someone else is below half load" rule.

``gc(now)`` is the periodic ageing hook: every scheduler has it, so a timed
job can call it on all of them (about every ``CHECK_EXPIRE_INTERVAL``
seconds) without looking at their type.  Only lblc and lblcr have timed
state (their per-address caches); for all others it does nothing.

The package follows the kernel's grouping: ``base`` (SchedKey, Scheduler,
shared helpers), ``rr`` (rr, wrr), ``leastconn`` (lc, wlc, sed, nq, fo,
ovf, twos), ``hashing`` (dh, sh, mh and the hash functions) and
``locality`` (lblc, lblcr).  Everything is importable from
``lvs_app.schedulers`` itself, as before the split.
"""

from lvs_app.schedulers.base import (
    FLAG_BITS, SCHED1, SCHED2, U32, SchedKey, Scheduler, overhead)
from lvs_app.schedulers.rr import RoundRobin, WeightedRoundRobin
from lvs_app.schedulers.leastconn import (
    LeastConnection, NeverQueue, PowerOfTwo, ShortestExpectedDelay,
    WeightedFailover, WeightedLeastConnection, WeightedOverflow)
from lvs_app.schedulers.hashing import (
    GOLDEN_RATIO_32, MH_HASH1, MH_HASH2, MH_PRIMES, MH_TAB_BITS, MH_TAB_INDEX,
    MH_TAB_SIZE, U64, DestinationHashing, MaglevHashing, SourceHashing,
    addr_fold, hash_32, hsiphash_u32, siphash)
from lvs_app.schedulers.locality import (
    CHECK_EXPIRE_INTERVAL, COUNT_FOR_FULL_EXPIRATION, DEFAULT_EXPIRATION,
    ENTRY_TIMEOUT, LBLC_TAB_BITS, LBLC_TAB_SIZE, LocalityLeastConnection,
    LocalityLeastConnectionReplication)

__all__ = ["SchedKey", "Scheduler", "SCHEDULERS", "make_scheduler", "overhead",
           "hash_32", "addr_fold", "siphash", "hsiphash_u32", "FLAG_BITS"]

SCHEDULERS = {cls.name: cls for cls in (
    RoundRobin, WeightedRoundRobin, LeastConnection, WeightedLeastConnection,
    ShortestExpectedDelay, NeverQueue, WeightedFailover, WeightedOverflow,
    DestinationHashing, SourceHashing, MaglevHashing, LocalityLeastConnection,
    LocalityLeastConnectionReplication, PowerOfTwo)}


def make_scheduler(name, flags=(), rng=None):
    """A fresh scheduler instance for one service; ValueError if unknown."""
    try:
        cls = SCHEDULERS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown scheduler {name!r}; choose one of "
                         f"{', '.join(SCHEDULERS)}") from None
    return cls(flags=flags, rng=rng)
