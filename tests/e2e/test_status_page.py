"""The status page (GET /status) in a real browser: headless Chromium against
ryu-manager lvs_app.

* With a token (a bare ``ryu-manager``, no switch, so no root or Open
  vSwitch): the page itself needs no token, its requests do; without one it
  shows the 401 and a token field, with ``#token=`` it draws every service:
  IPv4, IPv6, fwmark (IPv4 and IPv6), one without servers, and the
  keepalived health checks matched to their servers.
* In the NAT lab: real connections and downloads through Open vSwitch; once
  the switch's counters were polled after the traffic (and the rate
  estimator has sampled them), the page's Conns, ActiveConn, InActConn and
  weights are those ``lvsadm -L -n`` shows, its InPkts and OutBytes those of
  ``lvsadm -L -n --stats --exact`` (within what a poll can add), and its
  rates are not 0.  The screenshot, taken then, is kept as ``status.png`` in
  the lab's log directory.

Chromium is Debian's ``chromium`` (scripts/install.sh installs it).  Without
it these tests are skipped with the reason; with ``CI=true`` they fail.
The DOM is read with the stdlib's html.parser.
"""

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

import pytest

from lvslab import wait_until

CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]
VIP = "10.0.0.100"
# Root needs --no-sandbox.  No proxy, no first-run, no Google services: the
# browser talks to the controller on loopback and to nothing else.
CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--no-proxy-server", "--no-first-run", "--no-default-browser-check",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--disable-extensions", "--virtual-time-budget=8000")
TOKEN = "s3cret+/=token"           # '+', '/' and '=' as base64 tokens have them
KEEPALIVED = """
virtual_server 10.0.0.100 80 {
    lb_algo wrr
    lb_kind NAT
    protocol TCP
    quorum 1
    sorry_server 10.0.0.50 80
    real_server 10.0.0.11 80 {
        weight 3
        TCP_CHECK {
            connect_timeout 2
        }
    }
    real_server 10.0.0.13 8080 {
        weight 1
        TCP_CHECK {
            connect_timeout 2
        }
    }
}
"""
LVSADM = (                         # after keepalived.conf: IPv6, fwmark, UDP
    "-A -t [2001:db8::100]:443 -s wlc -p 60",
    "-a -t [2001:db8::100]:443 -r [2001:db8::11]:443 -m -w 2",
    "--add-mark 7 --match tcp:10.0.0.100:8000-8100",
    "-A -f 7 -s sh -b sh-port",
    "-a -f 7 -r 10.0.0.21:80 -m -w 0",
    "--add-mark 8 --match tcp:[2001:db8::200]:80",
    "-A -f 8 -6 -s rr",
    "-a -f 8 -6 -r [2001:db8::31]:80 -g",
    "-A -u 10.0.0.100:53 -s rr",
)


# -- the browser ----------------------------------------------------------------------------

@pytest.fixture(scope="session")
def chromium():
    path = shutil.which("chromium")
    if path is None:
        problem = ("chromium is not installed (scripts/install.sh installs it: "
                   "apt-get install --no-install-recommends chromium)")
        if CI:
            pytest.fail(f"CI=true, so this is an error, not a skip: {problem}", pytrace=False)
        pytest.skip(problem)
    return path


