"""The REST API through webob requests against the real WSGI application."""

import json

import pytest
import webob

from lvs_app.api import DirectorAPI
from lvs_app.manager import Manager
from lvs_app.rest import RestApp

SVC = "/ipvs/services/tcp-10.0.0.100-80"


class Client:
    def __init__(self, api):
        self.api = api
        self.app = RestApp(api)

    def call(self, method, path, body=None, text=None):
        req = webob.Request.blank(path, method=method)
        if body is not None:
            req.body = json.dumps(body).encode()
            req.content_type = "application/json"
        elif text is not None:
            req.body = text.encode()
            req.content_type = "text/plain"
        resp = req.get_response(self.app)
        if resp.content_type == "application/json":
            return resp.status_int, json.loads(resp.body)
        return resp.status_int, resp.body.decode()


@pytest.fixture
def client():
    c = Client(Manager().api)      # with the runtime view a running director gives
    assert c.call("POST", "/ipvs/services", {"protocol": "tcp", "address": "10.0.0.100",
                                             "port": 80, "scheduler": "rr"})[0] == 201
    assert c.call("POST", f"{SVC}/servers", {"address": "10.0.0.11", "port": 8080,
                                             "method": "masq", "weight": 2})[0] == 201
    return c


def error_of(result, status):
    code, body = result
    assert code == status, body
    assert set(body) == {"error"} and body["error"]["status"] == status
    return body["error"]["message"]


def test_snapshot_lists_services_servers_and_timeouts(client):
    code, body = client.call("GET", "/ipvs")
    assert code == 200
    assert (body["version"], body["size"]) == ("1.2.1", 4096)
    assert body["timeouts"] == {"tcp": 900, "tcpfin": 120, "udp": 300}
    [svc] = body["services"]
    assert (svc["id"], svc["scheduler"], svc["persistent"]) == ("tcp-10.0.0.100-80", "rr", False)
    [server] = svc["servers"]
    assert (server["address"], server["port"], server["forward"], server["weight"]) == \
        ("10.0.0.11", 8080, "Masq", 2)
    assert server["activeconns"] == 0 and server["stats"]["conns"] == 0


def test_service_crud(client):
    code, svc = client.call("PATCH", SVC, {"scheduler": "wlc", "persistent": True, "timeout": 60})
    assert code == 200 and (svc["scheduler"], svc["timeout"]) == ("wlc", 60)
    assert client.call("GET", SVC)[1]["persistent"] is True
    assert client.call("GET", "/ipvs/services")[1]["services"][0]["id"] == "tcp-10.0.0.100-80"
    assert client.call("DELETE", SVC)[0] == 204
    assert error_of(client.call("GET", SVC), 404) == "service tcp 10.0.0.100:80 does not exist"


def test_clear_removes_every_service(client):
    client.call("POST", "/ipvs/services", {"protocol": "udp", "address": "10.0.0.100", "port": 53})
    assert client.call("DELETE", "/ipvs/services")[0] == 204
    assert client.call("GET", "/ipvs/services")[1] == {"services": []}


def test_server_crud(client):
    rid = f"{SVC}/servers/10.0.0.11-8080"
    code, server = client.call("PATCH", rid, {"weight": 0, "u_threshold": 10, "l_threshold": 5})
    assert code == 200 and (server["weight"], server["u_threshold"]) == (0, 10)
    assert client.call("GET", rid)[1]["l_threshold"] == 5
    assert client.call("GET", f"{SVC}/servers")[1]["servers"][0]["weight"] == 0
    assert client.call("DELETE", rid)[0] == 204
    assert error_of(client.call("GET", rid), 404) == \
        "service tcp 10.0.0.100:80: real server 10.0.0.11:8080 does not exist"


def test_server_without_port_gets_the_service_port(client):
    code, server = client.call("POST", f"{SVC}/servers", {"address": "10.0.0.12"})
    assert code == 201 and (server["port"], server["method"]) == (80, "droute")
    assert client.call("GET", f"{SVC}/servers/10.0.0.12")[1]["port"] == 80


