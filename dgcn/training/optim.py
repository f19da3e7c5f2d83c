"""The published SGD set-up shared by DGCN training and DeepLab retraining."""

from __future__ import annotations

from collections.abc import Iterable

import torch


def trainable(parameters: Iterable[torch.nn.Parameter]) -> list[torch.nn.Parameter]:
    """The parameters that train (requires_grad): frozen BatchNorm affine parameters stay out of the optimiser."""
    return [parameter for parameter in parameters if parameter.requires_grad]


def sgd_with_head_lr(model: torch.nn.Module, *, lr: float, momentum: float, weight_decay: float,
                     head_lr_mult: float, head_bias_lr_mult: float | None = None,
                     head_bias_weight_decay: float | None = None) -> torch.optim.SGD:
    """SGD with momentum over parameter groups: the trunk at `lr`, the classifier head at `head_lr_mult` x `lr`, all
    with `weight_decay`.

    head_bias_lr_mult / head_bias_weight_decay: the head's biases (parameters named *bias) in a group of their own at
    that multiple of `lr` / with that weight decay, as DeepLab's 1x / 10x / 20x groups (biases 20x, no decay); None:
    as the head's weights. model must offer backbone_parameters() and head_parameters() (every network of
    dgcn.models.registry does); only trainable parameters join.
    """
    groups = [{"params": trainable(model.backbone_parameters()), "lr": lr}]
    if head_bias_lr_mult is None and head_bias_weight_decay is None:
        groups.append({"params": trainable(model.head_parameters()), "lr": lr * head_lr_mult})
    else:
        named = dict(model.head.named_parameters())
        biases = {name for name in named if name.endswith("bias")}
        groups += [
            {"params": trainable(named[name] for name in named if name not in biases), "lr": lr * head_lr_mult},
            {"params": trainable(named[name] for name in named if name in biases),
             "lr": lr * (head_lr_mult if head_bias_lr_mult is None else head_bias_lr_mult),
             "weight_decay": weight_decay if head_bias_weight_decay is None else head_bias_weight_decay},
        ]
    return torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay)
