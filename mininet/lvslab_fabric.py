"""The multi-switch part of the lab: the links between switches and the fabric.

:class:`LabFabric`, a mixin of :class:`lvslab.Lab`, holds what a lab of
several switches (a fabric such as ``leafspine``) adds to one switch: the
ports of the links between switches (:meth:`~LabFabric.link_ports`), taking
a link down and up again (:meth:`~LabFabric.link_down`,
:meth:`~LabFabric.link_up`; any Mininet link: two switches, or a host and
its switch), stopping a whole switch and starting it again
(:meth:`~LabFabric.switch_down`, :meth:`~LabFabric.switch_up`), the
switches' port descriptions (:meth:`~LabFabric.port_desc`,
:meth:`~LabFabric.port_state`), and what the controller learned by LLDP
(``GET /ipvs/fabric``: :meth:`~LabFabric.fabric`) against what the lab built
(:meth:`~LabFabric.fabric_links`, :meth:`~LabFabric.wait_fabric`);
:class:`FabricUnavailable` says the controller has no such endpoint.  The
switches themselves (``switch_names``, ``switch_name``, ``multi_switch``,
``dpid_of()``, ``switch_of()``, ``links``) are the topology's answers:
:class:`lvslab_topology.AddressPlan`.

What it needs from the class it is mixed into: ``name``, ``net`` (the
Mininet network, None when the lab is not running), ``controller`` (the
controller's Popen), ``wait_rest``, ``start_timeout``, ``running``,
``ports`` (host name -> OpenFlow port on its switch), ``link_port_map``
(``(a, b)`` of a link -> ``(port on a, port on b)``), ``_links_down`` (the
``frozenset({a, b})`` of links :meth:`~LabFabric.link_down` took down),
``_switches_down`` (the switches :meth:`~LabFabric.switch_down` stopped) and
``fabric_status`` (what start() learned of the fabric, in words; written
here by ``_wait_fabric_known``), all five set up by the class and reset
when its network starts; ``rest(method, path)`` (the controller's REST API),
``ofctl(command, switch=)``, ``controller_target``, ``_controller_backoff()``,
``ready_flows`` and ``_pipeline_flow_count(switch)``; and :class:`lvslab_topology.AddressPlan`'s
``switch_names``, ``switch_specs``, ``links``, ``clients``, ``servers``,
``dpid_of()`` and ``switch_of()``.
"""

import contextlib
import json
from pathlib import Path

from lvslab_procs import LabError, run, wait_or_raise, wait_until


class FabricUnavailable(LabError):
    """The controller has no ``GET /ipvs/fabric`` (it answers 404)."""


