"""A fake OpenFlow 1.3 switch with Open vSwitch's table semantics, for tests.

The behaviour tests (layer 2 of the test pyramid) feed the OpenFlow messages
the director returns -- Ryu parser objects, not bytes -- into a
:class:`FakeSwitch`, then send packets (plain dicts) through its tables and
assert where they leave and how they were rewritten::

    sw = FakeSwitch(n_tables=4, ports=[1, 2, 3])
    sw.apply_all(msgs)
    out = sw.send(tcp('10.0.1.5', '10.0.0.100', 40000, 80, flags='S'))
    assert out == [(3, {...})]

What is modelled (as Open vSwitch does it, where OVS and the spec differ the
OVS behaviour is taken and the docstring of the method says so):

* FlowMod ADD / MODIFY / MODIFY_STRICT / DELETE / DELETE_STRICT with
  cookie/cookie_mask, out_port/out_group, OFPTT_ALL, CHECK_OVERLAP,
  RESET_COUNTS, SEND_FLOW_REM; match prerequisites; masks that really mask;
  instructions apply/clear/write actions, write_metadata, goto_table; the
  action set; groups ALL / SELECT / INDIRECT / FAST_FAILOVER; PacketOut
  (including output to OFPP_TABLE); idle and hard timeouts on a fake clock;
  FlowRemoved and PacketIn records; the Nicira actions fin_timeout, reg_load,
  reg_load2, reg_move, resubmit, set_tunnel, dec_ttl, controller, exit, note
  and learn.
* By default every FlowMod makes a round trip through Ryu's own encoder and
  decoder first (``wire=True``): what the switch sees is what would cross the
  wire, and a message Ryu cannot serialize fails here as it would in
  ``Datapath.send_msg``.

Errors that OVS would answer with an OFPT_ERROR raise :class:`FakeSwitchError`
(its ``code_name`` is the OpenFlow error code OVS uses, best effort).  Things
this fake does not model raise :class:`FakeSwitchUnsupported`, never pass
silently.
"""

import bisect
import copy
import heapq
import ipaddress
import math
import struct
import weakref
import zlib

from ryu.ofproto import ofproto_v1_3 as ofp
from ryu.ofproto import ofproto_v1_3_parser as parser
from ryu.ofproto.ofproto_parser import MsgBase

__all__ = [
    'FakeSwitch', 'FakeClock', 'FakeDatapath', 'FakeSwitchError',
    'FakeSwitchUnsupported', 'Flow', 'Group', 'Record',
    'tcp', 'udp', 'icmp', 'arp_request', 'arp_reply',
    'packet_to_bytes', 'packet_from_bytes', 'tcp_flags',
    'CLIENT_MAC', 'ROUTER_MAC', 'BROADCAST_MAC',
]

CLIENT_MAC = '02:00:00:00:00:01'
ROUTER_MAC = '02:00:00:00:00:fe'
BROADCAST_MAC = 'ff:ff:ff:ff:ff:ff'

OFPVID_PRESENT = 0x1000
TCP_FIN, TCP_SYN, TCP_RST, TCP_PSH, TCP_ACK = 0x01, 0x02, 0x04, 0x08, 0x10
_NO_COOKIE = 0xffffffffffffffff
_MAX_RESUBMIT_DEPTH = 64

# ---------------------------------------------------------------------------
# errors


class FakeSwitchError(Exception):
    """The switch rejected a message (OVS would send an OFPT_ERROR).

    ``type_name``/``code_name`` are the OpenFlow error names (e.g.
    ``OFPET_BAD_ACTION``/``OFPBAC_MATCH_INCONSISTENT``), ``type``/``code``
    their numbers, ``msg`` the offending message when there is one.
    """

    _TYPES = (('OFPBRC_', 'OFPET_BAD_REQUEST'), ('OFPBAC_', 'OFPET_BAD_ACTION'),
              ('OFPBIC_', 'OFPET_BAD_INSTRUCTION'), ('OFPBMC_', 'OFPET_BAD_MATCH'),
              ('OFPFMFC_', 'OFPET_FLOW_MOD_FAILED'),
              ('OFPGMFC_', 'OFPET_GROUP_MOD_FAILED'))

    def __init__(self, code_name, message, msg=None):
        self.code_name = code_name
        self.type_name = next((t for p, t in self._TYPES
                               if code_name.startswith(p)), 'RYU_ENCODING')
        self.type = getattr(ofp, self.type_name, None)
        self.code = getattr(ofp, code_name, None)
        self.message = message
        self.msg = msg
        super().__init__('%s: %s' % (code_name, message))


class FakeSwitchUnsupported(NotImplementedError):
    """The message uses something this fake switch does not model."""


# ---------------------------------------------------------------------------
# fields

_MAC, _IP4, _IP6, _INT = 'mac', 'ip4', 'ip6', 'int'


class _Field(object):
    __slots__ = ('name', 'kind', 'bits', 'full', 'maskable', 'writable',
                 'pipeline', 'hex')

    def __init__(self, name, kind, bits, maskable, writable, pipeline, hex_):
        self.name, self.kind, self.bits = name, kind, bits
        self.full = (1 << bits) - 1
        self.maskable, self.writable = maskable, writable
        self.pipeline, self.hex = pipeline, hex_


_FIELDS = {}


def _def(name, kind, bits, maskable=False, writable=True, pipeline=False,
         hex_=False):
    _FIELDS[name] = _Field(name, kind, bits, maskable, writable, pipeline,
                           hex_)


_def('in_port', _INT, 32)
_def('in_phy_port', _INT, 32, writable=False)
_def('metadata', _INT, 64, True, pipeline=True, hex_=True)
_def('eth_dst', _MAC, 48, True)
_def('eth_src', _MAC, 48, True)
_def('eth_type', _INT, 16, writable=False, hex_=True)
_def('vlan_vid', _INT, 13, True, pipeline=True, hex_=True)
_def('vlan_pcp', _INT, 3)
_def('ip_dscp', _INT, 6)
_def('ip_ecn', _INT, 2)
_def('ip_proto', _INT, 8, writable=False)
_def('nw_ttl', _INT, 8)
_def('ipv4_src', _IP4, 32, True)
_def('ipv4_dst', _IP4, 32, True)
_def('ipv6_src', _IP6, 128, True)
_def('ipv6_dst', _IP6, 128, True)
_def('ipv6_flabel', _INT, 20, True, hex_=True)
_def('ip_frag', _INT, 8, True, writable=False)   # OVS's NXM ip_frag: 1 any, 2 later
_def('tcp_src', _INT, 16, True)
_def('tcp_dst', _INT, 16, True)
_def('tcp_flags', _INT, 12, True, writable=False, hex_=True)
_def('udp_src', _INT, 16, True)
_def('udp_dst', _INT, 16, True)
_def('sctp_src', _INT, 16, True)
_def('sctp_dst', _INT, 16, True)
_def('icmpv4_type', _INT, 8)
_def('icmpv4_code', _INT, 8)
_def('icmpv6_type', _INT, 8)
_def('icmpv6_code', _INT, 8)
_def('ipv6_nd_target', _IP6, 128, True)
_def('ipv6_nd_sll', _MAC, 48, True)
_def('ipv6_nd_tll', _MAC, 48, True)
_def('arp_op', _INT, 16)
_def('arp_spa', _IP4, 32, True)
_def('arp_tpa', _IP4, 32, True)
_def('arp_sha', _MAC, 48, True)
_def('arp_tha', _MAC, 48, True)
_def('tunnel_id', _INT, 64, True, pipeline=True, hex_=True)
_def('tun_ipv4_src', _IP4, 32, True, pipeline=True)
_def('tun_ipv4_dst', _IP4, 32, True, pipeline=True)
_def('tun_ipv6_src', _IP6, 128, True, pipeline=True)
_def('tun_ipv6_dst', _IP6, 128, True, pipeline=True)
_def('pkt_mark', _INT, 32, True, pipeline=True, hex_=True)
for _i in range(16):
    _def('reg%d' % _i, _INT, 32, True, pipeline=True, hex_=True)
_FIELD_ORDER = {name: i for i, name in enumerate(_FIELDS)}
# Pipeline fields that never leave the switch with the packet.
_INTERNAL = {'metadata', 'pkt_mark'} | {'reg%d' % i for i in range(16)}
_TUNNEL = ('tunnel_id', 'tun_ipv4_src', 'tun_ipv4_dst', 'tun_ipv6_src',
           'tun_ipv6_dst')

# Ryu's NXM spellings of the same fields.
_ALIASES = {
    'eth_dst_nxm': 'eth_dst', 'eth_src_nxm': 'eth_src',
    'eth_type_nxm': 'eth_type', 'ip_proto_nxm': 'ip_proto',
    'ipv4_src_nxm': 'ipv4_src', 'ipv4_dst_nxm': 'ipv4_dst',
    'tcp_src_nxm': 'tcp_src', 'tcp_dst_nxm': 'tcp_dst',
    'udp_src_nxm': 'udp_src', 'udp_dst_nxm': 'udp_dst',
    'icmpv4_type_nxm': 'icmpv4_type', 'icmpv4_code_nxm': 'icmpv4_code',
    'arp_op_nxm': 'arp_op', 'arp_spa_nxm': 'arp_spa',
    'arp_tpa_nxm': 'arp_tpa', 'arp_sha_nxm': 'arp_sha',
    'arp_tha_nxm': 'arp_tha', 'tunnel_id_nxm': 'tunnel_id',
    'ipv6_src_nxm': 'ipv6_src', 'ipv6_dst_nxm': 'ipv6_dst',
    'icmpv6_type_nxm': 'icmpv6_type', 'icmpv6_code_nxm': 'icmpv6_code',
    'nd_target': 'ipv6_nd_target', 'nd_sll': 'ipv6_nd_sll',
    'nd_tll': 'ipv6_nd_tll', 'ipv6_label': 'ipv6_flabel',
    'ip_ecn_nxm': 'ip_ecn', 'tcp_flags_nxm': 'tcp_flags',
}

_IP_TYPES = (0x0800, 0x86dd)
_L4 = [('eth_type', _IP_TYPES)]
# Prerequisites (OpenFlow 1.3.5 table 12, and OVS's meta-flow for the
# extensions): each entry must be matched exactly with one of the values.
_PREREQ = {
    'vlan_pcp': [('vlan_vid', 'present')],
    'ip_dscp': _L4, 'ip_ecn': _L4, 'ip_proto': _L4, 'nw_ttl': _L4, 'ip_frag': _L4,
    'ipv4_src': [('eth_type', (0x0800,))],
    'ipv4_dst': [('eth_type', (0x0800,))],
    'ipv6_src': [('eth_type', (0x86dd,))],
    'ipv6_dst': [('eth_type', (0x86dd,))],
    'ipv6_flabel': [('eth_type', (0x86dd,))],
    'tcp_src': _L4 + [('ip_proto', (6,))],
    'tcp_dst': _L4 + [('ip_proto', (6,))],
    'tcp_flags': _L4 + [('ip_proto', (6,))],
    'udp_src': _L4 + [('ip_proto', (17,))],
    'udp_dst': _L4 + [('ip_proto', (17,))],
    'sctp_src': _L4 + [('ip_proto', (132,))],
    'sctp_dst': _L4 + [('ip_proto', (132,))],
    'icmpv4_type': [('eth_type', (0x0800,)), ('ip_proto', (1,))],
    'icmpv4_code': [('eth_type', (0x0800,)), ('ip_proto', (1,))],
    'icmpv6_type': [('eth_type', (0x86dd,)), ('ip_proto', (58,))],
    'icmpv6_code': [('eth_type', (0x86dd,)), ('ip_proto', (58,))],
    'ipv6_nd_target': [('eth_type', (0x86dd,)), ('ip_proto', (58,)),
                       ('icmpv6_type', (135, 136))],
    'ipv6_nd_sll': [('eth_type', (0x86dd,)), ('ip_proto', (58,)),
                    ('icmpv6_type', (135,))],
    'ipv6_nd_tll': [('eth_type', (0x86dd,)), ('ip_proto', (58,)),
                    ('icmpv6_type', (136,))],
}
for _f in ('arp_op', 'arp_spa', 'arp_tpa', 'arp_sha', 'arp_tha'):
    _PREREQ[_f] = [('eth_type', (0x0806, 0x8035))]


def _field(name, error_code=None, where=''):
    """The _Field for a (Ryu) field name, or raise."""
    fi = _FIELDS.get(_ALIASES.get(name, name))
    if fi is None:
        if error_code:
            raise FakeSwitchUnsupported(
                '%sfield %r is not modelled by FakeSwitch' % (where, name))
        raise ValueError('unknown field %r (known: %s)'
                         % (name, ', '.join(_FIELDS)))
    return fi


