"""One interface over the two ways of running a model: PyTorch and onnxruntime.

``load_predictor(model, engine=...)`` accepts what the command line accepts
(a run folder, a ``model.json``, the bundled name ``malaria``) and also an
exported ``.onnx`` file.  Every predictor takes prepared ``uint8`` pixels
``(N, size, size, 3)`` and returns class probabilities ``(N, classes)``.

``engine="onnx"`` on a checkpoint runs its fp32 graph: ``model.onnx`` beside
its ``model.json`` when that was exported from these weights (``cellscreen
export RUN --out RUN/model.onnx`` writes it; the bundled model has one), else
an export made once into the cache folder (keyed by the checkpoint's
contents); the PyTorch model is kept for Grad-CAM.  ``engine="int8"`` runs the checkpoint's 8-bit graph,
``model.int8.onnx`` beside its ``model.json`` (``cellscreen export RUN
--format onnx-int8 --out RUN/model.int8.onnx`` writes it; the bundled model
has one), after checking that it was made from these weights.
``engine="auto"`` picks onnxruntime for networks and PyTorch for SVM
baselines and ensembles, which have no ONNX form here.

It stands on ``graph`` (the names and description every graph shares) and
calls ``export`` only to make a graph a checkpoint lacks; ``predict`` and
``app`` stand on it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from cellscreen.data.sources import default_cache_dir
from cellscreen.engine.paths import file_sha256, resolve_checkpoint
from cellscreen.engine.validate import check_weights_file, read_description
from cellscreen.engine.threshold import threshold_of
from cellscreen.errors import UserError
from cellscreen.serve.graph import INPUT_NAME, OUTPUT_NAMES, describe_meta, interpolation_of, onnx_description, \
    onnx_session

__all__ = ["ENGINES", "PRECISIONS", "INT8_NAME", "FP32_NAME", "Predictor", "OnnxPredictor", "check_precision",
           "load_predictor", "network_onnx", "dihedral_views_nhwc"]

ENGINES = ("auto", "torch", "onnx", "int8")
# What a model run in PyTorch computes in: fp32, or bf16 autocast (about twice as fast on a CPU with bf16
# units, and the class of a few cells in ten thousand may differ); an ONNX graph keeps the precision it was
# exported in
PRECISIONS = ("32", "bf16")
INT8_NAME = "model.int8.onnx"  # a checkpoint's 8-bit graph, beside its model.json
FP32_NAME = "model.onnx"  # a checkpoint's fp32 graph, beside its model.json (optional: else exported into the cache)


def dihedral_views_nhwc(images: np.ndarray) -> list[np.ndarray]:
    """The 8 rotations/flips of ``(N, H, W, C)`` images, in the order of ``augment.dihedral_views``."""
    views = [np.ascontiguousarray(np.rot90(images, k, axes=(1, 2))) for k in range(4)]
    return views + [np.ascontiguousarray(v[:, :, ::-1]) for v in views]


class Predictor:
    """A loaded model: ``classes``, ``positive_class``, ``input_size``, ``border_crop``, ``engine``, and
    ``predict(images, tta=False)``.  ``torch_model`` is the PyTorch network when there is one (Grad-CAM); on
    onnxruntime it is loaded on first use, so prediction alone never imports PyTorch."""

    engine = "torch"

    def __init__(self, description: dict, torch_model=None, source: str = "",
                 load_torch: Callable[[], object] | None = None, precision: str = "32"):
        self.description = description
        self.precision: str | None = precision  # on PyTorch, one of PRECISIONS; None: a graph's own
        self.classes: list[str] = list(description["classes"])
        self.positive_class: str | None = description.get("positive_class")
        self.decision_threshold: float = threshold_of(description)  # on the positive class's probability
        self.input_size = int(description["data_config"]["input_size"])
        self.border_crop = int(description.get("border_crop", 0))
        self.interpolation = interpolation_of(description)
        self._torch_model, self._load_torch = torch_model, load_torch
        self.source = source

    @property
    def torch_model(self):
        if self._torch_model is None and self._load_torch is not None:
            self._torch_model = self._load_torch()
        return self._torch_model

    def _predict(self, images: np.ndarray) -> np.ndarray:
        from cellscreen.engine.inference import predict_proba  # keeps start-up fast: PyTorch, needed only here

        return predict_proba(self.torch_model, images, precision=self.precision)

    def predict(self, images: np.ndarray, *, tta: bool = False) -> np.ndarray:
        """Probabilities ``(N, classes)`` for ``(N, size, size, 3)`` uint8 images."""
        images = np.ascontiguousarray(images, dtype=np.uint8)
        if images.ndim != 4 or images.shape[1:] != (self.input_size, self.input_size, 3):
            raise ValueError(f"expected (N, {self.input_size}, {self.input_size}, 3) uint8, got {images.shape}")
        if len(images) == 0:
            return np.zeros((0, len(self.classes)), np.float32)
        if tta:
            proba = np.mean([self._predict(view) for view in dihedral_views_nhwc(images)], axis=0)
        else:
            proba = self._predict(images)
        if not np.isfinite(proba).all():  # never passed on as if it were an answer
            bad = int((~np.isfinite(proba)).any(axis=1).sum())
            raise UserError(f"{self.source or 'the model'} gave {bad} of {len(images)} image(s) NaN or infinity, "
                            "not a finite probability: its weights or description are damaged; copy or retrain it")
        return proba

    def predict_batched(self, images: np.ndarray, batch_size: int = 256, *, tta: bool = False) -> np.ndarray:
        """``predict`` over ``batch_size`` images at a time, so memory stays bounded for any ``N``."""
        if len(images) == 0:
            return np.zeros((0, len(self.classes)), np.float32)
        return np.concatenate([self.predict(images[i:i + batch_size], tta=tta)
                               for i in range(0, len(images), batch_size)])

    def info(self) -> dict:
        """What ``GET /v1/model`` and the web page show."""
        d = self.description
        return {"model": d.get("model"), "engine": self.engine, "source": self.source, "classes": self.classes,
                "positive_class": self.positive_class, "decision_threshold": self.decision_threshold,
                "dataset": d.get("dataset"), "input_size": self.input_size,
                "border_crop": self.border_crop, "interpolation": self.interpolation, "precision": self.precision,
                "metric": d.get("source", d).get("metric"), "split": d.get("source", d).get("split"),
                "temperature": d.get("temperature", 1.0), "cellscreen": d.get("cellscreen"),
                "gradcam": (self._torch_model is not None or self._load_torch is not None)
                and d.get("kind", "network") == "network"}


class OnnxPredictor(Predictor):
    engine = "onnx"

    def __init__(self, description: dict, model: bytes | str, torch_model=None, source: str = "",
                 threads: int | None = None, load_torch: Callable[[], object] | None = None,
                 graph_file: str | Path | None = None):
        super().__init__(description, torch_model, source, load_torch, precision=None)
        self._model = model
        self.threads = threads or 0  # onnxruntime's intra-op threads; 0: its default, one per physical core
        # graph_file: the file the graph was read from, named if onnxruntime cannot load it
        self._session = onnx_session(model, threads, name=graph_file or (model if isinstance(model, str) else source))
        self._input, self._output = INPUT_NAME, OUTPUT_NAMES[0]

    def worker_spec(self) -> tuple[dict, bytes, str]:
        """What a worker process needs to load its own copy, ``OnnxPredictor(*spec, threads=1)``: the graph's
        bytes, so every worker runs the file this process loaded even if it changes on disk meanwhile."""
        model = self._model if isinstance(self._model, bytes) else Path(self._model).read_bytes()
        return self.description, model, self.source

    def _predict(self, images: np.ndarray) -> np.ndarray:
        return self._session.run([self._output], {self._input: images})[0]


def network_onnx(model: str | Path) -> tuple[bytes, dict]:
    """A network checkpoint's ONNX export and description: its own ``model.onnx`` if that was exported from
    these weights, else one exported once and then read from the cache folder (keyed by the checkpoint's
    description and weights).  Either way a model starts without PyTorch after the first time."""
    blob, description, _ = _network_graph(model)
    return blob, description


def _network_graph(model: str | Path) -> tuple[bytes, dict, Path | None]:
    """``network_onnx``, and the file the graph was read from (None: exported just now)."""
    path = resolve_checkpoint(model)
    meta = read_description(path)
    text = path.read_bytes()
    if meta.get("kind", "network") != "network":
        raise UserError(f"a {meta['kind']} has no ONNX form; use --engine torch")
    weights = path.with_suffix(".safetensors")
    digest = file_sha256(weights) if weights.is_file() else None
    if digest is None or (meta.get("weights_sha256") and digest != meta["weights_sha256"]):
        from cellscreen.engine.kinds import load_checkpoint  # keeps start-up fast: PyTorch

        load_checkpoint(model)  # says what is wrong with the weights
    check_weights_file(weights)  # finite, whatever made the checksum match
    key = hashlib.sha256(text + digest.encode()).hexdigest()[:24]
    cached = default_cache_dir() / "onnx" / f"{key}.onnx"
    description = describe_meta(meta, "checkpoint", digest)
    own = path.with_name(FP32_NAME)
    if _own_graph(own, "onnx", description):  # a stale or unreadable one is passed over, not refused:
        return own.read_bytes(), description, own  # the export below gives the same probabilities
    if cached.is_file():
        return cached.read_bytes(), description, cached
    # only the first run of a checkpoint without its graph exports one (PyTorch, and the ONNX exporter)
    from cellscreen.engine.kinds import load_checkpoint
    from cellscreen.serve.export import onnx_bytes

    blob = onnx_bytes(load_checkpoint(model))
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        # not files.atomic_write: several processes may fill the cache at once, each needs its own partial file
        tmp = cached.with_name(cached.name + f".{id(blob)}.partial")
        tmp.write_bytes(blob)
        tmp.replace(cached)
    except OSError:
        pass  # a read-only cache only costs the export again next time
    return blob, description, None


def _made_from(description: dict, fmt: str, weights_sha256: str) -> bool:
    """Whether a graph's description says it is a ``fmt`` export of the weights with this digest."""
    return description.get("format") == fmt and (description.get("source") or {}).get(
        "weights_sha256") == weights_sha256


