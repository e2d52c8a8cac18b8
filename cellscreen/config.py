"""Training settings: one typed dataclass, YAML presets, command-line overrides.

A preset is a YAML file of field values (``cellscreen/presets/NAME.yaml``, or
any path), which may start from another preset's with ``extends: OTHER``;
``--set field=value`` and the explicit command-line flags override it; the
resolved settings are written into every run folder as
``config.yaml`` so a run can be repeated exactly.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import yaml

from cellscreen.errors import UserError

__all__ = ["TrainConfig", "load_config", "PRESETS_DIR", "list_presets", "parse_operating_point"]

PRESETS_DIR = Path(__file__).parent / "presets"


@dataclasses.dataclass
class TrainConfig:
    # data
    dataset: str = "malaria-nih"
    group_regex: str | None = None
    positive_class: str | None = None  # the positive finding of your own two-class folder; None: the profile's
    relabel: list[str] = dataclasses.field(default_factory=list)  # relabel files applied in order (the later wins)
    extra_train: list[str] = dataclasses.field(default_factory=list)  # folders of class folders: extra training cells
    split: str | None = None  # a manifest CSV; None: a fresh hold-out by group
    fold: int | None = None  # with a k-fold manifest: the test fold (the next one validates)
    val: float = 0.15
    test: float = 0.15
    train_limit: int | None = None  # train on at most this many training cells (a class-stratified sample)
    split_seed: int = 0
    # model
    model: str = "compact_cnn6sc"
    input_size: int | None = None  # None: the model's own
    interpolation: str | None = None  # bicubic | reduce-bicubic (cellscreen.data.images); None: the model's own
    pretrained: str | None = None  # weights file, http(s) URL or "imagenet" (torchvision/timm cache)
    init_from: str | None = None  # a cellscreen run or checkpoint to start from (its model and input size)
    new_head: bool = False  # replace the classifier: global average pooling, dropout, [dense,] dense
    head_hidden: int = 0  # width of the extra dense layer in the new head (0: none)
    head_dropout: float = 0.2
    trainable: str = "all"  # all | head | topN (the top N backbone blocks and the head)
    freeze_bn: bool = False  # keep every batch-norm layer's statistics fixed while fine-tuning
    teacher: str | None = None  # a run of the same split and fold whose probabilities the model also learns from
    teacher_weight: float = 0.5  # the share of the teacher's probabilities in the training target
    # optimisation
    epochs: int = 10
    batch_size: int = 64
    optimizer: str = "adamw"  # sgd | adam | adamw
    lr: float = 2e-3
    momentum: float = 0.9
    weight_decay: float = 0.05
    schedule: str = "onecycle"  # none | cosine | onecycle | step
    label_smoothing: float = 0.0
    class_weighting: bool = False  # weight the loss by inverse class frequency
    ema_decay: float = 0.0  # keep an exponential moving average of the weights (e.g. 0.99); 0: off
    drop_hardest: float = 0.0  # from the 2nd epoch, leave this share of each batch's highest-loss cells out; 0: off
    bootstrap: float = 0.0  # from the 2nd epoch, this share of each cell's target is the model's own call; 0: off
    # model selection and stopping
    monitor: str = "val_loss"  # val_loss | val_acc
    early_stopping: int | None = None  # patience in epochs; None: train all epochs
    calibrate: bool = True  # fit a temperature on the validation cells after training (used by evaluate/predict)
    # the decision: a cell is positive when its positive-class probability reaches the threshold
    operating_point: str | None = None  # "sensitivity=0.98" or "specificity=0.95": threshold chosen on the val cells
    decision_threshold: float | None = None  # a threshold given outright; None: 0.5 (or the operating point's)
    # augmentation (random, on tensors, after the cache)
    rotate_flip: bool = True
    color_jitter: float = 0.1
    stain_jitter: float = 0.0  # per-channel gain and saturation in 1 +- this, per image
    mixup: float = 0.0  # blend pairs of cells and their labels (Beta(alpha, alpha) weights); 0: off
    cutmix: float = 0.0  # paste a box of one cell into another, labels by area (Beta alpha); 0: off
    # speed
    precision: str = "auto"  # auto (bf16-mixed where the CPU or GPU has bf16 units, else 32) | 32 | bf16-mixed
    channels_last: bool = True
    seed: int = 0

    def __post_init__(self):
        # one file given on its own (--set relabel=FILE), or none
        self.relabel = [self.relabel] if isinstance(self.relabel, str) else [str(f) for f in self.relabel or []]
        choices = {
            "optimizer": ("sgd", "adam", "adamw"),
            "schedule": ("none", "cosine", "onecycle", "step"),
            "monitor": ("val_loss", "val_acc"),
            "precision": ("auto", "32", "bf16-mixed"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise UserError(f"{name} must be one of {', '.join(allowed)}, not {getattr(self, name)!r}")
        if self.interpolation is not None:
            from cellscreen.data.images import check_interpolation  # keeps reading settings light: Pillow

            check_interpolation(self.interpolation)
        from cellscreen.models.transfer import parse_trainable  # keeps reading settings light: PyTorch

        trainable = parse_trainable(self.trainable)
        self.trainable = trainable if isinstance(trainable, str) else f"top{trainable}"
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise UserError("epochs, batch_size and lr must be positive")
        for name in ("color_jitter", "stain_jitter"):  # factors are drawn in 1 +- jitter: past 1 they turn negative
            if not 0 <= getattr(self, name) < 1:
                raise UserError(f"{name} must be at least 0 and below 1, not {getattr(self, name)!r}")
        for name in ("mixup", "cutmix"):
            if getattr(self, name) < 0:
                raise UserError(f"{name} is the alpha of a Beta distribution: 0 (off) or positive, "
                                f"not {getattr(self, name)!r}")
        if not 0 < self.teacher_weight <= 1:
            raise UserError(f"teacher_weight must be above 0 and at most 1, not {self.teacher_weight!r}")
        if self.teacher and (self.mixup > 0 or self.cutmix > 0):
            raise UserError("a teacher's targets are per cell: turn mixup and cutmix off (0) to train on them")
        if not 0 <= self.drop_hardest < 0.5:
            raise UserError(f"drop_hardest is a share of each batch: at least 0 (off) and below 0.5, "
                            f"not {self.drop_hardest!r}")
        if self.drop_hardest > 0 and (self.mixup > 0 or self.cutmix > 0):
            raise UserError("drop_hardest ranks each cell's own loss: turn mixup and cutmix off (0) to use it")
        if not 0 <= self.bootstrap < 1:
            raise UserError(f"bootstrap is the share of the target taken from the model's own call: at least 0 "
                            f"(off) and below 1, not {self.bootstrap!r}")
        if self.bootstrap > 0 and (self.mixup > 0 or self.cutmix > 0):
            raise UserError("bootstrap mixes each cell's label with the model's call: turn mixup and cutmix off (0)")
        if self.operating_point is not None:
            parse_operating_point(self.operating_point)
        if self.decision_threshold is not None:
            if self.operating_point is not None:
                raise UserError("give a decision threshold or an operating point to choose one, not both")
            if not 0 < self.decision_threshold < 1:
                raise UserError(f"the decision threshold is a probability between 0 and 1, "
                                f"not {self.decision_threshold!r}")
        if not 0 <= self.ema_decay < 1:
            raise UserError(f"ema_decay must be at least 0 (off) and below 1, not {self.ema_decay!r}")

    def to_yaml(self) -> str:
        return yaml.safe_dump(dataclasses.asdict(self), sort_keys=False)


def parse_operating_point(text: str) -> tuple[str, float]:
    """``"sensitivity=0.98"`` -> ``("sensitivity", 0.98)``: the measure to reach on the validation cells and its
    target (sensitivity or specificity, above 0 and at most 1)."""
    measure, sep, value = str(text).partition("=")
    measure = measure.strip().lower()
    try:
        target = float(value)
    except ValueError:
        target = float("nan")
    if not sep or measure not in ("sensitivity", "specificity") or not 0 < target <= 1:
        raise UserError(f"an operating point is sensitivity=TARGET or specificity=TARGET with TARGET above 0 "
                        f"and at most 1 (e.g. sensitivity=0.98), not {text!r}")
    return measure, target


def list_presets() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def _coerce(field: dataclasses.Field, text: str):
    value = yaml.safe_load(text)
    if value is None or field.type in ("str", "str | None"):
        return None if value is None else str(text)
    return value


def _preset_values(preset: str, seen: tuple[Path, ...] = ()) -> dict:
    """A preset's settings.  ``extends: NAME`` (a built-in preset or a YAML path, relative to this file)
    starts from that preset's settings, which this file's own then override."""
    path = Path(preset) if preset.endswith((".yaml", ".yml")) else PRESETS_DIR / f"{preset}.yaml"
    if not path.is_file():
        named_by = f" (named by extends in {seen[-1]})" if seen else ""
        raise UserError(f"preset {preset!r} not found{named_by}; built-in presets: {', '.join(list_presets())}")
    if path.resolve() in seen:
        raise UserError(f"presets extend each other in a circle: {' -> '.join(p.name for p in (*seen, path))}")
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"{path} is not valid YAML ({' '.join(str(exc).split())})") from None  # one line
    if not isinstance(loaded, dict):
        raise UserError(f"{path} must hold FIELD: VALUE settings, not a {type(loaded).__name__}")
    base = loaded.pop("extends", None)
    if base is None:
        return loaded
    if not isinstance(base, str) or not base:
        raise UserError(f"{path}: extends takes the name of a preset or a YAML file, not {base!r}")
    if base.endswith((".yaml", ".yml")):
        base = str(path.parent / base)
    return {**_preset_values(base, (*seen, path.resolve())), **loaded}


def load_config(preset: str | None = None, overrides: dict | None = None, assignments: list[str] = ()) -> TrainConfig:
    """The preset (``default`` unless named), then ``overrides`` (flags), then ``field=value`` strings."""
    values = _preset_values(preset or "default")
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    for assignment in assignments:
        name, sep, text = assignment.partition("=")
        if not sep or name not in fields:
            raise UserError(f"--set expects FIELD=VALUE with FIELD one of {', '.join(fields)}; got {assignment!r}")
        values[name] = _coerce(fields[name], text)
    unknown = set(values) - set(fields)
    if unknown:
        raise UserError(f"unknown setting(s) {', '.join(sorted(unknown))}; known: {', '.join(fields)}")
    return TrainConfig(**values)
