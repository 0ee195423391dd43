"""The health-check engine: keepalived's checker, real-server and quorum logic.

Pure and clock-driven like the director: :meth:`HealthChecks.tick` (a timed
job), :meth:`HealthChecks.packet_in` (a reply to the health address) and
:meth:`HealthChecks.script_done` (a script finished) take ``now`` and return
``(dpid, message)`` pairs; scripts to run are handed to ``run_script``
(the manager's :class:`lvs_app.health.scripts.ScriptRunner`), and the
service table is changed through the DirectorAPI's ``health_set``, whose
listeners adjust the switches (see reconfig.py: a deleted server keeps its
templates for when it comes back, ``expire_nodest_conn`` applies).

keepalived's semantics (keepalived.conf(5); ipwrapper.c, check_*.c):

* each checker runs every ``delay_loop``, the first time after a random
  ``warmup``; a failure is retried ``retry`` times ``delay_before_retry``
  apart before the checker is down; one success brings it up;
* a real server is up while every one of its checkers is up; ``alpha``
  starts checkers (so servers) down until their first success;
* a server that goes down leaves its services (or stays with weight 0 with
  ``inhibit_on_failure``) and comes back with its configured weight;
  ``notify_up``/``notify_down`` run on the way;
* a MISC_CHECK exit code 0 is up, 1 down, 2..255 with ``misc_dynamic`` up
  with weight ``code - 2``;
* per virtual_server block, the weight of the servers that are up is
  compared with ``quorum``: below ``quorum - hysteresis`` (or 0) the quorum
  is lost (``quorum_down``; with a ``sorry_server`` the remaining servers
  leave and the sorry server takes their place), at ``quorum + hysteresis``
  it is back (``quorum_up``; the sorry server leaves, the live servers
  return).  While the sorry server serves, server changes are remembered
  but not pushed to the table.

One probe per (address, checker): every virtual_server that checks the same
real server the same way shares one checker and its result (keepalived
probes once per service).

Probes leave from the health-check address (``--lvs-health-address``) and
the director's MAC: see :mod:`lvs_app.health.probes` (and
:mod:`lvs_app.health.httpprobe`) for the probes, :mod:`lvs_app.health.wire`
for their frames and :meth:`HealthChecks.route` for how a probe finds its
way out of the switch.
"""

import dataclasses
import heapq
import itertools
import logging
import operator
import random

from lvs_app import ofmsg
from lvs_app import packet as pkt
from lvs_app.errors import LvsError
from lvs_app.keepalived import ConfigError
from lvs_app.health import probes as probemod
from lvs_app.health import wire

LOG = logging.getLogger(__name__)
_NO_PORTS = {}                  # read only
_NO_MESSAGES = ()

PORT_RANGE = (40000, 60000)     # local ports of TCP/UDP probes, used in turn
NOTIFY_TIMEOUT = 10.0           # s: a notify or quorum script is killed after this
NO_ROUTE = "no ARP answer from the server"


class Check:
    """One checker of one address, shared by every server that uses it."""

    def __init__(self, spec, now, rng):
        self.spec = spec
        self.up = not spec.alpha
        self.retries = 0
        self.weight = None              # MISC_CHECK misc_dynamic: the weight it set
        self.probe = None
        self.route = None               # (dpid, port or None, MAC) of the running probe
        self.running = False            # a probe or script is out
        self.last, self.last_at, self.since = "not run yet", None, now
        self.users = []                 # ServerHealth
        self.next_run = now + rng.uniform(0, spec.warmup or 0)
        self.generation = 0             # tells a stale script answer from the current one
        self.keys = ()                  # the reply keys indexed for its running probe
        self.poll_at = None             # when its running probe is next polled (engine's heap)
        self.retired = False            # a reload dropped it
        # what every probe of it needs, worked out once
        self.ip = None if spec.connect_ip is None else int(spec.connect_ip)
        self.probe_class = None         # the lvs_app.health.probes class, at its first probe

    @property
    def name(self):
        spec = self.spec
        if spec.kind == "MISC_CHECK":
            return f"MISC_CHECK {spec.script}"
        where = pkt.ip_text(int(spec.connect_ip))
        if spec.connect_port:
            where += f":{spec.connect_port}"
        return f"{spec.kind} {where}"

    def to_dict(self, now):
        return {"checker": self.spec.kind, "target": self.name.split(" ", 1)[1],
                "origin": self.spec.origin, "state": "up" if self.up else "down",
                "for_seconds": round(now - self.since, 3), "last_result": self.last,
                "last_run_seconds_ago": (None if self.last_at is None
                                         else round(now - self.last_at, 3)),
                "retries": self.retries}


