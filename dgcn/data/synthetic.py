"""The embedded synthetic data set: textured shapes on cluttered backgrounds, written in the PASCAL VOC layout.

Each object class is a shape with its own texture (disc/stripes, square/checker, triangle/dots, ellipse/speckle,
cross/grid). Objects, clutter and background all draw their colours from one distribution, so colour alone says
nothing about the class: only shape and texture do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from dgcn.data.files import Reader
from dgcn.data.palette import SYNTHETIC_CLASSES, voc_palette
from dgcn.data.shapes import (
    AREA_FACTOR,
    REACH_FACTOR,
    blob_mask,
    line_mask,
    pixel_grid,
    ring_mask,
    rotated_frame,
    shape_mask,
    smooth_noise,
    texture_pattern,
)
from dgcn.data.voc import VOCDataset

# Foreground class index c (1..5) is drawn as CLASS_LOOKS[c - 1] = (shape, texture).
CLASS_LOOKS: tuple[tuple[str, str], ...] = (
    ("disc", "stripes"),
    ("square", "checker"),
    ("triangle", "dots"),
    ("ellipse", "speckle"),
    ("cross", "grid"),
)
SPLITS: tuple[tuple[str, str], ...] = (("train_aug", "train"), ("val", "val"))  # (list file, id infix)

# Sizes are given for a 96-pixel image and scale with the image side.
REFERENCE_SIZE = 96
MIN_VISIBLE = 0.5  # an occluded object keeps at least this fraction of its own area
PLACEMENT_TRIES = 12
TEXTURE_PERIOD = (6.0, 9.0)  # pixels per texture repeat
MIN_CONTRAST = 100.0  # RGB distance between an object's two colours, so its texture stays visible
PIXEL_NOISE = 3.0  # std of the per-pixel sensor noise, in 0..255 units


@dataclass(frozen=True)
class Difficulty:
    """How hard the scenes are: object_area, the (low, high) fraction of the image one object covers before occlusion;
    clutter, the (low, high) number of clutter items (both drawn uniformly, bounds included for clutter)."""

    object_area: tuple[float, float] = (0.08, 0.20)
    clutter: tuple[int, int] = (2, 4)

    def __post_init__(self) -> None:
        low, high = self.object_area
        if not 0 < low <= high <= 0.5:
            raise ValueError(f"object_area must satisfy 0 < low <= high <= 0.5, got {self.object_area}")
        if not 0 <= self.clutter[0] <= self.clutter[1]:
            raise ValueError(f"clutter must satisfy 0 <= low <= high, got {self.clutter}")


@dataclass(frozen=True)
class SplitSummary:
    """What one split holds; per-class tuples are indexed like SYNTHETIC_CLASSES."""

    num_images: int
    image_frequency: tuple[float, ...]  # fraction of images in which the class occurs
    pixel_fraction: tuple[float, ...]  # fraction of all pixels of the split
    mean_object_fraction: float  # mean visible area of one object, as a fraction of its image


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    """(3,) float64 RGB uniform in the colour cube: the one colour distribution of the whole data set."""
    return rng.uniform(0.0, 255.0, size=3)


def _contrasting_pair(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two colours from the common distribution, redrawn until they are MIN_CONTRAST apart."""
    while True:
        first, second = _random_colour(rng), _random_colour(rng)
        if np.linalg.norm(first - second) >= MIN_CONTRAST:
            return first, second


