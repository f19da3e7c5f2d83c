"""Training geometry as published: random crops of the native image, cues remapped to the crop, padding masked, random
scale with ignore padding for retraining, per-sample randomness independent of the DataLoader's workers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import dgcn.training.dgcn as dgcn_training
from dgcn.data.augment import (
    ColorJitter,
    Crop,
    CropGeometry,
    nearest_indices,
    random_crop,
    remap_cues,
    zoom_samples,
)
from dgcn.data.crops import CueCrops, LabelCounts, LabelCrops, SampleKey, SquareImages
from dgcn.data.loading import normalize, resize_image, resize_labels
from dgcn.data.palette import IGNORE_INDEX
from dgcn.errors import InputError
from dgcn.losses import constrain_loss, seeding_loss
from dgcn.models.registry import build_segmenter
from dgcn.supervision import SupervisionPool
from dgcn.training.dgcn import SGDSchedule, colour_features, train_dgcn
from dgcn.training.loader import EpochLoader
from dgcn.training.loop import epoch_batches


def test_nearest_indices_sample_pixel_centres() -> None:
    assert nearest_indices(4, 8).tolist() == [1, 3, 5, 7]
    assert nearest_indices(8, 4).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert nearest_indices(2, 3).tolist() == [0, 2]
    assert nearest_indices(41, 41).tolist() == list(range(41))


def test_zoom_samples_align_the_first_and_last_samples_as_scipy_did() -> None:
    # scipy < 1.6's zoom(order=0), as the published code ran it: output k reads input k * (n - 1) / (m - 1), rounded
    # half up (np.arange(4.) zoomed to 7 samples is 0 1 1 2 2 3 3); pixel centres would read 0 0 1 2 2 3 3.
    assert zoom_samples(7, 4)[0].tolist() == [0, 1, 1, 2, 2, 3, 3]
    assert zoom_samples(41, 321)[0].tolist() == list(range(0, 321, 8))  # a 321 crop's grid: where its cells centre
    assert zoom_samples(1, 5)[0].tolist() == [0]
    # 147 * (40 / 147) > 40 in doubles: scipy wrote its cval for the last of 148 samples
    indices, inside = zoom_samples(148, 41)
    assert indices[-1] == 40 and inside[:-1].all() and not inside[-1]


def test_cues_are_remapped_to_a_crop_that_leaves_the_image() -> None:
    # A 4x4 cue grid over an 8-row x 6-column image, each grid pixel with its own pattern of three classes.
    cues = np.zeros((3, 4, 4), np.uint8)
    cues[0] = [[1, 0, 0, 0], [0, 0, 1, 1], [0, 0, 0, 0], [1, 1, 0, 0]]
    cues[1] = [[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 1, 1], [0, 0, 0, 0]]
    cues[2] = [[0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [0, 0, 0, 1]]
    # A 4-pixel window at row 2, column 4: columns 6 and 7 are padding. Its 2x2 grid samples window pixels 0 and 3
    # (the published zoom aligns the first and last), i.e. image rows 2, 5 (cue rows 1, 2: the image's rows read cue
    # rows 0 0 1 1 2 2 3 3) and image columns 4 (cue column 2: 0 1 1 2 2 3), 7 (padding).
    crop = Crop(top=2, left=4, size=4, height=8, width=6)
    remapped = remap_cues(cues, crop, grid=2)
    expected = np.zeros((3, 2, 2), np.uint8)
    expected[:, 0, 0] = [1, 0, 1]  # cue pixel (1, 2): multi-hot stays multi-hot
    expected[:, 1, 0] = [0, 1, 0]  # cue pixel (2, 2)
    np.testing.assert_array_equal(remapped, expected)
    assert crop.valid_grid(2).tolist() == [[True, False], [True, False]]


def _zoom_as_published(cues: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(C, H, W) cues zoomed by zoom_samples on both axes; a background cue where the zoom reads past the end (scipy's
    cval, 0: the background class in the published marker map)."""
    rows, rows_inside = zoom_samples(size[0], cues.shape[1])
    cols, cols_inside = zoom_samples(size[1], cues.shape[2])
    zoomed = cues[:, rows[:, None], cols[None, :]]
    past_end = ~(rows_inside[:, None] & cols_inside[None, :])
    zoomed[:, past_end] = 0
    zoomed[0, past_end] = 1
    return zoomed


