"""The lab's base layer: errors, paths, commands and bounded background processes.

Everything else in the lab builds on this module, which imports no other
part of the lab:

* :class:`LabError` and its :class:`CommandError`;
* :func:`run` (a command in the root namespace, with a timeout),
  :func:`stop_process` (SIGTERM, then SIGKILL), :func:`wait_until` and
  :func:`wait_or_raise` (readiness polling with a bound);
* :class:`StateFile`: ``/run/lvslab/lock`` (one lab at a time on a machine)
  and ``/run/lvslab/state.json`` (what the running lab created);
* :class:`Processes`: the processes a lab started, in order, recorded in the
  state file so that a later lab can remove them if this one dies;
* :func:`remove_leftovers`: that removal (recorded processes, bridges, veth
  ends).
"""

import contextlib
import errno
import fcntl
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV = REPO / ".venv"
RUN_DIR = Path(os.environ.get("LVSLAB_RUN_DIR", "/run/lvslab"))


class LabError(Exception):
    """A lab could not be described, started or used."""


class CommandError(LabError):
    """A command in the lab failed; carries its output."""

    def __init__(self, message, returncode=None, stdout="", stderr=""):
        super().__init__(message)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr


# --------------------------------------------------------------------------
# small helpers


def wait_until(predicate, timeout=10.0, interval=0.1, message=None):
    """Poll ``predicate()`` until it returns a true value; return that value.

    Exceptions from the predicate count as "not yet" (it may be probing
    something that is still starting), except :class:`LabError`, which
    stops the wait at once (something that will not get better, e.g. the
    controller process exited).  Raises :class:`TimeoutError` after
    ``timeout`` seconds, naming ``message`` and the last exception seen.
    """
    deadline = time.monotonic() + timeout
    last_error = None
    while True:
        try:
            value = predicate()
        except LabError:
            raise
        except Exception as err:  # noqa: BLE001 - the predicate may be probing
            value, last_error = None, err
        if value:
            return value
        if time.monotonic() >= deadline:
            what = message or getattr(predicate, "__name__", "condition")
            extra = f" (last error: {last_error!r})" if last_error else ""
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}{extra}")
        time.sleep(interval)


def wait_or_raise(predicate, timeout, what):
    """:func:`wait_until` with a LabError (for Lab.start()'s callers) on timeout."""
    try:
        return wait_until(predicate, timeout, 0.05, what)
    except TimeoutError as err:
        raise LabError(str(err)) from None


def free_tcp_port():
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tcp_listening(port, host="127.0.0.1"):
    """Does something accept TCP connections on host:port?"""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def run(cmd, timeout=15, check=True, **kwargs):
    """Run a command in the root namespace; return CompletedProcess (text)."""
    if isinstance(cmd, str):
        cmd = shlex.split(cmd)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace",
                              timeout=timeout, **kwargs)
    except subprocess.TimeoutExpired as err:
        raise CommandError(f"{shlex.join(cmd)}: no answer within {timeout}s") from err
    if check and proc.returncode:
        raise CommandError(f"{shlex.join(cmd)}: exit {proc.returncode}: "
                           f"{(proc.stderr or proc.stdout).strip()}",
                           proc.returncode, proc.stdout, proc.stderr)
    return proc


