"""lvs_app's Ryu configuration options (``ryu-manager lvs_app --lvs-rules FILE``)."""

OPTIONS = (
    ("lvs-rules", "str", None,
     "rules file in 'ipvsadm -S' format: loaded at start-up, rewritten on every change"),
    ("lvs-expire-quiescent-template", "bool", False,
     "IPVS expire_quiescent_template: a template to a weight-0 server is not used"),
    ("lvs-expire-nodest-conn", "bool", False,
     "IPVS expire_nodest_conn: connections of a deleted real server are removed at once"),
)


def register(conf):
    """Register the options as command-line options of ``conf`` (once)."""
    from ryu import cfg
    known = {opt.dest for opt in conf._opts.values() for opt in [opt["opt"]]}
    opts = []
    for name, kind, default, help_text in OPTIONS:
        if name.replace("-", "_") in known:
            continue
        cls = cfg.StrOpt if kind == "str" else cfg.BoolOpt
        opts.append(cls(name, default=default, help=help_text))
    if opts:
        conf.register_cli_opts(opts)
