"""The founding scenarios end to end: FTP and SSL connection affinity (issue 4).

The founding message (shared/seed/000_f401e6a61930bc8d.txt) asks for
persistence because FTP and SSL break when each connection of a client is
balanced on its own.  These tests prove it with real servers and real clients
in each forwarding method:

* every real server runs ``mininet/ftp_server.py`` (pyftpdlib: greeting
  ``220 <name>``, ``whoami.txt`` = its name, a ``served-by-<name>`` marker,
  anonymous uploads, passive ports 30000-30100, active data from port 20) and
  ``openssl s_server -www -no_ticket`` on 443 (its own certificate, CN = its
  name, and its own session cache);
* clients are curl (EPSV, PASV, EPRT, PORT, NLST, upload), Python's ftplib
  (PASV/PORT, upload and read back) and ``openssl s_client -tls1_2`` with
  ``-sess_out``/``-sess_in``.

An FTP transfer counts only when the file (or listing, or upload) names the
same server as the greeting of the control connection.  Every test starts
from ``lvsadm -C`` and configures what it needs.

NAT without persistence goes through the director's FTP helper, which
rewrites the real server's address in 227 replies to the VIP (the servers have
no FTP-specific configuration).  curl (>= 7.74, ``--ftp-skip-pasv-ip`` is the
default) and ftplib (Python >= 3.9) would connect to the control connection's
address (the VIP) anyway, so the tests also check that every data connection's
far end is the VIP and that the director's table holds it on the control
connection's server.
"""

import re

import pytest

VIP = "10.0.0.100"
SERVERS = ("10.0.0.11", "10.0.0.12", "10.0.0.13")
FLAGS = {"droute": "-g", "tunnel": "-i", "nat": "-m"}
CURL_MODES = ("epsv", "pasv", "eprt", "port")
PASSIVE = "10.0.0.100:30000-30100"



@pytest.fixture(scope="module", params=list(FLAGS))
def alab(request, lab_factory):
    """A lab per forwarding method with FTP and TLS servers on every real server."""
    lab = lab_factory(request.param)
    lab.start_ftp_servers()
    lab.start_tls_servers()
    return lab


@pytest.fixture
def droute_lab(lab_factory):
    lab = lab_factory("droute")
    lab.start_ftp_servers()
    lab.start_tls_servers()
    return lab


def configure(lab, service, opts, flag=None):
    """``-C``, then ``-A service opts`` and the three servers with the lab's method."""
    flag = FLAGS[lab.name] if flag is None else flag
    lab.lvsadm("-C")
    lab.lvsadm(f"-A {service} {opts}")
    for rs in SERVERS:
        lab.lvsadm(f"-a {service} -r {rs} {flag}".rstrip())


def connections(lab):
    """``lvsadm -L -c -n`` rows: (client ip, client port, vip, vport, server ip, state)."""
    rows = []
    for line in lab.lvsadm("-L -c -n").stdout.splitlines():
        m = re.match(r"TCP \S+\s+(\S+)\s+(\S+):(\d+)\s+(\S+):(\d+)\s+(\S+):\d+$", line)
        if m:
            rows.append((m[2], int(m[3]), m[4], int(m[5]), m[6], m[1]))
    return rows


def table_keys(lab):
    """(client, cport, vport) of every connection (not template) the director lists."""
    return {(r["client"], r["cport"], r["vport"]) for r in lab.connection_table()
            if not r.get("template")}


def new_rows(lab, client, before):
    """The connections of ``client`` listed now that were not in ``before``."""
    return [r for r in lab.connection_table() if not r.get("template")
            and r["client"] == lab.ip(client)
            and (r["client"], r["cport"], r["vport"]) not in before]


def is_passive_port(port):
    return 30000 <= port <= 30100


def assert_session_rows(lab, rows, name, active):
    """One FTP session's rows: its control and data connections all go to ``name``.

    Proves the data connection went through the director (it has an entry)
    and which server it reached, whatever the client saw.
    """
    control = [r for r in rows if r["vport"] == 21]
    data = [r for r in rows if r["vport"] != 21]
    assert [r["server"] for r in control] == [lab.ip(name)], rows
    assert data, f"no data connection through the director: {rows}"
    assert all(r["server"] == lab.ip(name) for r in data), rows
    if active:
        assert all(r["vport"] == 20 for r in data), rows           # from the server's port 20
    else:
        assert all(is_passive_port(r["vport"]) for r in data), rows


