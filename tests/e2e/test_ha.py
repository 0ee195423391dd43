"""Two controllers: kill -9 of the master breaks no connection; the backup serves.

The lab's controller is the master, a second ryu-manager (mininet/lvslab_ha.py)
the backup, both with the same rules file; the switch connects to both.
"""

import re

import pytest
from lvslab_ha import BackupController, BackupPorts, master_args

VIP = "10.0.0.100"
SERVERS = ("10.0.0.11", "10.0.0.12", "10.0.0.13")


@pytest.fixture
def ha_lab(lab_factory, tmp_path):
    ports = BackupPorts()
    lab = lab_factory("droute", fresh=True, rules_file=tmp_path / "lvs.rules",
                      extra_args=master_args(ports))
    backup = BackupController(lab, ports)
    backup.start()
    return lab, backup


def fetch(lab, client):
    return lab.curl(client, f"http://{VIP}/").strip()


def test_the_backup_takes_over_without_breaking_a_connection(ha_lab):
    lab, backup = ha_lab
    lab.lvsadm(f"-A -t {VIP}:80 -s rr -p 600")
    for rs in SERVERS:
        lab.lvsadm(f"-a -t {VIP}:80 -r {rs} -g")
    assert "high-availability backup" in backup.lvsadm("-A", "-t", f"{VIP}:81").stderr
    long_lived = lab.probe_background("c1", "tcp-idle", VIP, 80, "--sport", 45000,
                                      "--idle", 12, "--timeout", 40)
    homes = {c: fetch(lab, c) for c in lab.clients}

    lab.kill_controller()                                   # kill -9 of the master
    backup.wait_takeover()

    listing = backup.lvsadm("-L", "-c", "-n").stdout
    assert len(re.findall(r" NONE ", listing)) == len(lab.clients), listing
    out, _ = long_lived.communicate(timeout=45)
    assert long_lived.returncode == 0 and out.strip() == homes["c1"], out
    for client in reversed(lab.clients):
        assert fetch(lab, client) == homes[client]
    assert backup.lvsadm("-a", "-t", f"{VIP}:80", "-r", "10.0.0.14", "-g").returncode == 0
