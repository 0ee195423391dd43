"""lvsadm against a fake REST API on 127.0.0.1 (canned answers, recorded requests).

Proves request shapes, exit codes, stderr messages and stdin handling; the
end-to-end tests against ryu-manager live elsewhere.
"""

import io
import json
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from lvs_app import cli

SERVICE = {
    "id": "tcp-10.0.0.1-80", "protocol": "tcp", "address": "10.0.0.1", "port": 80,
    "fwmark": 0, "af": 4, "scheduler": "wlc", "persistent": False, "timeout": None,
    "netmask": "255.255.255.255", "sched_flags": [], "ops": False,
    "stats": {"conns": 5, "inpkts": 0, "outpkts": 0, "inbytes": 0, "outbytes": 0},
    "rates": {"cps": 0, "inpps": 0, "outpps": 0, "inbps": 0, "outbps": 0},
    "servers": [{"address": "10.0.1.2", "port": 80, "method": "masq", "forward": "Masq",
                 "weight": 2, "u_threshold": 0, "l_threshold": 0, "tun_type": None,
                 "activeconns": 3, "inactconns": 4, "persistconns": 0, "overloaded": False,
                 "stats": {}, "rates": {}},
                {"address": "10.0.1.1", "port": 80, "method": "masq", "forward": "Masq",
                 "weight": 1, "u_threshold": 0, "l_threshold": 0, "tun_type": None,
                 "activeconns": 0, "inactconns": 0, "persistconns": 0, "overloaded": False,
                 "stats": {}, "rates": {}}],
}
FWM = dict(SERVICE, id="fwmark-1", protocol="fwmark", address=None, port=0, fwmark=1,
           scheduler="rr", persistent=True, timeout=300, servers=[])
MARK = {"mark": 1, "name": "web", "matches": ["tcp:10.0.0.100:80", "tcp:10.0.0.100:443"]}
IPVS = {"version": "1.2.1", "size": 4096, "services": [FWM, SERVICE], "marks": [MARK],
        "timeouts": {"tcp": 900, "tcpfin": 120, "udp": 300}}


def not_found(message):
    return 404, {"error": {"status": 404, "kind": "not-found", "message": message}}


class FakeApi:
    """Routes (method, path) -> (status, JSON or text); records every request."""

    def __init__(self):
        self.routes = {}
        self.requests = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                api.requests.append({"method": self.command, "path": self.path,
                                     "type": self.headers.get("Content-Type"),
                                     "auth": self.headers.get("Authorization"),
                                     "body": body.decode()})
                status, answer = api.routes.get(
                    (self.command, self.path), not_found(f"no route {self.path}"))
                if isinstance(answer, str):
                    data, ctype = answer.encode(), "text/plain; charset=utf-8"
                elif answer is None:
                    data, ctype = b"", "application/json"
                else:
                    data, ctype = json.dumps(answer).encode(), "application/json"
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    def route(self, method, path, status=200, answer=None):
        self.routes[(method, path)] = (status, answer)

    def json_bodies(self):
        return [json.loads(r["body"]) if r["body"] else None for r in self.requests]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def api(monkeypatch):
    fake = FakeApi()
    monkeypatch.setenv("LVSADM_SERVER", fake.url)
    monkeypatch.delenv("LVSADM_TOKEN", raising=False)
    yield fake
    fake.close()


def run(capsys, *argv, stdin=None, monkeypatch=None):
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# -- changes -------------------------------------------------------------------

def test_add_service_posts_the_service(api, capsys):
    api.route("POST", "/ipvs/services", 201, SERVICE)
    code, out, err = run(capsys, "-A", "-t", "10.0.0.1:80", "-s", "rr", "-p", "600")
    assert (code, out, err) == (0, "", "")
    assert api.requests[0]["method"] == "POST"
    assert api.requests[0]["type"] == "application/json"
    assert api.json_bodies() == [{"protocol": "tcp", "address": "10.0.0.1", "port": 80,
                                  "scheduler": "rr", "persistent": True, "timeout": 600}]


def test_add_fwmark_service(api, capsys):
    api.route("POST", "/ipvs/services", 201, FWM)
    assert run(capsys, "-A", "-f", "1", "-6", "-s", "sed")[0] == 0
    assert api.json_bodies() == [{"protocol": "fwmark", "fwmark": 1, "af": 6,
                                  "scheduler": "sed"}]


