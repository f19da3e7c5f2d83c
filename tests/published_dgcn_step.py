"""The published DGCN training step and test-time inference, ported for tests (not part of the package).

A re-implementation, in this project's words, of what the official DGCN code (github.com/hustvl/DGCN, commit aad0303;
cited as file:line) computes for one training sample (dataset.py), one training step (train.py) and the multi-scale
inference of one image (evaluate.py), so that tests can run it beside ours on the same network and data. The kNN
matrix and the graph cuts are published_supervision.py's port.

- The network is ours (dgcn.models): only the step's computation is ported. The port calls its trunk and head itself
  and builds the graph features as train.py does (model.py:171-187 returns layer1, layer3 and the class scores).
- scipy is not installed here, so the published calls of scipy.ndimage.zoom (mode "constant", scipy 1.x before 1.6,
  ni_interpolation.c / ni_splines.c) are ported as well: output length round(n * factor); output sample k reads
  the input at k * (n_in - 1) / (n_out - 1) (the first and last samples of both aligned); order 0 takes the nearest
  sample (halves up), order 1 weighs the two around it by (1 - t, 1 - (1 - t)) in float64; a coordinate rounded past
  the last input sample reads 0.
- Where our code deliberately differs, the port takes the difference as an argument whose default is the published
  behaviour, so that a test can adopt our convention for one part at a time: `Normalisation`, `memory_format` (the
  input's layout), `crf_images` (the constrain target's image), `Inference` (the export's resampling and grid).
- Randomness is injected: the crop's corner and the mirror flag are arguments (dataset.py:83-84, 98 draw them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pydensecrf.densecrf as dcrf
import torch
import torch.nn.functional as F
from published_supervision import published_knn_matrix, published_supervision
from pydensecrf.utils import unary_from_softmax
from torch import nn

# train.py:60 and evaluate.py:89: the mean pixel, in RGB order.
IMG_MEAN = (122.67891434, 116.66876762, 104.00698793)
# train.py:159: the mean added back to the network input to colour the training CRF's image.
CRF_MEAN_PIXEL = (123.0, 117.0, 104.0)

def zoom_shape(length: int, factor: float) -> int:
    """The length scipy.ndimage.zoom gives an axis of `length` samples zoomed by `factor`: round(length * factor)."""
    return int(round(length * factor))


def zoom_coordinates(out_len: int, in_len: int) -> tuple[np.ndarray, np.ndarray]:
    """(out_len,) float64 input coordinates k * (in_len - 1) / (out_len - 1) of scipy's zoom (in C doubles, as scipy
    multiplies them) and (out_len,) bool: not rounded past the last input sample."""
    step = (in_len - 1) / (out_len - 1) if out_len > 1 else 1.0
    coordinates = np.arange(out_len) * step
    return coordinates, coordinates <= in_len - 1


def scipy_nearest(out_len: int, in_len: int) -> tuple[np.ndarray, np.ndarray]:
    """scipy's zoom(order=0) along one axis: the nearest input sample (halves round up) and whether it is inside."""
    coordinates, inside = zoom_coordinates(out_len, in_len)
    return np.minimum(np.floor(coordinates + 0.5).astype(np.int64), in_len - 1), inside


