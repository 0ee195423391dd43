"""Who may use the REST API: the start-up rule, the token, Host, content types, web pages."""

import json

import pytest
import webob

from lvs_app import access
from lvs_app.access import Access, AccessConfigError, read_token
from lvs_app.manager import Manager
from lvs_app.rest import RestApp

TOKEN = "s3cret-Token_0123456789abcdef"
SVC = "/ipvs/services/tcp-10.0.0.100-80"
JSON = "application/json"


# -- start-up: where REST listens and whether it needs a token -------------------------

@pytest.mark.parametrize("host", ["127.0.0.1", "127.3.2.1", "::1"])
def test_loopback_needs_no_token(host):
    assert Access.from_options(host, None).loopback is True


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.1", "2001:db8::1", "localhost",
                                  "lvs.example.com", "::ffff:127.0.0.1", ""])
def test_beyond_loopback_without_a_token_refuses_to_start(host):
    with pytest.raises(AccessConfigError) as info:
        Access.from_options(host, None)
    assert info.value.message == (
        f"REST would listen on {host} (--wsapi-host) without a token: give "
        "--lvs-rest-token-file FILE, or listen on 127.0.0.1 or ::1")


def test_beyond_loopback_with_a_token_starts_without_the_host_check(tmp_path):
    path = tmp_path / "token"
    path.write_text(f"  {TOKEN}\n\n")
    checks = Access.from_options("0.0.0.0", str(path))
    assert (checks.token, checks.loopback) == (TOKEN.encode(), False)


@pytest.mark.parametrize("content, message", [
    ("", "token file {path} is empty"),
    (" \n\t\n", "token file {path} is empty"),
    ("two words", "token file {path}: the token must be one word of printable ASCII "
                  "(at most 4096 characters)"),
    ("tökén", "token file {path}: the token must be one word of printable ASCII "
              "(at most 4096 characters)"),
    ("x" * 4097, "token file {path}: the token must be one word of printable ASCII "
                 "(at most 4096 characters)"),
    ("x" * 70000, "token file {path} is over 65536 bytes"),
])
def test_a_token_file_that_cannot_be_used_names_the_file(tmp_path, content, message):
    path = tmp_path / "token"
    path.write_text(content)
    with pytest.raises(AccessConfigError) as info:
        Access.from_options("127.0.0.1", str(path))
    assert info.value.message == message.format(path=path)


def test_an_unreadable_token_file_names_the_file(tmp_path):
    with pytest.raises(AccessConfigError) as info:
        read_token(str(tmp_path / "absent"))
    assert info.value.message == f"token file {tmp_path / 'absent'}: No such file or directory"
    with pytest.raises(AccessConfigError) as info:
        read_token(str(tmp_path))
    assert info.value.message == f"token file {tmp_path}: Is a directory"


# -- requests -----------------------------------------------------------------------------

class Api:
    def __init__(self, checks=None):
        self.app = RestApp(Manager().api, checks)

    def call(self, method, path, body=None, content_type=None, host="127.0.0.1:8080",
             **headers):
        req = webob.Request.blank(path, method=method)
        req.environ["HTTP_HOST"] = host
        if body is not None:
            req.body = body if isinstance(body, bytes) else json.dumps(body).encode()
        if content_type is not None:
            req.environ["CONTENT_TYPE"] = content_type
        for name, value in headers.items():
            req.environ["HTTP_" + name.upper()] = value
        resp = req.get_response(self.app)
        assert "Traceback" not in resp.text
        return resp

    def table(self):
        auth = {"authorization": f"Bearer {TOKEN}"}
        return (self.call("GET", "/ipvs", **auth).text, self.call("GET", "/ipvs/rules", **auth).text)


def envelope(resp, status, kind):
    assert resp.status_int == status, resp.text
    assert resp.content_type == JSON
    doc = json.loads(resp.body)
    assert set(doc) == {"error"} and (doc["error"]["status"], doc["error"]["kind"]) == (status, kind)
    return doc["error"]["message"]


@pytest.fixture
def guarded():
    api = Api(Access(TOKEN, loopback=True))
    resp = api.call("POST", "/ipvs/services", {"protocol": "tcp", "address": "10.0.0.100",
                                               "port": 80}, JSON, authorization=f"Bearer {TOKEN}")
    assert resp.status_int == 201
    return api


