"""``lvsadm``: ipvsadm's command line over the lvs_app controller's REST API.

Stdlib only (urllib): no Ryu, no eventlet.  Each invocation parses its
command line locally first (a usage error is printed and nothing is sent),
then makes one REST call and prints what ipvsadm would print.

The controller: ``--server URL`` (anywhere on the command line), else the
``LVSADM_SERVER`` environment variable, else ``http://127.0.0.1:8080``.  The
REST token, when the controller wants one: ``--token-file FILE`` (anywhere),
else the ``LVSADM_TOKEN`` environment variable (the token itself).

Exit codes follow ipvsadm 1.31:

* 0 on success;
* 2 for its ``fail(2, ...)`` usage errors, 255 for popt's errors and for a
  line that does not start with a command (``tryhelp_exit(-1)``);
* 255 when the controller refuses a change (add, edit, delete, zero, --set,
  -R, marks): ipvsadm prints ``ipvs_strerror()`` and returns -1 from main;
* 1 when a listing fails (ipvsadm's ``list_service``/``list_all`` call
  ``exit(1)``, e.g. ``-L -t`` of a service that does not exist), and when the
  controller cannot be reached or answers with something that is not the API,
  and when the server URL or the token cannot be used (``lvsadm: ...``).
"""

import http.client
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request

from lvs_app import access, ipvsadm
from lvs_app.ipvsadm import DEFAULT_SERVER, UsageError

TIMEOUT = 30            # seconds for one REST call

EXIT_REFUSED = 255      # ipvsadm: process_options() returns -1
EXIT_FAILED = 1         # ipvsadm: exit(1) in the listing functions


class ApiError(Exception):
    """The controller answered with an HTTP error."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


class Unreachable(Exception):
    """The controller could not be reached."""


class Unusable(Exception):
    """lvsadm's own settings (server URL, token) cannot be used."""


