"""How long `cellscreen screen` takes per field in one process, stage by stage, and a 16 MP field's memory.

    CELLSCREEN_DATA=../shared/data python bench/screen_speed.py --fields 30

Times ``cellscreen.screen.pipeline.screen_field``: everything one field costs (the file decoded, the cells
found, each red cell cut and resized, the model run, the overlay drawn and written as a PNG), nothing of
the process's start or the model's loading. Each part is warmed up on its first field (the big field:
the best of three is reported). The fields:

- ``--fields`` Chula RBC-12 fields (640x480), the first by number after the 60 the finder was tuned on;
- ``--fields`` TXL-PBC fields (about 640x480), the first by name that were not tuned on (every 10th was);
- a 5312x2988 field (the NIH phone photographs' size): ``screen_detection.big_field_image``, nine Chula
  tuning fields scaled 2.77 times and tiled (a red cell about 107 px across), written as a JPEG first and
  screened first, so that the process's peak memory (the kernel's VmHWM) is this field's; its best of
  three and its worst, and how much the peak grew over the memory before it.

Then `cellscreen screen` itself (``pipeline.screen``) on the Chula fields with one worker process per core,
as it runs by default: the wall time per field, from a run on half the fields and one on all of them (the
start of the workers and the model's loading drop out of the difference).

Per part: wall and CPU milliseconds per field (median, 90th percentile) and the median of each stage:
decode, find, cut+batch (cutting the red cells and resizing them to the model's input), classify (the
model's run), overlay (drawn, encoded, written), other (the rest: rows, counts). "cores busy" is CPU time
over wall time (2.0: both cores of this machine the whole time). Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from cellscreen.data.parallel import default_workers
from cellscreen.screen import count, overlay, pipeline

sys.path.insert(0, str(Path(__file__).resolve().parent))
from screen_detection import TXL_TUNING_EVERY, big_field_image  # noqa: E402  (a sibling script)

STAGES = ("decode", "find", "cut+batch", "classify", "overlay", "other")
CHULA_TUNING = 60  # Chula fields the finder was tuned on: the first 60 by number


class StageClock:
    """Wall and CPU seconds spent inside the wrapped functions, by stage, since ``reset``."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)

    def reset(self) -> None:
        self.wall.clear()
        self.cpu.clear()

    def timed(self, stage: str, function: Callable) -> Callable:
        def run(*args, **kwargs):
            wall, cpu = time.perf_counter(), time.process_time()
            try:
                return function(*args, **kwargs)
            finally:
                self.wall[stage] += time.perf_counter() - wall
                self.cpu[stage] += time.process_time() - cpu
        return run


@contextlib.contextmanager
def stages_timed(clock: StageClock, predictor) -> Iterator[None]:
    """Time the stages of ``screen_field`` by wrapping the functions it calls (put back afterwards).

    The red cells' cutting is what ``classify_red_cells`` spends outside the model's run; the finder is
    wrapped where ``screen_field`` takes it from (the classical one, or a learned one's shared session).
    """
    learned = pipeline.shared_finder
    wrapped = [(pipeline, "load_rgb", "decode"), (pipeline, "find_cells", "find"),
               (pipeline, "classify_red_cells", "cut+classify"), (pipeline, "atomic_write", "overlay"),
               (overlay, "draw_overlay", "overlay"), (overlay, "overlay_png", "overlay"),
               (predictor, "predict_batched", "classify")]
    # what each owner held itself (a method of the predictor's class is not the instance's own: deleted after)
    originals = [(owner, name, vars(owner).get(name)) for owner, name, _ in wrapped]

    def shared_finder(detector: str):
        finder = learned(detector)
        if finder is not None and not hasattr(finder.find_cells, "timed"):
            finder.find_cells = clock.timed("find", finder.find_cells)
            finder.find_cells.timed = True
        return finder

    try:
        for owner, name, stage in wrapped:
            setattr(owner, name, clock.timed(stage, getattr(owner, name)))
        pipeline.shared_finder = shared_finder
        yield
    finally:
        for owner, name, original in originals:
            if original is None:
                delattr(owner, name)
            else:
                setattr(owner, name, original)
        pipeline.shared_finder = learned


