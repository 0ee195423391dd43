"""The status page (lvs_app/static/status.html, served as GET /status) as a file:
it ships with the package, has the ids the browser tests and operators' scripts
use, fetches nothing from elsewhere and changes nothing.

What it draws is tested in a real browser: tests/e2e/test_status_page.py.
"""

import base64
import configparser
import fnmatch
import hashlib
import re
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path

from lvs_app import statuspage

REPO = Path(__file__).resolve().parents[2]
LOOPBACK_URL = re.compile(r"(?:127\.0\.0\.1|localhost|\[::1\])(?::\d+)?(?:/|$)")


class _Tags(HTMLParser):
    """Every start tag with its attributes, and the text of <script> and <style>."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags, self.scripts, self.styles, self._in = [], [], [], None

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag in ("script", "style"):
            self._in = tag
            (self.scripts if tag == "script" else self.styles).append("")

    def handle_endtag(self, tag):
        if tag == self._in:
            self._in = None

    def handle_data(self, data):
        if self._in == "script":
            self.scripts[-1] += data
        elif self._in == "style":
            self.styles[-1] += data


def _parsed():
    parser = _Tags()
    parser.feed(statuspage.page().decode("utf-8"))
    parser.close()
    return parser


def _script():
    scripts = _parsed().scripts
    assert len(scripts) == 1
    return scripts[0]


# -- the file and the package ---------------------------------------------------------------

def test_page_is_the_packaged_file_as_utf8_bytes():
    body = statuspage.page()
    assert isinstance(body, bytes)
    assert body == resources.files("lvs_app").joinpath("static/status.html").read_bytes()
    assert body == (Path(statuspage.__file__).parent / "static" / "status.html").read_bytes()
    assert body.lstrip().lower().startswith(b"<!doctype html>")
    assert b'<meta charset="utf-8">' in body
    body.decode("utf-8")
    assert statuspage.page() is body                     # read once
    assert statuspage.CONTENT_TYPE == "text/html; charset=utf-8"


def test_the_page_ships_in_wheels_and_sdists():
    """setup.cfg's package_data must name it: `packages = find:` alone ships .py files only."""
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    patterns = config.get("options.package_data", "lvs_app", fallback="").replace(",", " ").split()
    assert any(fnmatch.fnmatch("static/status.html", p) for p in patterns), (
        "setup.cfg needs\n[options.package_data]\nlvs_app = static/*.html")


# -- what tests and scripts rely on ---------------------------------------------------------

def test_page_has_the_documented_ids_and_hooks():
    tags = _parsed().tags
    ids = {attrs["id"] for _, attrs in tags if "id" in attrs}
    assert {"summary", "refreshed", "error", "token-form", "token-input", "services"} <= ids
    refreshed = next(attrs for _, attrs in tags if attrs.get("id") == "refreshed")
    assert refreshed["data-count"] == "0"
    error = next(attrs for _, attrs in tags if attrs.get("id") == "error")
    assert "hidden" in error and error.get("role") == "alert"
    script = _script()
    for hook in ('"data-service"', '"data-server"', '"data-field"', '"data-value"',
                 '"data-row": "service"'):
        assert hook in script, hook
    for field in ("activeconns", "inactconns", "persistconns", "weight", "forward", "health",
                  "conns", "inpkts", "outpkts", "inbytes", "outbytes", "cps", "inbps", "outbps"):
        assert f'"{field}"' in script, field


def test_page_reads_ipvs_and_health_relative_to_itself_every_two_seconds():
    script = _script()
    assert set(re.findall(r'getJson\("([^"]*)"\)', script)) == {"ipvs", "ipvs/health"}
    assert script.count("fetch(") == 1
    assert "fetch(BASE + path" in script
    assert "const BASE = location.pathname" in script
    assert "const INTERVAL = 2000;" in script


def test_token_comes_from_the_fragment_and_goes_in_the_authorization_header():
    script = _script()
    assert "location.hash" in script and "token=" in script
    assert "history.replaceState" in script               # out of the address bar
    assert 'headers["Authorization"] = "Bearer " + token' in script
    assert "location.search" not in script.replace(
        "location.pathname + location.search", "")        # never from the query string
    assert 'credentials: "omit"' in script


# -- nothing from elsewhere -----------------------------------------------------------------

def test_page_fetches_nothing_from_other_origins():
    text = statuspage.page().decode("utf-8")
    parser = _parsed()
    for url in re.findall(r"(?i)\b(?:https?|wss?|ftp)://([^\s\"'<>]*)", text):
        assert LOOPBACK_URL.match(url), f"URL to another host: {url}"
    for tag, attrs in parser.tags:
        assert tag not in ("img", "iframe", "object", "embed", "audio", "video", "base"), tag
        if tag == "script":
            assert "src" not in attrs, "external script"
        for name in ("src", "href", "action", "srcset", "poster", "data"):
            if name in attrs:
                assert attrs[name].startswith("data:"), f"<{tag} {name}={attrs[name]!r}>"
    links = [attrs for tag, attrs in parser.tags if tag == "link"]
    assert links == [{"rel": "icon", "href": "data:,"}]   # no /favicon.ico request either
    for style in parser.styles:
        assert "url(" not in style and "@import" not in style and "@font-face" not in style
    script = _script()
    for api in ("XMLHttpRequest", "WebSocket", "EventSource", "sendBeacon", "import(",
                "innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert api not in script, api


def test_page_sets_a_content_security_policy_that_allows_its_own_origin_only():
    csp = next(attrs["content"] for tag, attrs in _parsed().tags
               if tag == "meta" and attrs.get("http-equiv") == "Content-Security-Policy")
    rules = dict((part.strip().split(" ", 1) + [""])[:2] for part in csp.split(";"))
    assert rules["default-src"] == "'none'"
    assert rules["connect-src"] == "'self'"
    assert rules["img-src"] == "data:"
    assert rules["form-action"] == "'none'" and rules["base-uri"] == "'none'"


def test_headers_allow_exactly_the_inline_script_and_style():
    def sha(text):
        digest = hashlib.sha256(text.encode("utf-8")).digest()
        return f"'sha256-{base64.b64encode(digest).decode()}'"

    parser = _parsed()
    headers = statuspage.headers()
    csp = headers["Content-Security-Policy"]
    assert f"script-src {sha(parser.scripts[0])};" in csp
    assert f"style-src {sha(parser.styles[0])};" in csp
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp and "unsafe" not in csp
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["Cache-Control"] == "no-store"
    assert headers["X-Content-Type-Options"] == "nosniff"


# -- read-only ------------------------------------------------------------------------------

def test_page_is_read_only():
    text = statuspage.page().decode("utf-8")
    script = _script()
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        assert not re.search(rf"\b{method}\b", text), method
        assert not re.search(rf"\b{method}\b", script, re.I), method
    assert not re.search(r"\bmethod\s*:", script)         # fetch() without one is a GET
    forms = [attrs for tag, attrs in _parsed().tags if tag == "form"]
    assert forms == [{"id": "token-form", "hidden": None}]  # no action, no method
    assert "event.preventDefault()" in script           # the token form never submits
    buttons = [attrs for tag, attrs in _parsed().tags if tag == "button"]
    assert buttons == [{"type": "submit"}]               # the token form's only