def browse(chromium, url, screenshot=None):
    """The DOM after 8 s of the page's (virtual) time, or a screenshot of it."""
    with tempfile.TemporaryDirectory(prefix="lvs-chromium-") as profile:
        argv = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}"]
        argv += ([f"--screenshot={screenshot}", "--window-size=1400,900"] if screenshot
                 else ["--dump-dom"])
        proc = subprocess.run(argv + [url], capture_output=True, text=True, timeout=120,
                              cwd=profile, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"{' '.join(argv)} {url}: exit {proc.returncode}\n{proc.stderr}"
    if screenshot:
        assert Path(screenshot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", proc.stderr
    return proc.stdout


# -- reading the DOM ------------------------------------------------------------------------

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr"}


class Element:
    def __init__(self, tag, attrs, parent=None):
        self.tag, self.attrs, self.parent, self.children = tag, dict(attrs), parent, []

    def iter(self):
        yield self
        for child in self.children:
            if isinstance(child, Element):
                yield from child.iter()

    def find_all(self, tag=None, **attrs):
        """Descendants (and self) with ``tag`` whose attributes (``data_x`` for
        ``data-x``) are the values given; True: present."""
        wanted = {name.replace("_", "-"): value for name, value in attrs.items()}
        return [e for e in self.iter() if (tag is None or e.tag == tag) and all(
            (name in e.attrs) if value is True else e.attrs.get(name) == value
            for name, value in wanted.items())]

    @property
    def text(self):
        return "".join(c.text if isinstance(c, Element) else c for c in self.children)


class _Tree(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = self.node = Element("#document", {})

    def handle_starttag(self, tag, attrs):
        element = Element(tag, attrs, self.node)
        self.node.children.append(element)
        if tag not in VOID:
            self.node = element

    def handle_endtag(self, tag):
        node = self.node
        while node is not self.root and node.tag != tag:
            node = node.parent
        if node is not self.root:
            self.node = node.parent

    def handle_data(self, data):
        self.node.children.append(data)


def _fields(row):
    """{data-field: data-value, or the text} of everything in a row."""
    return {e.attrs["data-field"]: e.attrs.get("data-value", e.text.strip())
            for e in row.find_all(data_field=True)}


def read_page(dom):
    """What the page shows: its services, error line, refreshes and token form."""
    tree = _Tree()
    tree.feed(dom)
    root = tree.root
    ids = {e.attrs["id"]: e for e in root.find_all(id=True)}
    assert "refreshed" in ids and "error" in ids, f"GET /status is not the status page:\n{dom[:2000]}"
    services = {}
    for table in root.find_all("table", data_service=True):
        line = table.find_all("tr", data_row="service")
        assert len(line) == 1, dom
        services[table.attrs["data-service"]] = {
            "service": _fields(line[0]),
            "servers": {tr.attrs["data-server"]: _fields(tr)
                        for tr in table.find_all("tr", data_server=True)}}
    error = ids["error"]
    return {"services": services,
            "error": None if "hidden" in error.attrs else error.text.strip(),
            "error_status": error.attrs.get("data-status"),
            "refreshes": int(ids["refreshed"].attrs.get("data-count") or 0),
            "token_form": "hidden" not in ids["token-form"].attrs,
            "summary": ids["summary"].text.strip()}


# -- a controller with a token: no switch, no lab --------------------------------------------

def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def token_controller(tmp_path_factory):
    """ryu-manager lvs_app with --lvs-rest-token-file and a keepalived.conf,
    then IPv6, fwmark and UDP services added with lvsadm."""
    work = tmp_path_factory.mktemp("status-page")
    (work / "token").write_text(TOKEN + "\n")
    (work / "keepalived.conf").write_text(KEEPALIVED)
    rest_port = _free_port()
    url = f"http://127.0.0.1:{rest_port}"
    log_path = work / "controller.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [str(BIN / "ryu-manager"), "lvs_app", "--ofp-listen-host", "127.0.0.1",
             "--ofp-tcp-listen-port", str(_free_port()), "--wsapi-port", str(rest_port),
             "--lvs-rest-token-file", str(work / "token"),
             "--lvs-keepalived", str(work / "keepalived.conf"),
             "--lvs-health-address", "10.0.0.250"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=REPO)
    try:
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, f"ryu-manager exited:\n{log_path.read_text()}"
            try:
                request = urllib.request.Request(url + "/ipvs",
                                                 headers={"Authorization": f"Bearer {TOKEN}"})
                with urllib.request.urlopen(request, timeout=0.5):
                    break
            except OSError:
                assert time.monotonic() < deadline, f"no REST on {url}:\n{log_path.read_text()}"
                time.sleep(0.1)
        env = dict(os.environ, LVSADM_SERVER=url, LVSADM_TOKEN=TOKEN)
        for command in LVSADM:
            result = subprocess.run([str(BIN / "lvsadm"), *command.split()], env=env,
                                    capture_output=True, text=True, timeout=30)
            assert result.returncode == 0, f"lvsadm {command}: {result.stderr}"
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    text = log_path.read_text()
    assert "Traceback" not in text, text


def test_without_the_token_the_page_shows_the_401_and_asks_for_it(chromium, token_controller):
    page = read_page(browse(chromium, token_controller + "/status"))
    assert page["services"] == {}
    assert page["error_status"] == "401"
    assert "GET /ipvs, /ipvs/health: 401 this API needs 'Authorization: Bearer TOKEN'" \
        in page["error"]
    assert page["token_form"]
    assert page["refreshes"] == 0 and page["summary"] == "No data yet."


def test_a_wrong_token_is_refused(chromium, token_controller):
    page = read_page(browse(chromium, token_controller + "/status#token=wrong"))
    assert page["services"] == {} and page["token_form"]
    assert page["error"] == "GET /ipvs, /ipvs/health: 401 the bearer token is wrong"


@pytest.mark.parametrize("fragment", [f"token={urllib.parse.quote(TOKEN, safe='')}",
                                      f"token={TOKEN}"], ids=["percent-encoded", "raw"])
def test_with_the_token_in_the_fragment_the_page_shows_every_service(
        chromium, token_controller, fragment):
    page = read_page(browse(chromium, f"{token_controller}/status#{fragment}"))
    assert page["error"] is None, page["error"]
    assert not page["token_form"]
    assert page["refreshes"] >= 2                       # every 2 s of its 8
    assert page["summary"].startswith("IP Virtual Server version 1.2.1 (size=4096), 5 services")
    services = page["services"]
    assert set(services) == {"tcp-10.0.0.100-80", "tcp-2001:db8::100-443", "fwmark-7",
                             "fwmark-8-6", "udp-10.0.0.100-53"}

    # keepalived's service: its health checks matched to its servers
    web = services["tcp-10.0.0.100-80"]
    line = web["service"]
    assert (line["service"], line["scheduler"], line["persistence"]) == \
        ("TCP 10.0.0.100:80", "wrr", "")
    assert line["health"] == "up" and line["conns"] == "0"
    assert set(web["servers"]) == {"10.0.0.11:80", "10.0.0.13:8080"}
    for server, weight in (("10.0.0.11:80", "3"), ("10.0.0.13:8080", "1")):
        row = web["servers"][server]
        assert (row["address"], row["forward"], row["weight"]) == (f"\u2192 {server}", "masq",
                                                                   weight)
        assert row["health"] == "up"
        assert row["last_result"].startswith(f"TCP_CHECK {server}: not run")   # no switch
        for field in ("activeconns", "inactconns", "persistconns", "conns", "inpkts",
                      "outpkts", "inbytes", "outbytes", "cps", "inbps", "outbps"):
            assert row[field] == "0", field

    v6 = services["tcp-2001:db8::100-443"]
    assert (v6["service"]["service"], v6["service"]["persistence"]) == \
        ("TCP [2001:db8::100]:443", "persistent 60")
    assert v6["service"]["health"] == ""                  # no health checks: a dash
    assert set(v6["servers"]) == {"[2001:db8::11]:443"}
    assert v6["servers"]["[2001:db8::11]:443"]["weight"] == "2"

    mark = services["fwmark-7"]
    assert (mark["service"]["service"], mark["service"]["scheduler"],
            mark["service"]["flags"]) == ("FWM 7", "sh", "sh-port")
    assert mark["servers"]["10.0.0.21:80"]["weight"] == "0"

    mark6 = services["fwmark-8-6"]
    assert mark6["service"]["service"] == "FWM 8 IPv6"
    assert mark6["servers"]["[2001:db8::31]:80"]["forward"] == "droute"

    assert services["udp-10.0.0.100-53"]["servers"] == {}


# -- the NAT lab: real connections ----------------------------------------------------------

DOWNLOAD = 200_000          # bytes per download: counters and rates worth reading
TRAFFIC = ("inpkts", "outbytes")    # compared with --stats --exact, within a poll's worth


def lvsadm_view(lab):
    """{"conns": service Conns, "servers": {addr:port: {...}}} for VIP:80, from
    ``lvsadm -L -n`` and ``lvsadm -L -n --stats --exact``; ``traffic``:
    {row (the service "", or addr:port): {"inpkts", "outbytes"}}."""
    servers, conns, traffic = {}, None, {}
    for line in lab.lvsadm("-L -n").stdout.splitlines():
        parts = line.split()
        if line.startswith("  -> ") and parts[1][0].isdigit():
            servers[parts[1]] = {"forward": parts[2], "weight": parts[3],
                                 "activeconns": parts[4], "inactconns": parts[5]}
    for line in lab.lvsadm("-L -n --stats --exact").stdout.splitlines():
        parts = line.split()
        if line.startswith(f"TCP  {VIP}:80 "):
            conns = parts[2]
            traffic[""] = {"inpkts": int(parts[3]), "outbytes": int(parts[6])}
        elif line.startswith("  -> ") and parts[1] in servers:
            servers[parts[1]]["conns"] = parts[2]
            traffic[parts[1]] = {"inpkts": int(parts[3]), "outbytes": int(parts[6])}
    return {"conns": conns, "servers": servers, "traffic": traffic}


def page_view(page):
    service = page["services"].get(f"tcp-{VIP}-80")
    if service is None:
        return None
    rows = dict(service["servers"], **{"": service["service"]})
    return {"conns": service["service"]["conns"],
            "servers": {server: {"forward": row["forward"], "weight": row["weight"],
                                 "activeconns": row["activeconns"],
                                 "inactconns": row["inactconns"], "conns": row["conns"]}
                        for server, row in service["servers"].items()},
            "traffic": {name: {field: int(row[field]) for field in TRAFFIC}
                        for name, row in rows.items()}}


def stats_interval(lab):
    """The controller's --lvs-stats-interval (its default: 2 s)."""
    argv = [str(a) for a in lab.controller_cmd]
    for i, arg in enumerate(argv):
        if arg == "--lvs-stats-interval":
            return float(argv[i + 1])
        if arg.startswith("--lvs-stats-interval="):
            return float(arg.split("=", 1)[1])
    return 2.0


def polls(lab):
    """lvs_app_stats_polls_total from /metrics: the polls the switches answered."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"http://127.0.0.1:{lab.rest_port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return int(float(re.search(r"^lvs_app_stats_polls_total (\S+)$", text, re.M).group(1)))


def service_rates(lab):
    """(CPS, InBPS, OutBPS) of VIP:80 from ``lvsadm -L -n --rate --exact``."""
    for line in lab.lvsadm("-L -n --rate --exact").stdout.splitlines():
        if line.startswith(f"TCP  {VIP}:80 "):
            parts = line.split()
            return int(parts[2]), int(parts[5]), int(parts[6])
    return None


def within_a_poll(seen, listed):
    """The page's and lvsadm's InPkts/OutBytes, read at two moments: equal
    but for what one more poll may add (the connections' last segments)."""
    if set(seen) != set(listed):
        return False
    return all(abs(seen[row]["inpkts"] - listed[row]["inpkts"]) <= 10
               and abs(seen[row]["outbytes"] - listed[row]["outbytes"])
               <= max(10 * 1500, 0.01 * listed[row]["outbytes"]) for row in listed)


@pytest.mark.lab("nat")
def test_the_page_shows_what_lvsadm_shows_after_real_connections(lab, chromium):
    lab.lvsadm("-C")
    lab.apply_lvsadm()                   # 10.0.0.100:80 rr, rs1:80 rs2:80 rs3:8080, -m
    answers = [lab.curl(client, f"http://{VIP}/").strip()
               for _ in range(3) for client in ("c1", "c2", "c3")]
    assert sorted(answers) == ["rs1"] * 3 + ["rs2"] * 3 + ["rs3"] * 3
    for client in ("c1", "c2", "c3"):              # rr: one download from each server
        assert len(lab.curl(client, f"http://{VIP}/bytes/{DOWNLOAD}", timeout=20)) == DOWNLOAD

    # The counters come from the switch's flows at the next poll, the rates
    # from the estimator's next 2-second sample after it: wait for a whole
    # poll after the traffic, then for the rates.
    interval = stats_interval(lab)
    after = polls(lab) + 2                 # the one under way may have begun before the end
    wait_until(lambda: polls(lab) >= after, 3 * interval + 10, 0.2,
               "a poll of the switch's counters after the traffic")
    wait_until(lambda: (service_rates(lab) or (0, 0, 0))[2] > 0, 2 * interval + 10, 0.2,
               "a rate estimator sample with the traffic")

    url = f"http://127.0.0.1:{lab.rest_port}/status"
    # The page and lvsadm read at slightly different moments (a connection
    # may go from active to inactive in between): ask both again until they agree.
    for _ in range(4):
        page = read_page(browse(chromium, url))
        seen, listed = page_view(page), lvsadm_view(lab)
        if seen is not None:
            for row in listed["servers"].values():
                row["forward"] = row["forward"].lower()          # Masq -> masq
            if seen == listed:
                break
        time.sleep(0.5)
    assert page["error"] is None, page["error"]
    assert page["refreshes"] >= 1
    print(f"\npage traffic {seen['traffic']}\nlvsadm --stats {listed['traffic']}")
    assert within_a_poll(seen["traffic"], listed["traffic"]), \
        f"page {seen['traffic']}\nlvsadm {listed['traffic']}"
    seen.pop("traffic")
    listed.pop("traffic")
    assert seen == listed, f"page {seen}\nlvsadm {listed}"
    assert set(seen["servers"]) == {"10.0.0.11:80", "10.0.0.12:80", "10.0.0.13:8080"}
    assert int(seen["conns"]) >= len(answers)
    assert all(row["weight"] == "1" and row["forward"] == "masq" and int(row["conns"]) >= 3
               for row in seen["servers"].values())
    service = page["services"][f"tcp-{VIP}-80"]
    assert (service["service"]["service"], service["service"]["scheduler"]) == \
        (f"TCP {VIP}:80", "rr")
    for row in service["servers"].values():             # every counter is a number
        for field in ("persistconns", "inpkts", "outpkts", "inbytes", "outbytes", "cps",
                      "inbps", "outbps"):
            assert row[field].isdigit(), (field, row[field])
        # each server sent one download back (NAT: through the switch's reverse flows)
        assert int(row["inpkts"]) > 0 and int(row["outbytes"]) > DOWNLOAD, row
    line = service["service"]
    assert int(line["inpkts"]) > 0 and int(line["outbytes"]) > 3 * DOWNLOAD, line
    assert int(line["outbps"]) > 0 and int(line["inbps"]) > 0, line   # the rate cells

    # the artefact, now that it has something to show
    screenshot = lab.log_dir / "status.png"
    browse(chromium, url, screenshot=screenshot)
    print(f"status page screenshot: {screenshot}")
