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
"""

import math
import random
from dataclasses import dataclass

from lvs_app.model import SCHED_FLAG_BITS

__all__ = ["SchedKey", "Scheduler", "SCHEDULERS", "make_scheduler", "overhead",
           "hash_32", "addr_fold", "siphash", "hsiphash_u32", "FLAG_BITS"]

U32 = 0xFFFFFFFF
U64 = 0xFFFFFFFFFFFFFFFF

# Scheduler flag names -> IP_VS_SVC_F_SCHED{1,2,3} (one table, in the model).
FLAG_BITS = SCHED_FLAG_BITS
SCHED1 = 1        # sh-fallback / mh-fallback
SCHED2 = 2        # sh-port / mh-port


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


def _s32(value):
    """Wrap to a C ``int`` (the kernel is built with -fno-strict-overflow)."""
    value &= U32
    return value - (1 << 32) if value & 0x80000000 else value


GOLDEN_RATIO_32 = 0x61C88647


def hash_32(val, bits):
    """``include/linux/hash.h`` hash_32(): u32 multiply, keep the top bits."""
    return ((val & U32) * GOLDEN_RATIO_32 & U32) >> (32 - bits)


def addr_fold(addr, af=None):
    """``ntohl(addr_fold)`` as the IPVS hashing schedulers compute it.

    IPv4: the address as a host-order integer.  IPv6: XOR of its four 32-bit
    words.  ``af`` is the *service* family when it differs from the
    address's own (mixed-family tunnel servers, which only mh hashes): the
    kernel then reads the ``nf_inet_addr`` union with the service's family,
    i.e. an IPv4 address in an IPv6 service folds to itself (the other three
    words are zero) and an IPv6 address in an IPv4 service folds to its
    first word.
    """
    value = int(addr)
    if addr.version == 4:
        return value
    if af == 4:
        return value >> 96
    return ((value >> 96) ^ (value >> 64) ^ (value >> 32) ^ value) & U32


# --------------------------------------------------------------------------
# SipHash as in lib/siphash.c
#
# Verified against torvalds/linux lib/siphash.c and include/linux/siphash.h:
# * hsiphash_key_t is ``unsigned long key[2]``; on a 64-bit kernel those are
#   two u64 words and hsiphash() is SipHash-1-3 (one compression round per
#   8-byte word, three finalisation rounds) over the message, returning the
#   low 32 bits of the u64 result.  (32-bit kernels use HalfSipHash-1-3
#   instead; we model the 64-bit kernel, the only one anybody runs IPVS on
#   at scale.)
# * For a 4-byte message (what ip_vs_mh.c hashes: one u32 on the stack)
#   hsiphash() resolves to hsiphash_1u32(): no compression round, the word
#   goes into the length block ``b = (4 << 56) | value``; the message is the
#   u32's little-endian bytes on x86, which is exactly that.
# * The core (initial constants "somepseudorandomlygeneratedbytes", rotation
#   amounts 13/32/16/21/17/32, v2 ^= 0xff before finalisation) is standard
#   SipHash; siphash() in the kernel is SipHash-2-4.  The unit tests check
#   the core against the reference SipHash-2-4 test vectors and the kernel's
#   own hsiphash self-test vectors (lib/test_siphash.c, 64-bit).

_SIP_INIT = (0x736F6D6570736575, 0x646F72616E646F6D,
             0x6C7967656E657261, 0x7465646279746573)


def _rotl(x, b):
    return ((x << b) | (x >> (64 - b))) & U64


def _sipround(v0, v1, v2, v3):
    v0 = (v0 + v1) & U64
    v1 = _rotl(v1, 13) ^ v0
    v0 = _rotl(v0, 32)
    v2 = (v2 + v3) & U64
    v3 = _rotl(v3, 16) ^ v2
    v0 = (v0 + v3) & U64
    v3 = _rotl(v3, 21) ^ v0
    v2 = (v2 + v1) & U64
    v1 = _rotl(v1, 17) ^ v2
    v2 = _rotl(v2, 32)
    return v0, v1, v2, v3


def siphash(data, key, c_rounds=2, d_rounds=4):
    """SipHash-c-d of ``data`` (bytes) under ``key`` = (k0, k1) u64 words."""
    k0, k1 = key
    v0 = _SIP_INIT[0] ^ k0
    v1 = _SIP_INIT[1] ^ k1
    v2 = _SIP_INIT[2] ^ k0
    v3 = _SIP_INIT[3] ^ k1
    whole = len(data) - len(data) % 8
    for i in range(0, whole, 8):
        m = int.from_bytes(data[i:i + 8], "little")
        v3 ^= m
        for _ in range(c_rounds):
            v0, v1, v2, v3 = _sipround(v0, v1, v2, v3)
        v0 ^= m
    last = ((len(data) & 0xFF) << 56) | int.from_bytes(data[whole:], "little")
    v3 ^= last
    for _ in range(c_rounds):
        v0, v1, v2, v3 = _sipround(v0, v1, v2, v3)
    v0 ^= last
    v2 ^= 0xFF
    for _ in range(d_rounds):
        v0, v1, v2, v3 = _sipround(v0, v1, v2, v3)
    return v0 ^ v1 ^ v2 ^ v3


def hsiphash_u32(value, key):
    """The kernel's 64-bit ``hsiphash(&u32, 4, key)`` (= hsiphash_1u32)."""
    return siphash((value & U32).to_bytes(4, "little"), key, 1, 3) & U32


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