def test_edit_service_resets_omitted_options_as_ipvsadm_does(api, capsys):
    api.route("PATCH", "/ipvs/services/udp-10.0.0.1-53", 200, SERVICE)
    api.route("PATCH", "/ipvs/services/tcp-10.0.0.1-80", 200, SERVICE)
    assert run(capsys, "-E", "-u", "10.0.0.1:53", "-o")[0] == 0
    assert run(capsys, "-E", "-t", "10.0.0.1:80", "-s", "rr", "-p", "60")[0] == 0
    assert api.json_bodies() == [
        {"scheduler": "wlc", "sched_flags": [], "ops": True, "pe": "",
         "netmask": "255.255.255.255", "persistent": False},
        {"scheduler": "rr", "sched_flags": [], "ops": False, "pe": "",
         "netmask": "255.255.255.255", "persistent": True, "timeout": 60}]


def test_delete_service_and_clear(api, capsys):
    api.route("DELETE", "/ipvs/services/tcp-2001:db8::1-80", 204)
    api.route("DELETE", "/ipvs/services", 204)
    assert run(capsys, "-D", "-t", "[2001:db8::1]:80")[0] == 0
    assert run(capsys, "-C")[0] == 0
    assert [(r["method"], r["path"]) for r in api.requests] == [
        ("DELETE", "/ipvs/services/tcp-2001:db8::1-80"), ("DELETE", "/ipvs/services")]


def test_add_server_posts_port_null_when_omitted(api, capsys):
    api.route("POST", "/ipvs/services/tcp-10.0.0.1-80/servers", 201, SERVICE["servers"][0])
    assert run(capsys, "-a", "-t", "10.0.0.1:80", "-r", "10.0.1.1", "-m", "-w", "3")[0] == 0
    assert api.json_bodies() == [{"address": "10.0.1.1", "port": None, "method": "masq",
                                  "weight": 3}]


def test_founding_document_add_server_spelling(api, capsys):
    api.route("POST", "/ipvs/services/tcp-10.0.0.100-0/servers", 201, {})
    assert run(capsys, "-a", "-t", "10.0.0.100:0", "-R", "10.0.1.1")[0] == 0
    assert api.json_bodies() == [{"address": "10.0.1.1", "port": None}]


def test_edit_and_delete_server_paths(api, capsys):
    api.route("PATCH", "/ipvs/services/tcp-10.0.0.1-80/servers/10.0.1.1-8080", 200, {})
    api.route("DELETE", "/ipvs/services/fwmark-1/servers/10.0.1.1", 204)
    assert run(capsys, "-e", "-t", "10.0.0.1:80", "-r", "10.0.1.1:8080", "-x", "10")[0] == 0
    assert run(capsys, "-d", "-f", "1", "-r", "10.0.1.1")[0] == 0
    assert [(r["method"], r["path"]) for r in api.requests] == [
        ("PATCH", "/ipvs/services/tcp-10.0.0.1-80/servers/10.0.1.1-8080"),
        ("DELETE", "/ipvs/services/fwmark-1/servers/10.0.1.1")]
    # ipvsadm -e sets every option: the omitted ones return to their defaults
    assert api.json_bodies()[0] == {"method": "droute", "weight": 1, "u_threshold": 10,
                                    "l_threshold": 0}


def test_zero_all_and_one(api, capsys):
    api.route("POST", "/ipvs/zero", 204)
    api.route("POST", "/ipvs/services/tcp-10.0.0.1-80/zero", 204)
    assert run(capsys, "-Z")[0] == 0
    assert run(capsys, "-Z", "-t", "10.0.0.1:80")[0] == 0
    assert [r["path"] for r in api.requests] == ["/ipvs/zero",
                                                 "/ipvs/services/tcp-10.0.0.1-80/zero"]


def test_set_timeouts(api, capsys):
    api.route("PUT", "/ipvs/timeouts", 200, {"tcp": 900, "tcpfin": 60, "udp": 300})
    assert run(capsys, "--set", "0", "60", "0")[0] == 0
    assert api.json_bodies() == [{"tcp": 0, "tcpfin": 60, "udp": 0}]


