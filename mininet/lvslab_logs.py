"""What the controller and the switch reported: their logs, read for errors.

:func:`find_log_errors` finds tracebacks, OpenFlow errors and error lines in
a controller log; :class:`LabLogs`, a mixin of :class:`lvslab.Lab`, reads
the lab's controller log and ovs-vswitchd's log from where the lab (or a
test) started, which is what the e2e tests check after every test.  It
needs ``controller_log_path``, ``switch_names``, ``of_port`` and
``_ovs_log_start`` (the size of :data:`OVS_LOG` when the lab started) from
the class it is mixed into.
"""

import os
import re
from pathlib import Path

from lvslab_procs import file_size

OVS_LOG = Path(os.environ.get("LVSLAB_OVS_LOG", "/var/log/openvswitch/ovs-vswitchd.log"))

LOG_ERROR_PATTERNS = (
    re.compile(r"OFPError(Experimenter)?Msg"),
    re.compile(r"(?i)\berror\b"),
    re.compile(r"(?i)\bexception\b"),
    re.compile(r"\bCRITICAL\b"),
)
# Known harmless lines of Ryu 4.34 on eventlet 0.41.
LOG_BENIGN_PATTERNS = (
    re.compile(r"RLock\(s\) were not greened"),
)


def find_log_errors(text, ignore=()):
    """Python tracebacks, OpenFlow errors and error lines in a controller log.

    Returns a list of strings: a whole traceback (up to its exception line)
    or a single line.  ``ignore``: extra regexes of lines that are expected.
    """
    benign = LOG_BENIGN_PATTERNS + tuple(re.compile(p) for p in ignore)
    found = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if any(p.search(line) for p in benign):
            i += 1
            continue
        if "Traceback (most recent call last)" in line:
            block = [line]
            i += 1
            # frames are indented; the block ends with the first unindented line
            while i < len(lines) and (lines[i].startswith((" ", "\t")) or not lines[i]):
                block.append(lines[i])
                i += 1
            if i < len(lines):
                block.append(lines[i])
                i += 1
            found.append("\n".join(block))
            continue
        if any(p.search(line) for p in LOG_ERROR_PATTERNS):
            # an OFPErrorMsg report spans the next few lines
            block = [line]
            if "OFPError" in line or "EventOFPErrorMsg" in line:
                while i + 1 < len(lines) and lines[i + 1].startswith((" ", "\t", "OFPError",
                                                                       "version=")):
                    i += 1
                    block.append(lines[i])
            found.append("\n".join(block))
        i += 1
    return found


def _read_from(path, offset):
    """The text of ``path`` from byte ``offset``; '' when there is no such file."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")
    except FileNotFoundError:
        return ""


class LabLogs:
    """The controller's and the switch's logs (a mixin of :class:`lvslab.Lab`)."""

    def controller_log(self, since=0):
        """The controller's log (from byte offset ``since``)."""
        return _read_from(self.controller_log_path, since)

    def controller_log_errors(self, since=0, ignore=()):
        """Tracebacks, OpenFlow errors and error lines in the controller log."""
        return find_log_errors(self.controller_log(since), ignore)

    def controller_log_tail(self, lines=300):
        """The last ``lines`` lines of the controller's log, saying how many came before."""
        text = self.controller_log().splitlines()
        skipped = max(0, len(text) - lines)
        head = f"({skipped} earlier lines in {self.controller_log_path})\n" if skipped else ""
        return head + "\n".join(text[-lines:])

    def ovs_log(self, since=None):
        """ovs-vswitchd's log since ``since`` (default: since this lab started)."""
        return _read_from(OVS_LOG, self._ovs_log_start if since is None else since)

    def openflow_errors(self, since=None):
        """Error replies the switch sent to the controller, from ovs-vswitchd's log.

        Ryu logs a received OFPErrorMsg only at DEBUG level, so the controller
        log alone misses them; OVS logs each one at INFO (rate-limited):
        ``s1<->tcp:127.0.0.1:PORT: sending OFPBAC_BAD_OUT_PORT error reply
        to OFPT_FLOW_MOD message``.  Every switch of the lab (a fabric has
        several).
        """
        conns = tuple(f"{sw}<->tcp:127.0.0.1:{self.of_port}:" for sw in self.switch_names)
        return [line for line in self.ovs_log(since).splitlines()
                if "error reply" in line and any(conn in line for conn in conns)]

    def ovs_log_warnings(self, lines=50):
        """The last ``lines`` warnings, errors and error replies in ovs-vswitchd's log
        since this lab started."""
        return "\n".join([line for line in self.ovs_log().splitlines()
                          if re.search(r"\|(WARN|ERR|EMER)\||error reply", line)][-lines:])

    def log_marks(self):
        """Current ends of the controller and OVS logs, for :meth:`problems`."""
        return {"controller": file_size(self.controller_log_path), "ovs": file_size(OVS_LOG)}

    def problems(self, marks=None, ignore=()):
        """Controller log errors and switch OpenFlow errors since ``marks``.

        ``marks``: from :meth:`log_marks` (default: since the lab started).
        ``ignore``: regexes of controller log lines that are expected.
        """
        marks = marks or {"controller": 0, "ovs": None}
        return (self.controller_log_errors(marks["controller"], ignore)
                + [f"switch: {line}" for line in self.openflow_errors(marks["ovs"])])