@pytest.mark.parametrize("method, path, body, status, message", [
    ("POST", "/ipvs/services", {"protocol": "tcp", "address": "10.0.0.100", "port": 80},
     409, "service tcp 10.0.0.100:80 already exists"),
    ("POST", "/ipvs/services", {"address": "10.0.0.100"},
     400, "service: 'protocol' is required (tcp, udp or fwmark)"),
    ("POST", "/ipvs/services", {"protocol": "tcp", "port": 80},
     400, "service tcp: 'address' is required"),
    ("POST", "/ipvs/services", [1, 2], 400, "service: request body must be a JSON object"),
    ("POST", "/ipvs/services", {"protocol": "tcp", "address": "10.0.0.100", "port": 81,
                                "scheduler": "xyz"},
     400, "service tcp 10.0.0.100:81: scheduler 'xyz' is unknown; choose one of rr, wrr, lc, "
          "wlc, sed, nq, fo, ovf, dh, sh, mh, lblc, lblcr, twos"),
    ("POST", f"{SVC}/servers", {"address": "10.0.0.11", "port": 8080, "method": "masq"},
     409, "service tcp 10.0.0.100:80: real server 10.0.0.11:8080 already exists"),
    ("POST", f"{SVC}/servers", {"port": 80},
     400, "service tcp 10.0.0.100:80: real server 'address' is required"),
    ("PATCH", f"{SVC}/servers/10.0.0.11-8080", {"weight": 65536},
     400, "service tcp 10.0.0.100:80: real server 10.0.0.11:8080 weight 65536 must be 0..65535"),
    ("PATCH", f"{SVC}/servers/10.0.0.11-http", {"weight": 1},
     400, "real server id '10.0.0.11-http' must be ADDRESS or ADDRESS-PORT"),
    ("GET", "/ipvs/services/http-80", None,
     400, "service id 'http-80' must be proto-VIP-port (tcp-10.0.0.1-80) or fwmark-N[-6]"),
    ("PUT", "/ipvs/timeouts", {"tcp": -5}, 400, "tcp timeout -5 must be 0..2147483647"),
    ("PUT", "/ipvs/timeouts", {"syn": 5}, 400,
     "timeouts: unknown field(s) syn; allowed: tcp, tcpfin, udp"),
    ("PUT", "/ipvs/settings", {"sloppy_tcp": True}, 400,
     "setting 'sloppy_tcp' is unknown; known: expire_nodest_conn, expire_quiescent_template"),
    ("PUT", "/ipvs/settings", {"expire_nodest_conn": 1}, 400,
     "setting expire_nodest_conn 1 must be true or false"),
    ("POST", "/ipvs/marks", {"mark": 1, "matches": []}, 400,
     "firewall mark 1 needs at least one match 'proto:VIP[:port[-port]]'"),
    ("POST", "/ipvs/marks", {"mark": 1, "port": 3}, 400,
     "firewall mark: unknown field(s) port; allowed: mark, name, matches"),
    ("DELETE", "/ipvs/marks/7", None, 404, "firewall mark 7 does not exist"),
    ("DELETE", "/ipvs/marks/x", None, 400, "firewall mark 'x' must be a number"),
    ("GET", "/ipvs/what", None, 404,
     "GET /ipvs/what: no such resource (the API lives under /ipvs, with /metrics and /status; see the README)"),
    ("PUT", "/ipvs/services", {}, 405, "PUT /ipvs/services: method not allowed; use DELETE, GET, POST"),
])
def test_errors_are_json_and_change_nothing(client, method, path, body, status, message):
    before = client.call("GET", "/ipvs")[1], client.api.get_settings()
    assert error_of(client.call(method, path, body), status) == message
    assert (client.call("GET", "/ipvs")[1], client.api.get_settings()) == before


def test_malformed_json_is_400(client):
    req = webob.Request.blank("/ipvs/services", method="POST", body=b"{nope",
                              content_type="application/json")
    resp = req.get_response(client.app)
    assert resp.status_int == 400
    assert json.loads(resp.body)["error"]["message"].startswith(
        "POST /ipvs/services: request body is not valid JSON")


