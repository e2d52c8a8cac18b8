"""What every exported graph shares, and reading it back: the bottom of ``cellscreen.serve``.

An exported graph takes ``uint8`` pixels named ``images`` and returns
``probabilities`` and ``logits``; beside it (``FILE.json``) and inside its
metadata travels a description: classes, preprocessing, provenance.  This
module holds those names, writes the description from a checkpoint's
``model.json`` (``describe_meta``), reads it back from a file
(``onnx_description``) and opens an onnxruntime session.  It imports neither
PyTorch nor any other module of ``cellscreen.serve``; the stack above it is
``export`` (writing graphs), ``runtime`` (loading a predictor), ``outputs`` and
``inputs`` (prediction files), ``distributed`` and ``predict``, then ``app``.
"""

from __future__ import annotations

import json
from pathlib import Path

from cellscreen import __version__
from cellscreen.data.images import UNRECORDED_INTERPOLATION, check_interpolation
from cellscreen.engine.validate import check_description, read_description
from cellscreen.errors import UserError

__all__ = ["INPUT_NAME", "OUTPUT_NAMES", "onnx_session", "describe_meta", "onnx_description", "interpolation_of"]

INPUT_NAME, OUTPUT_NAMES = "images", ("probabilities", "logits")  # of every exported graph


def onnx_session(model: bytes | str, threads: int | None = None, *, name: str | Path | None = None):
    """An onnxruntime CPU session for a file or serialised model; ``name``: the file a message names if
    onnxruntime cannot load it (default: ``model`` when it is a path)."""
    import onnxruntime as ort  # keeps start-up fast: only a command that runs a graph needs it

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    options.log_severity_level = 3
    # Idle onnxruntime threads spin by default, taking the CPU from the processes decoding the next images.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's errors (InvalidProtobuf, Fail, ...) derive from Exception only
        what = name or (model if isinstance(model, str) else "the ONNX graph")
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{what} cannot be loaded by onnxruntime ({reason}): it is damaged or not an ONNX graph; "
                        "delete it, or make it again with `cellscreen export`") from None


def interpolation_of(description: dict) -> str:
    """How a described model's cells are resized (one described before the choice existed: exact bicubic)."""
    return check_interpolation(description["data_config"].get("interpolation", UNRECORDED_INTERPOLATION))


def describe_meta(meta: dict, fmt: str, weights_sha256: str | None = None) -> dict:
    """What a runtime needs besides the graph, from a checkpoint's ``model.json``: classes, preprocessing,
    input and output names, provenance."""
    config = meta["data_config"]
    size, crop = int(config["input_size"]), int(meta.get("border_crop", 0))
    return {
        "format": fmt,
        "cellscreen": __version__,
        "model": meta["model"],
        "classes": meta["classes"],
        "positive_class": meta.get("positive_class"),
        # a cell is called positive from this probability of the positive class on (engine/threshold.py)
        "decision_threshold": meta.get("decision_threshold"),
        "decision": meta.get("decision"),
        "dataset": meta.get("dataset"),
        "group_regex": meta.get("group_regex"),
        "kind": meta.get("kind", "network"),
        "border_crop": crop,
        "temperature": float(meta.get("temperature", 1.0)),
        "input": {"name": INPUT_NAME, "dtype": "uint8", "shape": ["batch", size, size, 3], "layout": "NHWC RGB"},
        "outputs": list(OUTPUT_NAMES),
        "preprocessing": {
            "border_crop": crop,
            "pad_to_square": "centred, black",
            "resize": {"size": size, "interpolation": config.get("interpolation", "bicubic"), "antialias": True},
            "normalisation": {"mean": list(config["mean"]), "std": list(config["std"]), "inside_graph": True},
        },
        "data_config": dict(config),
        "source": {"metric": meta.get("metric"), "split": meta.get("split"), "created": meta.get("created"),
                   "weights_sha256": weights_sha256},
    }


def onnx_description(path: Path) -> dict:
    """The description saved beside an exported file, else the one inside its metadata."""
    beside = path.with_name(path.name + ".json")
    if beside.is_file():
        return read_description(beside)
    import onnx  # keeps start-up fast: only a graph without its description beside it needs it

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise UserError(f"{path} is not a readable ONNX file ({exc})") from None
    for entry in proto.metadata_props:
        if entry.key == "cellscreen":
            try:
                description = json.loads(entry.value)
            except ValueError:
                raise UserError(f"{path}: its cellscreen description is not JSON; export it again") from None
            return check_description(description, path)
    raise UserError(f"{path} has no cellscreen description (neither {beside.name} nor ONNX metadata); "
                    "export it with `cellscreen export`")
