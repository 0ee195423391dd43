"""Two controllers, one master: the backup takes over when the master dies.

The master is the lab's Manager; the backup is a second Manager with the
same rules file, connected to the same fake switch.  The backup looks at
the master through ``fetch`` (a stub here, REST in life).
"""

import pytest
from ryu.ofproto import ofproto_v1_3 as ofp

from lvs_app.ha import BACKUP, MASTER, MISSES, HighAvailability
from lvs_app.manager import Manager
from lvs_app.rest import RestApp
from tests.behaviour.conftest import DirectorLab, InProcessClient, LabDatapath

RS = ("10.0.0.11", "10.0.0.12", "10.0.0.13")
CLIENTS = ("10.0.0.1", "10.0.0.2", "10.0.0.3")


class Peer:
    """What the backup sees of the master's /ipvs/ha."""

    def __init__(self):
        self.alive = True

    def __call__(self, url):
        if not self.alive:
            raise OSError("connection refused")
        return {"role": MASTER}


@pytest.fixture
def pair(tmp_path):
    lab = DirectorLab(rules_path=str(tmp_path / "lvs.rules"))
    lab.lvsadm("-A -t 10.0.0.100:80 -s rr -p 300")
    for rs in RS:
        lab.lvsadm(f"-a -t 10.0.0.100:80 -r {rs} -g")
    peer = Peer()
    ha = HighAvailability(BACKUP, "http://127.0.0.1:8080", fetch=peer,
                          clock=lambda: 1_000_000 + lab.clock.now)
    backup = Manager(rules_path=lab.rules_path, clock=lambda: lab.clock.now, strict=True,
                     ha=ha)
    backup.load_rules()
    datapath = LabDatapath(lab)
    sent = []
    real_send = datapath.send_msg
    datapath.send_msg = lambda msg: (sent.append(msg), real_send(msg))
    backup.switch_connected(1, datapath, {20: "vxlan0"})
    lab._settle()
    return lab, backup, peer, sent


def test_a_backup_asks_for_the_slave_role_and_changes_nothing(pair):
    lab, backup, _, sent = pair
    [role] = sent
    assert type(role).__name__ == "OFPRoleRequest" and role.role == ofp.OFPCR_ROLE_SLAVE
    assert backup.director.switches == {}
    answer = InProcessClient(RestApp(backup.api))
    with pytest.raises(Exception, match="high-availability backup"):
        answer.request("POST", "/ipvs/services", {"protocol": "tcp", "address": "10.0.0.100",
                                                  "port": 81})
    assert answer.request("GET", "/ipvs/ha")["role"] == BACKUP


def test_the_backup_follows_the_masters_rules_file(pair):
    lab, backup, _, _ = pair
    lab.lvsadm("-A -u 10.0.0.100:53 -s rr")              # through the master
    lab.advance(2)
    backup.tick()
    assert len(backup.api.table.services) == 2


def test_the_backup_takes_over_and_keeps_every_connection_and_template(pair):
    lab, backup, peer, sent = pair
    homes = {c: lab.connect(c, 40000 + i) for i, c in enumerate(CLIENTS)}
    for _ in range(5):
        lab.advance(1)
        backup.tick()
    assert backup.ha.role == BACKUP                         # the master answers
    peer.alive = False                                      # kill -9 of the master
    for _ in range(MISSES):
        lab.advance(1)
        backup.tick()
    assert backup.ha.role == MASTER
    roles = [m for m in sent if type(m).__name__ == "OFPRoleRequest"]
    assert roles[-1].role == ofp.OFPCR_ROLE_MASTER and roles[-1].generation_id > roles[0].generation_id
    # the switch now talks to the new master: its flows are read back
    lab.manager, lab.director = backup, backup.director
    lab._settle()
    assert sorted(str(t.dest.address) for t in backup.director.switches[1].templates.values()) \
        == sorted(homes.values())
    for i, c in enumerate(reversed(CLIENTS)):
        assert lab.connect(c, 41000 + i) == homes[c]        # templates kept
    assert lab.server_of(lab.syn(CLIENTS[0], 40000, flags="A")) == homes[CLIENTS[0]]
    assert backup.api.read_only is None


def test_a_master_that_finds_a_master_starts_as_backup():
    ha = HighAvailability(MASTER, "http://127.0.0.1:8081", fetch=lambda url: {"role": MASTER})
    ha.start()
    assert ha.role == BACKUP
    alone = HighAvailability(MASTER, "http://127.0.0.1:8081",
                             fetch=lambda url: (_ for _ in ()).throw(OSError("refused")))
    alone.start()
    assert alone.role == MASTER


def test_a_backup_counts_misses_and_a_live_master_resets_them():
    answers = iter([None, None, {"role": MASTER}, None, None, None])

    def fetch(url):
        answer = next(answers)
        if answer is None:
            raise OSError("timed out")
        return answer
    ha = HighAvailability(BACKUP, "http://peer", fetch=fetch)
    assert [ha.heartbeat() for _ in range(6)] == [False, False, False, False, False, True]
    with pytest.raises(ValueError, match="must be master or backup"):
        HighAvailability("leader", "http://peer")


def test_the_new_master_takes_the_counters_the_old_one_saved(pair):
    lab, backup, peer, _ = pair
    lab.connect(CLIENTS[0], 42000)
    for _ in range(3):
        lab.syn(CLIENTS[0], 42000, flags="A")
    lab.advance(5)                                          # polled and saved
    before = lab.client.request("GET", "/ipvs")["services"][0]["stats"]
    assert before["inpkts"] >= 4 and before["conns"] == 1
    peer.alive = False
    for _ in range(MISSES):
        lab.advance(1)
        backup.tick()
    assert backup.ha.role == MASTER
    # the counters the master saved (its file), and the flows' counts at the
    # new master's first poll of the switch
    lab.manager, lab.director = backup, backup.director
    lab._settle()
    new_master = InProcessClient(RestApp(backup.api))
    assert new_master.request("GET", "/ipvs")["services"][0]["stats"] == before   # at once
    lab.advance(3)
    after = new_master.request("GET", "/ipvs")["services"][0]["stats"]
    assert after == before


def test_a_backup_never_writes_the_counters_file(pair, tmp_path):
    """The backup's counters are the file's as it last read it: written back,
    they would take the master's newer ones away at the takeover.  (Nothing
    makes a backup's counters change today; should something, it must not
    write them.)"""
    lab, backup, _, _ = pair
    lab.connect(CLIENTS[0], 43000)
    lab.advance(3)                                      # the master polls and saves
    path = tmp_path / "lvs.rules.stats"
    saved = path.read_text()
    backup.traffic.dirty = True
    for _ in range(3):
        lab.advance(1)
        backup.tick()
    assert path.read_text() == saved
