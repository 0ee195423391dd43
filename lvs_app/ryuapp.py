"""The Ryu shim: ``ryu-manager lvs_app`` runs :class:`LVSDirector`.

Event handlers are a few lines each: they hand plain data to the
:class:`~lvs_app.manager.Manager`, which decides with the director logic and
sends what it returns.  A green thread drives the manager's timed jobs.
"""

import logging
import sys

from ryu import cfg
from ryu.app.wsgi import WSGIApplication
from ryu.base import app_manager
from ryu.controller import ofp_event
from ryu.controller.handler import (CONFIG_DISPATCHER, DEAD_DISPATCHER,
                                    MAIN_DISPATCHER, set_ev_cls)
from ryu.lib import hub
from ryu.ofproto import ofproto_v1_3

from lvs_app import keepalived, rest
from lvs_app.access import Access, AccessConfigError
from lvs_app.ha import BACKUP, MASTER, HighAvailability
from lvs_app.health.scripts import ScriptRunner
from lvs_app.manager import Manager
from lvs_app.model import BadRequest, LvsError, parse_ip
from lvs_app.options import register as register_options

LOG = logging.getLogger("lvs_app")
CONF = cfg.CONF
if getattr(CONF, "observe_links", False):
    # a fabric: Ryu's LLDP link discovery reports links to lvs_app.fabricapp
    # (only then: its PacketIn handler would otherwise cost every PacketIn)
    sys.modules["lvs_app"]._REQUIRED_APP = ["lvs_app.fabricapp"]
register_options(CONF)   # no-op when the compat hook registered them already


