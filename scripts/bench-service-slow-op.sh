#!/usr/bin/env bash
# The service's rate of cheap authenticated requests while a slow file
# operation is in flight. Starts `anyfs serve` on a temporary data directory
# and a free loopback port, signs up, makes an agent and a 4 KiB file, then
# measures with wrk, for 10 s each:
#   - GET /v1/files/small.bin (agent token) and GET /v1/accounts/me
#     (account secret),
#   - and, with nothing else running, PUT of 4 KiB to 500 names (agent token),
#   - with nothing else running ("idle"), during a streamed upload that
#     never ends before wrk does ("upload"), and during back-to-back copies
#     and deletes of a 256 MiB folder of 64 files ("copy"), and while the
#     account reads its audit log back to back, 1,000 records a page
#     ("audit": slow work for the registry).
# Needs wrk, curl and python3. Everything stays on 127.0.0.1 and stops by
# itself.
#
# Usage: scripts/bench-service-slow-op.sh [ANYFS_BINARY]
#   (default: target/release/anyfs, built first). DURATION and CONNECTIONS
#   override 10 s and 32.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -ge 1 ]; then
    anyfs="$(realpath "$1")"
else
    cargo build --release -q -p anyfs-cli
    anyfs="$PWD/target/release/anyfs"
fi
duration="${DURATION:-10}"
connections="${CONNECTIONS:-32}"
work="$(mktemp -d /var/tmp/anyfs-slow-op.XXXXXX)"
pids=()
cleanup() {
    touch "$work/stop"
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
base="http://127.0.0.1:$port"
export ANYFS_ADMIN_SECRET="afs_admin_$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
"$anyfs" serve --data-dir "$work/data" --listen "127.0.0.1:$port" --quota $((64 << 30)) \
    2>"$work/serve.log" &
pids+=($!)
for _ in $(seq 100); do
    curl -sf "$base/healthz" >/dev/null && break
    sleep 0.1
done

json() { python3 -c "import json, sys; print(json.load(sys.stdin)$1)"; }
secret="$(curl -sf -X POST "$base/v1/accounts" -H 'content-type: application/json' \
    -d '{"name": "bench"}' | json '["secret"]')"
token="$(curl -sf -X POST "$base/v1/agents" -H "authorization: Bearer $secret" \
    -H 'content-type: application/json' -d '{"name": "bot"}' | json '["token"]')"
head -c 4096 /dev/urandom >"$work/small.bin"
curl -sf -X PUT --data-binary @"$work/small.bin" -H "authorization: Bearer $secret" \
    "$base/v1/files/small.bin" >/dev/null
# The folder the copies take: 64 files of 4 MiB.
head -c $((4 << 20)) /dev/urandom >"$work/4m.bin"
for i in $(seq -w 64); do
    curl -sf -X PUT --data-binary @"$work/4m.bin" -H "authorization: Bearer $secret" \
        "$base/v1/files/big/f$i.bin" >/dev/null
done

# One slow operation after another until $work/stop exists.
slow_copies() {
    while [ ! -e "$work/stop" ]; do
        curl -s -o /dev/null -X POST "$base/v1/fs/copy" -H "authorization: Bearer $secret" \
            -H 'content-type: application/json' -d '{"from": "/big", "to": "/big-copy"}'
        curl -s -o /dev/null -X DELETE "$base/v1/files/big-copy?recursive=true" \
            -H "authorization: Bearer $secret"
    done
}
slow_audit_pages() {
    # Pages of 1,000 records of the audit log (every request above left
    # one), read back to back: slow work for the registry, not the files.
    local cursor=0
    while [ ! -e "$work/stop" ]; do
        cursor="$(curl -s -H "authorization: Bearer $secret" \
            "$base/v1/audit?limit=1000&cursor=$cursor" | json '.get("next_cursor") or 0' || echo 0)"
    done
}
slow_upload() {
    # Chunked (no length): a streamed upload, as long as wrk runs.
    head -c $((32 << 30)) /dev/zero |
        curl -s -o /dev/null -m "$((2 * duration + 5))" -T - -H "authorization: Bearer $secret" \
            "$base/v1/files/upload.bin" || true
}

# Writes: PUT 4 KiB to one of 500 names, round robin.
cat >"$work/put.lua" <<'LUA'
wrk.method = "PUT"
wrk.body = string.rep("x", 4096)
local n = 0
request = function()
    n = (n + 1) % 500
    return wrk.format(nil, "/v1/files/w/" .. n .. ".bin")
end
LUA

measure() { # scenario, label, path, bearer[, wrk script]
    local out rate p99 refused
    out="$(wrk -t2 -c"$connections" -d"${duration}s" --latency ${5:+-s "$5"} \
        -H "Authorization: Bearer $4" "$base$3")"
    rate="$(awk '/Requests\/sec/ {print $2}' <<<"$out")"
    p99="$(awk '$1 == "99%" {print $2}' <<<"$out")"
    refused="$(awk '/Non-2xx/ {print $5}' <<<"$out")"
    printf '%-7s %-24s %10s requests/s  p99 %-9s %s\n' "$1" "$2" "$rate" "$p99" \
        "${refused:+($refused answers not 2xx)}"
}

for scenario in idle upload copy audit; do
    rm -f "$work/stop"
    slow=""
    case "$scenario" in
        upload) slow_upload & slow=$! ;;
        copy) slow_copies & slow=$! ;;
        audit) slow_audit_pages & slow=$! ;;
    esac
    sleep 1
    measure "$scenario" "GET /v1/files/small.bin" /v1/files/small.bin "$token"
    measure "$scenario" "GET /v1/accounts/me" /v1/accounts/me "$secret"
    if [ "$scenario" = idle ]; then
        measure "$scenario" "PUT /v1/files/w/N.bin" / "$token" "$work/put.lua"
    fi
    touch "$work/stop"
    if [ -n "$slow" ]; then
        wait "$slow" || true
    fi
done
