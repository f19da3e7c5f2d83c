"""The published SGD set-up shared by DGCN training and DeepLab retraining."""

from __future__ import annotations

from collections.abc import Iterable

import torch


def trainable(parameters: Iterable[torch.nn.Parameter]) -> list[torch.nn.Parameter]:
    """The parameters that train (requires_grad): frozen BatchNorm affine parameters stay out of the optimiser."""
    return [parameter for parameter in parameters if parameter.requires_grad]


def sgd_with_head_lr(model: torch.nn.Module, *, lr: float, momentum: float, weight_decay: float,
                     head_lr_mult: float) -> torch.optim.SGD:
    """SGD with momentum over two groups: the trunk at `lr`, the classifier head at `head_lr_mult` x `lr`.

    model must offer backbone_parameters() and head_parameters() (every network of dgcn.models.registry does); only
    trainable parameters join.
    """
    return torch.optim.SGD([
        {"params": trainable(model.backbone_parameters()), "lr": lr},
        {"params": trainable(model.head_parameters()), "lr": lr * head_lr_mult},
    ], lr=lr, momentum=momentum, weight_decay=weight_decay)
