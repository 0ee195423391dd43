"""Fuzzing REST (through webob) and lvsadm (its parser and client, answered in-process).

Fixed seeds and case counts, so a run is repeatable and takes a few seconds.
After every request: no 5xx, no traceback text anywhere; a refused request
(4xx, or lvsadm's non-zero exit) leaves ``GET /ipvs`` and ``GET /ipvs/rules``
as they were; and the rules file always holds the table, in a form that loads.
"""

import io
import json
import random
import re
import sys

import pytest
import webob

from lvs_app import atomicfile, cli, model
from lvs_app.access import Access
from lvs_app.api import EMPTY_RULES, DirectorAPI
from lvs_app.manager import Manager
from lvs_app.rest import ROUTES, RestApp

TOKEN = "fuzz-token-0123456789"
REST_CASES = 2500
LVSADM_CASES = 1500

SEED_RULES = """\
--add-mark 7 --match tcp:10.0.0.200:80 --mark-name web
-A -t 10.0.0.100:80 -s wrr
-a -t 10.0.0.100:80 -r 10.0.0.11:8080 -m -w 3
-a -t 10.0.0.100:80 -r 10.0.0.12:80 -g -w 1
-A -u 10.0.0.100:53 -s rr -o
-a -u 10.0.0.100:53 -r 10.0.0.13:53 -m -w 1
-A -t [2001:db8::1]:443 -s sh -p 600 -b sh-port
-A -f 7 -s lc -p 60
"""

# -- vocabulary: valid values, near misses and junk --------------------------------------

ADDRESSES = ["10.0.0.100", "10.0.0.11", "10.0.0.14", "2001:db8::1", "[2001:db8::1]", "0.0.0.0",
             "::", "1.2.3", "300.1.1.1", "x", "", " 10.0.0.1", "10.0.0.1\n", "١٠.0.0.1",
             "10.0.0.0/24", "fe80::1%eth0"]
NUMBERS = [0, 1, 3, 53, 80, 443, 600, 65535, 65536, -1, 2 ** 31, 2 ** 64, 10 ** 30, 0.5,
           float("inf"), True, False, None, "80", "x", "", [80], {"n": 1}]
WORDS = list(model.SCHEDULERS) + ["pcc", "xyz", "", "RR", "droute", "masq", "tunnel", "route",
                                  "vxlan", "gre", "sh-port", "flag-1", "mh-fallback", "tcp",
                                  "udp", "fwmark", "sctp", "255.255.255.0", "64", "/24",
                                  "a\nb", "\x00", "\ud800", "é", "'\"", "#", "-C", "a" * 300]
FIELDS = ["protocol", "address", "port", "fwmark", "af", "scheduler", "persistent", "timeout",
          "netmask", "sched_flags", "ops", "method", "weight", "u_threshold", "l_threshold",
          "tun_type", "mark", "name", "matches", "tcp", "tcpfin", "udp",
          "expire_quiescent_template", "expire_nodest_conn", "pe", "bogus", ""]
SIDS = ["tcp-10.0.0.100-80", "udp-10.0.0.100-53", "fwmark-7", "fwmark-7-6", "tcp-2001:db8::1-443",
        "tcp-10.0.0.100-81", "tcp-10.0.0.100", "http-80", "tcp-10.0.0.100-99999", "%ff", "%00",
        "%2e%2e", "tcp-10.0.0.100-80%2f", "a" * 300, "tcp-%d9%a1-80", "tcp--80", "fwmark-x",
        "fwmark-0", "fwmark-99999999999", "tcp-10.0.0.100-8%30", "%c3%28"]
RIDS = ["10.0.0.11-8080", "10.0.0.12-80", "10.0.0.11", "10.0.0.99-80", "2001:db8::2-80", "x-y",
        "10.0.0.11-", "-80", "%ff%fe", "10.0.0.11-80-80", "10.0.0.11-%d9%a1"]