def test_marks(api, capsys):
    api.route("POST", "/ipvs/marks", 201, MARK)
    api.route("DELETE", "/ipvs/marks/1", 204)
    api.route("GET", "/ipvs/marks", 200, {"marks": [MARK]})
    assert run(capsys, "--add-mark", "1", "--match", "tcp:10.0.0.100:80",
               "--match", "tcp:10.0.0.100:443", "--mark-name", "web")[0] == 0
    assert api.json_bodies()[0] == MARK
    assert run(capsys, "--delete-mark", "1")[0] == 0
    code, out, _ = run(capsys, "--list-marks")
    assert code == 0
    assert out == ("FWM  Name\n  -> Match\nFWM  1 web\n"
                   "  -> tcp:10.0.0.100:80\n  -> tcp:10.0.0.100:443\n")


# -- listings ------------------------------------------------------------------

LISTING = ("IP Virtual Server version 1.2.1 (size=4096)\n"
           "Prot LocalAddress:Port Scheduler Flags\n"
           "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n"
           "TCP  10.0.0.1:80 wlc\n"
           "  -> 10.0.1.1:80                  Masq    1      0          0         \n"
           "  -> 10.0.1.2:80                  Masq    2      3          4         \n"
           "FWM  1 rr persistent 300\n")


def test_list_formats_get_ipvs(api, capsys):
    api.route("GET", "/ipvs", 200, IPVS)
    assert run(capsys, "-L", "-n") == (0, LISTING, "")
    assert api.requests[0]["method"] == "GET"


def test_no_arguments_lists(api, capsys):
    api.route("GET", "/ipvs", 200, IPVS)
    assert run(capsys) == (0, LISTING, "")


def test_list_uses_the_reported_version_and_size(api, capsys):
    api.route("GET", "/ipvs", 200, dict(IPVS, size=65536, services=[]))
    code, out, _ = run(capsys, "-Ln")
    assert out.splitlines()[0] == "IP Virtual Server version 1.2.1 (size=65536)"


def test_list_stats(api, capsys):
    api.route("GET", "/ipvs", 200, dict(IPVS, services=[SERVICE]))
    code, out, _ = run(capsys, "-L", "-n", "--stats")
    assert out.splitlines()[3] == (
        "TCP  10.0.0.1:80                         5        0        0        0        0")


def test_list_single_service(api, capsys):
    api.route("GET", "/ipvs/services/tcp-10.0.0.1-80", 200, SERVICE)
    code, out, _ = run(capsys, "-L", "-n", "-t", "10.0.0.1:80")
    assert code == 0
    assert out == "".join(LISTING.splitlines(keepends=True)[1:6])


def test_list_missing_service_exits_1(api, capsys):
    api.route("GET", "/ipvs/services/tcp-10.0.0.9-80",
              *not_found("service tcp 10.0.0.9:80 does not exist"))
    assert run(capsys, "-L", "-t", "10.0.0.9:80") == (
        1, "", "service tcp 10.0.0.9:80 does not exist\n")


def test_list_connections(api, capsys):
    conn = dict(protocol="TCP", expire=897, state="ESTABLISHED", client="192.168.10.5",
                cport=54321, vip="192.168.10.100", vport=80, server="10.0.0.2", dport=80,
                pe_name=None, pe_data=None)
    api.route("GET", "/ipvs/connections", 200, {"connections": [conn]})
    assert run(capsys, "-L", "-c", "-n") == (0, (
        "IPVS connection entries\n"
        "pro expire state       source             virtual            destination\n"
        "TCP 14:57  ESTABLISHED 192.168.10.5:54321 192.168.10.100:80  10.0.0.2:80\n"), "")


def test_list_timeout(api, capsys):
    api.route("GET", "/ipvs/timeouts", 200, {"tcp": 900, "tcpfin": 120, "udp": 300})
    assert run(capsys, "-L", "--timeout") == (0, "Timeout (tcp tcpfin udp): 900 120 300\n", "")


