"""Class activation maps of the cue classifier at each image's own aspect ratio, and the plain-CAM baseline."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from dgcn.data.loading import long_side_shape, normalize, resize_image
from dgcn.progress import progress


@torch.no_grad()
def cam_grid(model: torch.nn.Module, input_size: int) -> int:
    """G: the side of the classifier's CAM grid for an input_size x input_size input (41 for 321 at stride 8), the
    grid cues are stored on (a G x G map over the whole image, whatever its aspect ratio: the published format)."""
    model.eval()
    device = next(model.parameters()).device
    return int(model.cams(torch.zeros(1, 3, input_size, input_size, device=device)).shape[-1])


@torch.no_grad()
def compute_cams(model: torch.nn.Module, load: Callable[[str], np.ndarray], names: Sequence[str], *, input_size: int,
                 scales: Sequence[float] = (1.0,), flip: bool = True, batch_size: int = 64) -> np.ndarray:
    """CAMs of every named image on the G x G cue grid (G = cam_grid(model, input_size)): (N, C-1, G, G) float32.

    load(name) gives an (H, W, 3) uint8 RGB image. At each scale s the image is resized (keeping its aspect ratio) to
    a long side of round(input_size * s) pixels; the CAMs there, ReLU'd and averaged with those of the mirror image
    when `flip`, are resized bilinearly to G x G and averaged over the scales. Consecutive images of one size are
    batched (up to batch_size); a square image of input_size pixels at scale 1 is the classifier's training input.
    """
    if not scales or min(scales) <= 0:
        raise ValueError(f"scales must be positive, got {list(scales)}")
    grid = cam_grid(model, input_size)
    out = np.empty((len(names), model.num_foreground, grid, grid), dtype=np.float32)
    batch: list[np.ndarray] = []
    start = 0
    for i, name in enumerate(progress(names, desc="cams")):
        image = load(name)
        if batch and (image.shape != batch[0].shape or len(batch) == batch_size):
            out[start:i] = _batch_cams(model, np.stack(batch), input_size, grid, scales, flip)
            batch, start = [], i
        batch.append(image)
    if batch:
        out[start:] = _batch_cams(model, np.stack(batch), input_size, grid, scales, flip)
    return out


def _batch_cams(model: torch.nn.Module, images: np.ndarray, input_size: int, grid: int, scales: Sequence[float],
                flip: bool) -> np.ndarray:
    """(B, H, W, 3) uint8 images of one size -> (B, C-1, grid, grid) float32 scale-averaged CAMs."""
    device = next(model.parameters()).device
    height, width = images.shape[1:3]
    total = None
    for scale in scales:
        size = long_side_shape((height, width), round(input_size * scale))
        # PIL's antialiased resize, as the classifier's training inputs were made
        scaled = images if size == (height, width) else np.stack([resize_image(image, size) for image in images])
        x = normalize(torch.from_numpy(scaled).to(device))
        cams = model.cams(x)
        if flip:
            cams = 0.5 * (cams + model.cams(x.flip(-1)).flip(-1))
        cams = F.relu(cams)
        if cams.shape[-2:] != (grid, grid):
            cams = F.interpolate(cams, size=(grid, grid), mode="bilinear", align_corners=False)
        total = cams if total is None else total + cams
    return (total / len(scales)).cpu().numpy()


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
