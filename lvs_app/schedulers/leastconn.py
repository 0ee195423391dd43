"""The stateless load-comparing schedulers.

ip_vs_lc.c, ip_vs_wlc.c, ip_vs_sed.c, ip_vs_nq.c, ip_vs_fo.c, ip_vs_ovf.c and
ip_vs_twos.c: each picks from the current connection counts and weights
alone and keeps no state between packets (twos only its random source).
"""

from lvs_app.schedulers.base import U32, Scheduler, _usable, _wlc_pick, overhead


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
# twos

def _s32(value):
    """Wrap to a C ``int`` (the kernel is built with -fno-strict-overflow)."""
    value &= U32
    return value - (1 << 32) if value & 0x80000000 else value


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