MARKS = ["7", "8", "0", "-1", "x", "4294967296", "%ff", "7.0", "99999999999999999999"]
PATHS = ["/ipvs", "/ipvs/services", "/ipvs/services/{sid}", "/ipvs/services/{sid}/servers",
         "/ipvs/services/{sid}/servers/{rid}", "/ipvs/services/{sid}/zero", "/ipvs/zero",
         "/ipvs/timeouts", "/ipvs/connections", "/ipvs/rules", "/ipvs/marks",
         "/ipvs/marks/{mark}", "/ipvs/settings", "/ipvs/what", "/ipvs//services",
         "/ipvs/services/", "/ipvs/%ff", "/ipvs/services/{sid}/servers/{rid}/x", "/ipvs/"]
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE", "FOO"]
CONTENT_TYPES = ["application/json", "application/json; charset=utf-8", "text/plain",
                 "text/plain; charset=utf-8", "application/x-www-form-urlencoded",
                 "multipart/form-data; boundary=x", "", None, "application/xml", ";;;", "\x00"]
HOSTS = ["127.0.0.1:8080", "localhost", "[::1]:8080", "127.1.2.3", "evil.example", "", "::1",
         "127.0.0.1:x", "localhost:8080, evil.example"]

RULE_WORDS = ["-A", "-E", "-D", "-C", "-a", "-e", "-d", "-Z", "--set", "-R", "-L", "-S",
              "--add-mark", "--delete-mark", "-t", "-u", "-f", "-s", "-p", "-M", "-r", "-R",
              "-g", "-m", "-i", "-w", "-x", "-y", "-o", "-b", "--tun-type", "--match",
              "--mark-name", "--pe", "--sctp-service", "--start-daemon", "-n", "--",
              "10.0.0.100:80", "10.0.0.100:53", "10.0.0.100:0", "[2001:db8::1]:443",
              "10.0.0.11:8080", "10.0.0.15", "10.0.0.16:80", "7", "8", "rr", "wrr", "pcc",
              "sh", "600", "0", "70000", "-5", "255.255.255.0", "vxlan", "sh-port",
              "tcp:10.0.0.201:80", "udp:10.0.0.201:1-100", "'a b'", '"x', "#", "ipvsadm",
              "lvsadm", "\\", "é", "x" * 50]


def pick(rng, items):
    return items[rng.randrange(len(items))]


