#!/usr/bin/env bash
# Builds ragline and runs every test: the cmocka unit tests (ctest), the
# integration tests (pytest, tests/integration/) against a real Kafka
# broker, fakellm and the ragline binary, then the short fault suite
# (tests/faults/run.sh --quick, docs/reliability.md).  Exits non-zero if
# anything fails; a missing Java, Maven or broker is a failure, never a
# skip.
#
#   tests/run.sh                 everything
#   tests/run.sh -k sigkill      pytest arguments select integration tests
#                                (the fault suite still runs)
#
# Environment: RAGLINE_BUILD (build directory, default build),
# RAGLINE_CMAKE_ARGS (extra cmake arguments, e.g. -DRAGLINE_SANITIZE=ON),
# RAGLINE_CACHE (where the broker jars are kept, see deploy/kafka.sh),
# RAGLINE_FAULTS=0 (leave the fault suite out, for a quick local run).
# Logs of the integration tests land in $RAGLINE_BUILD/it/, those of the
# fault suite in $RAGLINE_BUILD/faults/ (docs/testing.md).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BUILD=${RAGLINE_BUILD:-build}
export RAGLINE_BUILD=$BUILD
IT_DIR=$BUILD/it
VENV=$ROOT/.venv
failed=()

step() {
    echo
    echo "== $*"
}

fail() {
    echo "tests/run.sh: $*" >&2
    exit 1
}

for tool in cmake ninja ctest python3 java mvn; do
    command -v "$tool" >/dev/null 2>&1 ||
        fail "$tool is missing; install the dependencies with" \
            "deploy/install-deps.sh"
done

step "build ($BUILD)"
# shellcheck disable=SC2086 # RAGLINE_CMAKE_ARGS is a list of arguments
cmake -S . -B "$BUILD" -G Ninja -DRAGLINE_WERROR=ON \
    ${RAGLINE_CMAKE_ARGS:-}
ninja -C "$BUILD"

step "unit tests"
ctest --test-dir "$BUILD" --output-on-failure || failed+=("unit tests")

step "python environment ($VENV)"
tests/venv.sh "$VENV"

step "Kafka broker jars"
# Fetched here rather than in the first test, so no test's time limit
# pays for the download.
deploy/kafka.sh fetch

step "integration tests"
# Whatever happens to pytest, no broker it started outlives this script.
stop_brokers() {
    local pidfile
    for pidfile in "$IT_DIR"/*/pid; do
        [ -e "$pidfile" ] || continue
        deploy/kafka.sh stop "$(dirname "$pidfile")" || true
    done
}
trap stop_brokers EXIT
rc=0
"$VENV/bin/python" -m pytest tests/integration -v \
    --basetemp "$IT_DIR" "$@" || rc=$?
case $rc in
0) ;;
5) failed+=("integration tests (none were collected)") ;;
*) failed+=("integration tests") ;;
esac
# Their broker is not needed any more; on a small CI machine it would
# only slow the fault suite down.
stop_brokers

if [ "${RAGLINE_FAULTS:-1}" != 0 ]; then
    step "fault suite, short version (tests/faults/run.sh --quick)"
    tests/faults/run.sh --quick || failed+=("fault suite")
fi

echo
if [ ${#failed[@]} -gt 0 ]; then
    echo "tests/run.sh: FAILED: ${failed[*]} (logs: $IT_DIR," \
        "$BUILD/faults)" >&2
    exit 1
fi
echo "tests/run.sh: all tests passed"
