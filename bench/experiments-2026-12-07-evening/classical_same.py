"""The classical finder scored on exactly the fields a learned run (or several) held out."""
import sys
from cellscreen.data.sources import get_profile, resolve_fields_dir
from cellscreen.screen.finding import score_finding, labelled_fields
from cellscreen.screen.learned import LearnedFinder
from pathlib import Path

dataset, out, runs = sys.argv[1], sys.argv[2], sys.argv[3:]
profile = get_profile(dataset)
root = resolve_fields_dir(profile, None, data="/work/shared/data")
f = profile.fields
held = set().union(*(set(LearnedFinder(r).description["fields"]["held_out"]) for r in runs))
pairs, _ = labelled_fields(root / f.images, root / f.labels)
skip = {image.stem for image, _ in pairs} - held
res = score_finding(root / f.images, root / f.labels, label_format=f.format, kinds=f.kinds, border=f.border,
                    complete=f.complete, rows_out=out, progress=False, skip=skip)
print(f"{res.fields} fields scored, hit distance {res.max_distance}")
for kind, s in res.scores.items():
    e = s.median_abs_count_error
    print(f"{kind}: P {s.precision} R {s.recall} F1 {s.f1} median |count error| {100*e.value:.1f}% [{100*e.low:.1f}, {100*e.high:.1f}]")
