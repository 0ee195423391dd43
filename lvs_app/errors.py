"""The one error style: a refused request names the object and the rule.

An :class:`LvsError` carries the HTTP status REST answers with and the
message lvsadm prints; every layer (model, REST, rules files) raises these.

Stdlib only.
"""


class LvsError(Exception):
    """A request the table refuses; ``status`` is the HTTP status to use."""

    status = 400
    kind = "bad-request"
    headers = {}          # extra HTTP response headers

    def __init__(self, message):
        super().__init__(message)
        self.message = message

    def to_dict(self):
        return {"error": {"status": self.status, "kind": self.kind,
                          "message": self.message}}


class BadRequest(LvsError):
    status = 400
    kind = "bad-request"


class NotFound(LvsError):
    status = 404
    kind = "not-found"


class Conflict(LvsError):
    status = 409
    kind = "conflict"


class Unauthorized(LvsError):
    status = 401
    kind = "unauthorized"
    headers = {"WWW-Authenticate": 'Bearer realm="lvs_app"'}


class Forbidden(LvsError):
    status = 403
    kind = "forbidden"


class TooLarge(LvsError):
    status = 413
    kind = "too-large"


class UnsupportedMediaType(LvsError):
    status = 415
    kind = "unsupported-media-type"


class Misdirected(LvsError):
    status = 421
    kind = "misdirected"
