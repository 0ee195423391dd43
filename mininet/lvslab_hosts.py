"""What runs inside the lab's hosts: the real servers' servers and the clients.

Two mixins of :class:`lvslab.Lab`:

* :class:`HostServers`: ``http_name_server.py`` (every lab), ``ftp_server.py``
  (pyftpdlib) and ``openssl s_server`` on the real servers, each started
  once, recorded, and waited for until it listens;
* :class:`HostClients`: bounded commands in a host (:meth:`~HostClients.host_run`),
  and the clients of the founding scenarios: curl (HTTP and FTP), Python's
  ftplib and ``openssl s_client``, with :class:`FtpResult` and
  :class:`TlsResult` saying what they saw.

What they need from the class they are mixed into: ``host(name)`` (the
Mininet host), ``topology``, ``vip``, ``ipv6`` (a dual-stack lab: the
servers listen on IPv6 too), ``log_dir`` and ``processes`` (a
:class:`lvslab_procs.Processes`); :class:`HostServers` also uses
:meth:`HostClients.host_run`.  Every client takes an IPv6 address (plain,
without brackets) wherever it takes an IPv4 one.
"""

import json
import os
import re
import shlex
import subprocess
from pathlib import Path

from lvs_app.model import FTP_CONTROL as FTP_PORT
from lvs_app.model import FTP_DATA as FTP_DATA_PORT

from lvslab_procs import VENV, CommandError, LabError, run, stop_process, wait_or_raise
from lvslab_topology import DEFAULT_HTTP_PORTS

HERE = Path(__file__).resolve().parent
# The real servers' HTTP servers run with the system interpreter: ``python3``
# on PATH may be a pyenv shim or the venv, neither of which we want inside
# the hosts.
SYSTEM_PYTHON = "/usr/bin/python3"
HTTP_SERVER = HERE / "http_name_server.py"
UDP_SERVER = HERE / "udp_name_server.py"
PROBE_CLIENT = HERE / "probe_client.py"
# The FTP server needs pyftpdlib (requirements.txt), so it runs with the
# venv's interpreter; the TLS server is ``openssl s_server``.
VENV_PYTHON = VENV / "bin" / "python"
FTP_SERVER = HERE / "ftp_server.py"
FTP_PASSIVE_PORTS = (30000, 30100)
TLS_PORT = 443
# curl's FTP modes: passive EPSV (curl's default), passive PASV, active EPRT
# (curl's default active command), active PORT
CURL_FTP_MODES = {"epsv": [], "pasv": ["--disable-epsv"],
                  "eprt": ["--ftp-port", "-"], "port": ["--ftp-port", "-", "--disable-eprt"]}
VIP_FTP_HINT = ("epsv/pasv: passive, curl's default / --disable-epsv; "
                "eprt/port: active, --ftp-port - / --ftp-port - --disable-eprt")


def url_host(address):
    """``address`` as the host part of a URL or of ``host:port``: an IPv6
    address in brackets (``[fd00::10:0:0:100]``), anything else unchanged."""
    address = str(address)
    return f"[{address}]" if ":" in address and not address.startswith("[") else address


class FtpResult:
    """What one curl FTP command line did (see :meth:`HostClients.ftp`)."""

    def __init__(self, client, mode, cmd, returncode, body, log):
        self.client, self.mode, self.cmd = client, mode, cmd
        self.returncode, self.body, self.log = returncode, body, log

    @property
    def ok(self):
        return self.returncode == 0

    @property
    def banner(self):
        """The server name of the ``220`` greeting (the control connection's server)."""
        m = re.search(r"^< 220[ -](\S+)", self.log, re.M)
        return m.group(1) if m else None

    @property
    def replies(self):
        """The server's replies, in order (curl's ``< `` lines)."""
        return [line[2:] for line in self.log.splitlines() if line.startswith("< ")]

    @property
    def commands(self):
        """The commands curl sent (its ``> `` lines)."""
        return [line[2:] for line in self.log.splitlines() if line.startswith("> ")]

    def transcript(self):
        return f"$ {self.cmd}\n{self.log.rstrip()}\n--- body:\n{self.body}"

    def __repr__(self):
        return (f"FtpResult({self.client} {self.mode}: rc={self.returncode} "
                f"banner={self.banner!r} body={self.body[:60]!r})")


