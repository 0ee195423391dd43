"""Unit tests for lvs_app.schedulers.

Expected sequences and tables are worked out from the kernel's code
(net/netfilter/ipvs/ip_vs_*.c, include/linux/hash.h, lib/siphash.c); the
hash primitives are pinned to published test vectors, and where a test needs
a hash value it recomputes it from the formula written out here, not from
the module's helpers.
"""

import copy
import ipaddress
import random

import pytest

from dataclasses import dataclass

from lvs_app.model import RealServer
from lvs_app import schedulers as sched
from lvs_app.schedulers import (SCHEDULERS, SchedKey, hash_32, hsiphash_u32,
                                make_scheduler, overhead, siphash)

ip = ipaddress.ip_address
M32 = 0xFFFFFFFF
NAMES = "ABCDEFGH"


@dataclass
class Srv(RealServer):
    """What a scheduler sees of a real server (lvs_app.state.Dest in the
    director): its configuration and its counters, all writable here."""

    activeconns: int = 0
    inactconns: int = 0
    persistconns: int = 0
    overloaded: bool = False


def srv(name, weight=1, port=80, **kw):
    """Server ``A`` is 10.0.0.1, ``B`` 10.0.0.2, ...; last_weight = weight."""
    address = ip(f"10.0.0.{NAMES.index(name) + 1}")
    return Srv(address, port, weight=weight, last_weight=weight, **kw)


def name(server):
    return "-" if server is None else NAMES[int(server.address) - int(ip("10.0.0.1"))]


def key(src="192.0.2.1", sport=1000, dst="198.51.100.1", dport=80):
    return SchedKey(ip(src), sport, ip(dst), dport)


def run(scheduler, servers, n, k=None):
    k = k or key()
    return "".join(name(scheduler.schedule(servers, k)) for _ in range(n))


def h32(value, bits):
    """hash_32 written out independently: u32 multiply, top bits."""
    return ((value * 0x61C88647) & M32) >> (32 - bits)


# --------------------------------------------------------------------------
# API

def test_registry_and_factory():
    assert set(SCHEDULERS) == {"rr", "wrr", "lc", "wlc", "sed", "nq", "fo", "ovf",
                               "dh", "sh", "mh", "lblc", "lblcr", "twos"}
    for scheduler_name, cls in SCHEDULERS.items():
        s = make_scheduler(scheduler_name)
        assert isinstance(s, cls) and s.name == scheduler_name
    with pytest.raises(ValueError):
        make_scheduler("pcc")
    with pytest.raises(ValueError):
        make_scheduler("rr", flags=("sh-bogus",))


def test_overhead_is_active_times_256_plus_inactive():
    assert overhead(srv("A", activeconns=3, inactconns=7)) == 3 * 256 + 7


@pytest.mark.parametrize("scheduler_name", sorted(SCHEDULERS))
def test_every_scheduler_works_without_update_and_handles_empty(scheduler_name):
    s = make_scheduler(scheduler_name, rng=random.Random(1))
    assert s.schedule([], key()) is None
    servers = [srv("A"), srv("B")]
    assert s.schedule(servers, key()) in servers
    quiesced = [srv("C", weight=0), srv("D", weight=1, overloaded=True)]
    assert make_scheduler(scheduler_name).schedule(quiesced, key()) is None


# --------------------------------------------------------------------------
# hash primitives

def test_hash_32_values():
    assert hash_32(1, 32) == 0x61C88647
    assert hash_32(0xFFFFFFFF, 32) == 0x9E3779B9      # -GOLDEN_RATIO_32 mod 2^32
    assert hash_32(0x0A000001, 8) == 0x27             # worked by hand
    assert hash_32(2 ** 32 + 1, 32) == 0x61C88647     # u32 input
    assert hash_32(int(ip("10.1.2.3")), 8) == 2


def test_addr_fold():
    assert sched.addr_fold(ip("10.0.0.1")) == 0x0A000001
    assert sched.addr_fold(ip("2001:db8::1")) == 0x20010DB8 ^ 1
    assert sched.addr_fold(ip("2001:db8:1:2:3:4:5:6")) == (
        0x20010DB8 ^ 0x00010002 ^ 0x00030004 ^ 0x00050006)
    # mixed family (mh hashes tunnel servers with the service's family)
    assert sched.addr_fold(ip("2001:db8::1"), af=4) == 0x20010DB8
    assert sched.addr_fold(ip("10.0.0.1"), af=6) == 0x0A000001


TEST_KEY = (0x0706050403020100, 0x0F0E0D0C0B0A0908)   # bytes 00..0f


def test_siphash_2_4_reference_vectors():
    # veorq/SipHash vectors: key 00..0f, message 00..(n-1)
    assert siphash(b"", TEST_KEY) == 0x726FDB47DD0E0E31
    assert siphash(bytes(range(8)), TEST_KEY) == 0x93F5F5799A932462
    assert siphash(bytes(range(15)), TEST_KEY) == 0xA129CA6149BE45E5


def test_hsiphash_64bit_kernel_vectors():
    # lib/test_siphash.c (64-bit kernels: SipHash-1-3, low 32 bits)
    assert siphash(b"", TEST_KEY, 1, 3) & M32 == 0x050FC4DC
    assert hsiphash_u32(0x03020100, TEST_KEY) == 0x88D38328      # hsiphash_1u32
    assert siphash(bytes(range(8)), TEST_KEY, 1, 3) & M32 == 0x8D299A8E
    assert siphash(bytes(range(16)), TEST_KEY, 1, 3) & M32 == 0x7D908B66


