"""The hashing schedulers and their hash functions.

ip_vs_dh.c (dh), ip_vs_sh.c (sh), ip_vs_mh.c (mh, Maglev); hash_32() from
include/linux/hash.h, hsiphash() from include/linux/siphash.h and
lib/siphash.c.  lblc and lblcr use ``hash_32``/``addr_fold`` for their
cache buckets.
"""

import math

from lvs_app.schedulers.base import SCHED1, SCHED2, U32, Scheduler

U64 = 0xFFFFFFFFFFFFFFFF

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