class TlsResult:
    """What one ``openssl s_client`` connection saw (see :meth:`HostClients.tls`)."""

    def __init__(self, client, cmd, returncode, output):
        self.client, self.cmd, self.returncode, self.output = client, cmd, returncode, output
        m = re.search(r"^subject=\s*CN\s*=\s*(\S+)", output, re.M)
        self.server = m.group(1) if m else None
        # s_client prints "New, TLSv1.2, Cipher is ..." or "Reused, ...";
        # the -www page of s_server prints the same line from its side
        states = re.findall(r"^(New|Reused), (TLSv[\d.]+)", output, re.M)
        self.reused = states[0][0] == "Reused" if states else None
        self.server_reused = states[1][0] == "Reused" if len(states) > 1 else None
        self.version = states[0][1] if states else None

    def __repr__(self):
        return (f"TlsResult({self.client}: server={self.server} reused={self.reused} "
                f"server_reused={self.server_reused} rc={self.returncode})")


# Run by Lab.ftplib in a client host: argv = address passive(0/1) trust(0/1)
# upload_name upload_text timeout [SITE command...]; prints one JSON object.
FTPLIB_CLIENT = r"""
import ftplib, io, json, sys
address, passive, trust, up_name, up_text, timeout = sys.argv[1:7]
site = sys.argv[7:]
out = {"replies": [], "data_peers": []}

class FTP(ftplib.FTP):
    trust_server_pasv_ipv4_address = trust == "1"
    def getresp(self):
        resp = super().getresp()
        out["replies"].append(resp)
        return resp
    def ntransfercmd(self, cmd, rest=None):
        conn, size = super().ntransfercmd(cmd, rest)
        host, port = conn.getpeername()[:2]
        out["data_peers"].append(("[%s]:%d" if ":" in host else "%s:%d") % (host, port))
        return conn, size

try:
    f = FTP()
    out["banner"] = f.connect(address, 21, timeout=float(timeout))
    f.login()
    f.set_pasv(passive == "1")
    for command in site:
        f.sendcmd("SITE " + command)
    chunks = []
    f.retrbinary("RETR whoami.txt", chunks.append)
    out["whoami"] = b"".join(chunks).decode()
    out["names"] = sorted(f.nlst())
    if up_name:
        f.storbinary("STOR " + up_name, io.BytesIO(up_text.encode()))
        chunks = []
        f.retrbinary("RETR " + up_name, chunks.append)
        out["uploaded"] = b"".join(chunks).decode()
    f.quit()
except Exception as err:
    out["error"] = "%s: %s" % (type(err).__name__, err)
print(json.dumps(out))
"""