@pytest.mark.parametrize("seed", range(6))
def test_remap_equals_zoom_crop_zoom(seed: int) -> None:
    rng = np.random.default_rng(seed)
    height, width, side, grid = (int(v) for v in rng.integers(20, 90, 4))
    height = (height, 148)[seed % 2]  # 148 rows: the zoom from 41 cue rows reads past the end at the last
    cue_grid = 41 if seed % 2 else side // 2 + 2
    cues = (rng.random((4, cue_grid, cue_grid)) < 0.3).astype(np.uint8)
    crop = random_crop(rng, height, width, int(rng.integers(10, 100)))
    # The published steps literally: zoom to the image, crop with no cue in the padding, zoom to the grid; ours keeps
    # no cue on the padding.
    window = crop.window(_zoom_as_published(cues, (height, width)).transpose(1, 2, 0), 0).transpose(2, 0, 1)
    literal = _zoom_as_published(window, (grid, grid)) * crop.valid_grid(grid)
    np.testing.assert_array_equal(remap_cues(cues, crop, grid), literal)
    padding = ~crop.valid_grid(grid)
    assert not remap_cues(np.ones_like(cues), crop, grid)[:, padding].any()


@pytest.mark.parametrize(("crop", "grid"), [
    (Crop(top=51, left=51, size=97, height=148, width=148), 13),  # 41 -> 148 reads past the end at image pixel 147
    (Crop(top=0, left=0, size=59, height=100, width=100), 8),  # 59 -> 8 reads past the end at the last grid cell
])
def test_remap_reads_past_the_end_as_background_as_old_scipy(crop: Crop, grid: int) -> None:
    cues = np.zeros((3, 41, 41), np.uint8)
    cues[2] = 1
    remapped = remap_cues(cues, crop, grid)
    rows, cols = crop.grid_samples(grid)
    assert (rows[-1], cols[-1]) == ((147, 147) if crop.height == 148 else (58, 58))
    edge = np.zeros((grid, grid), bool)
    edge[-1] = edge[:, -1] = True
    assert (remapped[:, edge] == np.array([[1], [0], [0]])).all()  # the published marker map's 0: background
    assert (remapped[:, ~edge] == np.array([[0], [0], [1]])).all()


def test_a_crop_of_the_whole_image_changes_nothing() -> None:
    # The embedded default: 96x96 images, 96 crops, 24x24 cues and grid.
    rng = np.random.default_rng(0)
    crop = random_crop(rng, 96, 96, 96)
    assert (crop.top, crop.left) == (0, 0)
    cues = (rng.random((6, 24, 24)) < 0.3).astype(np.uint8)
    np.testing.assert_array_equal(remap_cues(cues, crop, 24), cues)
    assert crop.valid_grid(24).all()


def test_random_crop_keeps_a_small_image_at_the_top_left() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        crop = random_crop(rng, 30, 50, 40)
        assert crop.top == 0 and 0 <= crop.left <= 10
    image = np.arange(12, dtype=np.uint8).reshape(3, 4)
    window = Crop(1, 2, 3, 3, 4).window(image, 255)
    assert window.tolist() == [[6, 7, 255], [10, 11, 255], [255, 255, 255]]


def _images(rng: np.random.Generator, sizes: list[tuple[int, int]]) -> list[np.ndarray]:
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in sizes]


