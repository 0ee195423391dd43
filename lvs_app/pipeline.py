"""The switch pipeline, declared once: tables, what they match, set and jump to.

Each table is a :class:`Table` that declares the fields it matches (and which
of them may be masked), the fields its flows may rewrite, the tables it may
go to, its priorities by name, the cookie kinds it holds and its miss
behaviour.  Every FlowMod for a table is built through :meth:`Table.flow`,
which checks it against the declaration *when it is built*: a flow that
breaks the pipeline raises :class:`PipelineError` in the code (and the test)
that made it, instead of reaching the switch.  The base flows (table misses
and the director's own punts) come from the declaration too.

Tables (OpenFlow 1.3, Open vSwitch)::

  0 CLASSIFY   an IP fragment from a fabric link -> FORWARD (it was handled
               where it entered the fabric); any other frame from a link ->
               REVERSE (transit: no punts);
               ARP (IPv6: Neighbor Solicitations) for a VIP, ARP replies
               (Neighbor Advertisements) to the director -> controller;
               ARP for and IPv4 to the health-check address -> controller;
               IPv4/IPv6 to a VIP's virtual MAC -> SERVICE; the rest -> REVERSE
  1 SERVICE    IP fragments to a VIP -> controller (it maps them by IP id);
               TCP SYN and RST, new UDP flows -> controller;
               per-connection flows (5-tuple) -> rewrite -> FORWARD / tunnel
               (TCP: fin_timeout, so a FIN stays in the switch);
               persistence templates (client/netmask wildcard) -> same;
               other TCP to a VIP -> controller (an entry whose flow ended
               after its FIN; the rest is dropped there, as IPVS drops a
               non-SYN packet it has no entry for);
               miss: drop
  2 REVERSE    NAT replies: real server -> client rewritten back to VIP:port;
               IP fragments from a NAT server -> controller
  3 FORWARD    L2 learning by destination MAC (a fabric: one flow per host on
               every switch, see fabricfwd.py); miss -> controller
"""

from dataclasses import dataclass, field

from lvs_app import ids
from lvs_app import ofmsg
from lvs_app import packet as pkt

CLASSIFY, SERVICE, REVERSE, FORWARD = 0, 1, 2, 3

# priorities, by table (named in each table's declaration below)
PRIO_ARP = 300          # CLASSIFY: ARP/NS for a VIP / ARP replies and NAs to the director
PRIO_HEALTH = 350       # CLASSIFY: IPv4 to the health-check address (probe replies)
PRIO_TRANSIT = 600      # CLASSIFY: a frame from a fabric link -> REVERSE (see fabricfwd.py)
PRIO_TRANSIT_FRAG = 610  # CLASSIFY: an IP fragment from a fabric link -> FORWARD
PRIO_FABRIC = 150       # FORWARD: a host's flow on every switch of the fabric
PRIO_VIP = 200          # CLASSIFY: IPv4/IPv6 to VIP + virtual MAC
PRIO_FRAG = 500         # SERVICE/REVERSE: IP fragments to a VIP / from a NAT server
PRIO_PUNT_TCP = 400     # SERVICE: SYN / RST to a VIP (+ the flag bit; FIN: older versions')
PRIO_STRAY = 100        # SERVICE: TCP to a VIP that no flow carries (an entry without flow)
PRIO_CONN = 300         # SERVICE/REVERSE: one connection (exact 5-tuple)
PRIO_PUNT_UDP = 250     # SERVICE: a UDP datagram with no connection flow
PRIO_TEMPLATE = 200     # SERVICE/REVERSE: persistence template (client wildcard)
PRIO_TEMPLATE_SYN = 450  # SERVICE: --pe switch: a template's client's SYNs, above the punts
PRIO_TEMPLATE_NAT = 190  # REVERSE: --pe switch, NAT: replies to a template's client
PRIO_L2 = 100           # FORWARD: learned destination MAC
PRIO_MISS = 0