def field_options(predictor, out: Path, detector: str) -> pipeline.FieldOptions:
    """The options ``cellscreen screen`` would screen with (red cells, the model's own threshold)."""
    (out / pipeline.OVERLAYS).mkdir(parents=True, exist_ok=True)
    return pipeline.FieldOptions(str(out), tuple(predictor.classes), predictor.positive_class,
                                 count.decision_threshold(predictor.description), predictor.input_size,
                                 predictor.border_crop, predictor.interpolation, 256, None, None, detector)


def time_fields(paths: Sequence[Path], options: pipeline.FieldOptions, predictor, *, warm_up: int = 1) -> dict:
    """Screen ``paths`` one after the other (the first ``warm_up`` once before, untimed); per field: wall and
    CPU ms, each stage's, and the cells counted."""
    for path in paths[:warm_up]:
        pipeline.screen_field(path, 0, options, predictor)
    clock = StageClock()
    fields = []
    with stages_timed(clock, predictor):
        for index, path in enumerate(paths):
            clock.reset()
            wall, cpu = time.perf_counter(), time.process_time()
            image_row, cell_rows = pipeline.screen_field(path, index, options, predictor)
            wall, cpu = 1000 * (time.perf_counter() - wall), 1000 * (time.process_time() - cpu)
            if image_row[2] != "ok":
                raise SystemExit(f"{path}: {image_row[2]}")
            fields.append({"field": str(path), "wall_ms": wall, "cpu_ms": cpu,
                           "stage_wall_ms": _stages(clock.wall, wall), "stage_cpu_ms": _stages(clock.cpu, cpu),
                           "cells": len(cell_rows),
                           "red": sum(row[2] == "red" for row in cell_rows)})
    return summarise(fields)


def _stages(seconds: dict[str, float], total_ms: float) -> dict[str, float]:
    """Milliseconds per stage of one field: cutting is what classify_red_cells spent outside the model's run,
    "other" what the field cost outside every wrapped function."""
    spent = {stage: 1000 * seconds.get(stage, 0.0) for stage in STAGES}
    spent["cut+batch"] = 1000 * seconds.get("cut+classify", 0.0) - spent["classify"]
    spent["other"] = total_ms - sum(spent[stage] for stage in STAGES if stage != "other")
    return spent


def _p90(values: Sequence[float]) -> float:
    return float(np.percentile(values, 90))


def summarise(fields: list[dict]) -> dict:
    """Median and 90th percentile of the wall and CPU times per field, and each stage's median."""
    wall, cpu = [f["wall_ms"] for f in fields], [f["cpu_ms"] for f in fields]
    classify_wall = sum(f["stage_wall_ms"]["classify"] for f in fields)
    classify_cpu = sum(f["stage_cpu_ms"]["classify"] for f in fields)
    return {"fields": len(fields), "wall_ms_median": statistics.median(wall), "wall_ms_p90": _p90(wall),
            "cpu_ms_median": statistics.median(cpu), "cpu_ms_p90": _p90(cpu),
            "stage_wall_ms": {s: statistics.median(f["stage_wall_ms"][s] for f in fields) for s in STAGES},
            "stage_cpu_ms": {s: statistics.median(f["stage_cpu_ms"][s] for f in fields) for s in STAGES},
            "cores_busy": sum(cpu) / max(sum(wall), 1e-9),
            "cores_busy_classify": classify_cpu / max(classify_wall, 1e-9),
            "cells_median": statistics.median(f["cells"] for f in fields),
            "red_median": statistics.median(f["red"] for f in fields),
            "wall_ms_max": max(wall), "wall_ms_min": min(wall)}


