"""A load client that opens every TCP connection from a new source address.

    /usr/bin/python3 mininet/pool_client.py HOST PORT --first 10.101.0.1 --sources 4096 \
        [--concurrency 8] [--duration 5] [--timeout 5] [--repeat]

Run inside a lab host whose namespace treats the whole pool as local (an
"AnyIP" route, ``ip route add local 10.101.0.0/16 dev lo``; see
``lvslab_load.add_client_pool``).  Each connection binds the next address of
``--sources`` addresses from ``--first`` (never one twice; with
``--repeat`` it goes round them again, so ``--sources 1`` is one client
that opens one connection after another), sends
``GET / HTTP/1.0`` and reads the answer until the server closes: one new
connection per request, each from a client the director has never seen.
``--concurrency`` connections are kept open at once (one thread, epoll);
it stops after ``--duration`` seconds or when the pool is used up.
``--concurrency 1`` measures connect times at rest: one connection at a
time, nothing queued in front of it.

Prints one JSON object: ``connections`` (answered ``200``), ``errors``,
``elapsed`` (seconds), ``sources_used``, ``exhausted`` (the pool ran out),
``connect_ms`` and ``total_ms``: the 1st..100th percentiles (101 values,
index = percent) of the connect time (``connect()`` to the socket writable)
and of the whole request (``connect()`` to the server's close).  Standard
library only: this is the same interpreter the lab's servers run with.
"""

import argparse
import errno
import ipaddress
import json
import selectors
import socket
import time

REQUEST = b"GET / HTTP/1.0\r\nUser-Agent: pool_client\r\n\r\n"


def percentiles(values):
    """[p0, p1, ..., p100] of ``values`` in milliseconds (nearest rank), [] if none."""
    if not values:
        return []
    values = sorted(values)
    n = len(values)
    return [round(values[min(n - 1, (n * p) // 100)] * 1000, 3) for p in range(101)]


class Load:
    def __init__(self, args):
        self.target = (args.host, args.port)
        self.first = int(ipaddress.IPv4Address(args.first))
        self.sources = args.sources
        self.repeat = args.repeat
        self.used = 0
        self.timeout = args.timeout
        self.sel = selectors.DefaultSelector()
        self.conns = {}            # socket -> [t_start, t_connected, first bytes]
        self.ok = self.errors = 0
        self.connect_times, self.total_times = [], []

    def open(self):
        if self.used >= self.sources and not self.repeat:
            return False
        source = str(ipaddress.IPv4Address(self.first + self.used % self.sources))
        self.used += 1
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.bind((source, 0))
            t0 = time.monotonic()
            rc = sock.connect_ex(self.target)
        except OSError:
            sock.close()
            self.errors += 1
            return True
        if rc not in (0, errno.EINPROGRESS):
            sock.close()
            self.errors += 1
            return True
        self.conns[sock] = [t0, None, b""]
        self.sel.register(sock, selectors.EVENT_WRITE)
        return True

    def finish(self, sock, ok):
        state = self.conns.pop(sock)
        self.sel.unregister(sock)
        sock.close()
        if ok:
            self.ok += 1
            self.connect_times.append(state[1] - state[0])
            self.total_times.append(time.monotonic() - state[0])
        else:
            self.errors += 1

    def event(self, sock, mask):
        state = self.conns[sock]
        if state[1] is None:                           # connect() finished
            if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                self.finish(sock, False)
                return
            state[1] = time.monotonic()
            try:
                sock.send(REQUEST)
            except OSError:
                self.finish(sock, False)
                return
            self.sel.modify(sock, selectors.EVENT_READ)
            return
        try:
            data = sock.recv(65536)
        except OSError:
            self.finish(sock, False)
            return
        if data:
            if len(state[2]) < 16:
                state[2] += data
            return
        status = state[2].split(b" ", 2)[1:2]
        self.finish(sock, state[2].startswith(b"HTTP/1.") and status == [b"200"])

    def run(self, concurrency, duration):
        start = time.monotonic()
        end = start + duration
        exhausted = False
        while True:
            now = time.monotonic()
            while now < end and len(self.conns) < concurrency and not exhausted:
                exhausted = not self.open()
            if not self.conns:
                break
            for key, mask in self.sel.select(timeout=0.2):
                self.event(key.fileobj, mask)
            now = time.monotonic()
            for sock, state in list(self.conns.items()):
                if now - state[0] > self.timeout:
                    self.finish(sock, False)
        return {"connections": self.ok, "errors": self.errors,
                "elapsed": round(time.monotonic() - start, 3), "sources_used": self.used,
                "exhausted": exhausted,
                "connect_ms": percentiles(self.connect_times),
                "total_ms": percentiles(self.total_times)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("--first", required=True, help="the pool's first source address")
    ap.add_argument("--sources", type=int, required=True, help="addresses in the pool")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--timeout", type=float, default=5.0, help="seconds per connection")
    ap.add_argument("--repeat", action="store_true",
                    help="use the addresses again, in turn, instead of stopping")
    args = ap.parse_args()
    print(json.dumps(Load(args).run(args.concurrency, args.duration)), flush=True)


if __name__ == "__main__":
    main()
