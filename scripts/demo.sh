#!/usr/bin/env bash
# Install what is needed (scripts/install.sh), then start the demo lab: a
# persistent virtual service in Mininet, clients spread over real servers,
# each client staying on its server while its template lives.
# Run as root.  Arguments go to mininet/lab.py (default: persist --demo).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh
echo
if [ "$#" -eq 0 ]; then
    set -- persist --demo
fi
exec .venv/bin/python mininet/lab.py "$@"