def ftp_ok(lab, client, mode, **kwargs):
    """A curl FTP command that must succeed, and its director entries; returns the result."""
    before = table_keys(lab)
    result = lab.ftp(client, mode=mode, **kwargs)
    assert result.banner in lab.servers, result.transcript()
    assert_session_rows(lab, new_rows(lab, client, before), result.banner,
                        active=mode in ("eprt", "port"))
    return result


def assert_same_server(lab, client, result):
    """The file fetched names the server of the control connection."""
    assert result.body == result.banner, (
        f"{client} {result.mode}: control connection on {result.banner}, "
        f"data from {result.body!r}\n{result.transcript()}")


def assert_through_vip(session):
    """Every data connection of an ftplib session had the VIP at its far end."""
    peers = session["data_peers"]
    assert peers and all(p.split(":")[0] == VIP for p in peers), session


def ftp_every_mode(lab, clients=None):
    """Each client: curl in all four modes; return {client: server}."""
    chosen = {}
    for client in clients or lab.clients:
        names = set()
        for mode in CURL_MODES:
            result = ftp_ok(lab, client, mode)
            assert_same_server(lab, client, result)
            names.add(result.banner)
        assert len(names) == 1, f"{client}: its FTP sessions reached {names}"
        chosen[client] = names.pop()
    return chosen


def data_connections_follow(lab, client, server_name):
    """Every connection and template of ``client`` in the table goes to ``server_name``."""
    rows = [r for r in connections(lab) if r[0] == lab.ip(client)]
    assert rows, "no connections listed"
    assert {r[4] for r in rows} == {lab.ip(server_name)}, rows
    return rows


# --------------------------------------------------------------------------
# the seed, verbatim


def test_seed_commands_verbatim_carry_passive_ftp_and_ssl(droute_lab):
    """``-A -t <VIP>:0 -s pcc`` and ``-a -t <VIP>:0 -R <server>``, as written in 1999."""
    lab = droute_lab
    lab.lvsadm("-C")
    lab.lvsadm("-A -t 10.0.0.100:0 -s pcc")
    for rs in SERVERS:
        lab.lvsadm(f"-a -t 10.0.0.100:0 -R {rs}")
    listing = lab.lvsadm("-L -n").stdout
    assert re.search(r"TCP  10\.0\.0\.100:0 rr persistent 360", listing), listing
    assert len(re.findall(r"-> 10\.0\.0\.1\d:0 +Route", listing)) == 3, listing
    chosen = {}
    for client in lab.clients:
        names = set()
        for mode in ("epsv", "pasv"):
            result = ftp_ok(lab, client, mode)
            assert_same_server(lab, client, result)
            names.add(result.banner)
        session = lab.ftplib(client, passive=True)
        assert "error" not in session, session
        assert session["banner"] == f"220 {session['whoami']}", session
        assert_through_vip(session)
        names.add(session["whoami"])
        # SSL through the same port-0 template: same server, session resumed
        sess = lab.log_dir / f"seed-{client}.sess"
        first = lab.tls(client, sess_out=sess)
        later = [lab.tls(client, sess_in=sess) for _ in range(2)]
        names |= {first.server} | {r.server for r in later}
        assert first.reused is False and all(r.reused and r.server_reused for r in later), \
            [first] + later
        assert len(names) == 1, f"{client}: FTP and SSL reached {names}"
        chosen[client] = names.pop()
    assert len(set(chosen.values())) == len(lab.clients), chosen   # rr spreads the clients
    for client, name in chosen.items():
        data_connections_follow(lab, client, name)


# --------------------------------------------------------------------------
# FTP with a persistent port-0 service (the seed's configuration), each method


def test_port0_pcc_carries_passive_and_active_ftp(alab):
    lab = alab
    configure(lab, "-t 10.0.0.100:0", "-s pcc")
    chosen = ftp_every_mode(lab)
    assert len(set(chosen.values())) == len(lab.clients), chosen
    for client, name in chosen.items():
        rows = data_connections_follow(lab, client, name)
        vports = {r[3] for r in rows}
        assert 21 in vports and 20 in vports, rows                  # control, active data
        assert any(is_passive_port(p) for p in vports), rows        # passive data


