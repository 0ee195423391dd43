"""Small clients for the end-to-end tests, run inside a lab host.

    /usr/bin/python3 mininet/probe_client.py udp HOST PORT --sport S [--size N] [--echo]
    /usr/bin/python3 mininet/probe_client.py tcp-idle HOST PORT --sport S --idle SECONDS
    /usr/bin/python3 mininet/probe_client.py syn HOST PORT --sport S
    /usr/bin/python3 mininet/probe_client.py flood HOST PORT --count N [--spoof 10.0.0.128/25]
    /usr/bin/python3 mininet/probe_client.py requests HOST PORT --duration S --interval I

``udp`` sends one datagram of ``--size`` bytes (a size above the MTU is
fragmented by the sending kernel) from source port S and prints the first
line of the answer (with ``--echo`` it also checks that the answer carries
the datagram back whole, and prints ``echo-ok``); ``tcp-idle`` connects from
port S, stays idle ``--idle`` seconds, then sends an HTTP request and prints
the answer's body; ``syn`` sends one bare TCP SYN from port S with a raw
socket (no handshake follows: a half-open connection); ``flood`` sends
``--count`` such SYNs as fast as it can, each from a random source address
of ``--spoof`` and a random port (a SYN flood, for the lab only), and prints
how many it sent per second; ``requests`` opens a new connection every
``--interval`` seconds for ``--duration`` seconds (each in its own thread,
so a request hanging on a dead server does not delay the next), each with
its own ``--timeout``, from client ports ``--sport`` on, one each, and prints
one line per request: the Unix time it started, its client port and the
body that answered, or ``ERR`` and why (a
health-check test reads which requests failed, when, and by the port which
server the director had sent them to).  HOST may be an IPv6 address (with or without
brackets: every mode then speaks IPv6; ``flood``'s ``--spoof`` must be an
IPv6 network then, default ``fd00::8000:0:0:0/65``, the upper half of the
lab's /64, where no lab host lives).  Exit 1 with a
one-line reason on a timeout or an error.  Standard library only.
"""

import argparse
import hashlib
import ipaddress
import random
import socket
import struct
import sys
import time

SPOOF_DEFAULT = {socket.AF_INET: "10.0.0.128/25", socket.AF_INET6: "fd00::8000:0:0:0/65"}


def family_of(host):
    """AF_INET6 for an IPv6 address (it has a ':'), else AF_INET."""
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _any(family):
    return "::" if family == socket.AF_INET6 else "0.0.0.0"


def _host_header(host):
    return f"[{host}]" if ":" in host else host


def udp(args):
    family = family_of(args.host)
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((_any(family), args.sport))
    sock.settimeout(args.timeout)
    payload = (b"ECHO" if args.echo else b"DATA") + bytes(
        random.Random(args.sport).randrange(256) for _ in range(max(0, args.size - 4)))
    sock.sendto(payload, (args.host, args.port))
    answer, _ = sock.recvfrom(65535)
    line, _, rest = answer.partition(b"\n")
    name, length, digest = line.decode().split()
    if int(length) != len(payload) or digest != hashlib.sha1(payload).hexdigest()[:12]:
        raise SystemExit(f"the server got {length} bytes {digest}, not {len(payload)}")
    if args.echo and rest != payload:
        raise SystemExit(f"the echo came back with {len(rest)} bytes, not {len(payload)}")
    print(name, "echo-ok" if args.echo else "")


def tcp_idle(args):
    family = family_of(args.host)
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((_any(family), args.sport))
    sock.settimeout(args.timeout)
    sock.connect((args.host, args.port))
    time.sleep(args.idle)
    data = _get(sock, args.host)
    sock.close()
    print(data.partition(b"\r\n\r\n")[2].decode())


def _get(sock, host):
    """``GET /`` on a connected socket; the whole answer, once the server closes."""
    sock.sendall(f"GET / HTTP/1.0\r\nHost: {_host_header(host)}\r\n\r\n".encode())
    data = b""
    while True:
        chunk = sock.recv(65535)
        if not chunk:
            return data
        data += chunk


