#!/usr/bin/env bash
# ragline's fault suite (docs/reliability.md): builds ragline, fakellm and
# the mock-cluster driver, makes the Python environment, then runs
# tests/faults/run.py, which prints one table row per case and exits
# non-zero if any expectation fails.
#
#   tests/faults/run.sh            every case (about 14 minutes)
#   tests/faults/run.sh --quick    the CI set, run by tests/run.sh (about 5 min)
#   tests/faults/run.sh -k zombie  only the cases whose name has "zombie"
#   tests/faults/run.sh --list     the cases, without running them
#
# Environment: RAGLINE_BUILD (build directory, default build-faults),
# RAGLINE_CMAKE_ARGS (more cmake arguments), RAGLINE_CACHE (broker jars,
# see deploy/kafka.sh).  Logs land in $RAGLINE_BUILD/faults/<case>.<mode>/.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
BUILD=${RAGLINE_BUILD:-build-faults}
export RAGLINE_BUILD=$BUILD
VENV=$ROOT/.venv

fail() {
    echo "tests/faults/run.sh: $*" >&2
    exit 1
}

for tool in cmake ninja cc python3 java mvn; do
    command -v "$tool" >/dev/null 2>&1 ||
        fail "$tool is missing; install the dependencies with" \
            "deploy/install-deps.sh"
done

echo "== build ($BUILD)"
# shellcheck disable=SC2086 # RAGLINE_CMAKE_ARGS is a list of arguments
cmake -S . -B "$BUILD" -G Ninja ${RAGLINE_CMAKE_ARGS:-} >/dev/null
ninja -C "$BUILD" ragline fakellm
mkdir -p "$BUILD/faults"
cc -std=c11 -D_POSIX_C_SOURCE=200809L -O2 -Wall -Wextra -Werror \
    -o "$BUILD/faults/mockdriver" tests/faults/mockdriver.c -lrdkafka

echo "== python environment ($VENV)"
tests/venv.sh "$VENV"

echo "== Kafka broker jars"
deploy/kafka.sh fetch >/dev/null

# Whatever happens to run.py, no broker it started outlives this script
# (unless it was asked to keep them).
keep=0
for arg in "$@"; do
    [ "$arg" = "--keep-brokers" ] && keep=1
done
stop_brokers() {
    local dir
    [ $keep -eq 0 ] || return 0
    for dir in "$BUILD/faults/kafka" "$BUILD/faults/kafka-faults"; do
        if [ -e "$dir/pid" ]; then
            kill -CONT "$(cat "$dir/pid")" 2>/dev/null || true
            deploy/kafka.sh stop "$dir" || true
        fi
    done
}
trap stop_brokers EXIT

"$VENV/bin/python" -u tests/faults/run.py \
    --mockdriver "$BUILD/faults/mockdriver" "$@"
