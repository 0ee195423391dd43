"""IPVS's rate estimator (``ip_vs_est.c``): what ``ipvsadm -L --rate`` shows.

Every 2 seconds the kernel takes each counter's increase since the last
sample and moves a fixed-point rate a quarter of the way towards it:
connections and packets per second scaled by 2^10, bytes per second by
2^5 (``rate = delta << 9`` and ``delta << 4``: the 2-second sample already
halved), ``avg += (rate - avg) >> 2``.  Reading rounds up from half a unit:
``(avg + 0x1FF) >> 10`` and ``(avg + 0xF) >> 5``.  ``ipvsadm -Z`` zeroes the
rates and takes the current counters as the new start.

The arithmetic here is the kernel's, on Python's unbounded integers (its
``>>`` on negative numbers is arithmetic, as the kernel's s64 shift is on
every architecture Linux runs on).  Stdlib only.
"""

INTERVAL = 2.0        # s: the kernel's estimation timer

_COUNTERS = ("conns", "inpkts", "outpkts", "inbytes", "outbytes")
_RATES = ("cps", "inpps", "outpps", "inbps", "outbps")
_SHIFT = (9, 9, 9, 4, 4)        # per-2-seconds deltas to fixed point
_READ = ((0x1FF, 10),) * 3 + ((0xF, 5),) * 2


class Estimator:
    """The five rates of one ``ip_vs_stats`` (a service, a real server, the total)."""

    __slots__ = ("last", "avg")

    def __init__(self, stats=None):
        self.last = [getattr(stats, name) for name in _COUNTERS] if stats else [0] * 5
        self.avg = [0] * 5

    def sample(self, stats):
        """One 2-second tick of ``estimation_timer()`` for counters ``stats``."""
        for i, name in enumerate(_COUNTERS):
            value = getattr(stats, name)
            rate = (value - self.last[i]) << _SHIFT[i]
            self.last[i] = value
            self.avg[i] += (rate - self.avg[i]) >> 2

    def zero(self, stats):
        """``ip_vs_zero_estimator()``: rates 0, the counters as they are now the start."""
        self.last = [getattr(stats, name) for name in _COUNTERS]
        self.avg = [0] * 5

    def read(self):
        """``ip_vs_read_estimator()``: the rates as ipvsadm shows them."""
        return {name: (avg + add) >> shift
                for name, avg, (add, shift) in zip(_RATES, self.avg, _READ)}

    def to_dict(self):
        return self.read()
