"""OpenFlow over TLS in a lab: certificates from ``ovs-pki``, both ends configured.

    tls = SwitchTls(tmp_dir)                  # a CA, a controller and a switch certificate
    lab = Lab("nat", openflow_tls=tls)        # ryu-manager --ctl-privkey ... --ca-certs ...
    lab.start()                               # the switch connects to ssl:127.0.0.1:PORT

The controller accepts only switches whose certificate the lab's switch CA
signed (``--ca-certs``); the switch accepts only a controller whose
certificate the controller CA signed (``ovs-vsctl set-ssl``).  Open vSwitch's
SSL settings are global: :meth:`switch_teardown` removes them again.
"""

from pathlib import Path

from lvslab_procs import run


class SwitchTls:
    """A public-key infrastructure for one lab, made with ovs-pki."""

    protocol = "ssl"

    def __init__(self, directory):
        self.dir = Path(directory)
        pki = self.dir / "pki"
        run(["ovs-pki", "--dir", str(pki), "--force", "init"])
        for name, kind in (("ctl", "controller"), ("sw", "switch")):
            # a relative prefix: ovs-pki puts it in the subject, which has a length limit
            run(["ovs-pki", "--dir", str(pki), "--force", "req+sign", name,
                 kind], cwd=str(self.dir))
        self.ctl_key, self.ctl_cert = self.dir / "ctl-privkey.pem", self.dir / "ctl-cert.pem"
        self.sw_key, self.sw_cert = self.dir / "sw-privkey.pem", self.dir / "sw-cert.pem"
        self.switch_ca = pki / "switchca" / "cacert.pem"
        self.controller_ca = pki / "controllerca" / "cacert.pem"

    def controller_args(self, of_port):
        return ["--ctl-privkey", str(self.ctl_key), "--ctl-cert", str(self.ctl_cert),
                "--ca-certs", str(self.switch_ca), "--ofp-ssl-listen-port", str(of_port)]

    def switch_setup(self):
        run(["ovs-vsctl", "--timeout=10", "set-ssl", str(self.sw_key), str(self.sw_cert),
             str(self.controller_ca)])

    def switch_teardown(self):
        run(["ovs-vsctl", "--timeout=10", "del-ssl"], check=False)
