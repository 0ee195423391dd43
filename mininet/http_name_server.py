"""The real servers' HTTP server: ``GET /`` answers the server's name.

Run inside a lab host with the system interpreter::

    /usr/bin/python3 -u mininet/http_name_server.py NAME PORT [PORT...]

It binds 0.0.0.0 (so it also answers on the VIP held on ``lo`` or ``vx0``
for direct routing and tunnelling), prints ``ready`` once every port is bound,
and logs one line per request.  ``GET /info`` answers JSON ``{"server",
"local", "peer"}``: ``local`` is the address the request arrived for (the
VIP for droute/tunnel, the real address for NAT), ``peer`` the client.
``GET /bytes/N`` answers N bytes (the counter tests download known sizes).
``GET /health`` answers the status code written in the file named by the
environment variable ``HEALTH_FILE`` (200 while there is none): the
health-check tests make one server unhealthy with it.
Standard library only, no lvs_app imports.
"""

import http.server
import json
import os
import sys
import threading

HEALTH_FILE = os.environ.get("HEALTH_FILE")


def health_status():
    try:
        with open(HEALTH_FILE) as handle:
            return int(handle.read().strip() or 200)
    except (TypeError, OSError, ValueError):
        return 200


def main(argv):
    name, ports = argv[1], [int(p) for p in argv[2:]]

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
                body = json.dumps({"server": name, "local": "%s:%d" % local[:2],
                                   "peer": "%s:%d" % self.client_address[:2]}).encode()
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

    servers = [Server(("0.0.0.0", port), Handler) for port in ports]
    for server in servers[1:]:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    print("ready", name, *ports, flush=True)
    servers[0].serve_forever()


if __name__ == "__main__":
    main(sys.argv)
