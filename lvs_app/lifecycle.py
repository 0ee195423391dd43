"""A connection's life in time: TCP states, timeouts, and what an idle flow means.

The director sees a client's SYN, FIN and RST (see tcpstate.py); the rest
of a connection's timing is read from its flow.  A flow idles out after the
state's timeout, or in SYN_RECV after 60 s (no longer than ESTABLISHED's):
its FlowRemoved counters say whether packets passed since it was
installed, and if so the last one passed ``flow_idle`` seconds ago.  A
SYN_RECV entry whose flow carried packets completed its handshake; one whose
flow carried nothing was half-open.  An entry lives its state's timeout
after its last packet: the flow comes back for the rest of that time.

A FIN stays in the switch.  A TCP connection flow carries Open vSwitch's
``fin_timeout(idle=FIN_IDLE, hard=max(tcpfin, FIN_IDLE + 1))``: once it sees the client's FIN
its idle timeout drops to FIN_IDLE and it gains a hard timeout, which no
other flow of the director has -- so its FlowRemoved says that the
connection closed (an RST still comes to the controller, so it closes the
entry at once, IPVS's CLOSE).  The entry then moves to FIN_WAIT (inactive)
and lives on in the controller, without a flow, until ``tcpfin`` after its
last packet; a late packet of it (a half-closed connection, a retransmitted
FIN) comes to the controller by the VIP's stray punt and gets the flow back.
So a new connection costs one PacketIn (its SYN), and ActiveConn counts a
closed connection until FIN_IDLE after its last packet (IPVS: at its FIN).
"""

import collections
import math

from lvs_app import packet as pkt
from lvs_app import tcpstate
from lvs_app.limits import SECURE_SYN_RECV

FIN_IDLE = 1                # s: a connection flow's idle timeout once it saw a FIN