# --------------------------------------------------------------------------
# rr / wrr

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


# --------------------------------------------------------------------------
# the stateless least-connection family

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


def _sed_cost(server):
    return server.activeconns + 1


class LeastConnection(Scheduler):
    """ip_vs_lc.c: smallest overhead, weight only matters when it is 0."""

    name = "lc"

    def _pick(self, servers, key, now):
        least = None
        for server in servers:
            if server.overloaded or server.weight == 0:
                continue
            doh = overhead(server)
            if least is None or doh < loh:
                least, loh = server, doh
        return least


class WeightedLeastConnection(Scheduler):
    """ip_vs_wlc.c: minimise overhead/weight."""

    name = "wlc"

    def _pick(self, servers, key, now):
        return _wlc_pick(servers, overhead)


class ShortestExpectedDelay(Scheduler):
    """ip_vs_sed.c: minimise (activeconns+1)/weight."""

    name = "sed"

    def _pick(self, servers, key, now):
        return _wlc_pick(servers, _sed_cost)


class NeverQueue(Scheduler):
    """ip_vs_nq.c: the first idle server, else SED."""

    name = "nq"

    def _pick(self, servers, key, now):
        least = None
        for server in servers:
            if server.overloaded or server.weight == 0:
                continue
            doh = _sed_cost(server)
            if server.activeconns == 0:
                return server
            if least is None or loh * server.weight > doh * least.weight:
                least, loh = server, doh
        return least


class WeightedFailover(Scheduler):
    """ip_vs_fo.c: the highest weight wins; the first of equals."""

    name = "fo"

    def _pick(self, servers, key, now):
        best, hw = None, 0
        for server in servers:
            if not server.overloaded and server.weight > hw:
                best, hw = server, server.weight
        return best


class WeightedOverflow(Scheduler):
    """ip_vs_ovf.c: highest weight among servers with activeconns <= weight."""

    name = "ovf"

    def _pick(self, servers, key, now):
        best, hw = None, 0
        for server in servers:
            w = server.weight
            if server.overloaded or server.activeconns > w or w == 0:
                continue
            if best is None or w > hw:
                best, hw = server, w
        return best


# --------------------------------------------------------------------------
# dh / sh: 256-bucket tables

class _BucketHashing(Scheduler):
    TAB_BITS = 8
    TAB_SIZE = 1 << TAB_BITS
    TAB_MASK = TAB_SIZE - 1
    stateful = True

    def __init__(self, flags=(), rng=None):
        super().__init__(flags, rng)
        self._table = [None] * self.TAB_SIZE     # list positions, None = empty

    @property
    def buckets(self):
        """The table as server objects (of the list last seen)."""
        return [None if i is None else self._servers[i] for i in self._table]

    def _share(self, server):
        """How many consecutive buckets one turn of ``server`` fills."""
        return 1

    def _changed(self, old, new):
        table = [None] * self.TAB_SIZE
        if new:
            index = count = 0
            for b in range(self.TAB_SIZE):
                table[b] = index
                count += 1
                if count >= self._share(new[index]):
                    index = (index + 1) % len(new)
                    count = 0
        self._table = table

    @staticmethod
    def _unavailable(server):
        return server.weight <= 0 or server.overloaded


