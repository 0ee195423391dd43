"""IPVS's rate estimator, against figures worked out by hand from ip_vs_est.c."""

from lvs_app.estimator import Estimator
from lvs_app.model import Stats


def feed(est, stats, **step):
    for name, value in step.items():
        setattr(stats, name, getattr(stats, name) + value)
    est.sample(stats)
    return est.read()


def test_a_steady_rate_converges_a_quarter_at_a_time():
    est, stats = Estimator(), Stats()
    # 10 connections per 2 s: rate = 10 << 9 = 5120; avg 0 -> 1280 -> 2240 -> 2960 -> 3500
    # read: (avg + 0x1FF) >> 10 = 1, 2, 3, 3
    assert [feed(est, stats, conns=10)["cps"] for _ in range(4)] == [1, 2, 3, 3]
    assert est.avg[0] == 3500
    for _ in range(40):
        feed(est, stats, conns=10)
    # the shift stops moving once the gap is under 4: the kernel's avg settles at 5117
    assert est.read()["cps"] == 5 and est.avg[0] == 5117


def test_bytes_are_scaled_by_2_to_the_5():
    est, stats = Estimator(), Stats()
    # 2000 bytes per 2 s: rate = 2000 << 4 = 32000; avg 8000; read (8000 + 15) >> 5 = 250
    assert feed(est, stats, inbytes=2000, outbytes=1) == {
        "cps": 0, "inpps": 0, "outpps": 0, "inbps": 250, "outbps": 0}
    # outbytes: 1 << 4 = 16, avg 4, read (4 + 15) >> 5 = 0


def test_packets_and_a_falling_rate():
    est, stats = Estimator(), Stats()
    for _ in range(60):
        feed(est, stats, inpkts=2000, outpkts=1000)
    assert est.read()["inpps"] == 1000 and est.read()["outpps"] == 500
    # traffic stops: avg -= avg >> 2 each sample (an arithmetic shift of a negative delta)
    avg = est.avg[1]
    feed(est, stats)
    assert est.avg[1] == avg + ((0 - avg) >> 2)
    for _ in range(60):
        feed(est, stats)
    assert est.read()["inpps"] == 0


def test_zero_takes_the_counters_as_the_new_start():
    est, stats = Estimator(), Stats(conns=100)
    feed(est, stats, conns=50)
    est.zero(stats)
    assert est.read()["cps"] == 0 and est.last[0] == 150
    assert feed(est, stats)["cps"] == 0          # no jump from the old counters
