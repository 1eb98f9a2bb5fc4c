#!/bin/bash
# usage: run.sh NAME "mkfs opts" "mount opts" "rsync extra"
set -e
: "${WORK:?set WORK to a scratch directory}"
name=$1; mkfsopts=$2; mntopts=$3; extra=$4
img=$WORK/$name.img; mnt=$WORK/mnt-$name
rm -f $img; truncate -s 6G $img; mkfs.btrfs -q $mkfsopts $img >/dev/null
mkdir -p $mnt; mount -o loop${mntopts:+,$mntopts} $img $mnt
rm -rf $WORK/w-$name; cp -a --reflink=never $WORK/src $WORK/w-$name 2>/dev/null || cp -a $WORK/src $WORK/w-$name
btrfs subvolume create $mnt/current >/dev/null
used() { sync; btrfs filesystem sync $mnt; btrfs filesystem df -b $mnt | grep -E '^(Data|Metadata)' | sed -E 's/, *(single|DUP): total=[0-9]+, used=/=/' | tr '\n' ' '; }
rsync -a $extra $WORK/w-$name/ $mnt/current/
btrfs subvolume snapshot -r $mnt/current $mnt/s0 >/dev/null
echo "$name initial: $(used)"
for g in 1 2 3 4 5; do
  python3 "$(dirname "$(readlink -f "$0")")/mutate.py" $WORK/w-$name 200000 10000 $g
  rsync -a --inplace --delete $extra $WORK/w-$name/ $mnt/current/
  btrfs subvolume snapshot -r $mnt/current $mnt/s$g >/dev/null
done
echo "$name after 6: $(used)"
getfattr -d -m - $mnt/current/d0/e0/f0 2>/dev/null | head -3
umount $mnt; rm -f $img; rmdir $mnt; rm -rf $WORK/w-$name