def test_save_prints_marks_then_services(api, capsys):
    api.route("GET", "/ipvs", 200, IPVS)
    assert run(capsys, "-S", "-n") == (0, (
        "--add-mark 1 --match tcp:10.0.0.100:80 --match tcp:10.0.0.100:443 --mark-name web\n"
        "-A -t 10.0.0.1:80 -s wlc\n"
        "-a -t 10.0.0.1:80 -r 10.0.1.1:80 -m -w 1\n"
        "-a -t 10.0.0.1:80 -r 10.0.1.2:80 -m -w 2\n"
        "-A -f 1 -s rr -p 300\n"), "")


# -- restore -------------------------------------------------------------------

RULES = "# saved\n-A -t 10.0.0.1:80 -s rr\n-a -t 10.0.0.1:80 -r 10.0.1.1 -m\n"


def test_restore_posts_stdin_as_text(api, capsys, monkeypatch):
    api.route("POST", "/ipvs/rules", 200, {"services": []})
    assert run(capsys, "-R", stdin=RULES, monkeypatch=monkeypatch) == (0, "", "")
    assert api.requests == [{"method": "POST", "path": "/ipvs/rules",
                             "type": "text/plain; charset=utf-8", "auth": None,
                             "body": RULES}]


def test_restore_checks_stdin_locally_first(api, capsys, monkeypatch):
    code, out, err = run(capsys, "-R", stdin="-A -t 10.0.0.1:80\n-a -t 10.0.0.1:80 -w 1\n",
                         monkeypatch=monkeypatch)
    assert (code, out) == (2, "")
    assert err == ("line 2: You need to supply the 'real-server' option for the "
                   "'add-server' command\n")
    assert api.requests == []


def test_restore_refused_by_the_controller(api, capsys, monkeypatch):
    api.route("POST", "/ipvs/rules", 409, {"error": {
        "status": 409, "kind": "conflict",
        "message": "line 2: service tcp 10.0.0.1:80 already exists"}})
    code, _, err = run(capsys, "-R", stdin=RULES, monkeypatch=monkeypatch)
    assert (code, err) == (255, "line 2: service tcp 10.0.0.1:80 already exists\n")


# -- errors ----------------------------------------------------------------------

def test_usage_error_sends_nothing(api, capsys):
    assert run(capsys, "-a", "-t", "10.0.0.1:80", "-r", "10.0.1.1", "-w", "70000") == (
        2, "", "illegal weight specified\n")
    assert api.requests == []


def test_popt_error_exits_255(api, capsys):
    assert run(capsys, "-L", "--bogus") == (255, "", "--bogus: unknown option\n")
    assert run(capsys, "-t", "10.0.0.1:80") == (
        255, "", "Try `lvsadm -h' or 'lvsadm --help' for more information.\n")
    assert api.requests == []


def test_sctp_and_sync_daemon_are_refused_locally(api, capsys):
    code, _, err = run(capsys, "-A", "--sctp-service", "10.0.0.1:80")
    assert code == 2 and "SCTP virtual services are not supported" in err
    code, _, err = run(capsys, "--start-daemon", "master")
    assert code == 2 and "connection synchronisation is not supported" in err
    assert api.requests == []


def test_refused_change_prints_the_server_message_and_exits_255(api, capsys):
    api.route("POST", "/ipvs/services", 409, {"error": {
        "status": 409, "kind": "conflict", "message": "service tcp 10.0.0.1:80 already exists"}})
    assert run(capsys, "-A", "-t", "10.0.0.1:80") == (
        255, "", "service tcp 10.0.0.1:80 already exists\n")


def test_not_found_on_delete_exits_255(api, capsys):
    api.route("DELETE", "/ipvs/services/tcp-10.0.0.1-80/servers/10.0.1.9-80",
              *not_found("service tcp 10.0.0.1:80: real server 10.0.1.9:80 does not exist"))
    code, _, err = run(capsys, "-d", "-t", "10.0.0.1:80", "-r", "10.0.1.9:80")
    assert (code, err) == (255, "service tcp 10.0.0.1:80: real server 10.0.1.9:80 "
                                "does not exist\n")


