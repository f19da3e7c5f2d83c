"""One DGCN training step and the export's probabilities, ours against the port of the published code
(published_dgcn_step.py), on two vendored VOC photos and a seeded, randomly initialised DeepLab-v2 ResNet-101.

Ours is driven through its entry points: train_dgcn for one step of one batch (the gradients stay on the parameters
after the SGD step: no weight decay), iter_pseudo_labels for the export. The port runs on a copy of the same initial
network. Published and ours agree on the cue remap (scipy's corner-aligned zoom), the single class per cell of
imported DSRG cues, the graph features (layer1 resized with align_corners=True), the constrain target's Q (floored at
1e-4, renormalised) and the export's combination of scales (their scores summed, one softmax). Where we deliberately
differ, the port is given our convention for that part, and a second test measures what the published convention
changes (printed with -s; the figures are quoted beside each switch):
- input: ImageNet mean / std in RGB order (published: the RGB-ordered mean subtracted from BGR, no std) and the
  input's memory layout (ours channels-last: rounding only);
- constrain target: the CRF on our grid image (PIL bilinear of the uint8 crop; published: scipy's zoom of the
  network input plus a mean pixel whose order does not match the input's);
- padding: ours leaves it out of the graph and the losses; the step's crops lie inside the photos, a padded sample
  is measured apart;
- export: flip off (the published evaluate.py has none); the probabilities at the network's grid, restricted to the
  image's classes (published: at the image's size), resampled by torch (published: scipy's zoom).
BatchNorm: the published mode, train() with frozen affine parameters: train_dgcn's batchnorm="batch_stats" on one
copy of the initial network, the port's published_batchnorm on the other.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import torch
from published_dgcn_step import (
    Inference,
    Normalisation,
    StepResult,
    published_batchnorm,
    published_combination,
    published_crf_images,
    published_forward,
    published_losses,
    published_sample,
    published_scores,
    scipy_nearest,
    zoom_linear,
)
from published_dgcn_step import zoom_nearest as zoom_nearest_published

from dgcn.cues import export_published_cues, import_published_cues
from dgcn.data.augment import CropGeometry, zoom_nearest, zoom_samples
from dgcn.data.crops import CueCrops, SampleKey
from dgcn.data.loading import MEAN, STD
from dgcn.data.voc import VOCDataset
from dgcn.evidence import evidence_unary
from dgcn.inference import restrict_to_classes
from dgcn.models.deeplab_v2 import deeplab_v2
from dgcn.models.segmenter import SegmentationNet
from dgcn.pseudo_labels import iter_pseudo_labels
from dgcn.storage.evidence import Evidence
from dgcn.supervision import SupervisionPool
from dgcn.training.dgcn import SGDSchedule, train_dgcn
from dgcn.training.loop import epoch_batches

CLASSES, CUE_GRID = 21, 41
CROP = 97  # a 13 x 13 grid: one step of ResNet-101 in seconds on a CPU
SEED = 3
OUR_NORMALISATION = Normalisation(255.0, MEAN, STD)
# Our export, as a published_dgcn_step.Inference: every part switched to ours.
OUR_INFERENCE = Inference(normalisation=OUR_NORMALISATION, resample="torch", size="grid", floor=None)
EXPORT_SCALES = (0.75, 1.0, 1.25)


def relative(ours: torch.Tensor | np.ndarray, published: torch.Tensor | np.ndarray) -> float:
    """max |ours - published| / max |published|."""
    ours, published = torch.as_tensor(ours).detach().double(), torch.as_tensor(published).detach().double()
    return float((ours - published).abs().max() / published.abs().max())


def interior_cues(mask: np.ndarray, rng: np.random.Generator, keep: float = 0.3) -> np.ndarray:
    """(C, 41, 41) uint8 cues from a ground-truth mask, one class per cell as DSRG's: the mask's class at the cells
    whose 3 x 3 neighbourhood on the grid shares it, `keep` of them (sparse, so that the cut has room to grow)."""
    grid = zoom_nearest(mask, (CUE_GRID, CUE_GRID)).astype(np.int64)
    padded = np.pad(grid, 1, constant_values=-1)
    same = np.ones(grid.shape, dtype=bool)
    for dr in (0, 1, 2):
        for dc in (0, 1, 2):
            same &= padded[dr:dr + CUE_GRID, dc:dc + CUE_GRID] == grid
    rows, cols = np.nonzero(same & (grid != 255) & (rng.random(grid.shape) < keep))
    cues = np.zeros((CLASSES, CUE_GRID, CUE_GRID), dtype=np.uint8)
    cues[grid[rows, cols], rows, cols] = 1
    return cues


class Photos(NamedTuple):
    """The training photos: images (H, W, 3) uint8, cues (C, 41, 41) uint8, image labels (N, C) uint8."""

    images: list[np.ndarray]
    cues: list[np.ndarray]
    labels: np.ndarray


@pytest.fixture(scope="module")
def photos(voc_mini: Path) -> Photos:
    dataset = VOCDataset(voc_mini, "train_aug")
    names = dataset.names[:2]  # 500 x 338 and 500 x 375
    rng = np.random.default_rng(0)
    labels = np.zeros((len(names), CLASSES), dtype=np.uint8)
    labels[:, 0] = 1
    for row, name in zip(labels, names, strict=True):
        row[list(dataset.image_labels(name))] = 1
    return Photos([dataset.image(name) for name in names], [interior_cues(dataset.mask(name), rng) for name in names],
                  labels)


@pytest.fixture(scope="module")
def initial() -> SegmentationNet:
    """The shared initial network, each side sets its BN mode on its copy. The background's score is raised by 3 so
    that P_0 > 0.7 on some pixels: the cut then grows cues (a random head is rarely that confident)."""
    torch.manual_seed(0)
    model = deeplab_v2(CLASSES)
    with torch.no_grad():
        model.head.branches[0].bias[0] += 3.0
    return model


class OurStep(NamedTuple):
    """Our step: the losses train_dgcn logged (rounded to 6 decimals) and the network it left (gradients kept)."""

    losses: dict[str, float]
    model: SegmentationNet


@pytest.fixture(scope="module")
def our_step(initial: SegmentationNet, photos: Photos) -> OurStep:
    model = copy.deepcopy(initial)
    schedule = SGDSchedule(lr=5e-4, momentum=0.9, weight_decay=0.0, head_lr_mult=10.0, warmup_iters=200,
                           decay_every_epochs=3, decay_gamma=0.3)
    with SupervisionPool(workers=0) as pool:
        log = train_dgcn(model, photos.images, photos.cues, photos.labels, pool, schedule,
                         geometry=CropGeometry(CROP), epochs=1, batch_size=len(photos.images), seed=SEED,
                         batchnorm="batch_stats")
    assert len(log.steps) == 1
    return OurStep(log.steps[0], model)


class Batch(NamedTuple):
    """The step's batch as both sides cut it: our CueCrops items, and per sample the published_sample arguments that
    give the same crop (image, cues and corner) and its output under our normalisation."""

    ours: list[tuple]
    corners: list[dict]
    published: list[tuple[np.ndarray, np.ndarray]]
    labels: np.ndarray

    def cut(self, **conventions: object) -> tuple[np.ndarray, np.ndarray]:
        """The batch's (images, cues) from published_sample with `conventions` (published defaults)."""
        pairs = [published_sample(**corner, **conventions) for corner in self.corners]
        return np.stack([image for image, _ in pairs]), np.stack([cues for _, cues in pairs])


