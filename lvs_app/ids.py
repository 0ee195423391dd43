"""Stable numbers for services and real servers, and the one cookie layout.

Every flow the app installs carries a cookie::

    | 63..56 app tag | 55..52 pipeline version | 51..48 kind |
    | 47..24 service id | 23..0 server id |

so that a service's flows, or one server's, are found, counted and deleted by
cookie mask.  The ids in it must mean the same after a controller restart (a
flow read back from a switch must name its service and server), so
:class:`StableIds` keeps them in a small JSON file beside the rules file.
Without a rules file they live as long as the process.

Stdlib only.
"""

import json
import logging
import os
from dataclasses import dataclass

from lvs_app.atomicfile import remove_stale_temporaries, write_atomic

LOG = logging.getLogger(__name__)

APP_TAG = 0x4C               # 'L'
PIPELINE_VERSION = 0         # raised when the tables change: older flows are rebuilt
KIND_BASE = 1                # pipeline skeleton (misses, classifier defaults)
KIND_VIP = 2                 # per-VIP classifier and punt flows
KIND_CONN = 3                # per-connection forward flow
KIND_TEMPLATE = 4            # persistence template
KIND_REVERSE = 5             # NAT reverse flow of a connection
KIND_REVERSE_TEMPLATE = 6    # NAT reverse flow of a template
KIND_L2 = 7                  # learned MAC
KIND_FRAG = 8                # IP fragments to a VIP or from a NAT server -> controller
KIND_FABRIC = 9              # fabric: link-port classification, per-host forwarding
KIND_TEMPLATE_SYN = 10       # --pe switch: a template's new connections, carried in the switch
KIND_TEMPLATE_NAT = 11       # --pe switch, NAT: a template's replies, rewritten in the switch

KIND_NAMES = {KIND_BASE: "base", KIND_VIP: "vip", KIND_CONN: "conn",
              KIND_TEMPLATE: "template", KIND_REVERSE: "reverse",
              KIND_REVERSE_TEMPLATE: "reverse-template", KIND_L2: "l2",
              KIND_FRAG: "fragment", KIND_FABRIC: "fabric",
              KIND_TEMPLATE_SYN: "template-syn", KIND_TEMPLATE_NAT: "template-nat"}

TAG_MASK = 0xFF << 56
KIND_MASK = 0x0F << 48       # the kind, whatever the pipeline version
SERVICE_MASK = 0xFFFFFF << 24
SERVER_MASK = 0xFFFFFF
MAX_ID = 0xFFFFFF


@dataclass(frozen=True)
class Cookie:
    """One flow's cookie: kind, service id, server id."""

    kind: int
    service: int = 0
    server: int = 0
    version: int = PIPELINE_VERSION

    @property
    def value(self):
        return ((APP_TAG << 56) | (self.version << 52) | (self.kind << 48)
                | (self.service << 24) | self.server)

    @classmethod
    def parse(cls, value):
        """The Cookie of one of our flows, or None for a foreign cookie."""
        if value >> 56 != APP_TAG:
            return None
        return cls((value >> 48) & 0x0F, (value >> 24) & MAX_ID, value & MAX_ID,
                   (value >> 52) & 0x0F)


def cookie_mask(kind=None, service=None, server=None):
    """(cookie, mask) selecting the app's flows, narrowed by kind, service, server.

    ``cookie_mask()`` is every flow of the app, ``cookie_mask(service=5)`` one
    service's, ``cookie_mask(KIND_CONN, 5, 7)`` one server's connections.
    """
    cookie, mask = APP_TAG << 56, TAG_MASK
    if kind is not None:
        cookie, mask = cookie | (kind << 48), mask | KIND_MASK
    if service is not None:
        cookie, mask = cookie | (service << 24), mask | SERVICE_MASK
    if server is not None:
        cookie, mask = cookie | server, mask | SERVER_MASK
    return cookie, mask


class IdSpaceFull(Exception):
    """More than MAX_ID services (or servers in one service) were ever numbered."""


