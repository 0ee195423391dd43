"""REST API: JSON in, JSON out, one error envelope, no logic.

:class:`RestApp` is a plain WSGI application over a :class:`DirectorAPI`, so
tests drive it with webob requests; :func:`register` mounts it on Ryu's WSGI
server under ``/ipvs``.  The resource layout is documented in the README.

Errors: ``{"error": {"status": 404, "kind": "not-found", "message": "..."}}``
with 400 (malformed), 401 (no or wrong token), 403 (a write from a web
page), 404 (unknown object), 405 (method), 409 (duplicate or in use), 413
(body too large), 415 (a write's Content-Type), 421 (a Host that is not
loopback).  A malformed request -- a path that is not UTF-8, a body over its
limit, JSON nested too deeply or holding lone surrogates -- is a 4xx in this
envelope, never a traceback.  Who may call is :mod:`lvs_app.access`'s
business; this module only applies it.
"""

import json
import logging
import re

import webob

from lvs_app import metrics, statuspage
from lvs_app.access import READ_METHODS, Access
from lvs_app.errors import TooLarge, UnsupportedMediaType
from lvs_app.model import BadRequest, LvsError, NotFound

LOG = logging.getLogger(__name__)

MAX_JSON_BODY = 1 << 20      # bytes: a JSON request body
MAX_RULES_BODY = 16 << 20    # bytes: rules text (PUT/POST /ipvs/rules)
MAX_JSON_DEPTH = 32          # nested arrays/objects; the API's bodies use 2
BODY_LIMITS = {"json": MAX_JSON_BODY, "text": MAX_RULES_BODY, None: MAX_JSON_BODY}  # None: no body
# What a write must say its body is; a form (what a cross-origin web page can
# post without asking) is never accepted.  A route without a body takes none.
MEDIA_TYPES = {"json": ("application/json",), "text": ("text/plain",),
               None: ("", "application/json")}

SID = r"(?P<sid>[^/]+)"
RID = r"(?P<rid>[^/]+)"
MARK = r"(?P<mark>[^/]+)"

# (path pattern, {method: (handler, takes)}); `takes` is "json", "text" or None.
ROUTES = [
    (r"/ipvs", {"GET": ("snapshot", None)}),
    (r"/ipvs/services", {"GET": ("services", None), "POST": ("add_service", "json"),
                         "DELETE": ("clear", None)}),
    (rf"/ipvs/services/{SID}", {"GET": ("service", None), "PATCH": ("edit_service", "json"),
                                "DELETE": ("delete_service", None)}),
    (rf"/ipvs/services/{SID}/zero", {"POST": ("zero", None)}),
    (rf"/ipvs/services/{SID}/servers", {"GET": ("servers", None),
                                        "POST": ("add_server", "json")}),
    (rf"/ipvs/services/{SID}/servers/{RID}", {"GET": ("server", None),
                                              "PATCH": ("edit_server", "json"),
                                              "DELETE": ("delete_server", None)}),
    (r"/ipvs/zero", {"POST": ("zero", None)}),
    (r"/ipvs/timeouts", {"GET": ("timeouts", None), "PUT": ("set_timeouts", "json")}),
    (r"/ipvs/connections", {"GET": ("connections", None)}),
    (r"/ipvs/rules", {"GET": ("rules_text", None), "PUT": ("replace_rules", "text"),
                      "POST": ("append_rules", "text")}),
    (r"/ipvs/marks", {"GET": ("marks", None), "POST": ("add_mark", "json")}),
    (rf"/ipvs/marks/{MARK}", {"GET": ("mark", None), "DELETE": ("delete_mark", None)}),
    (r"/ipvs/settings", {"GET": ("get_settings", None), "PUT": ("set_settings", "json")}),
    (r"/ipvs/ha", {"GET": ("ha_status", None)}),
    (r"/ipvs/keepalived", {"PUT": ("reload_keepalived", "text")}),
    (r"/ipvs/health", {"GET": ("health", None)}),
    (r"/ipvs/fabric", {"GET": ("fabric", None)}),
    (r"/metrics", {"GET": ("metrics", None)}),
    (r"/status", {"GET": ("status_page", None), "HEAD": ("status_page", None)}),
]
_COMPILED = [(re.compile(pattern + r"/?\Z"), methods) for pattern, methods in ROUTES]

