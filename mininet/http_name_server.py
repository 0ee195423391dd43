"""The real servers' HTTP server: ``GET /`` answers the server's name.

Run inside a lab host with the system interpreter::

    /usr/bin/python3 -u mininet/http_name_server.py NAME PORT [PORT...] [--ipv6]

It binds 0.0.0.0 (so it also answers on the VIP held on ``lo`` or ``vx0``
for direct routing and tunnelling), with ``--ipv6`` also ``::`` (a second
socket per port, IPv6 only, so IPv4 clients are seen exactly as without it),
prints ``ready`` once every port is bound, and logs one line per request.
``GET /info`` answers JSON ``{"server", "local", "peer"}``: ``local`` is the
address the request arrived for (the VIP for droute/tunnel, the real address
for NAT), ``peer`` the client, each ``addr:port`` (``[addr]:port`` for IPv6).
``GET /bytes/N`` answers N bytes (the counter tests download known sizes).
``GET /health`` answers the status code written in the file named by the
environment variable ``HEALTH_FILE`` (200 while there is none): the
health-check tests make one server unhealthy with it.
Standard library only, no lvs_app imports.
"""

import http.server
import json
import os
import socket
import sys
import threading

HEALTH_FILE = os.environ.get("HEALTH_FILE")


def health_status():
    try:
        with open(HEALTH_FILE) as handle:
            return int(handle.read().strip() or 200)
    except (TypeError, OSError, ValueError):
        return 200


def endpoint(address):
    """``addr:port`` of a socket address, ``[addr]:port`` for IPv6."""
    host, port = address[:2]
    return ("[%s]:%d" if ":" in host else "%s:%d") % (host, port)


def main(argv):
    args = argv[1:]
    ipv6 = "--ipv6" in args
    args = [a for a in args if a != "--ipv6"]
    name, ports = args[0], [int(p) for p in args[1:]]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            status = 200
            if self.path.startswith("/bytes/"):
                body = b"x" * int(self.path.split("/")[2])
            elif self.path.startswith("/health"):
                status = health_status()
                body = ("%s %d" % (name, status)).encode()
            elif self.path.startswith("/info"):
                local = self.connection.getsockname()
                body = json.dumps({"server": name, "local": endpoint(local),
                                   "peer": endpoint(self.client_address)}).encode()
            else:
                body = name.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt, *args):
            sys.stdout.write("%s %s\n" % (self.client_address[0], fmt % args))

    class Server(http.server.ThreadingHTTPServer):
        allow_reuse_address = True
        daemon_threads = True

    class Server6(Server):
        address_family = socket.AF_INET6

        def server_bind(self):
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            super().server_bind()

    servers = [Server(("0.0.0.0", port), Handler) for port in ports]
    if ipv6:
        servers += [Server6(("::", port), Handler) for port in ports]
    for server in servers[1:]:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    print("ready", name, *ports, flush=True)
    servers[0].serve_forever()


if __name__ == "__main__":
    main(sys.argv)