def samples(photos: Photos, crop: int, seed: int) -> Batch:
    """The first batch train_dgcn reads for (crop, seed): its epoch plan, each sample's crop from its own Generator
    (dgcn.data.crops.CropDataset), cut by both sides."""
    grid = -(-crop // 8)
    geometry = CropGeometry(crop)
    dataset = CueCrops(photos.images, photos.cues, geometry, grid)
    plan = epoch_batches(len(photos.images), len(photos.images), seed, 0)[0]
    ours, corners = [], []
    for index, flip in zip(plan.indices.tolist(), plan.flips.tolist(), strict=True):
        _, window = geometry.place(photos.images[index], np.random.default_rng([seed, 0, index]))
        ours.append(dataset[SampleKey(seed, 0, index, flip)])
        corners.append({"image": photos.images[index], "cues": photos.cues[index], "crop_size": crop, "grid": grid,
                        "top": window.top, "left": window.left, "flip": flip})
    published = [published_sample(**corner, normalisation=OUR_NORMALISATION) for corner in corners]
    return Batch(ours, corners, published, photos.labels[plan.indices])


@pytest.fixture(scope="module")
def batch(photos: Photos) -> Batch:
    return samples(photos, CROP, SEED)


def port_losses(initial: SegmentationNet, images: np.ndarray, cues: np.ndarray, labels: np.ndarray,
                crf_images: np.ndarray | None, *, memory_format: torch.memory_format = torch.channels_last,
                backward: bool = False) -> tuple[StepResult, SegmentationNet]:
    """The published step on a copy of the initial network, our convention wherever an argument is left at its
    default: (its result, the copy, with the gradients when `backward`)."""
    model = copy.deepcopy(initial)
    published_batchnorm(model)
    scores, features = published_forward(model, images, memory_format=memory_format)
    result = published_losses(scores, features, images, cues, labels, crf_images=crf_images)
    if backward:
        result.loss.backward()
    return result, model


def our_crf_images(batch: Batch) -> np.ndarray:
    """(B, g, g, 3) uint8: the CRF's images of our samples (CueCrops' grid images)."""
    return np.stack([item[1] for item in batch.ours])


def gradient_difference(ours: torch.nn.Module, published: torch.nn.Module) -> float:
    """The largest per-parameter `relative` difference of two networks' gradients; both must leave the same
    parameters without one (frozen)."""
    worst = 0.0
    mine = dict(ours.named_parameters())
    for name, parameter in published.named_parameters():
        assert (mine[name].grad is None) == (parameter.grad is None), name
        if parameter.grad is not None:
            worst = max(worst, relative(mine[name].grad, parameter.grad))
    return worst


def test_zoom_port_samples_as_scipy_did() -> None:
    """The port of scipy.ndimage.zoom (scipy < 1.6) on values worked out by hand: samples at k * (n - 1) / (m - 1),
    order 0 rounding halves up (np.arange(4.) zoomed by 7 / 4 is 0 1 1 2 2 3 3), order 1 interpolating, and 0 past
    the last sample where that product rounds above n - 1 (147 * (40 / 147) > 40: the last of 148 samples). Our cue
    zoom (dgcn.data.augment.zoom_samples) reads the same samples and marks the same past-the-end ones, from the cue
    grid to every image side up to 500 and from crops of 2-399 pixels to their grids."""
    ramp = np.arange(4.0)[None]
    assert zoom_nearest_published(ramp, (1, 7)).tolist() == [[0, 1, 1, 2, 2, 3, 3]]
    assert zoom_linear(ramp.astype(np.float32), (1, 7)).tolist() == [[0, 0.5, 1, 1.5, 2, 2.5, 3]]
    edge = zoom_nearest_published(np.arange(1.0, 42.0)[None], (1, 148))[0]
    assert edge[-2:].tolist() == [41, 0] and edge[:2].tolist() == [1, 1]
    pairs = [(side, CUE_GRID) for side in range(1, 501)] + [(-(-crop // 8), crop) for crop in range(2, 400)]
    for out_len, in_len in pairs:
        for ours, published in zip(zoom_samples(out_len, in_len), scipy_nearest(out_len, in_len), strict=True):
            assert np.array_equal(ours, published), (out_len, in_len)


def test_published_sample_equals_ours_under_our_normalisation_and_cue_zoom(photos: Photos) -> None:
    """Sample by sample, published_sample gives CueCrops' input bytes and cues once our normalisation and cue zoom
    are switched in: the padding, the crop, the remap's composition and the mirror agree. Covered: two crop sizes
    and a crop larger than its (shrunk) photo, so that padding is cut too."""
    small = [image[::6, ::6].copy() for image in photos.images]  # 84 x 57 and 84 x 63: smaller than the crop
    for images, crop, seed in ((photos.images, CROP, SEED), (photos.images, 129, 7), (small, CROP, 5)):
        batch = samples(photos._replace(images=images), crop, seed)
        for item, (image, cues) in zip(batch.ours, batch.published, strict=True):
            assert np.array_equal(image, item[0].numpy())
            assert np.array_equal(cues, item[2])
        padded = [~item[3] for item in batch.ours]
        assert any(mask.any() for mask in padded) == (images is small)


def test_imported_cues_keep_one_class_per_cell_as_the_published_sample(photos: Photos, tmp_path: Path) -> None:
    """Cue cells seeded with two classes (DSRG's pickle may hold such cells): the published sample keeps their highest
    class alone (dataset.py:56-58 writes one label map); so does dgcn.cues.import_published_cues, whose cues then crop
    to the published sample's."""
    cues = np.zeros((CLASSES, CUE_GRID, CUE_GRID), dtype=np.uint8)
    cues[[0, 15], 14:27, 14:27] = 1  # a block: the crop's grid samples a few of its cells
    labels = np.zeros((1, CLASSES), np.uint8)
    labels[0, [0, 15]] = 1
    export_published_cues(tmp_path / "cues.pickle", tmp_path / "input_list.txt", ["photo"], cues[None], labels)
    _, imported, _ = import_published_cues(tmp_path / "cues.pickle", tmp_path / "input_list.txt")
    assert imported[0, 0].sum() == 0 and np.array_equal(imported[0, 15], cues[15])
    image = photos.images[0][::6, ::6].copy()  # inside one crop
    ours = samples(Photos([image], [imported[0]], labels), CROP, SEED).ours[0][2]
    published = samples(Photos([image], [cues], labels), CROP, SEED).published[0][1]
    assert published.any() and not published[0].any()
    assert np.array_equal(ours, published)


def test_one_step_equals_the_published_step(our_step: OurStep, initial: SegmentationNet, batch: Batch) -> None:
    """train_dgcn's one step and the published step on the same batch and initial network: the same losses (relative
    1e-5; ours are logged to 6 decimals) and the same gradients (per parameter, max |difference| / max |gradient| <=
    1e-4), the same parameters frozen (batch_stats freezes what the published code does); and the cut grew cues, so
    the supervision was compared too."""
    images = np.stack([image for image, _ in batch.published])
    cues = np.stack([cues for _, cues in batch.published])
    port, model = port_losses(initial, images, cues, batch.labels, our_crf_images(batch), backward=True)
    grown = port.supervision.astype(bool) & ~cues.astype(bool)
    assert grown.sum() >= 10, "the cut grew (almost) nothing: a weak check"
    figures = {key: abs(our_step.losses[key] - value.item()) / abs(value.item())
               for key, value in (("loss", port.loss), ("seeding", port.seeding), ("constrain", port.constrain))}
    worst = gradient_difference(our_step.model, model)
    print(f"\nstep, ours vs published: relative loss differences {figures}, gradients {worst:.2e}; "
          f"{int(grown.sum())} cells grown")
    assert max(figures.values()) <= 1e-5
    assert worst <= 1e-4


@pytest.mark.slow
def test_published_conventions_change_the_step_by(initial: SegmentationNet, batch: Batch) -> None:
    """Each published convention in turn, the rest ours, then all of them: the relative change of the step's loss
    against the step with all ours (a random network: the figures say how large each part is, not what it costs a
    trained one). Each changes the loss or the kNN graph: every switch of the port is live. Measured (pytest -s),
    relative change of the loss:
    - input normalised as published (R - 104.0, G - 116.7, B - 122.7, no std): 8.1e-2 (5.8% of the kNN matrix);
    - input contiguous instead of channels-last (rounding alone): 5.5e-5 (scores move by ~4e-4 relative through 101
      layers with batch statistics; the published code's layout is cuDNN's);
    - the CRF image as published (mean |difference| 27 / 16 / 103 per RGB channel: the mean added back is in the
      other order, so R shifts +19 and B -19, and the uint8 cast wraps dark blue and bright red): 3.7e-3;
    - all published: 1.1e-1, the gradients by 2.0 (max |difference| / max |gradient| of the worst parameter)."""
    grid = batch.ours[0][2].shape[-2:]
    ours_images, cues = batch.cut(normalisation=OUR_NORMALISATION)
    published_input, _ = batch.cut()
    published_crf = published_crf_images(published_input, grid)
    base, base_model = port_losses(initial, ours_images, cues, batch.labels, our_crf_images(batch), backward=True)
    variants = {
        "input normalised as published": {"images": published_input},
        "input contiguous (rounding only)": {"memory_format": torch.contiguous_format},
        "CRF image as published": {"crf_images": published_crf},
    }
    mean_shift = np.abs(published_crf.astype(float) - our_crf_images(batch)).mean(axis=(0, 1, 2))
    print(f"\nCRF image, published - ours: mean |difference| per RGB channel {np.round(mean_shift, 1).tolist()}")
    arguments = {"images": ours_images, "cues": cues, "labels": batch.labels,
                 "crf_images": our_crf_images(batch)}
    for name, switch in variants.items():
        result, _ = port_losses(initial, **{**arguments, **switch})
        change = {key: relative(getattr(result, key), getattr(base, key)) for key in ("loss", "seeding", "constrain")}
        knn = float((result.knn != base.knn).mean())
        supervision = int((result.supervision != base.supervision).sum())
        print(f"{name}: relative change of loss {change['loss']:.2e} (seeding {change['seeding']:.2e}, "
              f"constrain {change['constrain']:.2e}); kNN matrix entries changed {knn:.2%}, supervision "
              f"(cell, class) pairs {supervision}")
        assert change["loss"] > 0 or knn > 0, name
    published, published_model = port_losses(
        initial, published_input, cues, batch.labels, None, memory_format=torch.contiguous_format, backward=True)
    loss_change = relative(published.loss, base.loss)
    gradient_change = gradient_difference(base_model, published_model)
    print(f"all published: relative change of loss {loss_change:.2e}, of gradients {gradient_change:.2e}")
    assert loss_change > 0 and gradient_change > 0


@pytest.mark.slow
def test_padding_counted_as_published_changes_the_step_by(initial: SegmentationNet, photos: Photos) -> None:
    """A batch whose crops overhang their (shrunk) photos: the published step counts the padding as graph nodes and in
    both losses, ours in neither. On the pixels of the images the constrain losses agree (the CRF sees the padded grid
    image on both sides); the seeding loss differs by what the cut grows into the padding. Measured (pytest -s): 48%
    of the grid padded; published vs ours, relative differences of the seeding loss 2.0e-2, of the constrain loss
    1.1e-1, of the loss 3.2e-2; 20 padded (cell, class) pairs grown."""
    small = photos._replace(images=[image[::6, ::6].copy() for image in photos.images])
    batch = samples(small, CROP, SEED)
    model = copy.deepcopy(initial)
    with SupervisionPool(workers=0) as pool:
        log = train_dgcn(model, small.images, small.cues, small.labels, pool, SGDSchedule(
            lr=5e-4, momentum=0.9, weight_decay=0.0, head_lr_mult=10.0, warmup_iters=200, decay_every_epochs=3,
            decay_gamma=0.3), geometry=CropGeometry(CROP), epochs=1, batch_size=2, seed=SEED, batchnorm="batch_stats")
    ours = log.steps[0]
    images = np.stack([image for image, _ in batch.published])
    cues = np.stack([cues for _, cues in batch.published])
    port, _ = port_losses(initial, images, cues, batch.labels, our_crf_images(batch))
    valid = torch.from_numpy(np.stack([item[3] for item in batch.ours]))
    q = torch.exp(torch.from_numpy(port.log_q)).float()
    divergence = (q * torch.log(torch.clamp(q / port.probs, 0.05, 20))).sum(dim=1)
    inside = divergence[valid].mean().item()
    padded_share = 1 - valid.float().mean().item()
    grown_in_padding = int((port.supervision.astype(bool) & ~valid.numpy()[:, None]).sum())
    print(f"\npadding ({padded_share:.0%} of the grid): relative difference, published vs ours, of the loss "
          f"{abs(port.loss.item() - ours['loss']) / ours['loss']:.2e}, seeding "
          f"{abs(port.seeding.item() - ours['seeding']) / ours['seeding']:.2e}, constrain "
          f"{abs(port.constrain.item() - ours['constrain']) / ours['constrain']:.2e}; "
          f"{grown_in_padding} padded (cell, class) pairs grown")
    assert padded_share > 0.1
    assert abs(inside - ours["constrain"]) <= 1e-5 * ours["constrain"]
    assert abs(port.constrain.item() - ours["constrain"]) > 1e-3 * ours["constrain"]


class ExportCase(NamedTuple):
    """image: (H, W, 3) uint8, a window of a vendored photo, at its native size; present: (C,) bool, its classes;
    model: the initial network with running statistics of the image, in eval mode."""

    image: np.ndarray
    present: np.ndarray
    model: SegmentationNet


@pytest.fixture(scope="module")
def export_case(voc_mini: Path, initial: SegmentationNet) -> ExportCase:
    """An 81 x 113 window of a photo (small: ResNet-101 at three scales in seconds). A fresh network's running
    statistics (0 and 1) would let eval mode's activations grow without bound through 101 layers: they are set to the
    image's batch statistics at scale 1 first, as training sets them."""
    dataset = VOCDataset(voc_mini, "train_aug")
    name = dataset.names[1]
    image = dataset.image(name)[150:231, 200:313].copy()
    present = np.zeros(CLASSES, dtype=bool)
    present[[0, *dataset.image_labels(name)]] = True
    model = copy.deepcopy(initial)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # a cumulative average: after one batch, its statistics
    model.train()
    with torch.no_grad():
        model(torch.from_numpy(OUR_NORMALISATION(image).transpose(2, 0, 1)[None].copy()))
    model.eval()
    return ExportCase(image, present, model)


def our_evidence(case: ExportCase, *, flip: bool) -> Evidence:
    """The export's evidence of the image: iter_pseudo_labels at the native size (input_size None, as VOC's export
    runs), no graph cut (pool None)."""
    no_cues = np.zeros((CLASSES, CUE_GRID, CUE_GRID), np.uint8)
    exported = iter_pseudo_labels(case.model, lambda name: case.image, ["window"], [no_cues],
                                  case.present[None].astype(np.uint8), None, input_size=None, scales=EXPORT_SCALES,
                                  flip=flip, batch_size=1)
    return next(iter(exported)).evidence


def restricted(probs: np.ndarray, present: np.ndarray) -> np.ndarray:
    """(C, h, w) probabilities restricted to the present classes and renormalised, as our export does."""
    return restrict_to_classes(torch.from_numpy(probs)[None], torch.from_numpy(present)[None])[0].numpy()


def test_export_probabilities_equal_the_published_inference(export_case: ExportCase) -> None:
    """Our export's evidence probabilities (float16, on the native image's grid, native / 8) equal the published
    multi-scale inference of the same network and image, our flip off and every convention of Inference switched to
    ours, to float16's precision (relative 2^-11)."""
    height, width = export_case.image.shape[:2]
    evidence = our_evidence(export_case, flip=False)
    assert evidence.grid == (-(-height // 8), -(-width // 8))
    scores = published_scores(export_case.model, export_case.image, EXPORT_SCALES, OUR_INFERENCE)
    port = restricted(published_combination(scores, (height, width), evidence.grid, OUR_INFERENCE),
                      export_case.present)
    figure = relative(evidence.probs.astype(np.float32), port)
    print(f"\nexport, ours vs published (conventions ours): relative difference {figure:.2e}")
    assert figure <= 2.0**-11


@pytest.mark.slow
def test_published_inference_conventions_change_the_export_by(export_case: ExportCase) -> None:
    """Each published convention of the inference in turn, the rest ours, then all of them, and our flip: compared at
    the image's size with what our CRF stage reads (evidence_unary: the grid's probabilities upsampled), over the
    image's classes: the largest change of a probability and the share of pixels whose most likely class changes.
    Each changes the probabilities. Measured (pytest -s), largest change of a probability (the most likely class
    changes on none of the pixels): our flip 0.027; input normalised as published 1.0; image and scores resized by
    scipy's zoom 0.018; scores resized to the image rather than the grid 0.015; the 1e-5 floor 9e-4 (float16's step);
    all published 0.75."""
    height, width = export_case.image.shape[:2]
    evidence = our_evidence(export_case, flip=False)
    classes = evidence.classes

    def unary(probs: np.ndarray, how: Inference) -> np.ndarray:
        """(K, H, W) over the present classes at the image's size, from probabilities at how.size."""
        probs = restricted(probs, export_case.present)
        if how.size == "image":
            return probs[classes]
        return evidence_unary(Evidence(probs.astype(np.float16), evidence.grown, evidence.present), (height, width),
                              0.5)[1]

    ours = unary(evidence.probs.astype(np.float32), OUR_INFERENCE)
    variants = {name: Inference(**{**vars(OUR_INFERENCE), field: getattr(Inference(), field)})
                for name, field in (("input normalised as published", "normalisation"),
                                    ("scales and scores resized by scipy's zoom", "resample"),
                                    ("scores resized to the image, not the grid", "size"),
                                    ("probabilities floored at 1e-5", "floor"))}
    variants["all published"] = Inference()
    cache: dict[tuple[Normalisation, str], list[torch.Tensor]] = {}
    flipped = unary(our_evidence(export_case, flip=True).probs.astype(np.float32), OUR_INFERENCE)
    figures = {"our flip (on vs off)": flipped}
    for name, how in variants.items():
        key = (how.normalisation, how.resample)
        if key not in cache:
            cache[key] = published_scores(export_case.model, export_case.image, EXPORT_SCALES, how)
        figures[name] = unary(published_combination(cache[key], (height, width), evidence.grid, how), how)
    print()
    for name, probs in figures.items():
        largest = float(np.abs(probs - ours).max())
        argmax = float((probs.argmax(axis=0) != ours.argmax(axis=0)).mean())
        print(f"export, {name}: largest probability change {largest:.2e}, most likely class changed on "
              f"{argmax:.1%} of the pixels")
        assert largest > 0, name