class ServerHealth:
    """One real server of one virtual_server block."""

    def __init__(self, vs, config, entries, now):
        self.vs = vs
        self.config = config            # keepalived.RealServerHealth
        self.entries = entries          # [(ServiceKey, port, add_server options)]
        self.checks = []
        self.up = True
        self.since = now

    @property
    def alive(self):
        return all(check.up for check in self.checks)

    @property
    def weight(self):
        """keepalived's effective weight: a dynamic MISC_CHECK's, else the configured."""
        dynamic = [c.weight for c in self.checks if c.weight is not None]
        return dynamic[-1] if dynamic else self.config.weight

    @property
    def name(self):
        return f"{pkt.ip_text(int(self.config.address))}:{self.config.port}"

    def to_dict(self, now):
        return {"address": str(self.config.address), "port": self.config.port,
                "state": "up" if self.up else "down", "for_seconds": round(now - self.since, 3),
                "weight": self.weight, "checkers": [c.to_dict(now) for c in self.checks]}


class VirtualServerHealth:
    """One virtual_server block: its servers and its quorum."""

    def __init__(self, config):
        self.config = config            # keepalived.VirtualServerHealth
        self.servers = []
        self.quorum_up = True

    @property
    def alive_weight(self):
        return sum(s.weight for s in self.servers if s.up)

    def to_dict(self, now):
        return {"virtual_server": self.config.name, "origin": self.config.origin,
                "services": [str(k) for k in self.config.keys],
                "quorum": self.config.quorum, "hysteresis": self.config.hysteresis,
                "alive_weight": self.alive_weight,
                "quorum_state": "up" if self.quorum_up else "down",
                "sorry_server": (f"{self.config.sorry_server.address}:"
                                 f"{self.config.sorry_server.port}"
                                 if self.config.sorry_server else None),
                "sorry_server_active": self.sorry_active,
                "real_servers": [s.to_dict(now) for s in self.servers]}

    @property
    def sorry_active(self):
        return not self.quorum_up and self.config.sorry_server is not None


_NEXT_RUN = operator.attrgetter("next_run")


