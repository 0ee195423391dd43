"""The switch pipeline, declared once: tables, what may follow what, cookies.

Every FlowMod the director produces passes :func:`check` on its way out (the
shim's single send path and the fake-switch tests both call it), so a flow
that jumps backwards, lands in an undeclared table or matches a field its
table does not own is a bug caught before the switch sees it.

Tables (OpenFlow 1.3, Open vSwitch)::

  0 CLASSIFY   ARP for a VIP and ARP replies to the director -> controller;
               IPv4 to a VIP's virtual MAC -> SERVICE; the rest -> REVERSE
  1 SERVICE    TCP SYN/FIN/RST and new UDP flows -> controller;
               per-connection flows (5-tuple) -> rewrite -> FORWARD / tunnel;
               persistence templates (client/netmask wildcard) -> same;
               miss: drop (IPVS drops a non-SYN packet it has no entry for)
  2 REVERSE    NAT replies: real server -> client rewritten back to VIP:port
  3 FORWARD    L2 learning by destination MAC; miss -> controller + flood
"""

from dataclasses import dataclass

CLASSIFY, SERVICE, REVERSE, FORWARD = 0, 1, 2, 3
TABLE_NAMES = {CLASSIFY: "classify", SERVICE: "service", REVERSE: "reverse-nat",
               FORWARD: "forward"}
N_TABLES = 4

# which tables a flow in each table may jump to (goto_table)
NEXT_TABLES = {CLASSIFY: {SERVICE, REVERSE}, SERVICE: {FORWARD}, REVERSE: {FORWARD},
               FORWARD: set()}

_L2 = {"in_port", "eth_src", "eth_dst", "eth_type"}
_ARP = {"arp_op", "arp_spa", "arp_tpa", "arp_sha", "arp_tha"}
_IP = {"ip_proto", "ipv4_src", "ipv4_dst", "tcp_src", "tcp_dst", "udp_src", "udp_dst",
       "tcp_flags"}
MATCH_FIELDS = {CLASSIFY: _L2 | _ARP | _IP, SERVICE: _L2 | _IP, REVERSE: _L2 | _IP,
                FORWARD: _L2}

# priorities, by table
PRIO_ARP = 300          # CLASSIFY: ARP for a VIP / replies to the director
PRIO_VIP = 200          # CLASSIFY: IPv4 to VIP + virtual MAC
PRIO_PUNT_TCP = 400     # SERVICE: SYN / FIN / RST to a VIP
PRIO_CONN = 300         # SERVICE/REVERSE: one connection (exact 5-tuple)
PRIO_PUNT_UDP = 250     # SERVICE: a UDP datagram with no connection flow
PRIO_TEMPLATE = 200     # SERVICE/REVERSE: persistence template (client wildcard)
PRIO_L2 = 100           # FORWARD: learned destination MAC
PRIO_MISS = 0

# TCP flags (OVS matches them in OpenFlow 1.3 through the tcp_flags field)
TCP_FIN, TCP_SYN, TCP_RST, TCP_ACK = 0x001, 0x002, 0x004, 0x010


# -- cookies ---------------------------------------------------------------
# | 63..56 app tag | 55..48 kind | 47..24 service id | 23..0 server id |
# One layout for every flow: a service's flows are found, counted and
# deleted by (tag | service) under a mask; a server's by (tag|service|server).

APP_TAG = 0x4C               # 'L'
KIND_BASE = 1                # pipeline skeleton (misses, classifier defaults)
KIND_VIP = 2                 # per-VIP classifier and punt flows
KIND_CONN = 3                # per-connection forward flow
KIND_TEMPLATE = 4            # persistence template
KIND_REVERSE = 5             # NAT reverse flow of a connection
KIND_REVERSE_TEMPLATE = 6    # NAT reverse flow of a template
KIND_L2 = 7                  # learned MAC

KIND_NAMES = {KIND_BASE: "base", KIND_VIP: "vip", KIND_CONN: "conn",
              KIND_TEMPLATE: "template", KIND_REVERSE: "reverse",
              KIND_REVERSE_TEMPLATE: "reverse-template", KIND_L2: "l2"}

TAG_MASK = 0xFF << 56
KIND_MASK = 0xFF << 48
SERVICE_MASK = 0xFFFFFF << 24
SERVER_MASK = 0xFFFFFF
MAX_ID = 0xFFFFFF


@dataclass(frozen=True)
class Cookie:
    kind: int
    service: int = 0
    server: int = 0

    @property
    def value(self):
        return (APP_TAG << 56) | (self.kind << 48) | (self.service << 24) | self.server

    @classmethod
    def parse(cls, value):
        """The Cookie of one of our flows, or None for a foreign cookie."""
        if value >> 56 != APP_TAG:
            return None
        return cls((value >> 48) & 0xFF, (value >> 24) & MAX_ID, value & MAX_ID)


def cookie_mask(kind=None, service=None, server=None):
    """(cookie, mask) selecting the app's flows, narrowed by kind, service, server.

    ``cookie_mask()`` is every flow of the app, ``cookie_mask(service=5)`` one
    service's, ``cookie_mask(KIND_CONN, 5, 7)`` one server's connections.
    """
    cookie, mask = APP_TAG << 56, TAG_MASK
    if kind is not None:
        cookie, mask = cookie | (kind << 48), mask | KIND_MASK
    if service is not None:
        cookie, mask = cookie | (service << 24), mask | SERVICE_MASK
    if server is not None:
        cookie, mask = cookie | server, mask | SERVER_MASK
    return cookie, mask