def test_zero_timeouts_connections_settings(client):
    service = client.api.table.services[next(iter(client.api.table.services))]
    client.api.runtime.runtime.service(service).stats.conns = 5
    assert client.call("POST", f"{SVC}/zero")[0] == 204
    assert client.call("GET", SVC)[1]["stats"]["conns"] == 0
    assert client.call("POST", "/ipvs/zero")[0] == 204
    assert client.call("PUT", "/ipvs/timeouts", {"tcp": 60, "tcpfin": 0, "udp": 30}) == \
        (200, {"tcp": 60, "tcpfin": 120, "udp": 30})
    assert client.call("GET", "/ipvs/timeouts")[1]["tcp"] == 60
    assert client.call("GET", "/ipvs/connections") == (200, {"connections": []})
    client.api.runtime.connection_rows = lambda: [{"protocol": "TCP", "expire": 3}]
    assert client.call("GET", "/ipvs/connections")[1]["connections"][0]["expire"] == 3
    assert client.call("PUT", "/ipvs/settings", {"expire_quiescent_template": True})[1] == \
        {"expire_quiescent_template": True, "expire_nodest_conn": False}


def test_marks_and_fwmark_service(client):
    code, mark = client.call("POST", "/ipvs/marks", {"mark": 3, "name": "web",
                                                    "matches": ["tcp:10.0.0.100:443",
                                                                "udp:10.0.0.100:5000-5100"]})
    assert code == 201 and mark["matches"][1] == "udp:10.0.0.100:5000-5100"
    assert client.call("GET", "/ipvs/marks/3")[1]["name"] == "web"
    code, svc = client.call("POST", "/ipvs/services", {"protocol": "fwmark", "fwmark": 3,
                                                       "persistent": True})
    assert code == 201 and svc["id"] == "fwmark-3"
    assert error_of(client.call("DELETE", "/ipvs/marks/3"), 409) == \
        "firewall mark 3 is used by fwmark 3; delete the service first"
    assert client.call("DELETE", "/ipvs/services/fwmark-3")[0] == 204
    assert client.call("DELETE", "/ipvs/marks/3")[0] == 204
    assert client.call("GET", "/ipvs/marks")[1] == {"marks": []}


def test_rules_append_replace_and_atomicity(client):
    code, text = client.call("POST", "/ipvs/rules", text="-A -u 10.0.0.100:53 -s rr\n")
    assert code == 200 and "-A -u 10.0.0.100:53 -s rr" in text
    assert "-A -t 10.0.0.100:80 -s rr" in text          # appended, not replaced
    before = client.call("GET", "/ipvs/rules")[1]
    bad = "-A -t 10.0.0.1:80 -s rr\n-a -t 10.0.0.1:80 -r 10.0.0.2 -w 70000\n"
    message = error_of(client.call("PUT", "/ipvs/rules", text=bad), 400)
    assert message.startswith("line 2: ")
    assert client.call("GET", "/ipvs/rules")[1] == before
    code, text = client.call("PUT", "/ipvs/rules", text="-A -t 10.0.0.1:80 -s rr\n")
    assert code == 200 and text == "-A -t 10.0.0.1:80 -s rr\n"


def test_seed_commands_through_rules(client):
    seed = "ipvsadm -A -t 10.0.0.100:0 -s pcc\nipvsadm -a -t 10.0.0.100:0 -R 10.0.0.12\n"
    code, _ = client.call("PUT", "/ipvs/rules", text=seed)
    assert code == 200
    svc = client.call("GET", "/ipvs/services/tcp-10.0.0.100-0")[1]
    assert (svc["scheduler"], svc["persistent"], svc["timeout"]) == ("rr", True, 360)
    assert svc["servers"][0]["method"] == "droute"


def test_listeners_see_committed_changes_only(client):
    seen = []
    client.api.listeners.append(lambda change: seen.append(change.kind))
    client.call("POST", "/ipvs/services", {"protocol": "tcp", "address": "10.0.0.100", "port": 80})
    client.call("PATCH", f"{SVC}/servers/10.0.0.11-8080", {"weight": 5})
    client.call("DELETE", f"{SVC}/servers/10.0.0.11-8080")
    client.call("DELETE", SVC)
    assert seen == ["server-edited", "server-deleted", "service-deleted"]


