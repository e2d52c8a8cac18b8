"""SVM baselines: hand-crafted features, or deep features of a network (the studies' "VGG-SVM").

``train_svm`` fits scikit-learn's RBF SVM (with Platt-scaled probabilities from
``CalibratedClassifierCV``)
on the training subset of a split and writes a run folder that every
cellscreen command accepts as a checkpoint: ``model.json`` says
``"kind": "svm"``, the fitted pipeline is ``svm.skops`` (skops format, which
loads only the scikit-learn and numpy types it is told to trust, never
arbitrary pickled code) and a deep-feature SVM keeps its feature network in
``backbone/``.  Loaded, the SVM is wrapped as an ``nn.Module`` that returns
log-probabilities, so evaluation, prediction, test-time augmentation and
ensembles treat it like any network.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cellscreen.config import TrainConfig
from cellscreen.engine.checkpoint import BUNDLED, FORMAT, load_checkpoint, register_kind, save_checkpoint
from cellscreen.engine.inference import normalise
from cellscreen.errors import UserError
from cellscreen.files import atomic_write
from cellscreen.models import DataConfig, create_model, list_models
from cellscreen.models.transfer import forward_features

__all__ = ["SVMClassifier", "train_svm", "load_svm", "svm_files"]

_TRUSTED_PREFIXES = ("sklearn.", "numpy.")


class SVMClassifier(nn.Module):
    """An SVM behind a network's interface: images scaled to 0..1 in, log-probabilities out."""

    def __init__(self, pipeline, backbone: nn.Module | None = None, *, workers: int | None = None):
        super().__init__()
        self.pipeline = pipeline
        self.backbone = backbone
        self.workers = workers

    def features(self, x: torch.Tensor) -> np.ndarray:
        if self.backbone is None:
            from cellscreen.data.features import handcrafted_batch  # keeps loading any checkpoint fast: scikit-image

            pixels = (x.float() * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()
            return handcrafted_batch(pixels.numpy(), workers=self.workers)
        with torch.no_grad():
            return forward_features(self.backbone.eval(), normalise(x.float(), self.backbone.data_config)).numpy()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        proba = self.pipeline.predict_proba(self.features(x))
        return torch.from_numpy(np.log(np.clip(proba, 1e-7, 1.0))).float()


def _backbone(source: str, config: TrainConfig) -> nn.Module:
    """The feature network: a cellscreen run or checkpoint, or a registered model (with ``pretrained``)."""
    if source in BUNDLED or Path(source).exists():
        return load_checkpoint(source).model
    if source in list_models():
        if config.pretrained is None:
            print(f"note: {source} has random weights; pass --pretrained FILE|imagenet for meaningful deep features")
        return create_model(source, num_classes=2, pretrained=config.pretrained, input_size=config.input_size)
    raise UserError(f"--features must be 'handcrafted', a run or checkpoint, or a model name; got {source!r}")


def train_svm(config: TrainConfig, *, features: str, out: str | Path, data: str | None = None, C: float = 10.0,
              overwrite: bool = False, progress: bool = True, workers: int | None = None):
    """Fit an SVM on the training subset of ``config``'s split; return ``(run folder, prepared data, seconds)``."""
    # only training needs these; loading a checkpoint of any kind stays fast without them
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC
    from skops.io import dump

    from cellscreen.engine.data import manifest_copy, prepare_data  # scikit-learn, through the splits

    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise UserError(f"run folder {out} is not empty; pass --overwrite to start over")
    start = time.perf_counter()
    backbone = None if features == "handcrafted" else _backbone(features, config)
    input_size = backbone.data_config.input_size if backbone is not None else (config.input_size or 64)
    # the backbone's resize (it was trained on it), else the one asked for, else the usual one
    interpolation = (backbone.data_config.interpolation if backbone is not None
                     else config.interpolation or DataConfig.interpolation)
    config = dataclasses.replace(config, model="svm", input_size=input_size, interpolation=interpolation)
    prepared = prepare_data(config, data=data, input_size=input_size, interpolation=interpolation, workers=workers,
                            progress=progress)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "config.yaml", config.to_yaml())
    split_sha = manifest_copy(prepared.manifest, out)

    model = SVMClassifier(None, backbone, workers=workers)
    train_set, val_set = prepared.subsets["train"], prepared.subsets["val"]

    def featurise(subset) -> np.ndarray:
        return np.concatenate([model.features(subset.images[i : i + 512].float() / 255)
                               for i in range(0, len(subset), 512)]) if len(subset) else np.zeros((0, 1))

    x_train, y_train = featurise(train_set), train_set.targets.numpy()
    svc = SVC(C=C, kernel="rbf", gamma="scale", class_weight="balanced" if config.class_weighting else None)
    # Platt scaling fitted on internal cross-validation folds, then one SVM on all training cells
    folds = int(min(5, np.bincount(y_train).min()))
    if folds < 2:
        raise UserError("an SVM needs at least 2 training images of every class")
    calibrated = CalibratedClassifierCV(svc, method="sigmoid", cv=folds, ensemble=False)
    model.pipeline = make_pipeline(StandardScaler(), calibrated).fit(x_train, y_train)
    support = int(calibrated.calibrated_classifiers_[0].estimator.n_support_.sum())
    val_acc = float((model.pipeline.predict(featurise(val_set)) == val_set.targets.numpy()).mean()) \
        if len(val_set) else float("nan")

    dump(model.pipeline, out / "svm.skops")
    if backbone is not None:
        save_checkpoint(out / "backbone", backbone, {"classes": [f"unit{i}" for i in range(2)], "role": "features"})
    classes = prepared.classes
    unit = DataConfig(input_size=input_size, mean=(0.0,) * 3, std=(1.0,) * 3, interpolation=interpolation)
    meta = {
        "format": FORMAT, "kind": "svm", "model": "svm", "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "data_config": unit.to_dict(), "single_logit": False, "classes": classes,
        "positive_class": prepared.index.profile.positive_class if len(classes) == 2 else None,
        "dataset": config.dataset, "border_crop": prepared.index.profile.border_crop,
        # how the folder was read, so that evaluate needs neither the pattern nor the folder again
        "group_regex": prepared.index.profile.group_regex, "root": str(prepared.index.root.resolve()),
        "relabels": prepared.index.relabels,  # the relabel files that gave the training labels (None: the folder's)
        "split": {"sha256": split_sha, "method": prepared.manifest.meta.get("method"),
                  "by": prepared.manifest.meta.get("by"), "fold": config.fold,
                  "leaky": bool(prepared.manifest.meta.get("leaky"))},
        "svm": {"features": "handcrafted" if backbone is None else "deep", "source": features, "C": C,
                "n_features": int(x_train.shape[1]), "support_vectors": support},
        "metric": {"name": "val_acc", "value": val_acc},
        "train": {"images": len(train_set), "val_images": len(val_set), "config": dataclasses.asdict(config)},
    }
    atomic_write(out / "model.json", json.dumps(meta, indent=2) + "\n")
    return out, prepared, time.perf_counter() - start


