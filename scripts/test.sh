#!/usr/bin/env bash
# Install what is needed (scripts/install.sh) and run the whole test suite:
# unit and fake-switch tests, the ryu-manager process tests, and the
# end-to-end tests on Mininet with Open vSwitch.  Run as root.
# Extra arguments go to pytest (e.g. scripts/test.sh -k nat).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh
echo
echo "== pytest"
set +e
.venv/bin/python -m pytest -ra "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
    echo "scripts/test.sh: pytest collected no tests; that is a failure" >&2
    exit 1
fi
exit "$rc"