def test_mh_hash_values_pinned():
    a = int(ip("10.0.0.1"))
    assert hsiphash_u32(a + 80, sched.MH_HASH1) == 0x439C0CBE
    assert hsiphash_u32(0, sched.MH_HASH1) == 0x1D5A77C2
    assert sched.MH_HASH1 == (2654435761, 2654435761)
    assert sched.MH_HASH2 == (2654446892, 2654446892)
    assert sched.MH_TAB_SIZE == 4093


# --------------------------------------------------------------------------
# rr

def test_rr_cycles_in_list_order():
    assert run(make_scheduler("rr"), [srv("A"), srv("B"), srv("C")], 7) == "ABCABCA"


def test_rr_skips_weight_0_and_overloaded():
    servers = [srv("A"), srv("B", weight=0), srv("C", overloaded=True), srv("D")]
    assert run(make_scheduler("rr"), servers, 5) == "ADADA"


def test_rr_cursor_moves_back_when_last_chosen_is_deleted():
    a, b, c = srv("A"), srv("B"), srv("C")
    rr = make_scheduler("rr")
    rr.update([a, b, c])
    assert run(rr, [a, b, c], 2) == "AB"      # cursor on B
    rr.update([a, c])                          # delete B: cursor -> A
    assert run(rr, [a, c], 3) == "CAC"


def test_rr_cursor_deletion_noticed_without_update():
    a, b, c = srv("A"), srv("B"), srv("C")
    rr = make_scheduler("rr")
    assert run(rr, [a, b, c], 2) == "AB"
    assert run(rr, [a, c], 1) == "C"


def test_rr_deleting_first_entry_goes_back_to_head():
    a, b, c = srv("A"), srv("B"), srv("C")
    rr = make_scheduler("rr")
    assert run(rr, [a, b, c], 1) == "A"
    rr.update([b, c])
    assert run(rr, [b, c], 3) == "BCB"


def test_rr_add_keeps_cursor():
    a, b, c, d = srv("A"), srv("B"), srv("C"), srv("D")
    rr = make_scheduler("rr")
    assert run(rr, [a, b, c], 1) == "A"
    rr.update([d, a, b, c])                    # newest first
    assert run(rr, [d, a, b, c], 4) == "BCDA"


def test_rr_wraps_to_the_last_chosen_itself():
    a, b = srv("A"), srv("B")
    rr = make_scheduler("rr")
    assert run(rr, [a, b], 2) == "AB"
    b.overloaded = True
    a.weight = 0
    assert rr.schedule([a, b], key()) is None
    b.overloaded = False
    assert run(rr, [a, b], 2) == "BB"


# --------------------------------------------------------------------------
# wrr

def test_wrr_4_3_2():
    servers = [srv("A", 4), srv("B", 3), srv("C", 2)]
    assert run(make_scheduler("wrr"), servers, 18) == "AABABCABC" * 2


def test_wrr_4_2_gcd_step():
    w = make_scheduler("wrr")
    assert run(w, [srv("A", 4), srv("B", 2)], 9) == "AAB" * 3
    assert (w.di, w.mw) == (2, 3)


def test_wrr_incremental_adds_keep_cw():
    # Added C, then B, then A (list order A,B,C): cw stays 1 after the adds,
    # so the first round is a plain ABC before the weighted cycle.
    a, b, c = srv("A", 4), srv("B", 3), srv("C", 2)
    w = make_scheduler("wrr")
    w.update([c])
    w.update([b, c])
    w.update([a, b, c])
    assert w.cw == 1
    assert run(w, [a, b, c], 12) == "ABC" + "AABABCABC"


def test_wrr_update_recomputes_cw_with_new_gcd():
    a, b = srv("A", 12), srv("B", 3)
    w = make_scheduler("wrr")
    w.update([a, b])
    assert (w.di, w.mw, w.cw) == (3, 10, 10)
    assert run(w, [a, b], 3) == "AAA"          # cw 10, 7, 4
    assert w.cw == 4
    b.weight = 2
    w.update([a, b])                           # di 2, mw 11, cw (4/2)*2+1
    assert (w.di, w.mw, w.cw, w.cl) == (2, 11, 5, -1)
    assert run(w, [a, b], 4) == "AAAB"          # cw 5, 3, 1 -> B


def test_wrr_update_resets_cursor_to_head():
    servers = [srv("A"), srv("B"), srv("C")]
    w = make_scheduler("wrr")
    assert run(w, servers, 2) == "AB"
    w.update(servers)                          # an edit that changed nothing
    assert run(w, servers, 1) == "A"


def test_wrr_skips_weight_0_and_overloaded():
    servers = [srv("A", 2, overloaded=True), srv("B", 0), srv("C", 1)]
    assert run(make_scheduler("wrr"), servers, 4) == "CCCC"
    assert make_scheduler("wrr").schedule([srv("A", 0), srv("B", 0)], key()) is None


def test_wrr_all_overloaded_keeps_cursor_on_last_chosen():
    # The "last pass" stops at the last chosen server and leaves the cursor
    # there, so the next call resumes after it.
    a, b = srv("A"), srv("B")
    w = make_scheduler("wrr")
    assert run(w, [a, b], 1) == "A"
    a.overloaded = b.overloaded = True
    assert w.schedule([a, b], key()) is None
    a.overloaded = b.overloaded = False
    assert run(w, [a, b], 3) == "BAB"


