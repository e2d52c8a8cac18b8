"""``predict --engine ray``: the same rows as the single-process path, computed on a Ray cluster.

Ray Data spreads the work: the inputs are walked here, in the same sorted
order, and the candidate image paths go, a chunk at a time, into a
``ray.data`` dataset whose ``map_batches`` runs a pool of actors.  Each actor
loads the model itself (the network's ONNX export, shipped once through the
object store, on onnxruntime with one thread) and decodes its image files
itself, so only paths go out and probabilities come back.  The results are
put back in input order here and handed to ``predict.predict_files``, which writes
the journal, the output and its record exactly as for the other engines, so
``--shard``, ``--resume`` and ``--overwrite`` behave the same.

Without an address a local Ray instance is started on this machine's cores
(``--workers`` of them) and shut down at the end.  With ``--ray-address`` (or
``$RAY_ADDRESS``) the run connects to that cluster and only disconnects at the
end.  On a cluster the workers open the files by their absolute path: the
inputs must be on storage every node mounts at the same path (NFS, a shared
volume), and every node needs cellscreen and onnxruntime installed.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from cellscreen.data.parallel import default_workers
from cellscreen.engine.threshold import threshold_of
from cellscreen.errors import UserError
from cellscreen.serve.graph import interpolation_of, onnx_description
from cellscreen.serve.inputs import prepare_files
from cellscreen.serve.outputs import row
from cellscreen.serve.runtime import OnnxPredictor, Predictor, network_onnx

__all__ = ["RayEngine"]

_RAY_CHUNK = 50_000  # paths per Ray dataset: bounds the memory of the driver, whatever the folder size
_FLUSH = 1024  # rows per journal write
_NEEDS_RAY = "--engine ray needs Ray Data: pip install 'cellscreen[ray]'"


def _import_ray():
    try:  # optional dependency
        import ray
        import ray.data
    except ImportError:
        raise UserError(_NEEDS_RAY) from None
    return ray


class _InferenceActor:
    """One Ray actor: decodes a batch of files and runs the ONNX model on them."""

    def __init__(self, model, description: dict, tta: bool, batch_size: int):
        if not isinstance(model, bytes):  # an ObjectRef: fetched from the object store once per actor
            import ray  # optional dependency; an actor runs where Ray is installed

            model = ray.get(model)
        self.predictor = OnnxPredictor(description, model, threads=1)  # one core per actor
        self.prepare = (self.predictor.input_size, self.predictor.border_crop, self.predictor.interpolation)
        self.classes = len(self.predictor.classes)
        self.tta, self.batch_size = tta, batch_size
        self.host = socket.gethostname()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        paths = [str(p) for p in batch["file"]]
        pixels, reasons = prepare_files([Path(p) for p in paths], *self.prepare)
        proba = np.full((len(paths), self.classes), np.nan, np.float32)
        if len(pixels):
            ok = np.array([r is None for r in reasons])
            proba[ok] = np.concatenate([self.predictor.predict(pixels[i:i + self.batch_size], tta=self.tta)
                                        for i in range(0, len(pixels), self.batch_size)])
        return {
            "i": batch["i"],
            "proba": proba,
            "reason": np.array([r or "" for r in reasons], dtype=object),
            # A file the driver listed but this node cannot see: the inputs are not on shared storage.
            "unseen": np.array([not os.path.exists(p) for p in paths]),
            "host": np.array([self.host] * len(paths), dtype=object),
        }


class RayEngine:
    """What ``predict_files`` needs of a predictor (``classes``, ``input_size``, ...), plus ``stream``.

    Loading the model here only prepares the ONNX bytes and the description; Ray
    starts (or is connected to) when ``stream`` begins and stops when it ends.
    """

    engine = "ray"

    def __init__(self, model, *, address: str | None = None):
        _import_ray()
        if isinstance(model, Predictor):  # each actor loads the model itself, from where it came
            if not model.source:
                raise UserError("--engine ray loads the model in every worker; give its path, not a loaded model")
            model = model.source
        self.blob, self.description = _onnx_model(model)
        self.source = str(model)
        self.classes: list[str] = list(self.description["classes"])
        self.positive_class = self.description.get("positive_class")
        self.input_size = int(self.description["data_config"]["input_size"])
        self.border_crop = int(self.description.get("border_crop", 0))
        self.interpolation = interpolation_of(self.description)
        self.address = address or os.environ.get("RAY_ADDRESS") or None

    @contextlib.contextmanager
    def session(self, workers: int | None):
        """Ray for the run: the caller's session if one is up, else the cluster at ``address``, else a local one
        of ``workers`` CPUs (also used by ``screen --engine ray``)."""
        ray = _import_ray()
        from ray.data import DataContext  # optional dependency, there once _import_ray succeeded

        started = False
        if not ray.is_initialized():
            if self.address:
                try:
                    ray.init(address=self.address, log_to_driver=False)
                except ConnectionError as exc:
                    raise UserError(f"cannot connect to the Ray cluster at {self.address}: {exc}") from None
            else:
                ray.init(address="local", num_cpus=workers or default_workers(), include_dashboard=False,
                         log_to_driver=False)
            started = True
        context = DataContext.get_current()
        before = context.enable_progress_bars
        progress_log = logging.getLogger("ray.data._internal.progress")
        level = progress_log.level
        context.enable_progress_bars = False  # predict_files shows its own bar
        progress_log.setLevel(logging.ERROR)  # and no warning that Ray's are off
        try:
            yield ray
        finally:
            context.enable_progress_bars = before
            progress_log.setLevel(level)
            if started:
                ray.shutdown()  # stops a local instance; only disconnects from a cluster

    def stream(self, selected: Iterator[tuple[Path, str | None]], *, batch_size: int = 256, tta: bool = False,
               workers: int | None = None) -> Iterator[list[list[str]]]:
        """Rows for ``selected`` in its order, about ``_FLUSH`` at a time (as ``predict._predict_stream``)."""
        with self.session(workers) as ray:
            actors = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
            blob = ray.put(self.blob)
            chunk: list[tuple[Path, str | None]] = []
            for item in selected:
                chunk.append(item)
                if len(chunk) == _RAY_CHUNK:
                    yield from self._chunk(ray, chunk, blob, batch_size, tta, actors)
                    chunk = []
            if chunk:
                yield from self._chunk(ray, chunk, blob, batch_size, tta, actors)

    def _chunk(self, ray, items, blob, batch_size: int, tta: bool, actors: int) -> Iterator[list[list[str]]]:
        """Rows of one chunk of the walk: its candidate files go through a Ray dataset, the rest are skipped here."""
        # Workers may run elsewhere, in another folder: they get absolute paths; the rows keep the paths as walked.
        candidates = [{"i": k, "file": os.path.abspath(path)} for k, (path, reason) in enumerate(items)
                      if reason is None]
        batches: Iterator[dict[str, np.ndarray]] = iter(())
        if candidates:
            # Batches small enough that a small input still reaches every actor; one block per batch.
            per_call = max(1, min(batch_size, math.ceil(len(candidates) / actors)))
            dataset = ray.data.from_items(candidates, override_num_blocks=math.ceil(len(candidates) / per_call))
            dataset = dataset.map_batches(
                _InferenceActor, batch_size=per_call, batch_format="numpy", num_cpus=1,
                compute=ray.data.ActorPoolStrategy(min_size=1, max_size=actors),
                fn_constructor_kwargs={"model": blob, "description": self.description, "tta": tta,
                                       "batch_size": batch_size})
            batches = iter(dataset.iter_batches(batch_size=None, batch_format="numpy"))
        with contextlib.closing(batches) if hasattr(batches, "close") else contextlib.nullcontext():
            yield from self._in_order(items, batches)

    def _in_order(self, items, batches) -> Iterator[list[list[str]]]:
        """The rows of ``items`` in their order, from result batches that come back in any order."""
        results: dict[int, tuple[np.ndarray | None, str | None]] = {}
        done, rows = 0, []

        def ready() -> None:  # move the finished prefix, in input order, into rows
            nonlocal done
            while done < len(items):
                path, reason = items[done]
                if reason is None:
                    if done not in results:
                        return
                    proba, reason = results.pop(done)
                    rows.append(row(path, self.classes, proba=proba, reason=reason,
                                    positive_class=self.positive_class, threshold=threshold_of(self.description)))
                else:
                    rows.append(row(path, self.classes, reason=reason))
                done += 1

        for batch in batches:
            for i, proba, reason, unseen, host in zip(batch["i"], batch["proba"], batch["reason"],
                                                      batch["unseen"], batch["host"]):
                path = items[int(i)][0]
                if unseen and path.exists():
                    raise UserError(f"{path} is here but not on Ray node {host}: with --engine ray the inputs "
                                    "must be on storage every node mounts at the same path")
                results[int(i)] = (None, str(reason)) if reason else (proba, None)
            ready()
            if len(rows) >= _FLUSH:
                yield rows
                rows = []
        ready()
        if done != len(items):  # cannot happen unless Ray lost rows
            raise RuntimeError(f"Ray returned {done} of {len(items)} rows")
        if rows:
            yield rows


def _onnx_model(model) -> tuple[bytes, dict]:
    """The network's ONNX bytes and description, as ``load_predictor(model, engine="onnx")`` would run them."""
    path = Path(model)
    if path.suffix == ".onnx":
        if not path.is_file():
            raise UserError(f"no such ONNX file: {path}")
        return path.read_bytes(), onnx_description(path)

    return network_onnx(model)
