"""The Lightning module: loss, augmentation, optimiser and schedule around any registered model."""

from __future__ import annotations

import lightning as L
import torch
from torch import nn

from cellscreen.config import TrainConfig
from cellscreen.data.augment import augment_batch
from cellscreen.engine.inference import normalise

__all__ = ["CellClassifier"]


def _mixing(config: TrainConfig, num_classes: int):
    """torchvision's batch MixUp and/or CutMix (one of the two per batch when both are on), or None."""
    if config.mixup <= 0 and config.cutmix <= 0:
        return None
    from torchvision.transforms import v2  # keeps start-up fast: torchvision, only for MixUp/CutMix

    chosen = [v2.MixUp(alpha=config.mixup, num_classes=num_classes)] if config.mixup > 0 else []
    if config.cutmix > 0:
        chosen.append(v2.CutMix(alpha=config.cutmix, num_classes=num_classes))
    return chosen[0] if len(chosen) == 1 else v2.RandomChoice(chosen)


class CellClassifier(L.LightningModule):
    """Trains ``model`` on uint8 batches; augmentation and normalisation happen here,
    batched, so data loading stays a cheap tensor slice."""

    def __init__(self, model: nn.Module, config: TrainConfig, class_weights: torch.Tensor | None = None,
                 num_classes: int = 2):
        super().__init__()
        self.model = model
        self.config = config
        self.mixing = _mixing(config, num_classes)
        self.num_classes = num_classes
        self.single_logit = bool(getattr(model, "single_logit", False))
        if class_weights is not None:
            self.register_buffer("class_weights", class_weights.float())
        else:
            self.class_weights = None
        if config.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = normalise(images, self.model.data_config, torch.channels_last if self.config.channels_last else None)
        return self.model(x)

    def train(self, mode: bool = True):
        super().train(mode)
        for layer in getattr(self.model, "frozen_bn", ()):  # frozen blocks keep their batch-norm statistics
            layer.eval()
        return self

    def _main_and_aux_loss(self, output, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and loss; Inception v3 and GoogLeNet add their auxiliary heads' losses while training
        (weights 0.4 and 0.3 each, as in torchvision's reference training)."""
        if isinstance(output, torch.Tensor):
            return output, self._loss(output, targets)
        logits = output[0]
        aux = [a for a in output[1:] if a is not None]
        weight = 0.4 if len(aux) == 1 else 0.3
        return logits, self._loss(logits, targets) + sum(weight * self._loss(a, targets) for a in aux)

    def _loss(self, logits: torch.Tensor, targets: torch.Tensor, per_cell: bool = False) -> torch.Tensor:
        """Cross-entropy against class indices, or against class probabilities ``(N, classes)`` (mixed cells);
        its mean, or with ``per_cell`` each cell's own."""
        logits = logits.float()
        reduction = "none" if per_cell else "mean"
        if self.single_logit:
            smooth = self.config.label_smoothing
            positive = targets[:, 1] if targets.is_floating_point() else targets.float()
            soft = positive * (1 - smooth) + 0.5 * smooth
            weight = None
            if self.class_weights is not None:
                weight = self.class_weights[1] * positive + self.class_weights[0] * (1 - positive)
            return nn.functional.binary_cross_entropy_with_logits(logits[:, 0], soft, weight=weight,
                                                                  reduction=reduction)
        return nn.functional.cross_entropy(logits, targets, weight=self.class_weights,
                                           label_smoothing=self.config.label_smoothing, reduction=reduction)

    def _predictions(self, logits: torch.Tensor) -> torch.Tensor:
        return (logits[:, 0] > 0).long() if self.single_logit else logits.argmax(1)

    def training_step(self, batch, batch_idx):
        images, targets, *taught = batch  # taught: the teacher's probabilities for these cells, when there is one
        images = augment_batch(images, rotate_flip=self.config.rotate_flip, color_jitter=self.config.color_jitter,
                               stain_jitter=self.config.stain_jitter)
        labels = targets
        if self.mixing is not None:  # blends need floats; the labels become class probabilities
            images = images.float() / 255.0 if images.dtype == torch.uint8 else images
            images, labels = self.mixing(images, targets)
        output = self(images)
        logits, loss = self._main_and_aux_loss(output, labels)
        if self.config.bootstrap > 0 and self.current_epoch > 0 and isinstance(output, torch.Tensor):
            labels = self._bootstrapped(logits, targets)
            loss = self._loss(logits, labels)
        if self.config.drop_hardest > 0 and self.current_epoch > 0 and isinstance(output, torch.Tensor):
            # the cells the model finds hardest to fit, once it has seen them all, are the likeliest to be
            # filed under the wrong class: their loss is left out of this step's
            per_cell = self._loss(logits, labels, per_cell=True)
            keep = max(1, len(per_cell) - int(len(per_cell) * self.config.drop_hardest))
            loss = per_cell.topk(keep, largest=False, sorted=False).values.mean()
        if taught:  # the label's loss and the teacher's (smoothed alike), in the configured shares
            share = self.config.teacher_weight
            loss = (1 - share) * loss + share * self._loss(logits, taught[0])
        accuracy = (self._predictions(logits) == targets).float().mean()  # against each cell's own class
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, sync_dist=True)
        self.log("train_acc", accuracy, on_step=False, on_epoch=True, sync_dist=True)
        return loss

    def _bootstrapped(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Hard bootstrapping (Reed et al. 2015): each cell's target is its label, with ``bootstrap`` of it
        replaced by the class the model calls it now, so that a label the model firmly contradicts weighs
        less.  Class probabilities ``(N, classes)``."""
        share = self.config.bootstrap
        label = nn.functional.one_hot(targets, self.num_classes).float()
        call = nn.functional.one_hot(self._predictions(logits.detach()), self.num_classes).float()
        return (1 - share) * label + share * call

    def validation_step(self, batch, batch_idx):
        images, targets = batch
        logits = self(images)
        # sync_dist: in a distributed run every process sees part of the cells; average them (no-op otherwise)
        self.log("val_loss", self._loss(logits, targets), on_epoch=True, prog_bar=True, sync_dist=True)
        self.log("val_acc", (self._predictions(logits) == targets).float().mean(), on_epoch=True, prog_bar=True,
                 sync_dist=True)

    def configure_optimizers(self):
        c = self.config
        params = [p for p in self.model.parameters() if p.requires_grad]
        # The fused update is one kernel over all parameters instead of several per tensor: on the CPU it
        # took the seed malaria CNN's Adam step (a million weights in its dense layer) from 5.8 to 2.2 ms
        # (BENCHMARKS.md, "8-bit prediction, libspng decoding, the fused optimiser step").
        fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params) or None
        if c.optimizer == "sgd":
            optimizer = torch.optim.SGD(params, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay,
                                        nesterov=True, fused=fused)
        elif c.optimizer == "adam":
            optimizer = torch.optim.Adam(params, lr=c.lr, weight_decay=c.weight_decay, fused=fused)
        else:
            optimizer = torch.optim.AdamW(params, lr=c.lr, weight_decay=c.weight_decay, fused=fused)
        if c.schedule == "none":
            return optimizer
        if c.schedule == "onecycle":
            total = int(self.trainer.estimated_stepping_batches)
            scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=c.lr, total_steps=max(total, 1),
                                                            pct_start=0.2)
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
        if c.schedule == "cosine":
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=c.epochs)
        else:
            scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=max(c.epochs // 3, 1), gamma=0.1)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
