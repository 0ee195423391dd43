"""OpenFlow 1.3 message builders, named constants and the encoding cache.

Messages are Ryu parser objects built without a datapath; the manager's send
path attaches one.  FlowMods for the pipeline's tables are made through
:mod:`lvs_app.pipeline`, which checks them; this module only knows OpenFlow.

The PacketIn hot path is dominated by Ryu's own encoding: ``OFPMatch``
normalises every field through its OXM tables.  A connection's match is
always the same exact IPv4 5-tuple, so :func:`five_tuple_match` encodes it
once with struct; instruction and action lists that depend only on the real
server are frozen (:func:`frozen`) and kept in an :class:`EncodingCache`, so
they replay their wire bytes.  Both stay Ryu objects (the fake switch decodes
them, OVS checks them).
"""

import ipaddress
import socket
import struct

from ryu.ofproto import ofproto_v1_3 as ofp
from ryu.ofproto import ofproto_v1_3_parser as parser

from lvs_app.packet import ETH_IP, ETH_IPV6, V4_LIMIT

# named constants (OpenFlow 1.3)
CONTROLLER = ofp.OFPP_CONTROLLER
FLOOD = ofp.OFPP_FLOOD
IN_TABLE = ofp.OFPP_TABLE          # PacketOut: run the packet through table 0
ANY_PORT = ofp.OFPP_ANY
MAX_PORT = ofp.OFPP_MAX
ALL_TABLES = ofp.OFPTT_ALL
NO_BUFFER = ofp.OFP_NO_BUFFER
ADD, MODIFY, DELETE, DELETE_STRICT = (ofp.OFPFC_ADD, ofp.OFPFC_MODIFY, ofp.OFPFC_DELETE,
                                      ofp.OFPFC_DELETE_STRICT)
DELETES = (DELETE, DELETE_STRICT)
METER_ADD, METER_MODIFY = ofp.OFPMC_ADD, ofp.OFPMC_MODIFY
REMOVED_IDLE, REMOVED_HARD, REMOVED_DELETE = (ofp.OFPRR_IDLE_TIMEOUT, ofp.OFPRR_HARD_TIMEOUT,
                                              ofp.OFPRR_DELETE)

ENCODING_CACHE_LIMIT = 4096        # frozen instruction/action lists kept


# -- instructions and actions ----------------------------------------------------

def apply(actions):
    """Apply-actions as an instruction list ([] when there is nothing to do)."""
    return [parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, actions)] if actions else []


def goto(table):
    return parser.OFPInstructionGotoTable(table)


def apply_then_goto(actions, table):
    """Apply ``actions`` (if any), then continue in ``table``."""
    return apply(actions) + [goto(table)]


def output(port):
    return parser.OFPActionOutput(port)


def fin_timeout(idle, hard):
    """Open vSwitch's fin_timeout (a Nicira action): once the flow sees a TCP
    FIN or RST, its idle timeout drops to ``idle`` and its hard timeout to
    ``hard`` (when they are longer, or unset)."""
    return parser.NXActionFinTimeout(fin_idle_timeout=idle, fin_hard_timeout=hard)


def to_controller():
    return [parser.OFPActionOutput(CONTROLLER, ofp.OFPCML_NO_BUFFER)]


def punt(meter=None):
    """Instructions that send a packet to the controller, through ``meter``
    (a rate limit in the switch) when one is given."""
    return ([parser.OFPInstructionMeter(meter)] if meter else []) + apply(to_controller())


