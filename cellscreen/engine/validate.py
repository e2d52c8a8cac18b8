"""Checks of what a model's files hold, made before anything is built from them, without PyTorch.

A checkpoint's ``model.json`` (and the description beside an exported graph) is read with
``read_description``: a JSON object whose fields have the types and sizes a model can have (a positive,
finite temperature; a sane input size, border crop and number of classes; a positive standard deviation).
``check_weights_file`` reads a ``.safetensors`` file's header and refuses tensors that are not finite.
A damaged or tampered file is refused by name, in one line, instead of giving a traceback, a 500, or a
column of ``nan`` probabilities written as if they were answers.  Both stay free of PyTorch, so ``predict``
on onnxruntime checks them too.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from cellscreen.errors import UserError

__all__ = ["MAX_CLASSES", "MAX_INPUT_SIZE", "MAX_BORDER_CROP", "read_description", "check_description",
           "check_weights_file"]

MAX_CLASSES = 10_000
MAX_INPUT_SIZE = 2048  # pixels a side; the largest registered model takes 299
MAX_BORDER_CROP = 4096
_PICKLE_STARTS = (b"\x80", b"PK\x03\x04")  # a pickle, or PyTorch's zip of pickles


def read_description(path: Path) -> dict:
    """The checked contents of ``path``, a ``model.json`` or an exported graph's description."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
    if data.startswith(_PICKLE_STARTS):
        raise UserError(f"{path} is a pickle (a PyTorch .pt/.ckpt file?), not a cellscreen checkpoint; cellscreen "
                        "never unpickles a file it is handed: give a run folder or its model.json")
    try:
        meta = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise UserError(f"{path} is not a cellscreen checkpoint description (not JSON: {exc}); "
                        "copy the run again or retrain it") from None
    return check_description(meta, path)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _whole(value, low: int, high: int) -> bool:
    return _number(value) and math.isfinite(value) and value == int(value) and low <= value <= high


def check_description(meta, path: Path) -> dict:
    """``meta`` if its fields are ones a model can have, else a ``UserError`` naming ``path`` and the field."""

    def refuse(what: str):
        raise UserError(f"{path} is damaged: {what}; copy the run again, or retrain or re-export it")

    if not isinstance(meta, dict):
        refuse(f"it holds a JSON {type(meta).__name__}, not a JSON object")
    if not isinstance(meta.get("model"), str):
        refuse(f"'model' is {meta.get('model')!r}, not a model name")
    classes = meta.get("classes")
    if not isinstance(classes, list) or not all(isinstance(c, str) and c for c in classes):
        refuse("'classes' is not a list of class names")
    if not 1 <= len(classes) <= MAX_CLASSES or len(set(classes)) != len(classes):
        refuse(f"'classes' lists {len(classes):,} names (want 1 to {MAX_CLASSES:,} different ones)")
    positive = meta.get("positive_class")
    if positive is not None and positive not in classes:
        refuse(f"'positive_class' {positive!r} is not one of its classes")
    config = meta.get("data_config")
    if not isinstance(config, dict):
        refuse("'data_config' is missing")
    size = config.get("input_size")
    if not _whole(size, 1, MAX_INPUT_SIZE):
        refuse(f"'input_size' is {size!r} (want a whole number of pixels from 1 to {MAX_INPUT_SIZE})")
    for field in ("mean", "std"):
        values = config.get(field)
        if (not isinstance(values, list) or not 1 <= len(values) <= 4
                or not all(_number(v) and math.isfinite(v) for v in values)):
            refuse(f"'{field}' is {values!r} (want 1 to 4 finite numbers)")
    if len(config["mean"]) != len(config["std"]) or min(config["std"]) <= 0:
        refuse(f"'std' is {config['std']!r} (want one positive number per channel of 'mean')")
    if not isinstance(config.get("interpolation", "bicubic"), str):
        refuse("'interpolation' is not a name")
    crop = meta.get("border_crop", 0)
    if not _whole(crop, 0, MAX_BORDER_CROP):
        refuse(f"'border_crop' is {crop!r} (want a whole number of pixels from 0 to {MAX_BORDER_CROP})")
    temperature = meta.get("temperature", 1.0)
    if not _number(temperature) or not math.isfinite(temperature) or temperature <= 0:
        refuse(f"'temperature' is {temperature!r} (want a positive, finite number: the probabilities are "
               "softmax(logits / temperature))")
    if not isinstance(meta.get("kind", "network"), str):
        refuse("'kind' is not a name")
    if meta.get("single_logit") and len(classes) != 2:
        refuse("a model with one sigmoid output must have two classes")
    if meta.get("head") is not None and not isinstance(meta["head"], dict):
        refuse("'head' is not an object")
    if meta.get("cam_method") is not None and not (isinstance(meta["cam_method"], str)
                                                   and meta["cam_method"].replace("+", "").isalnum()):
        refuse("'cam_method' is not a name")
    return meta


# safetensors dtypes numpy reads directly; BF16 is checked on its bits
_FLOATS = {"F16": np.float16, "F32": np.float32, "F64": np.float64}
_SIZES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
          "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}


def check_weights_file(path: Path) -> None:
    """Refuse a ``.safetensors`` file whose header is damaged or whose floating-point weights are not all
    finite (a NaN or an infinity makes every probability ``nan``)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise UserError(f"cannot read the weights {path}: {exc.strerror or exc}") from None

    def refuse(what: str):
        raise UserError(f"the weights {path} are damaged: {what}; copy the run again or retrain it")

    length = int.from_bytes(data[:8], "little") if len(data) >= 8 else -1
    if not 0 < length <= len(data) - 8:
        refuse("not a safetensors file")
    try:
        header = json.loads(data[8:8 + length].decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        refuse("its header is not JSON")
    if not isinstance(header, dict):
        refuse("its header is not a JSON object")
    body = memoryview(data)[8 + length:]
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (start, end) = entry["dtype"], entry["shape"], entry["data_offsets"]
            count = math.prod(shape)
        except (TypeError, KeyError, ValueError):
            refuse(f"tensor {name!r} is not described")
        if not all(isinstance(n, int) and not isinstance(n, bool) for n in (start, end, *shape)):
            refuse(f"tensor {name!r} is not described")
        if dtype not in _SIZES or not 0 <= start <= end <= len(body) or end - start != count * _SIZES[dtype]:
            refuse(f"tensor {name!r} does not fit its shape {shape} and type {dtype}")
        raw = body[start:end]
        if dtype in _FLOATS:
            finite = np.isfinite(np.frombuffer(raw, dtype=np.dtype(_FLOATS[dtype]).newbyteorder("<"))).all()
        elif dtype == "BF16":  # all exponent bits set: an infinity or a NaN
            finite = not ((np.frombuffer(raw, dtype="<u2") & 0x7F80) == 0x7F80).any()
        else:
            finite = True
        if not finite:
            refuse(f"tensor {name!r} holds values that are not finite (NaN or infinity)")