def test_wrr_weight_change_noticed_without_update():
    a, b = srv("A", 1), srv("B", 1)
    w = make_scheduler("wrr")
    assert run(w, [a, b], 2) == "AB"
    a.weight = 2
    # cursor back to the head, cw stays 1 (<= new mw 2): A B, then cw wraps
    # to 2: A, cw 1: A B, ...
    assert run(w, [a, b], 6) == "ABAABA"


# --------------------------------------------------------------------------
# lc / wlc / sed / nq / fo / ovf

def test_lc_minimum_overhead_ties_to_earlier():
    a = srv("A", activeconns=1)                       # 256
    b = srv("B", inactconns=255)                      # 255
    lc = make_scheduler("lc")
    assert name(lc.schedule([a, b], key())) == "B"
    b.inactconns = 256
    assert name(lc.schedule([a, b], key())) == "A"
    assert name(lc.schedule([b, a], key())) == "B"


def test_lc_ignores_weight_except_zero():
    a = srv("A", weight=100, activeconns=1)
    b = srv("B", weight=1)
    assert name(make_scheduler("lc").schedule([a, b], key())) == "B"
    b.weight = 0
    assert name(make_scheduler("lc").schedule([a, b], key())) == "A"


def test_wlc_cross_multiplication_and_ties():
    a = srv("A", weight=1, activeconns=1)             # 256/1
    b = srv("B", weight=2, activeconns=2)             # 512/2
    wlc = make_scheduler("wlc")
    assert name(wlc.schedule([a, b], key())) == "A"
    assert name(wlc.schedule([b, a], key())) == "B"
    b.activeconns, b.inactconns = 1, 255              # 511/2 < 256/1
    assert name(wlc.schedule([a, b], key())) == "B"


def test_wlc_never_weight_0():
    a = srv("A", weight=0)
    b = srv("B", weight=1, activeconns=50)
    c = srv("C", weight=0)
    assert name(make_scheduler("wlc").schedule([a, b, c], key())) == "B"


def test_wlc_skips_overloaded():
    a = srv("A", overloaded=True)
    b = srv("B", activeconns=9)
    assert name(make_scheduler("wlc").schedule([a, b], key())) == "B"


def test_sed_and_wlc_differ_on_inactive_connections():
    a = srv("A", inactconns=1000)                     # wlc 1000, sed 1
    b = srv("B", activeconns=1)                       # wlc 256,  sed 2
    assert name(make_scheduler("wlc").schedule([a, b], key())) == "B"
    assert name(make_scheduler("sed").schedule([a, b], key())) == "A"


def test_sed_weighted():
    a = srv("A", weight=1, activeconns=1)             # 2/1
    b = srv("B", weight=3, activeconns=4)             # 5/3
    c = srv("C", weight=2, activeconns=2)             # 3/2
    assert name(make_scheduler("sed").schedule([a, b, c], key())) == "C"


def test_nq_first_idle_server_wins():
    a = srv("A", activeconns=1)
    b = srv("B", weight=0)                            # idle but quiesced
    c = srv("C", weight=1)                            # first idle
    d = srv("D", weight=100)                          # SED would prefer this
    assert name(make_scheduler("nq").schedule([a, b, c, d], key())) == "C"
    assert name(make_scheduler("sed").schedule([a, b, c, d], key())) == "D"


def test_nq_without_idle_server_is_sed_with_ties_to_earlier():
    a = srv("A", weight=1, activeconns=1)             # 2/1
    b = srv("B", weight=2, activeconns=3)             # 4/2 tie
    c = srv("C", weight=1, activeconns=5, overloaded=True)
    assert name(make_scheduler("nq").schedule([a, b, c], key())) == "A"
    b.activeconns = 2                                 # 3/2
    assert name(make_scheduler("nq").schedule([a, b, c], key())) == "B"


def test_fo_highest_weight_first_of_equals():
    servers = [srv("A", 2), srv("B", 5), srv("C", 5), srv("D", 9, overloaded=True)]
    assert name(make_scheduler("fo").schedule(servers, key())) == "B"
    servers[1].weight = 0
    assert name(make_scheduler("fo").schedule(servers, key())) == "C"


def test_ovf_overflows_when_activeconns_exceed_weight():
    a, b = srv("A", 2), srv("B", 1)
    ovf = make_scheduler("ovf")
    picks = []
    for active in range(4):
        a.activeconns = active
        picks.append(name(ovf.schedule([b, a], key())))
    assert picks == ["A", "A", "A", "B"]
    b.activeconns = 2
    assert ovf.schedule([b, a], key()) is None


def test_ovf_first_of_equal_weights_and_skips_weight_0():
    servers = [srv("A", 0), srv("B", 3), srv("C", 3)]
    assert name(make_scheduler("ovf").schedule(servers, key())) == "B"


# --------------------------------------------------------------------------
# dh

def dh_bucket(address):
    return h32(sched.addr_fold(ip(address)), 8)


