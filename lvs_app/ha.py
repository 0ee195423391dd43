"""High availability: two controllers, one master, with OpenFlow 1.3 roles.

Both controllers connect to every switch.  The master asks each switch for
the MASTER role, the backup for SLAVE: a switch sends PacketIns and
FlowRemoveds to its master only and refuses FlowMods from a slave.  Role
requests carry a generation id (the wall clock in milliseconds when the
role was taken), so a switch refuses a stale master that comes back.

The backup watches the master through its REST API (``GET /ipvs/ha`` every
HEARTBEAT seconds).  After MISSES answers that do not come, or that say the
peer is no longer master, it takes over: it asks every switch for the MASTER
role with a newer generation, reads the flows back (see recovery.py) and
serves.  A controller that starts while its peer already is master becomes
the backup, whatever it was configured to be, so a restarted master does not
take the role back.

Both serve the same service table: they are started with the same rules
file (shared storage).  Changes go through the master, which rewrites the
file; the backup reloads it whenever it changes, and refuses changes of its
own (409).

Stdlib only.
"""

import json
import logging
import time
import urllib.error
import urllib.request

LOG = logging.getLogger("lvs_app")

HEARTBEAT = 0.5         # s between two looks at the master
MISSES = 3              # looks that fail before the backup takes over
PEER_TIMEOUT = 0.4      # s for one look

MASTER, BACKUP = "master", "backup"


def generation(clock=time.time):
    """A role generation id: later roles have larger ones."""
    return int(clock() * 1000) & 0xFFFFFFFFFFFFFFFF


class HighAvailability:
    """This controller's HA role and its watch on the peer."""

    def __init__(self, role, peer_url, token=None, fetch=None, clock=time.time):
        if role not in (MASTER, BACKUP):
            raise ValueError(f"HA role {role!r} must be {MASTER} or {BACKUP}")
        self.role = role
        self.peer_url = peer_url.rstrip("/")
        self.token = token
        self.fetch = fetch or self._fetch
        self.clock = clock
        self.generation = generation(clock)
        self.misses = 0
        self.took_over_at = None

    @property
    def serving(self):
        return self.role == MASTER

    def status(self):
        return {"role": self.role, "generation": self.generation, "peer": self.peer_url,
                "took_over_at": self.took_over_at}

    def peer_status(self):
        """The peer's /ipvs/ha document, or None when it does not answer."""
        try:
            return self.fetch(self.peer_url + "/ipvs/ha")
        except (OSError, ValueError) as err:
            LOG.debug("lvs_app: HA peer %s: %s", self.peer_url, err)
            return None

    def start(self):
        """At start: a configured master defers to a peer that already is master."""
        peer = self.peer_status()
        if self.role == MASTER and peer is not None and peer.get("role") == MASTER:
            LOG.warning("lvs_app: HA: the peer %s is master already: this controller starts "
                        "as the backup", self.peer_url)
            self.role = BACKUP
        LOG.info("lvs_app: HA: %s (peer %s)", self.role, self.peer_url)

    def heartbeat(self):
        """One look at the master (backup only).  True when it is time to take over."""
        if self.role != BACKUP:
            return False
        peer = self.peer_status()
        if peer is not None and peer.get("role") == MASTER:
            self.misses = 0
            return False
        self.misses += 1
        return self.misses >= MISSES

    def take_over(self):
        self.role = MASTER
        self.generation = generation(self.clock)
        self.took_over_at = self.clock()
        self.misses = 0
        LOG.warning("lvs_app: HA: the master %s is gone: this controller takes over "
                    "(generation %d)", self.peer_url, self.generation)

    def _fetch(self, url):
        request = urllib.request.Request(url, headers={"Accept": "application/json"})
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        with urllib.request.urlopen(request, timeout=PEER_TIMEOUT) as answer:
            return json.loads(answer.read().decode("utf-8"))