_L2 = frozenset({"in_port", "eth_src", "eth_dst", "eth_type"})
_ARP = frozenset({"arp_op", "arp_spa", "arp_tpa", "arp_sha", "arp_tha"})
_IP = frozenset({"ip_proto", "ipv4_src", "ipv4_dst", "ipv6_src", "ipv6_dst", "tcp_src",
                 "tcp_dst", "udp_src", "udp_dst", "tcp_flags", "ip_frag"})
_ND = frozenset({"icmpv6_type", "ipv6_nd_target"})


class PipelineError(Exception):
    """A FlowMod that breaks the declared pipeline."""


@dataclass
class Table:
    """One declared table; build its flows with :meth:`flow`."""

    id: int
    name: str
    matches: frozenset            # fields its flows may match
    maskable: frozenset           # ... of which these may carry a mask
    set_fields: frozenset         # fields its flows may rewrite
    next_tables: frozenset        # goto targets (always later tables)
    priorities: dict              # name -> priority
    kinds: frozenset              # cookie kinds of the flows it holds
    miss: object                  # "drop", "controller" or the table to go to
    _matches_ok: set = field(default_factory=set, repr=False)

    def __post_init__(self):
        self._priority_values = frozenset(self.priorities.values())

    # -- building ----------------------------------------------------------------
    def flow(self, priority, match, instructions, cookie, idle=0, hard=0, notify=False,
             reset_counts=False):
        """An OFPFC_ADD FlowMod for this table, checked against the declaration."""
        self.check(priority, match, instructions, cookie)
        return ofmsg.flow_mod(self.id, priority, match, instructions, cookie, idle, hard,
                              notify, reset_counts)

    def delete(self, cookie_and_mask, match=None, priority=None):
        """Delete this table's flows selected by cookie/mask (strict with ``priority``)."""
        if priority is not None and priority not in self._priority_values:
            raise PipelineError(f"table {self.name} has no priority {priority}")
        return ofmsg.flow_delete(cookie_and_mask, self.id, match, priority)

    def modify(self, cookie_and_mask, instructions):
        """Replace the instructions of this table's flows selected by cookie/mask."""
        self._check_instructions(instructions)
        return ofmsg.flow_modify(cookie_and_mask, self.id, instructions)

    def miss_flow(self, meter=None):
        if self.miss == "drop":
            inst = []
        elif self.miss == "controller":
            inst = ofmsg.punt(meter)
        else:
            inst = [ofmsg.goto(self.miss)]
        return self.flow(PRIO_MISS, ofmsg.match(), inst, ids.Cookie(ids.KIND_BASE).value)

    # -- checking ----------------------------------------------------------------
    def check(self, priority, match, instructions, cookie):
        """Raise PipelineError if a flow with these parts breaks the declaration."""
        if (cookie >> 56 != ids.APP_TAG or (cookie >> 48) & 0x0F not in ids.KIND_NAMES
                or (cookie >> 52) & 0x0F != ids.PIPELINE_VERSION):
            raise PipelineError(f"table {self.name}: cookie {cookie:#x} is not in the app's "
                                "cookie layout")
        kind = (cookie >> 48) & 0x0F
        if kind not in self.kinds:
            raise PipelineError(f"table {self.name} does not hold {ids.KIND_NAMES[kind]} flows")
        if priority not in self._priority_values:
            raise PipelineError(f"table {self.name} has no priority {priority}")
        signature = getattr(match, "signature", None)
        if signature is None:
            fields = ofmsg.match_fields(match)
            signature = (frozenset(fields), frozenset(n for n, m in fields.items() if m))
        if signature not in self._matches_ok:
            self._check_match(*signature)
            self._matches_ok.add(signature)
        self._check_instructions(instructions)

    def _check_match(self, names, masked):
        extra = names - self.matches
        if extra:
            raise PipelineError(f"table {self.name} does not match on "
                                f"{', '.join(sorted(extra))}")
        extra = masked - self.maskable
        if extra:
            raise PipelineError(f"table {self.name} may not mask {', '.join(sorted(extra))}")

    def _check_instructions(self, instructions):
        for inst in instructions:
            done = inst.__dict__.get("_tables_ok")
            if done is not None and self.id in done:
                continue        # a frozen (cached) instruction checked before
            goto = getattr(inst, "table_id", None)
            if goto is not None and type(inst).__name__ == "OFPInstructionGotoTable":
                if goto not in self.next_tables:
                    raise PipelineError(f"table {self.name} may not go to table {goto}")
            for action in getattr(inst, "actions", ()):
                name = getattr(action, "key", None)
                if type(action).__name__ == "OFPActionSetField" and name not in self.set_fields:
                    raise PipelineError(f"table {self.name} may not set {name}")
            inst._tables_ok = (done or frozenset()) | {self.id}


