"""The rules file and its ids file: durable rewrites, the previous version, clean-up."""

import os
import stat
import subprocess
import sys

import pytest

from lvs_app import atomicfile
from lvs_app.api import EMPTY_RULES, DirectorAPI
from lvs_app.ids import StableIds
from lvs_app.manager import Manager
from lvs_app.model import LvsError, service_key

SERVICE = {"protocol": "tcp", "address": "10.0.0.100", "port": 80}


@pytest.fixture
def rules(tmp_path):
    return tmp_path / "lvs.rules"


def record_syscalls(monkeypatch):
    """Record fsync (file or directory), link and replace, in order."""
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        mode = os.fstat(fd).st_mode
        events.append(("fsync-dir",) if stat.S_ISDIR(mode) else ("fsync-file", os.fstat(fd).st_ino))
        return real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", os.stat(src).st_ino, os.path.basename(dst)))
        return real_replace(src, dst)

    monkeypatch.setattr(atomicfile.os, "fsync", fsync)
    monkeypatch.setattr(atomicfile.os, "replace", replace)
    return events


def test_rules_file_is_fsynced_before_the_rename_and_the_directory_after(rules, monkeypatch):
    api = DirectorAPI(rules_path=str(rules))
    events = record_syscalls(monkeypatch)
    api.add_service(dict(SERVICE))
    renames = [e for e in events if e[0] == "replace" and e[2] == "lvs.rules"]
    assert len(renames) == 1
    where = events.index(renames[0])
    assert ("fsync-file", renames[0][1]) in events[:where]      # the new file's data
    assert ("fsync-dir",) in events[where + 1:]                  # the rename itself


def test_ids_file_is_fsynced_the_same_way(tmp_path, monkeypatch):
    ids = StableIds(str(tmp_path / "lvs.rules.ids"))
    events = record_syscalls(monkeypatch)
    ids.service(service_key("tcp", "10.0.0.100", 80))
    [rename] = [e for e in events if e[0] == "replace"]
    assert rename[2] == "lvs.rules.ids"
    assert events.index(("fsync-file", rename[1])) < events.index(rename) < \
        events.index(("fsync-dir",))


def test_each_rewrite_keeps_the_previous_version(rules):
    api = DirectorAPI(rules_path=str(rules))
    api.add_service(dict(SERVICE))
    first = rules.read_text()
    assert not os.path.exists(f"{rules}.prev")
    api.add_server("tcp-10.0.0.100-80", {"address": "10.0.0.11"})
    assert (rules.read_text(), (rules.parent / "lvs.rules.prev").read_text()) == \
        (first + "-a -t 10.0.0.100:80 -r 10.0.0.11:80 -g -w 1\n", first)
    second = rules.read_text()
    # a change that leaves the rules text as it was does not rewrite the file,
    # so FILE.prev stays the table before the last real change
    api.edit_server("tcp-10.0.0.100-80", "10.0.0.11-80", {"weight": 1})
    api.set_timeouts({"tcp": 60})
    assert (rules.read_text(), (rules.parent / "lvs.rules.prev").read_text()) == (second, first)
    api.delete_service("tcp-10.0.0.100-80")
    assert (rules.parent / "lvs.rules.prev").read_text() == second
    assert rules.read_text() == EMPTY_RULES


def test_an_empty_table_is_written_as_a_comment_and_loads_empty(rules):
    api = DirectorAPI(rules_path=str(rules))
    api.add_service(dict(SERVICE))
    api.clear()
    assert rules.stat().st_size > 0
    again = DirectorAPI(rules_path=str(rules))
    assert again.load_rules() is True and again.table.services == {}