def test_port0_pcc_listing_and_upload_stay_on_the_control_server(alab):
    lab = alab
    configure(lab, "-t 10.0.0.100:0", "-s pcc")
    uploads = lab.log_dir / "uploads"
    uploads.mkdir(exist_ok=True)
    for client in lab.clients:
        listing = ftp_ok(lab, client, "epsv", path="", listing=True)
        name = listing.banner
        names = listing.body.split()
        assert f"served-by-{name}" in names and "whoami.txt" in names, listing.transcript()
        assert not [n for n in names if n.startswith("served-by-") and n != f"served-by-{name}"]
        for mode in ("epsv", "port"):
            remote = f"up-{lab.name}-{client}-{mode}.txt"
            local = uploads / remote
            local.write_text(f"{client} {mode} upload")
            result = ftp_ok(lab, client, mode, path=remote, upload=local)
            assert result.banner == name, result.transcript()
            holders = [s for s in lab.servers if (lab.ftp_root(s) / remote).exists()]
            assert holders == [name], f"{remote} stored on {holders}, control on {name}"
            assert (lab.ftp_root(name) / remote).read_text() == local.read_text()


def test_port0_pcc_ftplib_passive_and_active(alab):
    lab = alab
    configure(lab, "-t 10.0.0.100:0", "-s pcc")
    for client in lab.clients:
        servers = set()
        for passive, site in ((True, []), (False, []), (False, ["DATAPORT 0"])):
            text = f"ftplib {client} passive={passive} {site}"
            session = lab.ftplib(client, passive=passive, site=site,
                                 upload=(f"ftplib-{lab.name}-{client}.txt", text))
            assert "error" not in session, session
            assert session["banner"] == f"220 {session['whoami']}", session
            assert f"served-by-{session['whoami']}" in session["names"], session
            assert session["uploaded"] == text, session
            assert_through_vip(session)
            if not passive:
                # active data comes from VIP:20, or from an unprivileged port
                # after SITE DATAPORT 0
                ports = {int(p.split(":")[1]) for p in session["data_peers"]}
                if site:
                    assert all(p >= 1024 for p in ports), session
                else:
                    assert ports == {20}, session
            servers.add(session["whoami"])
        assert len(servers) == 1, f"{client}: {servers}"


# --------------------------------------------------------------------------
# FTP with a persistent service on port 21 (IPVS's FTP fallback, §3.6)


def test_port21_persistent_carries_passive_and_active_ftp(alab):
    """Data connections to VIP:20 and to unprivileged ports follow the port-21 template."""
    lab = alab
    configure(lab, "-t 10.0.0.100:21", "-s rr -p 60")
    chosen = ftp_every_mode(lab)
    assert len(set(chosen.values())) == len(lab.clients), chosen
    for client, name in chosen.items():
        session = lab.ftplib(client, passive=False, site=["DATAPORT 0"])
        assert "error" not in session and session["whoami"] == name, session
        assert_through_vip(session)
        rows = data_connections_follow(lab, client, name)
        vports = {r[3] for r in rows}
        assert {21, 20} <= vports, rows
        assert any(is_passive_port(p) for p in vports), rows         # passive, fallback
        assert any(p >= 1024 and not is_passive_port(p) for p in vports), rows  # DATAPORT 0
    # the template is the port-21 service's all-ports template: vport 0
    listing = lab.lvsadm("-L -c -n").stdout
    for client, name in chosen.items():
        assert re.search(rf"TCP \S+ +NONE +{lab.ip(client)}:0 +10\.0\.0\.100:0 +"
                         rf"{lab.ip(name)}:0$", listing, re.M), listing


def test_port21_template_leaves_ports_other_services_claim(alab):
    """The fallback only applies when no other virtual service claims the port."""
    lab = alab
    configure(lab, "-t 10.0.0.100:21", "-s rr -p 60")
    flag = FLAGS[lab.name]
    lab.lvsadm("-A -t 10.0.0.100:8080 -s rr")
    for rs in SERVERS:
        lab.lvsadm(f"-a -t 10.0.0.100:8080 -r {rs} {flag}")
    ftp_server = ftp_ok(lab, "c1", "epsv").banner
    web = [lab.curl("c1", f"http://{VIP}:8080/").strip() for _ in range(3)]
    assert sorted(web) == sorted(lab.servers), web                  # rr, not the template
    assert ftp_ok(lab, "c1", "eprt").banner == ftp_server


# --------------------------------------------------------------------------
# FTP without persistence: why persistence exists