def test_dh_ignores_weights_and_fills_round_robin():
    a, b, c = srv("A", 10), srv("B", 1), srv("C", 1)
    dh = make_scheduler("dh")
    dh.update([a, b, c])
    assert [name(s) for s in dh.buckets[:7]] == list("ABCABCA")
    assert len(dh.buckets) == 256
    for last in range(1, 40):
        dst = f"203.0.113.{last}"
        expected = [a, b, c][dh_bucket(dst) % 3]
        assert dh.schedule([a, b, c], key(dst=dst)) is expected


def test_dh_weight_0_owner_gives_no_destination_and_no_fallback():
    a, b = srv("A"), srv("B")
    dh = make_scheduler("dh", flags=("flag-1",))
    dsts = [f"203.0.113.{i}" for i in range(1, 30)]
    before = [dh.schedule([a, b], key(dst=d)) for d in dsts]
    b.weight = 0
    dh.update([a, b])
    for d, was in zip(dsts, before):
        got = dh.schedule([a, b], key(dst=d))
        assert got is (None if was is b else a)
    assert any(was is b for was in before)


def test_dh_hashes_ipv6_destination_fold():
    a, b = srv("A"), srv("B")
    dst = "2001:db8::5"
    fold = 0x20010DB8 ^ 5
    expected = [a, b][h32(fold, 8) % 2]
    assert make_scheduler("dh").schedule([a, b], key(src="2001:db8::9", dst=dst)) is expected


# --------------------------------------------------------------------------
# sh

def sh_hash(src, port=0):
    return h32((port + int(ip(src))) & M32, 8)


def test_sh_weight_owns_consecutive_buckets():
    a, b = srv("A", 2), srv("B", 1)
    sh = make_scheduler("sh")
    sh.update([a, b])
    assert "".join(name(x) for x in sh.buckets[:9]) == "AABAABAAB"
    assert sh.buckets.count(a) == 171 and sh.buckets.count(b) == 85


def test_sh_weight_0_still_owns_one_bucket():
    a, b = srv("A", 0), srv("B", 1)
    sh = make_scheduler("sh")
    sh.update([a, b])
    assert sh.buckets.count(a) == 128


def test_sh_rebuilds_on_weight_edit():
    a, b = srv("A", 1), srv("B", 1)
    sh = make_scheduler("sh")
    sh.update([a, b])
    assert sh.buckets.count(a) == 128
    a.weight = 3
    sh.schedule([a, b], key())                 # noticed without update
    assert sh.buckets.count(a) == 192


def test_sh_selects_by_source_hash():
    servers = [srv("A", 1), srv("B", 2), srv("C", 1)]
    layout = [servers[0], servers[1], servers[1], servers[2]]   # ABBC repeating
    sh = make_scheduler("sh")
    for last in range(1, 40):
        src = f"192.0.2.{last}"
        assert sh.schedule(servers, key(src=src)) is layout[sh_hash(src) % 4]


def test_sh_port_flag_hashes_the_source_port():
    a, b = srv("A"), srv("B")
    plain = make_scheduler("sh")
    with_port = make_scheduler("sh", flags=("sh-port",))
    src = "192.0.2.7"
    seen = set()
    for port in range(1000, 1010):
        assert plain.schedule([a, b], key(src=src, sport=port)) is [a, b][sh_hash(src) % 2]
        got = with_port.schedule([a, b], key(src=src, sport=port))
        assert got is [a, b][sh_hash(src, port) % 2]
        seen.add(name(got))
    assert seen == {"A", "B"}


def test_sh_fallback_rehashes_past_weight_0():
    servers = [srv("A"), srv("B"), srv("C")]
    servers[1].weight = 0
    plain = make_scheduler("sh")
    fallback = make_scheduler("sh", flags=("sh-fallback",))
    checked = 0
    for last in range(1, 60):
        src = f"192.0.2.{last}"
        h = sh_hash(src)
        owner = servers[h % 3]
        if owner.weight:
            assert fallback.schedule(servers, key(src=src)) is owner
            continue
        checked += 1
        assert plain.schedule(servers, key(src=src)) is None
        # the kernel's loop: roffset = offset + ihash, bucket = roffset + h
        expected = None
        for offset in range(256):
            candidate = servers[(((offset + h) % 256 + h) & 255) % 3]
            if candidate.weight:
                expected = candidate
                break
        got = fallback.schedule(servers, key(src=src))
        assert got is expected and got.weight > 0
    assert checked > 5


def test_sh_fallback_probe_order_with_weighted_layout():
    # Overloaded servers keep their weight-sized bucket runs, so the probe
    # order of the kernel's loop (bucket = offset + 2*ihash) is visible.
    servers = [srv("A", 2), srv("B", 3), srv("C", 1), srv("D", 4)]
    servers[1].overloaded = servers[2].overloaded = True
    layout = []
    while len(layout) < 256:
        for s in servers:
            layout.extend([s] * s.weight)
    layout = layout[:256]
    fallback = make_scheduler("sh", flags=("sh-fallback",))
    for last in range(1, 120):
        src = f"192.0.2.{last}"
        h = sh_hash(src)
        expected = layout[h]
        if expected.overloaded:
            expected = next(layout[((offset + h) % 256 + h) & 255]
                            for offset in range(256)
                            if not layout[((offset + h) % 256 + h) & 255].overloaded)
        assert fallback.schedule(servers, key(src=src)) is expected, src


def test_sh_fallback_also_skips_overloaded():
    a, b = srv("A", overloaded=True), srv("B", overloaded=True)
    assert make_scheduler("sh", flags=("sh-fallback",)).schedule([a, b], key()) is None


