"""The operator's status page, ``GET /status``: one static HTML file.

``lvs_app/static/status.html`` is plain HTML with an inline script that reads
``GET /ipvs`` and ``GET /ipvs/health`` every 2 seconds (with the bearer token
from the URL fragment, ``/status#token=TOKEN``; see the comment in the file).
The page holds no data and is the same for everyone.

The REST app serves :func:`page` as ``text/html; charset=utf-8``
(:data:`CONTENT_TYPE`).  :func:`headers` are optional extra response headers:
a Content-Security-Policy that lets exactly this page's inline script and
style run and lets it talk to its own origin only, and no caching, framing
or Referer.

Stdlib only.
"""

import base64
import functools
import hashlib
import re
from importlib import resources

CONTENT_TYPE = "text/html; charset=utf-8"


@functools.lru_cache(maxsize=1)
def page():
    """The page as bytes (UTF-8), read once from the installed package."""
    return resources.files("lvs_app").joinpath("static").joinpath("status.html").read_bytes()


def _hashes(tag):
    return " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(body).digest()).decode("ascii") + "'"
        for body in re.findall(rb"<%s>(.*?)</%s>" % (tag, tag), page(), re.S))


@functools.lru_cache(maxsize=1)
def headers():
    """Response headers to send with :func:`page` (a dict; optional but advised)."""
    return {
        "Content-Security-Policy": (
            f"default-src 'none'; script-src {_hashes(b'script')}; "
            f"style-src {_hashes(b'style')}; connect-src 'self'; img-src data:; "
            "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
        "Cache-Control": "no-store",
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
    }