def test_dgcn_sample_pads_with_the_mean_and_masks_the_padding() -> None:
    rng = np.random.default_rng(0)
    images = _images(rng, [(16, 12)])
    cues = [np.ones((3, 5, 5), np.uint8)]
    data = CueCrops(images, cues, CropGeometry(16), grid=4)
    image, grid_image, crop_cues, valid, mask_grid, index = data[SampleKey(seed=0, epoch=0, index=0, flip=False)]
    assert (mask_grid == IGNORE_INDEX).all()  # no masks given: nothing to score
    assert image.shape == (3, 16, 16) and grid_image.shape == (4, 4, 3) and crop_cues.shape == (3, 4, 4)
    assert index == 0 and valid.dtype == bool
    assert torch.equal(image[:, :, 12:], torch.zeros(3, 16, 4))  # columns past the image: 0, the mean
    assert torch.equal(image[:, :, :12], normalize(torch.from_numpy(images[0][None]))[0])
    assert valid.tolist() == [[True, True, True, False]] * 4  # grid columns sample window columns 0, 5, 10, 15
    np.testing.assert_array_equal(crop_cues, np.broadcast_to(valid, (3, 4, 4)))
    flipped = data[SampleKey(seed=0, epoch=0, index=0, flip=True)]
    assert torch.equal(flipped[0], image.flip(-1))
    np.testing.assert_array_equal(flipped[1], grid_image[:, ::-1])
    np.testing.assert_array_equal(flipped[2], crop_cues[..., ::-1])
    np.testing.assert_array_equal(flipped[3], valid[:, ::-1])