_CREATED = {"add_service", "add_server", "add_mark"}


def _json_response(status, payload):
    return webob.Response(status=status, charset="utf-8", content_type="application/json",
                          body=(json.dumps(payload, indent=1) + "\n").encode("utf-8"))


def _error_response(err):
    response = _json_response(err.status, err.to_dict())
    response.headers.update(err.headers)
    return response


class MethodNotAllowed(LvsError):
    status = 405
    kind = "method-not-allowed"


class RestApp:
    """WSGI application for the ``/ipvs`` resources of one DirectorAPI."""

    def __init__(self, api, access=None):
        self.api = api
        self.access = access or Access()     # loopback Host check, no token

    def __call__(self, environ, start_response):
        request = webob.Request(environ)
        return self.handle(request)(environ, start_response)

    def handle(self, request):
        try:
            public = (request.method in ("GET", "HEAD")
                      and request.environ.get("PATH_INFO", "").rstrip("/") == "/status")
            self.access.check(request.environ, token=not public)
            return self._dispatch(request)
        except LvsError as err:
            return _error_response(err)
        except Exception:   # never let one request take the controller down
            LOG.exception("REST %s %r failed", request.method, request.environ.get("PATH_INFO"))
            return _json_response(500, {"error": {
                "status": 500, "kind": "internal",
                "message": "internal error; see the controller log"}})

    def _dispatch(self, request):
        path = _request_path(request)
        for pattern, methods in _COMPILED:
            match = pattern.match(path)
            if not match:
                continue
            if request.method not in methods:
                raise MethodNotAllowed(f"{request.method} {path}: method not allowed; "
                                       f"use {', '.join(sorted(methods))}")
            name, takes = methods[request.method]
            what = f"{request.method} {path}"
            if request.method not in READ_METHODS:
                _check_media_type(request, takes, what)
            args = {k: v for k, v in match.groupdict().items() if v is not None}
            raw = _read_body(request, BODY_LIMITS[takes], what)
            if takes == "json":
                args["body"] = _json_body(raw, what)
            elif takes == "text":
                args["text"] = _text_body(raw, what)
            return self._call(name, args)
        raise NotFound(f"{request.method} {path}: no such resource "
                       "(the API lives under /ipvs, with /metrics and /status; see the README)")

    def _call(self, name, args):
        api = self.api
        if name == "rules_text":
            return webob.Response(status=200, charset="utf-8", content_type="text/plain",
                                  body=api.rules_text().encode("utf-8"))
        if name in ("replace_rules", "append_rules"):
            api.restore(args["text"], replace=(name == "replace_rules"))
            return webob.Response(status=200, charset="utf-8", content_type="text/plain",
                                  body=api.rules_text().encode("utf-8"))
        if name == "status_page":
            response = webob.Response(status=200, content_type=None,
                                      headerlist=[("Content-Type", statuspage.CONTENT_TYPE)],
                                      body=statuspage.page())
            response.headers.update(statuspage.headers())
            return response
        if name == "metrics":
            return webob.Response(status=200, content_type=None,
                                  headerlist=[("Content-Type", metrics.CONTENT_TYPE)],
                                  body=api.metrics().encode("utf-8"))
        handler = getattr(api, name)
        call_args = [args[k] for k in ("sid", "rid", "mark") if k in args]
        if "body" in args:
            call_args.append(args["body"])
        if "text" in args:
            call_args.append(args["text"])
        result = handler(*call_args)
        if name in ("services", "servers", "marks"):
            result = {name: result}
        elif name == "connections":
            result = {"connections": result}
        if result is None:
            return webob.Response(status=204)
        return _json_response(201 if name in _CREATED else 200, result)


def _request_path(request):
    """The percent-decoded path as text; 400 when its bytes are not UTF-8."""
    raw = request.environ.get("PATH_INFO", "")
    try:
        return raw.encode("latin-1").decode("utf-8")
    except UnicodeError:
        shown = raw.encode("latin-1", "replace").decode("utf-8", "backslashreplace")
        raise BadRequest(f"request path {shown} is not UTF-8 once percent-decoded") from None