def _own_graph(graph: Path, fmt: str, wanted: dict) -> bool:
    """Whether ``graph`` is there and a ``fmt`` export of the checkpoint described by ``wanted``: the same
    weights, and the same classes, temperature and preprocessing (which ``model.json`` could change alone)."""
    try:
        found = onnx_description(graph) if graph.is_file() else None
    except (UserError, ValueError):
        return False
    return found is not None and _made_from(found, fmt, wanted["source"]["weights_sha256"]) and all(
        found.get(key) == wanted.get(key) for key in ("classes", "temperature", "border_crop", "data_config"))


def _int8_predictor(model: str | Path, threads: int | None) -> Predictor:
    """The checkpoint's ``model.int8.onnx``, refused if it is missing or was made from other weights."""
    checkpoint = resolve_checkpoint(model)
    path = checkpoint.with_name(INT8_NAME)
    export = f"cellscreen export {model} --format onnx-int8 --out {path}"
    if not path.is_file():
        raise UserError(f"{model} has no 8-bit graph ({path} is missing); make one with `{export}` "
                        "(it calibrates on cells of the model's dataset, or pass --check-data)")
    description = onnx_description(path)
    weights = checkpoint.with_suffix(".safetensors")
    if not weights.is_file() or not _made_from(description, "onnx-int8", file_sha256(weights)):
        raise UserError(f"{path} was not made from {weights.name} (it is stale or not an int8 export); "
                        f"make it again with `{export} --overwrite`")

    def load_torch():
        from cellscreen.engine.kinds import load_checkpoint  # keeps start-up fast: PyTorch, for Grad-CAM only

        return load_checkpoint(model).model

    return OnnxPredictor(description, str(path), source=str(path), threads=threads, load_torch=load_torch)


