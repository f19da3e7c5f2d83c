"""Pseudo-labels from a trained DGCN network: its test-time probabilities, the cues grown by graph cut, one label map
per image at the image's own size (spec section 3)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from dgcn.cues import CueStore
from dgcn.data.loading import load_stack, normalize
from dgcn.inference import predict, restrict_to_classes
from dgcn.supervision import ChunkedFuture, SupervisionPool


def iter_pseudo_labels(
    model: torch.nn.Module,
    load_image: Callable[[str], np.ndarray],
    names: Sequence[str],
    sizes: Sequence[tuple[int, int]],
    cues: Sequence[np.ndarray] | CueStore,
    image_labels: np.ndarray,
    pool: SupervisionPool,
    *,
    input_size: int,
    scales: Sequence[float],
    flip: bool,
    batch_size: int,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Per image of `names`, in order: (pseudo_label, network_argmax), both (H, W) uint8 at the image's size.

    load_image(name) -> (H', W', 3) uint8 RGB, resized to input_size x input_size; sizes[i] = (H, W) of the output;
    cues[i] (C, G, G) {0,1} on the network's feature grid; image_labels (N, C) {0,1}, background included.
    Per batch of `batch_size` consecutive images: `predict` (multi-scale over `scales`, mirrored with `flip`) at the
    cue grid, restricted to the image's classes; the cues grown by the pool's graph cut (its k, threshold and
    seed_capacity) on the scale-1 features; pseudo_label = argmax over the present classes of (grown mask +
    probability) upsampled bilinearly to (H, W), network_argmax the same without the grown mask. Absent classes never
    appear in either. The cuts of one batch run in the pool's workers while the next batch goes through the network;
    results do not depend on the worker count.
    """
    count = len(names)
    if len(sizes) != count or len(cues) != count or len(image_labels) != count:
        raise ValueError(f"names ({count}), sizes ({len(sizes)}), cues ({len(cues)}) and image_labels "
                         f"({len(image_labels)}) must describe the same images")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    pending: tuple[range, torch.Tensor, torch.Tensor, ChunkedFuture[np.ndarray, np.ndarray]] | None = None
    for begin in range(0, count, batch_size):
        indices = range(begin, min(begin + batch_size, count))
        x = normalize(torch.from_numpy(load_stack(load_image, names[indices.start:indices.stop], input_size,
                                                  desc=None)))
        batch_cues = np.stack([np.asarray(cues[i]) for i in indices])
        prediction = predict(model, x, scales=scales, flip=flip, size=batch_cues.shape[-2:])
        present = torch.from_numpy(np.asarray(image_labels[indices.start:indices.stop]))
        probs = restrict_to_classes(prediction.probs, present)
        classes = [np.flatnonzero(row) for row in present.numpy()]
        grown = pool.grow(prediction.features, probs, batch_cues, classes)
        # The previous batch's cuts ran in the workers during this batch's forward passes; finish it now.
        if pending is not None:
            yield from _label_maps(*pending, sizes)
        pending = (indices, probs, present, grown)
    if pending is not None:
        yield from _label_maps(*pending, sizes)


def _label_maps(indices: range, probs: torch.Tensor, present: torch.Tensor,
                grown: ChunkedFuture[np.ndarray, np.ndarray],
                sizes: Sequence[tuple[int, int]]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(pseudo_label, network_argmax) per image of a batch: probs (B, C, G, G) float32, present (B, C) {0,1}, grown
    resolving to (B, C, G, G) uint8."""
    supervision = grown.result()
    for row, i in enumerate(indices):
        # Both maps in one interpolate call: the grown mask (0/1) added to the probability makes the cut decide where it
        # claims a pixel and the network elsewhere.
        both = torch.stack([torch.from_numpy(supervision[row]).float() + probs[row], probs[row]])
        up = F.interpolate(both, size=tuple(int(v) for v in sizes[i]), mode="bilinear", align_corners=False)
        up[:, present[row] == 0] = -1.0  # below any interpolated probability: an absent class never wins
        labels = up.argmax(dim=1).numpy().astype(np.uint8)
        yield labels[0], labels[1]
