"""The connection table: connections, templates and per-switch state.

What the kernel keeps in its ``ip_vs_conn`` hash: one :class:`Connection`
per client connection, one :class:`Template` per persistent client (under
the netmask), FTP data connections announced but not yet started
(:class:`FtpExpectation`, IPVS's NO_CPORT entries).  Each switch that
directs traffic has its own table (:class:`Switch`), since each switch holds
the flows that carry its connections.

Counting is done here and only here: a connection binds to its
:class:`~lvs_app.state.Dest` (ActiveConn or InActConn) while it is in the
table, a template counts in PersistConn while it decides anything.
"""

import collections
from dataclasses import dataclass, field


from lvs_app import packet as pkt
from lvs_app.model import ServiceKey

EXPIRE_LATER = 60          # s: a template or control connection with live children waits this long


@dataclass
class Template:
    """An IPVS connection template: client (under netmask) -> real server."""

    key: tuple                  # (proto name or "IP", snet int, vip int or mark, vport)
    service: ServiceKey
    dest: object                # Dest
    server_id: int
    matches: list               # the flow matches that carry it (one per fwmark range)
    armed_at: float
    expires_at: float
    timeout: int = 0            # what a new connection re-arms it with (-p, or 60 for good
    #                             once it went through expire_later, as in the kernel)
    n_control: int = 0
    expiring: bool = False      # its flows are gone; waits for its connections
    # its time came while it still had connections (expire_later): since
    # when, and whether each of them ended before then, as far as IPVS knows
    late_since: float = None
    late_ok: bool = True
    # --pe switch: its client's new connections stay in the switch (see
    # persistence.py); with NAT, the (server, port, vip, vport) its reply
    # rewrite flow serves
    hot: bool = False
    hot_nat: tuple = None


@dataclass(slots=True)
class Connection:
    """One client connection (or UDP flow) and the real server it was given."""

    key: tuple                  # (proto, client ip, client port, vip, vport)
    service: ServiceKey
    dest: object                # Dest
    server_id: int
    dport: int                  # port on the real server
    state: str
    active: bool
    expires_at: float
    template: Template = None
    service_id: int = 0         # the service's number in cookies
    nat: bool = False           # its server's replies cross the switch (NAT)
    seen: float = 0.0           # when its last packet is known to have passed
    flow_idle: int = 0          # the idle timeout its SERVICE flow was given
    flowless: bool = False      # its flow ended after a FIN: FIN_WAIT in the controller
    flow_at: float = 0.0        # when a state change last put a fresh flow in
    isn: int = None             # TCP: the sequence number of the SYN that opened it
    nodest: bool = False        # its real server was deleted (expire_nodest_conn=0)
    control: "Connection" = None    # FTP data connection: its control connection
    ftp: object = None              # FTP control connection: the helper's state (FtpControl)


@dataclass
class FtpExpectation:
    """A passive FTP data connection announced by a 227/229 reply (IPVS's
    NO_CPORT entry): the client's next SYN to VIP:port goes to the control
    connection's real server, same port."""

    control: Connection
    port: int
    expires_at: float


@dataclass
class Switch:
    """One switch's part of the director: its ports and its connection table."""

    dpid: int
    ports: dict = field(default_factory=dict)        # port no -> name
    tunnel_port: int = None
    vips: set = field(default_factory=set)           # VIP flows installed: (vip, tcp?, udp?)
    fragment_flows: set = field(default_factory=set)  # (table, address) fragment punts
    nat_replies: dict = field(default_factory=dict)   # (proto, rs, rs port, client, cport)
    half_open: collections.deque = field(default_factory=collections.deque)  # SYN_RECV keys
    conns: dict = field(default_factory=dict)        # 5-tuple -> Connection
    templates: dict = field(default_factory=dict)    # template key -> Template
    ftp_controls: dict = field(default_factory=dict)  # (rs, rs port, client, cport) -> Connection
    ftp_expect: dict = field(default_factory=dict)    # (client, vip, vport) -> FtpExpectation
    # --pe switch, NAT: (server, port) -> {(vip, vport): {key: template}} whose
    # reply flows rewrite that server port's packets (see persistence.py)
    hot_nat: dict = field(default_factory=dict)

    def set_ports(self, ports):
        self.ports = dict(ports)
        self.tunnel_port = next((no for no, name in sorted(self.ports.items())
                                 if "vxlan" in name), None)


def conn_key(fields):
    """The connection key a connection flow's match names (None if none)."""
    proto = "tcp" if fields.get("ip_proto") == pkt.PROTO_TCP else "udp"
    try:
        return (proto, pkt.field_address(fields, "src"), fields[f"{proto}_src"],
                pkt.field_address(fields, "dst"), fields[f"{proto}_dst"])
    except (KeyError, TypeError, ValueError):
        return None


