#!/usr/bin/env bash
# The overlay against the bare mount: `anyfs run --over BASE WS` against
# `anyfs run WS` on a workspace file holding the same files. Reads a
# 256 MiB file, writes 4 KiB into its middle, and extracts ~5,000 small
# files. Needs root (or FUSE rights) and fusermount3.
# Usage: scripts/overlay-bench.sh [ANYFS_BINARY] (default: target/release/anyfs, built first).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -ge 1 ]; then
    anyfs="$(realpath "$1")"
else
    cargo build --release -q -p anyfs-cli
    anyfs="$PWD/target/release/anyfs"
fi
work="$(mktemp -d /var/tmp/anyfs-overlay-bench.XXXXXX)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/base/tree-src"
python3 scripts/small-tree.py "$work/base/tree-src"
tar cf "$work/tree.tar" -C "$work/base" tree-src
rm -rf "$work/base/tree-src"
head -c $((256 * 1024 * 1024)) /dev/urandom > "$work/base/big.bin"
# The bare mount's workspace holds the same file.
"$anyfs" run "$work/bare.db" -- cp "$work/base/big.bin" big.bin

seconds() { local s; s=$(date +%s.%N); "$@" >/dev/null 2>&1; echo "$(date +%s.%N) - $s" | bc; }
echo "| operation | bare mount | overlay |"
echo "|---|---|---|"
for round in 1 2; do
    bare=$(seconds "$anyfs" run "$work/bare.db" -- dd if=big.bin of=/dev/null bs=1M)
    over=$(seconds "$anyfs" run --over "$work/base" "$work/over.db" -- dd if=big.bin of=/dev/null bs=1M)
    echo "| read 256 MiB (mount, read, unmount; round $round) | ${bare} s | ${over} s |"
done
bare=$(seconds "$anyfs" run "$work/bare.db" -- dd if=/dev/urandom of=big.bin bs=4k seek=32768 count=1 conv=notrunc)
over=$(seconds "$anyfs" run --over "$work/base" "$work/over.db" -- dd if=/dev/urandom of=big.bin bs=4k seek=32768 count=1 conv=notrunc)
echo "| write 4 KiB into the middle of it | ${bare} s | ${over} s |"
bare=$(seconds "$anyfs" run "$work/bare.db" -- tar xf "$work/tree.tar")
over=$(seconds "$anyfs" run --over "$work/base" "$work/over.db" -- tar xf "$work/tree.tar")
echo "| extract 5,000 files of 1-4 KiB | ${bare} s | ${over} s |"
echo
echo "overlay workspace file after all of it: $(du -k "$work/over.db" | cut -f1) KiB (the base holds 256 MiB)"