@pytest.mark.parametrize("method, path, body", [
    ("GET", "/ipvs", None), ("GET", "/ipvs/rules", None), ("GET", "/ipvs/nothing", None),
    ("GET", "/ipvs/%ff", None), ("DELETE", SVC, None), ("POST", "/ipvs/zero", None),
    ("PATCH", SVC, {"scheduler": "rr"}),
])
@pytest.mark.parametrize("authorization, message", [
    (None, "this API needs 'Authorization: Bearer TOKEN' (lvsadm reads the token from "
           "--token-file FILE or $LVSADM_TOKEN)"),
    ("Bearer wrong", "the bearer token is wrong"),
    (f"Bearer {TOKEN}x", "the bearer token is wrong"),
    (f"Bearer {TOKEN[:-1]}", "the bearer token is wrong"),
    (f"Basic {TOKEN}", "Authorization 'Basic' is not 'Bearer TOKEN'"),
    ("Bearer", "the bearer token is wrong"),
    ("Bearer \xff", "the bearer token is wrong"),
])
def test_with_a_token_every_request_needs_it(guarded, method, path, body, authorization, message):
    before = guarded.table()
    headers = {"authorization": authorization} if authorization is not None else {}
    resp = guarded.call(method, path, body, JSON if body else None, **headers)
    assert envelope(resp, 401, "unauthorized") == message
    assert resp.headers["WWW-Authenticate"] == 'Bearer realm="lvs_app"'
    assert guarded.table() == before


def test_the_right_token_is_compared_in_constant_time(guarded, monkeypatch):
    seen = []
    real = access.hmac.compare_digest

    def compare_digest(a, b):
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(access.hmac, "compare_digest", compare_digest)
    for scheme in ("Bearer", "bearer", "BEARER"):
        assert guarded.call("GET", "/ipvs", authorization=f"{scheme}  {TOKEN} ").status_int == 200
    assert seen == [(TOKEN.encode(), TOKEN.encode())] * 3


@pytest.mark.parametrize("host", ["localhost", "localhost:8080", "LocalHost:1", "127.0.0.1",
                                  "127.0.0.1:8080", "127.9.8.7:65535", "[::1]", "[::1]:8080"])
def test_on_loopback_the_host_header_must_name_loopback(host):
    assert Api().call("GET", "/ipvs", host=host).status_int == 200


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8080", "127.0.0.1.nip.io",
                                  "localhost.evil.example", "", "::1", "[::1]x", "[127.0.0.1]",
                                  "127.0.0.1:80:80", "127.0.0.1:", "0.0.0.0:8080",
                                  "[::ffff:127.0.0.1]", "10.0.0.1:8080", "localhost,evil.example"])
def test_dns_rebinding_a_host_that_is_not_loopback_is_421(host):
    api = Api()
    before = api.table()
    for method, body, ctype in (("GET", None, None),
                                ("POST", {"protocol": "tcp", "address": "10.0.0.1"}, JSON)):
        message = envelope(api.call(method, "/ipvs/services", body, ctype, host=host),
                           421, "misdirected")
        assert message == (f"Host {host!r} is not this controller: REST listens on loopback "
                           "and answers localhost, 127.0.0.1 or [::1] only")
    assert api.table() == before


def test_beyond_loopback_the_token_decides_not_the_host():
    api = Api(Access(TOKEN, loopback=False))
    assert api.call("GET", "/ipvs", host="lvs.example.com",
                    authorization=f"Bearer {TOKEN}").status_int == 200


