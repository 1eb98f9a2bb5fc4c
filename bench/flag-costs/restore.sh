#!/bin/bash
# Restore-shaped: one 256 MiB file with 1 MiB holes pulled into a fresh dir,
# per flag set (local rsync, the source in the page cache).
set -u
f=/var/tmp/flags/src/vm/disk.img
cat $f > /dev/null
for round in 1 2 3 4 5; do
  for k in bare sparse byteback nosparse; do
    case $k in
      bare) flags="-a";;
      sparse) flags="-a --sparse";;
      byteback) flags="--archive --hard-links --acls --xattrs --numeric-ids --sparse --relative";;
      nosparse) flags="--archive --hard-links --acls --xattrs --numeric-ids --relative";;
    esac
    d=/var/tmp/flags/restore-$k; rm -rf $d; mkdir -p $d
    src=$f; [[ $k == byteback || $k == nosparse ]] && src=/var/tmp/flags/src/./vm/disk.img
    /usr/bin/time -f "$k $round wall=%e user=%U sys=%S" rsync $flags $src $d/ 2>&1 | tail -1
    echo "  allocated $(du -k $(find $d -type f) | cut -f1) KiB"
    sync
  done
done
rm -rf /var/tmp/flags/restore-*
