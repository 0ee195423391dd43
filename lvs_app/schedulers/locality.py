"""Locality-based least connection: ip_vs_lblc.c (lblc), ip_vs_lblcr.c (lblcr)."""

from lvs_app.schedulers.base import Scheduler, _wlc_pick, overhead
from lvs_app.schedulers.hashing import addr_fold, hash_32

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
        """One run of the kernel's 60-second GC timer; returns entries removed.

        ``ip_vs_lblc_check_expire()`` / ``ip_vs_lblcr_check_expire()``: every
        ``COUNT_FOR_FULL_EXPIRATION``-th run (runs that had to trim an
        over-full cache do not count) drops every entry idle for
        ``expiration`` (lblc_expiration / lblcr_expiration, default 24 h);
        other runs do something only while the cache holds more than
        ``max_size`` entries: entries idle for ``ENTRY_TIMEOUT`` (6 min) go,
        bucket by bucket from the rover on.  Whole entries only: lblcr's set
        shrinking is done by ``schedule``, as in the kernel.
        """
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
    """ip_vs_lblcr.c: a growing (and slowly shrinking) server set per address.

    The set shrinks where the kernel shrinks it, in ``ip_vs_lblcr_schedule()``
    and not in the GC timer: when a packet for the address is scheduled, a
    set of two or more that has not changed for ``expiration`` (strictly
    more) loses its most loaded member.
    """

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
