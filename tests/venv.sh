#!/usr/bin/env bash
# Makes or refreshes the tests' Python environment (.venv in the
# repository) from tests/requirements.txt; reinstalls only when that
# file changes.  Used by tests/run.sh and tests/faults/run.sh.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${1:-$ROOT/.venv}
REQS=$ROOT/tests/requirements.txt

stamp=$VENV/.requirements.sha256
want=$(sha256sum "$REQS" | cut -d' ' -f1)
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
        -r "$REQS"
    echo "$want" >"$stamp"
fi