def _int_value(fi, value):
    """User value (Ryu style: str address, int, bytes) -> int."""
    if isinstance(value, bool):
        raise ValueError('%s: bad value %r' % (fi.name, value))
    if isinstance(value, int):
        v = value
    elif isinstance(value, (bytes, bytearray)):
        v = int.from_bytes(value, 'big')
    elif isinstance(value, str):
        s = value.strip()
        try:
            if fi.kind == _MAC:
                parts = s.replace('-', ':').split(':')
                if len(parts) != 6 or not all(1 <= len(p) <= 2 for p in parts):
                    raise ValueError(s)
                v = int(''.join(p.zfill(2) for p in parts), 16)
            elif fi.kind == _IP4:
                v = int(ipaddress.IPv4Address(s))
            elif fi.kind == _IP6:
                v = int(ipaddress.IPv6Address(s))
            elif fi.name == 'tcp_flags' and s and not s[0].isdigit():
                v = tcp_flags(s)
            else:
                v = int(s, 0)
        except ValueError:
            raise ValueError('%s: cannot parse %r' % (fi.name, value))
    else:
        raise ValueError('%s: bad value %r' % (fi.name, value))
    if not 0 <= v <= fi.full:
        raise ValueError('%s: value %r does not fit in %d bits'
                         % (fi.name, value, fi.bits))
    return v


def _user_value(fi, v):
    """int -> the form Ryu uses (str addresses, int otherwise)."""
    if fi.kind == _MAC:
        return ':'.join('%02x' % b for b in v.to_bytes(6, 'big'))
    if fi.kind == _IP4:
        return str(ipaddress.IPv4Address(v))
    if fi.kind == _IP6:
        return str(ipaddress.IPv6Address(v))
    return v


def _fmt_value(fi, v):
    if fi.kind != _INT:
        return _user_value(fi, v)
    if fi.name == 'eth_type':
        return '0x%04x' % v
    return '0x%x' % v if fi.hex else str(v)


def _value_mask(fi, uv):
    """Ryu match value -> (value, mask) ints, value already masked."""
    mask = None
    if isinstance(uv, (tuple, list)):
        if len(uv) != 2:
            raise ValueError('%s: bad value %r' % (fi.name, uv))
        uv, mask = uv
    elif isinstance(uv, str) and '/' in uv and fi.kind in (_IP4, _IP6):
        iface = ipaddress.ip_interface(uv.strip())
        uv, mask = str(iface.ip), str(iface.netmask)
    v = _int_value(fi, uv)
    m = fi.full if mask is None else _int_value(fi, mask)
    return v & m, m


def _prereq_problem(name, view):
    """Why the field's prerequisites are not met by ``view`` (None if met).

    ``view`` maps field names to exactly known values (a flow's exact match
    fields, or a packet's fields).
    """
    for pf, allowed in _PREREQ.get(name, ()):
        have = view.get(pf)
        if allowed == 'present':
            if have is None or not have & OFPVID_PRESENT:
                return ('%s requires a VLAN tag (vlan_vid with '
                        'OFPVID_PRESENT)' % name)
            continue
        if have not in allowed:
            fi = _FIELDS[pf]
            want = ' or '.join('%s=%s' % (pf, _fmt_value(fi, a))
                               for a in allowed)
            return '%s requires %s' % (name, want)
    return None


class _Match(object):
    """A normalized match: {field: (value, mask)} with value & mask == value.

    Fully wildcarded fields (mask 0) are dropped, as OVS does.
    """

    __slots__ = ('fields', 'sig', 'key')

    def __init__(self, fields):
        self.fields = fields
        self.sig = tuple(sorted((n, m) for n, (v, m) in fields.items()))
        self.key = tuple(fields[n][0] for n, m in self.sig)

    def view(self):
        """Exactly matched fields (what prerequisites can rely on)."""
        return {n: v for n, (v, m) in self.fields.items()
                if m == _FIELDS[n].full}

    def user(self):
        out = {}
        for n in sorted(self.fields, key=_FIELD_ORDER.get):
            v, m = self.fields[n]
            fi = _FIELDS[n]
            out[n] = (_user_value(fi, v) if m == fi.full
                      else (_user_value(fi, v), _user_value(fi, m)))
        return out

    def text(self):
        parts = []
        for n in sorted(self.fields, key=_FIELD_ORDER.get):
            v, m = self.fields[n]
            fi = _FIELDS[n]
            if m == fi.full:
                parts.append('%s=%s' % (n, _fmt_value(fi, v)))
            elif fi.kind in (_IP4, _IP6) and (fi.full ^ m) & ((fi.full ^ m) + 1) == 0:
                # a prefix mask: CIDR notation
                parts.append('%s=%s/%d' % (n, _fmt_value(fi, v),
                                           bin(m).count('1')))
            else:
                parts.append('%s=%s/%s' % (n, _fmt_value(fi, v),
                                           _fmt_value(fi, m)))
        return ','.join(parts) or '*'

    def subsumes(self, other):
        """True if every packet matching ``other`` matches self (DELETE)."""
        for n, (v, m) in self.fields.items():
            o = other.fields.get(n)
            if o is None or o[1] & m != m or o[0] & m != v:
                return False
        return True

    def overlaps(self, other):
        """True if some packet could match both (CHECK_OVERLAP)."""
        for n, (v, m) in self.fields.items():
            o = other.fields.get(n)
            if o is not None and (v ^ o[0]) & m & o[1]:
                return False
        return True

    def __eq__(self, other):
        return isinstance(other, _Match) and self.fields == other.fields

    def __hash__(self):
        return hash((self.sig, self.key))


def _parse_match(match, where, check_prereqs=True, error_code='OFPBMC_BAD_VALUE'):
    """Ryu OFPMatch (or a plain dict) -> _Match, validated as OVS does."""
    if match is None:
        items = []
    elif isinstance(match, dict):
        items = list(match.items())
    elif hasattr(match, '_fields2'):
        items = list(match.items())
    else:
        raise TypeError('%smatch must be an OFPMatch or a dict, not %r'
                        % (where, match))
    fields = {}
    for name, uv in items:
        fi = _field(name, error_code='unsupported', where=where)
        if fi.name in fields:
            raise FakeSwitchError('OFPBMC_DUP_FIELD', '%smatch field %s given '
                                  'twice' % (where, fi.name))
        try:
            v, m = _value_mask(fi, uv)
        except ValueError as e:
            raise FakeSwitchError(error_code, '%smatch %s' % (where, e))
        if m != fi.full and not fi.maskable:
            raise FakeSwitchError('OFPBMC_BAD_MASK', '%smatch field %s cannot '
                                  'be masked in OVS' % (where, fi.name))
        if m:
            fields[fi.name] = (v, m)
    result = _Match(fields)
    if check_prereqs:
        view = result.view()
        for n in fields:
            problem = _prereq_problem(n, view)
            if problem:
                raise FakeSwitchError(
                    'OFPBMC_BAD_PREREQ', '%smatch field %s in the match (OVS '
                    'rejects the flow: bad prerequisite)' % (where, problem))
    return result


# ---------------------------------------------------------------------------
# packets


def tcp_flags(flags):
    """'S', 'SA', 'FA', 'R', 'PA'... or an int -> the TCP flags int."""
    if isinstance(flags, int):
        return flags
    bits = {'F': 0x01, 'S': 0x02, 'R': 0x04, 'P': 0x08, 'A': 0x10,
            'U': 0x20, 'E': 0x40, 'C': 0x80, 'N': 0x100, '.': 0}
    v = 0
    for c in flags.upper():
        if c not in bits:
            raise ValueError('bad TCP flag %r in %r (use FSRPAUECN)'
                             % (c, flags))
        v |= bits[c]
    return v


def _flags_text(v):
    return ''.join(c for c, b in zip('FSRPAUECN', (1, 2, 4, 8, 16, 32, 64,
                                                   128, 256)) if v & b) or '.'


# Keys of a packet dict that are not match fields.
_EXTRA_KEYS = ('len', 'payload', 'tcp_seq', 'tcp_ack', 'tcp_window', 'ip_id',
               'frag_offset', 'frag_more')


class _Packet(object):
    """A packet inside the switch: field ints plus extra (non-field) keys."""

    __slots__ = ('f', 'extra', 'length')

    @classmethod
    def from_user(cls, d, in_port=None):
        if isinstance(d, (bytes, bytearray)):
            d = packet_from_bytes(d, in_port=in_port)
        elif not isinstance(d, dict):
            raise TypeError('a packet is a dict of fields (see tcp(), udp(), '
                            'arp_request()) or frame bytes, not %r' % (d,))
        p = cls()
        p.f, p.extra = {}, {}
        for k, v in d.items():
            if k in _EXTRA_KEYS or k.startswith('_'):
                p.extra[k] = v
                continue
            fi = _FIELDS.get(_ALIASES.get(k, k))
            if fi is None:
                raise ValueError('unknown packet field %r; fields are %s and '
                                 'extras %s (or any key starting with _)'
                                 % (k, ', '.join(_FIELDS),
                                    ', '.join(_EXTRA_KEYS)))
            if fi.name == 'vlan_vid':
                v = _int_value(fi, v) | OFPVID_PRESENT
            else:
                v = _int_value(fi, v)
            p.f[fi.name] = v
        if in_port is not None:
            p.f['in_port'] = in_port
        if 'in_port' not in p.f:
            raise ValueError('packet has no in_port: %r' % (d,))
        p.f.setdefault('in_phy_port', p.f['in_port'])
        ln = p.extra.get('len')
        p.length = ln if ln else len(_frame(p))
        return p

    def copy(self):
        p = _Packet()
        p.f, p.extra, p.length = dict(self.f), dict(self.extra), self.length
        return p

    def get(self, name):
        v = self.f.get(name)
        if v is None and _FIELDS[name].pipeline:
            return 0
        return v

    def to_user(self):
        out = {}
        for n in sorted(self.f, key=_FIELD_ORDER.get):
            v = self.f[n]
            if n in _INTERNAL or n == 'in_phy_port':
                continue
            if n == 'vlan_vid':
                if v & OFPVID_PRESENT:
                    out[n] = v & 0xfff
                continue
            if n in _TUNNEL and not v:
                continue
            out[n] = _user_value(_FIELDS[n], v)
        out.update(self.extra)
        return out

    def text(self):
        parts = []
        for n in sorted(self.f, key=_FIELD_ORDER.get):
            v = self.f[n]
            if n == 'in_phy_port' or (_FIELDS[n].pipeline and not v):
                continue
            if n == 'tcp_flags':
                parts.append('tcp_flags=%s' % _flags_text(v))
            else:
                parts.append('%s=%s' % (n, _fmt_value(_FIELDS[n], v)))
        return ' '.join(parts)