def test_a_truncated_rules_file_with_a_previous_version_stops_the_start(rules):
    api = DirectorAPI(rules_path=str(rules))
    api.add_service(dict(SERVICE))
    api.add_server("tcp-10.0.0.100-80", {"address": "10.0.0.11"})
    rules.write_text("")                    # what a crash without fsync can leave
    again = DirectorAPI(rules_path=str(rules))
    with pytest.raises(LvsError) as info:
        again.load_rules()
    prev = f"{rules}.prev"
    assert info.value.message == (
        f"rules file {rules} is empty but {prev} is not ({os.path.getsize(prev)} bytes): it may "
        f"have been truncated; copy {prev} to {rules} to start with it, or delete {prev} to "
        "start with an empty table")
    assert "\n" not in info.value.message
    assert again.table.services == {}
    assert rules.read_text() == ""          # both files are left as they are
    os.unlink(prev)
    assert DirectorAPI(rules_path=str(rules)).load_rules() is True


def test_an_empty_rules_file_without_a_previous_version_is_an_empty_table(rules):
    rules.write_text("")
    api = DirectorAPI(rules_path=str(rules))
    assert api.load_rules() is True and api.table.services == {}


TEMPORARIES = {
    ".lvs-rules-lvs.rules.abcd1234": False,      # ours: removed
    ".lvs-rules-x9y8z7w6": False,                # the older unnamed form: removed
    ".lvs-ids-lvs.rules.ids.q1w2e3r4": False,
    ".lvs-ids-a1b2c3d4": False,
    ".lvs-rules-other.rules.abcd1234": True,     # another rules file's: kept
    ".lvs-ids-other.rules.ids.abcd1234": True,
    ".lvs-rules-lvs.rules.short": True,          # not a temporary's name: kept
    "lvs.rules.prev": True,
}


def test_stale_temporaries_of_this_file_are_removed_at_start(rules, caplog):
    for name in TEMPORARIES:
        (rules.parent / name).write_text("-A -t 10.0.0.1:80\n")
    rules.write_text("-A -t 10.0.0.100:80 -s rr\n")
    manager = Manager(rules_path=str(rules))
    assert manager.load_rules() is True
    left = {name: (rules.parent / name).exists() for name in TEMPORARIES}
    assert left == TEMPORARIES
    assert f"removed {rules.parent / '.lvs-rules-lvs.rules.abcd1234'}" in caplog.text


KILLED_WRITER = """
import os, signal, sys
from lvs_app import atomicfile
from lvs_app.api import DirectorAPI
api = DirectorAPI(rules_path=sys.argv[1])
api.add_service({"protocol": "tcp", "address": "10.0.0.100", "port": 80})
real_replace = os.replace
# killed just before the new file takes the rules file's name
os.replace = lambda src, dst: (os.kill(os.getpid(), signal.SIGKILL) if dst == sys.argv[1]
                               else real_replace(src, dst))
api.add_service({"protocol": "tcp", "address": "10.0.0.100", "port": 443})
"""


def test_a_writer_killed_before_the_rename_leaves_the_old_file_and_the_next_start_cleans_up(rules):
    result = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(rules)], timeout=60)
    assert result.returncode == -9
    assert rules.read_text() == "-A -t 10.0.0.100:80 -s wlc\n"
    stale = [p.name for p in rules.parent.iterdir() if p.name.startswith(".lvs-rules-")]
    assert len(stale) == 1
    api = DirectorAPI(rules_path=str(rules))
    assert api.load_rules() is True and len(api.table.services) == 1
    assert (rules.parent / "lvs.rules.prev").read_text() == rules.read_text()
    assert [p.name for p in rules.parent.iterdir() if p.name.startswith(".lvs-")] == []


def test_keeping_the_previous_version_works_without_hard_links(rules, monkeypatch):
    def no_links(src, dst):
        raise PermissionError(1, "Operation not permitted")

    api = DirectorAPI(rules_path=str(rules))
    api.add_service(dict(SERVICE))
    monkeypatch.setattr(atomicfile.os, "link", no_links)
    api.add_server("tcp-10.0.0.100-80", {"address": "10.0.0.11"})
    assert (rules.parent / "lvs.rules.prev").read_text() == "-A -t 10.0.0.100:80 -s wlc\n"
    assert [p.name for p in rules.parent.iterdir() if p.name.startswith(".lvs-")] == []