class ConnectionTable:
    """Every switch's connections and templates, and the counting they drive."""

    def __init__(self):
        self.switches = {}           # dpid -> Switch

    # -- switches ------------------------------------------------------------------
    def add_switch(self, dpid, ports):
        sw = self.switches[dpid] = Switch(dpid)
        sw.set_ports(ports)
        return sw

    def remove_switch(self, dpid):
        """A switch went away: its connections and templates stop counting."""
        sw = self.switches.pop(dpid, None)
        if sw is None:
            return
        for conn in sw.conns.values():
            conn.dest.unbind(conn.active)
        for template in list(sw.templates.values()):
            self.forget_template(sw, template)

    # -- connections -----------------------------------------------------------------
    @staticmethod
    def _reply_key(conn):
        proto, client, cport, _, _ = conn.key
        return (proto, int(conn.dest.address), conn.dport, client, cport)

    def nat_reply(self, sw, proto, src, sport, dst, dport):
        """The NAT connection a server -> client packet belongs to, or None."""
        return sw.nat_replies.get((proto, src, sport, dst, dport))

    def add(self, sw, conn):
        """Enter ``conn`` into the switch's table; it counts on its Dest."""
        sw.conns[conn.key] = conn
        if conn.nat:
            sw.nat_replies[self._reply_key(conn)] = conn
        conn.dest.bind(conn.active)
        if conn.template is not None:
            conn.template.n_control += 1

    def set_state(self, conn, state, active):
        """A TCP state change: the connection may move between Active and InAct."""
        conn.dest.unbind(conn.active)
        conn.state, conn.active = state, active
        conn.dest.bind(active)

    def move(self, conn, dest):
        """Count ``conn`` on another Dest (a re-added server revives it)."""
        conn.dest.unbind(conn.active)
        conn.dest = dest
        dest.bind(conn.active)

    def remove(self, sw, conn):
        """Take ``conn`` out of the table.  Returns its template when that
        template was only waiting for its last connection (drop it now)."""
        sw.conns.pop(conn.key, None)
        if conn.nat and sw.nat_replies.get(self._reply_key(conn)) is conn:
            del sw.nat_replies[self._reply_key(conn)]
        conn.dest.unbind(conn.active)
        template = conn.template
        if template is not None:
            template.n_control -= 1
            if template.expiring and template.n_control <= 0:
                return template
        return None

    def drop_service(self, sw, key):
        """A deleted service's connections and templates go (no counting: its
        Dests go with it)."""
        for ckey in [k for k, c in sw.conns.items() if c.service == key]:
            del sw.conns[ckey]
        for rkey in [k for k, c in sw.nat_replies.items() if c.service == key]:
            del sw.nat_replies[rkey]
        for tkey in [k for k, t in sw.templates.items() if t.service == key]:
            self._unindex(sw, sw.templates.pop(tkey))

    def clear(self, sw):
        sw.conns.clear()
        sw.nat_replies.clear()
        sw.templates.clear()
        sw.hot_nat.clear()

    # -- templates ---------------------------------------------------------------------
    @staticmethod
    def add_template(sw, template):
        sw.templates[template.key] = template
        template.dest.persistconns += 1
        if template.hot_nat is not None:
            server, port, vip, vport = template.hot_nat
            users = sw.hot_nat.setdefault((server, port), {}).setdefault((vip, vport), {})
            users[template.key] = template

    @staticmethod
    def _unindex(sw, template):
        if template.hot_nat is None:
            return
        server, port, vip, vport = template.hot_nat
        users = sw.hot_nat.get((server, port), {})
        same = users.get((vip, vport), {})
        if same.get(template.key) is template:
            del same[template.key]
            if not same:
                del users[(vip, vport)]
            if not users:
                del sw.hot_nat[(server, port)]

    def forget_template(self, sw, template):
        """The template no longer decides anything (it may still wait for its
        connections to end): out of the switch's table and PersistConn."""
        template.expiring = True
        if sw.templates.get(template.key) is template:
            del sw.templates[template.key]
            template.dest.persistconns -= 1
            self._unindex(sw, template)

    # -- listing -----------------------------------------------------------------------
    def rows(self, now):
        """Live connections and templates in ``ipvsadm -L -c`` terms."""
        rows = []
        for sw in self.switches.values():
            for conn in sw.conns.values():
                proto, client, cport, vip, vport = conn.key
                rows.append({"protocol": proto.upper(), "expire": max(0, int(conn.expires_at - now)),
                             "state": conn.state if not conn.nodest else "CLOSE",
                             "client": pkt.ip_text(client), "cport": cport, "vip": pkt.ip_text(vip),
                             "vport": vport, "server": str(conn.dest.address),
                             "dport": conn.dport, "pe_name": "", "pe_data": "",
                             "switch": sw.dpid})
            for template in sw.templates.values():
                proto, snet, vip_or_mark, vport = template.key
                rows.append({"protocol": proto.upper(),
                             "expire": max(0, int(template.expires_at - now)),
                             # IPVS marks a template ASSURED when a connection it
                             # controls is ESTABLISHED, which the switch never tells
                             "state": "NONE",
                             "client": pkt.ip_text(snet), "cport": 0,
                             "vip": pkt.ip_text(vip_or_mark), "vport": vport,
                             "server": str(template.dest.address),
                             "dport": template.dest.port if vport else 0,
                             "pe_name": "", "pe_data": "", "switch": sw.dpid,
                             "template": True, "n_control": template.n_control})
            rows += self._ftp_expectation_rows(sw, now)
        return rows

    @staticmethod
    def _ftp_expectation_rows(sw, now):
        """Pending passive data connections, as IPVS lists them (client port 0, LISTEN)."""
        rows = []
        for (client, vip, vport), expected in sw.ftp_expect.items():
            if expected.expires_at > now:
                rows.append({"protocol": "TCP", "expire": int(expected.expires_at - now),
                             "state": "LISTEN", "client": pkt.ip_text(client), "cport": 0,
                             "vip": pkt.ip_text(vip), "vport": vport,
                             "server": str(expected.control.dest.address),
                             "dport": expected.port, "pe_name": "", "pe_data": "",
                             "switch": sw.dpid})
        return rows