class LabFabric:
    """Links between switches and the controller's view of the fabric (a
    mixin of :class:`lvslab.Lab`; see the module's docstring for what it
    needs)."""

    # ---- the fabric: what the controller learned by LLDP ---------------

    def fabric(self, timeout=5):
        """The controller's view of the fabric: ``GET /ipvs/fabric``.

        A dict ``{"switches": [dpid, ...], "links": [[src_dpid, src_port,
        dst_dpid, dst_port], ...], ...}`` (each physical link in both
        directions).  Raises :class:`FabricUnavailable` when the controller
        answers 404 (it has no such endpoint).
        """
        import urllib.error
        try:
            return self.rest("GET", "/ipvs/fabric", timeout=timeout)
        except urllib.error.HTTPError as err:
            if err.code == 404:
                raise FabricUnavailable(f"lab {self.name}: the controller has no "
                                        "GET /ipvs/fabric (404)") from None
            raise

    def fabric_links(self):
        """The links between switches the lab has up, as the controller should
        report them: sorted ``(src_dpid, src_port, dst_dpid, dst_port)``
        tuples, both directions of every link (:meth:`link_down` takes one
        out until :meth:`link_up`)."""
        out = []
        for (a, b), (pa, pb) in self.link_port_map.items():
            if frozenset((a, b)) in self._links_down or {a, b} & self._switches_down:
                continue
            out += [(self.dpid_of(a), pa, self.dpid_of(b), pb),
                    (self.dpid_of(b), pb, self.dpid_of(a), pa)]
        return sorted(out)

    def wait_fabric(self, timeout=30.0):
        """Wait until ``GET /ipvs/fabric`` names every switch's dpid and exactly
        :meth:`fabric_links`, and says it has ``settled`` (every switch floods:
        before that a broadcast is dropped) (bounded polling); returns the answer.

        Raises :class:`FabricUnavailable` at once on 404, LabError with the
        last answer on timeout.
        """
        want_switches = sorted(self.dpid_of(sw) for sw in self.switch_names
                               if sw not in self._switches_down)
        want_links = self.fabric_links()
        last = {}

        def known():
            if self.controller is not None and self.controller.poll() is not None:
                raise LabError(f"controller exited with {self.controller.returncode}")
            answer = self.fabric(timeout=2)
            last["answer"] = answer
            switches = sorted(int(d) for d in answer.get("switches", []))
            links = sorted(tuple(int(x) for x in link[:4]) for link in answer.get("links", []))
            settled = answer.get("settled", True)      # switches may flood (fabricfwd.py)
            return (answer if switches == want_switches and links == want_links and settled
                    else None)

        try:
            return wait_until(known, timeout, 0.1, "GET /ipvs/fabric to know the fabric")
        except TimeoutError as err:
            raise LabError(f"{err}\n  expected switches {want_switches}\n  expected links "
                           f"{[list(link) for link in want_links]}\n  last answer "
                           f"{json.dumps(last.get('answer'))}") from None

    def _wait_fabric_known(self):
        if not self.wait_rest:
            self.fabric_status = ("not asked: the controller has no REST API; waited for "
                                  "every switch to connect")
            return
        try:
            self.wait_fabric(self.start_timeout)
        except FabricUnavailable:
            self.fabric_status = ("GET /ipvs/fabric answers 404: waited only for every "
                                  "switch to connect")
            return
        self.fabric_status = ("the controller knows every switch and link "
                              "(GET /ipvs/fabric)")

    # ---- links between switches ----------------------------------------

    def link_ports(self, a, b):
        """(port on ``a``, port on ``b``) of the link between switches ``a`` and ``b``."""
        if (a, b) in self.link_port_map:
            return self.link_port_map[(a, b)]
        if (b, a) in self.link_port_map:
            return tuple(reversed(self.link_port_map[(b, a)]))
        raise LabError(f"lab {self.name}: no link between {a} and {b} "
                       f"(links: {', '.join(f'{x}-{y}' for x, y in self.links) or 'none'})")

    def link_down(self, a, b, timeout=10.0):
        """Take the link between ``a`` and ``b`` down (Mininet's
        ``configLinkStatus``: both veth ends ``ifconfig down``); returns once
        OVS reports each switch end ``LINK_DOWN``.  Any Mininet link: two
        switches, or a host and its switch."""
        self._set_link(a, b, "down", timeout)

    def link_up(self, a, b, timeout=10.0):
        """Bring the link between ``a`` and ``b`` up again; returns once OVS
        reports each switch end no longer ``LINK_DOWN``.  The controller then
        rediscovers it by LLDP: :meth:`wait_fabric` waits for that."""
        self._set_link(a, b, "up", timeout)

    def _set_link(self, a, b, status, timeout):
        if self.net is None:
            raise LabError(f"lab {self.name} is not running")
        ends = self._switch_ends(a, b)
        self.net.configLinkStatus(a, b, status)
        key = frozenset((a, b))
        if status == "down":
            self._links_down.add(key)
        else:
            self._links_down.discard(key)

        def settled():
            return all(("LINK_DOWN" in self.port_state(sw, port)) == (status == "down")
                       for sw, port in ends)
        wait_or_raise(settled, timeout, f"OVS to report the link {a}-{b} {status} "
                                        f"({', '.join(f'{sw} port {p}' for sw, p in ends)})")

    def _switch_ends(self, a, b):
        """[(switch, port)] of the link between ``a`` and ``b`` (switch or host)."""
        switches = set(self.switch_names)
        if a in switches and b in switches:
            pa, pb = self.link_ports(a, b)
            return [(a, pa), (b, pb)]
        for host, sw in ((a, b), (b, a)):
            if host in self.clients + self.servers and self.switch_of(host) == sw:
                return [(sw, self.ports[host])]
        raise LabError(f"lab {self.name}: no link between {a} and {b}")

    # ---- a whole switch ------------------------------------------------

    def switch_down(self, name):
        """Stop switch ``name`` as if it died: its bridge is deleted (its flows
        with it, and its connection to the controller); the veths of its links
        stay, so its neighbours' ports stay up and what they send into them is
        lost until :meth:`switch_up`.  Not for a switch with a VXLAN port."""
        if self.net is None:
            raise LabError(f"lab {self.name} is not running")
        if self.switch_spec(name).get("tunnel_ip"):
            raise LabError(f"lab {self.name}: switch {name} holds a tunnel endpoint; "
                           "switch_down is for switches without one")
        run(["ovs-vsctl", "--timeout=10", "--if-exists", "del-br", name])
        if Path(f"/sys/class/net/{name}").exists():      # a netdev bridge's tap
            run(["ip", "link", "del", name], check=False)
        self._switches_down.add(name)

    def switch_up(self, name, timeout=30.0):
        """Start switch ``name`` again after :meth:`switch_down`: an empty
        bridge with the same dpid, options and ports (what Mininet gave it),
        connected to the lab's controller; returns once it holds the
        controller's initial flows and (when the controller has ``GET
        /ipvs/fabric``) the controller knows every switch and link again."""
        node = self.net.get(name)
        command = ["ovs-vsctl", "--timeout=10", "add-br", name,
                   "--", "set", "bridge", name, *node.bridgeOpts().split()]
        for intf in node.intfList():
            port = node.ports[intf]
            if port:
                command += ["--", "add-port", name, intf.name,
                            "--", "set", "interface", intf.name, f"ofport_request={port}"]
        run(command)
        run(["sysctl", "-qw", f"net.ipv6.conf.{name}.disable_ipv6=1"], check=False)
        run(["ovs-vsctl", "--timeout=10", "set-controller", name, self.controller_target])
        self._controller_backoff()
        self._switches_down.discard(name)
        wait_or_raise(lambda: self._pipeline_flow_count(name) >= self.ready_flows, timeout,
                      f"switch {name} to connect again and hold the controller's flows")
        if self.wait_rest:
            with contextlib.suppress(FabricUnavailable):
                self.wait_fabric(timeout)

    def port_desc(self, switch=None):
        """``ovs-ofctl dump-ports-desc`` of ``switch`` parsed: ``{port: {"name",
        "config", "state"}}``, the port a number or ``"LOCAL"``."""
        ports, current = {}, None
        for line in self.ofctl("dump-ports-desc", switch=switch).stdout.splitlines():
            head = line.strip().split(":", 1)[0]
            if "(" in head and head.endswith(")") and line.startswith(" ") \
                    and not line.startswith("  "):
                number, name = head[:-1].split("(", 1)
                current = int(number) if number.isdigit() else number
                ports[current] = {"name": name, "config": "", "state": ""}
            elif current is not None and line.strip().startswith(("config:", "state:")):
                key, value = line.strip().split(":", 1)
                ports[current][key] = value.strip()
        return ports

    def port_state(self, switch, port):
        """The ``state`` of OpenFlow port ``port`` of ``switch`` as ``ovs-ofctl
        dump-ports-desc`` shows it (``LIVE``, ``LINK_DOWN``, ...)."""
        desc = self.port_desc(switch)
        if port not in desc:
            raise LabError(f"lab {self.name}: switch {switch} has no port {port}")
        return desc[port]["state"]

    # ---- failure reports ------------------------------------------------

    def _fabric_text(self):
        lines = [f"{sw['name']}: dpid {sw['dpid']} ({sw['dpid']:016x}), {sw['role']}"
                 for sw in self.switch_specs]
        for a, b in self.links:
            pa, pb = self.link_ports(a, b) if self.link_port_map else ("?", "?")
            down = (" (down: link_down)" if frozenset((a, b)) in self._links_down
                    else " (down: switch_down)" if {a, b} & self._switches_down else "")
            lines.append(f"link {a}:{pa} - {b}:{pb}{down}")
        lines.append(f"start: {self.fabric_status}")
        if self.running and self.wait_rest:
            try:
                lines.append(f"GET /ipvs/fabric: {json.dumps(self.fabric(timeout=3))}")
            except Exception as err:  # noqa: BLE001
                lines.append(f"GET /ipvs/fabric: {err!r}")
            lines.append(f"expected links: {[list(link) for link in self.fabric_links()]}")
        return "\n".join(lines)
