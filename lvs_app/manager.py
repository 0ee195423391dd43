"""The manager: one object that wires the director's parts together.

It owns the service table (through the :class:`~lvs_app.api.DirectorAPI`),
the stable ids, the runtime state, the director logic, the timed jobs and
the one send path.  The Ryu shim, the behaviour tests and the benchmarks all
build this same object and feed it events; nothing re-wires the parts by
hand.  Events are handled with ``now`` from the manager's clock (the real
one in production, a fake one in tests).

The one way out: :meth:`Manager.send` gives each message an xid, sends it on
its switch's datapath and remembers the last SENT_LOG_SIZE messages per
switch, so that an OpenFlow error from a switch is logged with the message
that caused it.
"""

import logging
import os
import struct
import time
from time import perf_counter

from ryu.ofproto import ofproto_v1_3 as ofp
from ryu.ofproto import ofproto_v1_3_parser as parser

from lvs_app import ofmsg
from lvs_app.api import DirectorAPI
from lvs_app.director import Director
from lvs_app.estimator import INTERVAL as ESTIMATOR_INTERVAL
from lvs_app.figures import ControllerFigures
from lvs_app.ha import HEARTBEAT
from lvs_app.health.engine import HealthChecks
from lvs_app.ids import StableIds
from lvs_app.jobs import JobTable, TimedJob
from lvs_app.model import LvsError
from lvs_app.pipeline import PipelineError, PuntMeters
from lvs_app.reconfig import Reconfigure
from lvs_app.recovery import aggregate_request, meter_stats_request, table_stats_request
from lvs_app.state import RuntimeState
from lvs_app.stats import TrafficCounters

LOG = logging.getLogger("lvs_app")

SENT_LOG_SIZE = 4096        # messages remembered per switch, for OpenFlow errors
SCHEDULER_AGEING = 60.0     # s: lblc/lblcr clean-up (the kernel's 60 s timer)
HOST_REFRESH = 1.0          # s: ARP retries and stale-MAC probes
FRAGMENT_EXPIRY = 5.0       # s: forget datagrams whose fragments stopped coming
RECOVERY_TIMEOUT = 10       # s: a switch that does not send its flows back
CLAIM_WAIT = 3.0            # s: the first connection of a datapath id may answer
CLAIM_ECHO = b"lvs_app: are you there?"
EVENT_QUEUE_LIMIT = 4096    # PacketIns/FlowRemoveds held while a switch recovers
RULES_RELOAD = 1.0          # s: a backup looks at the shared rules file this often
SWEEP_INTERVAL = 30.0       # s: entries whose FlowRemoved never came are looked for
HEALTH_TICK = 0.02          # s: health probes are started and timed out this often
STATS_INTERVAL = 2.0        # s: the switches' flow counters are read this often (default)
_MASTER_ONLY = (parser.OFPFlowMod, parser.OFPPacketOut)


class _Recovering:
    """A switch whose flows (and meters) are being read back; its events wait."""

    def __init__(self, deadline, meters):
        self.deadline, self.flows, self.queue = deadline, [], []
        self.meters = []                        # the meter ids the switch has
        self.flows_done, self.meters_done = False, not meters


class _Claim:
    """A second connection for a connected datapath id, waiting for a verdict."""

    def __init__(self, datapath, ports, deadline):
        self.datapath, self.ports, self.deadline, self.queue = datapath, ports, deadline, []


def ids_path(rules_path):
    """Where the stable ids live: beside the rules file."""
    return rules_path + ".ids" if rules_path else None


def stats_path(rules_path):
    """Where the traffic counters are kept: beside the rules file."""
    return rules_path + ".stats" if rules_path else None