class LVSDirector(app_manager.RyuApp):
    """The LinuxDirector in the switches' flow tables: Ryu events -> Manager."""

    OFP_VERSIONS = [ofproto_v1_3.OFP_VERSION]
    _CONTEXTS = {"wsgi": WSGIApplication}
    TICK = 0.5               # s: the longest the timed jobs wait to be looked at

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        try:
            access = Access.from_options(CONF.wsapi_host, CONF.lvs_rest_token_file)
            self.manager = Manager(
                rules_path=CONF.lvs_rules,
                settings={"expire_quiescent_template": CONF.lvs_expire_quiescent_template,
                          "expire_nodest_conn": CONF.lvs_expire_nodest_conn},
                ha=self._high_availability(access), packetin_pps=CONF.lvs_packetin_pps,
                max_connections=CONF.lvs_max_connections,
                health_source=self._health_address(),
                stats_interval=self._stats_interval(),
                run_script=ScriptRunner(hub.spawn, self._script_done, green_popen()))
            if self.manager.load_rules():
                LOG.info("lvs_app: loaded %d virtual services from %s",
                         len(self.manager.api.table.services), CONF.lvs_rules)
            if CONF.lvs_keepalived:
                self._load_keepalived(CONF.lvs_keepalived)
        except (AccessConfigError, LvsError) as err:
            # A bad rules file is refused whole and the controller does not
            # start with a half-loaded table (the file is left as it is); nor
            # does it start with REST open to the network and no token.
            LOG.error("lvs_app: %s", err.message)
            sys.stderr.write(f"lvs_app: {err.message}\n")
            raise SystemExit(1) from None
        # with --observe-links the switches form a fabric once links are reported:
        # until then (and for a moment after a switch connects) nothing floods
        self.manager.director.fabricfwd.expected = bool(getattr(CONF, "observe_links", False))
        rest.register(kwargs["wsgi"], self.manager.api, access)

    def _load_keepalived(self, path):
        """--lvs-keepalived FILE: its virtual servers join the table (a bad file
        stops the controller, naming file and line)."""
        api = self.manager.api
        config = keepalived.load(path, marks=api.table.marks)
        for warning in config.warnings:
            LOG.warning("lvs_app: %s", warning)
        done = api.apply_keepalived(config, path)
        LOG.info("lvs_app: loaded %d virtual services from %s (%d health checkers)",
                 len(done["services"]), path, len(self.manager.health.checks))

    @staticmethod
    def _health_address():
        """--lvs-health-address: where the in-band probes come from."""
        text = CONF.lvs_health_address
        if text is None:
            return None
        address = parse_ip(text, "--lvs-health-address")
        if address.version != 4:
            raise BadRequest(f"--lvs-health-address {text}: the probes are IPv4 (the data "
                             "plane is IPv4)")
        return address

    @staticmethod
    def _stats_interval():
        """--lvs-stats-interval: how often the switches' flow counters are read."""
        value = CONF.lvs_stats_interval
        if not 0.5 <= value <= 3600:
            raise BadRequest(f"--lvs-stats-interval {value:g}: must be 0.5 to 3600 seconds")
        return value

    def _script_done(self, done, rc, detail):
        self.manager.report_script(done, rc, detail)

    @staticmethod
    def _high_availability(access):
        """--lvs-ha-role/--lvs-ha-peer: two controllers, one master (lvs_app.ha)."""
        role, peer = CONF.lvs_ha_role, CONF.lvs_ha_peer
        if role is None and peer is None:
            return None
        if role not in (MASTER, BACKUP) or not peer:
            raise BadRequest(f"--lvs-ha-role {role} --lvs-ha-peer {peer}: high availability "
                             "needs a role (master or backup) and the peer's REST URL")
        if not CONF.lvs_rules:
            raise BadRequest("--lvs-ha-role: both controllers must share one rules file "
                             "(--lvs-rules FILE)")
        ha = HighAvailability(role, peer, access.token.decode("ascii") if access.token else None)
        ha.start()
        return ha

    def start(self):
        thread = super().start()
        self.threads.append(hub.spawn(self._timer))
        return thread

    def _timer(self):
        jobs, clock = self.manager.jobs, self.manager.clock
        while self.is_active:
            self.manager.tick()
            due = jobs.next_due()
            hub.sleep(self.TICK if due is None else min(self.TICK, max(0.005, due - clock())))

    # -- switch events ---------------------------------------------------------
    @set_ev_cls(ofp_event.EventOFPSwitchFeatures, CONFIG_DISPATCHER)
    def _switch_features(self, ev):
        datapath = ev.msg.datapath
        LOG.info("lvs_app: switch %016x connected", datapath.id)
        datapath.send_msg(datapath.ofproto_parser.OFPPortDescStatsRequest(datapath, 0))
        self.manager.switch_connected(datapath.id, datapath)

    @set_ev_cls(ofp_event.EventOFPPortDescStatsReply, MAIN_DISPATCHER)
    def _port_desc(self, ev):
        ports = {p.port_no: p.name.decode("utf-8", "replace") for p in ev.msg.body}
        self.manager.ports_changed(ev.msg.datapath.id, ports)

    @set_ev_cls(ofp_event.EventOFPPortStatus, MAIN_DISPATCHER)
    def _port_status(self, ev):
        datapath = ev.msg.datapath
        datapath.send_msg(datapath.ofproto_parser.OFPPortDescStatsRequest(datapath, 0))

    @set_ev_cls(ofp_event.EventOFPStateChange, DEAD_DISPATCHER)
    def _switch_gone(self, ev):
        datapath = ev.datapath
        if datapath.id is not None and self.manager.switch_disconnected(datapath.id, datapath):
            LOG.info("lvs_app: switch %016x disconnected", datapath.id)

    @set_ev_cls(ofp_event.EventOFPFlowStatsReply, MAIN_DISPATCHER)
    def _flow_stats(self, ev):
        msg = ev.msg
        self.manager.flow_stats(msg.datapath.id, msg.body,
                                bool(msg.flags & ofproto_v1_3.OFPMPF_REPLY_MORE), msg.xid)

    @set_ev_cls(ofp_event.EventOFPMeterConfigStatsReply, MAIN_DISPATCHER)
    def _meter_config(self, ev):
        msg = ev.msg
        self.manager.meter_config(msg.datapath.id, msg.body,
                                  bool(msg.flags & ofproto_v1_3.OFPMPF_REPLY_MORE))

    @set_ev_cls([ofp_event.EventOFPAggregateStatsReply, ofp_event.EventOFPTableStatsReply],
                MAIN_DISPATCHER)
    def _stats_reply(self, ev):
        self.manager.stats_reply(ev.msg.datapath.id, ev.msg.xid, ev.msg.body)

    @set_ev_cls(ofp_event.EventOFPMeterStatsReply, MAIN_DISPATCHER)
    def _meter_stats(self, ev):
        self.manager.meter_stats(ev.msg.datapath.id, ev.msg.body)

    @set_ev_cls(ofp_event.EventOFPEchoReply, [CONFIG_DISPATCHER, MAIN_DISPATCHER])
    def _echo_reply(self, ev):
        self.manager.echo_reply(ev.msg.datapath.id, ev.msg.datapath, ev.msg.data)

    @set_ev_cls(ofp_event.EventOFPPacketIn, MAIN_DISPATCHER)
    def _packet_in(self, ev):
        msg = ev.msg
        # a PacketIn without in_port is malformed: the director drops it
        self.manager.packet_in(msg.datapath.id, msg.match.get("in_port"), msg.data,
                               msg.table_id, msg.datapath)

    @set_ev_cls(ofp_event.EventOFPFlowRemoved, MAIN_DISPATCHER)
    def _flow_removed(self, ev):
        msg = ev.msg
        self.manager.flow_removed(msg.datapath.id, msg.cookie, msg.match,
                                  msg.duration_sec + msg.duration_nsec / 1e9, msg.reason,
                                  msg.packet_count, msg.datapath, msg.byte_count, msg.table_id,
                                  msg.hard_timeout)

    @set_ev_cls(ofp_event.EventOFPErrorMsg, [CONFIG_DISPATCHER, MAIN_DISPATCHER])
    def _error(self, ev):
        msg = ev.msg
        self.manager.error(msg.datapath.id, msg.xid, msg.type, msg.code, msg.data)


def green_popen():
    """A Popen whose wait() lets the other green threads run."""
    from eventlet.green import subprocess as green_subprocess
    return green_subprocess.Popen


# ``ryu-manager lvs_app`` only picks up an app class whose __module__ is the
# module it loaded; lvs_app/__init__.py hands this class out lazily.
LVSDirector.__module__ = "lvs_app"