def json_value(rng, depth=0):
    roll = rng.random()
    if depth > 3 or roll < 0.55:
        return pick(rng, NUMBERS + ADDRESSES + WORDS)
    if roll < 0.75:
        return [json_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {pick(rng, FIELDS): json_value(rng, depth + 1) for _ in range(rng.randrange(5))}


def near_valid(rng, path):
    """A body shaped like the resource's, with some values drawn from the junk."""
    good = {
        "/ipvs/services": {"protocol": pick(rng, ["tcp", "udp", "fwmark"]),
                           "address": pick(rng, ADDRESSES[:4]), "port": pick(rng, [80, 81, 0, 443]),
                           "fwmark": pick(rng, [7, 8]), "scheduler": pick(rng, model.SCHEDULERS),
                           "persistent": pick(rng, [True, False]), "timeout": 300},
        "servers": {"address": pick(rng, ["10.0.0.14", "10.0.0.15", "10.0.0.11"]),
                    "port": pick(rng, [80, 8080, None]),
                    "method": pick(rng, ["droute", "masq", "tunnel"]), "weight": rng.randrange(5)},
        "/ipvs/marks": {"mark": pick(rng, [7, 8, 9]), "name": pick(rng, ["web", "é", ""]),
                        "matches": [f"tcp:10.0.0.{rng.randrange(200, 203)}:{rng.randrange(1, 4)}"]},
        "/ipvs/timeouts": {"tcp": rng.randrange(1000), "tcpfin": 0, "udp": 30},
        "/ipvs/settings": {"expire_nodest_conn": pick(rng, [True, False])},
    }
    key = "servers" if "/servers" in path else path if path in good else None
    body = dict(good.get(key) or good["/ipvs/services"])
    if path.startswith("/ipvs/services/") and "/servers" not in path:   # PATCH a service
        body = {k: body[k] for k in ("scheduler", "persistent", "timeout")}
    for _ in range(rng.randrange(3)):
        body[pick(rng, list(body) + FIELDS)] = json_value(rng)
    return json.dumps(body).encode("utf-8", "surrogatepass")


def json_body(rng):
    roll = rng.random()
    if roll < 0.75:
        return json.dumps({pick(rng, FIELDS): json_value(rng) for _ in range(rng.randrange(7))}
                          ).encode("utf-8", "surrogatepass")
    if roll < 0.85:
        return json.dumps(json_value(rng)).encode("utf-8", "surrogatepass")
    if roll < 0.9:
        depth = pick(rng, [31, 32, 33, 999, 5000])
        return b"[" * depth + b"]" * depth
    return bytes(rng.randrange(256) for _ in range(rng.randrange(40)))


def rules_text(rng):
    lines = []
    for _ in range(rng.randrange(5)):
        lines.append(" ".join(pick(rng, RULE_WORDS) for _ in range(rng.randrange(9))))
    text = "\n".join(lines) + pick(rng, ["\n", "", "\r\n", "\x00"])
    return text


def rest_request(rng):
    """(method, path, headers, body) -- mostly well formed, so the fuzz reaches the model."""
    path = pick(rng, PATHS).format(sid=pick(rng, SIDS), rid=pick(rng, RIDS), mark=pick(rng, MARKS))
    allowed = [m for pattern, methods in ROUTES if re.fullmatch(pattern, path) for m in methods]
    method = pick(rng, allowed) if allowed and rng.random() < 0.8 else pick(rng, METHODS)
    headers = {"Host": "127.0.0.1:8080" if rng.random() < 0.9 else pick(rng, HOSTS)}
    if rng.random() < 0.92:
        headers["Authorization"] = f"Bearer {TOKEN}"
    elif rng.random() < 0.5:
        headers["Authorization"] = pick(rng, ["Bearer x", f"Basic {TOKEN}", "Bearer", f"{TOKEN}"])
    if rng.random() < 0.03:
        headers["Origin"] = pick(rng, ["http://evil.example", "null"])
    body = b""
    if method not in ("GET", "HEAD") or rng.random() < 0.05:
        if path == "/ipvs/rules":
            body = rules_text(rng).encode("utf-8", "surrogatepass")
        else:
            body = near_valid(rng, path) if rng.random() < 0.5 else json_body(rng)
        if rng.random() < 0.3:
            body = b""
    wanted = "text/plain" if path == "/ipvs/rules" else "application/json"
    ctype = wanted if rng.random() < 0.8 else pick(rng, CONTENT_TYPES)
    if ctype is not None:
        headers["Content-Type"] = ctype
    return method, path, headers, body


# -- the table under test ----------------------------------------------------------------

class Table:
    """A director with a rules file, its REST app (with a token) and trusted reads."""

    def __init__(self, tmp_path, monkeypatch):
        # durability is tested elsewhere; here fsync would only cost time
        monkeypatch.setattr(atomicfile.os, "fsync", lambda fd: None)
        self.rules_path = str(tmp_path / "lvs.rules")
        self.manager = Manager(rules_path=self.rules_path, clock=lambda: 1000.0)
        self.app = RestApp(self.manager.api, Access(TOKEN, loopback=True))
        self.reseed()

    def call(self, method, path, headers, body=b""):
        req = webob.Request.blank(path, method=method)
        req.environ["HTTP_HOST"] = "127.0.0.1:8080"
        for name, value in headers.items():
            if name == "Content-Type":
                req.environ["CONTENT_TYPE"] = value
            else:
                req.environ["HTTP_" + name.upper().replace("-", "_")] = value
        if body:
            req.body = body
        return req.get_response(self.app)

    def trusted(self, method, path, body=None, ctype=None):
        headers = {"Authorization": f"Bearer {TOKEN}"}
        if ctype:
            headers["Content-Type"] = ctype
        resp = self.call(method, path, headers, body or b"")
        assert resp.status_int < 300, resp.text
        return resp.text

    def state(self):
        return (self.trusted("GET", "/ipvs"), self.trusted("GET", "/ipvs/rules"),
                self.trusted("GET", "/ipvs/settings"))

    def reseed(self):
        self.trusted("PUT", "/ipvs/rules", SEED_RULES.encode(), "text/plain")

    def check_rules_file(self):
        with open(self.rules_path, encoding="utf-8") as handle:
            on_disk = handle.read()
        assert on_disk == (self.manager.api.rules_text() or EMPTY_RULES)


def check_answer(method, resp, before, table):
    text = resp.body.decode("utf-8", "replace")
    assert resp.status_int < 500, text
    assert "Traceback" not in text and 'File "' not in text
    if resp.status_int >= 400 and method != "HEAD":    # a HEAD answer has no body
        doc = json.loads(text)
        assert set(doc) == {"error"} and doc["error"]["status"] == resp.status_int
        assert isinstance(doc["error"]["message"], str) and doc["error"]["message"]
    if resp.status_int >= 400:
        assert table.state() == before, "a refused request changed the table"


@pytest.fixture
def table(tmp_path, monkeypatch):
    return Table(tmp_path, monkeypatch)


def test_fuzz_rest(table):
    rng = random.Random(20240610)
    statuses = {}
    for case in range(REST_CASES):
        if case % 100 == 0:
            table.reseed()
        method, path, headers, body = rest_request(rng)
        before = table.state()
        resp = table.call(method, path, headers, body)
        try:
            check_answer(method, resp, before, table)
        except Exception:
            print(f"case {case}: {method} {path} {headers} {body[:200]!r}", file=sys.stderr)
            raise
        statuses[resp.status_int] = statuses.get(resp.status_int, 0) + 1
        table.check_rules_file()
    # the fuzz reached every kind of answer, not only the first refusal
    assert {200, 201, 204, 400, 401, 404, 405, 409, 415, 421} <= set(statuses), statuses
    reloaded = DirectorAPI(rules_path=table.rules_path)
    reloaded.load_rules()
    assert reloaded.rules_text() == table.manager.api.rules_text()


# -- lvsadm --------------------------------------------------------------------------------

LVSADM_WORDS = RULE_WORDS + ["-L", "-l", "-c", "--stats", "--rate", "--exact", "--thresholds",
                             "--persistent-conn", "--timeout", "--list-marks", "--sort",
                             "--nosort", "--tun-info", "-h", "--version", "-X", "--server",
                             "--token-file", "--server=http://127.0.0.1:8080", "-K"]
SERVERS = ["http://127.0.0.1:8080", "http://localhost:1", "https://[::1]:8443/",
           "http://evil.example:8080", "http://[::1", "ftp://x", ":80", "http://x:abc", "",
           "http://a b", "http://127.0.0.1:8080/?x"]


def lvsadm_command(rng):
    """An ipvsadm command line as people write them, valid or nearly."""
    svc = [pick(rng, ["-t", "-t", "-u", "-f"]),
           pick(rng, ["10.0.0.100:80", "10.0.0.100:53", "10.0.0.100:81", "[2001:db8::1]:443",
                      "7", "8", "10.0.0.100"])]
    real = ["-r", pick(rng, ["10.0.0.11:8080", "10.0.0.12:80", "10.0.0.14", "10.0.0.15:80"])]
    method = [pick(rng, ["-g", "-m", "-i", "-m"])]
    weight = ["-w", pick(rng, ["0", "1", "3", "65535", "65536", "-1"])]
    sched = ["-s", pick(rng, ["rr", "wlc", "sh", "pcc", "xyz"])]
    persist = pick(rng, [[], ["-p"], ["-p", "600"], ["-p", "60", "-M", "255.255.255.0"]])
    return pick(rng, [
        ["-A", *svc, *sched, *persist], ["-E", *svc, *sched, *persist],
        ["-a", *svc, *real, *method, *weight], ["-e", *svc, *real, *method, *weight],
        ["-d", *svc, *real], ["-D", *svc], ["-C"], ["-Z"], ["-Z", *svc],
        ["-L", "-n"], ["-L", "-n", *svc], ["-L", "-n", "--stats"], ["-L", "-c", "-n"],
        ["-L", "--timeout"], ["--set", "60", "0", pick(rng, ["30", "-1", "x"])], ["-R"],
        ["-S", "-n"], ["--list-marks"], ["--delete-mark", pick(rng, ["7", "8", "x"])],
        ["--add-mark", pick(rng, ["8", "9", "0"]), "--match",
         pick(rng, ["tcp:10.0.0.210:80", "udp:10.0.0.200:80", "icmp:1.2.3.4"])],
    ])


def lvsadm_argv(rng, token_files):
    argv = lvsadm_command(rng)
    for _ in range(rng.randrange(4) if rng.random() < 0.4 else 0):     # mutations
        at = rng.randrange(len(argv) + 1)
        roll = rng.random()
        if roll < 0.4:
            argv.insert(at, pick(rng, LVSADM_WORDS))
        elif roll < 0.7 and at < len(argv):
            argv[at] = pick(rng, LVSADM_WORDS)
        elif at < len(argv):
            del argv[at]
    if rng.random() < 0.1:
        argv[rng.randrange(len(argv) + 1):0] = ["--server", pick(rng, SERVERS)]
    if rng.random() < 0.1:
        argv[rng.randrange(len(argv) + 1):0] = ["--token-file", pick(rng, token_files)]
    return argv


def test_fuzz_lvsadm(table, tmp_path, monkeypatch):
    statuses = []

    def in_process(client, method, path, data, headers):
        req = webob.Request.blank(client.base_url + path, method=method, headers=headers)
        if data is not None:
            req.body = data
        resp = req.get_response(table.app)
        statuses.append(resp.status_int)
        assert resp.status_int < 500, resp.text
        return resp.status_int, resp.headers.get("Content-Type", ""), resp.body

    monkeypatch.setattr(cli.Client, "exchange", in_process)
    monkeypatch.setenv("LVSADM_TOKEN", TOKEN)
    monkeypatch.delenv("LVSADM_SERVER", raising=False)
    good = tmp_path / "token"
    good.write_text(TOKEN + "\n")
    empty = tmp_path / "empty"
    empty.write_text("")
    token_files = [str(good), str(empty), str(tmp_path / "absent"), str(tmp_path)]
    rng = random.Random(19990527)
    for case in range(LVSADM_CASES):
        if case % 100 == 0:
            table.reseed()
        argv = lvsadm_argv(rng, token_files)
        stdin = rules_text(rng)
        out, err = io.StringIO(), io.StringIO()
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        monkeypatch.setattr(sys, "stdout", out)
        monkeypatch.setattr(sys, "stderr", err)
        before = table.state()
        try:
            code = cli.main(argv)
        finally:
            monkeypatch.setattr(sys, "stdout", sys.__stdout__)
            monkeypatch.setattr(sys, "stderr", sys.__stderr__)
        output = out.getvalue() + err.getvalue()
        where = f"case {case}: lvsadm {' '.join(map(repr, argv))} < {stdin!r}\n{output}"
        assert isinstance(code, int), where
        assert "Traceback" not in output and 'File "' not in output, where
        if code != 0:
            assert table.state() == before, where
            assert err.getvalue(), where          # a failure says why
        table.check_rules_file()
    assert statuses and max(statuses) < 500
    assert len(set(statuses)) > 4, statuses

