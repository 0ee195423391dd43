"""Who may use the REST API: loopback by default, a bearer token, no web pages.

* REST listens on 127.0.0.1 unless ``--wsapi-host`` says otherwise
  (:mod:`lvs_app.options`).  Listening beyond loopback needs a token
  (``--lvs-rest-token-file``): :meth:`Access.from_options` refuses to start
  without one.
* With a token, every request must carry ``Authorization: Bearer TOKEN``
  (compared in constant time), or it gets a 401.
* On loopback, the ``Host`` header must name loopback (``localhost``,
  ``127.0.0.1``, ``[::1]``, any port), or the request gets a 421: a web page
  whose name was re-pointed at 127.0.0.1 (DNS rebinding) sends its own name.
* A write that comes from a web page (an ``Origin`` header, or a
  ``Sec-Fetch-Site`` other than ``none``) gets a 403: lvs_app's one page
  (``/status``) only reads, and a cross-origin form may post ``text/plain``
  rules text.
* The status page itself (``GET /status``) is served without the token (it
  is a constant file, holding no data; a browser cannot send a bearer header
  when it opens a page); the data it reads needs the token like any request.

Stdlib only.
"""

import hmac
import ipaddress
import re

from lvs_app.errors import Forbidden, Misdirected, Unauthorized

READ_METHODS = ("GET", "HEAD", "OPTIONS")
MAX_TOKEN = 4096             # characters
MAX_TOKEN_FILE = 65536       # bytes

_HOST_HEADER = re.compile(r"(?P<host>\[[^\]]*\]|[^:\[\]]+)(?::[0-9]{1,5})?\Z")


class AccessConfigError(Exception):
    """The REST options cannot be used: the controller does not start."""

    def __init__(self, message):
        super().__init__(message)
        self.message = message


def is_loopback(host):
    """Whether ``--wsapi-host`` is a loopback address (127.0.0.0/8 or ::1)."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_token(path):
    """The bearer token in file ``path`` (surrounding whitespace stripped)."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_TOKEN_FILE + 1)
    except OSError as err:
        raise AccessConfigError(f"token file {path}: {err.strerror}") from None
    if len(raw) > MAX_TOKEN_FILE:
        raise AccessConfigError(f"token file {path} is over {MAX_TOKEN_FILE} bytes")
    return check_token(raw, f"token file {path}")


def check_token(raw, where):
    """``raw`` (bytes) stripped; one word of printable ASCII, or AccessConfigError."""
    token = raw.strip()
    if not token:
        raise AccessConfigError(f"{where} is empty")
    if len(token) > MAX_TOKEN or not all(0x21 <= byte <= 0x7e for byte in token):
        raise AccessConfigError(f"{where}: the token must be one word of printable ASCII "
                                f"(at most {MAX_TOKEN} characters)")
    return token.decode("ascii")


def _names_loopback(host_header):
    match = _HOST_HEADER.match(host_header)
    if not match:
        return False
    host = match["host"].lower()
    if host == "localhost":
        return True
    bracketed = host.startswith("[")
    try:
        address = ipaddress.ip_address(host[1:-1] if bracketed else host)
    except ValueError:
        return False
    return address.is_loopback and (address.version == 6) == bracketed


class Access:
    """The checks one REST request passes before it is parsed."""

    def __init__(self, token=None, loopback=True):
        self.token = token.encode("ascii") if token else None
        self.loopback = loopback

    @classmethod
    def from_options(cls, wsapi_host, token_file):
        """From ``--wsapi-host`` and ``--lvs-rest-token-file``; AccessConfigError when unsafe."""
        token = read_token(token_file) if token_file else None
        loopback = is_loopback(wsapi_host)
        if not loopback and token is None:
            raise AccessConfigError(
                f"REST would listen on {wsapi_host} (--wsapi-host) without a token: give "
                "--lvs-rest-token-file FILE, or listen on 127.0.0.1 or ::1")
        return cls(token, loopback)

    def check(self, environ, token=True):
        """Raise the LvsError that refuses this request, if any (``token=False``:
        a public read, the status page's HTML: the Host check only)."""
        if self.loopback:
            host = environ.get("HTTP_HOST", "")
            if not _names_loopback(host):
                raise Misdirected(f"Host {host[:100]!r} is not this controller: REST listens "
                                  "on loopback and answers localhost, 127.0.0.1 or [::1] only")
        if self.token is not None and token:
            self._check_token(environ.get("HTTP_AUTHORIZATION"))
        if environ.get("REQUEST_METHOD") not in READ_METHODS:
            site = environ.get("HTTP_SEC_FETCH_SITE", "none")
            if "HTTP_ORIGIN" in environ or site != "none":
                raise Forbidden("changes from web pages are refused (Origin "
                                f"{environ.get('HTTP_ORIGIN', '-')[:100]!r}, Sec-Fetch-Site "
                                f"{site[:40]!r}); use lvsadm or curl")

    def _check_token(self, header):
        if not header:
            raise Unauthorized("this API needs 'Authorization: Bearer TOKEN' (lvsadm reads "
                               "the token from --token-file FILE or $LVSADM_TOKEN)")
        scheme, _, credentials = header.strip().partition(" ")
        if scheme.lower() != "bearer":
            raise Unauthorized(f"Authorization {scheme[:20]!r} is not 'Bearer TOKEN'")
        if not hmac.compare_digest(credentials.strip().encode("latin-1", "replace"), self.token):
            raise Unauthorized("the bearer token is wrong")
