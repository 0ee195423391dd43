"""The Ryu shim: ``ryu-manager lvs_app`` runs :class:`LVSDirector`.

Event handlers are a few lines each: they hand plain data and the current
time to the director logic and send back the OpenFlow messages it returns.
"""

import logging
import sys
import time

from ryu import cfg
from ryu.app.wsgi import WSGIApplication
from ryu.base import app_manager
from ryu.controller import ofp_event
from ryu.controller.handler import (CONFIG_DISPATCHER, DEAD_DISPATCHER,
                                    MAIN_DISPATCHER, set_ev_cls)
from ryu.ofproto import ofproto_v1_3

from lvs_app import pipeline, rest
from lvs_app.api import DirectorAPI
from lvs_app.director import Director
from lvs_app.model import LvsError
from lvs_app.options import register as register_options

LOG = logging.getLogger("lvs_app")
CONF = cfg.CONF
register_options(CONF)   # no-op when the compat hook registered them already


class LVSDirector(app_manager.RyuApp):
    """The LinuxDirector in the switches' flow tables."""

    OFP_VERSIONS = [ofproto_v1_3.OFP_VERSION]
    _CONTEXTS = {"wsgi": WSGIApplication}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.api = DirectorAPI(
            rules_path=CONF.lvs_rules,
            settings={"expire_quiescent_template": CONF.lvs_expire_quiescent_template,
                      "expire_nodest_conn": CONF.lvs_expire_nodest_conn})
        try:
            if self.api.load_rules():
                LOG.info("lvs_app: loaded %d virtual services from %s",
                         len(self.api.table.services), CONF.lvs_rules)
        except LvsError as err:
            # A bad rules file is refused whole and the controller does not
            # start with a half-loaded table (the file is left as it is).
            LOG.error("lvs_app: %s", err.message)
            sys.stderr.write(f"lvs_app: {err.message}\n")
            raise SystemExit(1) from None
        self.datapaths = {}
        self.director = Director(self.api)
        self.api.listeners.append(self._table_changed)
        self.api.connection_source = lambda: self.director.connections(time.monotonic())
        rest.register(kwargs["wsgi"], self.api)

    # -- the one way out -------------------------------------------------------
    def send(self, messages):
        """Send ``(dpid, message)`` pairs; every FlowMod is checked first."""
        for dpid, msg in messages:
            datapath = self.datapaths.get(dpid)
            if datapath is None:
                continue
            if isinstance(msg, datapath.ofproto_parser.OFPFlowMod):
                try:
                    pipeline.check(msg)
                except pipeline.PipelineError as err:
                    LOG.error("lvs_app: refusing a FlowMod that breaks the pipeline: %s", err)
                    continue
            msg.datapath = datapath
            datapath.send_msg(msg)

    def _table_changed(self, change):
        self.send(self.director.table_changed(change, time.monotonic()))

    # -- switch events ---------------------------------------------------------
    @set_ev_cls(ofp_event.EventOFPSwitchFeatures, CONFIG_DISPATCHER)
    def _switch_features(self, ev):
        datapath = ev.msg.datapath
        self.datapaths[datapath.id] = datapath
        LOG.info("lvs_app: switch %016x connected", datapath.id)
        datapath.send_msg(datapath.ofproto_parser.OFPPortDescStatsRequest(datapath, 0))
        self.send(self.director.switch_connected(datapath.id, {}, time.monotonic()))

    @set_ev_cls(ofp_event.EventOFPPortDescStatsReply, MAIN_DISPATCHER)
    def _port_desc(self, ev):
        ports = {p.port_no: p.name.decode("utf-8", "replace") for p in ev.msg.body}
        self.director.ports_changed(ev.msg.datapath.id, ports)

    @set_ev_cls(ofp_event.EventOFPPortStatus, MAIN_DISPATCHER)
    def _port_status(self, ev):
        datapath = ev.msg.datapath
        datapath.send_msg(datapath.ofproto_parser.OFPPortDescStatsRequest(datapath, 0))

    @set_ev_cls(ofp_event.EventOFPStateChange, DEAD_DISPATCHER)
    def _switch_gone(self, ev):
        datapath = ev.datapath
        if datapath.id is not None and self.datapaths.get(datapath.id) is datapath:
            del self.datapaths[datapath.id]
            self.director.switch_disconnected(datapath.id)
            LOG.info("lvs_app: switch %016x disconnected", datapath.id)

    @set_ev_cls(ofp_event.EventOFPPacketIn, MAIN_DISPATCHER)
    def _packet_in(self, ev):
        msg = ev.msg
        self.send(self.director.packet_in(msg.datapath.id, msg.match["in_port"], msg.data,
                                          msg.table_id, time.monotonic()))

    @set_ev_cls(ofp_event.EventOFPFlowRemoved, MAIN_DISPATCHER)
    def _flow_removed(self, ev):
        msg = ev.msg
        duration = msg.duration_sec + msg.duration_nsec / 1e9
        self.send(self.director.flow_removed(msg.datapath.id, msg.cookie, msg.match,
                                             duration, time.monotonic(), msg.reason))

    @set_ev_cls(ofp_event.EventOFPErrorMsg, [CONFIG_DISPATCHER, MAIN_DISPATCHER])
    def _error(self, ev):
        msg = ev.msg
        LOG.error("lvs_app: OpenFlow error from switch %016x: type=%d code=%d data=%s",
                  msg.datapath.id, msg.type, msg.code, msg.data[:64].hex())


# ``ryu-manager lvs_app`` only picks up an app class whose __module__ is the
# module it loaded; lvs_app/__init__.py hands this class out lazily.
LVSDirector.__module__ = "lvs_app"