def svm_files(folder: Path, meta: dict) -> list[str]:
    """``model.json``, the fitted pipeline and, for deep features, the feature network's checkpoint."""
    return ["model.json", "svm.skops"] + (["backbone/model.json", "backbone/model.safetensors"]
                                          if meta["svm"]["features"] == "deep" else [])


@register_kind("svm", files=svm_files)
def load_svm(path: Path, meta: dict) -> SVMClassifier:
    """The SVM described by ``path`` (a run folder's ``model.json``), loading only trusted scikit-learn/numpy
    types."""
    from skops.io import get_untrusted_types, load  # keeps loading a network fast: skops imports scikit-learn

    folder = path.parent
    path = folder / "svm.skops"
    try:
        types = get_untrusted_types(file=path)
        foreign = [t for t in types if not t.startswith(_TRUSTED_PREFIXES)]
        if foreign:
            raise UserError(f"{path} holds types cellscreen does not trust: {', '.join(foreign[:5])}")
        pipeline = load(path, trusted=types)
    except UserError:
        raise
    except Exception as exc:  # missing or damaged file
        raise UserError(f"cannot read the SVM {path}: {exc}") from None
    backbone = load_checkpoint(folder / "backbone").model if meta["svm"]["features"] == "deep" else None
    model = SVMClassifier(pipeline, backbone)
    model.data_config = DataConfig.from_dict(meta["data_config"])
    model.model_name, model.single_logit = meta["model"], False
    return model
