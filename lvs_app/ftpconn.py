"""The director's side of the FTP helper (IPVS ip_vs_ftp) for NAT services.

A NAT connection to virtual port 21 is an FTP control connection.  Its
SERVICE and REVERSE connection flows keep their usual place, cookies and
timeouts, but send its packets to the controller; the controller forwards
each one itself after :class:`lvs_app.ftp.FtpControl` has read it and, for a
227 reply or once sequence numbers are shifted, rewritten its bytes.

:class:`FtpTracker` keeps which control connections are watched and which
passive data connections were announced, and answers with decisions: the
data :class:`~lvs_app.conntable.Connection` to enter (active ``PORT``/
``EPRT``, or a client SYN that a 227/229 announced), or the rewritten frame
to send.  The director enters connections and installs flows; this module
never calls back into it.
"""

import logging

from lvs_app import ftp
from lvs_app import packet as pkt
from lvs_app.conntable import Connection, FtpExpectation

LOG = logging.getLogger(__name__)


def _reverse_key(conn):
    _, client, cport, _, _ = conn.key
    return (int(conn.dest.address), conn.dport, client, cport)


class FtpTracker:
    """FTP control connections and their announced data connections, per switch."""

    @staticmethod
    def watch(sw, conn):
        """``conn`` is an FTP control connection: read its commands and replies."""
        conn.ftp = ftp.FtpControl()
        sw.ftp_controls[_reverse_key(conn)] = conn

    @staticmethod
    def is_control_reply(sw, p):
        return (p.ip_src, p.sport, p.ip_dst, p.dport) in sw.ftp_controls

    @staticmethod
    def from_client(conn, data, now):
        """A client->server packet of a control connection.

        Returns (frame to send, data connection to enter or None): a
        ``PORT``/``EPRT`` means the real server will connect from its control
        port - 1 (20) to client:port.  As in IPVS that connection exists before
        its first packet (state LISTEN), so its flows are in place for the
        server's SYN, which arrives on the REVERSE side and never reaches the
        controller.
        """
        data, port = conn.ftp.from_client(data)
        if port is None:
            return data, None
        addr, data_port = port
        if addr != conn.key[1]:
            # IPVS would let the real server connect to any host from VIP:20
            LOG.info("ftp: %s PORT names %s, not the client: ignored", pkt.ip_text(conn.key[1]),
                     pkt.ip_text(addr))
            return data, None
        _, client, _, vip, vport = conn.key
        if conn.dport < 2:
            return data, None
        return data, Connection(("tcp", client, data_port, vip, vport - 1), conn.service,
                                conn.dest, conn.server_id, conn.dport - 1, "LISTEN", False,
                                now + ftp.LISTEN_TIMEOUT, control=conn,
                                service_id=conn.service_id, nat=conn.nat, seen=now)

    @staticmethod
    def from_server(sw, p, data, now):
        """A server->client packet of a control connection (from REVERSE).

        Returns (control connection, frame to send) or (None, None) when the
        connection is gone; a 227/229 reply leaves an expectation behind.
        """
        conn = sw.ftp_controls.get((p.ip_src, p.sport, p.ip_dst, p.dport))
        if conn is None or conn.nodest or sw.conns.get(conn.key) is not conn:
            return None, None
        _, client, _, vip, _ = conn.key
        data, passive = conn.ftp.from_server(data, vip)
        if passive is not None:
            for key in [k for k, e in sw.ftp_expect.items() if e.expires_at < now]:
                del sw.ftp_expect[key]
            port = passive[1]
            sw.ftp_expect[(client, vip, port)] = FtpExpectation(
                conn, port, now + ftp.LISTEN_TIMEOUT)
        return conn, data

    @staticmethod
    def passive_data(sw, key, now, timeout):
        """A client SYN to a VIP:port that a 227/229 reply announced: the data
        connection (to the control connection's server, same port) to enter,
        or None when no such announcement is pending."""
        _, client, _, vip, vport = key
        expected = sw.ftp_expect.pop((client, vip, vport), None)
        if expected is None:
            return None
        ctl = expected.control
        if expected.expires_at < now or sw.conns.get(ctl.key) is not ctl or ctl.nodest:
            return None
        return Connection(key, ctl.service, ctl.dest, ctl.server_id, expected.port,
                          "SYN_RECV", True, now + timeout, control=ctl,
                          service_id=ctl.service_id, nat=ctl.nat, seen=now)

    @staticmethod
    def controls_data(sw, conn):
        return any(c.control is conn for c in sw.conns.values())

    @staticmethod
    def forget(sw, conn):
        """A control connection ended: its helper state and announcements go."""
        rkey = _reverse_key(conn)
        if sw.ftp_controls.get(rkey) is conn:
            del sw.ftp_controls[rkey]
        for key in [k for k, e in sw.ftp_expect.items() if e.control is conn]:
            del sw.ftp_expect[key]

    @staticmethod
    def prune(sw):
        """After a table change: forget the helper state of connections that are gone."""
        for rkey in [k for k, c in sw.ftp_controls.items() if sw.conns.get(c.key) is not c]:
            del sw.ftp_controls[rkey]
        for key in [k for k, e in sw.ftp_expect.items()
                    if sw.conns.get(e.control.key) is not e.control]:
            del sw.ftp_expect[key]