def test_error_without_envelope(api, capsys):
    api.route("POST", "/ipvs/zero", 500, "boom")
    code, _, err = run(capsys, "-Z")
    assert code == 255 and err.startswith("HTTP 500 ") and err.endswith(": boom\n")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_connection_refused_names_the_server(capsys, monkeypatch):
    url = f"http://127.0.0.1:{_free_port()}"
    monkeypatch.setenv("LVSADM_SERVER", url)
    code, out, err = run(capsys, "-L", "-n")
    assert (code, out) == (1, "")
    assert err.startswith(f"lvsadm: cannot connect to the lvs_app controller at {url}: ")


def test_server_option_overrides_environment(api, capsys, monkeypatch):
    monkeypatch.setenv("LVSADM_SERVER", f"http://127.0.0.1:{_free_port()}")
    api.route("GET", "/ipvs", 200, IPVS)
    assert run(capsys, "--server", api.url, "-L", "-n") == (0, LISTING, "")
    assert run(capsys, "-L", f"--server={api.url}", "-n") == (0, LISTING, "")


def test_default_server(monkeypatch):
    monkeypatch.delenv("LVSADM_SERVER", raising=False)
    assert cli.DEFAULT_SERVER == "http://127.0.0.1:8080"


def test_help_and_version_need_no_server(capsys, monkeypatch):
    monkeypatch.setenv("LVSADM_SERVER", f"http://127.0.0.1:{_free_port()}")
    code, out, err = run(capsys, "-h")
    assert code == 0 and err == "" and "  lvsadm -A|E virtual-service" in out
    assert run(capsys, "--version") == (
        0, "lvsadm v0.1.0 (ipvsadm 1.31 compatible, IPVS v1.2.1 over OpenFlow)\n", "")