class StableIds:
    """Service and server numbers that survive a restart.

    A service keeps its number while it exists; a real server keeps its
    number within its service even across delete and re-add (as the kernel
    keeps a deleted destination in its trash), so a flow left in a switch
    names the same server again.  Deleting a service frees its numbers.
    ``path`` (JSON) is rewritten atomically and durably (fsynced) whenever a number is handed out
    or freed; None keeps them in memory.
    """

    def __init__(self, path=None):
        self.path = path
        self._services = {}        # service id text -> number
        self._servers = {}         # service id text -> {server text: number}
        self._cache = {}           # ServiceKey / (ServiceKey, address, port) -> number
        if path:
            remove_stale_temporaries(path, "ids")
        if path and os.path.exists(path):
            self._load()

    @staticmethod
    def _server_text(address, port):
        return f"{address}-{port}"

    def service(self, key):
        """The number of service ``key`` (a ServiceKey), handed out on first use."""
        number = self._cache.get(key)
        if number is not None:
            return number
        sid = key.to_id()
        number = self._services.get(sid)
        if number is None:
            number = self._services[sid] = self._free(self._services.values())
            self._servers.setdefault(sid, {})
            self._save()
        self._cache[key] = number
        return number

    def server(self, key, address, port):
        """The number of real server ``address:port`` within service ``key``."""
        number = self._cache.get((key, address, port))
        if number is not None:
            return number
        servers = self._servers.setdefault(key.to_id(), {})
        text = self._server_text(address, port)
        number = servers.get(text)
        if number is None:
            number = servers[text] = self._free(servers.values())
            self._save()
        self._cache[(key, address, port)] = number
        return number

    def forget_service(self, key):
        """A deleted service frees its number and its servers' numbers."""
        sid = key.to_id()
        self._cache = {k: v for k, v in self._cache.items()
                       if k != key and not (isinstance(k, tuple) and k[0] == key)}
        had_service = self._services.pop(sid, None) is not None
        had_servers = self._servers.pop(sid, None) is not None
        if had_service or had_servers:
            self._save()

    def lookup(self, service_number, server_number=None):
        """(service id text, server text or None) for numbers read from a cookie."""
        for sid, number in self._services.items():
            if number == service_number:
                if server_number is None:
                    return sid, None
                for text, rnum in self._servers.get(sid, {}).items():
                    if rnum == server_number:
                        return sid, text
                return sid, None
        return None, None

    def numbers(self):
        """Every (service number, server number) handed out: whose flows may
        be in a switch (a deleted server's too, while its service lives)."""
        return [(self._services[sid], number) for sid, servers in self._servers.items()
                if sid in self._services for number in servers.values()]

    @staticmethod
    def _free(used):
        used = set(used)
        number = max(used, default=0) + 1
        if number <= MAX_ID:
            return number
        for number in range(1, MAX_ID + 1):
            if number not in used:
                return number
        raise IdSpaceFull("no cookie number left (24 bits)")

    def reload(self):
        """Read the file again (a high-availability backup follows its master's
        numbers before it reads the master's flows back)."""
        if self.path and os.path.exists(self.path):
            self._cache = {}
            self._load()

    def _load(self):
        try:
            with open(self.path, encoding="utf-8") as handle:
                doc = json.load(handle)
            services = {str(k): int(v) for k, v in doc.get("services", {}).items()}
            servers = {str(k): {str(a): int(b) for a, b in v.items()}
                       for k, v in doc.get("servers", {}).items()}
        except (OSError, ValueError, AttributeError, TypeError) as err:
            # numbers are only needed to read old flows back: start afresh
            LOG.warning("ids file %s unreadable (%s): numbering afresh", self.path, err)
            return
        self._services, self._servers = services, servers

    def _save(self):
        if not self.path:
            return
        doc = {"services": self._services, "servers": self._servers}
        try:
            write_atomic(self.path, json.dumps(doc, indent=1, sort_keys=True), "ids")
        except OSError as err:
            LOG.error("ids file %s could not be written: %s", self.path, err)