TABLES = {
    CLASSIFY: Table(
        CLASSIFY, "classify", _L2 | _ARP | _IP | _ND, frozenset({"ip_frag"}), frozenset(),
        frozenset({SERVICE, REVERSE, FORWARD}),
        {"arp": PRIO_ARP, "health": PRIO_HEALTH, "vip": PRIO_VIP, "transit": PRIO_TRANSIT,
         "transit-frag": PRIO_TRANSIT_FRAG, "miss": PRIO_MISS},
        frozenset({ids.KIND_BASE, ids.KIND_VIP, ids.KIND_FABRIC}), REVERSE),
    SERVICE: Table(
        SERVICE, "service", _L2 | _IP,
        frozenset({"ipv4_src", "ipv6_src", "tcp_dst", "udp_dst", "tcp_flags", "ip_frag"}),
        frozenset({"eth_dst", "ipv4_dst", "ipv6_dst", "tcp_dst", "udp_dst", "tun_ipv4_dst",
                   "tun_ipv6_dst"}),
        frozenset({FORWARD}),
        {"punt-fin": PRIO_PUNT_TCP + pkt.TCP_FIN, "punt-syn": PRIO_PUNT_TCP + pkt.TCP_SYN,
         "punt-rst": PRIO_PUNT_TCP + pkt.TCP_RST, "conn": PRIO_CONN,
         "punt-udp": PRIO_PUNT_UDP, "template": PRIO_TEMPLATE, "frag": PRIO_FRAG,
         "stray": PRIO_STRAY, "template-syn": PRIO_TEMPLATE_SYN, "miss": PRIO_MISS},
        frozenset({ids.KIND_BASE, ids.KIND_VIP, ids.KIND_CONN, ids.KIND_TEMPLATE,
                   ids.KIND_FRAG, ids.KIND_TEMPLATE_SYN}), "drop"),
    REVERSE: Table(
        REVERSE, "reverse-nat", _L2 | _IP,
        frozenset({"ipv4_dst", "ipv6_dst", "tcp_flags", "ip_frag"}),
        frozenset({"ipv4_src", "ipv6_src", "tcp_src", "udp_src", "eth_src"}), frozenset({FORWARD}),
        {"conn": PRIO_CONN, "template": PRIO_TEMPLATE, "template-nat": PRIO_TEMPLATE_NAT,
         "frag": PRIO_FRAG, "miss": PRIO_MISS},
        frozenset({ids.KIND_BASE, ids.KIND_REVERSE, ids.KIND_REVERSE_TEMPLATE,
                   ids.KIND_FRAG, ids.KIND_TEMPLATE_NAT}), FORWARD),
    FORWARD: Table(
        FORWARD, "forward", _L2, frozenset(), frozenset(), frozenset(),
        {"l2": PRIO_L2, "fabric": PRIO_FABRIC, "miss": PRIO_MISS},
        frozenset({ids.KIND_BASE, ids.KIND_L2, ids.KIND_FABRIC}), "controller"),
}
TABLE_NAMES = {t.id: t.name for t in TABLES.values()}
N_TABLES = len(TABLES)


