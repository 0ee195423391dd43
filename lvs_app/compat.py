"""Ryu 4.34 on a current Python: the known fixes, in one place.

Ryu is no longer maintained.  These fixes must happen before Ryu imports any
application, so they cannot be made from the application itself:

1. ``ryu.app.wsgi`` imports ``eventlet.wsgi.ALREADY_HANDLED`` at module load;
   eventlet >= 0.30.3 removed it (and 0.30.2 does not run on Python 3.11).
   Ryu only returns it from websocket handlers, which lvs_app does not use,
   so a sentinel is enough to let the module load.
2. ``ryu-manager`` parses its command line before it imports the apps named
   on it, so an application's own options (``--lvs-rules``) must already be
   registered by then.
3. Ryu's REST server listens on 0.0.0.0 unless ``--wsapi-host`` is given;
   the default must be loopback before the command line is parsed (and
   before ``--help`` prints it), so it is changed when ``ryu.app.wsgi``,
   which registers the option, is imported.
4. ``ryu.utils.import_module`` loads any existing path as a source file, so
   ``ryu-manager lvs_app`` run in the repository (where ``lvs_app/`` is a
   directory) fails with IsADirectoryError; a directory is imported as the
   package it is.
5. OpenFlow over TLS: ``ryu.lib.hub.StreamServer`` pops its TLS settings out
   of a shared dict while it wraps the first connection, so every later
   connection (a switch that reconnects, a second switch) is wrapped with no
   certificate and fails.  The context is built once and used for each.

The install step (``python -m lvs_app.compat install``) writes a ``.pth`` file
into the virtualenv's site-packages.  At interpreter start it adds a tiny
import hook that applies each fix right after its module (``eventlet.wsgi``,
``ryu.flags``, ``ryu.app.wsgi``, ``ryu.utils``, ``ryu.lib.hub``) is imported -- nothing is imported eagerly, so ordinary Python
programs in the venv pay nothing.  The other two install problems (setuptools
>= 68 and dnspython < 2) are handled by the install script's pins.
"""

import importlib
import importlib.abc
import importlib.machinery
import os
import sys
import sysconfig
import warnings

PTH_NAME = "lvs_app_ryu_compat.pth"
PTH_LINE = "import lvs_app.compat as _lvs_compat; _lvs_compat.install_hook()\n"


def _fix_eventlet_wsgi(module):
    if not hasattr(module, "ALREADY_HANDLED"):
        module.ALREADY_HANDLED = object()


def _register_ryu_options(module):
    from lvs_app.options import register
    register(module.CONF)


def _rest_on_loopback(module):
    from lvs_app.options import rest_on_loopback
    rest_on_loopback(module.CONF)


def _fix_import_module(module):
    original = module.import_module
    if getattr(original, "_lvs_compat", False):
        return

    def import_module(modname):
        if os.path.isdir(modname):
            return importlib.import_module(os.path.normpath(modname).replace(os.sep, "."))
        return original(modname)

    import_module._lvs_compat = True
    module.import_module = import_module


def _fix_tls_server(module):
    server_class = module.StreamServer
    original = server_class.__init__
    if getattr(original, "_lvs_compat", False):
        return

    def __init__(self, listen_info, handle=None, backlog=None, spawn="default", **ssl_args):
        context = ssl_args.pop("ssl_ctx", None)
        if context is None:
            original(self, listen_info, handle, backlog, spawn, **ssl_args)
            return
        original(self, listen_info, handle, backlog, spawn)      # listens; TLS below
        context.load_cert_chain(ssl_args.pop("certfile"), ssl_args.pop("keyfile"))
        if "cert_reqs" in ssl_args:
            context.verify_mode = ssl_args.pop("cert_reqs")
        if "ca_certs" in ssl_args:
            context.load_verify_locations(ssl_args.pop("ca_certs"))

        def wrap_and_handle(sock, addr):
            try:
                wrapped = context.wrap_socket(sock, server_side=True)
            except OSError:          # a peer without a good certificate: drop it
                sock.close()
                return
            handle(wrapped, addr)

        self.handle = wrap_and_handle

    __init__._lvs_compat = True
    server_class.__init__ = __init__


FIXES = {"eventlet.wsgi": _fix_eventlet_wsgi, "ryu.flags": _register_ryu_options,
         "ryu.app.wsgi": _rest_on_loopback, "ryu.utils": _fix_import_module,
         "ryu.lib.hub": _fix_tls_server}


class _Loader(importlib.abc.Loader):
    """Wraps the real loader and runs the fix once the module has executed."""

    def __init__(self, loader, fix):
        self._loader = loader
        self._fix = fix

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        self._fix(module)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        fix = FIXES.get(fullname)
        if fix is None:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        spec.loader = _Loader(spec.loader, fix)
        return spec


def install_hook():
    """Apply the fixes: now for modules already imported, later for the rest."""
    # eventlet prints a deprecation banner on import; it says nothing the
    # operator of ryu-manager can act on.
    warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
    for name, fix in FIXES.items():
        if name in sys.modules:
            fix(sys.modules[name])
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())


def pth_path():
    return os.path.join(sysconfig.get_paths()["purelib"], PTH_NAME)


def write_pth():
    """Install the start-up hook into this interpreter's site-packages."""
    path = pth_path()
    with open(path, "w", encoding="ascii") as handle:
        handle.write(PTH_LINE)
    return path


if __name__ == "__main__":
    if sys.argv[1:] != ["install"]:
        sys.exit("usage: python -m lvs_app.compat install")
    print(f"lvs_app: Ryu compatibility hook written to {write_pth()}")
