"""lvs_app: the Linux Virtual Server director as a Ryu application.

``ryu-manager lvs_app`` loads this package and looks for a RyuApp class whose
``__module__`` is ``lvs_app``.  The class lives in :mod:`lvs_app.ryuapp` and is
handed out lazily here, so that the model, the schedulers and the ``lvsadm``
CLI can be imported without Ryu.
"""

__version__ = "0.1.0"


def __getattr__(name):
    if name == "LVSDirector":
        from lvs_app.ryuapp import LVSDirector
        return LVSDirector
    raise AttributeError(f"module 'lvs_app' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + ["LVSDirector"])