# -- the rules file ------------------------------------------------------------

def test_rules_file_is_written_on_every_change_and_loaded(tmp_path):
    path = tmp_path / "lvs.rules"
    c = Client(DirectorAPI(rules_path=str(path)))
    c.call("POST", "/ipvs/services", {"protocol": "tcp", "address": "10.0.0.100", "port": 80})
    assert path.read_text() == "-A -t 10.0.0.100:80 -s wlc\n"
    c.call("POST", f"{SVC}/servers", {"address": "10.0.0.11"})
    assert path.read_text().splitlines()[1] == "-a -t 10.0.0.100:80 -r 10.0.0.11:80 -g -w 1"
    again = DirectorAPI(rules_path=str(path))
    assert again.load_rules() is True
    assert again.rules_text() == c.api.rules_text()


def test_bad_rules_file_is_refused_whole(tmp_path):
    path = tmp_path / "lvs.rules"
    path.write_text("-A -t 10.0.0.100:80 -s rr\n-A -t 10.0.0.100:80 -s rr\n")
    api = DirectorAPI(rules_path=str(path))
    with pytest.raises(Exception) as info:
        api.load_rules()
    assert info.value.message.startswith(f"rules file {path}: line 2: ")
    assert api.table.services == {}
    assert path.read_text().count("-A") == 2           # the file is left as it was


def test_missing_rules_file_starts_empty(tmp_path):
    api = DirectorAPI(rules_path=str(tmp_path / "absent.rules"))
    assert api.load_rules() is False and api.table.services == {}


# -- malformed requests: a 4xx in the envelope, never a traceback -------------------

def raw_call(client, method, path, body=b"", content_type="application/json", **environ):
    req = webob.Request.blank(path, method=method, body=body, **environ)
    if content_type:
        req.content_type = content_type
    resp = req.get_response(client.app)
    text = resp.body.decode("utf-8", "replace")
    assert "Traceback" not in text
    assert resp.content_type == "application/json", text
    return resp.status_int, json.loads(text)


def unchanged(client):
    return client.call("GET", "/ipvs")[1], client.call("GET", "/ipvs/rules")[1]


@pytest.mark.parametrize("path, shown", [
    ("/ipvs/services/%ff%fe", r"/ipvs/services/\xff\xfe"),
    ("/ipvs/%ff", r"/ipvs/\xff"),
    (f"{SVC}/servers/10.0.0.11-%c3", r"/ipvs/services/tcp-10.0.0.100-80/servers/10.0.0.11-\xc3"),
])
@pytest.mark.parametrize("method", ["GET", "DELETE", "PATCH"])
def test_a_path_that_is_not_utf8_is_400(client, method, path, shown):
    before = unchanged(client)
    assert error_of(raw_call(client, method, path, b"{}"), 400) == \
        f"request path {shown} is not UTF-8 once percent-decoded"
    assert unchanged(client) == before


@pytest.mark.parametrize("depth", [33, 1000, 100_000])
def test_json_nested_too_deeply_is_400(client, depth):
    before = unchanged(client)
    body = b"[" * depth + b"]" * depth
    assert error_of(raw_call(client, "POST", "/ipvs/services", body), 400) == \
        "POST /ipvs/services: request body is nested deeper than 32 levels"
    body = b'{"protocol": "tcp", "address": "10.0.0.1", "port": 80, "x": ' + body + b"}"
    assert error_of(raw_call(client, "POST", "/ipvs/services", body), 400).endswith(
        "nested deeper than 32 levels")
    assert unchanged(client) == before


def test_json_nested_32_deep_reaches_the_model(client):
    body = b"[" * 32 + b"]" * 32
    assert error_of(raw_call(client, "POST", "/ipvs/services", body), 400) == \
        "service: request body must be a JSON object"


