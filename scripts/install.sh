#!/usr/bin/env bash
# Install everything lvs_app needs on Debian 12 (run as root):
#   system packages (Open vSwitch, Mininet, lab tools), OVS started,
#   a virtualenv at .venv with the pinned Python packages, the project itself,
#   and the Ryu compatibility hook (lvs_app/compat.py).
# Safe to run again: every step checks or overwrites.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }

if [ "$(id -u)" -ne 0 ]; then
    echo "scripts/install.sh: run as root (sudo): it installs Debian packages and starts Open vSwitch" >&2
    exit 1
fi

log "Debian packages"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# chromium: the status page's browser tests run it headless (tests/e2e/test_status_page.py)
apt-get install -y -q --no-install-recommends \
    openvswitch-switch mininet python3 python3-venv python3-dev gcc \
    iproute2 iputils-ping ethtool tcpdump curl openssl ca-certificates \
    procps psmisc netcat-openbsd chromium
# wrk, apache2-utils (ab), nginx-light: the end-to-end speed benchmark's load
# generators and real servers (benchmarks/e2e_speed.py, its smoke test
# tests/e2e/test_benchmark_smoke.py).  The benchmark runs its own nginx in
# each real-server host (mininet/lvslab_load.py), so the package must leave
# none running in the root namespace: a policy-rc.d keeps apt from starting
# it (only around this install; an existing policy-rc.d is left alone), and
# one that an earlier install started is stopped (and disabled under systemd).
POLICY_RC=/usr/sbin/policy-rc.d
if [ ! -e "$POLICY_RC" ]; then
    printf '#!/bin/sh\n# scripts/install.sh: no service starts while it installs\nexit 101\n' \
        >"$POLICY_RC"
    chmod 755 "$POLICY_RC"
    trap 'rm -f "$POLICY_RC"' EXIT
    apt-get install -y -q --no-install-recommends wrk apache2-utils nginx-light
    rm -f "$POLICY_RC"
    trap - EXIT
else
    apt-get install -y -q --no-install-recommends wrk apache2-utils nginx-light
fi
if [ -d /run/systemd/system ]; then
    systemctl disable --now nginx.service >/dev/null 2>&1 || true
elif [ -s /run/nginx.pid ] && [ -x /etc/init.d/nginx ]; then
    /etc/init.d/nginx stop || true
fi

log "Open vSwitch (userspace datapath; no kernel module is needed)"
if ! ovs-vsctl --timeout=5 show >/dev/null 2>&1; then
    /usr/share/openvswitch/scripts/ovs-ctl start --system-id=random
fi
ovs-vsctl --timeout=5 show >/dev/null

log "Python virtualenv .venv"
# Debian's python3 carries the mininet module; the venv sees it through
# --system-site-packages, while everything we pin is installed inside it.
if [ ! -x .venv/bin/python ]; then
    /usr/bin/python3 -m venv --system-site-packages .venv
fi
PIP=(.venv/bin/python -m pip --disable-pip-version-check -q)
# Ryu 4.34's sdist does not build with setuptools >= 68 (get_script_args),
# so it is built without isolation against an older setuptools.
"${PIP[@]}" install 'setuptools<68' wheel
"${PIP[@]}" install --no-build-isolation -r requirements.txt
"${PIP[@]}" install --no-build-isolation --no-deps -e .
.venv/bin/python -m lvs_app.compat install

log "check: ryu-manager and lvsadm"
.venv/bin/ryu-manager --version
.venv/bin/lvsadm -v