class DestinationHashing(_BucketHashing):
    """ip_vs_dh.c: bucket hash_32(daddr) -> server, no weights, no fallback.

    The kernel rebuilds the table on add/delete only; weights are not part
    of it, so rebuilding on an edit would not change anything anyway.
    """

    name = "dh"

    def _pick(self, servers, key, now):
        index = self._table[hash_32(addr_fold(key.dst), self.TAB_BITS)]
        if index is None or self._unavailable(servers[index]):
            return None
        return servers[index]


class SourceHashing(_BucketHashing):
    """ip_vs_sh.c: ``weight`` consecutive buckets per server (at least one)."""

    name = "sh"

    def _signature(self, servers):
        # rebuilt on add, delete and edit (upd_dest): weights matter
        return tuple((s.address, s.port, s.weight) for s in servers)

    def _share(self, server):
        return server.weight

    def _hashkey(self, fold, port, offset):
        return (offset + hash_32((port + fold) & U32, self.TAB_BITS)) & self.TAB_MASK

    def _pick(self, servers, key, now):
        port = key.sport if self.flag_bits & SCHED2 else 0
        fold = addr_fold(key.src)
        table = self._table
        ihash = self._hashkey(fold, port, 0)
        if table[ihash] is None:
            return None
        server = servers[table[ihash]]
        if not self._unavailable(server):
            return server
        if not self.flag_bits & SCHED1:
            return None
        # sh-fallback: rehash with growing offsets; an empty bucket ends it
        for offset in range(self.TAB_SIZE):
            roffset = (offset + ihash) % self.TAB_SIZE
            index = table[self._hashkey(fold, port, roffset)]
            if index is None:
                break
            if not self._unavailable(servers[index]):
                return servers[index]
        return None


# --------------------------------------------------------------------------
# mh: Maglev

MH_PRIMES = (251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071)
MH_TAB_INDEX = 12                        # CONFIG_IP_VS_MH_TAB_INDEX default
MH_TAB_SIZE = MH_PRIMES[MH_TAB_INDEX - 8]  # 4093
MH_TAB_BITS = MH_TAB_INDEX // 2          # 6: the bits "turns" may occupy
MH_HASH1 = (2654435761, 2654435761)      # the fixed hsiphash keys of ip_vs_mh.c
MH_HASH2 = (2654446892, 2654446892)


