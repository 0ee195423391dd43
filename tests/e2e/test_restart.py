"""kill -9 of the controller breaks no connection and forgets no template.

The switch keeps its flows while the controller is away (fail mode secure);
the controller started again with the same rules file reads them back.
"""

import re

import pytest

VIP = "10.0.0.100"
SERVERS = ("10.0.0.11", "10.0.0.12", "10.0.0.13")
METHODS = {"nat": "-m", "droute": "-g", "tunnel": "-i"}


@pytest.fixture(scope="module", params=list(METHODS))
def restart_lab(request, lab_factory, tmp_path_factory):
    rules = tmp_path_factory.mktemp(request.param) / "lvs.rules"
    return lab_factory(request.param, rules_file=rules)


def fetch(lab, client):
    return lab.curl(client, f"http://{VIP}/").strip()


def test_kill_9_breaks_no_connection_and_keeps_every_template(restart_lab):
    lab = restart_lab
    lab.lvsadm("-C")
    lab.lvsadm(f"-A -t {VIP}:80 -s rr -p 600")
    for rs in SERVERS:
        lab.lvsadm(f"-a -t {VIP}:80 -r {rs} {METHODS[lab.name]}")
    # a connection that is open across the restart: its request comes after it
    long_lived = lab.probe_background("c1", "tcp-idle", VIP, 80, "--sport", 44000,
                                      "--idle", 15, "--timeout", 40)
    clients = lab.clients
    homes = {c: fetch(lab, c) for c in clients}
    assert len(set(homes.values())) == len(clients)           # rr over the clients
    before = lab.lvsadm("-L -c -n").stdout
    templates = sorted(re.findall(r"NONE +(\S+) +\S+ +(\S+)", before))
    assert len(templates) == len(clients), before

    lab.kill_controller()
    lab.restart_controller()

    after = lab.lvsadm("-L -c -n").stdout
    assert sorted(re.findall(r"NONE +(\S+) +\S+ +(\S+)", after)) == templates, after
    assert re.search(rf"TCP \d\d:\d\d  \S+ +{lab.ip('c1')}:44000 +{VIP}:80 ", after), after
    out, _ = long_lived.communicate(timeout=45)
    assert long_lived.returncode == 0 and out.strip() == homes["c1"], out
    for client in reversed(clients):                           # asked in reverse order
        assert fetch(lab, client) == homes[client]
    # ActiveConn/InActConn/PersistConn add up to what is listed
    rows = [line.split() for line in lab.lvsadm("-L -n --persistent-conn").stdout.splitlines()
            if line.startswith("  -> 10.")]
    assert sum(int(r[3]) for r in rows) == len(clients)


def test_switch_persistence_serves_repeat_clients_while_the_controller_is_down(restart_lab):
    """--pe switch: a client with a template needs no controller for its next
    connections: they are answered while ryu-manager is dead, by the same
    server; the restarted controller reads the templates' flows back, and
    deleting a server then sends its clients elsewhere."""
    lab = restart_lab
    lab.lvsadm("-C")
    lab.lvsadm(f"-A -t {VIP}:80 -s rr -p 600 --pe switch")
    for rs in SERVERS:
        lab.lvsadm(f"-a -t {VIP}:80 -r {rs} {METHODS[lab.name]}")
    homes = {c: fetch(lab, c) for c in lab.clients}
    assert len(set(homes.values())) == len(lab.clients)

    lab.kill_controller()
    try:
        for client in lab.clients:
            assert [fetch(lab, client) for _ in range(3)] == [homes[client]] * 3
    finally:
        lab.restart_controller()

    assert len(re.findall(r"NONE ", lab.lvsadm("-L -c -n").stdout)) == len(lab.clients)
    assert fetch(lab, "c1") == homes["c1"]
    moved = homes["c1"]
    lab.lvsadm(f"-d -t {VIP}:80 -r {lab.ip(moved)}")
    again = fetch(lab, "c1")
    assert again != moved and again in lab.servers
    assert fetch(lab, "c1") == again