def zoom_nearest(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(..., H, W) -> (..., h, w) by scipy_nearest on both axes, 0 where it leaves the input (scipy's cval)."""
    rows, rows_inside = scipy_nearest(size[0], values.shape[-2])
    cols, cols_inside = scipy_nearest(size[1], values.shape[-1])
    picked = values[..., rows[:, None], cols[None, :]]
    return np.where(rows_inside[:, None] & cols_inside[None, :], picked, 0).astype(values.dtype)


def _linear_axis(out_len: int, in_len: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scipy's zoom(order=1) along one axis: (lower index, upper index, lower weight, upper weight, inside)."""
    coordinates, inside = zoom_coordinates(out_len, in_len)
    lower = np.floor(coordinates)
    low_weight = 1.0 - (coordinates - lower)
    upper = lower.astype(np.int64) + 1
    # Past the end scipy mirrors the upper index; its weight is then 0.
    upper = np.where(upper >= in_len, max(in_len - 2, 0), upper)
    return lower.astype(np.int64), upper, low_weight, 1.0 - low_weight, inside


def zoom_linear(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(..., H, W) float32 -> (..., h, w) float32: scipy's zoom(order=1) of the last two axes (the other axes at factor
    1 add only zero-weighted terms): each output the sum, in float64 and scipy's order, of its four neighbours times
    (row weight) times (column weight); 0 where a coordinate leaves the input."""
    r0, r1, rw0, rw1, rows_inside = _linear_axis(size[0], values.shape[-2])
    c0, c1, cw0, cw1, cols_inside = _linear_axis(size[1], values.shape[-1])
    v = values.astype(np.float64)
    total = np.zeros(values.shape[:-2] + size)
    for rows, row_weight in ((r0, rw0), (r1, rw1)):
        for cols, col_weight in ((c0, cw0), (c1, cw1)):
            total = total + v[..., rows[:, None], cols[None, :]] * row_weight[:, None] * col_weight[None, :]
    return np.where(rows_inside[:, None] & cols_inside[None, :], total, 0.0).astype(values.dtype)


def wrap_to_uint8(values: np.ndarray) -> np.ndarray:
    """numpy's float -> uint8 cast as it behaves on x86 (train.py:164): truncated, then wrapped modulo 256."""
    return (np.trunc(values).astype(np.int64) % 256).astype(np.uint8)


@dataclass(frozen=True)
class Normalisation:
    """The network input of RGB pixel values: (value / divisor - mean) / std per channel, in float32 and that order
    (the order of dgcn.data.loading.normalize, so that our constants give its very bytes)."""

    divisor: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        """(H, W, 3) RGB values (uint8 or float32) -> (H, W, 3) float32."""
        x = torch.from_numpy(np.ascontiguousarray(pixels)).float().div(self.divisor)
        return ((x - torch.tensor(self.mean)) / torch.tensor(self.std)).numpy()


# dataset.py:50, 64-65, 95: cv2 reads BGR, the RGB-ordered IMG_MEAN is subtracted from it, then the channels are
# swapped to RGB: R - 104.0, G - 116.7, B - 122.7 (the slip of ../shared/spec/DGCN.md), no std.
TRAIN_NORMALISATION = Normalisation(1.0, IMG_MEAN[::-1])
# evaluate.py:54-65, 89: pylab reads RGB and the same mean is subtracted in RGB order: R - 122.7, ..., no std.
TEST_NORMALISATION = Normalisation(1.0, IMG_MEAN)


def published_sample(image: np.ndarray, cues: np.ndarray, *, crop_size: int, grid: int, top: int, left: int,
                     flip: bool, normalisation: Normalisation = TRAIN_NORMALISATION) -> tuple[np.ndarray, np.ndarray]:
    """One training sample as VOCDataSet.__getitem__ makes it (dataset.py:48-102, scale=False as train.py:343 sets).

    image: (H, W, 3) uint8 RGB; cues: (C, G, G) {0,1} over the whole image (cues_reader.py:20, 25-26); the crop's corner
    (top, left) in the padded image (dataset.py:83-84 draw it uniformly); grid: the network's output side for a
    crop_size input (41 for 321 in the published code, which hard-codes it). Returns (image (3, S, S) float32,
    cues (C, grid, grid) float64 {0,1}).
    """
    num_classes, cue_grid = cues.shape[0], cues.shape[1]
    height, width = image.shape[:2]
    # dataset.py:56-58: one label map, 255 where no cue; a cell with several cues keeps the highest class.
    markers = np.full((cue_grid, cue_grid), 255.0)
    classes, rows, cols = np.nonzero(cues == 1)
    markers[rows, cols] = classes
    # dataset.py:59-60: zoomed to the image, nearest.
    markers = zoom_nearest(markers, (zoom_shape(cue_grid, height / cue_grid), zoom_shape(cue_grid, width / cue_grid)))
    # dataset.py:64-65 (and the channel swap of :95, done first here: the values are the same).
    pixels = normalisation(image)
    # dataset.py:68-81: padded at the bottom and right to the crop size: the image with 0, the markers with 255.
    pad = ((0, max(crop_size - height, 0)), (0, max(crop_size - width, 0)))
    pixels = np.pad(pixels, (*pad, (0, 0)))
    markers = np.pad(markers, pad, constant_values=255.0)
    # dataset.py:83-87: the crop.
    window = (slice(top, top + crop_size), slice(left, left + crop_size))
    pixels, markers = pixels[window], markers[window].astype(np.float32)
    # dataset.py:88: the crop's markers zoomed to the grid, nearest.
    markers = zoom_nearest(markers, (zoom_shape(crop_size, grid / crop_size),) * 2)
    # dataset.py:89-94: one channel per class again; 255 (no cue, padding) sets none.
    crop_cues = (markers[None] == np.arange(num_classes)[:, None, None]).astype(np.float64)
    # dataset.py:95-96: channels first; dataset.py:97-101: mirrored with its cues.
    pixels = pixels.transpose(2, 0, 1)
    if flip:
        pixels, crop_cues = pixels[:, :, ::-1], crop_cues[:, :, ::-1]
    return np.ascontiguousarray(pixels), np.ascontiguousarray(crop_cues)


def published_batchnorm(model: nn.Module) -> None:
    """The published BN mode: train() (train.py:340), every BN layer's affine parameters frozen (model.py:67-80,
    131-133, 158-160). BN normalises with the batch statistics and updates its running ones."""
    model.train()
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            for parameter in module.parameters(recurse=False):
                parameter.requires_grad_(False)


def published_forward(model: nn.Module, images: np.ndarray, *,
                      memory_format: torch.memory_format = torch.contiguous_format
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """train.py:370-372: (B, 3, S, S) float32 network input -> (class scores (B, C, g, g), graph features
    (B, E + M, g, g)): layer1 resized bilinearly to the grid (align_corners=True), then layer3.
    memory_format: the input's layout, which changes the convolutions' rounding only."""
    levels = model.trunk(torch.from_numpy(images).contiguous(memory_format=memory_format))
    scores = model.head(levels.deep)
    early = F.interpolate(levels.early, size=scores.shape[-2:], mode="bilinear", align_corners=True)
    return scores, torch.cat((early, levels.middle), dim=1)


def published_softmax(scores: torch.Tensor, min_prob: float = 1e-7) -> torch.Tensor:
    """train.py:253-260 (min_prob: train.py:362): softmax over classes, plus min_prob, renormalised."""
    exp = torch.exp(scores - scores.max(dim=1, keepdim=True).values)
    probs = exp / exp.sum(dim=1, keepdim=True) + min_prob
    return probs / probs.sum(dim=1, keepdim=True)


def published_crf_images(images: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """train.py:159-164: the (B, 3, S, S) network input zoomed to the grid (order 1), channels last, plus the mean
    pixel, cast to uint8 -> (B, h, w, 3)."""
    zoomed = zoom_linear(images, grid).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(wrap_to_uint8(zoomed + np.array(CRF_MEAN_PIXEL)))


def published_crf_log_probs(probs: np.ndarray, images: np.ndarray) -> np.ndarray:
    """train.py:154-172 with crf_inference of train.py:137-150: (B, C, h, w) float32 probabilities (a copy: modified)
    and (B, h, w, 3) uint8 images -> (B, C, h, w) float64 log of the CRF's probabilities Q, floored at 1e-4 and
    renormalised (train.py:169-170)."""
    batch, num_classes, height, width = probs.shape
    probs[probs < 0.0001] = 0.0001  # train.py:156
    result = np.zeros(probs.shape)
    for b in range(batch):
        crf = dcrf.DenseCRF2D(width, height, num_classes)
        crf.setUnaryEnergy(np.ascontiguousarray(unary_from_softmax(probs[b])))
        crf.addPairwiseGaussian(sxy=3 / 12, compat=3)
        crf.addPairwiseBilateral(sxy=80 / 12, srgb=13, rgbim=np.copy(images[b]), compat=10)
        result[b] = np.array(crf.inference(10)).reshape(num_classes, height, width)
    result[result < 0.0001] = 0.0001
    result = result / result.sum(axis=1, keepdims=True)
    return np.log(result)


def published_constrain_loss(probs: torch.Tensor, log_q: np.ndarray) -> torch.Tensor:
    """train.py:176-185: mean over pixels of sum_c Q_c log(clip(Q_c / P_c, 0.05, 20)); the clip passes the gradient
    where the ratio is inside, as a product with the masks."""
    q = torch.exp(torch.from_numpy(log_q)).float()
    ratio = q / probs
    low, high = ratio < 0.05, ratio > 20
    clipped = ratio * (~low).float() * (~high).float() + low.float() * 0.05 + (high * 20).float()
    return torch.mean(torch.sum(q * torch.log(clipped), dim=1))


def published_seeding_loss(probs: torch.Tensor, supervision: np.ndarray) -> torch.Tensor:
    """train.py:263-278: per image the mean -log P_0 over the background-supervised pixels plus the mean -log P_c over
    the foreground-supervised (pixel, class) pairs (counts floored at 1e-4), each averaged over the batch."""
    labels = torch.from_numpy(supervision).float()
    background, foreground = labels[:, 0], labels[:, 1:]
    count_bg = background.sum(dim=2, keepdim=True).sum(dim=1, keepdim=True)
    count_fg = foreground.sum(dim=3, keepdim=True).sum(dim=2, keepdim=True).sum(dim=1, keepdim=True)
    sum_bg = (background * torch.log(probs[:, 0])).sum(dim=2, keepdim=True).sum(dim=1, keepdim=True)
    sum_fg = (foreground * torch.log(probs[:, 1:])).sum(dim=3, keepdim=True).sum(dim=2, keepdim=True).sum(
        dim=1, keepdim=True)
    floor = torch.tensor(0.0001)
    return -(sum_bg / torch.max(count_bg, floor)).mean() - (sum_fg / torch.max(count_fg, floor)).mean()


class StepResult(NamedTuple):
    """One step's losses (scalar tensors, differentiable), its smoothed probabilities P (B, C, h, w), the kNN matrix
    (B, n, n) float32, the supervision (B, C, h, w) float32 and the CRF's log probabilities log Q (B, C, h, w)
    float64."""

    loss: torch.Tensor
    seeding: torch.Tensor
    constrain: torch.Tensor
    probs: torch.Tensor
    knn: np.ndarray
    supervision: np.ndarray
    log_q: np.ndarray


def published_losses(scores: torch.Tensor, features: torch.Tensor, images: np.ndarray, cues: np.ndarray,
                     labels: np.ndarray, *, crf_images: np.ndarray | None = None, k: int = 10) -> StepResult:
    """train.py:374-383 on published_forward's outputs: images (B, 3, S, S) the network input, cues (B, C, g, g) the
    samples' cues, labels (B, C) the image labels with background (cues_reader.py:19-23); crf_images: the CRF's
    (B, g, g, 3) uint8 images, None for published_crf_images."""
    knn = published_knn_matrix(features.detach(), k)  # train.py:374
    probs = published_softmax(scores)  # train.py:375
    small = published_crf_images(images, tuple(scores.shape[-2:])) if crf_images is None else crf_images
    # train.py:378: .cpu() of the published CUDA tensor is a copy, so the in-place floor leaves probs alone.
    log_q = published_crf_log_probs(probs.detach().numpy().copy(), small)
    constrain = published_constrain_loss(probs, log_q)  # train.py:379
    # train.py:380-381, 207-251: one cut per image label (train.py:213), background included.
    classes = [np.flatnonzero(row) for row in labels]
    supervision = published_supervision(cues, probs.detach().numpy().copy(), knn, classes=classes)
    seeding = published_seeding_loss(probs, supervision)  # train.py:382
    return StepResult(constrain + seeding, seeding, constrain, probs, knn, supervision, log_q)  # train.py:383


@dataclass(frozen=True)
class Inference:
    """How published_probabilities computes each part; the defaults are evaluate.py's.

    normalisation: of the RGB values (evaluate.py:63, 89). resample: "scipy", zoom order 1 of the image per scale and
    of the scores (evaluate.py:58-60, 117), or "torch": bilinear, align_corners=False, of the normalised image and of
    the scores (ours). size: "image", the scores at the image's size (evaluate.py:116-117), or "grid": at the scale-1
    output grid (ours). floor: probabilities floored without renormalising (evaluate.py:122-123); None: none. The
    scales' scores are summed, then one softmax (evaluate.py:118-120), as ours.
    """

    normalisation: Normalisation = TEST_NORMALISATION
    resample: str = "scipy"
    size: str = "image"
    floor: float | None = 1e-5


def _resized(values: torch.Tensor, size: tuple[int, int], resample: str) -> torch.Tensor:
    """(1, K, h, w) float32 -> (1, K, H, W) by scipy's zoom(order=1) or torch's bilinear (align_corners=False)."""
    if resample == "scipy":
        return torch.from_numpy(zoom_linear(values.numpy(), size))
    return F.interpolate(values, size=size, mode="bilinear", align_corners=False)


@torch.no_grad()
def published_scores(model: nn.Module, image: np.ndarray, scales: Sequence[float] = (0.75, 1.0, 1.25),
                     how: Inference = Inference()) -> list[torch.Tensor]:
    """evaluate.py:101, 109-114: the (1, C, h_s, w_s) class scores of the network in eval mode for each of `scales` of
    the (H, W, 3) uint8 RGB image (no mirror), by how.normalisation and how.resample."""
    model.eval()  # evaluate.py:101
    height, width = image.shape[:2]
    scores = []
    for scale in scales:  # evaluate.py:112
        size = (zoom_shape(height, scale), zoom_shape(width, scale))
        if how.resample == "scipy":  # evaluate.py:54-65: zoomed as float32 (order 1), then the mean subtracted
            pixels = zoom_linear(image.astype(np.float32).transpose(2, 0, 1), size).transpose(1, 2, 0)
            x = torch.from_numpy(how.normalisation(pixels).transpose(2, 0, 1)[None].copy())
        else:
            x = torch.from_numpy(how.normalisation(image).transpose(2, 0, 1)[None].copy())
            x = x if scale == 1.0 else _resized(x, size, "torch")
        scores.append(model(x).scores)  # evaluate.py:114: the class scores
    return scores


def published_combination(scores: Sequence[torch.Tensor], image_size: tuple[int, int], grid: tuple[int, int],
                          how: Inference = Inference()) -> np.ndarray:
    """evaluate.py:115-123: published_scores' outputs -> (C, H, W) float32 probabilities at the image's size, or
    (C, h, w) at the scale-1 `grid` with how.size="grid"."""
    target = image_size if how.size == "image" else grid
    resized = [_resized(s, target, how.resample)[0] for s in scores]  # evaluate.py:115-117
    total = resized[0]
    for s in resized[1:]:  # evaluate.py:118-120
        total = total + s
    exp = torch.exp(total - total.max(dim=0, keepdim=True).values)
    probs = (exp / exp.sum(dim=0, keepdim=True)).numpy()
    if how.floor is not None:  # evaluate.py:122-123
        probs[probs < how.floor] = how.floor
    return probs
