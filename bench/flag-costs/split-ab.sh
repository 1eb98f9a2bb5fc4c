#!/bin/bash
# A/B of the split runs: one full local backup (btrfs store) of gen.py's tree,
# byteback built without the split (BIN_A) and with it (BIN_B, each a dir
# holding byteback), alternating, a fresh filesystem each time.
set -u
declare -A BIN=([A]="${BIN_A:?a dir with byteback without the split}" [B]="${BIN_B:?a dir with byteback with it}")
[ -d /var/tmp/flags/src ] || python3 "$(dirname "$0")/gen.py"
img=/var/tmp/ab-fs.img mnt=/var/tmp/ab-mnt
mkdir -p $mnt
trap 'umount $mnt 2>/dev/null; rm -f $img' EXIT
for round in 1 2 3 4; do
  for b in A B; do
    [ $((round % 2)) = 0 ] && { [ $b = A ] && b=B || b=A; }
    truncate -s 8G $img && mkfs.btrfs -q -f $img >/dev/null 2>&1 && mount -o loop $img $mnt || exit 1
    cfg=/var/tmp/ab-cfg-$b; rm -rf $cfg
    BYTEBACK_CONFIG_DIR=$cfg ${BIN[$b]}/byteback setup $mnt/store --name ab >/dev/null || exit 1
    sync; echo 3 > /proc/sys/vm/drop_caches; cat $(find /var/tmp/flags/src -type f) > /dev/null
    /usr/bin/time -f "$b $round wall=%e user=%U sys=%S" env BYTEBACK_CONFIG_DIR=$cfg PATH=${BIN[$b]}:/usr/bin:/bin ${BIN[$b]}/byteback backup --source /var/tmp/flags/src 2>&1 >/dev/null | tail -1
    echo "  disk.img allocated $(du -k $mnt/store/ab/current/var/tmp/flags/src/vm/disk.img | cut -f1) KiB"
    umount $mnt
  done
done