def _memory_mb(key: str) -> float:
    """A line of /proc/self/status (VmRSS: now, VmHWM: the peak), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def time_big_field(root: Path, options: pipeline.FieldOptions, predictor, folder: Path) -> dict:
    """``big_field_image`` as a JPEG (quality 95), screened three times; the best and worst wall seconds, and
    the process's memory before and at its peak."""
    path = folder / "big_field_5312x2988.jpg"
    Image.fromarray(big_field_image(root)).save(path, quality=95)
    before = _memory_mb("VmRSS")
    result = time_fields([path] * 3, options, predictor, warm_up=0)
    peak = _memory_mb("VmHWM")
    return {**result, "size": "5312x2988", "seconds": result["wall_ms_min"] / 1000,
            "seconds_worst": result["wall_ms_max"] / 1000, "rss_before_mb": round(before),
            "peak_rss_mb": round(peak), "rss_growth_mb": round(peak - before)}


def time_screen_run(paths: Sequence[Path], model: str, *, engine: str, detector: str, workers: int,
                    folder: Path) -> dict:
    """What `cellscreen screen` spends per field with ``workers`` processes side by side: ``pipeline.screen`` on
    the first half of ``paths`` and then on all of them (each in its own folder of links, its own run), and
    the difference in wall seconds over the difference in fields. The start (worker processes, the model
    loaded in each) costs both runs alike and drops out; the report's thumbnail of each field stays in."""
    half = max(1, len(paths) // 2)
    seconds = []
    for count in (half, len(paths)):
        inputs = folder / f"inputs-{count}"
        inputs.mkdir(parents=True, exist_ok=True)
        for k, path in enumerate(paths[:count]):
            (inputs / f"{k:04d}_{path.name}").symlink_to(path.resolve())
        start = time.perf_counter()
        pipeline.screen(model, [inputs], folder / f"run-{count}", workers=workers, progress=False, engine=engine,
                        detector=detector)
        seconds.append(time.perf_counter() - start)
    extra = len(paths) - half
    per_field = (seconds[1] - seconds[0]) / extra if extra else float("nan")
    return {"workers": workers, "fields": [half, len(paths)], "seconds": seconds,
            "ms_per_field": 1000 * per_field}


def chula_fields(root: Path, count: int) -> list[Path]:
    folder = root / "smears" / "chula-rbc12" / "Dataset"
    numbers = sorted(int(p.stem) for p in folder.glob("*.jpg") if p.stem.isdigit())
    return [folder / f"{n}.jpg" for n in numbers[CHULA_TUNING:CHULA_TUNING + count]]


def txl_fields(root: Path, count: int) -> list[Path]:
    paths = sorted((root / "smears" / "txl-pbc" / "TXL_PBC" / "images" / "train").glob("*.jpg"))
    tuning = set(paths[::TXL_TUNING_EVERY])
    return [p for p in paths if p not in tuning][:count]


def threads_used(predictor) -> dict:
    """The cores this process may use and the model's thread setting (onnxruntime: 0 is one per core)."""
    return {"cores": len(os.sched_getaffinity(0)), "model_threads": getattr(predictor, "threads", None),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")}


def table(parts: dict[str, dict]) -> str:
    """A Markdown table: one row per part of the benchmark."""
    head = ["fields", "wall ms median", "wall ms p90", "CPU ms median", "CPU ms p90",
            *[f"{s} ms" for s in STAGES], "cores busy (classify)", "red cells"]
    lines = ["| part | " + " | ".join(head) + " |", "|---" * (len(head) + 1) + "|"]
    for name, r in parts.items():
        stages = [f"{r['stage_wall_ms'][s]:.0f} ({r['stage_cpu_ms'][s]:.0f})" for s in STAGES]
        lines.append(f"| {name} | {r['fields']} | {r['wall_ms_median']:.0f} | {r['wall_ms_p90']:.0f} | "
                     f"{r['cpu_ms_median']:.0f} | {r['cpu_ms_p90']:.0f} | " + " | ".join(stages)
                     + f" | {r['cores_busy']:.2f} ({r['cores_busy_classify']:.2f}) | {r['red_median']:.0f} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="malaria", help="the model (run folder, checkpoint, .onnx, malaria)")
    parser.add_argument("--fields", type=int, default=30, help="Chula fields and TXL-PBC fields timed (each)")
    parser.add_argument("--detector", default="classical", help="the cell finder: classical or learned:RUN")
    parser.add_argument("--engine", default="auto", help="the model's engine: auto, onnx, int8 or torch")
    parser.add_argument("--data", default=os.environ.get("CELLSCREEN_DATA", "../shared/data"),
                        help="the data folder holding smears/ (default: $CELLSCREEN_DATA or ../shared/data)")
    parser.add_argument("--skip", choices=("big", "chula", "txl", "workers"), action="append", default=[],
                        help="leave a part out (repeatable); workers: the whole `screen` run with one process "
                        "per core")
    args = parser.parse_args(argv)
    root = Path(args.data)
    if not (root / "smears").is_dir():
        parser.exit(2, f"no smears/ under {root} (give --data or set CELLSCREEN_DATA to the data folder)\n")
    if args.fields < 1:
        parser.error("--fields must be at least 1")
    from cellscreen.errors import UserError  # keeps the module light for the test that imports it
    from cellscreen.screen.learned import learned_finder
    from cellscreen.serve.runtime import load_predictor

    try:
        learned_finder(args.detector)  # an unknown detector is refused here, not after the big field
        predictor = load_predictor(args.model, engine=args.engine)
    except UserError as exc:
        parser.exit(2, f"{exc}\n")
    chula, txl = chula_fields(root, args.fields), txl_fields(root, args.fields)
    parts: dict[str, dict] = {}
    workers = None
    with tempfile.TemporaryDirectory(prefix="screen-speed-") as scratch:
        options = field_options(predictor, Path(scratch), args.detector)
        warm = (chula or txl)[:1]
        if warm:
            time_fields(warm, options, predictor)  # the model's and the finder's first-call costs
        if "big" not in args.skip:
            parts["big 5312x2988"] = time_big_field(root, options, predictor, Path(scratch))
        if "chula" not in args.skip and chula:
            parts["Chula 640x480"] = time_fields(chula, options, predictor)
        if "txl" not in args.skip and txl:
            parts["TXL-PBC"] = time_fields(txl, options, predictor)
        if "workers" not in args.skip and chula:
            workers = time_screen_run(chula, args.model, engine=args.engine, detector=args.detector,
                                      workers=default_workers(), folder=Path(scratch) / "workers")
    threads = threads_used(predictor)
    print(f"model {args.model}, engine {predictor.engine} (--engine {args.engine}), input {predictor.input_size} px, detector "
          f"{args.detector}; cores {threads['cores']}, model threads {threads['model_threads']} "
          f"(onnxruntime: 0 = one per core), OMP_NUM_THREADS={threads['OMP_NUM_THREADS']}")
    print("stage columns: median wall ms (CPU ms) per field")
    print(table(parts))
    if workers:
        print(f"`cellscreen screen` with {workers['workers']} worker processes on Chula fields: "
              f"{workers['ms_per_field']:.0f} ms per field (wall, {workers['fields'][1]} fields against "
              f"{workers['fields'][0]}: {workers['seconds'][1]:.1f} s against {workers['seconds'][0]:.1f} s)")
    big = parts.get("big 5312x2988")
    if big:
        print(f"big field: {big['seconds']:.2f} s best of 3 ({big['seconds_worst']:.2f} s worst), peak memory of "
              f"the process {big['peak_rss_mb']} MB ({big['rss_growth_mb']} MB over the {big['rss_before_mb']} MB "
              "before it)")
    print(json.dumps({"model": args.model, "engine": predictor.engine, "engine_asked": args.engine,
                      "detector": args.detector,
                      "input_size": predictor.input_size, "threads": threads, "load": os.getloadavg(),
                      "parts": parts, "screen_workers": workers}, default=float))


if __name__ == "__main__":
    main()
