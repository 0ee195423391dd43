"""Runtime state of services and real servers, apart from their configuration.

The model (:mod:`lvs_app.model`) is what ``ipvsadm`` configures and saves.
What the director learns while it runs lives here: per real server the
kernel's ``ip_vs_dest`` counters (ActiveConn, InActConn, PersistConn, the
overload flag, traffic counters), per service its counters and its
scheduler.  A :class:`Dest` is what the schedulers see: it reads the
server's configuration (address, weight, thresholds) through to the
:class:`~lvs_app.model.RealServer` and carries its own counters.

The overload rule (``-x``/``-y``) lives here and only here.

Stdlib only, plus the model and the schedulers.
"""

from lvs_app.estimator import Estimator
from lvs_app.model import Stats
from lvs_app.schedulers import make_scheduler


class Dest:
    """One real server of one service, at run time (the kernel's ip_vs_dest)."""

    __slots__ = ("server", "activeconns", "inactconns", "persistconns", "overloaded",
                 "stats", "rates", "rid", "u_threshold_seen")

    def __init__(self, server):
        self.server = server           # the RealServer configuration
        self.activeconns = 0
        self.inactconns = 0
        self.persistconns = 0
        self.overloaded = False
        self.stats = Stats()
        self.rates = Estimator()
        self.rid = None                # its number in cookies (StableIds), once known
        self.u_threshold_seen = server.u_threshold

    # configuration, read through (what the schedulers and forwarding need)
    address = property(lambda self: self.server.address)
    port = property(lambda self: self.server.port)
    weight = property(lambda self: self.server.weight)
    last_weight = property(lambda self: self.server.last_weight)
    method = property(lambda self: self.server.method)
    u_threshold = property(lambda self: self.server.u_threshold)
    l_threshold = property(lambda self: self.server.l_threshold)

    def __repr__(self):
        return f"Dest({self.server.address}:{self.server.port})"

    # -- counting (ip_vs_bind_dest / ip_vs_unbind_dest) ------------------------------
    def bind(self, active):
        """A connection now counts on this server, as active or inactive."""
        if active:
            self.activeconns += 1
        else:
            self.inactconns += 1
        u_threshold = self.server.u_threshold
        if u_threshold and self.activeconns + self.inactconns >= u_threshold:
            self.overloaded = True

    def unbind(self, active):
        """A connection no longer counts here: maybe the server is below -y again."""
        if active:
            self.activeconns -= 1
        else:
            self.inactconns -= 1
        if self.overloaded:
            total = self.activeconns + self.inactconns
            if self.server.l_threshold:
                if total < self.server.l_threshold:
                    self.overloaded = False
            elif total * 4 < self.server.u_threshold * 3:
                self.overloaded = False

    def edited(self):
        """The server was edited or added again (``__ip_vs_update_dest()``): the
        overload flag is cleared only when the upper threshold is now 0 or
        larger than before."""
        u_threshold = self.server.u_threshold
        if u_threshold == 0 or u_threshold > self.u_threshold_seen:
            self.overloaded = False
        self.u_threshold_seen = u_threshold

    def to_dict(self):
        return {"activeconns": self.activeconns, "inactconns": self.inactconns,
                "persistconns": self.persistconns, "overloaded": self.overloaded,
                "stats": self.stats.to_dict(), "rates": self.rates.to_dict()}


class ServiceState:
    """One virtual service at run time: its scheduler, counters and Dests."""

    __slots__ = ("service", "scheduler", "sched_config", "dests", "trash", "stats", "rates",
                 "_sched_list")

    def __init__(self, service):
        self.service = service
        self.scheduler = None
        self.sched_config = None
        self.dests = {}                  # (address, port) -> Dest
        self.trash = {}                  # deleted servers' Dests, for a re-add to revive
        self.stats = Stats()
        self.rates = Estimator()
        self._sched_list = None

    def dest(self, server):
        """The Dest of ``server`` (a RealServer of this service), made on first use."""
        addr_port = (server.address, server.port)
        dest = self.dests.get(addr_port)
        if dest is None or dest.server is not server:
            dest = self.trash.pop(addr_port, None)
            if dest is not None:
                # the kernel's dest trash: the same destination comes back,
                # with its counters, connections and templates
                dest.server = server
                dest.edited()
            else:
                dest = Dest(server)
            self.dests[addr_port] = dest
            self._sched_list = None
        return dest

    def sched_list(self):
        """Dests in the kernel's list order (newest first), for the scheduler."""
        if self._sched_list is None:
            self._sched_list = [self.dest(s) for s in self.service.sched_list]
        return self._sched_list

    def get_scheduler(self):
        wanted = (self.service.scheduler, self.service.sched_flags)
        if self.scheduler is None or self.sched_config != wanted:
            if self.scheduler is not None and self.sched_config[0] == wanted[0]:
                # only the flags changed: the kernel keeps the scheduler's state
                fresh = make_scheduler(*wanted)
                self.scheduler.flags, self.scheduler.flag_bits = fresh.flags, fresh.flag_bits
            else:
                self.scheduler = make_scheduler(*wanted)
            self.sched_config = wanted
        return self.scheduler

    def zero(self):
        self.stats, self.rates = Stats(), Estimator()
        for dest in self.dests.values():
            dest.stats, dest.rates = Stats(), Estimator()


