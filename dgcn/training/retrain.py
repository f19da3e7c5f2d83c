"""Retraining (spec 5): a segmentation network on dense labels with cross-entropy, 255 ignored, on random scale +
crop + mirror samples of the native images; a multi-scale network (DeepLab's MSC) supervised at every scale."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from dgcn import distributed
from dgcn.data.augment import CropGeometry, nearest_indices
from dgcn.data.crops import Indexed, LabelCrops
from dgcn.data.palette import IGNORE_INDEX
from dgcn.models.segmenter import SegmentationOutput
from dgcn.precision import FLOAT32, Precision
from dgcn.training.batchnorm import apply_batchnorm_policy
from dgcn.training.loader import EpochLoader, network_input
from dgcn.training.loop import TrainingLog
from dgcn.training.supervised import train_supervised


def zoom_labels(labels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, H, W) labels -> (B, height, width) by nearest neighbour on pixel centres (augment.nearest_indices, as
    PIL's NEAREST that deeplab-pytorch resizes its labels with)."""
    rows, cols = (torch.from_numpy(nearest_indices(out, size_in)).to(labels.device)
                  for out, size_in in zip(size, labels.shape[-2:], strict=True))
    return labels.index_select(1, rows).index_select(2, cols)


def segmentation_loss(out: SegmentationOutput, target: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """Cross-entropy of a network's output against (B, H, W) labels, IGNORE_INDEX ignored.

    Single-scale: the scores bilinearly upsampled to the labels. Multi-scale (out.scale_scores): as DeepLab's MSC
    training, the sum over each scale's scores and the fused scores, each against the labels zoomed to its grid.
    """
    if not out.scale_scores:
        scores = F.interpolate(out.scores, size=target.shape[-2:], mode="bilinear", align_corners=False)
        return F.cross_entropy(scores, target, weight=weight, ignore_index=IGNORE_INDEX)
    return sum(F.cross_entropy(scores, zoom_labels(target, tuple(scores.shape[-2:])), weight=weight,
                               ignore_index=IGNORE_INDEX) for scores in (*out.scale_scores, out.scores))


def train_segmenter(model: torch.nn.Module, images: Indexed, labels: Indexed, *, geometry: CropGeometry,
                    batch_size: int, seed: int, data_workers: int = 0, batchnorm: str = "train",
                    precision: Precision = FLOAT32, class_weights: Sequence[float] | None = None,
                    **settings) -> TrainingLog:
    """Train `model` on its device on dense labels, read and augmented per sample (LabelCrops).

    images: (H_i, W_i, 3) uint8 per sample, native size; labels: (H_i, W_i) uint8 per sample. geometry: random scale,
    crop (labels padded with 255) and colour jitter; mirror as the epoch plan says. data_workers: DataLoader processes
    (the result does not depend on it). batchnorm: "train" or "frozen" (dgcn.training.batchnorm). precision: the
    network's (mixed precision on CUDA). class_weights: one cross-entropy weight per class (None: all 1, the
    published loss). The loss: segmentation_loss. settings: the keyword arguments of train_supervised (epochs or
    iterations, iter_size, lr, weight_decay, checkpoint, optimizer, momentum, head_lr_mult, head_bias_*).
    """
    apply_batchnorm_policy(model, batchnorm)
    device = next(model.parameters()).device
    loader = EpochLoader(LabelCrops(images, labels, geometry), batch_size=batch_size, seed=seed,
                         workers=data_workers, pin_memory=device.type == "cuda")
    network = distributed.replicate(precision.wrap(model))
    weight = None if class_weights is None else torch.tensor(class_weights, dtype=torch.float32, device=device)

    def inputs(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return network_input(batch[0], device), batch[1].to(device)

    def loss(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return segmentation_loss(network(x), target, weight)

    return train_supervised(model, loader, inputs, loss, iters_per_epoch=len(loader), desc="retrain",
                            precision=precision, **settings)
