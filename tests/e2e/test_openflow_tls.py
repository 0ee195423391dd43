"""OpenFlow over TLS: the switch and the controller check each other's certificates.

Certificates from ovs-pki (mininet/lvslab_tls.py); ryu-manager with
--ctl-privkey/--ctl-cert/--ca-certs and the switch on ssl:.  A switch that
reconnects is accepted again (Ryu's TLS server needed a fix for that, see
lvs_app/compat.py), and a connection without a certificate is turned away.
"""

import socket
import ssl

import pytest
from lvslab import run, wait_or_raise
from lvslab_tls import SwitchTls

VIP = "10.0.0.100"


@pytest.fixture
def tls_lab(lab_factory, tmp_path):
    return lab_factory("nat", fresh=True, openflow_tls=SwitchTls(tmp_path))


def test_the_director_works_over_tls_and_a_reconnect_is_accepted(tls_lab):
    lab = tls_lab
    controllers = run(["ovs-vsctl", "get-controller", lab.switch_name]).stdout.split()
    assert controllers == [f"ssl:127.0.0.1:{lab.of_port}"]
    lab.lvsadm("-C")
    lab.lvsadm(f"-A -t {VIP}:80 -s rr")
    for rs in ("10.0.0.11", "10.0.0.12", "10.0.0.13"):
        lab.lvsadm(f"-a -t {VIP}:80 -r {rs} -m")
    answers = {lab.curl("c1", f"http://{VIP}/").strip() for _ in range(3)}
    assert answers == {"rs1", "rs2", "rs3"}
    # the switch reconnects (its controller connection is reset): accepted again
    log_mark = len(lab.controller_log())
    run(["ovs-vsctl", "--timeout=10", "set-controller", lab.switch_name, "tcp:127.0.0.1:1"])
    run(["ovs-vsctl", "--timeout=10", "set-controller", lab.switch_name,
         f"ssl:127.0.0.1:{lab.of_port}"])
    wait_or_raise(lambda: "recovered" in lab.controller_log()[log_mark:], 20,
                  "the switch to reconnect over TLS")
    assert lab.curl("c2", f"http://{VIP}/").strip() in {"rs1", "rs2", "rs3"}


def test_a_client_without_a_switch_certificate_is_refused(tls_lab):
    lab = tls_lab
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", lab.of_port), timeout=5) as raw:
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            with context.wrap_socket(raw) as conn:
                conn.sendall(b"\x04\x00\x00\x08\x00\x00\x00\x01")   # an OpenFlow HELLO
                if not conn.recv(8):
                    raise ConnectionError("closed")
