"""The real servers' UDP server: every datagram is answered with the server's name.

Run inside a lab host with the system interpreter::

    /usr/bin/python3 -u mininet/udp_name_server.py NAME PORT

The answer is one line ``NAME LENGTH SHA1`` (the datagram's length and the
first 12 hex digits of its SHA-1), followed by the datagram itself when it
starts with ``ECHO``, so a test sees that a datagram (fragmented or not)
arrived whole, and can make the answer large enough to be fragmented too.
It binds 0.0.0.0 and prints ``ready`` once bound.  Standard library only.
"""

import hashlib
import socket
import sys


def main(argv):
    name, port = argv[1], int(argv[2])
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("0.0.0.0", port))
    print("ready", name, port, flush=True)
    while True:
        data, peer = sock.recvfrom(65535)
        line = f"{name} {len(data)} {hashlib.sha1(data).hexdigest()[:12]}\n".encode()
        sock.sendto(line + (data if data.startswith(b"ECHO") else b""), peer)
        print(peer[0], peer[1], len(data), flush=True)


if __name__ == "__main__":
    main(sys.argv)
