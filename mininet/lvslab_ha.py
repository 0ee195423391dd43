"""A backup controller beside a lab's controller: lvs_app's high availability.

The lab's own controller is the master (started with ``--lvs-ha-role master
--lvs-ha-peer URL``, see :func:`master_args`); :class:`BackupController`
starts a second ``ryu-manager lvs_app`` with the same rules file as the
backup, points the switch at both controllers, and waits for the backup to
take over once the master is killed::

    ports = BackupPorts()
    lab = Lab("droute", rules_file=rules, extra_args=master_args(ports))
    lab.start()
    backup = BackupController(lab, ports)
    backup.start()
    lab.kill_controller()
    backup.wait_takeover()
"""

import shlex
import subprocess

from lvslab_procs import (REPO, VENV, LabError, free_tcp_port, run, tcp_listening,
                          wait_or_raise)


class BackupPorts:
    """The OpenFlow and REST ports of the backup, chosen before the lab starts."""

    def __init__(self):
        self.of_port = free_tcp_port()
        self.rest_port = free_tcp_port()
        while self.rest_port == self.of_port:
            self.rest_port = free_tcp_port()


def master_args(ports):
    """The master's extra command-line options (the lab's own controller)."""
    return ["--lvs-ha-role", "master", "--lvs-ha-peer", f"http://127.0.0.1:{ports.rest_port}"]


class BackupController:
    """The backup ryu-manager of a running lab, and the switches' second controller
    (every switch of a fabric; the backup gets the topology's controller
    arguments too, e.g. ``--observe-links``)."""

    def __init__(self, lab, ports, timeout=30.0):
        if not lab.rules_file:
            raise LabError("high availability needs the lab's rules file (rules_file=)")
        self.lab, self.ports, self.timeout = lab, ports, timeout
        self.log_path = lab.log_dir / "controller-backup.log"
        self.argv = [str(VENV / "bin" / "ryu-manager"), "lvs_app",
                     "--ofp-tcp-listen-port", str(ports.of_port),
                     "--wsapi-port", str(ports.rest_port), "--lvs-rules", str(lab.rules_file),
                     "--lvs-ha-role", "backup",
                     "--lvs-ha-peer", f"http://127.0.0.1:{lab.rest_port}",
                     *lab.controller_args]
        self.proc = None

    def log(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self):
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=str(REPO),
                                         start_new_session=True)
        self.lab.processes.add("backup controller", self.proc, group=True)

        def listening():
            if self.proc.poll() is not None:
                raise LabError(f"the backup controller exited with {self.proc.returncode}: "
                               f"{shlex.join(self.argv)}\n{self.log()[-3000:]}")
            return tcp_listening(self.ports.of_port) and tcp_listening(self.ports.rest_port)

        wait_or_raise(listening, self.timeout, "the backup controller to listen")
        targets = [f"tcp:127.0.0.1:{p}" for p in (self.lab.of_port, self.ports.of_port)]
        for switch in self.lab.switch_names:
            run(["ovs-vsctl", "--timeout=10", "set-controller", switch] + targets)
        for target in targets:
            for uuid in run(["ovs-vsctl", "--timeout=5", "--bare", "--columns=_uuid", "find",
                             "Controller", f'target="{target}"']).stdout.split():
                run(["ovs-vsctl", "--timeout=5", "set", "Controller", uuid,
                     "max_backoff=1000"])
        wait_or_raise(lambda: "lvs_app: switch" in self.log(), self.timeout,
                      "the switch to connect to the backup controller")

    def wait_takeover(self):
        wait_or_raise(lambda: "takes over" in self.log() and "recovered" in self.log(),
                      self.timeout, "the backup to take over and read the flows back")

    def lvsadm(self, *args):
        return subprocess.run([str(VENV / "bin" / "lvsadm"), "--server",
                               f"http://127.0.0.1:{self.ports.rest_port}", *args],
                              capture_output=True, text=True, timeout=15)