def test_cli_imports_neither_ryu_nor_eventlet():
    code = ("import sys, lvs_app.cli; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('ryu', 'eventlet')]; "
            "sys.exit(1 if bad else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# -- the token and the server URL ------------------------------------------------------

TOKEN = "tok-0123456789abcdef"


@pytest.fixture
def token_file(tmp_path):
    path = tmp_path / "token"
    path.write_text(f"{TOKEN}\n")
    return str(path)


def test_token_file_anywhere_on_the_command_line_sends_the_bearer_token(api, capsys, token_file,
                                                                        monkeypatch):
    monkeypatch.setenv("LVSADM_TOKEN", "from-the-environment")
    api.route("GET", "/ipvs", 200, IPVS)
    assert run(capsys, "--token-file", token_file, "-L", "-n")[0] == 0
    assert run(capsys, "-L", f"--token-file={token_file}", "-n")[0] == 0
    assert [r["auth"] for r in api.requests] == [f"Bearer {TOKEN}"] * 2


def test_token_from_the_environment(api, capsys, monkeypatch):
    monkeypatch.setenv("LVSADM_TOKEN", f" {TOKEN} ")
    api.route("POST", "/ipvs/zero", 204, None)
    assert run(capsys, "-Z") == (0, "", "")
    assert api.requests[0]["auth"] == f"Bearer {TOKEN}"


def test_no_token_sends_no_authorization(api, capsys, monkeypatch):
    monkeypatch.delenv("LVSADM_TOKEN", raising=False)
    api.route("POST", "/ipvs/zero", 204, None)
    assert run(capsys, "-Z") == (0, "", "")
    assert api.requests[0]["auth"] is None


@pytest.mark.parametrize("content, message", [
    ("", "lvsadm: token file {path} is empty\n"),
    ("a b", "lvsadm: token file {path}: the token must be one word of printable ASCII "
            "(at most 4096 characters)\n"),
])
def test_an_unusable_token_file_is_one_line_exit_1_and_sends_nothing(api, capsys, tmp_path,
                                                                     content, message):
    path = tmp_path / "token"
    path.write_text(content)
    assert run(capsys, "-A", "-t", "10.0.0.1:80", "--token-file", str(path)) == \
        (1, "", message.format(path=path))
    assert run(capsys, "-L", "--token-file", str(tmp_path / "absent")) == \
        (1, "", f"lvsadm: token file {tmp_path / 'absent'}: No such file or directory\n")
    assert api.requests == []


def test_token_file_without_its_argument_is_a_usage_error(api, capsys):
    assert run(capsys, "-L", "--token-file") == (255, "", "--token-file: missing argument\n")


def test_a_refused_token_is_the_server_message(api, capsys, monkeypatch):
    monkeypatch.setenv("LVSADM_TOKEN", "wrong")
    refused = {"error": {"status": 401, "kind": "unauthorized",
                         "message": "the bearer token is wrong"}}
    api.route("GET", "/ipvs", 401, refused)
    api.route("POST", "/ipvs/services", 401, refused)
    assert run(capsys, "-L", "-n") == (1, "", "the bearer token is wrong\n")
    assert run(capsys, "-A", "-t", "10.0.0.1:80") == (255, "", "the bearer token is wrong\n")


def test_what_lvsadm_sends_each_kind_of_write(api, capsys, monkeypatch):
    for method, path in (("POST", "/ipvs/services"), ("DELETE", "/ipvs/services/tcp-10.0.0.1-80"),
                         ("POST", "/ipvs/zero"), ("POST", "/ipvs/rules")):
        api.route(method, path, 204, None)
    run(capsys, "-A", "-t", "10.0.0.1:80")
    run(capsys, "-D", "-t", "10.0.0.1:80")
    run(capsys, "-Z")
    run(capsys, "-R", stdin="-C\n", monkeypatch=monkeypatch)
    assert [(r["method"], r["type"]) for r in api.requests] == [
        ("POST", "application/json"), ("DELETE", None), ("POST", None),
        ("POST", "text/plain; charset=utf-8")]


BAD_SERVERS = [
    ("http://[::1", "--server 'http://[::1': Invalid IPv6 URL; the URL must be "
                    "http://HOST[:PORT] or https://HOST[:PORT]"),
    ("ftp://x", "--server 'ftp://x': the URL must be http://HOST[:PORT] or https://HOST[:PORT]"),
    (":80", "--server ':80': the URL must be http://HOST[:PORT] or https://HOST[:PORT]"),
    ("http://x:abc", "--server 'http://x:abc': Port could not be cast to integer value as 'abc'; "
                     "the URL must be http://HOST[:PORT] or https://HOST[:PORT]"),
    ("http://x:99999", "--server 'http://x:99999': Port out of range 0-65535; the URL must be "
                       "http://HOST[:PORT] or https://HOST[:PORT]"),
    ("http://a b", "--server 'http://a b': the URL must be http://HOST[:PORT] or "
                   "https://HOST[:PORT]"),
    ("http://x\n", "--server 'http://x\\n': the URL must be http://HOST[:PORT] or "
                   "https://HOST[:PORT]"),
    ("http://", "--server 'http://': the URL must be http://HOST[:PORT] or https://HOST[:PORT]"),
    ("", "--server '': the URL must be http://HOST[:PORT] or https://HOST[:PORT]"),
    ("http://u:p@x", "--server 'http://u:p@x': the URL must be http://HOST[:PORT] or "
                     "https://HOST[:PORT]"),
    ("http://x/?a=1", "--server 'http://x/?a=1': the URL must be http://HOST[:PORT] or "
                      "https://HOST[:PORT]"),
    ("127.0.0.1:8080", "--server '127.0.0.1:8080': the URL must be http://HOST[:PORT] or "
                       "https://HOST[:PORT]"),
]


@pytest.mark.parametrize("url, message", BAD_SERVERS)
def test_a_malformed_server_url_is_one_line_and_exit_1(capsys, url, message):
    assert run(capsys, "--server", url, "-L", "-n") == (1, "", f"lvsadm: {message}\n")


def test_a_malformed_server_url_in_the_environment_names_it(capsys, monkeypatch):
    monkeypatch.setenv("LVSADM_SERVER", "ftp://x")
    assert run(capsys, "-A", "-t", "10.0.0.1:80") == (
        1, "", "lvsadm: $LVSADM_SERVER 'ftp://x': the URL must be http://HOST[:PORT] or "
               "https://HOST[:PORT]\n")


@pytest.mark.parametrize("url", ["http://[::1", "ftp://x", ":80", "http://x:abc", "http://a b",
                                 "http://é.invalid:1"])
def test_the_lvsadm_script_prints_no_traceback_for_a_bad_server(url):
    result = subprocess.run([sys.executable, "-m", "lvs_app.cli", "--server", url, "-L", "-n"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and result.stdout == ""
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1
    assert result.stderr.startswith("lvsadm: ")
