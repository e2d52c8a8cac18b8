#!/bin/bash
# usage: v.sh NAME [cells train options...]: train on TXL-PBC, then score the 301 held-out fields.
cd /work/main
name=$1; shift
echo "start $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)" > runs/finder/$name.time
OMP_NUM_THREADS=1 .venv/bin/cellscreen cells train --dataset txl-pbc --data ../shared/data --out runs/finder/$name --threads 1 --quiet "$@" > runs/finder/$name.log 2>&1
echo "trained $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)" >> runs/finder/$name.time
OMP_NUM_THREADS=1 .venv/bin/cellscreen cells score --dataset txl-pbc --data ../shared/data --detector learned:runs/finder/$name --out runs/finder/$name-score.csv --overwrite -q > runs/finder/$name-score.log 2>&1
echo "scored $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)" >> runs/finder/$name.time
