"""REST API: JSON in, JSON out, one error envelope, no logic.

:class:`RestApp` is a plain WSGI application over a :class:`DirectorAPI`, so
tests drive it with webob requests; :func:`register` mounts it on Ryu's WSGI
server under ``/ipvs``.  The resource layout is documented in the README.

Errors: ``{"error": {"status": 404, "kind": "not-found", "message": "..."}}``
with 400 (malformed), 404 (unknown object), 405 (method), 409 (duplicate or
in use).
"""

import json
import logging
import re

import webob

from lvs_app.model import BadRequest, LvsError, NotFound

LOG = logging.getLogger(__name__)

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
]
_COMPILED = [(re.compile(pattern + r"/?\Z"), methods) for pattern, methods in ROUTES]

_CREATED = {"add_service", "add_server", "add_mark"}


def _json_response(status, payload):
    return webob.Response(status=status, charset="utf-8", content_type="application/json",
                          body=(json.dumps(payload, indent=1) + "\n").encode("utf-8"))


def _error_response(err):
    return _json_response(err.status, err.to_dict())


class MethodNotAllowed(LvsError):
    status = 405
    kind = "method-not-allowed"


class RestApp:
    """WSGI application for the ``/ipvs`` resources of one DirectorAPI."""

    def __init__(self, api):
        self.api = api

    def __call__(self, environ, start_response):
        request = webob.Request(environ)
        return self.handle(request)(environ, start_response)

    def handle(self, request):
        try:
            return self._dispatch(request)
        except LvsError as err:
            return _error_response(err)
        except Exception:   # never let one request take the controller down
            LOG.exception("REST %s %s failed", request.method, request.path_info)
            return _json_response(500, {"error": {
                "status": 500, "kind": "internal",
                "message": "internal error; see the controller log"}})

    def _dispatch(self, request):
        path = request.path_info
        for pattern, methods in _COMPILED:
            match = pattern.match(path)
            if not match:
                continue
            if request.method not in methods:
                raise MethodNotAllowed(f"{request.method} {path}: method not allowed; "
                                       f"use {', '.join(sorted(methods))}")
            name, takes = methods[request.method]
            args = {k: v for k, v in match.groupdict().items() if v is not None}
            if takes == "json":
                args["body"] = self._json_body(request)
            elif takes == "text":
                args["text"] = self._text_body(request)
            return self._call(name, args)
        raise NotFound(f"{request.method} {path}: no such resource "
                       "(the API lives under /ipvs; see the README)")

    def _call(self, name, args):
        api = self.api
        if name == "rules_text":
            return webob.Response(status=200, charset="utf-8", content_type="text/plain",
                                  body=api.rules_text().encode("utf-8"))
        if name in ("replace_rules", "append_rules"):
            api.restore(args["text"], replace=(name == "replace_rules"))
            return webob.Response(status=200, charset="utf-8", content_type="text/plain",
                                  body=api.rules_text().encode("utf-8"))
        handler = getattr(api, name)
        call_args = [args[k] for k in ("sid", "rid", "mark") if k in args]
        if "body" in args:
            call_args.append(args["body"])
        result = handler(*call_args)
        if name in ("services", "servers", "marks"):
            result = {name: result}
        elif name == "connections":
            result = {"connections": result}
        if result is None:
            return webob.Response(status=204)
        return _json_response(201 if name in _CREATED else 200, result)

    @staticmethod
    def _json_body(request):
        raw = request.body
        if not raw.strip():
            return {}
        try:
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as err:
            raise BadRequest(f"{request.method} {request.path_info}: request body is not "
                             f"valid JSON ({err})") from None

    @staticmethod
    def _text_body(request):
        try:
            return request.body.decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest(f"{request.method} {request.path_info}: rules text must be "
                             "UTF-8") from None


def register(wsgi_app, api):
    """Mount a RestApp for ``api`` on Ryu's WSGIApplication under ``/ipvs``."""
    from ryu.app.wsgi import ControllerBase

    class IpvsController(ControllerBase):
        def __init__(self, req, link, data, **config):
            super().__init__(req, link, data, **config)
            self.rest = data

        def dispatch(self, req, **_):
            return self.rest.handle(req)

    rest = RestApp(api)
    wsgi_app.registory[IpvsController.__name__] = rest
    wsgi_app.mapper.connect("ipvs", "/ipvs{tail:(/.*)?}",
                            controller=IpvsController, action="dispatch")
    return rest
