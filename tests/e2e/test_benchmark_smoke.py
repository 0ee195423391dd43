"""The end-to-end speed benchmark runs: ``benchmarks/e2e_speed.py --smoke``.

A benchmark, not a test of its figures: this only checks that a short run
(three labs, a ceiling and one director case each, about 1 s of load a
case) exits 0 and prints its table, with a ceiling row that carried
connections and rows through lvs_app.  Skipped like every lab test without
root, Mininet or Open vSwitch, and without wrk, ab or nginx (with
``CI=true`` those are failures).
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
BENCHMARK = REPO / "benchmarks" / "e2e_speed.py"
CI_ENV = os.environ.get("CI", "").lower() in ("1", "true", "yes")
TOOLS = ("ab", "wrk", "/usr/sbin/nginx")
ROW = re.compile(r"^(?P<name>\S.*?)\s{2,}(?P<tool>ab|wrk|pool)\s+(?P<rate>\d+)\s", re.M)


@pytest.fixture
def load_tools(lab_environment):
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        message = f"{', '.join(missing)} missing (scripts/install.sh installs them)"
        if CI_ENV:
            pytest.fail(f"CI=true, so this is an error, not a skip: {message}", pytrace=False)
        pytest.skip(message)


@pytest.fixture
def no_lab_of_ours(request):
    """The benchmark builds its own labs, and only one lab runs at a time:
    stop the one this session's lab fixtures may keep running (it holds the
    lab lock the benchmark would wait for)."""
    for plugin in request.config.pluginmanager.get_plugins():
        stop = getattr(plugin, "_stop_current", None)
        if callable(stop) and Path(getattr(plugin, "__file__", "") or "").parent == HERE:
            stop()


def test_smoke_run_prints_the_table(load_tools, no_lab_of_ours, tmp_path):
    results = tmp_path / "e2e_speed.json"
    proc = subprocess.run(
        [sys.executable, str(BENCHMARK), "--smoke", "--json", str(results),
         "--lock-timeout", "120"],
        capture_output=True, text=True, timeout=300, cwd=REPO, stdin=subprocess.DEVNULL)
    report = f"stdout:\n{proc.stdout[-6000:]}\nstderr:\n{proc.stderr[-6000:]}"
    assert proc.returncode == 0, report
    rows = {m["name"].strip(): (m["tool"], int(m["rate"])) for m in ROW.finditer(proc.stdout)}
    ceilings = {name: rate for name, (_, rate) in rows.items() if "ceiling" in name}
    director = {name: rate for name, (_, rate) in rows.items() if "ceiling" not in name}
    assert ceilings and all(rate > 0 for rate in ceilings.values()), report
    assert director and all(rate > 0 for rate in director.values()), report
    assert "PacketIn/conn" in proc.stdout and "flows/conn" in proc.stdout, report
    # the same run as JSON: the ceilings really had no controller on the path,
    # and every lvs_app row has its ceiling
    data = json.loads(results.read_text())
    by_name = {case["name"]: case for case in data["cases"]}
    assert set(by_name) == set(rows), report
    for case in data["cases"]:
        if case["ceiling"]:
            assert by_name[case["ceiling"]]["packetins"] == 0, case
            assert case["ratio"] > 0, case
        assert case["connections"] > 0 and case["errors"] <= case["connections"] // 100, case
    assert {case["lab"] for case in data["cases"]} == {"nat", "droute", "tunnel"}