def check_precision(precision: str) -> str:
    """``precision`` if it is one of ``PRECISIONS``, else a ``UserError`` that lists them."""
    if precision not in PRECISIONS:
        raise UserError(f"unknown precision {precision!r}; choose one of: {', '.join(PRECISIONS)}")
    return precision


def load_predictor(model: str | Path, *, engine: str = "auto", threads: int | None = None,
                   precision: str = "32") -> Predictor:
    """Load ``model`` (checkpoint, run folder, bundled name or ``.onnx`` file) on ``engine``.

    ``precision`` (one of ``PRECISIONS``) is for a model run in PyTorch: ``"bf16"`` with ``engine="auto"``
    runs a network there rather than on onnxruntime, and is refused with an ONNX engine."""
    if engine not in ENGINES:
        raise UserError(f"unknown engine {engine!r}; choose one of: {', '.join(ENGINES)}")
    check_precision(precision)
    if precision != "32" and (engine in ("onnx", "int8") or Path(model).suffix == ".onnx"):
        what = "an ONNX file" if Path(model).suffix == ".onnx" else f"--engine {engine}"
        raise UserError(f"--precision {precision} is for models run in PyTorch (--engine torch); {what} runs on "
                        "onnxruntime in the precision its graph was exported in")
    if precision != "32" and engine == "auto":
        engine = "torch"  # only PyTorch computes in bf16
    path = Path(model)
    if path.suffix == ".onnx":
        if engine == "torch":
            raise UserError(f"{path} is an ONNX file; it runs on onnxruntime (use --engine onnx or auto)")
        if not path.is_file():
            raise UserError(f"no such ONNX file: {path}")
        return OnnxPredictor(onnx_description(path), str(path), source=str(path), threads=threads)

    if engine == "int8":
        return _int8_predictor(model, threads)
    kind = read_description(resolve_checkpoint(model)).get("kind", "network")
    if engine == "onnx" and kind != "network":
        raise UserError(f"a {kind} has no ONNX form; use --engine torch")
    if engine == "onnx" or (engine == "auto" and kind == "network"):
        blob, description, graph_file = _network_graph(model)

        def load_torch():
            from cellscreen.engine.kinds import load_checkpoint  # keeps start-up fast: PyTorch, for Grad-CAM only

            return load_checkpoint(model).model

        return OnnxPredictor(description, blob, source=str(model), threads=threads, load_torch=load_torch,
                             graph_file=graph_file)
    # a model run in PyTorch: only now is PyTorch imported
    from cellscreen.engine.kinds import load_checkpoint
    from cellscreen.serve.export import describe  # export imports PyTorch

    checkpoint = load_checkpoint(model)
    description = describe(checkpoint, "checkpoint") if kind == "network" else {
        **checkpoint.meta, "border_crop": checkpoint.border_crop}
    return Predictor(description, checkpoint.model, source=str(model), precision=precision)
