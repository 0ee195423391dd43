"""Who may use REST, with ``ryu-manager lvs_app`` as a process: where it listens, the token."""

import ipaddress
from http.client import HTTPConnection

from conftest import Controller, assert_clean_log, refused_start

TOKEN = "proc-test-token-0123456789"


def listening_addresses(port):
    """The local addresses with a TCP socket listening on ``port`` (from /proc/net)."""
    found = set()
    for table, size in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 16)):
        with open(table) as handle:
            for line in list(handle)[1:]:
                fields = line.split()
                address, hex_port = fields[1].split(":")
                if int(hex_port, 16) != port or fields[3] != "0A":       # 0A: LISTEN
                    continue
                raw = bytes.fromhex(address)
                # /proc prints each 32-bit word in host (little-endian) order
                words = b"".join(raw[i:i + 4][::-1] for i in range(0, size, 4))
                found.add(str(ipaddress.ip_address(words)))
    return found


def get(ctl, path, **headers):
    conn = HTTPConnection("127.0.0.1", ctl.rest_port, timeout=10)
    try:
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read().decode()
    finally:
        conn.close()


def test_rest_listens_on_loopback_unless_told(tmp_path):
    ctl = Controller(tmp_path, wsapi_host=None).start()
    try:
        assert listening_addresses(ctl.rest_port) == {"127.0.0.1"}
        assert ctl.lvsadm("-L", "-n").returncode == 0
    finally:
        ctl.stop()
    assert_clean_log(ctl.log_text())


def test_beyond_loopback_without_a_token_the_controller_does_not_start(tmp_path):
    ctl = Controller(tmp_path, wsapi_host="0.0.0.0").start(expect_ready=False)
    log = refused_start(ctl)
    assert ("lvs_app: REST would listen on 0.0.0.0 (--wsapi-host) without a token: give "
            "--lvs-rest-token-file FILE, or listen on 127.0.0.1 or ::1\n") in log


def test_a_token_file_that_cannot_be_used_stops_the_start(tmp_path):
    empty = tmp_path / "empty-token"
    empty.write_text("\n")
    for path, message in ((empty, f"lvs_app: token file {empty} is empty\n"),
                          (tmp_path / "absent", f"lvs_app: token file {tmp_path / 'absent'}: "
                                                "No such file or directory\n")):
        ctl = Controller(tmp_path, extra=["--lvs-rest-token-file", str(path)])
        log = refused_start(ctl.start(expect_ready=False))
        assert message in log


def test_with_a_token_every_request_carries_it_and_lvsadm_sends_it(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(f"{TOKEN}\n")
    ctl = Controller(tmp_path, wsapi_host="0.0.0.0", token=TOKEN,
                     extra=["--lvs-rest-token-file", str(token_file)]).start()
    try:
        assert listening_addresses(ctl.rest_port) == {"0.0.0.0"}
        status, headers, text = get(ctl, "/ipvs")
        assert (status, headers["WWW-Authenticate"]) == (401, 'Bearer realm="lvs_app"')
        assert '"kind": "unauthorized"' in text
        # beyond loopback the token decides, whatever the Host says
        assert get(ctl, "/ipvs", Host="lvs.example.com", Authorization=f"Bearer {TOKEN}")[0] == 200

        bare = ctl.lvsadm("-A", "-t", "10.0.0.100:80", "-s", "rr")
        assert (bare.returncode, bare.stderr) == (
            255, "this API needs 'Authorization: Bearer TOKEN' (lvsadm reads the token from "
                 "--token-file FILE or $LVSADM_TOKEN)\n")
        wrong = ctl.lvsadm("-L", "-n", env={"LVSADM_TOKEN": "nope"})
        assert (wrong.returncode, wrong.stderr) == (1, "the bearer token is wrong\n")
        added = ctl.lvsadm("-A", "-t", "10.0.0.100:80", "-s", "rr", "--token-file", str(token_file))
        assert (added.returncode, added.stderr) == (0, "")
        saved = ctl.lvsadm("-S", "-n", env={"LVSADM_TOKEN": TOKEN})
        assert saved.stdout == "-A -t 10.0.0.100:80 -s rr\n"
    finally:
        ctl.stop()
    assert_clean_log(ctl.log_text())