def _media_type(environ):
    """The Content-Type sent, without parameters; "" when none was sent."""
    raw = environ.get("headers_raw")        # eventlet: the headers as they came
    if raw is not None and not any(name.lower() == "content-type" for name, _ in raw):
        return ""                           # eventlet says "text/plain" for none
    return (environ.get("CONTENT_TYPE") or "").partition(";")[0].strip().lower()


def _check_media_type(request, takes, what):
    media = _media_type(request.environ)
    if media in MEDIA_TYPES[takes]:
        return
    if takes is None:
        raise UnsupportedMediaType(f"{what} takes no body; got Content-Type {media!r}")
    got = f"Content-Type {media!r}" if media else "no Content-Type"
    raise UnsupportedMediaType(f"{what}: send the body as Content-Type: "
                               f"{MEDIA_TYPES[takes][0]} (got {got})")


def _read_body(request, limit, what):
    """The request body, refused with 413 above ``limit`` bytes (before reading it)."""
    environ = request.environ
    length = environ.get("CONTENT_LENGTH") or ""
    if length:
        if not re.fullmatch(r"[0-9]+", length):
            raise BadRequest(f"{what}: Content-Length {length[:40]!r} is not a number")
        if len(length) > 18 or int(length) > limit:      # 18 digits: int() stays cheap
            raise TooLarge(f"{what}: request body of {length[:40]} bytes is over the "
                           f"limit of {limit} bytes")
        size = int(length)
        return environ["wsgi.input"].read(size) if size else b""
    chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
    if not (chunked or environ.get("wsgi.input_terminated")):
        return b""
    raw = environ["wsgi.input"].read(limit + 1)
    if len(raw) > limit:
        raise TooLarge(f"{what}: request body is over the limit of {limit} bytes")
    return raw


def _json_body(raw, what):
    if not raw.strip():
        return {}
    try:
        doc = json.loads(raw.decode("utf-8"))
    except RecursionError:
        raise _too_deep(what) from None
    except (UnicodeDecodeError, ValueError) as err:
        raise BadRequest(f"{what}: request body is not valid JSON ({err})") from None
    _check_json(doc, what)
    return doc


def _too_deep(what):
    return BadRequest(f"{what}: request body is nested deeper than {MAX_JSON_DEPTH} levels")


def _check_json(doc, what):
    """Refuse nesting beyond MAX_JSON_DEPTH and strings that are not Unicode text."""
    stack = [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, (dict, list)) and depth > MAX_JSON_DEPTH:
            raise _too_deep(what)
        if isinstance(node, dict):
            stack.extend((key, depth + 1) for key in node)
            stack.extend((value, depth + 1) for value in node.values())
        elif isinstance(node, list):
            stack.extend((value, depth + 1) for value in node)
        elif isinstance(node, str):
            try:
                node.encode("utf-8")
            except UnicodeEncodeError as err:
                raise BadRequest(f"{what}: request body has a lone surrogate "
                                 f"{node[err.start]!r} in a string") from None


def _text_body(raw, what):
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest(f"{what}: rules text must be UTF-8") from None


def register(wsgi_app, api, access=None):
    """Mount a RestApp for ``api`` on Ryu's WSGIApplication: ``/ipvs``, ``/metrics``
    and ``/status``."""
    from ryu.app.wsgi import ControllerBase

    class IpvsController(ControllerBase):
        def __init__(self, req, link, data, **config):
            super().__init__(req, link, data, **config)
            self.rest = data

        def dispatch(self, req, **_):
            return self.rest.handle(req)

    rest = RestApp(api, access)
    wsgi_app.registory[IpvsController.__name__] = rest
    wsgi_app.mapper.connect("ipvs", "/ipvs{tail:(/.*)?}",
                            controller=IpvsController, action="dispatch")
    for name, path in (("metrics", "/metrics"), ("status", "/status")):
        wsgi_app.mapper.connect(name, path, controller=IpvsController, action="dispatch")
    return rest
