#!/bin/bash
# Wall and CPU of a local rsync into a fresh btrfs subvolume, per flag set.
set -u
img=/var/tmp/flags/fs.img mnt=/var/tmp/flags/mnt
truncate -s 6G $img && mkfs.btrfs -q -f $img && mkdir -p $mnt && mount -o loop $img $mnt || exit 1
trap 'umount $mnt; rm -f $img' EXIT
base="-a --numeric-ids --delete --inplace"
declare -A sets=(
  [bare]=""
  [H]="--hard-links"
  [A]="--acls"
  [X]="--xattrs"
  [S]="--sparse"
  [F]="-M--fake-super"
  [R]="--relative"
  [all]="--hard-links --acls --xattrs --sparse -M--fake-super --relative"
  [all-S]="--hard-links --acls --xattrs -M--fake-super --relative"
  [all-F]="--hard-links --acls --xattrs --sparse --relative"
)
for round in 1 2 3; do
  for k in R bare H A X S F all all-S all-F; do
    btrfs subvolume create $mnt/$k-$round >/dev/null
    sync; echo 3 > /proc/sys/vm/drop_caches; cat $(find /var/tmp/flags/src -type f) > /dev/null
    src=/var/tmp/flags/src/; [[ $k == R || $k == all* ]] && src=/var/tmp/flags/./src/
    /usr/bin/time -f "$k $round wall=%e user=%U sys=%S" rsync $base ${sets[$k]} $src $mnt/$k-$round/ 2>&1 | tail -2
    sync
    btrfs subvolume delete $mnt/$k-$round >/dev/null
  done
done
