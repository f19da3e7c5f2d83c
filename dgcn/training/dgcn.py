"""DGCN training (spec section 2): graph-cut supervision grown from the cues, seeding + constrain loss, SGD."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch

from dgcn import distributed
from dgcn.cues import cue_quality
from dgcn.data.augment import CropGeometry
from dgcn.data.crops import CueCrops, Indexed
from dgcn.losses import constrain_loss, seeding_loss, smoothed_softmax
from dgcn.models.segmenter import SegmentationNet
from dgcn.precision import FLOAT32, Precision
from dgcn.supervision import SupervisionPool
from dgcn.training.batchnorm import apply_batchnorm_policy
from dgcn.training.loader import EpochLoader, network_input
from dgcn.training.loop import TrainingLog, check_finite, fit
from dgcn.training.optim import sgd_with_head_lr
from dgcn.training.schedule import warmup_step_decay

# What the cut's kNN graph is built on (train_dgcn's graph_features).
GRAPH_FEATURES = ("network", "rgb")


@dataclass(frozen=True)
class SGDSchedule:
    """The published optimiser: SGD with momentum, head at `head_lr_mult` x lr, warm-up then step decay."""

    lr: float
    momentum: float
    weight_decay: float
    head_lr_mult: float
    warmup_iters: int
    decay_every_epochs: int
    decay_gamma: float


def train_dgcn(model: SegmentationNet, images: Indexed, cues: Indexed, image_labels: np.ndarray,
               pool: SupervisionPool, schedule: SGDSchedule, *, geometry: CropGeometry, epochs: int, batch_size: int,
               seed: int, data_workers: int = 0, batchnorm: str = "train", constrain_weight: float = 1.0,
               masks: Indexed | None = None, checkpoint: Path | None = None, precision: Precision = FLOAT32,
               graph_features: str = "network", growth_start_epoch: int = 0) -> TrainingLog:
    """Train the segmentation network from cues on random crops of the native images (spec 2.6).

    images: (H_i, W_i, 3) uint8 per sample, native size; cues: (C, G, G) uint8 per sample over the whole image;
    image_labels (N, C) uint8 with background set. Each sample is cut by `geometry` and its cues remapped to the
    crop's grid (CueCrops); padded pixels carry no cue and count in neither loss. Each step cuts, per image and present
    class, a graph on the detached features, and fits the network to the grown supervision. Runs on the model's
    device; the cuts and CRFs run on the CPU workers of `pool`, the reading on `data_workers` DataLoader processes
    (results do not depend on either count). Under torchrun each rank trains a replica on its share of every batch.
    batchnorm: "train", "frozen" or "batch_stats" (dgcn.training.batchnorm). precision: the network's (mixed precision
    on CUDA); losses, kNN graphs and cuts stay float32. Loss: seeding + constrain_weight x constrain (0: the seeding
    loss alone).
    masks: None, or every sample's ground truth, for scoring only: each step then also logs the precision and recall
    (coverage) of the grown supervision and of the cues alone against the masks on the crop's grid
    (grown_precision, grown_recall, cue_precision, cue_recall; dgcn.cues.cue_quality).
    graph_features: what the kNN graph of the cut is built on: "network" (the network's graph features, a shallow and
    a deep layer: the published method) or "rgb" (the crop's colour on the grid, a low-level affinity as the CRF's).
    growth_start_epoch: the epochs before it train on the cues alone (a warm-up: the cut grows nothing, the constrain
    loss is as ever); 0 grows from the first step, as published.
    """
    if graph_features not in GRAPH_FEATURES:
        raise ValueError(f"graph_features must be one of {', '.join(GRAPH_FEATURES)}, got {graph_features!r}")
    apply_batchnorm_policy(model, batchnorm)
    device = next(model.parameters()).device
    grid = -(-geometry.crop_size // model.output_stride)
    loader = EpochLoader(CueCrops(images, cues, geometry, grid, masks), batch_size=batch_size, seed=seed,
                         workers=data_workers, pin_memory=device.type == "cuda")
    network = distributed.replicate(precision.wrap(model))
    optimizer = sgd_with_head_lr(model, lr=schedule.lr, momentum=schedule.momentum,
                                 weight_decay=schedule.weight_decay, head_lr_mult=schedule.head_lr_mult)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, partial(
        warmup_step_decay, warmup_iters=schedule.warmup_iters, iters_per_epoch=len(loader),
        decay_every_epochs=schedule.decay_every_epochs, gamma=schedule.decay_gamma))
    classes = [np.flatnonzero(row) for row in image_labels]

    def step(batch: tuple[torch.Tensor, ...]) -> dict[str, float]:
        x, grid_images, crop_cues, valid, mask_grid, indices = batch
        out = network(network_input(x, device))
        if out.scores.shape[-2:] != crop_cues.shape[-2:]:
            raise ValueError(f"the network's output grid {tuple(out.scores.shape[-2:])} for {geometry.crop_size}-pixel "
                             f"crops is not ceil(crop_size / output stride) = {grid}")
        probs = smoothed_softmax(out.scores)
        # Padded pixels are no graph nodes (their supervision is their cue: none) and count in no loss.
        features = out.features.detach() if graph_features == "network" else colour_features(grid_images)
        # A diverged network's NaN features have no nearest neighbours: stop here, not inside the cut.
        check_finite("the network's output", out.scores.detach(), features)
        # The scheduler counts the steps taken, a resumed run's included.
        growing = scheduler.last_epoch >= growth_start_epoch * len(loader)
        pending = pool.submit(features, probs.detach(), crop_cues.numpy(), [classes[i] for i in indices.tolist()],
                              grid_images.numpy(), valid=valid.numpy(), grow=growing)
        supervision, crf_probs = pending.result()
        seeding = seeding_loss(probs, torch.from_numpy(supervision))
        constrain = constrain_loss(probs, torch.from_numpy(crf_probs), valid=valid)
        loss = seeding + constrain_weight * constrain
        optimizer.zero_grad(set_to_none=True)
        precision.step(loss, optimizer)
        scores = {} if masks is None else _growth_scores(supervision, crop_cues.numpy(), mask_grid.numpy())
        return {"loss": loss.item(), "seeding": seeding.item(), "constrain": constrain.item(), **scores}

    return fit(model=model, optimizer=optimizer, scheduler=scheduler, step=step, batches=loader, epochs=epochs,
               checkpoint=checkpoint, desc="dgcn")


def colour_features(grid_images: torch.Tensor) -> torch.Tensor:
    """(B, g, g, 3) uint8 images on the network's grid -> (B, 3, g, g) float32 colour in [0, 1]: graph features."""
    return grid_images.permute(0, 3, 1, 2).float() / 255.0


def _growth_scores(supervision: np.ndarray, cues: np.ndarray, mask_grid: np.ndarray) -> dict[str, float]:
    """Precision and recall (coverage) of the grown supervision and of the cues against the ground truth of a batch."""
    grown, seeds = cue_quality(supervision, mask_grid), cue_quality(cues, mask_grid)
    return {"grown_precision": grown.precision, "grown_recall": grown.coverage,
            "cue_precision": seeds.precision, "cue_recall": seeds.coverage}