class DueChecks:
    """The checks waiting for their next run, by time slot (a timing wheel).

    A heap of thousands of checks costs every start and every result a walk
    along its levels, through memory the PacketIns have long pushed out of
    the caches; here a check is appended to the list of its ``SLOT``-wide
    slot and only the slots (a few hundred at most) are kept in order.
    Checks leave in the heap's order: by ``next_run``, then in the order
    they were added.  An entry left behind by a check added again since to
    another slot (its ``next_run`` is no longer in that slot) is dropped.
    """

    SLOT = 0.01                 # s

    def __init__(self):
        self.slots = {}         # slot number -> [Check], in the order they were added
        self.order = []         # heap of the numbers in self.slots

    def __len__(self):
        return sum(map(len, self.slots.values()))

    def add(self, check):
        slot = int(check.next_run // self.SLOT)
        bucket = self.slots.get(slot)
        if bucket is None:
            self.slots[slot] = bucket = []
            heapq.heappush(self.order, slot)
        bucket.append(check)

    def pop_due(self, now):
        """The checks whose ``next_run`` is ``now`` or earlier, earliest first."""
        due, order, slots = [], self.order, self.slots
        last = int(now // self.SLOT)
        while order and order[0] <= last:
            slot = heapq.heappop(order)
            ready, waiting = [], []
            for check in slots.pop(slot):
                if int(check.next_run // self.SLOT) != slot:
                    continue                        # added again since, to another slot
                if check.next_run <= now:
                    ready.append(check)
                else:
                    waiting.append(check)           # later in the current slot
            if waiting:
                slots[slot] = waiting
                heapq.heappush(order, slot)
            ready.sort(key=_NEXT_RUN)               # stable: the order they were added
            due += ready
            if waiting:
                break
        return due


def _shared_key(spec):
    """What makes two checkers the same probe: everything but where they were written."""
    return dataclasses.replace(spec, origin="")


class HealthChecks:
    """Every health checker of the keepalived configuration, run in-band."""

    def __init__(self, api, hosts, dpids, source=None, run_script=None, seed=None):
        self.api = api                  # DirectorAPI: table, health_set
        self.hosts = hosts              # lvs_app.hosts.Hosts: MACs and ports
        self.dpids = dpids              # callable() -> the connected switches
        self.source = int(source) if source is not None else None
        self.run_script = run_script    # callable(argv, timeout, user, group, done(rc))
        self.rng = random.Random(seed)
        self.ssl = None
        self.checks = {}                # shared key -> Check
        self.blocks = []                # VirtualServerHealth
        self.by_reply = {}              # wire.reply_key -> Check with a running probe
        self._ports_used = set()        # local ports of the running probes
        self._ports = itertools.cycle(range(*PORT_RANGE))
        self._next_port_of = self._next_port    # (one bound method, not one a probe)
        self._due = DueChecks()         # the Checks by next_run
        # heap of (when, seq, Check): the running probes by their next_poll, so that
        # a tick polls only the probes with a timeout or retransmission due; an
        # entry is stale unless its Check has a probe and still waits for ``when``
        self._polls = []
        # the Checks whose probe started since the last tick: they join the heap at
        # the next tick if still running (most are answered before, and then never
        # make an entry that would outlive them)
        self._started = []
        self._seq = itertools.count()
        self.counts = {"probes": 0, "ok": 0, "failed": 0, "replies": 0, "strays": 0}

    @property
    def active(self):
        return bool(self.checks)

    # -- configuration -------------------------------------------------------------
    def validate(self, config):
        """Refuse a keepalived configuration these checks cannot run (before
        anything of it is applied): in-band probes need the health-check
        address, and go to IPv4 addresses only.  What is accepted but not
        used is logged."""
        for block in config.health:
            for rs in block.real_servers:
                for spec in rs.checkers:
                    if spec.kind != "MISC_CHECK" and self.source is None:
                        raise ConfigError(
                            f"{spec.kind} probes leave through the switch from the "
                            "health-check address: start the controller with "
                            "--lvs-health-address ADDRESS (an unused address on the real "
                            "servers' link)", spec.origin)
                    if spec.kind != "MISC_CHECK" and spec.connect_ip.version != 4:
                        raise ConfigError(
                            f"{spec.kind} to {spec.connect_ip}: in-band probes are IPv4 "
                            "only; check an IPv6 real server with MISC_CHECK, or give an "
                            "IPv4 connect_ip", spec.origin)
                    for name in ("bindto", "bind_if", "fwmark"):
                        if getattr(spec, name, None) not in (None, ""):
                            LOG.warning("lvs_app: %s: %s %s ignored: probes leave from the "
                                        "health-check address through the switch",
                                        spec.origin, spec.kind, name)

    def configure(self, config, now):
        """A keepalived configuration was applied (``config`` is a
        :class:`lvs_app.keepalived.KeepalivedConfig`, or None for none).

        Checkers that stay (same address and options) keep their state, so a
        reload does not bring a dead server back; the table, which the reload
        has just refilled, is brought in line with what is known.
        """
        old_checks = self.checks
        for check in old_checks.values():
            self._stop(check)
        names = {block.name for block in (config.health if config is not None else [])}
        for vs in self.blocks:
            if vs.config.omega and vs.config.name not in names:
                self._omega(vs)
        for check in old_checks.values():
            check.retired = True            # unless the new file has it too (below)
        self.checks, self.blocks, self._polls, self._started = {}, [], [], []
        self._due = DueChecks()
        self.ssl = config.ssl if config is not None else None
        for block in (config.health if config is not None else []):
            vs = VirtualServerHealth(block)
            entries = {}
            for service in config.services:
                if service.key in block.keys:
                    for index, server in enumerate(service.servers):
                        entries.setdefault(index, []).append(
                            (service.key, server.port, dict(server.options)))
            for index, rs in enumerate(block.real_servers):
                server = ServerHealth(vs, rs, entries.get(index, []), now)
                for spec in rs.checkers:
                    key = _shared_key(spec)
                    check = self.checks.get(key)
                    if check is None:
                        check = old_checks.get(key) or Check(spec, now, self.rng)
                        check.users, check.retired = [], False
                        self.checks[key] = check
                        check.running, check.probe = False, None
                        self._due.add(check)
                    check.users.append(server)
                    server.checks.append(check)
                server.up = server.alive
                vs.servers.append(server)
            vs.quorum_up = self._quorum_now(vs, True)     # keepalived starts with quorum
            self.blocks.append(vs)
        for vs in self.blocks:
            self._apply(vs, vs.servers)
            self._apply_sorry(vs)
        # the probes' first attempts need the servers' MACs (tunnel servers'
        # are not resolved for forwarding): ask for them now
        targets = {int(c.spec.connect_ip) for c in self.checks.values()
                   if c.spec.kind != "MISC_CHECK" and c.spec.connect_ip.version == 4}
        return self.hosts.probe_unknown(list(self.dpids()), targets, now)

    def _omega(self, vs):
        """``omega``: a virtual server that goes away (a reload without it) runs
        its servers' ``notify_down`` and, if it had quorum, ``quorum_down``."""
        for server in vs.servers:
            if server.up:
                self._run(server.config.notify_down, NOTIFY_TIMEOUT)
        if vs.quorum_up:
            self._run(vs.config.quorum_down, NOTIFY_TIMEOUT)

    def _quorum_now(self, vs, current):
        """keepalived's quorum rule, with hysteresis around the current state."""
        weight, cfg = vs.alive_weight, vs.config
        if current:
            return not (weight == 0 or weight < cfg.quorum - cfg.hysteresis)
        return weight >= cfg.quorum + cfg.hysteresis

    # -- the timed job ---------------------------------------------------------------
    def tick(self, now):
        """Start the checks that are due; time out the probes that are late."""
        out = []
        started, self._started = self._started, []
        for check in started:
            if check.probe is not None:
                self._arm(check)
        polls, due_polls = self._polls, []
        while polls and polls[0][0] <= now:
            when, _, check = heapq.heappop(polls)
            if check.probe is not None and check.poll_at == when:   # else: stale
                check.poll_at = None
                due_polls.append(check)
        for check in due_polls:
            if check.probe is None:         # finished by an earlier one's consequences
                continue
            frames = check.probe.poll(now)
            if check.probe.done:
                out += self._finished(check, now, frames)
            else:
                self._arm(check)
                out += self._frames(check, frames)
        dpids, due = None, self._due.pop_due(now)
        while due:
            for check in due:
                if check.running or check.retired:
                    continue
                if dpids is None:
                    dpids = list(self.dpids())      # once a tick, for every probe it starts
                out += self._start(check, now, dpids)
            due = self._due.pop_due(now)    # those a start that ended at once made due again
        return out

    def _arm(self, check):
        """Poll the running probe of ``check`` by its ``next_poll`` (an earlier
        entry already in the heap stands; a later one is redone when it fires)."""
        when = check.probe.next_poll
        if when is not None and (check.poll_at is None or when < check.poll_at):
            check.poll_at = when
            heapq.heappush(self._polls, (when, next(self._seq), check))

    def _schedule(self, check, delay, now):
        check.next_run = now + delay
        self._due.add(check)

    def _start(self, check, now, dpids):
        spec = check.spec
        check.running = True
        self.counts["probes"] += 1
        if spec.kind == "MISC_CHECK":
            if self.run_script is None:
                return self._result(check, False, "no script runner", now)
            check.generation += 1
            generation = check.generation
            self._run(spec.script, spec.timeout,
                      lambda rc, detail, now: self.script_done(check, generation, rc, detail, now))
            return []
        route = self.route(check.ip, now, dpids)
        if route is None:
            # no switch to probe through (none connected yet, or a backup):
            # nothing is known, nothing changes
            check.running, check.last = False, "not run: no switch connected"
            self._schedule(check, spec.delay_loop, now)
            return []
        if route[2] is None:
            return route[3] + self._result(check, False, NO_ROUTE, now)
        if self.source is None:
            return self._result(check, False, "no health-check address (--lvs-health-address)",
                                now)
        dpid, port, mac, _ = route
        known = check.route
        if known is None or known[0] != dpid or known[1] != port or known[2] != mac:
            check.route = (dpid, port, mac)     # (kept while it holds: no new object a probe)
        cls = check.probe_class
        if cls is None:
            cls = check.probe_class = probemod.probe_class(spec)
        # (make_probe's call, without its keywords: thousands a second)
        check.probe = cls(spec, self.source, pkt.DIRECTOR_MAC, mac, self._next_port_of, now,
                          ssl=self.ssl)
        check.poll_at = None
        frames = check.probe.start(now)
        if check.probe.done:
            return self._finished(check, now, frames)
        self._started.append(check)         # armed at the next tick, if still running
        return self._frames(check, frames)

    def _next_port(self):
        port = next(self._ports)
        if port not in self._ports_used:
            return port                 # (the usual case, without the loop below)
        for _ in range(PORT_RANGE[1] - PORT_RANGE[0] - 1):
            port = next(self._ports)
            if port not in self._ports_used:
                return port
        return next(self._ports)

    def route(self, ip, now, dpids=None):
        """Where a probe to ``ip`` leaves: ``(dpid, port, MAC, messages)``
        (``dpids``: the switches it may leave through, when the caller has them).

        The MAC is the director's knowledge of the address (learned from any
        packet or ARP answer); the port is where the switch saw that MAC
        (None: flood it on that switch).  An unknown MAC is asked for with
        the director's ARP probe and this attempt fails ("no ARP answer"):
        the retry finds it.
        """
        mac = self.hosts.macs.get(ip)
        if dpids is None:
            dpids = list(self.dpids())
        if not dpids:
            return None
        if mac is None:
            return (None, None, None, self.hosts.probe_unknown(dpids, {ip}, now))
        ports = self.hosts.ports
        for dpid in dpids:
            port = ports.get(dpid, _NO_PORTS).get(mac)
            if port is not None:
                return (dpid, port, mac, _NO_MESSAGES)
        return (dpids[0], None, mac, _NO_MESSAGES)

    def _frames(self, check, frames):
        """PacketOuts for a probe's frames; its reply keys are (re)indexed."""
        keys = check.probe.keys if check.probe is not None and not check.probe.done else ()
        if keys != check.keys:
            self._unindex(check)
            check.keys = frozenset(keys)
            for key in check.keys:
                self.by_reply[key] = check
                if len(key) == 4:
                    self._ports_used.add(key[3])
        if not frames or check.route is None:
            return []
        dpid, port, _ = check.route
        if port is None:
            port = ofmsg.FLOOD
        out = []
        for frame in frames:
            out.append((dpid, ofmsg.packet_out_to(ofmsg.CONTROLLER, port, frame)))
        return out

    def _finished(self, check, now, frames=()):
        """The probe is done: its last ``frames`` and what ends it are sent, its result counts."""
        probe = check.probe
        last = probe.finish()
        out = self._frames(check, [*frames, *last] if last else frames)   # (unindexed: done)
        check.probe = check.poll_at = None
        out += self._result(check, probe.ok, probe.detail, now)
        return out

    def _stop(self, check):
        if check.probe is not None:
            check.probe.finish()
            check.probe = check.poll_at = None
        self._unindex(check)
        check.running = False

    def _unindex(self, check):
        for key in check.keys:
            if self.by_reply.get(key) is check:
                del self.by_reply[key]
            if len(key) == 4:
                self._ports_used.discard(key[3])
        check.keys = ()

    # -- replies ------------------------------------------------------------------------
    def wants(self, ip_dst):
        return self.source is not None and ip_dst == self.source

    def packet_in(self, dpid, in_port, data, now):
        """A frame to the health-check address: a probe's reply, or a stray
        (a TCP segment for no probe gets the RST a host would send)."""
        fields = wire.tcp_fields(data)
        if fields is not None:
            # a plain TCP segment (most replies): a TCP_CHECK takes its fields as
            # they are, no Segment is built
            ip, sport, dport, flags, seq, ack = fields
            check = self.by_reply.get(("tcp", ip, sport, dport))
            probe = check.probe if check is not None else None
            if probe is not None and type(probe) is probemod.TcpProbe:
                self.counts["replies"] += 1
                frames = probe.receive_tcp(flags, seq, ack, now)
                if probe.done:
                    return self._finished(check, now, frames)
                self._arm(check)
                return self._frames(check, frames)
        segment = wire.parse(data)
        if segment is None:
            return []
        check = self.by_reply.get(wire.reply_key(segment))
        if check is None or check.probe is None:
            self.counts["strays"] += 1
            reset = wire.reset_for(segment, pkt.DIRECTOR_MAC) if segment.proto == 6 else None
            if reset is None:
                return []
            return [(dpid, ofmsg.packet_out_to(ofmsg.CONTROLLER, in_port, reset))]
        self.counts["replies"] += 1
        frames = check.probe.receive(segment, now)
        if check.probe.done:
            return self._finished(check, now, frames)
        self._arm(check)
        return self._frames(check, frames)

    # -- scripts ------------------------------------------------------------------------
    def _run(self, script, timeout, done=None):
        if script is None or self.run_script is None:
            return
        self.run_script(script.argv, timeout, script.user, script.group, done)

    def script_done(self, check, generation, rc, detail, now):
        """A MISC_CHECK script ended with exit code ``rc`` (None: killed or
        not started; ``detail`` says why).  Returns messages (table changes
        are sent by the API's listeners)."""
        if generation != check.generation or not check.running:
            return []
        if rc is None:
            return self._result(check, False, detail, now)
        if rc == 0:
            return self._result(check, True, "exit 0", now)
        if rc >= 2 and check.spec.dynamic:
            check.weight = rc - 2
            return self._result(check, True, f"exit {rc}: weight {rc - 2}", now)
        return self._result(check, False, f"exit {rc}", now)

    # -- results and their consequences -------------------------------------------------
    def _result(self, check, ok, detail, now):
        spec = check.spec
        check.running = False
        check.last, check.last_at = ("ok: " if ok else "failed: ") + detail, now
        self.counts["ok" if ok else "failed"] += 1
        if ok:
            check.retries = 0
            self._schedule(check, spec.delay_loop, now)
            changed = not check.up
            check.up = True
            if changed:
                check.since = now
                LOG.info("lvs_app: health: %s (%s) succeeded: %s", check.name, spec.origin,
                         detail)
        elif check.retries < spec.retry:
            check.retries += 1
            self._schedule(check, spec.delay_before_retry, now)
            if spec.log_all_failures:
                LOG.info("lvs_app: health: %s failed (%s), retry %d of %d", check.name, detail,
                         check.retries, spec.retry)
            return []
        else:
            check.retries = 0
            self._schedule(check, spec.delay_loop, now)
            changed = check.up
            check.up = False
            if changed:
                check.since = now
                LOG.warning("lvs_app: health: %s (%s) failed: %s", check.name, spec.origin,
                            detail)
        if changed or check.weight is not None:
            # a server's state follows its checkers' (and a dynamic weight): nothing
            # else moves it, so a result that changes neither leaves them as they are
            self._servers_changed(check, now)
        return []

    def _servers_changed(self, check, now):
        for server in check.users:
            alive = server.alive
            if alive != server.up:
                server.up, server.since = alive, now
                LOG.warning("lvs_app: health: %s: real server %s is %s", server.vs.config.name,
                            server.name, "up" if alive else "down")
                self._run(server.config.notify_up if alive else server.config.notify_down,
                          NOTIFY_TIMEOUT)
                self._server_changed(server.vs, server)
            elif alive and check.weight is not None:
                self._server_changed(server.vs, server)       # a dynamic weight moved

    def _server_changed(self, vs, server):
        quorum = self._quorum_now(vs, vs.quorum_up)
        if quorum != vs.quorum_up:
            vs.quorum_up = quorum
            LOG.warning("lvs_app: health: %s: %s quorum (alive weight %d, quorum %d, "
                        "hysteresis %d)", vs.config.name, "gained" if quorum else "lost",
                        vs.alive_weight, vs.config.quorum, vs.config.hysteresis)
            self._run(vs.config.quorum_up if quorum else vs.config.quorum_down, NOTIFY_TIMEOUT)
            if vs.config.sorry_server is not None:
                # the sorry server replaces every server, or they all come back
                self._apply_sorry(vs)
                self._apply(vs, vs.servers)
                return
        if not vs.sorry_active:
            self._apply(vs, [server])

    def _apply(self, vs, servers):
        """Bring the table in line with these servers' state."""
        for server in servers:
            for key, port, options in server.entries:
                if vs.sorry_active:
                    wanted = dict(options, weight=0) if server.config.inhibit_on_failure else None
                elif server.up:
                    wanted = dict(options, weight=server.weight)
                elif server.config.inhibit_on_failure:
                    wanted = dict(options, weight=0)
                else:
                    wanted = None
                self._set(key, server.config.address, port, wanted)

    def _apply_sorry(self, vs):
        sorry = vs.config.sorry_server
        if sorry is None:
            return
        options = {"method": sorry.method}
        if vs.sorry_active:
            wanted = dict(options, weight=1)
        else:
            wanted = dict(options, weight=0) if sorry.inhibit else None
        for key in vs.config.keys:
            self._set(key, sorry.address, sorry.port, wanted)

    def _set(self, key, address, port, options):
        try:
            self.api.health_set(key, address, port, options)
        except LvsError as err:
            LOG.error("lvs_app: health: service %s: real server %s:%s: %s", key, address, port,
                      err.message)

    # -- reading ------------------------------------------------------------------------
    def status(self, now):
        """Every virtual_server block, its servers and their checkers (REST)."""
        return {"source": pkt.ip_text(self.source) if self.source is not None else None,
                "virtual_servers": [vs.to_dict(now) for vs in self.blocks],
                "counts": dict(self.counts)}