# --------------------------------------------------------------------------
# mh

def mh_servers(*weights):
    return [srv(NAMES[i], w) for i, w in enumerate(weights)]


def test_mh_table_proportional_to_weights():
    a, b = mh_servers(2, 1)                    # list order: A (2), B (1)
    mh = make_scheduler("mh")
    mh.update([a, b])
    assert len(mh.lookup) == 4093 and None not in mh.lookup
    # 3 slots per round, 1364 rounds fill 4092, A claims the last one
    assert (mh.lookup.count(a), mh.lookup.count(b)) == (2729, 1364)


def test_mh_equal_weights_and_gcd():
    a, b, c = mh_servers(4, 4, 8)
    mh = make_scheduler("mh")
    mh.update([a, b, c])
    assert (mh.gcd, mh.rshift) == (4, 0)
    counts = [mh.lookup.count(s) for s in (a, b, c)]
    assert counts == [1024, 1023, 2046]        # turns 1,1,2; 1023 rounds + A


def test_mh_rshift_limits_turns():
    a, b = mh_servers(1000, 1)
    mh = make_scheduler("mh")
    mh.update([a, b])
    # fls(1000) = 10 -> rshift 4: turns 62 and (0 ?: 1) = 1
    assert mh.rshift == 4
    # 64 full rounds of 63 slots = 4032; A (first) takes the last 61
    assert mh.lookup.count(b) == 64
    assert mh.lookup.count(a) == 4093 - 64


def test_mh_first_server_gets_its_preferred_slot():
    a, b = mh_servers(1, 1)
    mh = make_scheduler("mh")
    mh.update([a, b])
    offset_a = hsiphash_u32(int(a.address) + 80, sched.MH_HASH1) % 4093
    assert offset_a == 3167
    assert mh.lookup[offset_a] is a


def test_mh_single_server_owns_everything():
    a = srv("A", 5)
    mh = make_scheduler("mh")
    mh.update([a])
    assert mh.lookup.count(a) == 4093


def test_mh_lookup_hashes_source_and_port_flag():
    servers = mh_servers(1, 1, 1)
    mh = make_scheduler("mh")
    mh_port = make_scheduler("mh", flags=("mh-port",))
    mh.update(servers)
    mh_port.update(servers)
    seen = set()
    for last in range(1, 30):
        src = f"192.0.2.{last}"
        slot = hsiphash_u32(int(ip(src)), sched.MH_HASH1) % 4093
        assert mh.schedule(servers, key(src=src, sport=5000 + last)) is mh.lookup[slot]
        pslot = hsiphash_u32(int(ip(src)) + 5000 + last, sched.MH_HASH1) % 4093
        got = mh_port.schedule(servers, key(src=src, sport=5000 + last))
        assert got is mh_port.lookup[pslot]
        seen.add(name(got))
    assert seen == {"A", "B", "C"}


def test_mh_last_weight_edit_to_0_keeps_slots_and_fails_without_fallback():
    a, b = mh_servers(1, 1)
    mh = make_scheduler("mh")
    mh.update([a, b])
    table = list(mh.lookup)
    b.weight = 0                               # an edit: last_weight stays 1
    mh.update([a, b])
    assert all(x is y for x, y in zip(mh.lookup, table))
    fb = make_scheduler("mh", flags=("mh-fallback",))
    lost = 0
    for last in range(1, 40):
        k = key(src=f"192.0.2.{last}")
        owner = table[hsiphash_u32(int(k.src), sched.MH_HASH1) % 4093]
        got = mh.schedule([a, b], k)
        assert got is (None if owner is b else a)
        assert fb.schedule([a, b], k) is a
        lost += owner is b
    assert lost > 5


def test_mh_added_with_weight_0_gets_no_slots():
    a = srv("A", 1)
    b = srv("B", 0)                            # added with 0: last_weight 0
    mh = make_scheduler("mh")
    mh.update([b, a])
    assert mh.lookup.count(b) == 0 and mh.lookup.count(a) == 4093


def test_mh_all_last_weights_zero_means_empty_table():
    a, b = mh_servers(0, 0)
    mh = make_scheduler("mh", flags=("mh-fallback",))
    mh.update([a, b])
    assert mh.lookup.count(None) == 4093
    assert mh.schedule([a, b], key()) is None


def test_mh_folds_other_family_servers_with_the_service_family():
    # IPv6 tunnel servers in an IPv4 service: the kernel reads only the
    # first 32-bit word, so these two fold alike and share a preferred slot.
    a = Srv(ip("2001:db8::1"), 80, weight=1, last_weight=1)
    b = Srv(ip("2001:db8::2"), 80, weight=1, last_weight=1)
    mh = make_scheduler("mh")
    mh.schedule([a, b], key(src="192.0.2.1"))          # IPv4 service
    slot = hsiphash_u32(0x20010DB8 + 80, sched.MH_HASH1) % 4093
    skip = hsiphash_u32(0x20010DB8 + 80, sched.MH_HASH2) % 4092 + 1
    # one shared permutation: A and B take alternate positions along it
    for i in range(12):
        assert mh.lookup[(slot + i * skip) % 4093] is (b if i % 2 else a)
    assert mh.lookup.count(a) == 2047
    mh6 = make_scheduler("mh")
    mh6.schedule([a, b], key(src="2001:db8::99", dst="2001:db8::100"))
    slot_a = hsiphash_u32((0x20010DB8 ^ 1) + 80, sched.MH_HASH1) % 4093
    slot_b = hsiphash_u32((0x20010DB8 ^ 2) + 80, sched.MH_HASH1) % 4093
    assert slot_a != slot_b and slot_b != slot
    assert mh6.lookup[slot_a] is a and mh6.lookup[slot_b] is b


