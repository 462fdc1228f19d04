#!/usr/bin/env bash
# Builds ragline and fakellm (optimised, into build-bench/), makes the
# benchmark's Python environment (bench/.venv, from the pinned
# bench/requirements.txt) and runs bench/run.py with the arguments given:
#
#   bench/run.sh                 every scenario, 3 runs each, medians
#   bench/run.sh --quick         a smoke run of about a minute
#   bench/run.sh --runs 5 --scenarios instant,1s-4096
#
# Environment: RAGLINE_BENCH_BUILD (build directory, default build-bench),
# RAGLINE_CACHE (where deploy/kafka.sh keeps the broker jars).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${RAGLINE_BENCH_BUILD:-$ROOT/build-bench}
VENV=$ROOT/bench/.venv

for tool in cmake ninja python3 java; do
    command -v "$tool" >/dev/null 2>&1 || {
        echo "bench/run.sh: $tool is missing (deploy/install-deps.sh)" >&2
        exit 1
    }
done

# RelWithDebInfo is -O2 -g: what a release build runs, with symbols for
# a profiler.  The tests are not needed here.
cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DRAGLINE_TESTS=OFF >/dev/null
ninja -C "$BUILD" ragline-bin fakellm >/dev/null

# Reinstalled only when bench/requirements.txt changes.
stamp=$VENV/.requirements.sha256
want=$(sha256sum "$ROOT/bench/requirements.txt" | cut -d' ' -f1)
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
        -r "$ROOT/bench/requirements.txt"
    echo "$want" >"$stamp"
fi

exec "$VENV/bin/python" "$ROOT/bench/run.py" --build "$BUILD" "$@"
