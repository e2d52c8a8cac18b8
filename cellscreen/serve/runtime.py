"""One interface over the two ways of running a model: PyTorch and onnxruntime.

``load_predictor(model, engine=...)`` accepts what the command line accepts
(a run folder, a ``model.json``, the bundled name ``malaria``) and also an
exported ``.onnx`` file.  Every predictor takes prepared ``uint8`` pixels
``(N, size, size, 3)`` and returns class probabilities ``(N, classes)``.

``engine="onnx"`` on a checkpoint exports it once into the cache folder
(keyed by the checkpoint's contents) and runs that file, keeping the PyTorch
model for Grad-CAM.  ``engine="auto"`` picks onnxruntime for networks and
PyTorch for SVM baselines and ensembles, which have no ONNX form here.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from cellscreen.errors import UserError

__all__ = ["ENGINES", "Predictor", "load_predictor", "dihedral_views_nhwc"]

ENGINES = ("auto", "torch", "onnx")


def dihedral_views_nhwc(images: np.ndarray) -> list[np.ndarray]:
    """The 8 rotations/flips of ``(N, H, W, C)`` images, in the order of ``augment.dihedral_views``."""
    views = [np.ascontiguousarray(np.rot90(images, k, axes=(1, 2))) for k in range(4)]
    return views + [np.ascontiguousarray(v[:, :, ::-1]) for v in views]


class Predictor:
    """A loaded model: ``classes``, ``positive_class``, ``input_size``, ``border_crop``, ``engine``, and
    ``predict(images, tta=False)``.  ``torch_model`` is the PyTorch network when there is one (Grad-CAM)."""

    engine = "torch"

    def __init__(self, description: dict, torch_model: torch.nn.Module | None = None, source: str = ""):
        self.description = description
        self.classes: list[str] = list(description["classes"])
        self.positive_class: str | None = description.get("positive_class")
        self.input_size = int(description["data_config"]["input_size"])
        self.border_crop = int(description.get("border_crop", 0))
        self.torch_model = torch_model
        self.source = source

    def _predict(self, images: np.ndarray) -> np.ndarray:
        from cellscreen.engine.inference import predict_proba

        return predict_proba(self.torch_model, images)

    def predict(self, images: np.ndarray, *, tta: bool = False) -> np.ndarray:
        """Probabilities ``(N, classes)`` for ``(N, size, size, 3)`` uint8 images."""
        images = np.ascontiguousarray(images, dtype=np.uint8)
        if images.ndim != 4 or images.shape[1:] != (self.input_size, self.input_size, 3):
            raise ValueError(f"expected (N, {self.input_size}, {self.input_size}, 3) uint8, got {images.shape}")
        if len(images) == 0:
            return np.zeros((0, len(self.classes)), np.float32)
        if not tta:
            return self._predict(images)
        return np.mean([self._predict(view) for view in dihedral_views_nhwc(images)], axis=0)

    def info(self) -> dict:
        """What ``GET /v1/model`` and the web page show."""
        d = self.description
        return {"model": d.get("model"), "engine": self.engine, "source": self.source, "classes": self.classes,
                "positive_class": self.positive_class, "dataset": d.get("dataset"), "input_size": self.input_size,
                "border_crop": self.border_crop, "metric": d.get("source", d).get("metric"), "split": d.get("source", d).get("split"),
                "temperature": d.get("temperature", 1.0), "cellscreen": d.get("cellscreen"),
                "gradcam": self.torch_model is not None and d.get("kind", "network") == "network"}


class OnnxPredictor(Predictor):
    engine = "onnx"

    def __init__(self, description: dict, model: bytes | str, torch_model=None, source: str = "",
                 threads: int | None = None):
        super().__init__(description, torch_model, source)
        from cellscreen.serve.export import INPUT_NAME, OUTPUT_NAMES, _onnx_session

        self._session = _onnx_session(model, threads)
        self._input, self._output = INPUT_NAME, OUTPUT_NAMES[0]

    def _predict(self, images: np.ndarray) -> np.ndarray:
        return self._session.run([self._output], {self._input: images})[0]


def _onnx_description(path: Path) -> dict:
    """The description saved beside an exported file, else the one inside its metadata."""
    beside = path.with_name(path.name + ".json")
    if beside.is_file():
        return json.loads(beside.read_text())
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise UserError(f"{path} is not a readable ONNX file ({exc})") from None
    for entry in proto.metadata_props:
        if entry.key == "cellscreen":
            return json.loads(entry.value)
    raise UserError(f"{path} has no cellscreen description (neither {beside.name} nor ONNX metadata); "
                    "export it with `cellscreen export`")


def _cached_onnx(checkpoint) -> bytes:
    """The checkpoint's ONNX export, made once and kept in the cache folder."""
    from cellscreen.data.sources import default_cache_dir
    from cellscreen.serve.export import _weights_digest, onnx_bytes

    key = hashlib.sha256((json.dumps(checkpoint.meta, sort_keys=True) + _weights_digest(checkpoint)).encode())
    path = default_cache_dir() / "onnx" / f"{key.hexdigest()[:24]}.onnx"
    if path.is_file():
        return path.read_bytes()
    blob = onnx_bytes(checkpoint)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".{id(blob)}.partial")
        tmp.write_bytes(blob)
        tmp.replace(path)
    except OSError:
        pass  # a read-only cache only costs the export again next time
    return blob


def load_predictor(model: str | Path, *, engine: str = "auto", threads: int | None = None) -> Predictor:
    """Load ``model`` (checkpoint, run folder, bundled name or ``.onnx`` file) on ``engine``."""
    if engine not in ENGINES:
        raise UserError(f"unknown engine {engine!r}; choose one of: {', '.join(ENGINES)}")
    path = Path(model)
    if path.suffix == ".onnx":
        if engine == "torch":
            raise UserError(f"{path} is an ONNX file; it runs on onnxruntime (use --engine onnx or auto)")
        if not path.is_file():
            raise UserError(f"no such ONNX file: {path}")
        return OnnxPredictor(_onnx_description(path), str(path), source=str(path), threads=threads)

    from cellscreen.engine.checkpoint import load_checkpoint
    from cellscreen.serve.export import describe

    checkpoint = load_checkpoint(model)
    network = checkpoint.meta.get("kind", "network") == "network"
    description = describe(checkpoint, "checkpoint") if network else {**checkpoint.meta,
                                                                       "border_crop": checkpoint.border_crop}
    if engine == "onnx" and not network:
        raise UserError(f"a {checkpoint.meta['kind']} has no ONNX form; use --engine torch")
    if engine == "torch" or (engine == "auto" and not network):
        return Predictor(description, checkpoint.model, source=str(model))
    return OnnxPredictor(description, _cached_onnx(checkpoint), checkpoint.model, source=str(model), threads=threads)