class Lifecycle:
    """State changes and expiry of connections, over the connection table."""

    def __init__(self, config, conns, flows):
        self.config = config         # the DirectorAPI (read only): the --set timeouts
        self.conns = conns
        self.flows = flows
        self._first = {}             # proto -> a new connection's flow timeout (hot path)
        self.pressure = False        # near the table's cap: see limits.py (secure_tcp)
        self.flowless = collections.deque()     # (sw, conn): FIN_WAIT entries without flow
        self.table_edited()

    def table_edited(self):
        """The --set timeouts may have changed."""
        self._first.clear()
        # the hard timeout, longer than the idle one, ends a flow that still
        # carries packets after the FIN (a half-closed connection)
        self.flows.fin = (FIN_IDLE, max(FIN_IDLE + 1, self.tcp_timeout("FIN_WAIT")))
        self.flows.carry_idle = self.tcp_timeout("ESTABLISHED")

    def tcp_timeout(self, state):
        return tcpstate.timeout(state, self.config.table.timeouts)

    def state_timeout(self, conn):
        if conn.key[0] == "tcp":
            return self.tcp_timeout(conn.state)
        return self.config.table.timeouts["udp"]

    def flow_idle(self, state):
        """A TCP connection flow's idle timeout in ``state``: the state's own,
        but in SYN_RECV no longer than ESTABLISHED's, so that a completed
        handshake is noticed in time."""
        if state == "SYN_RECV":
            return min(self.tcp_timeout("SYN_RECV"), self.tcp_timeout("ESTABLISHED"))
        return self.tcp_timeout(state)

    def first_flow_idle(self, proto):
        """A new connection's flow timeout: SYN_RECV's for TCP, udp for UDP."""
        idle = self._first.get(proto)
        if idle is None:
            idle = self._first[proto] = (self.flow_idle("SYN_RECV") if proto == "tcp"
                                         else self.config.table.timeouts["udp"])
        if self.pressure and proto == "tcp":
            return min(idle, SECURE_SYN_RECV)
        return idle

    def first_timeout(self, proto):
        """A new connection's own timeout: SYN_RECV's for TCP, udp for UDP."""
        timeout = self._first.get((proto,))
        if timeout is None:
            timeout = self._first[(proto,)] = (self.tcp_timeout("SYN_RECV") if proto == "tcp"
                                               else self.config.table.timeouts["udp"])
        return timeout

    def segment(self, sw, conn, flags, now):
        """A client segment of a known TCP connection: its state may change.
        A SYN on an entry whose flow is still in the switch gets a flow
        without fin_timeout: the old connection's FIN may reach the new flow
        (Open vSwitch applies fin_timeout when it pushes a datapath flow's
        statistics, up to a second late, to the rule the flow maps to now),
        so this connection's own FIN is not seen; its entry ends by idling."""
        state = tcpstate.next_state(conn.state, flags)
        if state == conn.state:
            return []
        fin = conn.flowless or not flags & pkt.TCP_SYN
        return self.set_state(sw, conn, state, now, fin)

    def set_state(self, sw, conn, state, now, fin=True):
        """A TCP state change: recount, re-time the flow to the state's timeout.
        Entering SYN_RECV resets the flow's counters: they tell whether the
        handshake completed."""
        self.conns.set_state(conn, state, state in tcpstate.ACTIVE)
        timeout = self.tcp_timeout(state)
        conn.seen, conn.expires_at = now, now + timeout
        conn.flow_at = now
        if conn.nodest:
            return []
        return [self.flows.conn_flow(sw, conn, conn.service_id, self.flow_idle(state),
                                     reset_counts=state == "SYN_RECV", fin=fin)]

    def closed(self, sw, conn, hard, now):
        """A connection flow that saw the client's FIN was removed
        (``hard``: by its hard timeout, while packets still passed).  The
        entry is FIN_WAIT, inactive, without a flow until ``tcpfin`` after its
        last packet.  Returns True when its time is up already (the caller
        ends it)."""
        last = now if hard else now - min(conn.flow_idle, FIN_IDLE)
        self.conns.set_state(conn, "FIN_WAIT", False)
        conn.seen, conn.expires_at = last, last + self.tcp_timeout("FIN_WAIT")
        if conn.expires_at - now < 1:
            return True
        conn.flowless = True
        self.flowless.append((sw, conn))
        return False

    def expired_flowless(self, now):
        """The flowless entries whose time is up, oldest first (for the caller
        to end): a timed job's work."""
        out = []
        queue = self.flowless
        while queue and (not queue[0][1].flowless or queue[0][1].expires_at <= now):
            sw, conn = queue.popleft()
            # not if its switch went away meanwhile (its entries stopped counting then)
            if (conn.flowless and sw.conns.get(conn.key) is conn
                    and self.conns.switches.get(sw.dpid) is sw):
                out.append((sw, conn))
        return out

    def flow_back(self, sw, conn, now, fin=True):
        """A packet of a flowless entry came (the stray punt), or a SYN of an
        entry whose flow may have seen a FIN: a fresh flow (new timeouts;
        without fin_timeout for the SYN, see :meth:`segment`) for its state's
        time."""
        conn.seen, conn.expires_at = now, now + self.state_timeout(conn)
        conn.flow_at = now
        if conn.nodest:
            return []
        return [self.flows.conn_flow(sw, conn, conn.service_id, self.flow_idle(conn.state),
                                     reset_counts=conn.state == "SYN_RECV", fin=fin)]

    def idled_out(self, sw, conn, packet_count, now):
        """A connection's flow idled out.  Returns the flow that carries it on,
        or None when its time is up (the caller ends it)."""
        if conn.nodest:
            return None
        if packet_count > 0:
            conn.seen = now - conn.flow_idle
            if conn.state == "SYN_RECV":
                self.conns.set_state(conn, "ESTABLISHED", True)
        expiry = conn.seen + self.state_timeout(conn)
        if expiry - now < 1:
            return None
        conn.expires_at = expiry
        return [self.flows.conn_flow(sw, conn, conn.service_id, math.ceil(expiry - now))]