class PuntMeters:
    """OpenFlow meters on the flows that send packets to the controller, so a
    flood is dropped in the switch instead of queueing in front of the
    controller (Faucet's packetin_pps, OVN's per-kind meters).  ``pps`` limits
    the punts of new connections to VIPs (meter 1); ARP and learning punts get
    half of it (meter 2), and so do the replies to health probes (meter 3,
    when health checks run: ``health=True``); TCP packets to a VIP that no
    flow carries get a tenth (meter 4: a flood of them cannot crowd out the
    SYNs).  0 turns them off."""

    SERVICE, L2, HEALTH, STRAY = 1, 2, 3, 4

    def __init__(self, pps=0, health=False):
        self.pps = pps
        self.service = self.SERVICE if pps else None
        self.l2 = self.L2 if pps else None
        self.health = self.HEALTH if pps and health else None
        self.stray = self.STRAY if pps else None

    def mods(self, present=()):
        """The MeterMods a switch needs: ADD, or MODIFY for a meter it has
        (deleting a meter would delete the flows that use it)."""
        if not self.pps:
            return []
        half = max(1, self.pps // 2)
        wanted = [(self.SERVICE, self.pps), (self.L2, half),
                  (self.STRAY, max(1, self.pps // 10))]
        if self.health:
            wanted.append((self.HEALTH, half))
        return [ofmsg.meter_mod(meter_id, pps, ofmsg.METER_MODIFY if meter_id in present
                                else ofmsg.METER_ADD)
                for meter_id, pps in wanted]


def base_flows(meters=PuntMeters(), health=None):
    """The pipeline's skeleton: every table's miss flow, and the director's own
    punts (ARP replies to the director's MAC, answers to its probes); with a
    health-check address (an int), ARP requests for it and every IPv4 packet
    to it (the replies to health probes, through their own meter)."""
    cookie = ids.Cookie(ids.KIND_BASE).value
    classify = TABLES[CLASSIFY]
    director = pkt.mac_text(pkt.DIRECTOR_MAC)
    flows = [classify.flow(PRIO_ARP, ofmsg.match(eth_type=pkt.ETH_ARP, eth_dst=director),
                           ofmsg.punt(meters.l2), cookie),
             classify.flow(PRIO_ARP, ofmsg.match(eth_type=pkt.ETH_IPV6, eth_dst=director,
                                                 ip_proto=pkt.PROTO_ICMPV6,
                                                 icmpv6_type=pkt.ND_ADVERT),
                           ofmsg.punt(meters.l2), cookie)]
    if health is not None:
        address = pkt.ip_text(health)
        flows += [
            classify.flow(PRIO_ARP, ofmsg.match(eth_type=pkt.ETH_ARP, arp_op=1, arp_tpa=address),
                          ofmsg.punt(meters.l2), cookie),
            classify.flow(PRIO_HEALTH, ofmsg.match(eth_type=pkt.ETH_IP, ipv4_dst=address),
                          ofmsg.punt(meters.health), cookie)]
    return flows + [table.miss_flow(meters.l2) for table in TABLES.values()]


def check(flowmod):
    """Raise PipelineError if a built FlowMod breaks the declared pipeline.

    Flows built through :meth:`Table.flow` were checked already; this is for
    messages from elsewhere (tests, the fake switch's delivery path).
    """
    if flowmod.table_id == ofmsg.ALL_TABLES:
        if flowmod.command not in ofmsg.DELETES:
            raise PipelineError("only a delete may address all tables")
        return
    table = TABLES.get(flowmod.table_id)
    if table is None:
        raise PipelineError(f"table {flowmod.table_id} is not in the pipeline")
    if flowmod.command in ofmsg.DELETES:
        return
    if flowmod.command == ofmsg.MODIFY:
        table._check_instructions(flowmod.instructions)
        return
    table.check(flowmod.priority, flowmod.match, flowmod.instructions, flowmod.cookie)
