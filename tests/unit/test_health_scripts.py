"""The script runner of the health checks: real processes, exit codes, time limits."""

import subprocess
import sys

from lvs_app.health import scripts
from lvs_app.health.scripts import ScriptRunner


def runner():
    reports = []
    run = ScriptRunner(lambda func, *args: func(*args),
                       lambda done, rc, detail: reports.append((done, rc, detail)))
    return run, reports


def test_exit_codes_come_back_with_the_callback():
    run, reports = runner()
    run([sys.executable, "-c", "raise SystemExit(3)"], 5, done="token")
    assert reports == [("token", 3, "")]
    assert run.running == 0


def test_a_script_over_its_time_is_killed():
    run, reports = runner()
    run([sys.executable, "-c", "import time; time.sleep(30)"], 0.2, done="t")
    assert reports == [("t", None, "killed after 0.2 s")]


def test_a_script_that_cannot_start_is_a_failure_with_the_reason():
    run, reports = runner()
    run(["/nonexistent/check"], 1, done="t")
    (_, rc, detail), = reports
    assert rc is None and detail.startswith("cannot run:") and "/nonexistent/check" in detail
    run(["/bin/true"], 1, user="no-such-user-here", done="u")
    assert reports[1][1] is None and reports[1][2].startswith("cannot run:")


def test_notify_scripts_report_nothing_and_too_many_at_once_are_refused(monkeypatch):
    started = []
    reports = []
    run = ScriptRunner(lambda func, *args: started.append(args),
                       lambda done, rc, detail: reports.append((done, rc, detail)),
                       popen=subprocess.Popen)
    monkeypatch.setattr(scripts, "MAX_RUNNING", 2)
    run(["/bin/true"], 1)
    run(["/bin/true"], 1, done="second")
    run(["/bin/true"], 1, done="third")
    assert len(started) == 2
    assert reports == [("third", None, "not started: 2 scripts running")]