def test_mh_fallback_skips_overloaded():
    servers = mh_servers(1, 1, 1)
    servers[0].overloaded = True
    fb = make_scheduler("mh", flags=("mh-fallback",))
    for last in range(1, 20):
        got = fb.schedule(servers, key(src=f"192.0.2.{last}"))
        assert got is not None and got is not servers[0]


def test_mh_table_is_consistent_under_removal():
    a, b, c = mh_servers(1, 1, 1)
    mh = make_scheduler("mh")
    mh.update([a, b, c])
    before = list(mh.lookup)
    mh.update([a, c])
    after = mh.lookup
    kept = sum(1 for x, y in zip(before, after) if x is not b and x is y)
    moved = sum(1 for x in before if x is not b)
    assert kept / moved > 0.85                 # Maglev: little disruption


def test_state_survives_copies_of_the_server_objects():
    # The director may hand over deep copies (a copied service table):
    # cursors and tables follow (address, port), flags come from the objects
    # passed in.
    servers = [srv("A"), srv("B"), srv("C")]
    rr = make_scheduler("rr")
    assert run(rr, servers, 2) == "AB"
    servers = copy.deepcopy(servers)
    assert run(rr, servers, 2) == "CA"
    sh = make_scheduler("sh")
    sh.update(servers)
    src = "192.0.2.7"
    owner = sh.schedule(servers, key(src=src))
    copies = copy.deepcopy(servers)
    copies[servers.index(owner)].weight = 0   # edit seen only through the copy
    assert sh.schedule(copies, key(src=src)) is None
    mh = make_scheduler("mh")
    mh.update(servers)
    copies = copy.deepcopy(servers)
    got = mh.schedule(copies, key(src=src))
    assert got in copies and not any(got is s for s in servers)


# --------------------------------------------------------------------------
# lblc / lblcr

def test_lblc_sticks_until_overloaded_rule():
    a, b = srv("A", 1), srv("B", 1)
    lblc = make_scheduler("lblc")
    k = key(dst="203.0.113.9")
    assert lblc.schedule([a, b], k) is a       # WLC tie -> A, cached
    a.activeconns = 1                          # busier, but not > weight
    assert lblc.schedule([a, b], k) is a
    a.activeconns = 2
    b.activeconns = 1                          # nobody below half load
    assert lblc.schedule([a, b], k) is a
    b.weight = 2                               # 1*2 < 2 is false: still nobody
    assert lblc.schedule([a, b], k) is a
    b.weight = 1
    b.activeconns = 0                          # B below half: A "overloaded"
    assert lblc.schedule([a, b], k) is b
    a.activeconns = 0
    b.activeconns = 1
    assert lblc.schedule([a, b], k) is b       # cache now points at B
    # another destination address has its own entry
    assert lblc.schedule([a, b], key(dst="203.0.113.10")) is a


def test_lblc_abandons_weight_0_and_deleted_and_follows_revival():
    a, b = srv("A"), srv("B")
    lblc = make_scheduler("lblc")
    k = key(dst="203.0.113.9")
    assert lblc.schedule([a, b], k) is a
    a.weight = 0
    assert lblc.schedule([a, b], k) is b
    a.weight = 1
    lblc2 = make_scheduler("lblc")
    assert lblc2.schedule([a, b], k) is a
    a2 = srv("A")                              # deleted and added again
    assert lblc2.schedule([b], k) is b          # A gone: rescheduled to B
    lblc3 = make_scheduler("lblc")
    assert lblc3.schedule([a, b], k) is a
    assert lblc3.schedule([a2, b], k) is a2    # same (address, port): revived dest


def test_lblc_cache_hit_ignores_overload_flag_like_the_kernel():
    a, b = srv("A"), srv("B")
    lblc = make_scheduler("lblc")
    k = key(dst="203.0.113.9")
    assert lblc.schedule([a, b], k) is a
    a.overloaded = True
    assert lblc.schedule([a, b], k) is a
    assert make_scheduler("lblc").schedule([a, b], k) is b   # fresh: WLC skips A


def test_lblc_gc_full_expiration_every_30_runs():
    a = srv("A")
    lblc = make_scheduler("lblc")
    lblc.schedule([a], key(dst="203.0.113.1"), now=0)
    lblc.schedule([a], key(dst="203.0.113.2"), now=1000)
    day = 24 * 3600
    for _ in range(29):
        assert lblc.gc(day) == 0
    assert lblc.gc(day) == 1                   # 30th run: full check, >= 24 h idle
    assert list(lblc.cache) == [ip("203.0.113.2")]


