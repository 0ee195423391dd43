"""TCP connection states, as IPVS keeps them and as the director sees them.

IPVS moves a connection through ``tcp_states[]`` on every segment; the
director sees only what the switch sends it: the client's SYN, FIN and RST
(and every segment of an FTP control connection).  That is IPVS's
INPUT_ONLY view (the table used for direct routing and tunnelling), which
the director applies to NAT too.  The client's handshake ACK does not reach
the controller: a connection in SYN_RECV becomes ESTABLISHED when its flow
shows traffic (see :mod:`lvs_app.director`, FlowRemoved), or when a FIN or
RST arrives with ACK set (the handshake was completed to send it).

Stdlib only.
"""

from lvs_app.packet import TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN

# The kernel's tcp_timeouts[] (seconds); ESTABLISHED and FIN_WAIT come from
# ``ipvsadm --set`` (tcp, tcpfin).
FIXED_TIMEOUTS = {"NONE": 2, "SYN_SENT": 120, "SYN_RECV": 60, "TIME_WAIT": 120, "CLOSE": 10,
                  "CLOSE_WAIT": 60, "LAST_ACK": 30, "LISTEN": 120, "SYNACK": 120}
ACTIVE = frozenset({"ESTABLISHED", "SYN_SENT", "SYN_RECV", "SYNACK"})

_STATES = ("NONE", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT", "TIME_WAIT", "CLOSE",
           "CLOSE_WAIT", "LAST_ACK", "LISTEN", "SYNACK")
_ABBREV = {"NO": "NONE", "ES": "ESTABLISHED", "SS": "SYN_SENT", "SR": "SYN_RECV",
           "FW": "FIN_WAIT", "TW": "TIME_WAIT", "CL": "CLOSE", "CW": "CLOSE_WAIT",
           "LA": "LAST_ACK", "LI": "LISTEN", "SA": "SYNACK"}


def _row(text):
    return dict(zip(_STATES, (_ABBREV[cell] for cell in text.split())))


# tcp_states[] INPUT_ONLY block: current state (columns, in _STATES order) -> next
INPUT_ONLY = {
    "syn": _row("SR ES ES SR SR SR SR SR SR SR SR"),
    "fin": _row("CL FW SS TW FW TW CL CW LA LI TW"),
    "ack": _row("ES ES SS ES FW TW CL CW CL LI ES"),
    "rst": _row("CL CL CL SR CL CL CL CL LA LI CL"),
}


def event(flags):
    """The segment's event, in IPVS's priority order: rst, syn, fin, ack."""
    if flags & TCP_RST:
        return "rst"
    if flags & TCP_SYN:
        return "syn"
    if flags & TCP_FIN:
        return "fin"
    if flags & TCP_ACK:
        return "ack"
    return None


def next_state(state, flags):
    """The state after a client segment with TCP ``flags`` (INPUT_ONLY)."""
    if state == "SYN_RECV" and flags & TCP_ACK and not flags & TCP_SYN:
        # the ACK the switch kept from us completed the handshake first
        state = "ESTABLISHED"
    name = event(flags)
    if name is None:
        return state
    return INPUT_ONLY[name].get(state, state)


def timeout(state, timeouts):
    """How long an entry lives in ``state``; ``timeouts`` is the --set table."""
    if state == "ESTABLISHED":
        return timeouts["tcp"]
    if state == "FIN_WAIT":
        return timeouts["tcpfin"]
    return FIXED_TIMEOUTS[state]
