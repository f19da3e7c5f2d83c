"""Class activation maps of the cue classifier, and the plain-CAM baseline label map."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from dgcn.data.loading import normalize
from dgcn.progress import progress


@torch.no_grad()
def compute_cams(model: torch.nn.Module, images: np.ndarray, *, batch_size: int = 64, flip: bool = True) -> np.ndarray:
    """(N, S, S, 3) uint8 images -> (N, C-1, h, w) float32 ReLU'd CAMs at the classifier's grid (mirror-averaged)."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    for start in progress(range(0, len(images), batch_size), desc="cams"):
        x = normalize(torch.from_numpy(images[start:start + batch_size]).to(device))
        cams = model.cams(x)
        if flip:
            cams = 0.5 * (cams + model.cams(x.flip(-1)).flip(-1))
        out.append(F.relu(cams).cpu().numpy())
    return np.concatenate(out).astype(np.float32)


def cam_label_map(cams: np.ndarray, present: np.ndarray, background: float, size: tuple[int, int]) -> np.ndarray:
    """The plain-CAM baseline: present classes' max-normalised CAMs upsampled to `size`, background at a constant.

    cams (C-1, h, w); present: foreground classes 1..C-1. Returns (H, W) uint8 labels (argmax, 0 = background).
    """
    num_classes = cams.shape[0] + 1
    scores = torch.full((num_classes, *cams.shape[1:]), -1.0)
    scores[0] = background
    for c in present:
        cam = torch.from_numpy(cams[c - 1])
        scores[c] = cam / cam.max().clamp_min(1e-5)
    scores = F.interpolate(scores[None], size=size, mode="bilinear", align_corners=False)[0]
    return scores.argmax(dim=0).numpy().astype(np.uint8)