def test_dgcn_sample_mask_follows_the_crop_and_is_ignore_on_padding() -> None:
    rng = np.random.default_rng(1)
    images = _images(rng, [(16, 12)])
    mask = np.repeat(np.arange(12, dtype=np.uint8)[None] // 3, 16, axis=0)  # columns 0-2 -> 0, 3-5 -> 1, ...
    data = CueCrops(images, [np.ones((4, 5, 5), np.uint8)], CropGeometry(16), grid=4, masks=[mask])
    *_, mask_grid, _ = data[SampleKey(seed=0, epoch=0, index=0, flip=False)]
    # grid columns sample window columns 0, 5, 10 (mask 0, 1, 3: the pixels the cues sample) and 15 (padding)
    assert mask_grid.tolist() == [[0, 1, 3, IGNORE_INDEX]] * 4
    flipped = data[SampleKey(seed=0, epoch=0, index=0, flip=True)][4]
    np.testing.assert_array_equal(flipped, mask_grid[:, ::-1])


def test_retrain_sample_scales_crops_and_pads_labels_with_ignore() -> None:
    rng = np.random.default_rng(0)
    images = _images(rng, [(10, 8)])
    labels = [rng.integers(0, 3, (10, 8), dtype=np.uint8)]
    # Scale 0.5: a 5x4 image in a 16-pixel crop.
    image, target = LabelCrops(images, labels, CropGeometry(16, scale_range=(0.5, 0.5)))[SampleKey(0, 0, 0, False)]
    assert image.shape == (3, 16, 16) and target.shape == (16, 16) and target.dtype == torch.int64
    np.testing.assert_array_equal(target[:5, :4].numpy(), resize_labels(labels[0], (5, 4)))
    assert (target[5:] == IGNORE_INDEX).all() and (target[:, 4:] == IGNORE_INDEX).all()
    assert (image[:, 5:] == 0).all() and (image[:, :, 4:] == 0).all() and (image[:, :5, :4] != 0).any()
    # Scale 2: a 20x16 image, cropped to 16 at a random row; every label is a class.
    data = LabelCrops(images, labels, CropGeometry(16, scale_range=(2.0, 2.0)))
    tops = set()
    for epoch in range(12):
        image, target = data[SampleKey(0, epoch, 0, False)]
        scaled = resize_labels(labels[0], (20, 16))
        top = next(t for t in range(5) if np.array_equal(scaled[t:t + 16], target.numpy()))
        tops.add(top)
        mirrored = data[SampleKey(0, epoch, 0, True)]
        assert torch.equal(mirrored[0], image.flip(-1)) and torch.equal(mirrored[1], target.flip(-1))
    assert len(tops) > 1


def test_retrain_scale_is_drawn_from_the_range() -> None:
    rng = np.random.default_rng(1)
    images = _images(rng, [(40, 40)])
    data = LabelCrops(images, [np.zeros((40, 40), np.uint8)], CropGeometry(64, scale_range=(0.5, 1.5)))
    sides = {int((data[SampleKey(0, epoch, 0, False)][1][0] != IGNORE_INDEX).sum()) for epoch in range(20)}
    assert len(sides) > 5 and min(sides) >= 20 and max(sides) <= 60


def test_retrain_scale_is_one_of_the_steps() -> None:
    """scale_step 0.25: deeplab-pytorch's random choice of 0.5, 0.75, 1, 1.25, 1.5 (base.py:72), each about as often."""
    geometry = CropGeometry(64, scale_range=(0.5, 1.5), scale_step=0.25)
    assert geometry.scale_choices.tolist() == [0.5, 0.75, 1.0, 1.25, 1.5]
    rng = np.random.default_rng(0)
    heights = [geometry.draw_size(rng, 100, 80)[0] for _ in range(500)]
    assert sorted(set(heights)) == [50, 75, 100, 125, 150]
    assert min(heights.count(h) for h in set(heights)) > 70
    assert CropGeometry(64, scale_range=(1.0, 1.0), scale_step=0.25).draw_size(rng, 100, 80) == (100, 80)
    with pytest.raises(ValueError, match="scale_step must be > 0 and divide scale_range"):
        CropGeometry(64, scale_range=(0.5, 1.5), scale_step=0.3)


def test_label_map_of_another_size_is_named() -> None:
    data = LabelCrops([np.zeros((10, 8, 3), np.uint8)], [np.zeros((10, 9), np.uint8)], CropGeometry(8))
    with pytest.raises(ValueError, match=r"sample 0: label map \(10, 9\) differs from its image \(10, 8\)"):
        data[SampleKey(0, 0, 0, False)]


def test_label_counts_count_every_pixel_of_every_map() -> None:
    maps = [np.array([[0, 255]], np.uint8), np.array([[1, 2, 255], [3, 4, 5]], np.uint8)]
    counts = LabelCounts.of(maps, 6)
    assert counts.per_class.tolist() == [1, 1, 1, 1, 1, 1] and counts.pixels == 8
    assert counts.labelled_fraction == pytest.approx(6 / 8)
    with pytest.raises(InputError, match="label map 1 holds a class >= 5"):
        LabelCounts.of(maps, 5)


def test_inverse_sqrt_frequency_weights() -> None:
    """Shares 0.81, 0.09, 0.1 (and an absent class): weights 1/0.9, 1/0.3, 1/sqrt(0.1), 0, scaled to a pixel mean
    of 1, so the rare class weighs 3x the common one and the loss keeps its scale."""
    counts = LabelCounts(np.array([81, 9, 10, 0]), 120)
    weights = counts.inverse_sqrt_frequency()
    share = np.array([0.81, 0.09, 0.10, 0.0])
    assert weights[1] / weights[0] == pytest.approx(3.0) and weights[3] == 0.0
    assert (share * weights).sum() == pytest.approx(1.0)
    assert weights[2] / weights[0] == pytest.approx(0.9 / np.sqrt(0.1))


def _batches(loader: EpochLoader, epochs: int) -> list:
    return [batch for epoch in range(epochs) for batch in loader(epoch)]


def test_batches_do_not_depend_on_the_number_of_workers() -> None:
    rng = np.random.default_rng(0)
    sizes = [(int(h), int(w)) for h, w in rng.integers(20, 50, (10, 2))]
    images = _images(rng, sizes)
    labels = [rng.integers(0, 4, size, dtype=np.uint8) for size in sizes]
    geometry = CropGeometry(32, scale_range=(0.5, 1.5), jitter=ColorJitter(0.3, 0.3, 0.3, 0.1))
    data = LabelCrops(images, labels, geometry)
    in_process = _batches(EpochLoader(data, batch_size=4, seed=5, workers=0), 2)
    assert len(in_process) == 4
    generator_state = torch.random.get_rng_state()
    in_workers = _batches(EpochLoader(data, batch_size=4, seed=5, workers=2), 2)
    assert torch.equal(torch.random.get_rng_state(), generator_state)  # torch's global generator untouched
    for (x0, y0), (x1, y1) in zip(in_process, in_workers, strict=True):
        assert torch.equal(x0, x1) and torch.equal(y0, y1)
    # Another seed draws other crops.
    other = _batches(EpochLoader(data, batch_size=4, seed=6, workers=0), 1)
    assert not torch.equal(other[0][0], in_process[0][0])


def test_classifier_batches_are_the_resized_images_mirrored_as_the_epoch_plan_says() -> None:
    """What the classifier trained on when the split was loaded whole: the rows of every image resized to the square
    input (the same resize_image), those of each batch of epoch_batches, mirrored where its flags say."""
    rng = np.random.default_rng(1)
    images = _images(rng, [(int(h), int(w)) for h, w in rng.integers(20, 50, (10, 2))])
    labels = rng.integers(0, 2, (10, 3), dtype=np.uint8)
    rows = np.stack([resize_image(image, (24, 24)) for image in images])
    loader = EpochLoader(SquareImages(images, labels, 24), batch_size=4, seed=3)
    flags = []
    for epoch in range(2):
        plan = epoch_batches(10, 4, 3, epoch)
        assert len(loader(epoch)) == len(plan) == 2
        for (x, y), batch in zip(loader(epoch), plan, strict=True):
            expected = rows[batch.indices]
            expected[batch.flips] = expected[batch.flips, :, ::-1]
            assert x.dtype == torch.uint8 and np.array_equal(x.numpy(), expected)
            assert y.dtype == torch.float32 and np.array_equal(y.numpy(), labels[batch.indices])
            flags.extend(batch.flips)
    assert any(flags) and not all(flags)  # both kinds of sample were checked


def test_colour_jitter_changes_colours_only_when_asked() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
    assert not ColorJitter().active
    jittered = ColorJitter(0.3, 0.3, 0.3, 0.1)(image, np.random.default_rng(1))
    again = ColorJitter(0.3, 0.3, 0.3, 0.1)(image, np.random.default_rng(1))
    assert jittered.shape == image.shape and jittered.dtype == np.uint8
    assert np.array_equal(jittered, again) and not np.array_equal(jittered, image)


def test_resize_long_draws_the_long_side() -> None:
    geometry = CropGeometry(64, resize_long=(40, 60))
    rng = np.random.default_rng(0)
    sizes = [geometry.draw_size(rng, 30, 20) for _ in range(30)]
    assert all(40 <= h <= 60 and w == round(h * 20 / 30) for h, w in sizes) and len(set(sizes)) > 5
    narrow = CropGeometry(64, resize_long=(40, 41))
    assert {narrow.draw_size(rng, 30, 20)[0] for _ in range(40)} == {40, 41}  # both ends are drawn
    with pytest.raises(ValueError, match="either scale_range or resize_long"):
        CropGeometry(64, scale_range=(0.5, 1.5), resize_long=(40, 60))


def test_padded_pixels_do_not_change_the_losses() -> None:
    torch.manual_seed(0)
    probs = torch.softmax(torch.randn(2, 3, 4, 4), dim=1)
    crf = torch.softmax(torch.randn(2, 3, 4, 4), dim=1)
    valid = torch.ones(2, 4, 4, dtype=torch.bool)
    valid[:, :, 3] = False
    supervision = (torch.rand(2, 3, 4, 4) < 0.4).to(torch.uint8) * valid[:, None]
    other_probs, other_crf = probs.clone(), crf.clone()
    other_probs[:, :, :, 3] = torch.softmax(torch.randn(2, 3, 4), dim=1)
    other_crf[:, :, :, 3] = torch.softmax(torch.randn(2, 3, 4), dim=1)
    assert constrain_loss(probs, crf, valid=valid) == constrain_loss(other_probs, other_crf, valid=valid)
    assert constrain_loss(probs, crf) != constrain_loss(other_probs, other_crf)
    assert seeding_loss(probs, supervision) == seeding_loss(other_probs, supervision)
    with pytest.raises(ValueError, match=r"valid shape \(2, 4\) is not \(B, h, w\)"):
        constrain_loss(probs, crf, valid=valid[:, 0])


def test_dgcn_training_masks_padded_pixels_in_both_losses(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []

    def seeding_spy(probs, supervision):
        seen.append(("seeding", supervision.clone()))
        return seeding_loss(probs, supervision)

    def constrain_spy(probs, crf_probs, valid=None):
        seen.append(("constrain", valid.clone()))
        return constrain_loss(probs, crf_probs, valid=valid)

    monkeypatch.setattr(dgcn_training, "seeding_loss", seeding_spy)
    monkeypatch.setattr(dgcn_training, "constrain_loss", constrain_spy)
    rng = np.random.default_rng(0)
    images = _images(rng, [(32, 20)] * 4)  # 20 columns in 32-pixel crops: the right of every crop is padding
    cues = np.zeros((4, 3, 8, 8), np.uint8)
    cues[:, 0, :4], cues[:, 1, 4:] = 1, 1
    labels = np.array([[1, 1, 0]] * 4, np.uint8)
    torch.manual_seed(0)
    model = build_segmenter("small", 3, width=4)
    schedule = SGDSchedule(lr=0.01, momentum=0.9, weight_decay=0.0, head_lr_mult=10.0, warmup_iters=1,
                           decay_every_epochs=1, decay_gamma=1.0)
    with SupervisionPool(workers=0) as pool:
        submit = pool.submit
        graph_nodes = []

        def submit_spy(*args, valid=None, **options):
            graph_nodes.append(valid)
            return submit(*args, valid=valid, **options)

        monkeypatch.setattr(pool, "submit", submit_spy)
        train_dgcn(model, images, cues, labels, pool, schedule, geometry=CropGeometry(32), epochs=1, batch_size=4,
                   seed=0)
    (_, supervision), (_, valid) = seen
    # The padded pixels are not graph nodes either: the pool gets the same mask.
    assert len(graph_nodes) == 1 and np.array_equal(np.asarray(graph_nodes[0]), valid.numpy())
    expected = Crop(0, 0, 32, 32, 20).valid_grid(8)  # 8x8 grid: columns 0-4 sample the image
    assert expected[:, :5].all() and not expected[:, 5:].any()
    # Mirrored samples have their padding on the left: each sample's mask is the expected one or its mirror.
    for mask in valid.numpy():
        assert np.array_equal(mask, expected) or np.array_equal(mask, expected[:, ::-1])
    assert not (supervision * ~valid[:, None]).any() and supervision.any()



def _train_small_dgcn(threshold: float, masks: list[np.ndarray] | None, constrain_weight: float = 1.0,
                     graph_features: str = "network", epochs: int = 1, growth_start_epoch: int = 0):
    """(weights, log) of `epochs` epochs of a 3-class DGCN on four 24x24 images (8x8 cue grid)."""
    rng = np.random.default_rng(2)
    images = _images(rng, [(24, 24)] * 4)
    cues = np.zeros((4, 3, 8, 8), np.uint8)
    cues[:, 0, :2], cues[:, 1, 6:] = 1, 1
    torch.manual_seed(0)
    model = build_segmenter("small", 3, width=4)
    schedule = SGDSchedule(lr=0.01, momentum=0.9, weight_decay=0.0, head_lr_mult=10.0, warmup_iters=1,
                           decay_every_epochs=1, decay_gamma=1.0)
    with SupervisionPool(workers=0, k=4, threshold=threshold) as pool:
        log = train_dgcn(model, images, cues, np.array([[1, 1, 0]] * 4, np.uint8), pool, schedule,
                         geometry=CropGeometry(24), epochs=epochs, batch_size=4, seed=0, masks=masks,
                         constrain_weight=constrain_weight, graph_features=graph_features,
                         growth_start_epoch=growth_start_epoch)
    return model.state_dict(), log


def _top_half_background_masks() -> list[np.ndarray]:
    """The masks of _train_small_dgcn's four images: class 0 on the top 12 rows, class 1 below."""
    return [np.repeat(np.where(np.arange(24) < 12, 0, 1).astype(np.uint8)[:, None], 24, axis=1)] * 4


def test_growth_is_scored_against_masks_without_touching_training() -> None:
    masks = _top_half_background_masks()
    weights, log = _train_small_dgcn(0.7, masks)
    unscored_weights, unscored = _train_small_dgcn(0.7, None)
    assert all(torch.equal(weights[name], unscored_weights[name]) for name in weights)
    assert "grown_precision" not in unscored.epochs[0]
    row = log.epochs[0]
    assert row["cue_precision"] == 1.0  # every cue agrees with these masks
    assert 0 < row["cue_recall"] < 1 and row["grown_recall"] >= row["cue_recall"]
    # No growth (threshold 1: supervision = cues): the grown scores are the cues' scores.
    _, seeds_only = _train_small_dgcn(1.0, masks)
    assert seeds_only.epochs[0]["grown_precision"] == seeds_only.epochs[0]["cue_precision"]
    assert seeds_only.epochs[0]["grown_recall"] == seeds_only.epochs[0]["cue_recall"]


def test_growth_waits_for_its_start_epoch() -> None:
    masks = _top_half_background_masks()
    _, warm = _train_small_dgcn(0.0, masks, epochs=2, growth_start_epoch=1)
    _, at_once = _train_small_dgcn(0.0, masks, epochs=2)
    first, second = warm.epochs
    # epoch 1 trains on the cues alone, epoch 2 on the grown supervision
    assert (first["grown_precision"], first["grown_recall"]) == (first["cue_precision"], first["cue_recall"])
    assert second["grown_recall"] > second["cue_recall"]
    assert at_once.epochs[0]["grown_recall"] > at_once.epochs[0]["cue_recall"]


def test_constrain_weight_scales_the_constrain_loss() -> None:
    weights, log = _train_small_dgcn(0.7, None, constrain_weight=1.0)
    seeding_only_weights, seeding_only = _train_small_dgcn(0.7, None, constrain_weight=0.0)
    assert any(not torch.equal(weights[name], seeding_only_weights[name]) for name in weights)
    for step in seeding_only.steps:
        assert step["loss"] == pytest.approx(step["seeding"], abs=1e-6) and step["constrain"] > 0
    for step in log.steps:
        assert step["loss"] == pytest.approx(step["seeding"] + step["constrain"], abs=1e-5)


def test_the_cut_can_grow_on_the_colour_graph_instead_of_the_network_features() -> None:
    grid = torch.tensor([[[[0, 128, 255]]]], dtype=torch.uint8)  # one image, a 1x1 grid, RGB (0, 128, 255)
    assert torch.allclose(colour_features(grid).flatten(), torch.tensor([0.0, 128 / 255, 1.0]))
    masks = _top_half_background_masks()
    network_weights, network = _train_small_dgcn(0.0, masks)
    colour_weights, colour = _train_small_dgcn(0.0, masks, graph_features="rgb")
    # another graph, other supervision: the growth scores and the trained weights differ
    assert network.steps[0]["grown_recall"] != colour.steps[0]["grown_recall"]
    assert any(not torch.equal(network_weights[name], colour_weights[name]) for name in network_weights)
    with pytest.raises(ValueError, match="graph_features must be one of network, rgb"):
        _train_small_dgcn(0.7, None, graph_features="lab")
