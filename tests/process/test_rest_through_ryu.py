"""Malformed requests through Ryu's real WSGI stack (eventlet decodes the path first)."""

from http.client import HTTPConnection
import json
import socket

import pytest

from conftest import Controller, assert_clean_log


@pytest.fixture(scope="module")
def ctl(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("rest")
    controller = Controller(workdir, rules=workdir / "lvs.rules").start()
    assert controller.lvsadm("-A", "-t", "10.0.0.100:80", "-s", "rr").returncode == 0
    yield controller
    controller.stop()
    assert_clean_log(controller.log_text())


def http(ctl, method, path, body=None, headers=None):
    """One request with the path sent exactly as given; (status, headers, text).

    A generator body is sent chunked (http.client does that without a length)."""
    conn = HTTPConnection("127.0.0.1", ctl.rest_port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read().decode("utf-8", "replace")
    finally:
        conn.close()


def error(result, status):
    code, headers, text = result
    assert "Traceback" not in text
    assert code == status, text
    assert headers.get_content_type() == "application/json", text
    doc = json.loads(text)
    assert doc["error"]["status"] == status
    return doc["error"]["message"]


def table(ctl):
    return http(ctl, "GET", "/ipvs/rules")[2], http(ctl, "GET", "/ipvs")[2]


@pytest.mark.parametrize("path, shown", [
    ("/ipvs/services/%ff%fe", r"/ipvs/services/\xff\xfe"),
    ("/ipvs/%ff", r"/ipvs/\xff"),
    ("/ipvs/services/tcp-10.0.0.100-80/servers/%c3%28", r"/ipvs/services/tcp-10.0.0.100-80/servers/\xc3("),
])
def test_a_path_that_is_not_utf8_is_a_json_400(ctl, path, shown):
    before = table(ctl)
    assert error(http(ctl, "GET", path), 400) == \
        f"request path {shown} is not UTF-8 once percent-decoded"
    assert error(http(ctl, "DELETE", path), 400).startswith("request path")
    assert table(ctl) == before


def test_json_nested_1000_deep_is_a_json_400(ctl):
    before = table(ctl)
    body = "[" * 1000 + "]" * 1000
    assert error(http(ctl, "POST", "/ipvs/services", body,
                      {"Content-Type": "application/json"}), 400).endswith(
        "request body is nested deeper than 32 levels")
    assert table(ctl) == before


def test_a_body_over_the_limit_is_413_and_the_server_carries_on(ctl):
    before = table(ctl)
    body = b'{"protocol": "tcp", "x": "' + b"x" * (1 << 20) + b'"}'
    assert error(http(ctl, "POST", "/ipvs/services", body,
                      {"Content-Type": "application/json"}), 413) == \
        f"POST /ipvs/services: request body of {len(body)} bytes is over the limit of 1048576 bytes"
    rules = "-A -t 10.0.0.1:80 -s rr\n" * 800_000          # 19 MB of rules text
    assert error(http(ctl, "PUT", "/ipvs/rules", rules.encode(),
                      {"Content-Type": "text/plain"}), 413).endswith(
        "over the limit of 16777216 bytes")
    assert table(ctl) == before


def test_a_chunked_body_over_the_limit_is_413(ctl):
    before = table(ctl)

    def chunks():
        for _ in range(20):
            yield b"x" * 65536

    assert error(http(ctl, "POST", "/ipvs/services", chunks(),
                      {"Content-Type": "application/json"}),
                 413) == "POST /ipvs/services: request body is over the limit of 1048576 bytes"
    assert table(ctl) == before


def test_a_chunked_body_under_the_limit_is_read(ctl):
    def chunks():
        yield b"-A -u 10.0.0.100:53 "
        yield b"-s rr\n"

    code, _, text = http(ctl, "POST", "/ipvs/rules", chunks(),
                         {"Content-Type": "text/plain"})
    assert code == 200 and "-A -u 10.0.0.100:53 -s rr\n" in text
    assert ctl.lvsadm("-D", "-u", "10.0.0.100:53").returncode == 0


def test_garbage_on_the_socket_gets_no_traceback(ctl):
    close = b"Host: 127.0.0.1\r\nConnection: close\r\n"
    for raw in (b"GET /ipvs/\xff\xfe HTTP/1.1\r\n" + close + b"\r\n",
                b"POST /ipvs/services HTTP/1.1\r\n" + close + b"Content-Length: x\r\n\r\n",
                b"GET /ipvs/" + b"a" * 9000 + b" HTTP/1.1\r\n" + close + b"\r\n",
                b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64 + b"\r\n\r\n"):  # TLS
        with socket.create_connection(("127.0.0.1", ctl.rest_port), timeout=10) as sock:
            sock.sendall(raw)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        assert b"Traceback" not in answer
        # what eventlet cannot parse it refuses itself, with a plain 4xx (an
        # HTTP/0.9-style page for a request line that is not HTTP at all)
        if answer.startswith(b"HTTP/"):
            assert answer.split(b" ", 2)[1].startswith(b"4"), answer
        else:
            assert b"Error code: 400" in answer, answer
    assert http(ctl, "GET", "/ipvs")[0] == 200


def test_dns_rebinding_form_posts_and_web_pages_are_refused_through_ryu(ctl):
    before = table(ctl)
    assert error(http(ctl, "GET", "/ipvs", headers={"Host": "rebound.example:8080"}), 421) == (
        "Host 'rebound.example:8080' is not this controller: REST listens on loopback and "
        "answers localhost, 127.0.0.1 or [::1] only")
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    assert error(http(ctl, "POST", "/ipvs/services", "protocol=tcp", form), 415).startswith(
        "POST /ipvs/services: send the body as Content-Type: application/json")
    assert error(http(ctl, "POST", "/ipvs/rules", "-C #=", form), 415).startswith(
        "POST /ipvs/rules: send the body as Content-Type: text/plain")
    # no Content-Type at all: eventlet passes "text/plain" on; it is still refused
    assert error(http(ctl, "POST", "/ipvs/services", "{}"), 415).endswith("(got no Content-Type)")
    assert error(http(ctl, "POST", "/ipvs/zero", "", form), 415) == \
        "POST /ipvs/zero takes no body; got Content-Type 'application/x-www-form-urlencoded'"
    page = {"Content-Type": "text/plain", "Origin": "http://attacker.example"}
    assert error(http(ctl, "POST", "/ipvs/rules", "-C #=", page), 403).startswith(
        "changes from web pages are refused")
    assert table(ctl) == before
    assert http(ctl, "POST", "/ipvs/zero")[0] == 204          # bodyless, no Content-Type
