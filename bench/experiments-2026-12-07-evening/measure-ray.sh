cd /work/main
export OMP_NUM_THREADS=1
mkdir -p /tmp/rayM
log=runs/measure-ray.log
: > $log
echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)  commit: $(git rev-parse --short HEAD)" >> $log
echo "before local: $(uptime)" >> $log
/usr/bin/time -f "local: %e s wall, %M KB max RSS (largest process)" .venv/bin/cellscreen screen malaria runs/chula40 --out runs/chula40-local --overwrite -q >> $log 2>&1
echo "before ray: $(uptime)" >> $log
RAY_TMPDIR=/tmp/rayM /usr/bin/time -f "ray: %e s wall, %M KB max RSS (largest process)" .venv/bin/cellscreen screen malaria runs/chula40 --out runs/chula40-ray --engine ray --workers 2 --overwrite -q >> $log 2>&1
echo "after ray: $(uptime)" >> $log
for f in cells.csv images.csv samples.csv; do cmp runs/chula40-local/$f runs/chula40-ray/$f && echo "same $f" >> $log; done
diff -r runs/chula40-local/overlays runs/chula40-ray/overlays > /dev/null && echo "same overlays ($(ls runs/chula40-ray/overlays | wc -l))" >> $log
diff <(sed -e 's/Run started [^<]*//' -e 's/(engine [a-z]*)//' runs/chula40-local/report.html) <(sed -e 's/Run started [^<]*//' -e 's/(engine [a-z]*)//' runs/chula40-ray/report.html) > /dev/null && echo "same report.html but for start time and engine" >> $log
rm -rf /tmp/rayM
echo done >> $log