def meter_mod(meter_id, pps, command=METER_ADD):
    """A packets-per-second meter that drops what exceeds ``pps`` (burst: a tenth)."""
    return parser.OFPMeterMod(None, command, ofp.OFPMF_PKTPS | ofp.OFPMF_BURST, meter_id,
                              [parser.OFPMeterBandDrop(rate=pps, burst_size=max(1, pps // 10))])


def set_field(**field):
    return parser.OFPActionSetField(**field)


def match(**fields):
    return parser.OFPMatch(**fields)


def ordered_match(*pairs):
    """A match whose fields are encoded in the order given.  Ryu sorts keyword
    fields by OXM type, which puts Nicira extensions (``ip_frag``) before
    ``eth_type``; OVS checks prerequisites in encoding order and refuses that."""
    return parser.OFPMatch(_ordered_fields=list(pairs))


# -- messages ----------------------------------------------------------------------

def flow_mod(table, priority, match_, instructions, cookie, idle=0, hard=0, notify=False,
             reset_counts=False):
    """An OFPFC_ADD FlowMod (unchecked: build pipeline flows through their Table).

    ``reset_counts``: a flow that replaces one with the same match starts its
    packet and byte counters from 0 (by default OVS carries them over).
    """
    flags = (ofp.OFPFF_SEND_FLOW_REM if notify else 0) | (
        ofp.OFPFF_RESET_COUNTS if reset_counts else 0)
    return parser.OFPFlowMod(
        None, cookie=cookie, cookie_mask=0, table_id=table, command=ADD,
        idle_timeout=idle, hard_timeout=hard, priority=priority,
        buffer_id=NO_BUFFER, out_port=ANY_PORT, out_group=ofp.OFPG_ANY,
        flags=flags, match=match_, instructions=instructions)


def flow_delete(cookie_and_mask, table=ALL_TABLES, match_=None, priority=None):
    """Delete the app's flows selected by cookie/mask; strict when ``priority`` is given."""
    cookie, mask = cookie_and_mask
    strict = priority is not None
    return parser.OFPFlowMod(
        None, cookie=cookie, cookie_mask=mask, table_id=table,
        command=DELETE_STRICT if strict else DELETE,
        priority=priority or 0, buffer_id=NO_BUFFER, out_port=ANY_PORT,
        out_group=ofp.OFPG_ANY, match=match_ or parser.OFPMatch())


def flow_modify(cookie_and_mask, table, instructions):
    """Replace the instructions of every flow in ``table`` selected by cookie/mask."""
    cookie, mask = cookie_and_mask
    return parser.OFPFlowMod(
        None, cookie=cookie, cookie_mask=mask, table_id=table, command=MODIFY,
        buffer_id=NO_BUFFER, out_port=ANY_PORT, out_group=ofp.OFPG_ANY,
        match=parser.OFPMatch(), instructions=instructions)


def packet_out(in_port, actions, data):
    return parser.OFPPacketOut(None, buffer_id=NO_BUFFER, in_port=in_port,
                               actions=actions, data=data)


class PackedPacketOut(parser.OFPPacketOut):
    """A PacketOut of a whole frame to one port, encoded with struct.

    Ryu builds an OFPPacketOut and its action objects and serialises them
    field by field; a health probe sends two of these per check, thousands
    a second, that differ only in the port and the frame.  This one keeps
    ``in_port``, ``port`` and ``data`` and packs the bytes Ryu would produce
    (no buffer, one output action with Ryu's default ``max_len``) in one go.
    It stays an OFPPacketOut: ``actions`` gives the Ryu action for readers
    (the fake switch, log lines), Datapath.send_msg serialises it as usual.
    """

    version, msg_type = ofp.OFP_VERSION, ofp.OFPT_PACKET_OUT     # what serialize() sets
    buffer_id, actions_len = NO_BUFFER, ofp.OFP_ACTION_OUTPUT_SIZE

    def __init__(self, in_port, port, data):  # noqa: super().__init__ is Ryu's slow path
        self.datapath = self.msg_len = self.xid = self.buf = None
        self.in_port, self.port, self.data = in_port, port, data

    @property
    def actions(self):
        return [output(self.port)]

    def serialize(self):
        data = self.data
        self.msg_len = length = _PACKET_OUT_LEN + len(data)
        if self.xid is None:
            self.xid = 0
        self.buf = _PACKET_OUT.pack(ofp.OFP_VERSION, ofp.OFPT_PACKET_OUT, length, self.xid,
                                    NO_BUFFER, self.in_port, _OUTPUT_LEN, ofp.OFPAT_OUTPUT,
                                    _OUTPUT_LEN, self.port, ofp.OFPCML_MAX) + data


# header, buffer_id, in_port, actions_len, pad; the output action (port, max_len, pad)
_PACKET_OUT = struct.Struct("!BBHIIIH6xHHIH6x")
_PACKET_OUT_LEN = _PACKET_OUT.size
_OUTPUT_LEN = ofp.OFP_ACTION_OUTPUT_SIZE


def packet_out_to(in_port, port, data):
    """``packet_out(in_port, [output(port)], data)``, cheaper: see :class:`PackedPacketOut`."""
    return PackedPacketOut(in_port, port, data)


def is_flow_mod(msg):
    return isinstance(msg, parser.OFPFlowMod)


# -- reading matches back ----------------------------------------------------------

_IPV6_FIELDS = frozenset({"ipv6_src", "ipv6_dst", "ipv6_nd_target"})


def match_key(match_):
    """A canonical, hashable form of a match (OFPMatch or dict)."""
    items = match_.items() if hasattr(match_, "items") else match_._fields2
    out = []
    for name, value in items:
        if name in _IPV6_FIELDS and isinstance(value, str):
            value = str(ipaddress.IPv6Address(value))      # one spelling of each address
        if isinstance(value, tuple):
            value, mask = value
            if isinstance(value, str) and ("." in value or ":" in value):
                cls, bits = ((ipaddress.IPv4Address, 32) if "." in value
                             else (ipaddress.IPv6Address, 128))
                maskint = int(cls(mask))
                value = str(cls(int(cls(value)) & maskint))
                if maskint == (1 << bits) - 1:
                    out.append((name, value))
                    continue
                mask = str(cls(maskint))
            out.append((name, (value, mask)))
        else:
            out.append((name, value))
    return tuple(sorted(out))


def match_fields(match_):
    """{field name: masked?} of an OFPMatch (Ryu keeps them in ``_fields2``)."""
    return {name: isinstance(value, tuple) for name, value in match_._fields2}


# -- cheap encodings for the hot path ------------------------------------------------

_OXM = {"eth_type": (5, "!H"), "ip_proto": (10, "!B"), "ipv4_src": (11, "!4s"),
        "ipv4_dst": (12, "!4s"), "tcp_src": (13, "!H"), "tcp_dst": (14, "!H"),
        "udp_src": (15, "!H"), "udp_dst": (16, "!H"), "ipv6_src": (26, "!16s"),
        "ipv6_dst": (27, "!16s")}


def _put(buf, offset, raw):
    end = offset + len(raw)
    if len(buf) < end:
        buf += bytearray(end - len(buf))
    buf[offset:end] = raw


class PackedMatch(parser.OFPMatch):
    """An OFPMatch whose wire form was encoded once with struct.

    ``signature`` names its fields (and the masked ones) so that a table
    checks it without walking it.
    """

    def __init__(self, fields, raw, signature):
        super().__init__(_ordered_fields=fields)
        self._raw = raw
        self.signature = signature
        self.length = struct.unpack_from("!H", raw, 2)[0]

    def serialize(self, buf, offset):
        _put(buf, offset, self._raw)
        return len(self._raw)


def _oxm_header(name):
    field, fmt = _OXM[name]
    return (0x8000 << 16) | (field << 9) | struct.calcsize(fmt)


# type, length | eth_type | ip_proto | ip src | ip dst | l4 src | l4 dst | pad
def _five_tuple_layout(proto, family):
    names = ("eth_type", "ip_proto", f"ipv{family}_src", f"ipv{family}_dst", f"{proto}_src",
             f"{proto}_dst")
    size = 4 if family == 4 else 16
    length = 4 + 6 + 5 + 2 * (4 + size) + 6 + 6
    packer = struct.Struct(f"!HH IH IB I{size}s I{size}s IH IH {-length % 8}x")
    return packer, [_oxm_header(n) for n in names], frozenset(names), length


_FIVE_TUPLE = {(proto, family): _five_tuple_layout(proto, family)
               for proto in ("tcp", "udp") for family in (4, 6)}


def five_tuple_match(proto, src, sport, dst, dport):
    """Exact 5-tuple match: ``proto`` 'tcp'/'udp', addresses as int (IPv6
    when they are, see packet.is_v6)."""
    v6 = src >= V4_LIMIT
    packer, (h_eth, h_proto, h_src, h_dst, h_sport, h_dport), names, length = _FIVE_TUPLE[
        (proto, 6 if v6 else 4)]
    size, eth_type = (16, ETH_IPV6) if v6 else (4, ETH_IP)
    src_b, dst_b = src.to_bytes(size, "big"), dst.to_bytes(size, "big")
    ip_proto = 6 if proto == "tcp" else 17
    raw = packer.pack(1, length, h_eth, eth_type, h_proto, ip_proto, h_src, src_b,
                      h_dst, dst_b, h_sport, sport, h_dport, dport)
    if v6:
        src_t, dst_t = (str(ipaddress.IPv6Address(b)) for b in (src_b, dst_b))
    else:
        src_t, dst_t = socket.inet_ntoa(src_b), socket.inet_ntoa(dst_b)
    fields = [("eth_type", eth_type), ("ip_proto", ip_proto),
              (f"ipv{6 if v6 else 4}_src", src_t), (f"ipv{6 if v6 else 4}_dst", dst_t),
              (f"{proto}_src", sport), (f"{proto}_dst", dport)]
    return PackedMatch(fields, raw, (names, frozenset()))


_SHAPES = {}
_ADDRESS_FIELDS = frozenset({"ipv4_src", "ipv4_dst", "ipv6_src", "ipv6_dst"})


def _encode(name, value, size):
    if name in _ADDRESS_FIELDS:
        return socket.inet_pton(socket.AF_INET6 if size == 16 else socket.AF_INET, value)
    return value.to_bytes(size, "big")


def _shape_layout(fields):
    """How Ryu encodes a match of this shape: its fields in wire order, each
    with its TLV header and value size; the match's signature."""
    reference = parser.OFPMatch(**fields)
    buf = bytearray()
    reference.serialize(buf, 0)
    end, offset, parts = struct.unpack_from("!H", buf, 2)[0], 4, []
    order = [name for name, _ in reference.items()]
    for name in order:
        header = struct.unpack_from("!I", buf, offset)[0]
        head_len = 8 if header >> 16 == 0xFFFF else 4      # an experimenter field
        payload = (header & 0xFF) - (head_len - 4)
        size = payload // 2 if (header >> 8) & 1 else payload
        parts.append((bytes(buf[offset:offset + head_len]), size))
        offset += head_len + payload
    if offset != end:
        raise ValueError(f"unexpected encoding of match {fields!r}")
    masked = frozenset(n for n, v in fields.items() if isinstance(v, tuple))
    return order, parts, (frozenset(order), masked)


def fast_match(**fields):
    """``match(**fields)`` with the same wire bytes, encoded with struct
    after the first match of its shape (its field names, and which are
    masked): a template's flows, built for every new client."""
    shape = tuple(sorted((name, isinstance(value, tuple)) for name, value in fields.items()))
    layout = _SHAPES.get(shape)
    if layout is None:
        layout = _SHAPES[shape] = _shape_layout(fields)
    order, parts, signature = layout
    chunks, pairs = [], []
    for name, (head, size) in zip(order, parts):
        value = fields[name]
        chunks.append(head)
        if isinstance(value, tuple):
            chunks += (_encode(name, value[0], size), _encode(name, value[1], size))
        else:
            chunks.append(_encode(name, value, size))
        pairs.append((name, value))
    body = b"".join(chunks)
    length = 4 + len(body)
    return PackedMatch(pairs, struct.pack("!HH", 1, length) + body + bytes(-length % 8),
                       signature)


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


class EncodingCache:
    """Instruction/action lists that depend only on ``key``, built and frozen once.

    Cleared whenever the service table changes (a server's actions may have),
    and when it grows past ENCODING_CACHE_LIMIT entries.
    """

    def __init__(self, limit=ENCODING_CACHE_LIMIT):
        self.limit = limit
        self._parts = {}

    def get(self, key, build):
        value = self._parts.get(key)
        if value is None:
            if len(self._parts) > self.limit:
                self._parts.clear()
            value = self._parts[key] = [frozen(part) for part in build()]
        return value

    def clear(self):
        self._parts.clear()
