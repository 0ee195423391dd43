"""Link discovery for a fabric: loaded with ``ryu-manager lvs_app --observe-links``.

A small Ryu app beside :class:`lvs_app.ryuapp.LVSDirector`: it receives
``ryu.topology``'s link events (Ryu's LLDP discovery, ``ryu.topology.switches``,
which handling them loads) and hands them to the director's manager (see
topology.py and fabricfwd.py).  It is loaded only when links are to be
observed, so that a one-switch director pays nothing for it.
"""

from ryu.base import app_manager
from ryu.controller.handler import set_ev_cls
from ryu.ofproto import ofproto_v1_3
from ryu.topology import event as topology_event


class FabricDiscovery(app_manager.RyuApp):
    """Links found and lost -> Manager.link_changed."""

    OFP_VERSIONS = [ofproto_v1_3.OFP_VERSION]

    def _manager(self):
        director = app_manager.lookup_service_brick("LVSDirector")
        return director.manager if director is not None else None

    def _link(self, link, up):
        manager = self._manager()
        if manager is not None:
            manager.link_changed(link.src.dpid, link.src.port_no, link.dst.dpid,
                                 link.dst.port_no, up)

    @set_ev_cls(topology_event.EventLinkAdd)
    def _link_add(self, ev):
        self._link(ev.link, True)

    @set_ev_cls(topology_event.EventLinkDelete)
    def _link_delete(self, ev):
        self._link(ev.link, False)
