#!/usr/bin/env bash
# The sandbox against the bare mount: `anyfs run --sandbox` against
# `anyfs run` on the same workspace. Start-up: a command that does nothing
# (`true`). Throughput: extracting a tarball of 5,000 small files (50
# folders of 100 files of 1-4 KiB) and removing it again, inside the
# workspace. Needs root (or FUSE rights), fusermount3, bubblewrap and
# hyperfine (Debian: fuse3 bubblewrap hyperfine).
# Usage: scripts/sandbox-bench.sh [ANYFS_BINARY] (default: target/release/anyfs, built first).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -ge 1 ]; then
    anyfs="$(realpath "$1")"
else
    cargo build --release -q -p anyfs-cli
    anyfs="$PWD/target/release/anyfs"
fi
work="$(mktemp -d /var/tmp/anyfs-sandbox-bench.XXXXXX)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/src/tree"
python3 scripts/small-tree.py "$work/src/tree"
tar cf "$work/tree.tar" -C "$work/src" tree
# The workspace holds the tarball (the sandbox cannot see the host's copy).
"$anyfs" run "$work/ws.db" -- cp "$work/tree.tar" tree.tar

echo "== start-up: a command that does nothing"
hyperfine --warmup 3 --runs 30 -N \
    -n 'anyfs run --memory -- true' "$anyfs run --memory -- true" \
    -n 'anyfs run --sandbox --memory -- true' "$anyfs run --sandbox --memory -- true"
echo "== 5,000 files: tar x, then rm -rf, on a workspace file"
hyperfine --warmup 1 --runs 8 \
    -n 'anyfs run' "$anyfs run $work/ws.db -- sh -c 'tar xf tree.tar && rm -rf tree'" \
    -n 'anyfs run --sandbox' "$anyfs run --sandbox $work/ws.db -- sh -c 'tar xf tree.tar && rm -rf tree'"