class Manager:
    """The director of one controller: configuration, logic, timers, sending."""

    def __init__(self, rules_path=None, settings=None, clock=time.monotonic, strict=False,
                 ha=None, packetin_pps=0, max_connections=0, health_source=None,
                 run_script=None, stats_interval=STATS_INTERVAL):
        self.clock = clock
        self.ha = ha                  # a HighAvailability, or None (standalone)
        self.strict = strict          # tests: a flow that breaks the pipeline raises
        self.api = DirectorAPI(rules_path=rules_path, settings=settings, runtime=self)
        self.ids = StableIds(ids_path(rules_path))
        self.traffic = TrafficCounters(self.ids, stats_path(rules_path))
        self.figures = ControllerFigures()         # for /metrics
        self.runtime = RuntimeState(self.traffic)
        self.director = Director(self.api, self.ids, self.runtime,
                                 PuntMeters(packetin_pps, health=health_source is not None),
                                 max_connections)
        self.reconfigure = Reconfigure(self.director)
        # run_script(argv, timeout, user, group, done): see health/scripts.py;
        # its done(rc, detail) comes back through report_script
        self.health = HealthChecks(self.api, self.director.hosts, self._serving_dpids,
                                   health_source, run_script)
        self.director.health_source = self.health.source
        self.director.traffic = self.traffic
        self.api.keepalived_checks.append(self.health.validate)
        self.director.health = self.health
        self.jobs = JobTable([
            TimedJob("scheduler-ageing", SCHEDULER_AGEING, self.director.age_schedulers),
            TimedJob("host-refresh", HOST_REFRESH, self.director.refresh_hosts),
            TimedJob("fragment-expiry", FRAGMENT_EXPIRY, self.director.fragments.expire),
            TimedJob("switch-recovery", 1.0, self._recovery_timeouts),
            TimedJob("sweep", SWEEP_INTERVAL, self.director.sweep),  # see sweep.py
            TimedJob("closed-expiry", 1.0, self.director.expire_closed),  # see lifecycle.py
            TimedJob("health-checks", HEALTH_TICK, self._health_tick),
            TimedJob("rate-estimator", ESTIMATOR_INTERVAL, self.runtime.estimate),
        ], start=clock())
        if stats_interval:
            self.jobs.add(TimedJob("stats-poll", stats_interval, self._poll_stats), clock())
        self.datapaths = {}           # dpid -> object with send_msg(msg)
        self.ports = {}               # dpid -> {port: name} (as connected)
        self.recovering = {}          # dpid -> _Recovering: flows being read back
        self.claims = {}              # dpid -> _Claim: a second connection waiting
        self._replies = {}            # (dpid, xid) -> (handler(flows, now), parts so far)
        self._xid = 0
        self._sent = {}               # dpid -> ring of the last SENT_LOG_SIZE messages sent
        self.api.listeners.append(self._table_changed)
        if ha is not None:
            self.jobs.add(TimedJob("ha-heartbeat", HEARTBEAT, self._ha_heartbeat), clock())
            self.jobs.add(TimedJob("rules-reload", RULES_RELOAD, self._reload_rules), clock())
            self._rules_stamp = self._rules_file_stamp()
            self._ha_read_only()

    def load_rules(self):
        """Load the rules file (LvsError when it is bad: nothing is loaded)."""
        return self.api.load_rules()

    # -- the read side the API shows --------------------------------------------------
    def service_view(self, service):
        return self.runtime.service_view(service)

    def server_view(self, service, server):
        return self.runtime.server_view(service, server)

    def connection_rows(self):
        return self.director.connections(self.clock())

    def health_status(self):
        return self.health.status(self.clock())

    # -- health checks -------------------------------------------------------------------
    def _serving_dpids(self):
        """The switches probes may leave through (none on an HA backup)."""
        if self.ha is not None and not self.ha.serving:
            return []
        return [d for d in self.datapaths if d not in self.recovering]

    def _health_tick(self, now):
        """Timed job: start due probes, time out late ones (the master only:
        a backup's table follows the master's rules file)."""
        if not self.health.active or (self.ha is not None and not self.ha.serving):
            return []
        return self.health.tick(now)

    # -- traffic counters ----------------------------------------------------------------
    def _poll_stats(self, now):
        """Timed job: every switch's counters, one aggregate query per real
        server and kind of flow (see stats.py); the counters file is written
        when what it keeps changed (here, and when a switch's poll is done)."""
        traffic = self.traffic
        self._save_counters()
        queries = traffic.queries(self.ids.numbers())
        out = []
        for dpid in self._serving_dpids():
            traffic.poll_started(dpid, len(queries))
            for kind, service, server in queries:
                request = aggregate_request(kind, service, server)
                request.on_reply = (lambda body, when, dpid=dpid, q=(kind, service, server):
                                    self._aggregate_reply(dpid, q, body, when))
                out.append((dpid, request))
            request = table_stats_request()
            request.on_reply = (lambda body, when, dpid=dpid: traffic.table_stats(
                dpid, {t.table_id: t.active_count for t in body}))
            out.append((dpid, request))
            if self.director.meters.pps:
                out.append((dpid, meter_stats_request()))
        return out

    def _aggregate_reply(self, dpid, query, body, now):
        if self.traffic.aggregate(dpid, *query, body.packet_count, body.byte_count, now):
            self._save_counters()        # what is shown now is what a restart starts from

    def _save_counters(self):
        """Write the counters file (the serving controller only: an HA backup's
        counters are the file's, as the master last wrote it)."""
        if self.ha is None or self.ha.serving:
            self.traffic.save(self.runtime.connection_counts())

    def stats_reply(self, dpid, xid, body):
        """An aggregate or table statistics reply for a request that named a handler."""
        waiting = self._replies.pop((dpid, xid), None)
        if waiting is not None:
            self._handle(lambda *args: waiting[0](*args) or [], body, self.clock())

    def meter_stats(self, dpid, body):
        """A meter statistics reply: the punts each meter dropped (/metrics)."""
        self.figures.meter_stats(dpid, body)

    def metrics_text(self):
        """``GET /metrics``: the Prometheus text (see metrics.py)."""
        from lvs_app import metrics
        controller = self.figures.as_dict(self.director, self.traffic,
                                          self._serving_dpids(), self.clock())
        return metrics.render(self.api.snapshot(), self.api.health(), controller)

    def report_script(self, done, rc, detail):
        """A script the health checks started has ended (ScriptRunner's report)."""
        self._handle(done, rc, detail, self.clock())

    # -- switches ----------------------------------------------------------------------
    def switch_connected(self, dpid, datapath, ports=None):
        """A switch connected.  Its flows are read back before anything else
        (see recovery.py); a second connection claiming a connected datapath
        id waits until the first one is known to be gone."""
        current = self.datapaths.get(dpid)
        if current is not None and current is not datapath:
            self._claim(dpid, current, datapath, ports)
            return
        self._adopt(dpid, datapath, ports)

    def _adopt(self, dpid, datapath, ports):
        self.datapaths[dpid] = datapath
        self._sent[dpid] = [None] * SENT_LOG_SIZE
        self.ports[dpid] = ports or {}
        if self.ha is not None:
            self.send([(dpid, self._role_request())])
            if not self.ha.serving:
                return                   # a backup only watches; it takes over later
        self._serve(dpid)

    def _serve(self, dpid):
        """Read the switch's flows back, then direct its traffic."""
        self.recovering[dpid] = _Recovering(self.clock() + RECOVERY_TIMEOUT,
                                            self.director.meters.pps)
        self._handle(self.director.switch_connected, dpid, self.ports.get(dpid, {}),
                     self.clock())

    # -- high availability ---------------------------------------------------------------
    def _role_request(self):
        role = ofp.OFPCR_ROLE_MASTER if self.ha.serving else ofp.OFPCR_ROLE_SLAVE
        return parser.OFPRoleRequest(None, role, self.ha.generation)

    def _ha_read_only(self):
        self.api.read_only = None if self.ha.serving else (
            f"this controller is the high-availability backup; change the service table "
            f"through the master ({self.ha.peer_url})")

    def ha_status(self):
        return self.ha.status() if self.ha is not None else None

    def _ha_heartbeat(self, now):
        """Timed job (backup): watch the master; take over when it is gone."""
        if not self.ha.heartbeat():
            return []
        self._reload_rules(now, force=True)
        self.traffic.reload()            # the master's counters, as it last saved them
        self.ha.take_over()
        self._ha_read_only()
        for dpid in list(self.datapaths):
            self.send([(dpid, self._role_request())])
            self._serve(dpid)
        return []

    def _rules_file_stamp(self):
        path = self.api.rules_path
        try:
            st = os.stat(path) if path else None
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size) if st else None

    def _reload_rules(self, now, force=False):
        """Timed job (backup): the master rewrote the shared rules file: load it."""
        if self.ha.serving and not force:
            return []
        stamp = self._rules_file_stamp()
        if stamp == self._rules_stamp and not force:
            return []
        self._rules_stamp = stamp
        self.ids.reload()
        try:
            self.api.load_rules()
        except LvsError as err:
            LOG.error("lvs_app: HA: the rules file could not be reloaded: %s", err.message)
        return []

    def flow_stats(self, dpid, body, more=False, xid=None):
        """A part of a flow statistics reply (``more``: further parts follow):
        for a switch's read-back, or for a request that named a handler."""
        waiting = self._replies.get((dpid, xid))
        if waiting is not None:
            waiting[1].extend(body)
            if not more:
                del self._replies[(dpid, xid)]
                self._handle(waiting[0], waiting[1], self.clock())
            return
        recovering = self.recovering.get(dpid)
        if recovering is None:
            return
        recovering.flows += body
        recovering.flows_done = not more
        if recovering.flows_done and recovering.meters_done:
            self._recovered(dpid)

    def meter_config(self, dpid, body, more=False):
        """A part of a meter configuration reply: which punt meters exist."""
        recovering = self.recovering.get(dpid)
        if recovering is None:
            return
        recovering.meters += [m.meter_id for m in body]
        recovering.meters_done = not more
        if recovering.flows_done and recovering.meters_done:
            self._recovered(dpid)

    def _recovered(self, dpid):
        recovering = self.recovering.pop(dpid)
        self._handle(self.director.recover, dpid, recovering.flows, self.clock(),
                     recovering.meters)
        for event in recovering.queue:          # what came meanwhile, in order
            event()

    def _recovery_timeouts(self, now):
        """Timed job: a switch that does not answer the flow statistics request
        is handled from nothing (its flows stay; their FlowRemoveds are ignored)."""
        for dpid in [d for d, r in self.recovering.items() if r.deadline <= now]:
            LOG.warning("lvs_app: switch %016x did not send its flows within %ds: "
                        "starting without them", dpid, RECOVERY_TIMEOUT)
            self._recovered(dpid)
        for dpid in [d for d, c in self.claims.items() if c.deadline <= now]:
            claim = self.claims.pop(dpid)
            LOG.warning("lvs_app: switch %016x: the first connection did not answer: the "
                        "second one takes over", dpid)
            self.switch_disconnected(dpid)
            self._adopt(dpid, claim.datapath, claim.ports)
            for event in claim.queue:
                event()
        return []

    def _claim(self, dpid, current, datapath, ports):
        """A second connection for a connected datapath id: ask the first one
        (an echo request); it is refused if the first one answers in time."""
        LOG.warning("lvs_app: switch %016x: a second connection claims this datapath id; "
                    "asking the first one", dpid)
        self.claims[dpid] = _Claim(datapath, ports, self.clock() + CLAIM_WAIT)
        self.send([(dpid, parser.OFPEchoRequest(None, data=CLAIM_ECHO))])

    def echo_reply(self, dpid, datapath, data):
        """An echo reply: the first connection of a claimed datapath id lives."""
        claim = self.claims.get(dpid)
        if claim is None or data != CLAIM_ECHO or datapath is not self.datapaths.get(dpid):
            return
        del self.claims[dpid]
        LOG.warning("lvs_app: switch %016x: the first connection answers: the second one is "
                    "refused", dpid)
        close = getattr(claim.datapath, "close", None)
        if close is not None:
            close()

    def switch_disconnected(self, dpid, datapath=None):
        """A switch went away (``datapath``: only if it is still the current one)."""
        claim = self.claims.get(dpid)
        if claim is not None and datapath is claim.datapath:
            del self.claims[dpid]
            return False
        if datapath is not None and self.datapaths.get(dpid) is not datapath:
            return False
        self.datapaths.pop(dpid, None)
        self._sent.pop(dpid, None)
        self.ports.pop(dpid, None)
        for key in [k for k in self._replies if k[0] == dpid]:
            del self._replies[key]          # their answers will not come
        self.recovering.pop(dpid, None)
        self.send(self.director.switch_disconnected(dpid) or [])   # a fabric reroutes
        self.traffic.switch_gone(dpid)
        return True

    def _queued(self, dpid, datapath, event):
        """True when the event must wait (recovery or a claim) and was queued."""
        claim = self.claims.get(dpid)
        if claim is not None and datapath is claim.datapath:
            if len(claim.queue) < EVENT_QUEUE_LIMIT:
                claim.queue.append(event)
            return True
        recovering = self.recovering.get(dpid)
        if recovering is not None:
            if len(recovering.queue) < EVENT_QUEUE_LIMIT:
                recovering.queue.append(event)
            return True
        return False

    def link_changed(self, src, src_port, dst, dst_port, up):
        """Link discovery (ryu.topology, --observe-links) found or lost a link."""
        self._handle(self.director.link_changed, src, src_port, dst, dst_port, up,
                     self.clock())

    def fabric_view(self):
        return self.director.fabric_view(self.clock())

    def ports_changed(self, dpid, ports):
        self.ports[dpid] = dict(ports)
        self.director.ports_changed(dpid, ports)

    def packet_in(self, dpid, in_port, data, table_id, datapath=None):
        """A PacketIn (``datapath``: the connection it came on, when known)."""
        if (self.recovering or self.claims) and self._queued(
                dpid, datapath, lambda: self.packet_in(dpid, in_port, data, table_id)):
            return
        # the hot path: _handle's work, without its generic call
        started = perf_counter()
        try:
            messages = self.director.packet_in(dpid, in_port, data, table_id, self.clock())
        except PipelineError as err:
            self._refused("packet_in", err)
            return
        self.send(messages)
        self.figures.packet_in(table_id, perf_counter() - started, self.director.outcome)

    def flow_removed(self, dpid, cookie, match, duration, reason, packet_count=0,
                     datapath=None, byte_count=0, table_id=None, hard_timeout=0):
        if (self.recovering or self.claims) and self._queued(
                dpid, datapath, lambda: self.flow_removed(dpid, cookie, match, duration,
                                                          reason, packet_count,
                                                          byte_count=byte_count,
                                                          table_id=table_id,
                                                          hard_timeout=hard_timeout)):
            return
        self.traffic.flow_removed(cookie, packet_count, byte_count, dpid)
        self._handle(self.director.flow_removed, dpid, cookie, match, duration, self.clock(),
                     reason, packet_count, hard_timeout)

    def tick(self):
        """Run the timed jobs that are due."""
        self.send(self.jobs.run_due(self.clock()))

    def _table_changed(self, change):
        self.traffic.table_changed()
        if change.kind == "keepalived":
            self._handle(self.health.configure, self.api.keepalived, self.clock())
            return
        self._handle(self.reconfigure.table_changed, change, self.clock())

    def _handle(self, handler, *args):
        try:
            messages = handler(*args)
        except PipelineError as err:
            self._refused(handler.__name__, err)
            return
        self.send(messages)

    def _refused(self, what, err):
        if self.strict:
            raise err
        LOG.error("lvs_app: %s built a flow that breaks the pipeline, nothing sent: %s",
                  what, err)

    # -- the one way out ---------------------------------------------------------------
    def send(self, messages):
        """Send ``(dpid, message)`` pairs, each with an xid remembered for errors."""
        if self.ha is not None and not self.ha.serving:
            # a backup changes nothing in the switches (they would refuse it)
            messages = [(d, m) for d, m in messages if not isinstance(m, _MASTER_ONLY)]
        datapaths, sent, xid, by_type = self.datapaths, self._sent, self._xid, self.figures.sent
        for dpid, msg in messages:
            datapath = datapaths.get(dpid)
            if datapath is None:
                continue
            by_type[msg.cls_msg_type] += 1
            xid = (xid + 1) & 0xFFFFFFFF
            msg.xid = xid
            msg.datapath = datapath
            datapath.send_msg(msg)
            if hasattr(msg, "on_reply"):          # a request whose answer has a handler
                self._replies[(dpid, xid)] = (msg.on_reply, [])
            # a ring of the encoded messages (one plain buffer each: keeping the
            # message objects alive would cost the hot path its caches); the
            # slot of an xid is reused SENT_LOG_SIZE messages later
            sent[dpid][xid % SENT_LOG_SIZE] = getattr(msg, "buf", None) or msg
        self._xid = xid

    def error(self, dpid, xid, err_type, code, data=b""):
        """An OpenFlow error from switch ``dpid``: log it with the message that caused it."""
        self.figures.errors += 1
        ring = self._sent.get(dpid)
        sent = ring[xid % SENT_LOG_SIZE] if ring is not None else None
        msg = decode(sent, self.datapaths.get(dpid)) if sent is not None else None
        if msg is None or msg.xid != xid:
            LOG.error("lvs_app: OpenFlow error from switch %016x: type=%d code=%d xid=%d "
                      "(message no longer known) data=%s", dpid, err_type, code, xid,
                      bytes(data[:64]).hex())
            return None
        LOG.error("lvs_app: OpenFlow error from switch %016x: type=%d code=%d for xid=%d %s",
                  dpid, err_type, code, xid, describe(msg))
        return msg


def decode(sent, datapath):
    """The message kept in the ring (encoded bytes, or the message itself)."""
    if not isinstance(sent, (bytes, bytearray)):
        return sent
    version, msg_type, length, xid = struct.unpack_from("!BBHI", sent)
    if msg_type == ofp.OFPT_FLOW_MOD and datapath is not None:
        try:
            return parser.OFPFlowMod.parser(datapath, version, msg_type, length, xid,
                                            bytes(sent))
        except Exception:      # noqa: BLE001 -- a description must never fail
            pass
    msg = parser.MsgBase(datapath)
    msg.msg_type, msg.xid = msg_type, xid
    return msg


def describe(msg):
    """One line naming a message: its kind, table, priority, cookie and match."""
    name = type(msg).__name__
    if name == "MsgBase":
        return f"message type {msg.msg_type}"
    if ofmsg.is_flow_mod(msg):
        return (f"{name} command={msg.command} table={msg.table_id} priority={msg.priority} "
                f"cookie={msg.cookie:#x} match={dict(msg.match.items())}")
    return name