def _background(rng: np.random.Generator, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """(H, W, 3) float64: a linear gradient between two colours, mottled by smooth noise toward a third."""
    size = rows.shape[0]
    angle = rng.uniform(0.0, 2 * math.pi)
    along = (math.cos(angle) * (cols - size / 2) + math.sin(angle) * (rows - size / 2)) / size + 0.5
    along = np.clip(along, 0.0, 1.0)[..., None]
    start, end, mottle = _random_colour(rng), _random_colour(rng), _random_colour(rng)
    weight = 0.6 * smooth_noise(rng, size, int(rng.integers(3, 7)))[..., None]
    return ((1 - along) * start + along * end) * (1 - weight) + weight * mottle


def _clutter_mask(rng: np.random.Generator, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """One clutter item (blob, line or ring) at a random place; sizes scale with the image."""
    size = rows.shape[0]
    scale = size / REFERENCE_SIZE
    kind = int(rng.integers(3))
    if kind == 0:
        count = int(rng.integers(2, 5))
        centre = rng.uniform(0.1 * size, 0.9 * size, size=2)
        centres = centre + rng.normal(0.0, 4.0 * scale, size=(count, 2))
        return blob_mask(rows, cols, centres, rng.uniform(3.0, 7.0, size=count) * scale)
    if kind == 1:
        start = rng.uniform(0.0, size, size=2)
        angle = rng.uniform(0.0, 2 * math.pi)
        length = rng.uniform(20.0, 50.0) * scale
        end = start + length * np.array([math.sin(angle), math.cos(angle)])
        return line_mask(rows, cols, tuple(start), tuple(end), rng.uniform(1.5, 3.5) * scale)
    centre = rng.uniform(0.1 * size, 0.9 * size, size=2)
    return ring_mask(rows, cols, tuple(centre), rng.uniform(5.0, 12.0) * scale, rng.uniform(1.5, 3.0) * scale)


def _place_object(
    rng: np.random.Generator, rows: np.ndarray, cols: np.ndarray, shape: str, labels: np.ndarray, areas: dict[int, int],
    object_area: tuple[float, float],
) -> np.ndarray | None:
    """Mask of one object of `shape` that leaves every earlier object (class -> full area) MIN_VISIBLE visible.

    Returns None when PLACEMENT_TRIES random placements all hide too much of an earlier object.
    """
    size = rows.shape[0]
    radius = math.sqrt(rng.uniform(*object_area) * size * size / AREA_FACTOR[shape])
    margin = min(REACH_FACTOR[shape] * radius, size / 2)
    angle = rng.uniform(0.0, 2 * math.pi)
    for _ in range(PLACEMENT_TRIES):
        centre = tuple(rng.uniform(margin, size - margin, size=2))
        mask = shape_mask(shape, *rotated_frame(rows, cols, centre, angle), radius)
        kept = np.bincount(labels[~mask], minlength=len(SYNTHETIC_CLASSES))
        if all(kept[cls] >= MIN_VISIBLE * area for cls, area in areas.items()):
            return mask
    return None


def render_scene(rng: np.random.Generator, image_size: int, difficulty: Difficulty = Difficulty()
                 ) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic scene: (S, S, 3) uint8 RGB image and (S, S) uint8 label map (0 background, 1..5 objects).

    1 to 3 objects of distinct classes, drawn over clutter and over each other (later ones occlude earlier ones).
    """
    rows, cols = pixel_grid(image_size)
    scale = image_size / REFERENCE_SIZE
    image = _background(rng, rows, cols)
    for _ in range(int(rng.integers(difficulty.clutter[0], difficulty.clutter[1] + 1))):
        image[_clutter_mask(rng, rows, cols)] = _random_colour(rng)
    labels = np.zeros((image_size, image_size), dtype=np.uint8)
    areas: dict[int, int] = {}
    num_objects = int(rng.integers(1, 4))
    for cls in rng.choice(np.arange(1, len(SYNTHETIC_CLASSES)), size=num_objects, replace=False):
        shape, texture = CLASS_LOOKS[cls - 1]
        mask = _place_object(rng, rows, cols, shape, labels, areas, difficulty.object_area)
        if mask is None:
            continue
        first, second = _contrasting_pair(rng)
        u, v = rotated_frame(rows, cols, (image_size / 2, image_size / 2), rng.uniform(0.0, 2 * math.pi))
        # Textures never shrink below their 96-pixel period: finer ones would not survive JPEG on small images.
        pattern = texture_pattern(texture, u, v, rng.uniform(*TEXTURE_PERIOD) * max(scale, 1.0), rng)
        image[mask] = np.where(pattern[mask][:, None], first, second)
        labels[mask] = cls
        areas[int(cls)] = int(mask.sum())
    image += rng.normal(0.0, PIXEL_NOISE, size=image.shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), labels


def _save_scene(root: Path, image_id: str, image: np.ndarray, labels: np.ndarray) -> None:
    """Write JPEGImages/<id>.jpg (quality 95, no chroma subsampling) and SegmentationClassAug/<id>.png (palette)."""
    Image.fromarray(image).save(root / "JPEGImages" / f"{image_id}.jpg", quality=95, subsampling=0)
    mask = Image.fromarray(labels)
    mask.putpalette(voc_palette().tobytes())
    mask.save(root / "SegmentationClassAug" / f"{image_id}.png")


def _check_positive_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def generate(
    root: Path, *, num_train: int = 480, num_val: int = 120, image_size: int = 96, seed: int = 0,
    difficulty: Difficulty = Difficulty(),
) -> dict[str, SplitSummary]:
    """Write the synthetic set under `root` in the VOC layout and return a summary per list file.

    Layout: JPEGImages/<id>.jpg, SegmentationClassAug/<id>.png (values 0..5, VOC palette) and
    ImageSets/Segmentation/{train_aug,val}.txt; ids syn_train_0000, syn_val_0000, ...
    Image i of a split depends only on (seed, split, i), so a smaller set is a prefix of a larger one.
    """
    _check_positive_int("num_train", num_train)
    _check_positive_int("num_val", num_val)
    _check_positive_int("image_size", image_size)
    if not 64 <= image_size <= 512:
        raise ValueError(f"image_size must be in [64, 512], got {image_size}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")

    root = Path(root)
    for folder in ("JPEGImages", "SegmentationClassAug", "ImageSets/Segmentation"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    num_classes = len(SYNTHETIC_CLASSES)
    summaries: dict[str, SplitSummary] = {}
    for split_index, ((list_name, infix), count) in enumerate(zip(SPLITS, (num_train, num_val), strict=True)):
        ids = [f"syn_{infix}_{index:04d}" for index in range(count)]
        presence = np.zeros(num_classes, dtype=np.int64)
        pixels = np.zeros(num_classes, dtype=np.int64)
        object_fractions: list[float] = []
        for index, image_id in enumerate(ids):
            image, labels = render_scene(np.random.default_rng([seed, split_index, index]), image_size,
                                         difficulty)
            _save_scene(root, image_id, image, labels)
            per_class = np.bincount(labels.ravel(), minlength=num_classes)
            presence += per_class > 0
            pixels += per_class
            object_fractions.extend(per_class[1:][per_class[1:] > 0] / labels.size)
        (root / "ImageSets" / "Segmentation" / f"{list_name}.txt").write_text("".join(f"{i}\n" for i in ids))
        summaries[list_name] = SplitSummary(
            num_images=count,
            image_frequency=tuple(float(x) for x in presence / count),
            pixel_fraction=tuple(float(x) for x in pixels / pixels.sum()),
            mean_object_fraction=float(np.mean(object_fractions)),
        )
    return summaries


def _legend_label(class_names: tuple[str, ...], cls: int) -> str:
    """'disc / stripes' for an object class of the synthetic set, the bare name for any other class."""
    if class_names != SYNTHETIC_CLASSES or cls == 0:
        return class_names[cls]
    return f"{SYNTHETIC_CLASSES[cls]} / {CLASS_LOOKS[cls - 1][1]}"


def contact_sheet(source: Path | Reader, ids: list[str], out: Path, columns: int = 6) -> None:
    """Write a PNG grid: per id the image and its coloured mask side by side (x2, nearest), legend at the bottom.

    `source`: a reader of images and masks (e.g. a VOCDataset), or the root of a synthetic VOC-layout set. An image
    without a mask shows it all ignore; the legend names the classes the shown masks hold."""
    if not ids:
        raise ValueError("ids must name at least one image")
    _check_positive_int("columns", columns)
    reader = VOCDataset(Path(source), "", SYNTHETIC_CLASSES) if isinstance(source, (str, Path)) else source
    palette = voc_palette()
    font = ImageFont.load_default()
    tiles, shown = [], set()
    for image_id in ids:
        image = reader.image(image_id)
        labels = reader.mask(image_id) if reader.has_mask(image_id) else np.full(image.shape[:2], 255, np.uint8)
        shown |= set(np.unique(labels[labels != 255]).tolist())
        pair = np.concatenate([image, np.full((image.shape[0], 2, 3), 255, np.uint8), palette[labels]], 1)
        tile = Image.fromarray(pair)
        tiles.append((image_id, tile.resize((tile.width * 2, tile.height * 2), Image.Resampling.NEAREST)))

    gap, caption, entry = 8, 14, 120
    tile_w, tile_h = tiles[0][1].size
    num_rows = math.ceil(len(tiles) / columns)
    width = max(min(columns, len(tiles)) * (tile_w + gap) + gap, 6 * entry + gap)
    per_row = (width - gap) // entry
    legend = sorted(shown)
    legend_top = num_rows * (tile_h + caption + gap) + gap
    sheet = Image.new("RGB", (width, legend_top + 20 * math.ceil(len(legend) / per_row) + 8), "white")
    draw = ImageDraw.Draw(sheet)
    for position, (image_id, tile) in enumerate(tiles):
        x = gap + (position % columns) * (tile_w + gap)
        y = gap + (position // columns) * (tile_h + caption + gap)
        draw.text((x, y), image_id, fill="black", font=font)
        sheet.paste(tile, (x, y + caption))
    for position, cls in enumerate(legend):
        x, y = gap + (position % per_row) * entry, legend_top + 20 * (position // per_row)
        swatch = tuple(int(c) for c in palette[cls])
        draw.rectangle((x, y, x + 14, y + 14), fill=swatch, outline="black")
        draw.text((x + 20, y + 1), _legend_label(reader.class_names, cls), fill="black", font=font)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out, format="PNG")