class HostServers:
    """Servers on the real servers (a mixin of :class:`lvslab.Lab`)."""

    _ftp_started = False          # start_ftp_servers() ran in this run
    _tls_started = False          # start_tls_servers() ran in this run
    _udp_ports = frozenset()      # ports start_udp_servers() serves in this run

    def _forget_servers(self):
        """The lab stopped: the next run starts its FTP, TLS and UDP servers again."""
        self._ftp_started = self._tls_started = False
        self._udp_ports = frozenset()

    def _start_server(self, name, kind, argv, env=None, append=False):
        """Start ``argv`` in host ``name``, output to ``<log_dir>/<name>-<kind>.log``,
        recorded as ``<kind> <name>``; returns (Popen, log path)."""
        path = self.log_dir / f"{name}-{kind}.log"
        log = open(path, "a" if append else "w")
        extra = {"env": dict(os.environ, **env)} if env else {}
        try:
            proc = self.host(name).popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, **extra)
        finally:
            log.close()
        self.processes.add(f"{kind} {name}", proc)
        return proc, path

    def _start_http_servers(self):
        for spec in self.topology["servers"]:
            self.start_http_server(spec["name"], spec["http_ports"])
        for spec in self.topology["servers"]:
            log = self.log_dir / f"{spec['name']}-http.log"
            wait_or_raise(lambda log=log: "ready" in log.read_text(), 10,
                          f"the HTTP server of {spec['name']} ({log})")

    def start_http_server(self, name, ports=DEFAULT_HTTP_PORTS, body=None, append=False):
        """Start the name-answering HTTP server in host ``name`` on ``ports``.

        ``GET /`` answers ``body`` (default: the host's name); ``GET /info``
        answers JSON {server, local, peer} (local shows whether the request
        arrived for the VIP or the real address, peer the client's address).
        ``GET /health`` answers what :meth:`set_health` said (200 by default).
        The process writes ``ready`` to its log once every port is bound (in
        a dual-stack lab on IPv4 and IPv6: ``--ipv6``).
        """
        proc, _ = self._start_server(
            name, "http",
            [SYSTEM_PYTHON, "-u", str(HTTP_SERVER), body or name] + [str(p) for p in ports]
            + (["--ipv6"] if self.ipv6 else []),
            env={"HEALTH_FILE": str(self.health_file(name))}, append=append)
        return proc

    def health_file(self, name):
        return self.log_dir / f"{name}.health"

    def set_health(self, name, status=None):
        """What ``GET /health`` answers on real server ``name`` (None: 200 again)."""
        path = self.health_file(name)
        if status is None:
            path.unlink(missing_ok=True)
        else:
            path.write_text(f"{status}\n")

    def stop_http_server(self, name):
        """Stop real server ``name``'s HTTP server (its ports then refuse)."""
        for description, proc, group in self.processes.entries:
            if description == f"http {name}" and proc.poll() is None:
                stop_process(proc, group=group)

    def restart_http_server(self, name, ports=DEFAULT_HTTP_PORTS):
        """Start real server ``name``'s HTTP server again; returns once it listens."""
        self.stop_http_server(name)
        proc = self.start_http_server(name, ports, append=True)
        for port in ports:
            self.wait_listening(name, port, proc=proc,
                                log=self.log_dir / f"{name}-http.log")
        return proc

    def start_udp_servers(self, port):
        """Start the name-answering UDP server (udp_name_server.py) on ``port``
        in every real server (once a run; on IPv6 too in a dual-stack lab);
        returns when all are bound."""
        if port in self._udp_ports:
            return
        self._udp_ports = self._udp_ports | {port}
        for spec in self.topology["servers"]:
            self._start_server(spec["name"], f"udp{port}",
                               [SYSTEM_PYTHON, "-u", str(UDP_SERVER), spec["name"], str(port)]
                               + (["--ipv6"] if self.ipv6 else []))
        for spec in self.topology["servers"]:
            log = self.log_dir / f"{spec['name']}-udp{port}.log"
            wait_or_raise(lambda log=log: "ready" in log.read_text(), 10,
                          f"the UDP server of {spec['name']} ({log})")

    def wait_listening(self, name, port, timeout=10.0, proc=None, log=None):
        """Wait until something in host ``name`` listens on TCP ``port`` (``ss``).

        ``proc``: the server process; its exit stops the wait at once (with
        the end of ``log`` in the error).
        """
        def listening():
            if proc is not None and proc.poll() is not None:
                text = Path(log).read_text()[-2000:] if log else ""
                raise LabError(f"{name}: the server for TCP port {port} exited with "
                               f"{proc.returncode}:\n{text}")
            _, out, _ = self.host_run(name, f"ss -Hltn 'sport = :{port}'", 5, check=False)
            return bool(out.strip())
        wait_or_raise(listening, timeout, f"{name} to listen on TCP port {port}")

    def ftp_root(self, name):
        """The directory real server ``name``'s FTP server serves (and stores uploads in)."""
        return self.log_dir / "ftp" / name

    def start_ftp_servers(self, passive=FTP_PASSIVE_PORTS, data_port=FTP_DATA_PORT,
                          port=FTP_PORT, timeout=15.0):
        """Start ``ftp_server.py`` on every real server (once); wait until all listen.

        Each one greets with ``220 <name>``, serves ``whoami.txt`` (its name)
        and ``served-by-<name>`` from :meth:`ftp_root`, allows anonymous
        uploads there, uses the passive ports ``passive`` (lo, hi) and
        connects actively from ``data_port``.  Logs: ``<log_dir>/<name>-ftp.log``.
        In a dual-stack lab each also listens on IPv6 (``--ipv6``: EPSV and
        EPRT; PASV and PORT are IPv4 only).
        """
        if self._ftp_started:
            return
        started = {}
        for spec in self.topology["servers"]:
            name = spec["name"]
            started[name] = self._start_server(
                name, "ftp",
                [str(VENV_PYTHON), "-u", str(FTP_SERVER), name, str(self.ftp_root(name)),
                 "--port", str(port), "--passive", f"{passive[0]}-{passive[1]}",
                 "--data-port", str(data_port)] + (["--ipv6"] if self.ipv6 else []))
        for name, (proc, log) in started.items():

            def ready(log=log, proc=proc, name=name):
                if proc.poll() is not None:      # e.g. pyftpdlib is not installed
                    raise LabError(f"the FTP server of {name} exited with {proc.returncode}:\n"
                                   + log.read_text()[-2000:])
                return "ready" in log.read_text()
            wait_or_raise(ready, timeout, f"the FTP server of {name} ({log})")
        self._ftp_started = True

    def tls_cert(self, name):
        """(certificate, key) of real server ``name``: self-signed, CN=<name>."""
        d = self.log_dir / "tls"
        return d / f"{name}.pem", d / f"{name}.key"

    def start_tls_servers(self, port=TLS_PORT, timeout=15.0):
        """Start ``openssl s_server -www -no_ticket`` on every real server (once).

        Each server has its own self-signed certificate (CN = its name, made
        here in the lab's log dir) and its own session cache; ``-no_ticket``
        makes TLS 1.2 resumption use that cache (session ids), not stateless
        tickets, so a session resumes only on the server that made it.
        ``-www`` answers ``GET /`` with a status page that says ``New`` or
        ``Reused`` from the server's side.  Logs: ``<log_dir>/<name>-tls.log``.
        ``s_server -accept PORT`` listens on one dual-stack socket (``*:443``
        in ``ss``), so it takes IPv6 clients in a dual-stack lab as it is.
        """
        if self._tls_started:
            return
        (self.log_dir / "tls").mkdir(parents=True, exist_ok=True)
        started = {}
        for spec in self.topology["servers"]:
            name = spec["name"]
            cert, key = self.tls_cert(name)
            run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                 "ec_paramgen_curve:prime256v1", "-nodes", "-days", "7",
                 "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(cert)])
            started[name] = self._start_server(
                name, "tls",
                ["openssl", "s_server", "-accept", str(port), "-cert", str(cert),
                 "-key", str(key), "-www", "-no_ticket"])
        for name, (proc, log) in started.items():
            self.wait_listening(name, port, timeout, proc, log)
        self._tls_started = True


