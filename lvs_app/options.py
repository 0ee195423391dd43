"""lvs_app's Ryu configuration options (``ryu-manager lvs_app --lvs-rules FILE``).

Also Ryu's own ``--wsapi-host``: Ryu listens for REST on every address by
default; lvs_app makes the default loopback (an explicit option still wins).
"""

REST_HOST = "127.0.0.1"      # the default of Ryu's --wsapi-host under lvs_app

OPTIONS = (
    ("lvs-rules", "str", None,
     "rules file in 'ipvsadm -S' format: loaded at start-up, rewritten on every change"),
    ("lvs-keepalived", "str", None,
     "keepalived.conf whose virtual_server blocks are loaded at start (its services win "
     "over --lvs-rules for the keys it defines) and whose checkers run in-band"),
    ("lvs-health-address", "str", None,
     "IPv4 address the health probes leave from (with the director's MAC, through the "
     "switch); the real servers must reach it on their link; needed by every checker "
     "but MISC_CHECK"),
    ("lvs-expire-quiescent-template", "bool", False,
     "IPVS expire_quiescent_template: a template to a weight-0 server is not used"),
    ("lvs-expire-nodest-conn", "bool", False,
     "IPVS expire_nodest_conn: connections of a deleted real server are removed at once"),
    ("lvs-rest-token-file", "str", None,
     "file holding the REST API's bearer token; required when --wsapi-host is not loopback"),
    ("lvs-packetin-pps", "int", 2000,
     "OpenFlow meters: new connections a switch may send the controller per second "
     "(ARP and learning get half); 0 turns them off"),
    ("lvs-max-connections", "int", 200000,
     "cap on connection-table entries (connections and templates); near it, half-open "
     "entries are dropped first (IPVS drop_entry/secure_tcp); 0: no cap"),
    ("lvs-stats-interval", "float", 2.0,
     "seconds between two readings of the switches' flow counters (packet and byte "
     "counters, --stats, --rate, /metrics)"),
    ("lvs-ha-role", "str", None,
     "high availability with a second controller: 'master' or 'backup' (needs --lvs-ha-peer)"),
    ("lvs-ha-peer", "str", None,
     "the other controller's REST URL, e.g. http://127.0.0.1:8081 (with --lvs-ha-role)"),
)


def register(conf):
    """Register the options as command-line options of ``conf`` (once)."""
    from ryu import cfg
    known = {opt.dest for opt in conf._opts.values() for opt in [opt["opt"]]}
    opts = []
    for name, kind, default, help_text in OPTIONS:
        if name.replace("-", "_") in known:
            continue
        cls = {"str": cfg.StrOpt, "bool": cfg.BoolOpt, "int": cfg.IntOpt,
               "float": cfg.FloatOpt}[kind]
        opts.append(cls(name, default=default, help=help_text))
    if opts:
        conf.register_cli_opts(opts)
    rest_on_loopback(conf)


def rest_on_loopback(conf):
    """Make loopback the default of Ryu's ``--wsapi-host``, once Ryu has registered it."""
    if "wsapi_host" not in conf:
        return
    conf.set_default("wsapi_host", REST_HOST)
    opt = conf._opts["wsapi_host"]["opt"]
    opt.help = f"webapp listen host (default {REST_HOST} under lvs_app)"