@pytest.mark.parametrize("how", ["fwmark", "port21"])
def test_without_persistence_passive_ftp_fails_in_dr_and_tunnel(alab, how):
    """Control and passive data connections are scheduled apart and break.

    ``fwmark``: one non-persistent mark covering 21 and the passive range
    (``-A -f 1 -s rr``); ``port21``: a non-persistent service on 21 alone.
    rr never picks the same server twice in a row among three, so each data
    connection lands on a server that is not listening on the announced port.
    """
    lab = alab
    if lab.name == "nat":
        pytest.skip("NAT without persistence is the FTP helper's case")
    lab.lvsadm("--delete-mark 1", check=False)
    try:
        if how == "fwmark":
            lab.lvsadm("-C")
            lab.lvsadm(f"--add-mark 1 --match tcp:10.0.0.100:21 --match tcp:{PASSIVE} "
                       "--mark-name ftp")
            configure(lab, "-f 1", "-s rr")
        else:
            configure(lab, "-t 10.0.0.100:21", "-s rr")
        outcomes = []
        for i in range(4):
            client = lab.clients[i % len(lab.clients)]
            before = table_keys(lab)
            result = lab.ftp(client, mode="epsv" if i % 2 == 0 else "pasv", timeout=5,
                             check=False)
            assert result.banner in lab.servers, result.transcript()   # control works
            outcomes.append((client, result.mode, result.banner, result.returncode,
                             result.body))
            assert result.returncode != 0 or result.body != result.banner, (
                f"passive FTP without persistence reached one server: {outcomes}\n"
                + result.transcript())
            # the table shows why: no passive data connection of this session
            # went to the control connection's server
            new = new_rows(lab, client, before)
            control = [r for r in new if r["vport"] == 21]
            data = [r for r in new if is_passive_port(r["vport"])]
            assert [r["server"] for r in control] == [lab.ip(result.banner)], new
            assert all(r["server"] != lab.ip(result.banner) for r in data), new
            if how == "fwmark":
                assert data, new      # the mark's service scheduled them, elsewhere
    finally:
        lab.lvsadm("-C")
        lab.lvsadm("--delete-mark 1", check=False)


# --------------------------------------------------------------------------
# NAT without persistence: the FTP helper's tests


@pytest.mark.parametrize("mode", CURL_MODES)
def test_nat_without_persistence_ftp_through_the_helper(lab_factory, mode):
    lab = lab_factory("nat")
    lab.start_ftp_servers()
    configure(lab, "-t 10.0.0.100:21", "-s rr")
    for client in lab.clients:
        result = ftp_ok(lab, client, mode)
        assert_same_server(lab, client, result)


def test_nat_without_persistence_ftplib_sees_the_vip(lab_factory):
    """The helper replaces the real address in 227 with the VIP; active data comes from VIP:20."""
    lab = lab_factory("nat")
    lab.start_ftp_servers()
    configure(lab, "-t 10.0.0.100:21", "-s rr")
    for client in lab.clients:
        for passive in (True, False):
            session = lab.ftplib(client, passive=passive, trust_pasv_address=True,
                                 upload=(f"helper-{client}-{passive}.txt", "via the helper"))
            assert "error" not in session, session
            assert session["banner"] == f"220 {session['whoami']}", session
            assert session["uploaded"] == "via the helper", session
            assert_through_vip(session)
            pasv = [r for r in session["replies"] if r.startswith("227")]
            assert all("(10,0,0,100," in r for r in pasv), pasv
            if not passive:
                assert {p.split(":")[1] for p in session["data_peers"]} == {"20"}, session


# --------------------------------------------------------------------------
# SSL


def test_ssl_persistent_443_resumes_on_one_server(alab):
    lab = alab
    configure(lab, "-t 10.0.0.100:443", "-s rr -p 60")
    first_servers = {}
    for client in lab.clients:
        sess = lab.log_dir / f"p443-{client}.sess"
        first = lab.tls(client, sess_out=sess)
        assert first.reused is False and first.server_reused is False, first
        later = [lab.tls(client, sess_in=sess) for _ in range(3)]
        assert {r.server for r in later} == {first.server}, [first] + later
        assert all(r.reused and r.server_reused for r in later), [first] + later
        first_servers[client] = first.server
    assert len(set(first_servers.values())) == len(lab.clients), first_servers
    for client, name in first_servers.items():
        data_connections_follow(lab, client, name)


def test_ssl_without_persistence_resumption_fails_on_other_servers(alab):
    lab = alab
    configure(lab, "-t 10.0.0.100:443", "-s rr")
    for client in lab.clients[:2]:
        sess = lab.log_dir / f"rr443-{client}.sess"
        first = lab.tls(client, sess_out=sess)
        later = [lab.tls(client, sess_in=sess) for _ in range(4)]
        for r in later:
            # a session resumes exactly where it was made: each server has its own cache
            assert r.reused == (r.server == first.server) == r.server_reused, [first] + later
        elsewhere = [r for r in later if r.server != first.server]
        assert len(elsewhere) >= 2, [first] + later                 # rr moved the client
        assert any(r.reused for r in later), [first] + later        # and came back: Reused