def test_a_lone_surrogate_in_a_json_string_is_400(client):
    before = unchanged(client)
    body = b'{"mark": 5, "matches": ["tcp:10.0.0.5:80"], "name": "\\ud800"}'
    assert error_of(raw_call(client, "POST", "/ipvs/marks", body), 400) == \
        "POST /ipvs/marks: request body has a lone surrogate '\\ud800' in a string"
    assert unchanged(client) == before


@pytest.mark.parametrize("path, limit", [("/ipvs/services", 1 << 20), ("/ipvs/rules", 16 << 20),
                                         ("/ipvs/zero", 1 << 20)])
def test_a_body_over_its_limit_is_413_before_it_is_read(client, path, limit):
    class Unreadable:
        def read(self, *_):
            raise AssertionError("the body was read")

    before = unchanged(client)
    ctype = "text/plain" if path.endswith("rules") else "application/json"
    req = webob.Request.blank(path, method="POST", content_type=ctype)
    req.environ.update({"wsgi.input": Unreadable(), "CONTENT_LENGTH": str(limit + 1)})
    resp = req.get_response(client.app)
    assert resp.status_int == 413
    assert json.loads(resp.body)["error"] == {
        "status": 413, "kind": "too-large",
        "message": f"POST {path}: request body of {limit + 1} bytes is over the limit of "
                   f"{limit} bytes"}
    assert unchanged(client) == before


def test_a_chunked_body_is_read_up_to_its_limit(client):
    import io
    text = "-A -u 10.0.0.100:53 -s rr\n"
    req = webob.Request.blank("/ipvs/rules", method="POST", content_type="text/plain")
    req.environ.update({"wsgi.input": io.BytesIO(text.encode()), "CONTENT_LENGTH": "",
                        "HTTP_TRANSFER_ENCODING": "chunked"})
    assert req.get_response(client.app).status_int == 200
    assert text in client.call("GET", "/ipvs/rules")[1]
    before = unchanged(client)
    big = b'{"protocol": "tcp", "address": "10.0.0.1", "port": 80, "s": "' + b"x" * (1 << 20) + b'"}'
    req = webob.Request.blank("/ipvs/services", method="POST", content_type="application/json")
    req.environ.update({"wsgi.input": io.BytesIO(big), "CONTENT_LENGTH": "",
                        "HTTP_TRANSFER_ENCODING": "chunked"})
    resp = req.get_response(client.app)
    assert resp.status_int == 413 and json.loads(resp.body)["error"]["message"] == \
        f"POST /ipvs/services: request body is over the limit of {1 << 20} bytes"
    assert unchanged(client) == before


@pytest.mark.parametrize("length", ["abc", "-1", "1e3", "٣"])
def test_a_content_length_that_is_not_a_number_is_400(client, length):
    req = webob.Request.blank("/ipvs/services", method="POST", content_type="application/json")
    req.environ["CONTENT_LENGTH"] = length
    resp = req.get_response(client.app)
    assert resp.status_int == 400
    assert json.loads(resp.body)["error"]["message"] == \
        f"POST /ipvs/services: Content-Length {length!r} is not a number"


@pytest.mark.parametrize("body", [b"\xff\xfe{}", b'{"protocol": "tcp", "port": 1' + b"9" * 5000 + b"}",
                                  b"\xef\xbb\xbf{}", b"NaN", b'"\\ud800"', b"{" * 5])
def test_bodies_that_are_not_json_are_400(client, body):
    before = unchanged(client)
    code, doc = raw_call(client, "POST", "/ipvs/services", body)
    assert code == 400 and doc["error"]["kind"] == "bad-request"
    assert unchanged(client) == before


def test_an_unexpected_failure_is_a_500_envelope_even_for_a_path_that_is_not_utf8(
        client, monkeypatch, caplog):
    from lvs_app import rest

    def broken(*_):
        raise RuntimeError("boom")

    monkeypatch.setattr(rest, "_request_path", broken)
    code, doc = raw_call(client, "GET", "/ipvs/%ff")   # the 500 handler logs the raw path
    assert (code, doc["error"]["kind"]) == (500, "internal")
    assert "boom" not in json.dumps(doc) and "boom" in caplog.text
