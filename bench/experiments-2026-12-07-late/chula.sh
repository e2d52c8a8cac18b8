#!/bin/bash
# usage: chula.sh TAG [cells train options...]: both folds of Chula RBC-12 trained and scored, then pooled.
cd /work/main
tag=$1; shift
for k in 0 1; do
  name=chula-f$k-$tag
  echo "start $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)" > runs/finder/$name.time
  OMP_NUM_THREADS=1 .venv/bin/cellscreen cells train --dataset chula-rbc12 --data ../shared/data --fold $k/2 --out runs/finder/$name --threads 1 --quiet "$@" > runs/finder/$name.log 2>&1
  echo "trained $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)" >> runs/finder/$name.time
  OMP_NUM_THREADS=1 .venv/bin/cellscreen cells score --dataset chula-rbc12 --data ../shared/data --detector learned:runs/finder/$name --out runs/finder/$name-score.csv --overwrite -q > runs/finder/$name-score.log 2>&1
  echo "scored $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)" >> runs/finder/$name.time
done
.venv/bin/cellscreen cells pool runs/finder/chula-f0-$tag-score.csv runs/finder/chula-f1-$tag-score.csv > runs/finder/chula-$tag-pool.log 2>&1