def stop_process(proc, timeout=5.0, group=False):
    """SIGTERM, wait up to ``timeout``, then SIGKILL; return the exit code.

    ``group``: signal the process group that ``proc`` leads (a process
    started with ``start_new_session=True``).
    """
    if proc is None or proc.poll() is not None:
        return None if proc is None else proc.returncode

    def signal_it(sig):
        with contextlib.suppress(ProcessLookupError):
            if group:
                os.killpg(proc.pid, sig)
            else:
                proc.send_signal(sig)

    signal_it(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        signal_it(signal.SIGKILL)
        return proc.wait(timeout)


def file_size(path):
    """The size of ``path`` in bytes; 0 when it cannot be read."""
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def cmdline(pid):
    """The command line of process ``pid`` (arguments joined by spaces), or None."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        return raw.replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return None


# --------------------------------------------------------------------------
# one lab at a time: a lock and a record of what the lab created


class StateFile:
    """``/run/lvslab/state.json``: what the running lab created, for cleanup."""

    def __init__(self, run_dir=RUN_DIR):
        self.dir = Path(run_dir)
        self.path = self.dir / "state.json"
        self.lock_path = self.dir / "lock"
        self._lock_file = None

    def lock(self, timeout, owner):
        """Take the machine-wide lab lock, waiting up to ``timeout`` seconds."""
        self.dir.mkdir(parents=True, exist_ok=True)
        handle = open(self.lock_path, "a+")

        def try_lock():
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except OSError as err:
                if err.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                return False

        try:
            wait_until(try_lock, timeout, 0.2, "the lab lock")
        except TimeoutError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise LabError(f"another lab is running on this machine ({holder}); "
                           f"waited {timeout:g}s for {self.lock_path}") from None
        handle.seek(0)
        handle.truncate()
        handle.write(owner + "\n")
        handle.flush()
        self._lock_file = handle

    def unlock(self):
        if self._lock_file is not None:
            with contextlib.suppress(OSError):
                self._lock_file.truncate(0)
            self._lock_file.close()    # closing releases the flock
            self._lock_file = None

    def read(self):
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    def write(self, state):
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1))
        tmp.replace(self.path)

    def remove(self):
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


class Processes:
    """The processes a running lab started, kept to stop them and in the state file.

    :meth:`begin` starts a new record (``owner``, ``topology``, ``bridges``);
    :meth:`add` remembers a process started with Popen (:meth:`stop_all`
    stops it; a later lab's :func:`remove_leftovers` kills it if this one
    dies), :meth:`add_pids` processes that only need the latter.
    """

    def __init__(self, state_file):
        self.state_file = state_file
        self.entries = []             # (description, Popen, is_group), in start order
        self.state = {}

    def begin(self, **state):
        self.entries = []
        self.state = dict(state, procs=[])

    def add(self, description, proc, group=False):
        """Remember a process: stop_all() stops it, a later lab's cleanup too if we die."""
        self.entries.append((description, proc, group))

        def final_cmdline():
            # host processes start as "mnexec -da PID cmd..." and exec cmd
            line = cmdline(proc.pid)
            return line if line and not line.startswith("mnexec") else None
        try:
            line = wait_until(final_cmdline, 2, 0.01)
        except TimeoutError:
            line = None           # already gone: nothing to clean up later
        if line:
            self.state["procs"].append({"what": description, "pid": proc.pid,
                                        "cmdline": line})
            self.state_file.write(self.state)

    def add_pids(self, described_pids):
        """Record ``(description, pid)`` pairs for a later lab's cleanup only."""
        for description, pid in described_pids:
            self.state["procs"].append({"what": description, "pid": pid,
                                        "cmdline": cmdline(pid) or ""})
        self.state_file.write(self.state)

    def stop_all(self, timeout=3, skip=()):
        """Stop the processes, last started first, except those described in ``skip``.

        Returns the problems met, as strings; forgets every process.
        """
        problems = []
        for description, proc, group in reversed(self.entries):
            if description in skip:
                continue
            try:
                stop_process(proc, timeout, group)
            except Exception as err:  # noqa: BLE001
                problems.append(f"{description}: {err!r}")
        self.entries = []
        return problems


def remove_user_routes(bridges):
    """Delete OVS's user routes (``ovs-appctl ovs/route/add``, e.g. a fabric's
    tunnel leaves', see lvslab_topology.FABRIC_VXLAN_RECIPE) through any of
    ``bridges``: they outlive the bridge."""
    shown = run(["ovs-appctl", "ovs/route/show"], check=False).stdout
    for line in shown.splitlines():
        m = re.match(r"User: (\S+)(?: MARK (\d+))? dev (\S+)", line.strip())
        if m and m.group(3) in bridges:
            run(["ovs-appctl", "ovs/route/del", m.group(1)]
                + ([f"pkt_mark={m.group(2)}"] if m.group(2) else []), check=False)


def remove_leftovers(state_file, bridges, mn_cleanup=False):
    """Remove what a lab that died left behind (the caller holds the lock).

    Kills the processes recorded in ``state_file`` (only while their command
    line is still the recorded one), deletes the recorded bridges and
    ``bridges``, and the root-namespace ends of veth links named after them.
    With ``mn_cleanup`` also runs Mininet's cleanup().
    """
    old = state_file.read()
    for entry in old.get("procs", []):
        pid, recorded = entry.get("pid"), entry.get("cmdline")
        if pid and recorded and cmdline(pid) == recorded:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    bridges = set(old.get("bridges", [])) | set(bridges)
    remove_user_routes(bridges)
    for bridge in sorted(bridges):
        run(["ovs-vsctl", "--timeout=10", "--if-exists", "del-br", bridge], check=False)
        if Path(f"/sys/class/net/{bridge}").exists():    # netdev bridges leave a tap
            run(["ip", "link", "del", bridge], check=False)
    for link in Path("/sys/class/net").iterdir():
        if any(link.name.startswith(f"{b}-eth") for b in bridges):
            run(["ip", "link", "del", link.name], check=False)
    if mn_cleanup:
        from mininet.clean import cleanup
        cleanup()
    state_file.remove()
