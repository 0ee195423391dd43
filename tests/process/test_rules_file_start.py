"""The rules file at ``ryu-manager lvs_app`` start: stale temporaries, truncation."""

from conftest import Controller, assert_clean_log, refused_start


def test_start_removes_temporaries_a_killed_writer_left(tmp_path):
    rules = tmp_path / "lvs.rules"
    rules.write_text("-A -t 10.0.0.100:80 -s rr\n")
    (tmp_path / ".lvs-rules-lvs.rules.k1ll3d00").write_text("-A -t 10.0.0.1:80 -s r")
    (tmp_path / ".lvs-ids-lvs.rules.ids.k1ll3d00").write_text("{")
    ctl = Controller(tmp_path, rules=rules).start()
    try:
        assert ctl.lvsadm("-S", "-n").stdout == "-A -t 10.0.0.100:80 -s rr\n"
    finally:
        ctl.stop()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".lvs-")) == []
    assert_clean_log(ctl.log_text())


def test_a_truncated_rules_file_stops_the_start_naming_both_files(tmp_path):
    rules = tmp_path / "lvs.rules"
    rules.write_text("")
    (tmp_path / "lvs.rules.prev").write_text("-A -t 10.0.0.100:80 -s rr\n")
    log = refused_start(Controller(tmp_path, rules=rules).start(expect_ready=False))
    assert f"lvs_app: rules file {rules} is empty but {rules}.prev is not (26 bytes)" in log
    assert rules.read_text() == ""