# -- checking ----------------------------------------------------------------

class PipelineError(Exception):
    """A FlowMod that breaks the declared pipeline."""


def _match_fields(match):
    # Ryu's OFPMatch keeps the fields in `_fields2` as (name, value) pairs.
    return {name for name, _ in match._fields2}


def check(flowmod):
    """Raise PipelineError if ``flowmod`` breaks the declared pipeline."""
    table = flowmod.table_id
    if table == 0xFF:          # OFPTT_ALL: only deletes may use it
        if flowmod.command not in (3, 4):
            raise PipelineError("only a delete may address all tables")
        return
    if table not in TABLE_NAMES:
        raise PipelineError(f"table {table} is not in the pipeline")
    if flowmod.command in (3, 4):        # OFPFC_DELETE / OFPFC_DELETE_STRICT
        return
    cookie = Cookie.parse(flowmod.cookie)
    if cookie is None or cookie.kind not in KIND_NAMES:
        raise PipelineError(f"table {TABLE_NAMES[table]}: cookie {flowmod.cookie:#x} is not "
                            "in the app's cookie layout")
    fields = _match_fields(flowmod.match)
    extra = fields - MATCH_FIELDS[table]
    if extra:
        raise PipelineError(f"table {TABLE_NAMES[table]} does not match on "
                            f"{', '.join(sorted(extra))}")
    for inst in flowmod.instructions:
        goto = getattr(inst, "table_id", None)
        if goto is not None and type(inst).__name__ == "OFPInstructionGotoTable":
            if goto not in NEXT_TABLES[table]:
                raise PipelineError(f"table {TABLE_NAMES[table]} may not go to table {goto}")


# -- cheap messages for the PacketIn hot path ----------------------------------
# Ryu's OFPMatch normalises every field through netaddr and its OXM tables,
# which costs most of a new connection's time.  A connection's match is
# always the same exact IPv4 5-tuple, so it is encoded once here with struct;
# instruction and action lists that only depend on the real server are built
# once and replay their wire bytes.  Both stay Ryu objects (the fake switch
# decodes them, OVS checks them).

import socket as _socket
import struct as _struct

from ryu.ofproto import ofproto_v1_3_parser as _parser

_OXM = {"eth_type": (5, "!H"), "ip_proto": (10, "!B"), "ipv4_src": (11, "!4s"),
        "ipv4_dst": (12, "!4s"), "tcp_src": (13, "!H"), "tcp_dst": (14, "!H"),
        "udp_src": (15, "!H"), "udp_dst": (16, "!H")}


def _put(buf, offset, raw):
    end = offset + len(raw)
    if len(buf) < end:
        buf += bytearray(end - len(buf))
    buf[offset:end] = raw


class PackedMatch(_parser.OFPMatch):
    """An OFPMatch whose wire form was encoded once with struct."""

    def __init__(self, fields, raw):
        super().__init__(_ordered_fields=fields)
        self._raw = raw
        self.length = _struct.unpack_from("!H", raw, 2)[0]

    def serialize(self, buf, offset):
        _put(buf, offset, self._raw)
        return len(self._raw)


def _oxm_header(name):
    field, fmt = _OXM[name]
    return (0x8000 << 16) | (field << 9) | _struct.calcsize(fmt)


# type, length | eth_type | ip_proto | ipv4_src | ipv4_dst | l4 src | l4 dst | pad
_FIVE_TUPLE = {proto: (_struct.Struct("!HH IH IB I4s I4s IH IH 5x"),
                       [_oxm_header(n) for n in ("eth_type", "ip_proto", "ipv4_src",
                                                 "ipv4_dst", f"{proto}_src", f"{proto}_dst")])
               for proto in ("tcp", "udp")}
_FIVE_TUPLE_LEN = 4 + 6 + 5 + 8 + 8 + 6 + 6          # 43, padded to 48


def five_tuple_match(proto, src, sport, dst, dport):
    """Exact IPv4 match: ``proto`` 'tcp'/'udp', addresses as int (network order)."""
    packer, (h_eth, h_proto, h_src, h_dst, h_sport, h_dport) = _FIVE_TUPLE[proto]
    src_b, dst_b = src.to_bytes(4, "big"), dst.to_bytes(4, "big")
    ip_proto = 6 if proto == "tcp" else 17
    raw = packer.pack(1, _FIVE_TUPLE_LEN, h_eth, 0x0800, h_proto, ip_proto, h_src, src_b,
                      h_dst, dst_b, h_sport, sport, h_dport, dport)
    fields = [("eth_type", 0x0800), ("ip_proto", ip_proto),
              ("ipv4_src", _socket.inet_ntoa(src_b)), ("ipv4_dst", _socket.inet_ntoa(dst_b)),
              (f"{proto}_src", sport), (f"{proto}_dst", dport)]
    return PackedMatch(fields, raw)


_FROZEN = {}


def frozen(obj):
    """Make an action or instruction replay its wire bytes after the first time.

    Only for objects that are never changed after they are built.
    """
    cls = type(obj)
    sub = _FROZEN.get(cls)
    if sub is None:
        def serialize(self, buf, offset, _base=cls.serialize):
            raw = self.__dict__.get("_wire")
            if raw is None:
                _base(self, buf, offset)
                self._wire = bytes(buf[offset:offset + self.len])
            else:
                _put(buf, offset, raw)
        sub = _FROZEN[cls] = type(cls.__name__, (cls,), {"serialize": serialize,
                                                         "__module__": cls.__module__})
    obj.__class__ = sub
    return obj