def _merged(stats, counts):
    """The director's connection count plus the switches' traffic counters
    (``counts``: ([inpkts, outpkts, inbytes, outbytes], connections it did
    not count: restored ones and those a --pe switch template carried))."""
    (inpkts, outpkts, inbytes, outbytes), conns = counts
    return Stats(stats.conns + conns, inpkts, outpkts, inbytes, outbytes)


class RuntimeState:
    """Every service's runtime state, kept in step with the service table.

    ``traffic`` (a :class:`lvs_app.stats.TrafficCounters`) holds the packet
    and byte counters the switches count; what is shown merges them in.
    """

    def __init__(self, traffic=None):
        self.services = {}               # ServiceKey -> ServiceState
        self.traffic = traffic

    def service(self, service):
        """The ServiceState of ``service`` (a VirtualService), made on first use."""
        state = self.services.get(service.key)
        if state is None or state.service is not service:
            old = state
            state = self.services[service.key] = ServiceState(service)
            if old is not None:
                # the table was replaced (ipvsadm -R): the counters carry over,
                # the scheduler starts afresh
                state.stats, state.rates = old.stats, old.rates
                for addr_port, old_dest in old.dests.items():
                    server = service.find_server(*addr_port)
                    if server is not None:
                        dest = state.dest(server)
                        dest.stats, dest.rates = old_dest.stats, old_dest.rates
        return state

    def dest(self, service, server):
        return self.service(service).dest(server)

    def servers_changed(self, service, server=None):
        """A server was added, edited or deleted: the scheduling list is
        rebuilt, a deleted server's Dest goes to the trash, the edited one's
        overload flag is reconsidered, and the scheduler hears of it (the
        kernel's add_dest/del_dest/upd_dest: wrr starts from the head again)."""
        state = self.service(service)
        state._sched_list = None
        live = {(s.address, s.port) for s in service.servers}
        for addr_port in [k for k in state.dests if k not in live]:
            state.trash[addr_port] = state.dests.pop(addr_port)
        if server is not None and (server.address, server.port) in live:
            state.dest(server).edited()
        if state.scheduler is not None:
            state.scheduler.update(state.sched_list())

    def forget(self, key):
        self.services.pop(key, None)
        if self.traffic is not None:
            self.traffic.forget_service(key.to_id())

    def clear(self):
        self.services.clear()

    def zero(self, key=None):
        for skey, state in self.services.items():
            if key is None or skey == key:
                state.zero()
        if self.traffic is not None:
            self.traffic.zero(key.to_id() if key is not None else None)

    def connection_counts(self):
        """{(service id, server text or None): connections counted since start}."""
        counts = {}
        for state in self.services.values():
            sid = state.service.key.to_id()
            counts[(sid, None)] = state.stats.conns
            for dest in list(state.dests.values()) + list(state.trash.values()):
                counts[(sid, f"{dest.address}-{dest.port}")] = dest.stats.conns
        return counts

    # -- counters as shown -------------------------------------------------------------
    def service_stats(self, state):
        if self.traffic is None:
            return state.stats
        return _merged(state.stats, self.traffic.service_counts(state.service.key.to_id()))

    def dest_stats(self, state, dest):
        if self.traffic is None:
            return dest.stats
        return _merged(dest.stats, self.traffic.server_counts(
            state.service.key.to_id(), f"{dest.address}-{dest.port}"))

    def estimate(self, now=None):
        """Timed job (every 2 s): the rate estimator's sample of every counter."""
        for state in self.services.values():
            state.rates.sample(self.service_stats(state))
            for dest in state.dests.values():
                dest.rates.sample(self.dest_stats(state, dest))
        return []

    # -- what REST shows ----------------------------------------------------------
    def service_view(self, service):
        """The runtime half of a service's listing (counters and rates)."""
        state = self.services.get(service.key)
        if state is None or state.service is not service:
            state = ServiceState(service)
        return {"stats": self.service_stats(state).to_dict(), "rates": state.rates.to_dict()}

    def server_view(self, service, server):
        """The runtime half of a real server's listing."""
        state = self.services.get(service.key)
        if state is None or state.service is not service:
            state = ServiceState(service)
        dest = state.dests.get((server.address, server.port))
        if dest is None or dest.server is not server:
            dest = Dest(server)
        return dict(dest.to_dict(), stats=self.dest_stats(state, dest).to_dict())