class MaglevHashing(Scheduler):
    """ip_vs_mh.c: Maglev lookup table of 4093 slots, built from last_weight."""

    name = "mh"
    stateful = True
    M = MH_TAB_SIZE

    def __init__(self, flags=(), rng=None):
        super().__init__(flags, rng)
        self._table = [None] * self.M     # list positions, None = empty
        self.gcd = 0
        self.rshift = 0
        # Service address family; None = take each address's own family.
        # Only matters for servers of the other family (tunnels).
        self.af = None

    def _signature(self, servers):
        # The service family only changes the table when a server of the
        # other family is present.
        af = self.af
        if af is not None and all(s.address.version == af for s in servers):
            af = None
        return (af, tuple((s.address, s.port, s.last_weight) for s in servers))

    @property
    def lookup(self):
        """The lookup table as server objects (of the list last seen)."""
        return [None if i is None else self._servers[i] for i in self._table]

    def schedule(self, servers, key, now=0.0):
        self.af = key.src.version
        return super().schedule(servers, key, now)

    def _hashkey(self, addr, port, key, offset):
        value = (offset + port + addr_fold(addr, self.af)) & U32
        return hsiphash_u32(value, key)

    def _changed(self, old, new):
        weights = [s.last_weight for s in new]
        g = 0
        for w in weights:
            if w > 0:
                g = math.gcd(w, g) if g > 0 else w
        self.gcd = g
        if g < 1:
            self.rshift = 0
            self._table = [None] * self.M          # nobody has slots
            return
        shift = (max(weights) // g).bit_length() - MH_TAB_BITS
        self.rshift = max(shift, 0)
        if len(new) > self.M:
            # the kernel refuses (-EINVAL) and leaves the table alone; as
            # positions would be stale, we empty it instead
            self._table = [None] * self.M
            return
        M = self.M
        setup = []
        for server in new:
            offset = self._hashkey(server.address, server.port, MH_HASH1, 0) % M
            skip = self._hashkey(server.address, server.port, MH_HASH2, 0) % (M - 1) + 1
            lw = server.last_weight
            turns = ((lw // g) >> self.rshift) or (1 if lw != 0 else 0)
            setup.append([offset, skip, turns])
        taken = bytearray(M)
        lookup = [None] * M
        filled = 0
        while filled < M:
            for index, ds in enumerate(setup):
                turns = ds[2]
                for _ in range(turns):       # a server with 0 turns gets nothing
                    c = ds[0]
                    while taken[c]:
                        c += ds[1]
                        if c >= M:
                            c -= M
                    ds[0] = c
                    taken[c] = 1
                    lookup[c] = index
                    filled += 1
                    if filled == M:
                        break
                if filled == M:
                    break
        self._table = lookup

    @staticmethod
    def _unavailable(server):
        return server.weight <= 0 or server.overloaded

    def _pick(self, servers, key, now):
        port = key.sport if self.flag_bits & SCHED2 else 0
        M = self.M
        table = self._table
        ihash = self._hashkey(key.src, port, MH_HASH1, 0) % M
        if table[ihash] is None:
            return None
        server = servers[table[ihash]]
        if not self._unavailable(server):
            return server
        if not self.flag_bits & SCHED1:
            return None
        for offset in range(M):
            roffset = (offset + ihash) % M
            index = table[self._hashkey(key.src, port, MH_HASH1, roffset) % M]
            if index is None:
                break
            if not self._unavailable(servers[index]):
                return servers[index]
        return None


# --------------------------------------------------------------------------
# lblc / lblcr: per-destination-address caches

CHECK_EXPIRE_INTERVAL = 60          # the GC timer period, seconds
ENTRY_TIMEOUT = 6 * 60              # idle time before a full table may drop an entry
DEFAULT_EXPIRATION = 24 * 60 * 60   # lblc_expiration / lblcr_expiration
COUNT_FOR_FULL_EXPIRATION = 30
LBLC_TAB_BITS = 10
LBLC_TAB_SIZE = 1 << LBLC_TAB_BITS


def _server_map(servers):
    return {(s.address, s.port): s for s in servers}


def _lblc_overloaded(server, servers):
    """The lblc/lblcr rule: busier than its weight while another is below half."""
    if server.activeconns > server.weight:
        return any(d.activeconns * 2 < d.weight for d in servers)
    return False


class _Entry:
    __slots__ = ("addr", "dest", "lastuse", "members", "lastmod")

    def __init__(self, addr, now):
        self.addr = addr
        self.lastuse = now
        self.dest = None           # lblc: (address, port) of the cached server
        self.members = []          # lblcr: [(address, port), server] newest first
        self.lastmod = now


class _Locality(Scheduler):
    """Shared cache bookkeeping and the periodic garbage collector.

    Cached servers are remembered by (address, port): a server deleted and
    added again is the same kernel ``ip_vs_dest`` (revived from the trash),
    so the cache points at it again.  A cached server absent from the list
    is "not available".
    """

    stateful = False

    def __init__(self, flags=(), rng=None):
        super().__init__(flags, rng)
        self.cache = {}                      # destination address -> _Entry
        self.expiration = DEFAULT_EXPIRATION
        self.max_size = LBLC_TAB_SIZE * 16
        self._rover = 0
        self._counter = 1

    @staticmethod
    def _current(servers):
        return _server_map(servers)

    @staticmethod
    def _bucket(addr):
        return hash_32(addr_fold(addr), LBLC_TAB_BITS)

    def _expired(self, entry, now, timeout):
        return now >= entry.lastuse + timeout

    def gc(self, now):
        """One run of the kernel's 60-second GC timer; returns entries removed."""
        removed = 0
        if self._counter % COUNT_FOR_FULL_EXPIRATION == 0:
            for addr in [a for a, e in self.cache.items()
                         if self._expired(e, now, self.expiration)]:
                del self.cache[addr]
                removed += 1
            self._counter = 1
            return removed
        if len(self.cache) <= self.max_size:
            self._counter += 1
            return 0
        goal = min((len(self.cache) - self.max_size) * 4 // 3, self.max_size // 2)
        by_bucket = {}
        for addr, entry in self.cache.items():
            by_bucket.setdefault(self._bucket(addr), []).append(addr)
        j = self._rover
        for _ in range(LBLC_TAB_SIZE):
            j = (j + 1) & (LBLC_TAB_SIZE - 1)
            for addr in by_bucket.get(j, ()):
                if self._expired(self.cache[addr], now, ENTRY_TIMEOUT):
                    del self.cache[addr]
                    removed += 1
                    goal -= 1
            if goal <= 0:
                break
        self._rover = j
        return removed


class LocalityLeastConnection(_Locality):
    """ip_vs_lblc.c: one cached server per destination address."""

    name = "lblc"

    def _pick(self, servers, key, now):
        current = self._current(servers)
        daddr = key.dst
        entry = self.cache.get(daddr)
        if entry is not None:
            entry.lastuse = now
            server = current.get(entry.dest)
            if (server is not None and server.weight > 0
                    and not _lblc_overloaded(server, servers)):
                return server
        server = _wlc_pick(servers, overhead)
        if server is None:
            return None
        dest = (server.address, server.port)
        if entry is None or entry.dest != dest:
            entry = _Entry(daddr, now)
            entry.dest = dest
            self.cache[daddr] = entry
        return server


class LocalityLeastConnectionReplication(_Locality):
    """ip_vs_lblcr.c: a growing (and slowly shrinking) server set per address."""

    name = "lblcr"

    @staticmethod
    def _resolve(member, current):
        """(server, available) for one set member."""
        server = current.get(member[0])
        if server is not None:
            member[1] = server
            return server, True
        return member[1], False

    def _set_min(self, entry, current):
        least = None
        for member in entry.members:
            server, available = self._resolve(member, current)
            if least is None:
                if server.overloaded:
                    continue
                if server.weight > 0 and available:
                    least, loh = server, overhead(server)
                continue
            if server.overloaded:
                continue
            doh = overhead(server)
            if loh * server.weight > doh * least.weight and available:
                least, loh = server, doh
        return least

    def _set_max(self, entry, current):
        most = None
        for member in entry.members:
            server, _ = self._resolve(member, current)
            if most is None:
                if server.weight > 0:
                    most, moh = member, overhead(server)
                    mw = server.weight
                continue
            doh = overhead(server)
            if moh * server.weight < doh * mw and server.weight > 0:
                most, moh, mw = member, doh, server.weight
        return most

    @staticmethod
    def _insert(entry, server, now):
        dest = (server.address, server.port)
        if any(m[0] == dest for m in entry.members):
            return
        entry.members.insert(0, [dest, server])
        entry.lastmod = now

    def _pick(self, servers, key, now):
        current = self._current(servers)
        daddr = key.dst
        entry = self.cache.get(daddr)
        if entry is not None:
            entry.lastuse = now
            server = self._set_min(entry, current)
            if len(entry.members) > 1 and now > entry.lastmod + self.expiration:
                most = self._set_max(entry, current)
                if most is not None:
                    entry.members = [m for m in entry.members if m is not most]
                    entry.lastmod = now
            if server is not None and not _lblc_overloaded(server, servers):
                return server
            server = _wlc_pick(servers, overhead)
            if server is None:
                return None
            self._insert(entry, server, now)
            return server
        server = _wlc_pick(servers, overhead)
        if server is None:
            return None
        entry = _Entry(daddr, now)
        self._insert(entry, server, now)
        self.cache[daddr] = entry
        return server

    def members(self, daddr):
        """The cached server set for ``daddr``, newest first (for inspection)."""
        entry = self.cache.get(daddr)
        return [m[1] for m in entry.members] if entry else []


# --------------------------------------------------------------------------
# twos

class PowerOfTwo(Scheduler):
    """ip_vs_twos.c: two weighted random picks, keep the less loaded one."""

    name = "twos"

    def _pick(self, servers, key, now):
        usable = [s for s in servers if _usable(s)]
        if not usable:
            return None
        total = sum(s.weight for s in usable) + 1
        r1 = self.rng.randrange(total)       # get_random_u32_below(total)
        r2 = self.rng.randrange(total)
        choice1 = choice2 = None
        w1 = w2 = -1
        oh1 = oh2 = 0
        for server in usable:
            w = server.weight
            r1 -= w
            r2 -= w
            if r1 <= 0 and w1 == -1:
                choice1, w1, oh1 = server, w, overhead(server)
            if r2 <= 0 and w2 == -1:
                choice2, w2, oh2 = server, w, overhead(server)
            if w1 != -1 and w2 != -1:
                break
        # plain int products in the kernel: wrap like C does
        if choice2 is not None and _s32(w2 * oh1) > _s32(w1 * oh2):
            return choice2
        return choice1


# --------------------------------------------------------------------------

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