class Client:
    """A minimal JSON/text client for the lvs_app REST API.

    :meth:`request` builds what lvsadm sends (the Content-Type of each body,
    the bearer token); :meth:`exchange` carries it over HTTP, and is all a
    test replaces to answer from an in-process REST app.
    """

    def __init__(self, base_url, token=None):
        self.base_url = base_url.rstrip("/")
        self.token = token

    def request(self, method, path, body=None):
        """One call; returns decoded JSON, text, or None for an empty answer."""
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = None
        if isinstance(body, str):
            data = body.encode()
            headers["Content-Type"] = "text/plain; charset=utf-8"
        elif body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        status, content_type, raw = self.exchange(method, path, data, headers)
        if status >= 400:
            raise ApiError(status, _error_message(status, raw))
        return _decode(raw, content_type)

    def exchange(self, method, path, data, headers):
        """Send one request; (status, Content-Type, body bytes) or Unreachable."""
        req = urllib.request.Request(self.base_url + path, data=data, method=method,
                                     headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
                return resp.status, resp.headers.get("Content-Type", ""), resp.read()
        except urllib.error.HTTPError as err:
            return err.code, err.headers.get("Content-Type", ""), err.read()
        except urllib.error.URLError as err:
            reason = getattr(err.reason, "strerror", None) or err.reason
            raise Unreachable(f"cannot connect to the lvs_app controller at "
                              f"{self.base_url}: {reason}") from None
        except (OSError, ValueError, http.client.HTTPException) as err:  # timeouts, resets
            raise Unreachable(f"cannot talk to the lvs_app controller at "
                              f"{self.base_url}: {err}") from None


def _decode(raw, content_type):
    if not raw:
        return None
    text = raw.decode("utf-8", "replace")
    if "json" in content_type:
        return json.loads(text)
    return text


def _error_message(status, raw):
    """The ``{"error": {"message": ...}}`` envelope's message, or something readable."""
    text = raw.decode("utf-8", "replace") if raw else ""
    try:
        doc = json.loads(text)
        message = doc["error"]["message"]
        if isinstance(message, str) and message:
            return message
    except (ValueError, KeyError, TypeError):
        pass
    reason = http.client.responses.get(status, "")
    first = text.strip().splitlines()[0][:200] if text.strip() else ""
    return f"HTTP {status} {reason}" + (f": {first}" if first else "")


# lvsadm's own options, taken out of the command line wherever they are
OWN_OPTIONS = ("--server", "--token-file")


def _pop_own_options(argv):
    """Take ``--server URL`` and ``--token-file FILE`` (or ``--opt=value``) out of argv.

    Returns ({option: value}, the rest); stops at ``--``.
    """
    found, rest, i = {}, [], 0
    while i < len(argv):
        word = argv[i]
        if word == "--":
            rest.extend(argv[i:])
            break
        name, eq, value = word.partition("=")
        if name in OWN_OPTIONS and eq:
            found[name] = value
        elif word in OWN_OPTIONS:
            if i + 1 >= len(argv):
                raise UsageError(f"{word}: missing argument", exit_code=255)
            found[word] = argv[i + 1]
            i += 1
        else:
            rest.append(word)
        i += 1
    return found, rest


def server_url(given):
    """The controller's URL, checked: from ``--server``, $LVSADM_SERVER or the default."""
    if given is not None:
        url, source = given, "--server"
    elif os.environ.get("LVSADM_SERVER"):
        url, source = os.environ["LVSADM_SERVER"], "$LVSADM_SERVER"
    else:
        return DEFAULT_SERVER
    rule = "must be http://HOST[:PORT] or https://HOST[:PORT]"
    try:
        parts = urllib.parse.urlsplit(url)
        _ = parts.port                       # ValueError: not a number, out of range
    except ValueError as err:
        raise Unusable(f"{source} {url!r}: {err}; the URL {rule}") from None
    if (parts.scheme not in ("http", "https") or not parts.hostname or parts.query
            or parts.fragment or "@" in parts.netloc
            or any(c.isspace() or not c.isprintable() for c in url)):
        raise Unusable(f"{source} {url!r}: the URL {rule}")
    return url


def bearer_token(token_file):
    """The REST token: from ``--token-file FILE``, else $LVSADM_TOKEN, else None."""
    try:
        if token_file is not None:
            return access.read_token(token_file)
        if os.environ.get("LVSADM_TOKEN"):
            return access.check_token(os.environ["LVSADM_TOKEN"].encode("utf-8", "replace"),
                                      "$LVSADM_TOKEN")
    except access.AccessConfigError as err:
        raise Unusable(err.message) from None
    return None


def _seg(text):
    return urllib.parse.quote(str(text), safe=":")


def _service_path(cmd):
    return f"/ipvs/services/{_seg(cmd.service_id())}"


def _server_path(cmd):
    return f"{_service_path(cmd)}/servers/{_seg(cmd.server_id())}"


def _unwrap(doc, key):
    """Accept both ``{"key": value}`` and the bare value."""
    if isinstance(doc, dict) and key in doc:
        return doc[key]
    return doc


def run(cmd, client, stdin, stdout):
    """Execute a parsed Command against the API; returns the exit code."""
    c = cmd.command
    if c == "list":
        if cmd.connection:
            doc = client.request("GET", "/ipvs/connections")
            stdout.write(ipvsadm.format_connections(_unwrap(doc, "connections") or [],
                                                    cmd.persistent_conn))
        elif cmd.timeout:
            doc = client.request("GET", "/ipvs/timeouts")
            stdout.write(ipvsadm.format_timeout(_unwrap(doc, "timeouts")))
        elif cmd.has_service:
            svc = _unwrap(client.request("GET", _service_path(cmd)), "service")
            stdout.write(ipvsadm.format_list([svc], cmd, header=False))
        else:
            doc = client.request("GET", "/ipvs")
            stdout.write(ipvsadm.format_list(
                doc.get("services") or [], cmd, header=True,
                version=doc.get("version", ipvsadm.IPVS_VERSION),
                size=doc.get("size", ipvsadm.CONN_TAB_SIZE)))
        return 0
    if c == "save":
        doc = client.request("GET", "/ipvs")
        stdout.write(ipvsadm.format_save(doc.get("services") or [], doc.get("marks") or []))
        return 0
    if c == "list-marks":
        doc = client.request("GET", "/ipvs/marks")
        stdout.write(ipvsadm.format_marks(_unwrap(doc, "marks") or []))
        return 0
    if c == "list-health":
        stdout.write(ipvsadm.format_health(client.request("GET", "/ipvs/health")))
        return 0
    if c == "restore":
        text = stdin.read()
        ipvsadm.parse_rules(text)          # usage errors stop here, nothing is sent
        client.request("POST", "/ipvs/rules", text)
        return 0
    if c == "add-service":
        client.request("POST", "/ipvs/services", cmd.service_body())
    elif c == "edit-service":
        client.request("PATCH", _service_path(cmd), cmd.edit_service_options())
    elif c == "delete-service":
        client.request("DELETE", _service_path(cmd))
    elif c == "clear":
        client.request("DELETE", "/ipvs/services")
    elif c == "add-server":
        client.request("POST", f"{_service_path(cmd)}/servers", cmd.server_body())
    elif c == "edit-server":
        client.request("PATCH", _server_path(cmd), cmd.edit_server_options())
    elif c == "delete-server":
        client.request("DELETE", _server_path(cmd))
    elif c == "zero":
        path = f"{_service_path(cmd)}/zero" if cmd.has_service else "/ipvs/zero"
        client.request("POST", path)
    elif c == "set-timeouts":
        tcp, tcpfin, udp = cmd.timeouts
        client.request("PUT", "/ipvs/timeouts", {"tcp": tcp, "tcpfin": tcpfin, "udp": udp})
    elif c == "add-mark":
        client.request("POST", "/ipvs/marks", {"mark": cmd.mark, "name": cmd.mark_name or "",
                                               "matches": list(cmd.matches)})
    elif c == "delete-mark":
        client.request("DELETE", f"/ipvs/marks/{cmd.mark}")
    else:                                   # pragma: no cover - parse_args knows no other
        raise UsageError(f"unknown command {c}")
    return 0


def main(argv=None):
    """The ``lvsadm`` console script; returns the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        own, argv = _pop_own_options(argv)
        cmd = ipvsadm.parse_args(argv, prog="lvsadm")
    except UsageError as err:
        sys.stderr.write(err.message + "\n")
        return err.exit_code
    if cmd.command == "help":
        sys.stdout.write(ipvsadm.format_usage("lvsadm"))
        return 0
    if cmd.command == "version":
        sys.stdout.write(ipvsadm.format_version())
        return 0
    try:
        client = Client(server_url(own.get("--server")), bearer_token(own.get("--token-file")))
    except Unusable as err:
        sys.stderr.write(f"lvsadm: {err}\n")
        return EXIT_FAILED
    try:
        return run(cmd, client, sys.stdin, sys.stdout)
    except UsageError as err:               # -R: a bad line on stdin
        sys.stderr.write(err.message + "\n")
        return err.exit_code
    except ApiError as err:
        sys.stderr.write(err.message + "\n")
        if cmd.command in ipvsadm.MUTATING_COMMANDS or cmd.command == "restore":
            return EXIT_REFUSED
        return EXIT_FAILED
    except Unreachable as err:
        sys.stderr.write(f"lvsadm: {err}\n")
        return EXIT_FAILED
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        sys.stderr.write(f"lvsadm: unexpected answer from {client.base_url}: {err}\n")
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