def _checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _syn_segment(src, dst, sport, dport):
    header = struct.pack("!HHIIBBHHH", sport, dport, random.getrandbits(32), 0,
                         5 << 4, 0x02, 64240, 0, 0)
    if ":" in dst:          # the IPv6 pseudo-header (RFC 8200 8.1)
        pseudo = (socket.inet_pton(socket.AF_INET6, src)
                  + socket.inet_pton(socket.AF_INET6, dst)
                  + struct.pack("!I3xB", len(header), socket.IPPROTO_TCP))
    else:
        pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack(
            "!BBH", 0, socket.IPPROTO_TCP, len(header))
    return header[:16] + struct.pack("!H", _checksum(pseudo + header)) + header[18:]


def syn(args):
    sock = socket.socket(family_of(args.host), socket.SOCK_RAW, socket.IPPROTO_TCP)
    sock.connect((args.host, args.port))
    sock.send(_syn_segment(sock.getsockname()[0], args.host, args.sport, args.port))
    print("sent")


def flood(args):
    family = family_of(args.host)
    net = ipaddress.ip_network(args.spoof or SPOOF_DEFAULT[family])
    if (net.version == 6) != (family == socket.AF_INET6):
        raise ValueError(f"--spoof {net} and the host {args.host} are not of one "
                         "address family")
    size = net.num_addresses
    # IPPROTO_RAW: we write the IP header (IP_HDRINCL; for IPv6 implied too)
    sock = socket.socket(family, socket.SOCK_RAW, socket.IPPROTO_RAW)
    dst = socket.inet_pton(family, args.host)
    start = time.monotonic()
    for i in range(args.count):
        source = net.network_address + random.randrange(size)
        src = str(source)
        tcp = _syn_segment(src, args.host, random.randrange(1024, 65536), args.port)
        if family == socket.AF_INET6:
            ip = struct.pack("!IHBB16s16s", 6 << 28, len(tcp), socket.IPPROTO_TCP, 64,
                             source.packed, dst)
        else:
            ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), i & 0xFFFF, 0, 64,
                             socket.IPPROTO_TCP, 0, source.packed, dst)
        sock.sendto(ip + tcp, (args.host, 0))
    took = time.monotonic() - start
    print(f"{args.count} {args.count / took:.0f}")


def _one_request(host, port, timeout, sport=0):
    """GET / from ``host``, from client port ``sport`` (0: any)."""
    family = family_of(host)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.bind((_any(family), sport))
        sock.connect((host, port))
        data = _get(sock, host)
    finally:
        sock.close()
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/"):
        raise ValueError("no HTTP answer")
    return body.decode(errors="replace").strip() or "(empty)"


def requests(args):
    import threading
    lock = threading.Lock()

    def one(started, sport):
        try:
            answer = _one_request(args.host, args.port, args.timeout, sport)
        except (OSError, ValueError) as err:
            answer = f"ERR {type(err).__name__}"
        with lock:
            print(f"{started:.3f} {sport} {answer}", flush=True)

    # each request in a thread of its own, so that one hanging on a dead
    # server does not hold the next ones back
    threads = []
    sport = args.sport            # each request from the next client port
    end = time.time() + args.duration
    next_start = time.time()
    while time.time() < end:
        thread = threading.Thread(target=one, args=(time.time(), sport))
        sport += 1
        thread.start()
        threads.append(thread)
        next_start += args.interval
        time.sleep(max(0.0, next_start - time.time()))
    for thread in threads:
        thread.join()


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=("udp", "tcp-idle", "syn", "flood", "requests"))
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("--sport", type=int, default=40000)
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--spoof", default=None,
                    help="source network of flood's SYNs (default 10.0.0.128/25, "
                         "for an IPv6 host fd00::8000:0:0:0/65)")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--echo", action="store_true")
    ap.add_argument("--idle", type=float, default=0.0)
    ap.add_argument("--timeout", type=float, default=5.0)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--interval", type=float, default=0.05)
    args = ap.parse_args(argv[1:])
    if args.host.startswith("[") and args.host.endswith("]"):
        args.host = args.host[1:-1]
    try:
        {"udp": udp, "tcp-idle": tcp_idle, "syn": syn, "flood": flood,
         "requests": requests}[args.mode](args)
    except (OSError, ValueError) as err:
        raise SystemExit(f"{args.mode} {args.host}:{args.port}: {err}") from None


if __name__ == "__main__":
    main(sys.argv)
