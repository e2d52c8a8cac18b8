"""``screen --engine ray``: whole fields screened on a Ray cluster, written here as a local run writes them.

Ray Data spreads the fields: the inputs are walked here (one shard of them,
after the fields an interrupted run finished), and the image files go, a chunk
at a time, into a ``ray.data`` dataset whose ``map_batches`` runs a pool of
actors.  Each actor loads the model once (the network's ONNX graph, shipped
through the object store, on onnxruntime with one thread; a pool serves a chunk
of up to ``_FIELDS_CHUNK`` fields) and does the whole
work of a field with ``pipeline.screen_field``: read it, find the cells, cut
and classify the red ones, count, draw the overlay.  Only the path goes out;
the field's rows and its overlay's PNG bytes come back.

Here the overlays are written as they arrive and the rows are handed, in
input order, to ``pipeline.screen``'s own loop, which journals them, resumes
and finishes the run (samples, report, record) exactly as without Ray: the
same files, byte for byte, but for the engine the record and report name.

Without an address a local Ray instance of ``workers`` CPUs is started and
stopped at the end; with ``address`` (or ``$RAY_ADDRESS``) the run joins that
cluster (``cellscreen.serve.distributed.RayEngine`` does both, as for
``predict --engine ray``).  On a cluster the actors open the inputs by the
path walked here, from this process's working folder: inputs (and a learned
detector's run folder) must be on storage every node mounts at the same path.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import math
import os
import pickle
import socket
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from cellscreen.errors import UserError
from cellscreen.files import atomic_write
from cellscreen.screen.pipeline import FieldOptions, screen, screen_field
from cellscreen.screen.run_folder import IMAGE_COLUMNS, OVERLAYS, shown_path, skipped_row
from cellscreen.serve.distributed import RayEngine
from cellscreen.serve.runtime import OnnxPredictor, Predictor

__all__ = ["RayScreening", "screen_on_ray"]

_FIELDS_CHUNK = 20_000  # fields per Ray dataset: bounds the driver's memory, whatever the folder size
_FIELDS_PER_CALL = 8  # at most this many fields per actor call (fewer when there are few fields)
_OVERLAY = IMAGE_COLUMNS.index("overlay")


class _FieldActor:
    """One Ray actor: screens whole fields with its own copy of the model, returns their rows and overlays."""

    def __init__(self, model, description: dict, source: str, options: FieldOptions, folder: str):
        if not isinstance(model, bytes):  # an ObjectRef: fetched from the object store once per actor
            import ray  # optional dependency; an actor runs where Ray is installed

            model = ray.get(model)
        self.predictor = OnnxPredictor(description, model, source=source, threads=1)  # one core per actor
        self.options = options
        if os.path.isdir(folder):
            os.chdir(folder)  # relative inputs and run folders mean what they mean to the driver
        self.host = socket.gethostname()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # screen_field draws the overlay into options.out: here a scratch folder, read back and sent home
        with tempfile.TemporaryDirectory(prefix="cellscreen-overlays-") as scratch:
            (Path(scratch) / OVERLAYS).mkdir()
            results, unseen = self._screen(batch, dataclasses.replace(self.options, out=scratch))
        return {"i": batch["i"], "result": np.array(results, dtype=object), "unseen": np.array(unseen),
                "host": np.array([self.host] * len(results), dtype=object)}

    def _screen(self, batch: dict[str, np.ndarray], options: FieldOptions) -> tuple[list[bytes], list[bool]]:
        """Each field's pickled result (rows and overlay, or the UserError it raised), and whether its file was
        missing here."""
        results, unseen = [], []
        for file, index in zip(batch["file"], batch["index"]):
            path = Path(str(file))
            try:
                image_row, cell_rows = screen_field(path, int(index), options, self.predictor)
            except UserError as exc:  # said in one line by the driver, not as Ray's traceback
                results.append(pickle.dumps(exc))
                unseen.append(False)
                continue
            overlay = b""
            if image_row[_OVERLAY]:
                drawn = Path(options.out) / image_row[_OVERLAY]
                overlay = drawn.read_bytes()
                drawn.unlink()
            results.append(pickle.dumps((image_row, cell_rows, overlay)))  # exact values, ints stay ints
            # A file the driver listed but this node cannot see: the inputs are not on shared storage.
            unseen.append(not os.path.lexists(path))
        return results, unseen


class RayScreening(Predictor):
    """A model whose fields are screened by Ray actors: what ``pipeline.screen`` reads of a predictor (classes,
    description, ...), and ``screen_fields``, which its field loop calls instead of screening here."""

    engine = "ray"

    def __init__(self, model, *, address: str | None = None, workers: int | None = None):
        self.cluster = RayEngine(model, address=address)  # refuses a missing Ray; reads the ONNX graph
        super().__init__(self.cluster.description, source=self.cluster.source, precision=None)
        self.workers = workers

    def _predict(self, images: np.ndarray) -> np.ndarray:
        raise RuntimeError("RayScreening screens whole fields on its actors (screen_fields), not images here")

    def screen_fields(self, todo: Iterator[tuple[int, Path, str | None]],
                      options: FieldOptions) -> Iterator[tuple[list, list[list]]]:
        """The ``(images.csv row, cells.csv rows)`` of each input of ``todo`` in its order; each field's overlay
        is in ``options.out`` before its rows are handed on."""
        with self.cluster.session(self.workers) as ray:
            actors = self.workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
            blob = ray.put(self.cluster.blob)
            while chunk := list(itertools.islice(todo, _FIELDS_CHUNK)):
                yield from self._chunk(ray, chunk, blob, options, actors)

    def _chunk(self, ray, items: list, blob, options: FieldOptions,
               actors: int) -> Iterator[tuple[list, list[list]]]:
        """The rows of one chunk of the walk: its image files go through a Ray dataset, the rest are skipped."""
        candidates = [{"i": k, "file": str(path), "index": index} for k, (index, path, reason) in enumerate(items)
                      if reason is None]
        batches: Iterator[dict[str, np.ndarray]] = iter(())
        if candidates:
            # A few calls per actor at least, so that a small run still reaches every actor.
            per_call = max(1, min(_FIELDS_PER_CALL, math.ceil(len(candidates) / (4 * actors))))
            dataset = ray.data.from_items(candidates, override_num_blocks=math.ceil(len(candidates) / per_call))
            dataset = dataset.map_batches(
                _FieldActor, batch_size=per_call, batch_format="numpy", num_cpus=1,
                compute=ray.data.ActorPoolStrategy(min_size=1, max_size=actors),
                fn_constructor_kwargs={"model": blob, "description": self.description, "source": self.source,
                                       "options": options, "folder": os.getcwd()})
            batches = iter(dataset.iter_batches(batch_size=None, batch_format="numpy"))
        with contextlib.closing(batches) if hasattr(batches, "close") else contextlib.nullcontext():
            yield from _in_order(items, batches, Path(options.out))


def _in_order(items: list, batches, out: Path) -> Iterator[tuple[list, list[list]]]:
    """The rows of ``items`` in their order, from result batches that come back in any order; each overlay is
    written into ``out`` as it arrives."""
    results: dict[int, tuple[list, list[list]]] = {}
    done = 0

    def finished() -> Iterator[tuple[list, list[list]]]:  # the rows of the finished prefix, in input order
        nonlocal done
        while done < len(items) and (items[done][2] is not None or done in results):
            _, path, reason = items[done]
            done += 1
            yield (skipped_row(shown_path(path), reason), []) if reason is not None else results.pop(done - 1)

    for batch in batches:
        for i, result, unseen, host in zip(batch["i"], batch["result"], batch["unseen"], batch["host"]):
            path = items[int(i)][1]
            if unseen and os.path.lexists(path):
                raise UserError(f"{path} is here but not on Ray node {host}: with --engine ray the inputs must be "
                                "on storage every node mounts at the same path")
            result = pickle.loads(result)  # written by our own actors, just now
            if isinstance(result, UserError):
                raise UserError(f"{path} on Ray node {host}: {result}")
            image_row, cell_rows, overlay = result
            if overlay:
                atomic_write(out / image_row[_OVERLAY], overlay)
            results[int(i)] = (image_row, cell_rows)
        yield from finished()
    yield from finished()
    if done != len(items):  # cannot happen unless Ray lost rows
        raise RuntimeError(f"Ray returned {done} of {len(items)} fields")


def screen_on_ray(model, inputs: Sequence[str | Path], out: str | Path, *, ray_address: str | None = None,
                  workers: int | None = None, **options) -> dict[str, int]:
    """``pipeline.screen`` with its fields screened on Ray: the cluster at ``ray_address`` (or
    ``$RAY_ADDRESS``), else a local instance of ``workers`` CPUs (default: one per core); ``workers`` actors
    (default: one per CPU of the cluster).  ``options`` are ``screen``'s (resume, shard, detector, ...)."""
    if options.get("engine", "ray") != "ray":
        raise UserError("--engine ray runs the model's ONNX graph on every actor; give no other engine with it")
    options.pop("engine", None)
    return screen(RayScreening(model, address=ray_address, workers=workers), inputs, out, **options)
