"""ryu-manager lvs_app started as a real process, on free ports."""

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate, timeout=15.0, interval=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Controller:
    """One ryu-manager lvs_app process with its log."""

    def __init__(self, workdir, rules=None, extra=(), wsapi_host="127.0.0.1", token=None):
        self.of_port, self.rest_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.rest_port}"
        self.log_path = Path(workdir) / f"ryu-{self.rest_port}.log"
        self.rules = rules
        self.extra = list(extra)
        self.wsapi_host = wsapi_host      # None: Ryu's default as lvs_app sets it
        self.token = token                # what ready() sends, when REST wants one
        self.proc = None

    def start(self, expect_ready=True):
        args = [str(BIN / "ryu-manager"), "lvs_app",
                "--ofp-listen-host", "127.0.0.1", "--ofp-tcp-listen-port", str(self.of_port),
                "--wsapi-port", str(self.rest_port)]
        if self.wsapi_host is not None:
            args += ["--wsapi-host", self.wsapi_host]
        if self.rules:
            args += ["--lvs-rules", str(self.rules)]
        args += self.extra
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=REPO)
        if expect_ready:
            wait_until(self.ready, what=f"REST API on {self.url}")
        return self

    def ready(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"ryu-manager exited with {self.proc.returncode}:\n"
                                 + self.log_text())
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            request = urllib.request.Request(self.url + "/ipvs", headers=headers)
            with urllib.request.urlopen(request, timeout=0.5) as resp:
                return resp.status == 200
        except OSError:
            return False

    def log_text(self):
        if not self.log.closed:
            self.log.flush()
        return self.log_path.read_text()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.proc:
            self.log.close()

    def lvsadm(self, *args, stdin=None, env=None):
        env = dict(os.environ, LVSADM_SERVER=self.url, **(env or {}))
        return subprocess.run([str(BIN / "lvsadm"), *args], input=stdin, capture_output=True,
                              text=True, env=env, timeout=30)


def refused_start(ctl):
    """A controller started with ``start(expect_ready=False)`` that must refuse
    to run: it exits with status 1 and no traceback; returns its log."""
    try:
        assert ctl.proc.wait(timeout=30) == 1
    finally:
        ctl.stop()
    log = ctl.log_text()
    assert "Traceback" not in log
    return log


def assert_clean_log(text):
    bad = [line for line in text.splitlines()
           if "Traceback" in line or "OpenFlow error" in line or "ERROR" in line.upper()
           and "lvs_app" in line]
    assert not bad, "controller log has errors:\n" + text


@pytest.fixture
def controller(tmp_path):
    ctl = Controller(tmp_path, rules=tmp_path / "lvs.rules").start()
    yield ctl
    ctl.stop()
    assert_clean_log(ctl.log_text())
