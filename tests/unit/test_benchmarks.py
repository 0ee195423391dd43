"""The benchmarks still run (short runs; their figures are not judged here)."""

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.mark.parametrize("script, args, expect", [
    ("packet_in.py", ["--n", "300"], "director, new connection (NAT)"),
    ("recovery.py", ["--connections", "200", "--templates", "20"], "connections 200, templates 20"),
    ("health.py", ["--n", "2000", "--services", "5", "--servers", "4", "--rounds", "1",
                   "--smoke"], "servers of their own:"),
    ("stats_poll.py", ["--n", "2000", "--flows", "200", "--interval", "0.5"], "with polling:"),
    ("fabric.py", ["--connections", "30"], "1.00 per new connection"),
])
def test_benchmark_runs(script, args, expect):
    out = subprocess.run([sys.executable, str(BENCH / script)] + args, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert expect in out.stdout
