"""Export a checkpoint as one portable file: ONNX (any runtime) or TorchScript (PyTorch without cellscreen).

The exported graph takes what a cell image becomes after cellscreen's
deterministic preprocessing, ``uint8`` pixels ``(batch, size, size, 3)``,
and returns ``probabilities`` ``(batch, classes)`` (softmax, divided by the
fitted temperature) and the raw ``logits``.  Normalisation happens inside
the graph, so an integrator only has to crop, pad to a square and resize,
as written in the description saved beside the model (``FILE.json``) and
inside the ONNX file's metadata.

A parity check runs the exported model and the PyTorch model on the same
cells and refuses the export if any probability differs by ``1e-4`` or more.

``onnx-int8`` is the ONNX graph with 8-bit weights and activations
(onnxruntime's static quantisation: per-channel weights, activation ranges
calibrated on real cells), about 1.7 times as fast on a CPU with VNNI or AMX
units.  Its probabilities move by a few hundredths, so its check is on the
decisions instead: on cells the calibration did not see, at least 99% must
get the class the PyTorch model gives, or nothing is written.

The graph itself (the model with its preprocessing folded in) is
``exported_model``; the names and description every graph shares are ``graph``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from cellscreen.data.sources import get_profile, resolve_dataset_dir
from cellscreen.engine.kinds import Checkpoint, load_checkpoint, resolve_checkpoint
from cellscreen.engine.validate import read_description
from cellscreen.errors import UserError
from cellscreen.files import atomic_write
from cellscreen.serve.exported_model import NORMALISATION_WORDS, ExportedModel, fold_std, lift_colour_norm, \
    lift_space_to_depth
from cellscreen.serve.graph import INPUT_NAME, OUTPUT_NAMES, describe_meta, onnx_session
from cellscreen.serve.inputs import list_inputs, prepare_image

__all__ = ["PARITY_TOLERANCE", "ExportReport", "export_model", "onnx_bytes", "quantize_int8", "describe",
           "check_images"]

PARITY_TOLERANCE = 1e-4
RANDOM_CELLS = "64 random-pixel images (no cells found)"
INT8_MIN_AGREEMENT = 0.99  # share of check cells whose class the int8 model must keep
FORMATS = {"onnx": ".onnx", "onnx-int8": ".onnx", "torchscript": ".pt"}


@dataclasses.dataclass
class ExportReport:
    path: Path
    description: Path
    format: str
    max_difference: float
    checked_on: str  # which cells the parity check used
    agreement: float | None = None  # onnx-int8: share of check cells with PyTorch's class


def _wrapped(checkpoint: Checkpoint, normalise: str = "sub_div", lift: bool = True) -> ExportedModel:
    """The checkpoint's model as ``ExportedModel``; ``"fold"`` falls back to ``"conv"`` for a model whose
    first convolution cannot take the division (``fold_std``).  ``lift``: a leading space-to-depth step is
    done on the uint8 pixels (``lift_space_to_depth``); without it the wrapper runs the model as it is,
    which is what the exports are checked against."""
    if checkpoint.meta.get("kind", "network") != "network":
        raise UserError(f"only a trained network can be exported; this checkpoint is a {checkpoint.meta['kind']} "
                        "(predict and serve run it as it is)")
    config = checkpoint.data_config
    model = checkpoint.model.float().eval()
    if hasattr(model, "for_inference"):  # e.g. compact_cnn6p: the same outputs, in a form onnxruntime fuses
        model = model.for_inference()
    block, colour = 1, None
    if lift:
        model, colour = lift_colour_norm(model)
        model, block = lift_space_to_depth(model, config.input_size, len(config.mean))
    if normalise == "fold":
        std = [v * 255 for v in config.std for _ in range(block * block)]
        folded = fold_std(model, std, config.input_size // block)
        model, normalise = (folded, "fold") if folded is not None else (model, "conv")
    return ExportedModel(model, config.mean, config.std,
                         getattr(checkpoint.model, "temperature", 1.0),
                         bool(getattr(checkpoint.model, "single_logit", False)), normalise, config.input_size,
                         block, colour).eval()


def describe(checkpoint: Checkpoint, fmt: str) -> dict:
    """What a runtime needs besides the graph: classes, preprocessing, input and output names, provenance."""
    meta = {**checkpoint.meta, "temperature": float(getattr(checkpoint.model, "temperature", 1.0))}
    return describe_meta(meta, fmt, meta.get("weights_sha256") or _weights_digest(checkpoint))


def _weights_digest(checkpoint: Checkpoint) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(checkpoint.model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().contiguous().numpy().tobytes())
    return digest.hexdigest()


def onnx_bytes(checkpoint: Checkpoint, *, opset: int = 18, normalise: str = "sub_div",
               wrapped: ExportedModel | None = None) -> bytes:
    """The checkpoint as a serialised single-file ONNX model with a dynamic batch size (``normalise``:
    see ``ExportedModel``; ``wrapped``: the checkpoint's ``ExportedModel`` if already made)."""
    import onnx  # keeps start-up fast: only exporting needs it

    wrapped = wrapped if wrapped is not None else _wrapped(checkpoint, normalise)
    size = checkpoint.data_config.input_size
    example = torch.zeros((2, size, size, 3), dtype=torch.uint8)
    with warnings.catch_warnings(), open(os.devnull, "w") as devnull:
        warnings.simplefilter("ignore")
        try:
            with contextlib.redirect_stdout(devnull):  # the exporter prints its progress
                program = torch.onnx.export(
                    wrapped, (example,), None, input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
                    dynamic_shapes=({0: torch.export.Dim("batch")},), opset_version=opset, dynamo=True,
                    external_data=False, verbose=False)
            proto = program.model_proto
        except Exception as exc:  # some architectures only trace with the older TorchScript-based exporter
            buffer = io.BytesIO()
            try:
                torch.onnx.export(wrapped, (example,), buffer, input_names=[INPUT_NAME],
                                  output_names=list(OUTPUT_NAMES), opset_version=17, dynamo=False,
                                  dynamic_axes={INPUT_NAME: {0: "batch"}, **{o: {0: "batch"} for o in OUTPUT_NAMES}})
            except Exception as legacy_exc:
                raise UserError(f"{checkpoint.meta['model']} cannot be exported to ONNX: {exc}; "
                                f"{legacy_exc}") from None
            proto = onnx.load_from_string(buffer.getvalue())
    entry = proto.metadata_props.add()  # the description travels inside the file too
    entry.key, entry.value = "cellscreen", json.dumps(describe(checkpoint, "onnx"))
    return proto.SerializeToString()


def quantize_int8(blob: bytes, calibration: np.ndarray, description: dict, float_stem: bool = False) -> bytes:
    """``blob`` (an export of ``onnx_bytes``) with int8 weights and activations: onnxruntime's static
    quantisation in QDQ form, weights per output channel, activation ranges from ``calibration``
    (prepared uint8 cells).  ``description`` goes into the file's metadata.  ``float_stem``: everything
    before the first convolution stays in float (a cell's colour gains, which 8-bit steps would distort)."""
    # keeps start-up fast: only an int8 export needs the quantisation tools
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Cells(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{INPUT_NAME: calibration[i:i + 32]} for i in range(0, len(calibration), 32)])

        def get_next(self):
            return next(self.batches, None)

    with tempfile.TemporaryDirectory(prefix="cellscreen-int8-") as tmp, warnings.catch_warnings(), \
            open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        warnings.simplefilter("ignore")
        source, prepared, quantized = (str(Path(tmp) / name) for name in ("fp32.onnx", "pre.onnx", "int8.onnx"))
        Path(source).write_bytes(blob)
        quant_pre_process(source, prepared, skip_symbolic_shape=True)
        quantize_static(prepared, quantized, Cells(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        nodes_to_exclude=_float_nodes(onnx.load(prepared), float_stem))
        proto = onnx.load(quantized)
    del proto.metadata_props[:]
    entry = proto.metadata_props.add()
    entry.key, entry.value = "cellscreen", json.dumps(description)
    return proto.SerializeToString()


def _float_nodes(proto, stem: bool = False) -> list[str]:
    """The nodes that make the logits and everything after them (temperature, softmax), and with ``stem``
    every node before the first convolution.  They stay in float: they cost next to nothing, and quantised
    probabilities would come in steps of 1/255."""
    tensors = {OUTPUT_NAMES[1]}
    kept, before_conv = [], stem
    for node in proto.graph.node:  # ONNX nodes are in topological order
        before_conv = before_conv and node.op_type != "Conv"
        head = OUTPUT_NAMES[1] in node.output or bool(tensors.intersection(node.input))
        if head:
            tensors.update(node.output)
        if head or before_conv:
            kept.append(node.name)
    return kept


def check_images(checkpoint: Checkpoint, data: str | Path | None = None, count: int = 256) -> tuple[np.ndarray, str]:
    """Cells for the parity check: from ``data`` (files or a folder), else the checkpoint's dataset if it is in
    the data root, else random pixels (and the description says so)."""
    config, crop = checkpoint.data_config, checkpoint.border_crop
    size, interpolation = config.input_size, config.interpolation
    sources = [data] if data else []
    if not sources and checkpoint.meta.get("dataset"):
        try:
            sources = [resolve_dataset_dir(get_profile(checkpoint.meta["dataset"]), None)]
        except (UserError, KeyError):
            sources = []
    images, where = [], ""
    for source in sources:
        files = [path for path, reason in list_inputs([source]) if reason is None]
        step = max(1, len(files) // count)  # spread over the classes, which are separate folders
        for path in files[::step][:count]:
            prepared = prepare_image(path, size, crop, interpolation)
            if not isinstance(prepared, str):
                images.append(prepared)
        where = f"{len(images)} cells from {source}"
    if not images:
        if data:
            raise UserError(f"no readable images in {data} for the parity check")
        rng = np.random.default_rng(0)
        return rng.integers(0, 256, (64, size, size, 3), dtype=np.uint8), RANDOM_CELLS
    return np.stack(images), where


def export_model(model: str | Path, out: str | Path, *, fmt: str = "onnx", check_data: str | Path | None = None,
                 cells: tuple[np.ndarray, str] | None = None, overwrite: bool = False, opset: int = 18) -> ExportReport:
    """Write ``out`` (and ``out`` + ``.json``) after checking the export against PyTorch on real cells:
    those of ``check_data``, or ``cells`` (prepared uint8 ``(N, size, size, 3)`` pixels and what they are)."""
    if fmt not in FORMATS:
        raise UserError(f"unknown export format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    out = Path(out)
    description = out.with_name(out.name + ".json")
    for path in (out, description):
        if path.exists() and not overwrite:
            raise UserError(f"{path} already exists; pass --overwrite to replace it")
    kind = read_description(resolve_checkpoint(model)).get("kind", "network")
    if kind != "network":
        raise UserError(f"only a trained network can be exported; this checkpoint is a {kind} "
                        "(predict and serve run it as it is)")
    checkpoint = load_checkpoint(model)
    wrapped = _wrapped(checkpoint, lift=False)  # the model as trained: what every export is checked against
    if cells is not None:
        images, checked_on = cells
    else:
        images, checked_on = check_images(checkpoint, check_data, count=512 if fmt == "onnx-int8" else 256)
    if fmt == "onnx-int8" and checked_on == RANDOM_CELLS:
        raise UserError("an int8 export is calibrated on real cells and none were found: pass --check-data "
                        "with a folder of cells like the ones it will see")
    with torch.inference_mode():
        expected = np.concatenate([wrapped(torch.from_numpy(images[i:i + 128]))[0].numpy()
                                   for i in range(0, len(images), 128)])
    info = describe(checkpoint, fmt)
    agreement = None
    if fmt.startswith("onnx"):
        graph = _wrapped(checkpoint, "fold" if fmt == "onnx-int8" else "sub_div")
        blob = onnx_bytes(checkpoint, opset=opset, wrapped=graph)
        if fmt == "onnx-int8":  # calibrate on every other cell, check on the rest
            info["quantization"] = {"method": "onnxruntime static, QDQ, per-channel int8 weights, uint8 activations",
                                    "normalisation": NORMALISATION_WORDS[graph.normalise],
                                    "calibrated_on": f"{len(images[0::2])} of the {checked_on}"}
            blob = quantize_int8(blob, images[0::2], info, float_stem=graph.colour is not None)
            images, expected = images[1::2], expected[1::2]
            checked_on = f"the other {len(images)} of the {checked_on}"
        session = onnx_session(blob)
        got = np.concatenate([session.run([OUTPUT_NAMES[0]], {INPUT_NAME: images[i:i + 128]})[0]
                              for i in range(0, len(images), 128)])
    else:
        with warnings.catch_warnings():  # PyTorch now marks TorchScript deprecated; it still loads everywhere
            warnings.simplefilter("ignore")
            size = checkpoint.data_config.input_size
            traced = torch.jit.trace(wrapped, torch.zeros((2, size, size, 3), dtype=torch.uint8), check_trace=False)
            buffer = io.BytesIO()
            torch.jit.save(traced, buffer, _extra_files={"cellscreen.json": json.dumps(describe(checkpoint, fmt))})
            blob = buffer.getvalue()
            reloaded = torch.jit.load(io.BytesIO(blob))
        with torch.inference_mode():
            got = np.concatenate([reloaded(torch.from_numpy(images[i:i + 128]))[0].numpy()
                                  for i in range(0, len(images), 128)])
    difference = float(np.abs(got - expected).max())
    if fmt == "onnx-int8":
        agreement = float((got.argmax(1) == expected.argmax(1)).mean())
        if not agreement >= INT8_MIN_AGREEMENT:
            raise UserError(f"the int8 model gives PyTorch's class to only {agreement:.1%} of {checked_on} "
                            f"(at least {INT8_MIN_AGREEMENT:.0%} needed); nothing written. Use --format onnx")
        info["parity"] = {"max_probability_difference": difference, "class_agreement": agreement,
                          "min_class_agreement": INT8_MIN_AGREEMENT, "checked_on": checked_on}
    elif not difference < PARITY_TOLERANCE:
        raise UserError(f"the {fmt} export differs from PyTorch by {difference:.2e} (over {PARITY_TOLERANCE:g}) "
                        f"on {checked_on}; nothing written")
    else:
        info["parity"] = {"max_probability_difference": difference, "tolerance": PARITY_TOLERANCE,
                          "checked_on": checked_on}
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, blob)
    atomic_write(description, json.dumps(info, indent=2) + "\n")
    return ExportReport(path=out, description=description, format=fmt, max_difference=difference,
                        checked_on=checked_on, agreement=agreement)
