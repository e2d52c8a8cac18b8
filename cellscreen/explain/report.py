"""``cellscreen explain``: for each image, where the model found its evidence, then what its stages see.

``explain(checkpoint, images, out)`` writes, for each image (``NAME`` = its
file stem):

- ``NAME-METHOD.png`` (``NAME-gradcam.png`` for most models): the cell, the
  class activation map for the predicted class and the two laid over each
  other, four times the input's size, over a colour bar from low to high
  relevance (``cam.cam_sheet``: the model's own CAM method, or the one asked
  for, at the deepest stage still fine enough to find a ring and the stage
  before it); its caption names the method and the stages;

and, under an "advanced" heading, for those who want to look inside:

- ``NAME-featuremaps-stageK.png``: every channel of stage K's output, tiled and
  normalised one by one, as the ALL study drew them;
- ``NAME-top-channels.png``: the input beside the 16 channels of the last stage
  that respond most strongly (mean activation), as the malaria study showed;
- once per model, ``filters-stageK.png``: inputs optimised from grey noise to
  excite single channels of the last stage (activation maximisation).

An ``index.html`` shows them all, each named by its stage ("stage 2 (16x16,
early: edges and colours)").
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import torch

from cellscreen.engine.inference import logits_to_proba, normalise
from cellscreen.errors import UserError
from cellscreen.explain import pictures
from cellscreen.explain.cam import CAM_METHOD_NAMES, cam_sheet, model_cam_method
from cellscreen.explain.stages import describe_stages, last_stage, network_stages
from cellscreen.files import atomic_write
from cellscreen.serve.predict import list_inputs, prepare_image

__all__ = ["explain", "images_to_explain"]

def images_to_explain(checkpoint, inputs: list[str | Path], *, max_images: int = 16
                      ) -> tuple[list[tuple[str, np.ndarray]], list[str]]:
    """The first ``max_images`` readable images among ``inputs`` (files or folders), each prepared at the
    checkpoint's input size and named by its file stem (a stem seen before in another folder gets ``_``
    appended), and the notes to show the user: each file skipped and why, and whether the count was capped."""
    config = checkpoint.data_config
    images, names, notes = [], set(), []
    for path, reason in list_inputs(inputs):
        picture = reason or prepare_image(path, config.input_size, checkpoint.border_crop, config.interpolation)
        if isinstance(picture, str):
            notes.append(f"skipped {path}: {picture}")
            continue
        if len(images) == max_images:
            notes.append(f"only the first {max_images} images are explained (--max-images)")
            break
        name = path.stem
        while name in names:  # same stem in two folders
            name += "_"
        names.add(name)
        images.append((name, picture))
    return images, notes


def explain(checkpoint, images: list[tuple[str, np.ndarray]], out: str | Path, *, filters: bool = True,
            cam_method: str | None = None) -> Path:
    """Write every picture for ``images`` (``(name, (H, W, 3) uint8 at the model's input size)``) into ``out``
    and return the HTML index.  The maps are drawn by ``cam_method`` (one of ``CAM_METHODS``), by default the
    model's own (``model_cam_method``)."""
    if not images:
        raise UserError("no readable images to explain")
    model = checkpoint.model
    if checkpoint.meta.get("kind", "network") != "network":
        raise UserError("explain needs a network checkpoint; an SVM or an ensemble has no layers of its own to show")
    try:
        method = model_cam_method(model, cam_method)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    model.eval()
    for p in model.parameters():
        p.requires_grad_(True)  # the maps need gradients even where fine-tuning froze them
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stages = network_stages(model)
    classes = checkpoint.classes
    sections = []
    for name, picture in images:
        x = normalise(torch.from_numpy(np.array(picture)).permute(2, 0, 1)[None].contiguous(), model.data_config)
        with torch.no_grad():
            proba = logits_to_proba(model(x), getattr(model, "temperature", 1.0))[0].numpy()
        predicted = int(proba.argmax())
        sheet, cam_stages = cam_sheet(model, x, picture, predicted, method=method)
        cam = (f"{name}-{method.replace('+', 'p')}.png",
               f"where the model found evidence for {classes[predicted]}: the cell, the map, the two together "
               f"(red: most relevant, blue: least; {CAM_METHOD_NAMES[method]} at "
               f"{describe_stages(cam_stages)})")
        sheet.save(out / cam[0])
        advanced = []
        for map_stage, tiles in pictures.feature_maps(model, x, stages=stages):
            advanced.append((f"{name}-featuremaps-{map_stage.slug}.png", f"feature maps of {map_stage.title}"))
            tiles.save(out / advanced[-1][0])
        tiles, order = pictures.top_channels(model, x, picture, stages=stages)
        advanced.append((f"{name}-top-channels.png", f"strongest channels of {last_stage(stages).title}: {order}"))
        tiles.save(out / advanced[-1][0])
        verdict = ", ".join(f"{c} {p:.3f}" for c, p in zip(classes, proba))
        sections.append((name, verdict, cam, advanced))
    extra = []
    if filters:
        stage, tiles = pictures.visualise_filters(model, stages=stages)
        extra.append((f"filters-{stage.slug}.png", f"inputs that excite channels 0-7 of {stage.title}"))
        tiles.save(out / extra[-1][0])
    return _write_index(out, checkpoint, sections, extra)


def _figure(file: str, caption: str) -> str:
    return (f"<figure><img src='{html.escape(file)}' alt='{html.escape(caption)}'><figcaption>"
            f"{html.escape(caption)}</figcaption></figure>")


def _write_index(out: Path, checkpoint, sections, extra) -> Path:
    parts = [f"<!doctype html><meta charset='utf-8'><title>cellscreen explain</title>"
             f"<style>body{{font-family:sans-serif;background:#fafafa}} img{{max-width:100%;border:1px solid #ccc}}"
             f" figure{{display:inline-block;margin:8px;vertical-align:top}}"
             f" details{{margin:4px 0 16px}} summary{{cursor:pointer;color:#444}}</style>"
             f"<h1>{html.escape(checkpoint.meta['model'])}: what it sees</h1>"
             f"<p>For each cell: the class the model chose, and where in the cell it found the evidence "
             f"(red: the parts that raised that class's probability most).</p>"]
    for name, verdict, cam, advanced in sections:
        parts.append(f"<h2>{html.escape(name)}</h2><p>{html.escape(verdict)}</p>")
        parts.append(_figure(*cam))
        parts.append("<details><summary>Advanced: what each stage of the network responds to</summary>")
        parts += [_figure(*item) for item in advanced]
        parts.append("</details>")
    if extra:
        parts.append("<h2>Advanced: filters</h2>")
        parts += [_figure(*item) for item in extra]
    index = out / "index.html"
    atomic_write(index, "\n".join(parts) + "\n")
    return index
