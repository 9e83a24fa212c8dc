#!/usr/bin/env bash
# One `anyfs serve` node over PostgreSQL and SeaweedFS (`--database
# --objects`) against the embedded default (SQLite files), in the same run:
#   - GET of a 4 KiB file with an agent token (audit on, as always);
#   - PUT of 4 KiB to 500 names with an agent token;
# each for DURATION seconds with wrk, the two modes alternated ROUNDS times.
# For every run it also reads the CPU time (user + system, from /proc) that
# the node, the PostgreSQL processes and SeaweedFS spent, and prints it per
# request: the split that says where the work of a request goes.
#
# Starts its own throw-away PostgreSQL (initdb as the `postgres` user,
# pg_ctl on 127.0.0.1 and a free port) and SeaweedFS (`weed mini` from
# .venv/test-services, see scripts/install-test-services.sh); everything
# listens on 127.0.0.1 only and stops by itself. Needs root (for initdb as
# postgres), wrk, curl and python3.
#
# Usage: scripts/bench-objects.sh [ANYFS_BINARY]
#   (default: target/release/anyfs, built first). DURATION (10 s),
#   CONNECTIONS (16) and ROUNDS (3) override the defaults; OPS=get (or
#   put) measures one operation only. STATEMENTS=1
#   also prints, after each run over PostgreSQL, the statements it ran per
#   request (from pg_stat_statements), the most frequent first.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -ge 1 ]; then
    anyfs="$(realpath "$1")"
else
    cargo build --release -q -p anyfs-cli
    anyfs="$PWD/target/release/anyfs"
fi
weed="${ANYFS_WEED:-$PWD/.venv/test-services/bin/weed}"
pgbin="$(ls -d /usr/lib/postgresql/*/bin | tail -1)"
duration="${DURATION:-10}"
connections="${CONNECTIONS:-16}"
rounds="${ROUNDS:-3}"

work="$(mktemp -d /var/tmp/anyfs-bench-objects.XXXXXX)"
chmod 755 "$work"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    if [ -f "$work/pg/postmaster.pid" ]; then
        runuser -u postgres -- "$pgbin/pg_ctl" -D "$work/pg" -m immediate stop >/dev/null 2>&1 || true
    fi
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
hex() { head -c "$1" /dev/urandom | od -An -tx1 | tr -d ' \n'; }
wait_for() {
    for _ in $(seq 300); do
        curl -s -o /dev/null "$1" && return 0
        sleep 0.2
    done
    echo "$1 did not answer" >&2
    exit 1
}

# PostgreSQL: a cluster of its own, SCRAM login with a random password.
pg_port="$(free_port)"
pg_password="$(hex 16)"
echo "$pg_password" >"$work/pgpass"
mkdir -m 700 "$work/pg"
chown postgres "$work/pgpass" "$work/pg"
runuser -u postgres -- "$pgbin/initdb" -D "$work/pg" -U anyfs --pwfile="$work/pgpass" \
    --auth-local=scram-sha-256 --auth-host=scram-sha-256 >/dev/null
runuser -u postgres -- "$pgbin/pg_ctl" -D "$work/pg" -l "$work/pg/server.log" -w start \
    -o "-p $pg_port -k $work/pg -c listen_addresses=127.0.0.1 -c max_connections=200 \
        -c shared_preload_libraries=pg_stat_statements" >/dev/null
PGPASSWORD="$pg_password" "$pgbin/psql" -q -h 127.0.0.1 -p "$pg_port" -U anyfs -d postgres \
    -c 'CREATE DATABASE anyfs' >/dev/null
database="postgres://anyfs:$pg_password@127.0.0.1:$pg_port/anyfs"
psql_anyfs() {
    PGPASSWORD="$pg_password" "$pgbin/psql" -q -h 127.0.0.1 -p "$pg_port" -U anyfs -d anyfs "$@"
}
if [ "${STATEMENTS:-0}" = 1 ]; then
    psql_anyfs -c 'CREATE EXTENSION pg_stat_statements' >/dev/null
fi

# SeaweedFS: `weed mini` with every port given, on loopback.
export AWS_ACCESS_KEY_ID="anyfs$(hex 8)" AWS_SECRET_ACCESS_KEY="$(hex 20)"
export AWS_REGION=us-east-1
s3_port="$(free_port)"
mkdir -p "$work/weed"
ports=()
for flag in master.port master.port.grpc volume.port volume.port.grpc filer.port \
    filer.port.grpc s3.port.grpc admin.port admin.port.grpc; do
    ports+=("-$flag=$(free_port)")
done
"$weed" mini -dir="$work/weed" -ip=127.0.0.1 -ip.bind=127.0.0.1 -bucket=bench \
    -webdav=false -admin.ui=false -master.telemetry=false -s3.port.iceberg=0 -s3.port.lance=0 \
    -s3.port="$s3_port" "${ports[@]}" >"$work/weed.log" 2>&1 &
pids+=($!)
weed_pid=$!
export AWS_ENDPOINT_URL="http://127.0.0.1:$s3_port"
wait_for "$AWS_ENDPOINT_URL"

export ANYFS_MASTER_KEY="$(hex 32)"
export ANYFS_ADMIN_SECRET="afs_admin_$(hex 16)"
embedded_port="$(free_port)"
objects_port="$(free_port)"
"$anyfs" serve --data-dir "$work/embedded" --listen "127.0.0.1:$embedded_port" \
    2>"$work/embedded.log" &