@pytest.mark.parametrize("method, path, content_type, wanted", [
    ("POST", "/ipvs/services", "text/plain", JSON),
    ("POST", "/ipvs/services", "application/x-www-form-urlencoded", JSON),
    ("POST", "/ipvs/services", "multipart/form-data; boundary=x", JSON),
    ("POST", "/ipvs/services", None, JSON),
    ("POST", "/ipvs/services", "application/jsonx", JSON),
    ("PATCH", SVC, "text/plain;charset=utf-8", JSON),
    ("PUT", "/ipvs/timeouts", "application/x-www-form-urlencoded", JSON),
    ("PUT", "/ipvs/settings", "text/plain", JSON),
    ("POST", "/ipvs/marks", "text/plain", JSON),
    ("PUT", "/ipvs/rules", "application/x-www-form-urlencoded", "text/plain"),
    ("POST", "/ipvs/rules", "application/json", "text/plain"),
    ("POST", "/ipvs/rules", "multipart/form-data", "text/plain"),
    ("POST", "/ipvs/rules", None, "text/plain"),
    ("POST", "/ipvs/zero", "application/x-www-form-urlencoded", None),
    ("POST", "/ipvs/zero", "multipart/form-data", None),
    ("POST", "/ipvs/zero", "text/plain", None),
    ("DELETE", SVC, "application/x-www-form-urlencoded", None),
    ("DELETE", "/ipvs/services", "text/plain", None),
])
def test_a_write_with_the_wrong_content_type_is_415_and_changes_nothing(
        guarded, method, path, content_type, wanted):
    before = guarded.table()
    body = b"-C\n" if path.endswith("rules") else b'{"protocol": "udp", "address": "10.0.0.1"}'
    resp = guarded.call(method, path, body, content_type, authorization=f"Bearer {TOKEN}")
    message = envelope(resp, 415, "unsupported-media-type")
    media = (content_type or "").partition(";")[0]
    if wanted is None:
        assert message == f"{method} {path} takes no body; got Content-Type {media!r}"
    else:
        got = f"Content-Type {media!r}" if media else "no Content-Type"
        assert message == f"{method} {path}: send the body as Content-Type: {wanted} (got {got})"
    assert guarded.table() == before


@pytest.mark.parametrize("method, path, body, content_type, status", [
    ("POST", "/ipvs/services", {"protocol": "udp", "address": "10.0.0.1", "port": 53},
     "application/json; charset=utf-8", 201),
    ("PATCH", SVC, {"scheduler": "rr"}, "Application/JSON", 200),
    ("POST", "/ipvs/rules", b"-A -u 10.0.0.1:54 -s rr\n", "text/plain; charset=utf-8", 200),
    ("PUT", "/ipvs/rules", b"-A -u 10.0.0.1:54 -s rr\n", "text/plain", 200),
    ("POST", "/ipvs/zero", None, None, 204),
    ("POST", f"{SVC}/zero", None, JSON, 204),
    ("DELETE", SVC, None, None, 204),
])
def test_writes_with_the_right_content_type_pass(guarded, method, path, body, content_type, status):
    resp = guarded.call(method, path, body, content_type, authorization=f"Bearer {TOKEN}")
    assert resp.status_int == status, resp.text


@pytest.mark.parametrize("headers", [
    {"origin": "http://evil.example"}, {"origin": "null"}, {"origin": "http://127.0.0.1:8080"},
    {"sec_fetch_site": "cross-site"}, {"sec_fetch_site": "same-site"},
    {"sec_fetch_site": "same-origin"},
])
def test_writes_from_web_pages_are_403(headers):
    api = Api()
    before = api.table()
    resp = api.call("POST", "/ipvs/rules", b"-A -t 10.0.0.1:80 -s rr #=", "text/plain", **headers)
    message = envelope(resp, 403, "forbidden")
    assert message.startswith("changes from web pages are refused (Origin ")
    assert message.endswith("; use lvsadm or curl")
    assert api.table() == before
    assert api.call("GET", "/ipvs", **headers).status_int == 200    # reads are not changes


def test_without_a_token_the_table_is_open_on_loopback():
    api = Api()
    assert api.call("POST", "/ipvs/services", {"protocol": "tcp", "address": "10.0.0.1",
                                               "port": 80}, JSON).status_int == 201
    assert api.call("POST", "/ipvs/zero", sec_fetch_site="none").status_int == 204


def test_the_status_page_is_public_its_data_and_metrics_are_not(guarded):
    page = guarded.call("GET", "/status")
    assert page.status_int == 200 and page.content_type == "text/html"
    assert "Content-Security-Policy" in page.headers
    assert guarded.call("HEAD", "/status").status_int == 200
    assert "/ipvs" in page.text and TOKEN not in page.text
    envelope(guarded.call("GET", "/ipvs"), 401, "unauthorized")
    envelope(guarded.call("GET", "/metrics"), 401, "unauthorized")
    metrics = guarded.call("GET", "/metrics", authorization=f"Bearer {TOKEN}")
    assert metrics.status_int == 200 and "lvs_ipvs_backend_weight" in metrics.text
    # the Host check still holds, and nothing but a read is public
    envelope(guarded.call("GET", "/status", host="evil.example:8080"), 421, "misdirected")
    envelope(guarded.call("POST", "/status", b"x", "text/plain"), 401, "unauthorized")
    envelope(guarded.call("POST", "/status", b"x", "text/plain",
                          authorization=f"Bearer {TOKEN}"), 405, "method-not-allowed")
