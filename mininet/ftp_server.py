"""The real servers' FTP server (pyftpdlib): it names its server everywhere.

Run inside a lab host with the venv's interpreter (pyftpdlib is pinned in
requirements.txt)::

    .venv/bin/python -u mininet/ftp_server.py NAME ROOT [--port 21]
        [--passive 30000-30100] [--data-port 20] [--ipv6]

* The greeting is ``220 NAME``, so a client knows which real server holds
  its control connection.
* Anonymous login, read and write, home ``ROOT`` (created): ``whoami.txt``
  holds NAME, and an empty marker file ``served-by-NAME`` makes every
  listing name its server too.  Uploads land in ROOT.
* It listens on 0.0.0.0, so it answers on the VIP held on ``lo`` (direct
  routing) or ``vx0`` (tunnel) as well as on its own address (NAT).  With
  ``--ipv6`` it also listens on ``::`` (a second, IPv6-only socket in the
  same event loop; IPv4 sessions are exactly as without it).  Over IPv6,
  passive mode is EPSV (``229 (|||port|)``) and active mode EPRT
  (``|2|addr|port|``), as RFC 2428 has it.
* Passive mode (PASV/EPSV) listens on a port of ``--passive`` and announces
  the address the control connection came in on: the VIP for direct routing
  and tunnelling, the server's own address for NAT.  Nothing FTP-specific is
  configured for NAT (no masquerade address).
* Active mode (PORT/EPRT) connects to the client from port ``--data-port``
  (20, like vsftpd's ``connect_from_port_20``) of that same address.
  ``SITE DATAPORT 0`` switches the session to an ephemeral source port (what
  pyftpdlib does by default), ``SITE DATAPORT 20`` back.
* A data connection must come from the control connection's client address
  (pyftpdlib's default), otherwise ``425 Rejected data connection``.

Prints ``ready NAME PORT`` once the control port is bound; logs every command.
No lvs_app imports.
"""

import argparse
import logging
import socket
import sys
from pathlib import Path

from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler
from pyftpdlib.handlers.ftp.dispatchers import ActiveDTP
from pyftpdlib.servers import FTPServer


def port_range(text):
    lo, _, hi = text.partition("-")
    lo, hi = int(lo), int(hi or lo)
    if not 0 < lo <= hi < 65536:
        raise argparse.ArgumentTypeError(f"bad port range {text!r}")
    return range(lo, hi + 1)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name")
    parser.add_argument("root")
    parser.add_argument("--port", type=int, default=21)
    parser.add_argument("--passive", type=port_range, default=port_range("30000-30100"))
    parser.add_argument("--data-port", type=int, default=20,
                        help="source port of active data connections (0: ephemeral)")
    parser.add_argument("--ipv6", action="store_true",
                        help="listen on :: (IPv6) too")
    return parser.parse_args(argv)


class FixedPortActiveDTP(ActiveDTP):
    """An active data connection from the session's data port (default 20)."""

    def connect_af_unspecified(self, addr, source_address=None):
        port = getattr(self.cmd_channel, "data_port", 0)
        if source_address and port:
            source_address = (source_address[0], port)
        return super().connect_af_unspecified(addr, source_address)

    def bind(self, addr):
        # port 20 is reused by every active transfer (each to another client
        # port); the last one may still be in TIME_WAIT
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        return super().bind(addr)


def make_handler(name, data_port, passive):
    class Handler(FTPHandler):
        banner = name
        passive_ports = passive
        active_dtp = FixedPortActiveDTP
        proto_cmds = dict(FTPHandler.proto_cmds)
        proto_cmds["SITE DATAPORT"] = dict(
            perm=None, auth=False, arg=True,
            help="Syntax: SITE <SP> DATAPORT <SP> 0|20 (active data source port).")

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.data_port = data_port

        def ftp_SITE_DATAPORT(self, line):
            try:
                port = int(line.strip())
                if not 0 <= port < 65536:
                    raise ValueError(line)
            except ValueError:
                self.respond("501 Syntax: SITE DATAPORT <port>.")
                return
            self.data_port = port
            self.respond(f"200 Active data connections from port {port or 'ephemeral'}.")

    return Handler


def main(argv):
    args = parse_args(argv)
    root = Path(args.root)
    root.mkdir(parents=True, exist_ok=True)
    (root / "whoami.txt").write_text(args.name)
    (root / f"served-by-{args.name}").write_text("")
    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format=f"%(asctime)s {args.name} %(message)s")
    authorizer = DummyAuthorizer()
    authorizer.add_anonymous(str(root), perm="elradfmwMT")
    handler = make_handler(args.name, args.data_port, args.passive)
    handler.authorizer = authorizer
    server = FTPServer(("0.0.0.0", args.port), handler)
    if args.ipv6:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(("::", args.port))
        # the same IOLoop (IOLoop.instance()): server.serve_forever() serves both
        FTPServer(sock, handler)
    print("ready", args.name, args.port, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])