def _csum(data):
    if len(data) % 2:
        data += b'\0'
    s = sum(struct.unpack('!%dH' % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff


def _l4(f, x, proto, pseudo):
    payload = x.get('payload', b'') or b''
    if proto == 6:
        flags = f.get('tcp_flags', 0)
        hdr = struct.pack('!HHIIBBHHH', f.get('tcp_src', 0), f.get('tcp_dst', 0),
                          x.get('tcp_seq', 0), x.get('tcp_ack', 0),
                          (5 << 4) | (flags >> 8 & 1), flags & 0xff,
                          x.get('tcp_window', 65535), 0, 0)
        seg = hdr + payload
        c = _csum(pseudo(len(seg)) + seg)
        return seg[:16] + struct.pack('!H', c) + seg[18:]
    if proto == 17:
        seg = struct.pack('!HHHH', f.get('udp_src', 0), f.get('udp_dst', 0),
                          8 + len(payload), 0) + payload
        c = _csum(pseudo(len(seg)) + seg) or 0xffff
        return seg[:6] + struct.pack('!H', c) + seg[8:]
    if proto in (1, 58):
        t = 'icmpv4' if proto == 1 else 'icmpv6'
        seg = struct.pack('!BBHI', f.get(t + '_type', 0), f.get(t + '_code', 0),
                          0, 0) + payload
        c = _csum((pseudo(len(seg)) if proto == 58 else b'') + seg)
        return seg[:2] + struct.pack('!H', c) + seg[4:]
    return payload


def _frame(p):
    f, x = p.f, p.extra
    eth_type = f.get('eth_type', 0)
    out = (f.get('eth_dst', 0).to_bytes(6, 'big')
           + f.get('eth_src', 0).to_bytes(6, 'big'))
    vid = f.get('vlan_vid', 0)
    if vid & OFPVID_PRESENT:
        out += struct.pack('!HH', 0x8100, f.get('vlan_pcp', 0) << 13
                           | (vid & 0xfff))
    out += struct.pack('!H', eth_type)
    if eth_type == 0x0800:
        src, dst = f.get('ipv4_src', 0), f.get('ipv4_dst', 0)
        proto = f.get('ip_proto', 0)
        sb, db = src.to_bytes(4, 'big'), dst.to_bytes(4, 'big')
        frag = f.get('ip_frag', 0)
        if frag & 2:            # a later fragment: no transport header of its own
            l4 = x.get('payload', b'') or b''
        else:
            l4 = _l4(f, x, proto, lambda n: sb + db + struct.pack('!BBH', 0, proto, n))
        if frag:
            more = frag == 1 or x.get('frag_more', False)
            flags_offset = (0x2000 if more else 0) | x.get('frag_offset', 0) // 8
        else:
            flags_offset = 0x4000                       # DF
        tos = f.get('ip_dscp', 0) << 2 | f.get('ip_ecn', 0)
        hdr = struct.pack('!BBHHHBBH4s4s', 0x45, tos, 20 + len(l4),
                          x.get('ip_id', 0), flags_offset, f.get('nw_ttl', 64), proto,
                          0, sb, db)
        hdr = hdr[:10] + struct.pack('!H', _csum(hdr)) + hdr[12:]
        out += hdr + l4
    elif eth_type == 0x86dd:
        src, dst = f.get('ipv6_src', 0), f.get('ipv6_dst', 0)
        proto = f.get('ip_proto', 0)
        sb, db = src.to_bytes(16, 'big'), dst.to_bytes(16, 'big')
        l4 = _l4(f, x, proto, lambda n: sb + db + struct.pack('!IxxxB', n, proto))
        tc = f.get('ip_dscp', 0) << 2 | f.get('ip_ecn', 0)
        out += struct.pack('!IHBB16s16s', 6 << 28 | tc << 20
                           | f.get('ipv6_flabel', 0), len(l4), proto,
                           f.get('nw_ttl', 64), sb, db) + l4
    elif eth_type in (0x0806, 0x8035):
        out += struct.pack('!HHBBH6s4s6s4s', 1, 0x0800, 6, 4, f.get('arp_op', 0),
                           f.get('arp_sha', 0).to_bytes(6, 'big'),
                           f.get('arp_spa', 0).to_bytes(4, 'big'),
                           f.get('arp_tha', 0).to_bytes(6, 'big'),
                           f.get('arp_tpa', 0).to_bytes(4, 'big'))
    else:
        out += x.get('payload', b'') or b''
    want = x.get('len')
    if want and want > len(out):
        out += bytes(want - len(out))
    return bytes(out)


def packet_to_bytes(packet):
    """A packet dict -> the Ethernet frame bytes (checksums filled in)."""
    return _frame(_Packet.from_user(dict(packet, in_port=packet.get('in_port', 0))))


def packet_from_bytes(data, in_port=None):
    """Ethernet frame bytes -> a packet dict (with 'len' = len(data))."""
    data = bytes(data)
    d = {}
    if in_port is not None:
        d['in_port'] = in_port
    d['eth_dst'] = _user_value(_FIELDS['eth_dst'], int.from_bytes(data[0:6], 'big'))
    d['eth_src'] = _user_value(_FIELDS['eth_src'], int.from_bytes(data[6:12], 'big'))
    (eth_type,) = struct.unpack_from('!H', data, 12)
    off = 14
    if eth_type in (0x8100, 0x88a8):
        (tci, eth_type) = struct.unpack_from('!HH', data, 14)
        d['vlan_vid'], d['vlan_pcp'] = tci & 0xfff, tci >> 13
        off = 18
    d['eth_type'] = eth_type
    proto, l4 = None, None
    if eth_type == 0x0800:
        vihl, tos, total, ip_id, flags_offset, ttl, proto = struct.unpack_from(
            '!BBHHHBB', data, off)
        ihl = (vihl & 0xf) * 4
        d.update(ip_dscp=tos >> 2, ip_ecn=tos & 3, nw_ttl=ttl, ip_proto=proto,
                 ipv4_src=str(ipaddress.IPv4Address(data[off + 12:off + 16])),
                 ipv4_dst=str(ipaddress.IPv4Address(data[off + 16:off + 20])))
        if ip_id:
            d['ip_id'] = ip_id
        l4 = data[off + ihl:off + total]
        frag_offset = (flags_offset & 0x1fff) * 8
        if flags_offset & 0x2000 or frag_offset:
            d['ip_frag'] = 3 if frag_offset else 1
            if frag_offset:
                d['frag_offset'], d['frag_more'] = frag_offset, bool(flags_offset & 0x2000)
                d['payload'], l4 = bytes(l4), None
    elif eth_type == 0x86dd:
        vtf, plen, proto, hlim = struct.unpack_from('!IHBB', data, off)
        d.update(ip_dscp=(vtf >> 20 & 0xff) >> 2, ip_ecn=vtf >> 20 & 3,
                 ipv6_flabel=vtf & 0xfffff, ip_proto=proto, nw_ttl=hlim,
                 ipv6_src=str(ipaddress.IPv6Address(data[off + 8:off + 24])),
                 ipv6_dst=str(ipaddress.IPv6Address(data[off + 24:off + 40])))
        l4 = data[off + 40:off + 40 + plen]
    elif eth_type in (0x0806, 0x8035):
        (op,) = struct.unpack_from('!H', data, off + 6)
        d.update(arp_op=op,
                 arp_sha=_user_value(_FIELDS['arp_sha'], int.from_bytes(data[off + 8:off + 14], 'big')),
                 arp_spa=str(ipaddress.IPv4Address(data[off + 14:off + 18])),
                 arp_tha=_user_value(_FIELDS['arp_tha'], int.from_bytes(data[off + 18:off + 24], 'big')),
                 arp_tpa=str(ipaddress.IPv4Address(data[off + 24:off + 28])))
    if l4 is not None:
        payload = l4
        if proto == 6 and len(l4) >= 20:
            sp, dp, seq, ack, doff, fl, win = struct.unpack_from('!HHIIBBH', l4)
            d.update(tcp_src=sp, tcp_dst=dp, tcp_flags=(doff & 1) << 8 | fl)
            if seq:
                d['tcp_seq'] = seq
            if ack:
                d['tcp_ack'] = ack
            if win != 65535:
                d['tcp_window'] = win
            payload = l4[(doff >> 4) * 4:]
        elif proto == 17 and len(l4) >= 8:
            sp, dp = struct.unpack_from('!HH', l4)
            d.update(udp_src=sp, udp_dst=dp)
            payload = l4[8:]
        elif proto in (1, 58) and len(l4) >= 8:
            t = 'icmpv4' if proto == 1 else 'icmpv6'
            d[t + '_type'], d[t + '_code'] = l4[0], l4[1]
            payload = l4[8:]
            if proto == 58 and l4[0] in (135, 136) and len(l4) >= 24:
                # Neighbour Discovery: the target, and the link-layer option
                d['ipv6_nd_target'] = str(ipaddress.IPv6Address(l4[8:24]))
                opt = l4[24:32]
                if len(opt) == 8 and opt[0] == (1 if l4[0] == 135 else 2):
                    name = 'ipv6_nd_sll' if l4[0] == 135 else 'ipv6_nd_tll'
                    d[name] = _user_value(_FIELDS[name], int.from_bytes(opt[2:8], 'big'))
        if payload:
            d['payload'] = bytes(payload)
    d['len'] = len(data)
    return d


def _ip_fields(src, dst):
    if ':' in src:
        return {'eth_type': 0x86dd, 'ipv6_src': src, 'ipv6_dst': dst}
    return {'eth_type': 0x0800, 'ipv4_src': src, 'ipv4_dst': dst}


def _eth(in_port, eth_src, eth_dst, vlan_vid, extra):
    d = {'in_port': in_port, 'eth_src': eth_src, 'eth_dst': eth_dst}
    if vlan_vid is not None:
        d['vlan_vid'] = vlan_vid
    d.update(extra)
    return d


def tcp(src, dst, sport, dport, flags='S', in_port=1, eth_src=CLIENT_MAC,
        eth_dst=ROUTER_MAC, ttl=64, payload=b'', vlan_vid=None, **extra):
    """A TCP packet dict (IPv6 if the addresses contain ':').

    ``flags`` is a string of FSRPAUEC letters ('S', 'SA', 'A', 'FA', 'R') or
    an int.  Extra keyword arguments are added as they are (e.g. len=1500).
    """
    d = _eth(in_port, eth_src, eth_dst, vlan_vid, {})
    d.update(_ip_fields(src, dst))
    d.update(ip_proto=6, nw_ttl=ttl, tcp_src=sport, tcp_dst=dport,
             tcp_flags=tcp_flags(flags))
    if payload:
        d['payload'] = payload
    d.update(extra)
    return d


def udp(src, dst, sport, dport, in_port=1, eth_src=CLIENT_MAC,
        eth_dst=ROUTER_MAC, ttl=64, payload=b'', vlan_vid=None, **extra):
    """A UDP packet dict (IPv6 if the addresses contain ':')."""
    d = _eth(in_port, eth_src, eth_dst, vlan_vid, {})
    d.update(_ip_fields(src, dst))
    d.update(ip_proto=17, nw_ttl=ttl, udp_src=sport, udp_dst=dport)
    if payload:
        d['payload'] = payload
    d.update(extra)
    return d


def icmp(src, dst, type_=8, code=0, in_port=1, eth_src=CLIENT_MAC,
         eth_dst=ROUTER_MAC, ttl=64, vlan_vid=None, **extra):
    """An ICMP (or ICMPv6) packet dict; type 8 is an echo request."""
    d = _eth(in_port, eth_src, eth_dst, vlan_vid, {})
    d.update(_ip_fields(src, dst))
    if ':' in src:
        d.update(ip_proto=58, icmpv6_type=type_, icmpv6_code=code)
    else:
        d.update(ip_proto=1, icmpv4_type=type_, icmpv4_code=code)
    d['nw_ttl'] = ttl
    d.update(extra)
    return d


def arp_request(spa, tpa, sha=CLIENT_MAC, in_port=1, vlan_vid=None, **extra):
    """A broadcast ARP request: who has ``tpa``? tell ``spa`` (at ``sha``)."""
    d = _eth(in_port, sha, BROADCAST_MAC, vlan_vid, {})
    d.update(eth_type=0x0806, arp_op=1, arp_spa=spa, arp_tpa=tpa, arp_sha=sha,
             arp_tha='00:00:00:00:00:00')
    d.update(extra)
    return d


def arp_reply(spa, tpa, sha, tha, in_port=1, vlan_vid=None, **extra):
    """A unicast ARP reply: ``spa`` is at ``sha`` (sent to ``tha``)."""
    d = _eth(in_port, sha, tha, vlan_vid, {})
    d.update(eth_type=0x0806, arp_op=2, arp_spa=spa, arp_tpa=tpa, arp_sha=sha,
             arp_tha=tha)
    d.update(extra)
    return d


# ---------------------------------------------------------------------------
# records, flows, groups


class Record(dict):
    """A dict whose keys can also be read as attributes (PacketIn, ...)."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name)


_RR_NAMES = {ofp.OFPRR_IDLE_TIMEOUT: 'IDLE_TIMEOUT',
             ofp.OFPRR_HARD_TIMEOUT: 'HARD_TIMEOUT',
             ofp.OFPRR_DELETE: 'DELETE', ofp.OFPRR_GROUP_DELETE: 'GROUP_DELETE'}
_PR_NAMES = {ofp.OFPR_NO_MATCH: 'NO_MATCH', ofp.OFPR_ACTION: 'ACTION',
             ofp.OFPR_INVALID_TTL: 'INVALID_TTL'}
_PORT_NAMES = {ofp.OFPP_IN_PORT: 'IN_PORT', ofp.OFPP_TABLE: 'TABLE',
               ofp.OFPP_NORMAL: 'NORMAL', ofp.OFPP_FLOOD: 'FLOOD',
               ofp.OFPP_ALL: 'ALL', ofp.OFPP_CONTROLLER: 'CONTROLLER',
               ofp.OFPP_LOCAL: 'LOCAL', ofp.OFPP_ANY: 'ANY'}


def _port_text(port):
    return _PORT_NAMES.get(port, str(port))


class _Op(object):
    """One compiled action: ``kind`` and ``args``, ``text`` for traces."""

    __slots__ = ('kind', 'args', 'text')

    def __init__(self, kind, args, text):
        self.kind, self.args, self.text = kind, args, text

    def __repr__(self):
        return self.text


# Action-set slots in the order OpenFlow 1.3 (5.10) executes them.
_SET_ORDER = {'copy_ttl_in': 0, 'pop_vlan': 1, 'push_vlan': 4,
              'copy_ttl_out': 5, 'dec_ttl': 6, 'set_ttl': 7, 'set_field': 7,
              'set_queue': 8, 'group': 9, 'output': 10}


class _Prog(object):
    """A flow's instructions, compiled."""

    __slots__ = ('apply', 'clear', 'write', 'metadata', 'goto', 'meter',
                 'out_ports', 'groups')

    def __init__(self):
        self.apply = self.write = None
        self.clear = False
        self.metadata = self.goto = self.meter = None
        self.out_ports, self.groups = set(), set()

    def text(self):
        parts = []
        if self.meter is not None:
            parts.append('meter:%d' % self.meter)
        if self.apply is not None:
            parts.append('apply(%s)' % ','.join(o.text for o in self.apply))
        if self.clear:
            parts.append('clear_actions')
        if self.write is not None:
            parts.append('write(%s)' % ','.join(o.text for o in self.write))
        if self.metadata is not None:
            parts.append('write_metadata:0x%x/0x%x' % self.metadata)
        if self.goto is not None:
            parts.append('goto_table:%d' % self.goto)
        return ' '.join(parts) or 'drop'


class Flow(object):
    """A flow entry, as tests read it (do not modify).

    ``match`` is a dict in Ryu's form (masked fields as ``(value, mask)``),
    ``instructions`` the Ryu instruction objects the switch decoded.
    Times are on the switch clock; ``modified_at`` is where the hard timeout
    counts from (OVS restarts it on MODIFY), ``last_used`` where the idle
    timeout counts from.
    """

    def __init__(self, table_id, priority, m, prog, instructions, cookie,
                 idle_timeout, hard_timeout, flags, now, seq):
        self.table_id, self.priority = table_id, priority
        self._m, self.prog = m, prog
        self.match = m.user()
        self.instructions = instructions
        self.cookie, self.flags = cookie, flags
        self.idle_timeout, self.hard_timeout = idle_timeout, hard_timeout
        self.packet_count = self.byte_count = 0
        self.installed_at = self.modified_at = self.last_used = now
        self._timeout_set_at = now
        self.seq = seq
        self.removed = False
        self._expiring = False

    @property
    def apply_actions(self):
        """The Ryu actions of the apply_actions instruction ([] if none)."""
        return self._actions(ofp.OFPIT_APPLY_ACTIONS)

    @property
    def write_actions(self):
        """The Ryu actions of the write_actions instruction ([] if none)."""
        return self._actions(ofp.OFPIT_WRITE_ACTIONS)

    @property
    def goto_table(self):
        return self.prog.goto

    @property
    def is_table_miss(self):
        return self.priority == 0 and not self._m.fields

    def _actions(self, type_):
        for inst in self.instructions:
            if getattr(inst, 'type', None) == type_ and hasattr(inst, 'actions'):
                return list(inst.actions)
        return []

    def _deadline(self):
        hard = (self.modified_at + self.hard_timeout if self.hard_timeout
                else None)
        idle = self.last_used + self.idle_timeout if self.idle_timeout else None
        if hard is not None and (idle is None or hard <= idle):
            return hard, ofp.OFPRR_HARD_TIMEOUT
        if idle is not None:
            return idle, ofp.OFPRR_IDLE_TIMEOUT
        return None, None

    def text(self, now=None, counters=True):
        parts = ['table=%d' % self.table_id, 'priority=%d' % self.priority]
        if self.cookie:
            parts.append('cookie=0x%x' % self.cookie)
        if now is not None:
            parts.append('duration=%gs' % (now - self.installed_at))
        if counters:
            parts.append('n_packets=%d n_bytes=%d' % (self.packet_count,
                                                      self.byte_count))
        if self.idle_timeout:
            parts.append('idle_timeout=%d' % self.idle_timeout)
        if self.hard_timeout:
            parts.append('hard_timeout=%d' % self.hard_timeout)
        if self.flags:
            names = [n for b, n in ((1, 'send_flow_rem'), (2, 'check_overlap'),
                                    (4, 'reset_counts')) if self.flags & b]
            parts.append('flags=' + '|'.join(names or [hex(self.flags)]))
        parts.append(self._m.text())
        parts.append('actions=' + self.prog.text())
        return ' '.join(parts)

    def __repr__(self):
        return '<Flow %s>' % self.text()


class Group(object):
    """A group entry: ``type`` (OFPGT_*), ``buckets`` (Ryu OFPBucket)."""

    def __init__(self, group_id, type_, buckets, compiled):
        self.group_id, self.type, self.buckets = group_id, type_, buckets
        self._buckets = compiled          # [(weight, watch_port, watch_group, ops)]
        self.packet_count = self.byte_count = 0

    def text(self):
        tname = {ofp.OFPGT_ALL: 'all', ofp.OFPGT_SELECT: 'select',
                 ofp.OFPGT_INDIRECT: 'indirect',
                 ofp.OFPGT_FF: 'fast_failover'}.get(self.type, self.type)
        bs = []
        for w, wp, wg, ops in self._buckets:
            b = 'bucket(%s' % ('weight=%d,' % w if self.type == ofp.OFPGT_SELECT
                               else '')
            if wp != ofp.OFPP_ANY:
                b += 'watch_port=%s,' % _port_text(wp)
            if wg != ofp.OFPG_ANY:
                b += 'watch_group=%d,' % wg
            bs.append(b + 'actions=%s)' % ','.join(o.text for o in ops))
        return 'group_id=%d type=%s %s' % (self.group_id, tname, ' '.join(bs))

    def __repr__(self):
        return '<Group %s>' % self.text()


class _Subtable(object):
    """Flows of one table sharing the same (field, mask) signature."""

    __slots__ = ('sig', 'entries', 'max_priority', 'count')

    def __init__(self, sig):
        self.sig, self.entries = sig, {}
        self.max_priority, self.count = -1, 0


class _Table(object):
    def __init__(self, table_id):
        self.table_id = table_id
        self.subtables = {}
        self.ordered = []          # subtables by max priority, descending
        self.dirty = False
        self.flows = {}            # seq -> Flow, in installation order

    def insert(self, flow):
        st = self.subtables.get(flow._m.sig)
        if st is None:
            st = self.subtables[flow._m.sig] = _Subtable(flow._m.sig)
        lst = st.entries.setdefault(flow._m.key, [])
        keys = [(-f.priority, f.seq) for f in lst]
        lst.insert(bisect.bisect(keys, (-flow.priority, flow.seq)), flow)
        st.count += 1
        if flow.priority > st.max_priority:
            st.max_priority = flow.priority
        self.dirty = True
        self.flows[flow.seq] = flow

    def remove(self, flow):
        st = self.subtables[flow._m.sig]
        lst = st.entries[flow._m.key]
        lst.remove(flow)
        if not lst:
            del st.entries[flow._m.key]
        st.count -= 1
        if not st.count:
            del self.subtables[flow._m.sig]
        elif flow.priority == st.max_priority:
            st.max_priority = max(l[0].priority for l in st.entries.values())
        self.dirty = True
        del self.flows[flow.seq]

    def find_exact(self, m, priority):
        st = self.subtables.get(m.sig)
        if st is not None:
            for f in st.entries.get(m.key, ()):
                if f.priority == priority:
                    return f
        return None

    def lookup(self, pkt):
        """(best flow or None, [other flows tied at the best priority])."""
        if self.dirty:
            self.ordered = sorted(self.subtables.values(),
                                  key=lambda s: -s.max_priority)
            self.dirty = False
        best, ties = None, []
        for st in self.ordered:
            if best is not None and st.max_priority < best.priority:
                break
            key = []
            for name, mask in st.sig:
                v = pkt.get(name)
                if v is None:
                    break
                key.append(v & mask)
            else:
                lst = st.entries.get(tuple(key))
                if not lst:
                    continue
                cand = lst[0]
                if best is None or cand.priority > best.priority:
                    best, ties = cand, []
                elif cand.priority == best.priority:
                    if cand.seq < best.seq:
                        best, cand = cand, best
                    ties.append(cand)
        return best, ties

    def sorted_flows(self):
        return sorted(self.flows.values(), key=lambda f: (-f.priority, f.seq))


# ---------------------------------------------------------------------------
# clock and datapath


class FakeClock(object):
    """Seconds on a fake clock, shared by any number of switches.

    Moving it forward expires flows on every switch that uses it.
    """

    def __init__(self, start=0.0):
        self.now = start
        self._switches = weakref.WeakSet()

    def advance(self, seconds):
        if seconds < 0:
            raise ValueError('the clock cannot go back (%r)' % seconds)
        self.set(self.now + seconds)

    def set(self, now):
        if now < self.now:
            raise ValueError('the clock cannot go back from %r to %r'
                             % (self.now, now))
        self.now = now
        for sw in list(self._switches):
            sw.expire()


class FakeDatapath(object):
    """Enough of ryu.controller.controller.Datapath for the director's code.

    ``send_msg`` applies the message to the switch (errors raise) and keeps
    it in ``sent``.
    """

    def __init__(self, switch):
        self.switch = switch
        self.id = switch.dpid
        self.ofproto = ofp
        self.ofproto_parser = parser
        self.sent = []
        self.xid = 0
        self.is_active = True
        self.ports = {}

    def set_xid(self, msg):
        self.xid += 1
        msg.set_xid(self.xid)
        return self.xid

    def send_msg(self, msg):
        if msg.xid is None:
            self.set_xid(msg)
        self.sent.append(msg)
        self.switch.apply(msg)
        return True

    def send_barrier(self):
        self.send_msg(parser.OFPBarrierRequest(self))


class _Ctx(object):
    """State of one packet's walk through the switch."""

    def __init__(self, dry, packet_out=False):
        self.dry = dry
        self.packet_out = packet_out
        self.outputs, self.packet_ins, self.trace = [], [], []
        self.learned, self.fin = [], []
        self.action_set = {}
        self.flow = None
        self.table_id = 0
        self.depth = 0
        self.dropped = self.exit = False

    def child(self):
        """For output to OFPP_TABLE: a new pipeline sharing the results."""
        c = _Ctx(self.dry, packet_out=False)
        c.outputs, c.packet_ins, c.trace = self.outputs, self.packet_ins, self.trace
        c.learned, c.fin = self.learned, self.fin
        c.depth = self.depth
        return c

    def note(self, text):
        self.trace.append('  ' * self.depth + text)


# ---------------------------------------------------------------------------
# the switch


class FakeSwitch(object):
    """An OpenFlow 1.3 switch that behaves like Open vSwitch's tables.

    ``ports``: the switch's port numbers (outputs elsewhere are dropped, as
    OVS drops output to a port that does not exist; ``None`` accepts any
    port number).  ``clock``: a :class:`FakeClock` to share with other
    switches, a start time, or None for a private clock at 0.  ``wire``:
    round-trip every FlowMod through Ryu's encoder and decoder.
    ``group_select``: 'hash' (weighted, deterministic per connection, as
    OVS's default select) or 'first' (first live bucket of non-zero weight).
    ``errors``: 'raise' (default) or 'collect' into ``self.errors`` and go
    on, as a switch that answers OFPT_ERROR does.

    Records: ``packet_ins`` (PacketIn records), ``flow_removed`` (FlowRemoved
    records), ``packet_outs`` (what each PacketOut did), ``ambiguities``
    (packets that matched several flows of the same top priority, which
    OpenFlow leaves undefined; the fake picks the earliest installed),
    ``ignored`` (messages without effect here), ``errors``.
    """

    def __init__(self, dpid=1, n_tables=254, ports=(1, 2, 3, 4), clock=None,
                 wire=True, group_select='hash', errors='raise'):
        if group_select not in ('hash', 'first'):
            raise ValueError("group_select must be 'hash' or 'first'")
        if errors not in ('raise', 'collect'):
            raise ValueError("errors must be 'raise' or 'collect'")
        self.dpid = dpid
        self.n_tables = n_tables
        self.ports = None if ports is None else sorted(ports)
        self.down_ports = set()
        if clock is None or isinstance(clock, (int, float)):
            clock = FakeClock(clock or 0.0)
        self.clock = clock
        clock._switches.add(self)
        self.wire = wire
        self.group_select = group_select
        self.error_mode = errors
        self.datapath = FakeDatapath(self)
        self._tables = [_Table(i) for i in range(n_tables)]
        self.groups = {}
        self._seq = 0
        self._heap = []
        self.packet_ins = []
        self.flow_removed = []
        self.packet_outs = []
        self.ambiguities = []
        self.ignored = []
        self.errors = []
        self.last_trace = []

    # -- time ---------------------------------------------------------------

    @property
    def now(self):
        return self.clock.now

    def advance(self, seconds):
        """Move the (possibly shared) clock forward; expire timed-out flows."""
        self.clock.advance(seconds)

    def _set_now(self, now):
        if now is not None and now != self.clock.now:
            self.clock.set(now)

    def expire(self):
        """Remove the flows whose idle or hard timeout has passed.

        A flow is gone once ``idle_timeout`` seconds passed since it was last
        hit (or installed), or ``hard_timeout`` seconds since it was added or
        last modified (OVS restarts the hard timeout on MODIFY).  FlowRemoved
        records carry the time the timeout fell, not the time the clock was
        read.
        """
        now = self.clock.now
        due = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, seq, flow = heapq.heappop(heap)
            if flow.removed or flow._expiring:
                continue
            at, reason = flow._deadline()
            if at is None:
                continue
            if at > now:
                heapq.heappush(heap, (at, seq, flow))
                continue
            flow._expiring = True
            due.append((max(at, flow._timeout_set_at), seq, flow, reason))
        for at, _, flow, reason in sorted(due, key=lambda d: d[:2]):
            self._remove(flow, reason, at)

    def _schedule(self, flow):
        at, _ = flow._deadline()
        if at is not None:
            heapq.heappush(self._heap, (at, flow.seq, flow))

    # -- messages -----------------------------------------------------------

    def apply(self, msg, now=None):
        """Apply one message as the switch would; return PacketOut outputs.

        Returns the list of ``(port, packet)`` a PacketOut produced ([] for
        other messages).  Raises :class:`FakeSwitchError` for what OVS would
        reject (unless ``errors='collect'``), in which case nothing changed.
        """
        self._set_now(now)
        try:
            if isinstance(msg, parser.OFPFlowMod):
                self._flow_mod(self._roundtrip(msg))
            elif isinstance(msg, parser.OFPGroupMod):
                self._check_encodes(msg)
                self._group_mod(msg)
            elif isinstance(msg, parser.OFPPacketOut):
                if not isinstance(msg.data, dict):
                    self._check_encodes(msg)
                return self._packet_out(msg)
            elif isinstance(msg, parser.OFPBarrierRequest):
                pass
            elif isinstance(msg, MsgBase):
                self.ignored.append(msg)
            else:
                raise TypeError('not an OpenFlow message: %r' % (msg,))
        except FakeSwitchError as e:
            if e.msg is None:
                e.msg = msg
            if self.error_mode == 'raise':
                raise
            self.errors.append(e)
        return []

    def apply_all(self, msgs, now=None):
        """Apply messages in order; return all PacketOut outputs."""
        self._set_now(now)
        out = []
        for msg in msgs:
            out.extend(self.apply(msg))
        return out

    def _roundtrip(self, msg):
        if not self.wire:
            return msg
        self._check_values(msg)
        c = self._encoded(msg)
        try:
            back = parser.msg_parser(self.datapath, c.version, c.msg_type,
                                     c.msg_len, c.xid, bytes(c.buf))
        except Exception as e:
            raise FakeSwitchError('OFPBRC_BAD_LEN', 'the encoded %s does not '
                                  'parse back: %s' % (type(msg).__name__, e), msg)
        return back

    def _check_encodes(self, msg):
        if self.wire:
            self._check_values(msg)
            self._encoded(msg)

    @staticmethod
    def _check_values(msg):
        """Values out of range: Ryu's encoder would truncate them silently."""
        where = '%s: ' % type(msg).__name__
        match = getattr(msg, 'match', None)
        if match is not None:
            _parse_match(match, where, check_prereqs=False)
        actions = list(getattr(msg, 'actions', None) or ())
        for inst in getattr(msg, 'instructions', None) or ():
            actions.extend(getattr(inst, 'actions', None) or ())
        for b in getattr(msg, 'buckets', None) or ():
            actions.extend(b.actions or ())
        for a in actions:
            if isinstance(a, parser.OFPActionSetField) and \
                    not isinstance(a.value, (tuple, list)):
                fi = _FIELDS.get(_ALIASES.get(a.key, a.key))
                if fi is not None:
                    try:
                        _int_value(fi, a.value)
                    except ValueError as e:
                        raise FakeSwitchError(
                            'OFPBAC_BAD_SET_ARGUMENT', '%sset_field %s (Ryu '
                            'would not encode it faithfully)' % (where, e), msg)

    def _encoded(self, msg):
        c = copy.copy(msg)
        c.datapath = self.datapath
        if c.xid is None:
            c.xid = 0
        try:
            c.serialize()
        except Exception as e:
            raise FakeSwitchError('RYU_ENCODING', 'Ryu cannot serialize this %s '
                                  '(Datapath.send_msg would fail): %s: %s'
                                  % (type(msg).__name__, type(e).__name__, e),
                                  msg)
        return c

    # -- flow mods ----------------------------------------------------------

    def _flow_mod(self, fm):
        cmd, tid = fm.command, fm.table_id
        where = 'FlowMod(%s table=%s priority=%s): ' % (
            {0: 'ADD', 1: 'MODIFY', 2: 'MODIFY_STRICT', 3: 'DELETE',
             4: 'DELETE_STRICT'}.get(cmd, cmd), tid, fm.priority)
        known = (ofp.OFPFF_SEND_FLOW_REM | ofp.OFPFF_CHECK_OVERLAP |
                 ofp.OFPFF_RESET_COUNTS | ofp.OFPFF_NO_PKT_COUNTS |
                 ofp.OFPFF_NO_BYT_COUNTS)
        if fm.flags & ~known:
            raise FakeSwitchError('OFPFMFC_BAD_FLAGS', '%sunknown flags 0x%x'
                                  % (where, fm.flags))
        m = _parse_match(fm.match, where)
        if cmd == ofp.OFPFC_ADD:
            if tid >= self.n_tables:
                raise FakeSwitchError('OFPFMFC_BAD_TABLE_ID', '%sthe switch has '
                                      'tables 0..%d' % (where, self.n_tables - 1))
            if fm.buffer_id != ofp.OFP_NO_BUFFER:
                raise FakeSwitchError('OFPBRC_BUFFER_UNKNOWN', '%sbuffer_id %s: '
                                      'OVS does not buffer packets; use '
                                      'OFP_NO_BUFFER' % (where, fm.buffer_id))
            prog = self._compile_instructions(fm.instructions, tid, m.view(),
                                              where)
            self._add(tid, fm.priority, m, prog, fm.instructions, fm.cookie,
                      fm.idle_timeout, fm.hard_timeout, fm.flags, where)
        elif cmd in (ofp.OFPFC_MODIFY, ofp.OFPFC_MODIFY_STRICT):
            strict = cmd == ofp.OFPFC_MODIFY_STRICT
            targets = self._select(tid, m, fm.priority, strict, fm.cookie,
                                   fm.cookie_mask, ofp.OFPP_ANY, ofp.OFPG_ANY,
                                   where)
            progs = [self._compile_instructions(fm.instructions, f.table_id,
                                                m.view(), where)
                     for f in targets]
            if not targets and tid != ofp.OFPTT_ALL:
                self._compile_instructions(fm.instructions, tid, m.view(), where)
            now = self.now
            for f, prog in zip(targets, progs):
                f.prog, f.instructions = prog, fm.instructions
                f.modified_at = now
                if fm.flags & ofp.OFPFF_RESET_COUNTS:
                    f.packet_count = f.byte_count = 0
                self._schedule(f)
        elif cmd in (ofp.OFPFC_DELETE, ofp.OFPFC_DELETE_STRICT):
            strict = cmd == ofp.OFPFC_DELETE_STRICT
            targets = self._select(tid, m, fm.priority, strict, fm.cookie,
                                   fm.cookie_mask, fm.out_port, fm.out_group,
                                   where)
            for f in targets:
                self._remove(f, ofp.OFPRR_DELETE, self.now)
        else:
            raise FakeSwitchError('OFPFMFC_BAD_COMMAND', '%sunknown command %r'
                                  % (where, cmd))

    def _add(self, tid, priority, m, prog, instructions, cookie, idle, hard,
             flags, where):
        table = self._tables[tid]
        old = table.find_exact(m, priority)
        if old is None and flags & ofp.OFPFF_CHECK_OVERLAP:
            for f in table.flows.values():
                if f.priority == priority and m.overlaps(f._m):
                    raise FakeSwitchError(
                        'OFPFMFC_OVERLAP', '%soverlaps %s' % (where, f.text()))
        self._seq += 1
        flow = Flow(tid, priority, m, prog, instructions, cookie, idle, hard,
                    flags, self.now, self._seq)
        if old is not None:
            # OVS moves the old entry's statistics (counters and last-used
            # time) to the new one unless RESET_COUNTS; no FlowRemoved.
            if not flags & ofp.OFPFF_RESET_COUNTS:
                flow.packet_count, flow.byte_count = old.packet_count, old.byte_count
                flow.last_used = old.last_used
            table.remove(old)
            old.removed = True
        table.insert(flow)
        self._schedule(flow)
        return flow

    def _select(self, tid, m, priority, strict, cookie, cookie_mask, out_port,
                out_group, where):
        if tid == ofp.OFPTT_ALL:
            tables = self._tables
        elif tid >= self.n_tables:
            raise FakeSwitchError('OFPFMFC_BAD_TABLE_ID', '%sthe switch has '
                                  'tables 0..%d' % (where, self.n_tables - 1))
        else:
            tables = [self._tables[tid]]
        out = []
        for t in tables:
            for f in t.sorted_flows():
                if cookie_mask and f.cookie & cookie_mask != cookie & cookie_mask:
                    continue
                if strict:
                    if f.priority != priority or f._m != m:
                        continue
                elif not m.subsumes(f._m):
                    continue
                if out_port != ofp.OFPP_ANY and out_port not in f.prog.out_ports:
                    continue
                if out_group != ofp.OFPG_ANY and out_group not in f.prog.groups:
                    continue
                out.append(f)
        return out

    def _remove(self, flow, reason, at):
        if flow.removed:
            return
        self._tables[flow.table_id].remove(flow)
        flow.removed = True
        if flow.flags & ofp.OFPFF_SEND_FLOW_REM:
            dur = max(0.0, at - flow.installed_at)
            self.flow_removed.append(Record(
                reason=reason, reason_name=_RR_NAMES[reason],
                cookie=flow.cookie, priority=flow.priority,
                table_id=flow.table_id, match=dict(flow.match),
                packet_count=flow.packet_count, byte_count=flow.byte_count,
                duration=dur, duration_sec=int(dur),
                duration_nsec=int(round((dur - int(dur)) * 1e9)),
                idle_timeout=flow.idle_timeout, hard_timeout=flow.hard_timeout,
                removed_at=at))

    # -- compiling instructions and actions --------------------------------

    def _compile_instructions(self, instructions, table_id, view, where):
        prog = _Prog()
        seen = set()
        view = dict(view)
        for inst in instructions or ():
            itype = getattr(inst, 'type', None)
            if itype in seen:
                raise FakeSwitchError('OFPBIC_DUP_INST', '%sinstruction type %s '
                                      'given twice' % (where, itype))
            seen.add(itype)
            if isinstance(inst, parser.OFPInstructionActions):
                if itype == ofp.OFPIT_APPLY_ACTIONS:
                    prog.apply = self._compile_actions(
                        inst.actions, where + 'apply_actions: ', table_id, view)
                elif itype == ofp.OFPIT_WRITE_ACTIONS:
                    prog.write = self._compile_actions(
                        inst.actions, where + 'write_actions: ', table_id, view,
                        action_set=True)
                elif itype == ofp.OFPIT_CLEAR_ACTIONS:
                    if inst.actions:
                        raise FakeSwitchError('OFPBIC_BAD_LEN', '%sclear_actions '
                                              'takes no actions' % where)
                    prog.clear = True
                else:
                    raise FakeSwitchError('OFPBIC_UNKNOWN_INST', '%sunknown '
                                          'instruction type %r' % (where, itype))
            elif isinstance(inst, parser.OFPInstructionGotoTable):
                if inst.table_id <= table_id:
                    raise FakeSwitchError(
                        'OFPBIC_BAD_TABLE_ID', '%sgoto_table:%d from table %d: '
                        'goto_table must go to a later table'
                        % (where, inst.table_id, table_id))
                if inst.table_id >= self.n_tables:
                    raise FakeSwitchError(
                        'OFPBIC_BAD_TABLE_ID', '%sgoto_table:%d but the switch '
                        'has tables 0..%d' % (where, inst.table_id,
                                              self.n_tables - 1))
                prog.goto = inst.table_id
            elif isinstance(inst, parser.OFPInstructionWriteMetadata):
                prog.metadata = (inst.metadata & (2 ** 64 - 1),
                                 inst.metadata_mask & (2 ** 64 - 1))
            elif isinstance(inst, parser.OFPInstructionMeter):
                prog.meter = inst.meter_id    # meters are not modelled: no-op
            else:
                raise FakeSwitchError('OFPBIC_UNKNOWN_INST', '%sunsupported '
                                      'instruction %r' % (where, inst))
        for ops in (prog.apply or (), prog.write or ()):
            for op in ops:
                if op.kind == 'output':
                    prog.out_ports.add(op.args[0])
                elif op.kind == 'controller':
                    prog.out_ports.add(ofp.OFPP_CONTROLLER)
                elif op.kind == 'group':
                    prog.groups.add(op.args[0])
        return prog

    def _check_set(self, fi, view, where, what):
        if not fi.writable:
            raise FakeSwitchError('OFPBAC_BAD_SET_TYPE', '%s%s: field %s is '
                                  'read-only' % (where, what, fi.name))
        if view is None:
            return
        problem = _prereq_problem(fi.name, view)
        if fi.name == 'vlan_vid' and not view.get('vlan_vid', 0) & OFPVID_PRESENT:
            problem = ('vlan_vid requires a VLAN tag in the match (vlan_vid '
                       'with OFPVID_PRESENT) or a push_vlan before it')
        if problem:
            raise FakeSwitchError(
                'OFPBAC_MATCH_INCONSISTENT', '%s%s: %s in the flow\'s match '
                '(OVS rejects the flow)' % (where, what, problem))

    def _check_src(self, fi, view, where, what):
        if view is None:
            return
        problem = _prereq_problem(fi.name, view)
        if problem:
            raise FakeSwitchError('OFPBAC_MATCH_INCONSISTENT', '%s%s: %s in the '
                                  'flow\'s match' % (where, what, problem))

    def _compile_actions(self, actions, where, table_id, view,
                         action_set=False, packet_out=False):
        """Ryu actions -> [_Op], checked as OVS checks a flow's actions.

        ``view`` (mutated) holds the exactly known field values (the match,
        updated by earlier set_field/push/pop); None skips prerequisite
        checks (group buckets).
        """
        ops = []
        for a in actions or ():
            op = self._compile_action(a, where, table_id, view, packet_out)
            if action_set and op.kind not in _SET_ORDER:
                raise FakeSwitchError('OFPBAC_UNSUPPORTED_ORDER', '%s%s is not '
                                      'allowed in an action set' % (where, op.text))
            ops.append(op)
        return ops

    def _compile_action(self, a, where, table_id, view, packet_out):
        name = type(a).__name__
        if name == 'OFPActionOutput':
            port = a.port
            if port == ofp.OFPP_TABLE and not packet_out:
                raise FakeSwitchError('OFPBAC_BAD_OUT_PORT', '%soutput:TABLE is '
                                      'only valid in a PacketOut' % where)
            if port == ofp.OFPP_ANY or (ofp.OFPP_MAX < port < ofp.OFPP_IN_PORT):
                raise FakeSwitchError('OFPBAC_BAD_OUT_PORT', '%soutput to invalid '
                                      'port %s' % (where, _port_text(port)))
            return _Op('output', (port, a.max_len), 'output:%s' % _port_text(port))
        if name == 'OFPActionGroup':
            if a.group_id not in self.groups:
                raise FakeSwitchError('OFPBAC_BAD_OUT_GROUP', '%sgroup:%d does not '
                                      'exist' % (where, a.group_id))
            return _Op('group', (a.group_id,), 'group:%d' % a.group_id)
        if name == 'OFPActionSetField':
            fi = _field(a.key, 'unsupported', where)
            what = 'set_field %s' % fi.name
            uv = a.value
            if isinstance(uv, (tuple, list)):
                raise FakeSwitchError('OFPBAC_BAD_SET_ARGUMENT', '%s%s: a masked '
                                      'set_field is OpenFlow 1.5' % (where, what))
            try:
                v = _int_value(fi, uv)
            except ValueError as e:
                raise FakeSwitchError('OFPBAC_BAD_SET_ARGUMENT', '%s%s' % (where, e))
            self._check_set(fi, view, where, what)
            if fi.name == 'vlan_vid':
                v = (v & 0xfff) | OFPVID_PRESENT
            if view is not None:
                view[fi.name] = v
            return _Op('set_field', (fi.name, v, fi.full),
                       'set_field:%s->%s' % (_fmt_value(fi, v), fi.name))
        if name in ('OFPActionDecNwTtl', 'NXActionDecTtl', 'OFPActionSetNwTtl'):
            if view is not None and view.get('eth_type') not in _IP_TYPES:
                raise FakeSwitchError('OFPBAC_MATCH_INCONSISTENT', '%s%s needs '
                                      'eth_type=0x0800 or 0x86dd in the match'
                                      % (where, name))
            if name == 'OFPActionSetNwTtl':
                return _Op('set_ttl', (a.nw_ttl,), 'set_nw_ttl:%d' % a.nw_ttl)
            return _Op('dec_ttl', (), 'dec_ttl')
        if name == 'OFPActionPushVlan':
            if a.ethertype not in (0x8100, 0x88a8):
                raise FakeSwitchError('OFPBAC_BAD_ARGUMENT', '%spush_vlan '
                                      'ethertype 0x%x' % (where, a.ethertype))
            if view is not None:
                view['vlan_vid'] = view.get('vlan_vid', 0) | OFPVID_PRESENT
            return _Op('push_vlan', (a.ethertype,), 'push_vlan:0x%x' % a.ethertype)
        if name == 'OFPActionPopVlan':
            if view is not None and not view.get('vlan_vid', 0) & OFPVID_PRESENT:
                raise FakeSwitchError('OFPBAC_MATCH_INCONSISTENT', '%spop_vlan '
                                      'needs a VLAN tag in the match' % where)
            if view is not None:
                view['vlan_vid'] = 0
            return _Op('pop_vlan', (), 'pop_vlan')
        if name == 'OFPActionSetQueue':
            return _Op('set_queue', (a.queue_id,), 'set_queue:%d' % a.queue_id)
        if name in ('OFPActionCopyTtlOut', 'OFPActionCopyTtlIn'):
            kind = 'copy_ttl_out' if name.endswith('Out') else 'copy_ttl_in'
            return _Op(kind, (), kind)
        if name in ('NXActionRegLoad', 'NXActionRegLoad2'):
            fi = _field(a.dst, 'unsupported', where)
            if name == 'NXActionRegLoad':
                ofs, nbits = a.ofs_nbits >> 6, (a.ofs_nbits & 0x3f) + 1
                mask = ((1 << nbits) - 1) << ofs
                if ofs + nbits > fi.bits or a.value >> nbits:
                    raise FakeSwitchError(
                        'OFPBAC_BAD_SET_ARGUMENT', '%sload:0x%x->%s[%d..%d] does '
                        'not fit' % (where, a.value, fi.name, ofs, ofs + nbits - 1))
                v = a.value << ofs
                text = 'load:0x%x->%s[%d..%d]' % (a.value, fi.name, ofs,
                                                  ofs + nbits - 1)
            else:
                try:
                    v = _int_value(fi, a.value)
                    mask = fi.full if a.mask is None else _int_value(fi, a.mask)
                except ValueError as e:
                    raise FakeSwitchError('OFPBAC_BAD_SET_ARGUMENT', '%s%s'
                                          % (where, e))
                v &= mask
                text = 'set_field:%s/%s->%s' % (_fmt_value(fi, v),
                                                _fmt_value(fi, mask), fi.name)
            self._check_set(fi, view, where, text)
            if view is not None:
                if mask == fi.full:
                    view[fi.name] = v
                else:
                    view.pop(fi.name, None)
            return _Op('set_field', (fi.name, v, mask), text)
        if name == 'NXActionRegMove':
            src = _field(a.src_field, 'unsupported', where)
            dst = _field(a.dst_field, 'unsupported', where)
            text = 'move:%s[%d..%d]->%s[%d..%d]' % (
                src.name, a.src_ofs, a.src_ofs + a.n_bits - 1, dst.name,
                a.dst_ofs, a.dst_ofs + a.n_bits - 1)
            if a.src_ofs + a.n_bits > src.bits or a.dst_ofs + a.n_bits > dst.bits:
                raise FakeSwitchError('OFPBAC_BAD_ARGUMENT', '%s%s: out of range'
                                      % (where, text))
            self._check_src(src, view, where, text)
            self._check_set(dst, view, where, text)
            if view is not None:
                view.pop(dst.name, None)
            return _Op('move', (src.name, a.src_ofs, dst.name, a.dst_ofs,
                                a.n_bits), text)
        if name in ('NXActionSetTunnel', 'NXActionSetTunnel64'):
            if view is not None:
                view['tunnel_id'] = a.tun_id
            return _Op('set_field', ('tunnel_id', a.tun_id, _FIELDS['tunnel_id'].full),
                       'set_field:0x%x->tunnel_id' % a.tun_id)
        if name in ('NXActionResubmit', 'NXActionResubmitTable'):
            in_port = a.in_port
            in_port = None if in_port == 0xfff8 else (
                in_port + 0xffff0000 if in_port >= 0xff00 else in_port)
            table = getattr(a, 'table_id', 0xff)
            table = None if table == 0xff else table
            if table is not None and table >= self.n_tables:
                raise FakeSwitchError('OFPBAC_BAD_ARGUMENT', '%sresubmit to table '
                                      '%d but the switch has tables 0..%d'
                                      % (where, table, self.n_tables - 1))
            return _Op('resubmit', (in_port, table), 'resubmit(%s,%s)' % (
                '' if in_port is None else _port_text(in_port),
                '' if table is None else table))
        if name == 'NXActionFinTimeout':
            return _Op('fin_timeout', (a.fin_idle_timeout, a.fin_hard_timeout),
                       'fin_timeout(idle_timeout=%d,hard_timeout=%d)'
                       % (a.fin_idle_timeout, a.fin_hard_timeout))
        if name == 'NXActionController':
            return _Op('controller', (a.max_len, a.reason),
                       'controller(reason=%s)' % _PR_NAMES.get(a.reason, a.reason))
        if name == 'NXActionExit':
            return _Op('exit', (), 'exit')
        if name == 'NXActionNote':
            return _Op('note', (), 'note')
        if name == 'NXActionLearn':
            return self._compile_learn(a, where, view)
        raise FakeSwitchUnsupported('%saction %s is not modelled by FakeSwitch'
                                    % (where, name))

    def _compile_learn(self, a, where, view):
        if a.table_id >= self.n_tables:
            raise FakeSwitchError('OFPBAC_BAD_ARGUMENT', '%slearn into table %d '
                                  'but the switch has tables 0..%d'
                                  % (where, a.table_id, self.n_tables - 1))
        specs = []
        learned_view = {}
        for s in a.specs:
            kind = type(s).__name__
            if isinstance(s.src, tuple):
                sfi = _field(s.src[0], 'unsupported', where)
                src = ('field', sfi.name, s.src[1])
                self._check_src(sfi, view, where, 'learn src %s' % sfi.name)
                if s.src[1] + s.n_bits > sfi.bits:
                    raise FakeSwitchError('OFPBAC_BAD_ARGUMENT', '%slearn: %s '
                                          'out of range' % (where, s.src))
            else:
                src = ('imm', s.src)
            if kind == 'NXFlowSpecOutput':
                specs.append(('output', src, None, 0, s.n_bits))
                continue
            dfi = _field(s.dst[0], 'unsupported', where)
            if s.dst[1] + s.n_bits > dfi.bits:
                raise FakeSwitchError('OFPBAC_BAD_ARGUMENT', '%slearn: %s out of '
                                      'range' % (where, s.dst))
            problem = _prereq_problem(dfi.name, learned_view)
            if problem:
                raise FakeSwitchError('OFPBAC_MATCH_INCONSISTENT', '%slearn: %s '
                                      'in the learned flow (give it earlier as '
                                      'a constant match)' % (where, problem))
            if kind == 'NXFlowSpecMatch':
                if src[0] == 'imm' and s.dst[1] == 0 and s.n_bits == dfi.bits:
                    learned_view[dfi.name] = src[1]
                specs.append(('match', src, dfi.name, s.dst[1], s.n_bits))
            else:
                if not dfi.writable:
                    raise FakeSwitchError('OFPBAC_BAD_SET_TYPE', '%slearn: %s is '
                                          'read-only' % (where, dfi.name))
                specs.append(('load', src, dfi.name, s.dst[1], s.n_bits))
        params = dict(table_id=a.table_id, priority=a.priority, cookie=a.cookie,
                      idle=a.idle_timeout, hard=a.hard_timeout,
                      flags=a.flags & ofp.OFPFF_SEND_FLOW_REM,
                      fin=(a.fin_idle_timeout, a.fin_hard_timeout))
        return _Op('learn', (specs, params), 'learn(table=%d,...)' % a.table_id)

    # -- groups -------------------------------------------------------------

    def _group_mod(self, gm):
        gid, cmd = gm.group_id, gm.command
        where = 'GroupMod(group_id=%s): ' % gid
        if cmd == ofp.OFPGC_DELETE:
            gids = list(self.groups) if gid == ofp.OFPG_ALL else [gid]
            for g in gids:
                if self.groups.pop(g, None) is not None:
                    for t in self._tables:
                        for f in t.sorted_flows():
                            if g in f.prog.groups:
                                self._remove(f, ofp.OFPRR_GROUP_DELETE, self.now)
            return
        if cmd not in (ofp.OFPGC_ADD, ofp.OFPGC_MODIFY):
            raise FakeSwitchError('OFPGMFC_BAD_COMMAND', '%sunknown command %r'
                                  % (where, cmd))
        if gid > ofp.OFPG_MAX:
            raise FakeSwitchError('OFPGMFC_INVALID_GROUP', '%sgroup id must be '
                                  '<= OFPG_MAX' % where)
        if cmd == ofp.OFPGC_ADD and gid in self.groups:
            raise FakeSwitchError('OFPGMFC_GROUP_EXISTS', '%salready exists (use '
                                  'OFPGC_MODIFY)' % where)
        if cmd == ofp.OFPGC_MODIFY and gid not in self.groups:
            raise FakeSwitchError('OFPGMFC_UNKNOWN_GROUP', '%sdoes not exist'
                                  % where)
        if gm.type not in (ofp.OFPGT_ALL, ofp.OFPGT_SELECT, ofp.OFPGT_INDIRECT,
                           ofp.OFPGT_FF):
            raise FakeSwitchError('OFPGMFC_BAD_TYPE', '%sunknown type %r'
                                  % (where, gm.type))
        if gm.type == ofp.OFPGT_INDIRECT and len(gm.buckets) != 1:
            raise FakeSwitchError('OFPGMFC_INVALID_GROUP', '%san indirect group '
                                  'has exactly one bucket' % where)
        compiled = []
        for i, b in enumerate(gm.buckets):
            if gm.type == ofp.OFPGT_FF and b.watch_port == ofp.OFPP_ANY and \
                    b.watch_group == ofp.OFPG_ANY:
                raise FakeSwitchError('OFPGMFC_BAD_WATCH', '%sfast-failover bucket '
                                      '%d watches nothing' % (where, i))
            ops = self._compile_actions(b.actions, '%sbucket %d: ' % (where, i),
                                        0, None)
            for op in ops:
                if op.kind == 'group' and op.args[0] == gid:
                    raise FakeSwitchError('OFPGMFC_LOOP', '%sbucket %d points to '
                                          'the group itself' % (where, i))
            compiled.append((b.weight, b.watch_port, b.watch_group, ops))
        old = self.groups.get(gid)
        g = Group(gid, gm.type, list(gm.buckets), compiled)
        if old is not None:
            g.packet_count, g.byte_count = old.packet_count, old.byte_count
        self.groups[gid] = g

    def set_port_up(self, port, up=True):
        """Mark a port live or not (fast-failover and select watch_port)."""
        if up:
            self.down_ports.discard(port)
        else:
            self.down_ports.add(port)

    def _port_live(self, port):
        if port in self.down_ports:
            return False
        return self.ports is None or port in self.ports or port > ofp.OFPP_MAX

    def _bucket_live(self, bucket, depth=0):
        w, wp, wg, ops = bucket
        if wp != ofp.OFPP_ANY and not self._port_live(wp):
            return False
        if wg != ofp.OFPG_ANY:
            g = self.groups.get(wg)
            if g is None or depth > 8 or not any(
                    self._bucket_live(b, depth + 1) for b in g._buckets):
                return False
        return True

    def _select_bucket(self, g, pkt):
        live = [b for b in g._buckets if b[0] > 0 and self._bucket_live(b)]
        if not live:
            return None
        if self.group_select == 'first':
            return live[0]
        # Weighted rendezvous hashing over a symmetric 5-tuple: the same
        # connection (either direction) always picks the same bucket, and
        # buckets are chosen in proportion to their weights.
        f = pkt.f
        ends = sorted([(f.get('ipv4_src', f.get('ipv6_src', f.get('eth_src', 0))),
                        f.get('tcp_src', f.get('udp_src', 0))),
                       (f.get('ipv4_dst', f.get('ipv6_dst', f.get('eth_dst', 0))),
                        f.get('tcp_dst', f.get('udp_dst', 0)))])
        basis = repr((ends, f.get('ip_proto', 0))).encode()
        best, best_score = None, None
        for i, b in enumerate(g._buckets):
            if b not in live:
                continue
            h = zlib.crc32(basis + b'/%d' % i)
            u = (h + 1) / 4294967297.0
            score = -b[0] / math.log(u)
            if best_score is None or score > best_score:
                best, best_score = b, score
        return best

    # -- packet out -----------------------------------------------------------

    def _packet_out(self, po):
        where = 'PacketOut: '
        if po.buffer_id not in (None, ofp.OFP_NO_BUFFER):
            raise FakeSwitchError('OFPBRC_BUFFER_UNKNOWN', '%sbuffer_id %s: OVS '
                                  'does not buffer packets; send the data'
                                  % (where, po.buffer_id))
        if po.data is None:
            raise FakeSwitchError('OFPBRC_BUFFER_UNKNOWN', '%sno data and no '
                                  'buffer' % where)
        in_port = po.in_port
        if in_port > ofp.OFPP_MAX and in_port not in (
                ofp.OFPP_CONTROLLER, ofp.OFPP_LOCAL, ofp.OFPP_ANY):
            raise FakeSwitchError('OFPBRC_BAD_PORT', '%sin_port %s'
                                  % (where, _port_text(in_port)))
        try:
            pkt = _Packet.from_user(po.data, in_port=in_port)
        except ValueError as e:
            raise FakeSwitchError('OFPBRC_BAD_LEN', '%sdata: %s' % (where, e))
        ops = self._compile_actions(po.actions, where, 0, dict(pkt.f),
                                    packet_out=True)
        ctx = _Ctx(dry=False, packet_out=True)
        ctx.note('packet-out in_port=%s %s' % (_port_text(in_port), pkt.text()))
        ctx.note('actions: %s' % (','.join(o.text for o in ops) or 'drop'))
        self._run_ops(ops, pkt, ctx)
        self._finish(ctx)
        self.packet_outs.append(Record(in_port=in_port, packet=pkt.to_user(),
                                       actions=[o.text for o in ops],
                                       outputs=list(ctx.outputs),
                                       trace=list(ctx.trace)))
        return ctx.outputs

    # -- packets ------------------------------------------------------------

    def send(self, packet, now=None, in_port=None):
        """Receive ``packet`` on its in_port and run it through the tables.

        ``packet``: a dict of fields (see :func:`tcp`) or frame bytes with
        ``in_port``.  Returns ``[(port, packet_dict)]``: where copies leave
        and with which fields (after set_field).  PacketIns are appended to
        ``packet_ins``; flow counters and last-used times are updated;
        ``last_trace`` tells the walk.
        """
        self._set_now(now)
        pkt = _Packet.from_user(packet, in_port)
        ctx = _Ctx(dry=False)
        self._walk(pkt, ctx)
        self._finish(ctx)
        return ctx.outputs

    def trace(self, packet, in_port=None):
        """The walk of ``packet`` through the tables, as readable lines.

        A dry run: no counters, PacketIns, learning or timeout changes.
        """
        pkt = _Packet.from_user(packet, in_port)
        ctx = _Ctx(dry=True)
        self._walk(pkt, ctx)
        return ctx.trace

    def _walk(self, pkt, ctx):
        ctx.note('packet %s' % pkt.text())
        self._pipeline(pkt, ctx, 0)
        if not ctx.outputs and not ctx.packet_ins:
            ctx.note('result: dropped')
        else:
            ctx.note('result: %s' % ', '.join(
                ['port %s' % _port_text(p) for p, _ in ctx.outputs] +
                ['controller (%s)' % r['reason_name'] for r in ctx.packet_ins]))

    def _finish(self, ctx):
        self.last_trace = ctx.trace
        if ctx.dry:
            return
        self.packet_ins.extend(ctx.packet_ins)
        now = self.now
        for flow, idle, hard in ctx.fin:
            if flow.removed:
                continue
            changed = False
            if idle and (not flow.idle_timeout or flow.idle_timeout > idle):
                flow.idle_timeout, changed = idle, True
            if hard and (not flow.hard_timeout or flow.hard_timeout > hard):
                flow.hard_timeout, changed = hard, True
            if changed:
                flow._timeout_set_at = now
                self._schedule(flow)
        for tid, priority, m, prog, insts, cookie, idle, hard, flags in ctx.learned:
            self._add(tid, priority, m, prog, insts, cookie, idle, hard, flags,
                      'learn: ')
        self.expire()

    def _pipeline(self, pkt, ctx, table_id):
        self._table(pkt, ctx, table_id, resubmit=False)
        if ctx.dropped or ctx.exit:
            if ctx.action_set:
                ctx.note('action set discarded')
            return
        if ctx.action_set:
            ops = sorted(ctx.action_set.values(),
                         key=lambda o: _SET_ORDER[o.kind])
            if any(o.kind == 'group' for o in ops):
                ops = [o for o in ops if o.kind != 'output']
            ctx.note('action set: %s' % ','.join(o.text for o in ops))
            ctx.action_set = {}
            self._run_ops(ops, pkt, ctx)

    def _table(self, pkt, ctx, table_id, resubmit):
        flow, ties = self._tables[table_id].lookup(pkt)
        if flow is None:
            if resubmit:
                ctx.note('table %d: no match (resubmit returns)' % table_id)
            else:
                ctx.note('table %d: no match -> drop (no table-miss flow)'
                         % table_id)
                ctx.dropped = True
            return
        ctx.note('table %d: %s' % (table_id, flow.text(counters=False)))
        if ties:
            msg = ('table %d: %d flows of priority %d match; OpenFlow leaves the '
                   'choice undefined (fake took the earliest installed)'
                   % (table_id, len(ties) + 1, flow.priority))
            ctx.note('WARNING ' + msg)
            if not ctx.dry:
                self.ambiguities.append(Record(
                    table_id=table_id, priority=flow.priority,
                    flows=[flow] + ties, packet=pkt.to_user(), message=msg))
        if not ctx.dry:
            flow.packet_count += 1
            flow.byte_count += pkt.length
            flow.last_used = self.now
        saved = ctx.flow, ctx.table_id
        ctx.flow, ctx.table_id = flow, table_id
        prog = flow.prog
        ctx.depth += 1
        try:
            if prog.apply:
                self._run_ops(prog.apply, pkt, ctx)
                if ctx.dropped or ctx.exit:
                    return
            if prog.clear:
                ctx.action_set = {}
                ctx.note('clear_actions')
            if prog.write:
                for op in prog.write:
                    key = (op.kind, op.args[0]) if op.kind == 'set_field' else op.kind
                    ctx.action_set.pop(key, None)   # keep the newest order
                    ctx.action_set[key] = op
                ctx.note('write_actions: %s' % ','.join(o.text for o in prog.write))
            if prog.metadata is not None:
                v, m = prog.metadata
                pkt.f['metadata'] = (pkt.get('metadata') & ~m) | (v & m)
                ctx.note('metadata=0x%x' % pkt.f['metadata'])
            if prog.goto is not None:
                ctx.depth -= 1
                try:
                    self._table(pkt, ctx, prog.goto, resubmit)
                finally:
                    ctx.depth += 1
        finally:
            ctx.depth -= 1
            ctx.flow, ctx.table_id = saved

    def _run_ops(self, ops, pkt, ctx):
        for op in ops:
            if ctx.dropped or ctx.exit:
                return
            kind, args = op.kind, op.args
            if kind == 'output':
                self._output(args[0], pkt, ctx, args[1])
            elif kind == 'set_field':
                name, v, mask = args
                problem = _prereq_problem(name, pkt.f)
                if problem or (name == 'vlan_vid' and
                               not pkt.get('vlan_vid') & OFPVID_PRESENT):
                    ctx.note('%s skipped: packet lacks the header' % op.text)
                    continue
                pkt.f[name] = ((pkt.get(name) or 0) & ~mask) | (v & mask)
                ctx.note(op.text)
            elif kind == 'group':
                self._group(args[0], pkt, ctx)
            elif kind == 'move':
                src, sofs, dst, dofs, n = args
                bits = ((pkt.get(src) or 0) >> sofs) & ((1 << n) - 1)
                mask = ((1 << n) - 1) << dofs
                pkt.f[dst] = ((pkt.get(dst) or 0) & ~mask) | (bits << dofs)
                ctx.note('%s (0x%x)' % (op.text, bits))
            elif kind in ('dec_ttl', 'set_ttl'):
                if pkt.f.get('eth_type') not in _IP_TYPES:
                    ctx.note('%s skipped: not IP' % op.text)
                    continue
                ttl = pkt.f.get('nw_ttl', 64)
                if kind == 'set_ttl':
                    pkt.f['nw_ttl'] = args[0]
                elif ttl <= 1:
                    ctx.note('%s: TTL expired' % op.text)
                    self._packet_in(pkt, ctx, ofp.OFPR_INVALID_TTL, 0xffff)
                    ctx.dropped = True
                    return
                else:
                    pkt.f['nw_ttl'] = ttl - 1
                ctx.note('%s (nw_ttl=%d)' % (op.text, pkt.f['nw_ttl']))
            elif kind == 'push_vlan':
                pkt.f['vlan_vid'] = pkt.get('vlan_vid') | OFPVID_PRESENT
                pkt.f.setdefault('vlan_pcp', 0)
                ctx.note(op.text)
            elif kind == 'pop_vlan':
                pkt.f['vlan_vid'] = 0
                pkt.f.pop('vlan_pcp', None)
                ctx.note(op.text)
            elif kind == 'fin_timeout':
                fl = pkt.f.get('tcp_flags', 0)
                if pkt.f.get('ip_proto') == 6 and fl & (TCP_FIN | TCP_RST) \
                        and ctx.flow is not None:
                    ctx.note('%s: FIN/RST seen, timeouts of this flow reduced'
                             % op.text)
                    ctx.fin.append((ctx.flow,) + args)
            elif kind == 'resubmit':
                self._resubmit(pkt, ctx, args, op)
            elif kind == 'controller':
                self._packet_in(pkt, ctx, args[1], args[0])
            elif kind == 'exit':
                ctx.note('exit')
                ctx.exit = True
                return
            elif kind == 'learn':
                self._learn(pkt, ctx, args)
            elif kind in ('set_queue', 'copy_ttl_in', 'copy_ttl_out', 'note'):
                ctx.note('%s (no effect in FakeSwitch)' % op.text)

    def _resubmit(self, pkt, ctx, args, op):
        in_port, table = args
        table = ctx.table_id if table is None else table
        if ctx.depth >= _MAX_RESUBMIT_DEPTH:
            ctx.note('%s: resubmit depth exceeded, dropping' % op.text)
            ctx.dropped = True
            return
        ctx.note(op.text)
        saved_port = pkt.f['in_port']
        if in_port is not None:
            pkt.f['in_port'] = in_port
        try:
            self._table(pkt, ctx, table, resubmit=True)
        finally:
            if in_port is not None:
                pkt.f['in_port'] = saved_port

    def _output(self, port, pkt, ctx, max_len):
        in_port = pkt.f['in_port']
        if port == ofp.OFPP_CONTROLLER:
            reason = ofp.OFPR_ACTION
            if ctx.flow is not None and ctx.flow.is_table_miss:
                reason = ofp.OFPR_NO_MATCH
            self._packet_in(pkt, ctx, reason, max_len)
        elif port == ofp.OFPP_TABLE:
            ctx.note('output:TABLE -> pipeline from table 0')
            child = ctx.child()
            self._pipeline(pkt.copy(), child, 0)
        elif port in (ofp.OFPP_FLOOD, ofp.OFPP_ALL):
            for p in self.ports or ():
                if p != in_port and p not in self.down_ports:
                    self._emit(p, pkt, ctx, 'output:%s' % _port_text(port))
        elif port == ofp.OFPP_IN_PORT:
            self._emit(in_port, pkt, ctx, 'output:IN_PORT')
        elif port in (ofp.OFPP_LOCAL, ofp.OFPP_NORMAL):
            if port == in_port:
                ctx.note('output:%s skipped: it is the input port'
                         % _port_text(port))
            else:
                self._emit(port, pkt, ctx, 'output:%s%s' % (
                    _port_text(port), ' (L2 switching is not modelled)'
                    if port == ofp.OFPP_NORMAL else ''))
        elif port == in_port:
            ctx.note('output:%d skipped: it is the input port (use IN_PORT)'
                     % port)
        elif self.ports is not None and port not in self.ports:
            ctx.note('output:%d dropped: the switch has no port %d' % (port, port))
        elif port in self.down_ports:
            ctx.note('output:%d dropped: port is down' % port)
        else:
            self._emit(port, pkt, ctx, 'output:%d' % port)

    def _emit(self, port, pkt, ctx, text):
        out = pkt.to_user()
        ctx.outputs.append((port, out))
        ctx.note('%s -> port %s' % (text, _port_text(port)))

    def _packet_in(self, pkt, ctx, reason, max_len):
        flow = ctx.flow
        match = {'in_port': pkt.f['in_port']}
        for n in sorted(pkt.f, key=_FIELD_ORDER.get):
            if (n in _INTERNAL or n in _TUNNEL) and pkt.f[n]:
                match[n] = _user_value(_FIELDS[n], pkt.f[n])
        raw = _frame(pkt)
        rec = Record(reason=reason, reason_name=_PR_NAMES.get(reason, reason),
                     table_id=ctx.table_id if flow is not None else 0,
                     cookie=flow.cookie if flow is not None else _NO_COOKIE,
                     match=match, data=pkt.to_user(), raw=raw,
                     buffer_id=ofp.OFP_NO_BUFFER, total_len=len(raw),
                     max_len=max_len)
        ctx.packet_ins.append(rec)
        ctx.note('output:CONTROLLER -> PacketIn reason=%s' % rec['reason_name'])

    def _group(self, gid, pkt, ctx):
        g = self.groups.get(gid)
        if g is None:
            ctx.note('group:%d does not exist: dropped' % gid)
            return
        if not ctx.dry:
            g.packet_count += 1
            g.byte_count += pkt.length
        if g.type == ofp.OFPGT_SELECT:
            buckets = [self._select_bucket(g, pkt)]
        elif g.type == ofp.OFPGT_FF:
            buckets = [next((b for b in g._buckets if self._bucket_live(b)), None)]
        else:
            buckets = g._buckets
        if buckets == [None]:
            ctx.note('group:%d: no live bucket: dropped' % gid)
            return
        for b in buckets:
            ctx.note('group:%d bucket %d' % (gid, g._buckets.index(b)))
            ctx.depth += 1
            try:
                self._run_ops(b[3], pkt.copy(), ctx)
            finally:
                ctx.depth -= 1

    def _learn(self, pkt, ctx, args):
        specs, p = args
        fields, ops, actions = {}, [], []
        for kind, src, dst, dofs, n in specs:
            if src[0] == 'imm':
                value = src[1] & ((1 << n) - 1)
            else:
                value = ((pkt.get(src[1]) or 0) >> src[2]) & ((1 << n) - 1)
            if kind == 'match':
                v, m = fields.get(dst, (0, 0))
                mask = ((1 << n) - 1) << dofs
                fields[dst] = ((v & ~mask) | (value << dofs), m | mask)
            elif kind == 'load':
                fi = _FIELDS[dst]
                mask = ((1 << n) - 1) << dofs
                ops.append(_Op('set_field', (dst, value << dofs, mask),
                               'load:0x%x->%s[%d..%d]' % (value, dst, dofs,
                                                          dofs + n - 1)))
                if mask == fi.full:
                    actions.append(parser.OFPActionSetField(
                        **{dst: _user_value(fi, value)}))
                else:
                    actions.append(parser.NXActionRegLoad(
                        ofs_nbits=(dofs << 6) | (n - 1), dst=dst, value=value))
            else:
                ops.append(_Op('output', (value, 0xffff), 'output:%s'
                               % _port_text(value)))
                actions.append(parser.OFPActionOutput(value))
        fin_idle, fin_hard = p['fin']
        if fin_idle or fin_hard:
            ops.append(_Op('fin_timeout', (fin_idle, fin_hard),
                           'fin_timeout(idle_timeout=%d,hard_timeout=%d)'
                           % (fin_idle, fin_hard)))
            actions.append(parser.NXActionFinTimeout(
                fin_idle_timeout=fin_idle, fin_hard_timeout=fin_hard))
        m = _Match(fields)
        prog = _Prog()
        prog.apply = ops
        prog.out_ports = {o.args[0] for o in ops if o.kind == 'output'}
        insts = [parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, actions)]
        ctx.note('learn: table=%d priority=%d %s actions=%s' % (
            p['table_id'], p['priority'], m.text(), prog.text()))
        ctx.learned.append((p['table_id'], p['priority'], m, prog, insts,
                            p['cookie'], p['idle'], p['hard'], p['flags']))

    # -- introspection --------------------------------------------------------

    def flows(self, table_id=None, cookie=None, cookie_mask=None, priority=None,
              match=None):
        """Flows, by table then priority (highest first) then age.

        ``cookie``/``cookie_mask`` filter as a FlowMod does (no mask: the
        whole cookie must be equal); ``match`` (dict or OFPMatch) keeps the
        flows whose match has all those fields with those values/masks.
        """
        want = None if match is None else _parse_match(match, 'flows(): ',
                                                       check_prereqs=False)
        if cookie is not None and cookie_mask is None:
            cookie_mask = _NO_COOKIE
        out = []
        tables = self._tables if table_id is None else [self._tables[table_id]]
        for t in tables:
            for f in t.sorted_flows():
                if cookie is not None and f.cookie & cookie_mask != cookie & cookie_mask:
                    continue
                if priority is not None and f.priority != priority:
                    continue
                if want is not None and any(f._m.fields.get(n) != vm
                                            for n, vm in want.fields.items()):
                    continue
                out.append(f)
        return out

    def flow_stats(self, request):
        """The body of the reply to an OFPFlowStatsRequest: OFPFlowStats
        objects for the flows it selects (table, cookie/mask), durations and
        counters on the switch clock, as OVS answers."""
        table_id = None if request.table_id == ofp.OFPTT_ALL else request.table_id
        out = []
        for f in self.flows(table_id, request.cookie, request.cookie_mask):
            dur = max(0.0, self.now - f.installed_at)
            out.append(parser.OFPFlowStats(
                table_id=f.table_id, duration_sec=int(dur),
                duration_nsec=int(round((dur - int(dur)) * 1e9)), priority=f.priority,
                idle_timeout=f.idle_timeout, hard_timeout=f.hard_timeout, flags=f.flags,
                cookie=f.cookie, packet_count=f.packet_count, byte_count=f.byte_count,
                match=parser.OFPMatch(**f.match), instructions=list(f.instructions)))
        return out

    def find_flow(self, table_id=None, cookie=None, cookie_mask=None,
                  priority=None, match=None, **fields):
        """The first flow of :meth:`flows` (keyword fields join ``match``)."""
        if fields:
            match = dict(match or {}, **fields)
        found = self.flows(table_id, cookie, cookie_mask, priority, match)
        return found[0] if found else None

    def group(self, group_id):
        return self.groups.get(group_id)

    def dump(self):
        """A readable dump of flows and groups (for failure messages)."""
        lines = ['FakeSwitch dpid=%s at t=%g: %d flows, %d groups'
                 % (self.dpid, self.now, len(self.flows()), len(self.groups))]
        lines += [' ' + f.text(self.now) for f in self.flows()]
        lines += [' ' + self.groups[g].text() for g in sorted(self.groups)]
        return '\n'.join(lines)

    def take_packet_ins(self):
        """Return the PacketIn records and clear the list."""
        out, self.packet_ins = self.packet_ins, []
        return out

    def take_flow_removed(self):
        """Return the FlowRemoved records and clear the list."""
        out, self.flow_removed = self.flow_removed, []
        return out

    def packet_in_message(self, record):
        """A Ryu OFPPacketIn for a PacketIn record (``data`` = frame bytes)."""
        m = parser.OFPMatch(**record['match'])
        msg = parser.OFPPacketIn(self.datapath, buffer_id=record['buffer_id'],
                                 total_len=record['total_len'],
                                 reason=record['reason'],
                                 table_id=record['table_id'],
                                 cookie=record['cookie'], match=m,
                                 data=record['raw'])
        msg.set_headers(ofp.OFP_VERSION, ofp.OFPT_PACKET_IN, 0, 0)
        return msg

    def flow_removed_message(self, record):
        """A Ryu OFPFlowRemoved for a FlowRemoved record."""
        msg = parser.OFPFlowRemoved(
            self.datapath, cookie=record['cookie'], priority=record['priority'],
            reason=record['reason'], table_id=record['table_id'],
            duration_sec=record['duration_sec'],
            duration_nsec=record['duration_nsec'],
            idle_timeout=record['idle_timeout'],
            hard_timeout=record['hard_timeout'],
            packet_count=record['packet_count'],
            byte_count=record['byte_count'],
            match=parser.OFPMatch(**record['match']))
        msg.set_headers(ofp.OFP_VERSION, ofp.OFPT_FLOW_REMOVED, 0, 0)
        return msg
