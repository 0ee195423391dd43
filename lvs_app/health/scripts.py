"""Running keepalived's scripts (MISC_CHECK, notify_up/down, quorum_up/down).

Scripts run on the controller host, so their view of the network is the
host's, not the switch's (a MISC_CHECK that connects to a real server needs
a route from the controller host).  They never block the PacketIn path:
each runs in a green thread of its own, is killed when its time is up, and
its exit code comes back through ``report(done, rc, detail)``, which the
manager turns into a call of ``done(rc, detail, now)`` whose messages it
sends.  ``user``/``group`` run it as keepalived's ``user`` option says.
"""

import logging
import subprocess

LOG = logging.getLogger(__name__)

MAX_RUNNING = 64          # scripts at once; more are refused (counted as failures)


class ScriptRunner:
    """Start scripts without waiting for them (``spawn``: the green-thread
    spawner, Ryu's ``hub.spawn``; ``popen``: subprocess.Popen or eventlet's
    green one)."""

    def __init__(self, spawn, report, popen=subprocess.Popen):
        self.spawn = spawn
        self.report = report
        self.popen = popen
        self.running = 0

    def __call__(self, argv, timeout, user=None, group=None, done=None):
        if self.running >= MAX_RUNNING:
            LOG.warning("lvs_app: health: %d scripts running; %s not started", self.running,
                        " ".join(argv))
            if done is not None:
                self.report(done, None, f"not started: {MAX_RUNNING} scripts running")
            return
        self.running += 1
        self.spawn(self._run, list(argv), timeout, user, group, done)

    def _run(self, argv, timeout, user, group, done):
        try:
            rc, detail = self._wait(argv, timeout, user, group)
        finally:
            self.running -= 1
        if rc not in (0, None) or detail:
            LOG.info("lvs_app: health: script %s: %s", " ".join(argv), detail or f"exit {rc}")
        if done is not None:
            self.report(done, rc, detail)

    def _wait(self, argv, timeout, user, group):
        extra = {}
        if user:
            extra["user"] = user
        if group:
            extra["group"] = group
        try:
            proc = self.popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, close_fds=True, **extra)
        except (OSError, ValueError, KeyError) as err:   # KeyError: unknown user/group
            return None, f"cannot run: {err}"
        try:
            return proc.wait(timeout=timeout), ""
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return None, f"killed after {timeout:g} s"
