"""The real servers' UDP server: every datagram is answered with the server's name.

Run inside a lab host with the system interpreter::

    /usr/bin/python3 -u mininet/udp_name_server.py NAME PORT [--ipv6]

The answer is one line ``NAME LENGTH SHA1`` (the datagram's length and the
first 12 hex digits of its SHA-1), followed by the datagram itself when it
starts with ``ECHO``, so a test sees that a datagram (fragmented or not)
arrived whole, and can make the answer large enough to be fragmented too.
It binds 0.0.0.0, with ``--ipv6`` also ``::`` (a second socket, IPv6
only), and prints ``ready`` once bound.  Standard library only.
"""

import hashlib
import selectors
import socket
import sys


def bound(family, port):
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(("::", port))
    else:
        sock.bind(("0.0.0.0", port))
    return sock


def main(argv):
    args = [a for a in argv[1:] if a != "--ipv6"]
    name, port = args[0], int(args[1])
    socks = [bound(socket.AF_INET, port)]
    if "--ipv6" in argv[1:]:
        socks.append(bound(socket.AF_INET6, port))
    selector = selectors.DefaultSelector()
    for sock in socks:
        selector.register(sock, selectors.EVENT_READ)
    print("ready", name, port, flush=True)
    while True:
        for key, _ in selector.select():
            sock = key.fileobj
            data, peer = sock.recvfrom(65535)
            line = f"{name} {len(data)} {hashlib.sha1(data).hexdigest()[:12]}\n".encode()
            sock.sendto(line + (data if data.startswith(b"ECHO") else b""), peer)
            print(peer[0], peer[1], len(data), flush=True)


if __name__ == "__main__":
    main(sys.argv)