def test_lblc_gc_trims_idle_entries_when_over_size():
    a = srv("A")
    lblc = make_scheduler("lblc")
    lblc.max_size = 4
    for i in range(10):
        lblc.schedule([a], key(dst=f"203.0.113.{i + 1}"), now=0 if i < 8 else 500)
    # goal (10-4)*4/3 = 8, capped at max_size/2 = 2; buckets are walked from
    # rover+1 and every idle (>= 6 min) entry of a visited bucket goes
    idle = {h32(int(ip(f"203.0.113.{i + 1}")), 10): ip(f"203.0.113.{i + 1}")
            for i in range(8)}
    assert len(idle) == 8 and 0 not in idle    # distinct buckets, none is 0
    expected = [idle[b] for b in sorted(idle)][:2]
    assert lblc.gc(400) == 2
    assert not any(addr in lblc.cache for addr in expected)
    assert len(lblc.cache) == 8
    assert ip("203.0.113.9") in lblc.cache and ip("203.0.113.10") in lblc.cache


def test_lblcr_set_grows_when_member_overloaded():
    a, b, c = srv("A", 1), srv("B", 1), srv("C", 1)
    lblcr = make_scheduler("lblcr")
    k = key(dst="203.0.113.9")
    assert lblcr.schedule([a, b, c], k, now=0) is a
    assert lblcr.members(k.dst) == [a]
    a.activeconns = 2                          # > weight, B and C below half
    assert lblcr.schedule([a, b, c], k, now=10) is b
    assert lblcr.members(k.dst) == [b, a]       # newest first
    b.activeconns = 1
    assert lblcr.schedule([a, b, c], k, now=20) is b    # least loaded member
    b.activeconns = 2
    assert lblcr.schedule([a, b, c], k, now=30) is c
    assert lblcr.members(k.dst) == [c, b, a]


def test_lblcr_shrinks_after_expiration():
    a, b = srv("A", 1), srv("B", 1)
    lblcr = make_scheduler("lblcr")
    k = key(dst="203.0.113.9")
    lblcr.schedule([a, b], k, now=0)
    a.activeconns = 2
    lblcr.schedule([a, b], k, now=100)         # set {B, A}, lastmod 100
    a.activeconns, b.activeconns = 3, 0
    day = 24 * 3600
    assert lblcr.schedule([a, b], k, now=100 + day) is b      # not yet (strictly after)
    assert len(lblcr.members(k.dst)) == 2
    assert lblcr.schedule([a, b], k, now=101 + day) is b
    assert lblcr.members(k.dst) == [b]         # most loaded (A) dropped


def test_lblcr_skips_unavailable_members():
    a, b = srv("A", 1), srv("B", 1)
    lblcr = make_scheduler("lblcr")
    k = key(dst="203.0.113.9")
    lblcr.schedule([a, b], k)
    a.weight = 0
    assert lblcr.schedule([a, b], k) is b       # no usable member -> WLC, added
    assert lblcr.members(k.dst) == [b, a]


# --------------------------------------------------------------------------
# gc(now): the periodic ageing hook every scheduler has

def timer(scheduler, start, stop):
    """The kernel's GC timer: gc(now) every 60 s in [start, stop); {now: removed}."""
    step = sched.CHECK_EXPIRE_INTERVAL
    assert step == 60
    return {now: scheduler.gc(now) for now in range(start, stop, step)}


def test_lblc_gc_drops_idle_entry_after_lblc_expiration():
    a, b = srv("A"), srv("B")
    lblc = make_scheduler("lblc")
    k1, k2 = key(dst="203.0.113.1"), key(dst="203.0.113.2")
    day = sched.DEFAULT_EXPIRATION
    assert day == 24 * 3600
    assert lblc.schedule([a, b], k1, now=0) is a        # WLC tie -> A, cached
    assert lblc.schedule([a, b], k2, now=3600) is a
    a.activeconns = 1                          # not "overloaded" (1 > 1 is false)
    assert lblc.schedule([a, b], k1, now=0) is a        # cache hit, lastuse stays 0
    # Full checks run every 30th timer run (t = 1800, 3600, ...); entries go
    # once now >= lastuse + lblc_expiration (the kernel's time_before test).
    removed = timer(lblc, 60, day + 3600 + 60)
    assert removed[day - 1800] == 0            # full check before: not idle a day yet
    assert [t for t, n in removed.items() if n] == [day, day + 3600]
    assert removed[day] == removed[day + 3600] == 1
    assert not lblc.cache
    # the entry is gone: a fresh WLC choice, no longer the cached A
    assert lblc.schedule([a, b], k1, now=2 * day) is b


def test_lblc_gc_keeps_entries_in_use():
    a = srv("A")
    lblc = make_scheduler("lblc")
    k = key(dst="203.0.113.1")
    for hour in range(48):
        lblc.schedule([a], k, now=hour * 3600)
        assert sum(timer(lblc, hour * 3600, (hour + 1) * 3600).values()) == 0
    assert list(lblc.cache) == [k.dst]


def test_lblcr_drops_most_loaded_member_after_lblcr_expiration_on_schedule():
    a, b = srv("A", 1), srv("B", 1)
    lblcr = make_scheduler("lblcr")
    k = key(dst="203.0.113.9")
    day = sched.DEFAULT_EXPIRATION
    lblcr.schedule([a, b], k, now=0)
    a.activeconns = 2
    assert lblcr.schedule([a, b], k, now=100) is b      # set {B, A}, lastmod 100
    a.activeconns, b.activeconns = 3, 0
    # The set stays unchanged for a day while the address is in use (B, the
    # least loaded member, keeps being chosen).  The GC timer only removes
    # whole idle entries; it never shrinks a set, as in ip_vs_lblcr.c.
    for hour in range(1, 25):
        start = 100 + (hour - 1) * 3600
        assert lblcr.schedule([a, b], k, now=start + 3540) is b
        assert sum(timer(lblcr, start, start + 3600).values()) == 0
    assert lblcr.members(k.dst) == [b, a]
    assert sum(timer(lblcr, 100 + day, 100 + day + 1800).values()) == 0
    assert lblcr.members(k.dst) == [b, a]      # past lblcr_expiration: gc left it
    # The next packet for the address shrinks it: the most loaded (A) goes.
    assert lblcr.schedule([a, b], k, now=100 + day + 1800) is b
    assert lblcr.members(k.dst) == [b]
    # Idle for lblcr_expiration, the whole entry goes at the next full check.
    last = 100 + day + 1800
    removed = timer(lblcr, last, last + day + 1800)
    assert sum(removed.values()) == 1
    assert min(t for t, n in removed.items() if n) >= last + day
    assert lblcr.members(k.dst) == []


