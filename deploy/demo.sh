#!/usr/bin/env bash
# Builds ragline, starts it on the embedded default (an in-memory Kafka
# cluster inside the process, and the built-in backend), sends it the
# bundled example: the evidence records, then both example events, and
# prints the two answers.  Needs what deploy/install-deps.sh installs.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${RAGLINE_BUILD:-$root/build}
data=$root/tests/data

cmake -S "$root" -B "$build" -G Ninja >/dev/null
ninja -C "$build" ragline-bin >/dev/null

tmp=$(mktemp -d)
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    [ -n "${DEMO_KEEP:-}" ] && cat "$tmp/log" >&2
    rm -rf "$tmp"
}
trap cleanup EXIT

"$build/ragline" serve >"$tmp/out" 2>"$tmp/log" &
pid=$!
for _ in $(seq 100); do
    grep -q bootstrap "$tmp/out" 2>/dev/null && break
    sleep 0.1
done
bootstrap=$(grep -o '127\.0\.0\.1:[0-9]*' "$tmp/out" | head -n 1)
if [ -z "$bootstrap" ]; then
    echo "demo: ragline did not start:" >&2
    cat "$tmp/log" >&2
    exit 1
fi
echo "ragline is running on the embedded cluster at $bootstrap"

# Evidence records: the file holds {"key": ..., "value": ...} lines.
python3 - "$data/contrastive.evidence.jsonl" >"$tmp/evidence" <<'PY'
import json, sys
for line in open(sys.argv[1], encoding="utf-8"):
    rec = json.loads(line)
    print(rec["key"] + "\t" + json.dumps(rec["value"], ensure_ascii=False))
PY
kcat -b "$bootstrap" -P -t ragline.evidence -K $'\t' <"$tmp/evidence"
sleep 1 # the worker follows the evidence topic as it runs

for f in contrastive.event.json contrastive-inline.event.json; do
    printf 'contrastive\t%s\n' "$(tr -d '\n' <"$data/$f")"
done >"$tmp/events"
kcat -b "$bootstrap" -P -t ragline.queries -K $'\t' \
    -H traceparent=00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01 \
    <"$tmp/events"
echo "sent 2 events; the answers:"

timeout 30 kcat -b "$bootstrap" -C -t ragline.answers -o beginning -c 2 \
    -f '%s\n' 2>/dev/null | python3 -c '
import json, sys
for line in sys.stdin:
    a = json.loads(line)
    a["answer"] = a["answer"][:120] + "..."
    print(json.dumps(a, indent=2))'