class HostClients:
    """Commands and clients in the lab's hosts (a mixin of :class:`lvslab.Lab`)."""

    def host_run(self, name, cmd, timeout=15, check=True):
        """Run a shell command in host ``name``'s namespace; return (rc, out, err)."""
        # a list: Mininet's shell=True runs $SHELL, which may be unset or fish
        rc, out, err = self._run_in_host(name, ["/bin/sh", "-c", cmd], timeout,
                                         f"{cmd}: no answer within {timeout}s")
        if check and rc:
            raise CommandError(f"{name}: {cmd}: exit {rc}: {(err or out).strip()}",
                               rc, out, err)
        return rc, out, err

    def _run_in_host(self, name, argv, timeout, hung):
        """Run ``argv`` in host ``name`` to the end, killed after ``timeout``
        seconds (then CommandError "<name>: <hung>"); returns (rc, out, err)."""
        proc = self.host(name).popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, errors="replace")
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop_process(proc, 1)
            raise CommandError(f"{name}: {hung}") from None
        return proc.returncode, out, err

    def probe(self, client, *args, timeout=20, check=True):
        """Run probe_client.py ARGS in host ``client`` (udp, tcp-idle, syn,
        flood, requests; the host may be an IPv6 address); returns its
        output, stripped."""
        cmd = " ".join([SYSTEM_PYTHON, str(PROBE_CLIENT)] + [shlex.quote(str(a)) for a in args])
        _, out, _ = self.host_run(client, cmd, timeout, check=check)
        return out.strip()

    def probe_background(self, client, *args, description=None):
        """Start probe_client.py ARGS in host ``client`` in the background (a
        connection held open, a flood); ``communicate()`` gives its output."""
        return self.popen(client, [SYSTEM_PYTHON, str(PROBE_CLIENT)] + [str(a) for a in args],
                          description=description or f"{client}: probe {args[0]}",
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def curl(self, client, url, timeout=5, check=True):
        """GET ``url`` from host ``client``; return the body (str).

        Raises :class:`CommandError` with curl's exit code and message when
        the request fails (7 = refused, 28 = timeout) unless check=False
        (then the body is '' on failure).  An IPv6 address in brackets
        (``http://[fd00::10:0:0:100]/``, see :func:`url_host`) is taken
        literally (``-g``: no curl globbing).
        """
        cmd = ["curl", "-sS", "--noproxy", "*", "-m", str(timeout)] \
            + (["-g"] if "[" in url else []) + [url]
        rc, out, err = self._run_in_host(client, cmd, timeout + 5, f"curl {url}: hung")
        if rc:
            if check:
                raise CommandError(f"{client}: curl {url}: exit {rc}: {err.strip()}",
                                   rc, out, err)
            return ""
        return out

    def ftp(self, client, path="whoami.txt", mode="epsv", upload=None, listing=False,
            quote=(), address=None, timeout=10, check=True):
        """One FTP command line with curl from host ``client`` to the VIP
        (or to ``address``: an IPv4 or IPv6 address, e.g. ``lab.vip6``; over
        IPv6 curl says EPSV and EPRT whatever the mode, as RFC 2428 has it).

        ``mode``: ``epsv`` (passive, curl's default), ``pasv``, ``eprt`` (active,
        ``--ftp-port -``) or ``port`` (active, ``--disable-eprt``).
        ``listing``: ``-l`` (NLST) on ``path`` (a directory, e.g. ``""``);
        ``upload``: a local file sent with ``-T`` to ``path``; ``quote``: FTP
        commands sent first (``-Q``).  Returns an :class:`FtpResult` (the
        greeting's server name, the body, curl's exit code and verbose log);
        raises CommandError when curl fails and ``check``.
        """
        url = f"ftp://{url_host(address or self.vip)}/{path}"
        cmd = ["curl", "-sS", "-v", "--noproxy", "*", "-m", str(timeout),
               *CURL_FTP_MODES[mode]] + (["-g"] if "[" in url else [])
        if listing:
            cmd.append("-l")
        if upload is not None:
            cmd += ["-T", str(upload)]
        for command in quote:
            cmd += ["-Q", command]
        cmd.append(url)
        rc, out, err = self._run_in_host(client, cmd, timeout + 5,
                                         f"{shlex.join(cmd)}: hung")
        result = FtpResult(client, mode, shlex.join(cmd), rc, out, err)
        if check and rc:
            raise CommandError(f"{client}: {shlex.join(cmd)}: exit {rc}\n"
                               f"{result.transcript()}", rc, out, err)
        return result

    def ftplib(self, client, passive=True, upload=None, site=(), trust_pasv_address=False,
               address=None, timeout=10):
        """An FTP session with Python's ftplib from host ``client`` to the VIP
        (or ``address``, IPv4 or IPv6: over IPv6 ftplib says EPSV and EPRT
        where it says PASV and PORT over IPv4); returns a dict.

        Logs in anonymously, sends the ``site`` commands (``SITE <cmd>``),
        fetches ``whoami.txt``, lists the directory (NLST) and, with
        ``upload=(name, text)``, stores a file and reads it back, in passive
        (PASV) or active (PORT) mode.  ``trust_pasv_address``: connect to the
        address in the 227 reply (ftplib's default since Python 3.9 is the
        control connection's address).  The dict: ``banner``, ``whoami``,
        ``names``, ``uploaded`` (read back), ``replies`` (every reply),
        ``data_peers`` (the far end of each data connection, seen from the
        client: ``addr:port``, ``[addr]:port`` for IPv6), or ``error`` with
        a message.
        """
        name, text = upload if upload else ("", "")
        args = [address or self.vip, "1" if passive else "0",
                "1" if trust_pasv_address else "0", name, text, str(timeout), *site]
        rc, out, err = self._run_in_host(client, [str(VENV_PYTHON), "-c", FTPLIB_CLIENT, *args],
                                         4 * timeout + 5, "ftplib session hung")
        try:
            return json.loads(out)
        except ValueError:
            raise CommandError(f"{client}: ftplib session: exit {rc}: "
                               f"{(err or out).strip()}", rc, out, err) from None

    def tls(self, client, sess_out=None, sess_in=None, port=TLS_PORT, address=None,
            timeout=10, check=True):
        """One TLS 1.2 connection with ``openssl s_client`` from host ``client``.

        Sends ``GET /`` (the server's ``-www`` page says New/Reused from its
        side).  ``sess_out``: save the session to this file; ``sess_in``: offer
        the session from this file for resumption.  Returns a
        :class:`TlsResult` (the certificate's CN, i.e. the server that did the
        handshake, and whether the session was reused).  ``address``: the
        server (default the VIP), IPv4 or IPv6.
        """
        target = f"{url_host(address or self.vip)}:{port}"
        cmd = ["openssl", "s_client", "-connect", target, "-tls1_2", "-ign_eof"]
        if sess_out:
            cmd += ["-sess_out", str(sess_out)]
        if sess_in:
            cmd += ["-sess_in", str(sess_in)]
        shell = (f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | timeout {timeout} "
                 f"{shlex.join(cmd)} 2>&1")
        rc, out, err = self.host_run(client, shell, timeout + 5, check=False)
        result = TlsResult(client, shell, rc, out + err)
        if check and (rc or result.server is None):
            raise CommandError(f"{client}: {shell}: exit {rc}\n{result.output[-3000:]}",
                               rc, out, err)
        return result
