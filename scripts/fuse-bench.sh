#!/usr/bin/env bash
# Mount against native disk: extract and remove a tree of ~5,000 small files,
# and read a 256 MiB file sequentially. Needs root (or FUSE rights) and
# fusermount3. Usage: scripts/fuse-bench.sh [memory|sqlite] [ANYFS_BINARY]
# (default sqlite, and target/release/anyfs, built first).
set -euo pipefail
cd "$(dirname "$0")/.."
kind="${1:-sqlite}"
if [ $# -ge 2 ]; then
    anyfs="$(realpath "$2")"
else
    cargo build --release -q -p anyfs-cli
    anyfs="$PWD/target/release/anyfs"
fi
work="$(mktemp -d /var/tmp/anyfs-bench.XXXXXX)"
trap 'fusermount3 -u "$work/mnt" 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/src" "$work/native" "$work/mnt"

# The tree: 50 directories of 100 files, 1-4 KiB each.
python3 - "$work/src" <<'PY'
import os, sys, random
random.seed(7)
root = sys.argv[1]
for d in range(50):
    os.makedirs(f"{root}/tree/d{d:02}", exist_ok=True)
    for f in range(100):
        with open(f"{root}/tree/d{d:02}/f{f:03}.txt", "wb") as out:
            out.write(os.urandom(random.randint(1024, 4096)))
PY
tar cf "$work/tree.tar" -C "$work/src" tree
head -c $((256 * 1024 * 1024)) /dev/urandom > "$work/big.bin"

if [ "$kind" = memory ]; then
    "$anyfs" mount --memory "$work/mnt" 2>/dev/null &
else
    "$anyfs" mount "$work/bench.db" "$work/mnt" 2>/dev/null &
fi
pid=$!
for _ in $(seq 100); do grep -q " $work/mnt " /proc/mounts && break; sleep 0.05; done

t() { local start end; start=$(date +%s.%N); "$@"; end=$(date +%s.%N); echo "$end - $start" | bc; }
sync
echo "extract 5,000 files, native:  $(t tar xf "$work/tree.tar" -C "$work/native") s"
echo "extract 5,000 files, mount:   $(t tar xf "$work/tree.tar" -C "$work/mnt") s"
sync
echo "rm -rf 5,000 files, native:   $(t rm -rf "$work/native/tree") s"
echo "rm -rf 5,000 files, mount:    $(t rm -rf "$work/mnt/tree") s"
cp "$work/big.bin" "$work/mnt/big.bin"
sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
echo "read 256 MiB, native:         $(t dd if="$work/big.bin" of=/dev/null bs=1M status=none) s"
echo "read 256 MiB, mount:          $(t dd if="$work/mnt/big.bin" of=/dev/null bs=1M status=none) s"
kill -TERM "$pid"; wait "$pid" || true
