#!/bin/sh
# the white-cell screening figures of /tmp/figures-white.md
set -e
cd /work/main
for m in taleqani-binary taleqani4; do
  OMP_NUM_THREADS=1 /usr/bin/time -f "%e s wall, %M KB max RSS" .venv/bin/cellscreen screen --cells white --model runs/white/$m runs/white/txl20 --out runs/white/txl20-$m --overwrite -q
done
rm -rf runs/white/txl100 && mkdir -p runs/white/txl100
ls /work/shared/data/smears/txl-pbc/TXL_PBC/images/train | awk 'NR%10==1' | head -100 | while read f; do ln -s /work/shared/data/smears/txl-pbc/TXL_PBC/images/train/$f runs/white/txl100/$f; done
for m in taleqani-binary taleqani4; do
  OMP_NUM_THREADS=1 /usr/bin/time -f "%e s wall, %M KB max RSS" .venv/bin/cellscreen screen --cells white --model runs/white/$m runs/white/txl100 --out runs/white/txl100-$m --overwrite -q
done