pids+=($!)
embedded_pid=$!
# weed mini makes the bucket a moment after its S3 port opens: a node that
# starts before it refuses to start (its check of the store fails), so try
# again.
for _ in $(seq 100); do
    "$anyfs" serve --data-dir "$work/objects" --listen "127.0.0.1:$objects_port" \
        --database "$database" --objects "s3://bench/anyfs" 2>"$work/objects.log" &
    objects_pid=$!
    sleep 1
    curl -s -o /dev/null "http://127.0.0.1:$objects_port/healthz" && break
    kill "$objects_pid" 2>/dev/null || true
    wait "$objects_pid" 2>/dev/null || true
    sleep 1
done
pids+=($objects_pid)
wait_for "http://127.0.0.1:$embedded_port/healthz"
wait_for "http://127.0.0.1:$objects_port/healthz"

json() { python3 -c "import json, sys; print(json.load(sys.stdin)$1)"; }
head -c 4096 /dev/urandom >"$work/small.bin"
declare -A tokens
for mode in embedded objects; do
    port_var="${mode}_port"
    base="http://127.0.0.1:${!port_var}"
    secret="$(curl -sf -X POST "$base/v1/accounts" -H 'content-type: application/json' \
        -d '{"name": "bench"}' | json '["secret"]')"
    tokens[$mode]="$(curl -sf -X POST "$base/v1/agents" -H "authorization: Bearer $secret" \
        -H 'content-type: application/json' -d '{"name": "bot"}' | json '["token"]')"
    curl -sf -X PUT --data-binary @"$work/small.bin" -H "authorization: Bearer ${tokens[$mode]}" \
        "$base/v1/files/small.bin" >/dev/null
done

cat >"$work/put.lua" <<'EOF'
local n = 0
local f = io.open(os.getenv("BODY_FILE"), "rb")
local body = f:read("*a")
f:close()
request = function()
    n = (n + 1) % 500
    return wrk.format("PUT", "/v1/files/w/" .. n .. ".bin", nil, body)
end
EOF

# CPU ticks (user + system) of a process and its threads; of this
# cluster's postmaster and its children (each connection's backend).
ticks_of() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
postmaster="$(head -1 "$work/pg/postmaster.pid")"
ticks_postgres() {
    local total
    total="$(ticks_of "$postmaster")"
    for pid in $(pgrep -P "$postmaster" || true); do
        total=$((total + $(ticks_of "$pid")))
    done
    echo "$total"
}
hz="$(getconf CLK_TCK)"

printf '%-9s %-4s %10s %9s %9s %12s %10s %10s\n' mode op "req/s" "p50 ms" "p99 ms" \
    "node µs/req" "pg µs/req" "s3 µs/req"
for round in $(seq "$rounds"); do
    for op in ${OPS:-get put}; do
        for mode in embedded objects; do
            port_var="${mode}_port"
            pid_var="${mode}_pid"
            args=(-t 2 -c "$connections" -d "${duration}s" --latency
                -H "authorization: Bearer ${tokens[$mode]}")
            if [ "$op" = put ]; then
                args+=(-s "$work/put.lua")
            fi
            if [ "${STATEMENTS:-0}" = 1 ]; then
                psql_anyfs -c 'SELECT pg_stat_statements_reset()' >/dev/null
            fi
            node0="$(ticks_of "${!pid_var}")" pg0="$(ticks_postgres)" s30="$(ticks_of "$weed_pid")"
            BODY_FILE="$work/small.bin" wrk "${args[@]}" \
                "http://127.0.0.1:${!port_var}/v1/files/small.bin" >"$work/wrk.out"
            node1="$(ticks_of "${!pid_var}")" pg1="$(ticks_postgres)" s31="$(ticks_of "$weed_pid")"
            python3 - "$work/wrk.out" "$mode" "$op" "$hz" "$((node1 - node0))" \
                "$((pg1 - pg0))" "$((s31 - s30))" <<'EOF'
import re, sys
text = open(sys.argv[1]).read()
mode, op, hz = sys.argv[2], sys.argv[3], int(sys.argv[4])
node, pg, s3 = (int(x) for x in sys.argv[5:8])
def ms(label):
    m = re.search(r"^\s*" + label + r"%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    value, unit = float(m.group(1)), m.group(2)
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
requests = int(re.search(r"(\d+) requests in", text).group(1))
bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
rate = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
per = lambda ticks: ticks * 1e6 / hz / max(requests, 1)
note = f"  ({bad.group(1)} not 2xx)" if bad else ""
print(f"{mode:<9} {op:<4} {rate:10.0f} {ms('50'):9.2f} {ms('99'):9.2f} "
      f"{per(node):12.0f} {per(pg):10.0f} {per(s3):10.0f}{note}")
EOF
            if [ "${STATEMENTS:-0}" = 1 ] && [ "$mode" = objects ]; then
                requests="$(sed -n 's/^ *\([0-9]*\) requests in.*/\1/p' "$work/wrk.out")"
                psql_anyfs -At -F ' | ' -c "SELECT round(calls::numeric / $requests, 2),
                    round(total_exec_time::numeric * 1000 / $requests), left(regexp_replace(query,
                    '\s+', ' ', 'g'), 110) FROM pg_stat_statements ORDER BY calls DESC LIMIT 25" |
                    sed 's/^/    per request: /'
            fi
        done
    done
done