def test_lblcr_set_change_restarts_the_expiration_clock():
    a, b, c = srv("A", 1), srv("B", 1), srv("C", 1)
    lblcr = make_scheduler("lblcr")
    k = key(dst="203.0.113.9")
    day = sched.DEFAULT_EXPIRATION
    lblcr.schedule([a, b, c], k, now=0)        # {A}
    a.activeconns = 2
    lblcr.schedule([a, b, c], k, now=10)       # {B, A}
    b.activeconns = 2
    assert lblcr.schedule([a, b, c], k, now=day) is c  # {C, B, A}, lastmod = day
    c.activeconns = 0
    assert lblcr.schedule([a, b, c], k, now=day + 20) is c
    assert lblcr.members(k.dst) == [c, b, a]   # 10 + day passed, but the set changed


@pytest.mark.parametrize("scheduler_name", sorted(SCHEDULERS))
def test_every_scheduler_has_gc_and_base_gc_is_harmless(scheduler_name):
    cls = SCHEDULERS[scheduler_name]
    assert callable(cls.gc)
    if scheduler_name not in ("lblc", "lblcr"):
        assert cls.gc is sched.Scheduler.gc    # nothing to age: the base no-op
    flags = {"sh": ("sh-fallback",), "mh": ("mh-fallback",)}.get(scheduler_name, ())
    servers = [srv("A", 3), srv("B", 1), srv("C", 2, activeconns=1), srv("D", 0)]
    plain = make_scheduler(scheduler_name, flags, rng=random.Random(5))
    aged = make_scheduler(scheduler_name, flags, rng=random.Random(5))
    picks, aged_picks = [], []
    for i in range(200):
        now = i * 600
        k = key(src=f"192.0.2.{i % 50 + 1}", sport=1000 + i,
                dst=f"203.0.113.{i % 7 + 1}")
        if i == 100:
            servers[0].overloaded = True
        picks.append(name(plain.schedule(servers, k, now=now)))
        removed = aged.gc(now)
        assert isinstance(removed, int) and removed >= 0
        if scheduler_name not in ("lblc", "lblcr"):
            assert removed == 0
        aged_picks.append(name(aged.schedule(servers, k, now=now)))
    # in-use lblc/lblcr entries (reused every 70 minutes) are not aged out either
    assert aged_picks == picks
    assert sched.Scheduler().gc(123.0) == 0


# --------------------------------------------------------------------------
# twos

class ScriptedRandom:
    def __init__(self, values):
        self.values = list(values)
        self.bounds = []

    def randrange(self, bound):
        self.bounds.append(bound)
        return self.values.pop(0)


def test_twos_weighted_draws_and_comparison():
    a = srv("A", 1, activeconns=1)             # overhead 256
    b = srv("B", 3)                            # overhead 0
    c = srv("C", 0)
    rng = ScriptedRandom([0, 4])
    twos = make_scheduler("twos", rng=rng)
    assert twos.schedule([a, c, b], key()) is b   # choice1 A, choice2 B: B lighter
    assert rng.bounds == [5, 5]                 # total weight + 1
    twos.rng = ScriptedRandom([4, 0])
    assert twos.schedule([a, c, b], key()) is b   # choice1 B stays
    twos.rng = ScriptedRandom([1, 1])
    assert twos.schedule([a, c, b], key()) is a   # r=1 still lands on A (1-1 <= 0)
    twos.rng = ScriptedRandom([2, 0])
    a.activeconns = 0
    assert twos.schedule([a, c, b], key()) is b   # equal load: choice1 kept


def test_twos_products_wrap_like_c_int():
    a = srv("A", 60000, activeconns=256)       # overhead 65536
    b = srv("B", 60000)
    twos = make_scheduler("twos", rng=ScriptedRandom([0, 60001]))
    # 60000 * 65536 overflows int: the kernel keeps choice1
    assert twos.schedule([a, b], key()) is a


def test_twos_seeded_rng_is_deterministic_and_skips_weight_0():
    servers = [srv("A", 1), srv("B", 0), srv("C", 3), srv("D", 2, overloaded=True)]
    one = make_scheduler("twos", rng=random.Random(7))
    two = make_scheduler("twos", rng=random.Random(7))
    picks = [one.schedule(servers, key()) for _ in range(200)]
    assert picks == [two.schedule(servers, key()) for _ in range(200)]
    counts = {n: sum(1 for p in picks if name(p) == n) for n in "ABCD"}
    assert counts["B"] == counts["D"] == 0
    assert counts["A"] > 0 and counts["C"] > counts["A"]
