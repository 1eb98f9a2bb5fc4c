#!/bin/bash
# The four variants of bench/SPACE-MANY-FILES.md, as root, in $WORK (needs
# ~8 GiB free): generate the source once, then one run per variant.
set -euo pipefail
here=$(dirname "$(readlink -f "$0")")
export WORK=${WORK:?set WORK to a scratch directory}
[ -d "$WORK/src" ] || python3 "$here/gen.py" "$WORK/src" 200000 10000
cd "$here"
./run.sh fs "" "" "--fake-super"
./run.sh plain "" "" ""
./run.sh msingle "-m single" "" "--fake-super"
./run.sh zstd "" "compress=zstd:1" "--fake-super"
