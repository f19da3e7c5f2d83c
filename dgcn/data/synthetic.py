"""The embedded synthetic data set: textured shapes on cluttered backgrounds, written in the PASCAL VOC layout.

Each object class is a shape with its own texture (disc/stripes, square/checker, triangle/dots, ellipse/speckle,
cross/grid). Objects, clutter and background all draw their colours from one distribution, so colour alone says
nothing about the class: only shape and texture do.

Two styles. `plain` (the default): each object is its class's look, on a smooth gradient under line clutter. `parts`:
each object is a large body with a small part; only the part has its class's look (shape and texture, small), the
body is a surface (bands, waves, mottle) that no class owns, the background is a patchwork of the same surfaces in the
same colours (a palette per image), and the clutter items are occluders of those surfaces drawn over the bodies.
There, as in photos, what tells the class is a small part of the object, and neither colour nor texture gives the
object's extent.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from dgcn.data.files import Reader
from dgcn.data.palette import SYNTHETIC_CLASSES, voc_palette
from dgcn.data.shapes import (
    AREA_FACTOR,
    REACH_FACTOR,
    SURFACES,
    blob_mask,
    line_mask,
    pixel_grid,
    ring_mask,
    rotated_frame,
    shape_mask,
    smooth_noise,
    surface_pattern,
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
STYLES: tuple[str, ...] = ("plain", "parts")
# A plain object lies inside the image; a parts-style body may leave it (only its part's zone must stay in view).
MAX_OBJECT_AREA = {"plain": 0.5, "parts": 0.9}
# The parts style (sizes at 96 pixels, as above):
PALETTE_SIZE = 3  # colours per image; every body, background patch and occluder paints with two of them
# A palette's colours lie near one another (surfaces of low contrast), so that a part's contrasting colours stand out.
PALETTE_SPREAD = 40.0  # per channel, around the image's base colour
PALETTE_CONTRAST = 25.0  # RGB distance between any two palette colours, so that a surface stays visible
SURFACE_PERIOD = (20.0, 32.0)  # pixels per surface repeat: far coarser than any class texture
PART_MARGIN = 6.0  # pixels of its own body around a part that no later body or occluder covers
BACKGROUND_PATCHES = (2, 4)  # (low, high) surface patches of the background
BODY_LOBES = (2, 4)  # (low, high) discs added to a body's core disc: an irregular outline no class owns
RIM_WIDTH = 1.5  # pixels: the dark rim of every body, its edge (a boundary a network sees and colour does not fill)
RIM_SHADE = 0.35  # a rim's colour: the body's first colour times this


@dataclass(frozen=True)
class Difficulty:
    """How hard the scenes are: object_area, the (low, high) fraction of the image one object covers before occlusion;
    clutter, the (low, high) number of clutter items (both drawn uniformly, bounds included for clutter)."""

    object_area: tuple[float, float] = (0.08, 0.20)
    clutter: tuple[int, int] = (2, 4)
    objects: tuple[int, int] = (1, 3)  # (low, high) objects per image, of distinct classes
    style: str = "plain"  # plain or parts (module docstring)
    part_area: tuple[float, float] = (0.1, 0.2)  # parts: (low, high) fraction of its object that the part covers

    def __post_init__(self) -> None:
        if self.style not in STYLES:
            raise ValueError(f"style must be one of {STYLES}, got {self.style!r}")
        low, high = self.object_area
        if not 0 < low <= high <= MAX_OBJECT_AREA[self.style]:
            raise ValueError(f"object_area must satisfy 0 < low <= high <= {MAX_OBJECT_AREA[self.style]} in the "
                             f"{self.style} style, got {self.object_area}")
        if not 0 <= self.clutter[0] <= self.clutter[1]:
            raise ValueError(f"clutter must satisfy 0 <= low <= high, got {self.clutter}")
        if not 1 <= self.objects[0] <= self.objects[1] <= len(SYNTHETIC_CLASSES) - 1:
            raise ValueError(f"objects must satisfy 1 <= low <= high <= {len(SYNTHETIC_CLASSES) - 1}, "
                             f"got {self.objects}")
        if not 0 < self.part_area[0] <= self.part_area[1] < 1:
            raise ValueError(f"part_area must satisfy 0 < low <= high < 1, got {self.part_area}")


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
        if _keeps_visible(mask, labels, areas):
            return mask
    return None


def _keeps_visible(mask: np.ndarray, labels: np.ndarray, areas: dict[int, int], clear: np.ndarray | None = None
                   ) -> bool:
    """Whether drawing `mask` over `labels` leaves every earlier object (class -> full area) MIN_VISIBLE visible and
    covers nothing of `clear` (a mask that must stay in view)."""
    kept = np.bincount(labels[~mask], minlength=len(SYNTHETIC_CLASSES))
    visible = all(kept[cls] >= MIN_VISIBLE * area for cls, area in areas.items())
    return visible and (clear is None or not (mask & clear).any())


def _paint_class_texture(rng: np.random.Generator, image: np.ndarray, mask: np.ndarray, texture: str,
                         rows: np.ndarray, cols: np.ndarray) -> None:
    """Paint `mask` of `image` in a class's `texture`: two contrasting colours, a random turn, period and phase."""
    size = rows.shape[0]
    first, second = _contrasting_pair(rng)
    u, v = rotated_frame(rows, cols, (size / 2, size / 2), rng.uniform(0.0, 2 * math.pi))
    # Textures never shrink below their 96-pixel period: finer ones would not survive JPEG on small images.
    pattern = texture_pattern(texture, u, v, rng.uniform(*TEXTURE_PERIOD) * max(size / REFERENCE_SIZE, 1.0), rng)
    image[mask] = np.where(pattern[mask][:, None], first, second)


def render_scene(rng: np.random.Generator, image_size: int, difficulty: Difficulty = Difficulty()
                 ) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic scene: (S, S, 3) uint8 RGB image and (S, S) uint8 label map (0 background, 1..5 objects).

    `difficulty.objects` objects of distinct classes (1 to 3 by default), drawn over each other (later ones occlude
    earlier ones); in the plain style over clutter, in the parts style under it (module docstring).
    """
    if difficulty.style == "parts":
        return render_parts_scene(rng, image_size, difficulty)[:2]
    rows, cols = pixel_grid(image_size)
    image = _background(rng, rows, cols)
    for _ in range(int(rng.integers(difficulty.clutter[0], difficulty.clutter[1] + 1))):
        image[_clutter_mask(rng, rows, cols)] = _random_colour(rng)
    labels = np.zeros((image_size, image_size), dtype=np.uint8)
    areas: dict[int, int] = {}
    num_objects = int(rng.integers(difficulty.objects[0], difficulty.objects[1] + 1))
    for cls in rng.choice(np.arange(1, len(SYNTHETIC_CLASSES)), size=num_objects, replace=False):
        shape, texture = CLASS_LOOKS[cls - 1]
        mask = _place_object(rng, rows, cols, shape, labels, areas, difficulty.object_area)
        if mask is None:
            continue
        _paint_class_texture(rng, image, mask, texture, rows, cols)
        labels[mask] = cls
        areas[int(cls)] = int(mask.sum())
    image += rng.normal(0.0, PIXEL_NOISE, size=image.shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), labels


def _palette(rng: np.random.Generator) -> np.ndarray:
    """(PALETTE_SIZE, 3) float64 colours of one parts-style image: a base colour from the common distribution and
    colours within PALETTE_SPREAD of it on every channel, redrawn until every two are PALETTE_CONTRAST apart."""
    base = rng.uniform(PALETTE_SPREAD, 255.0 - PALETTE_SPREAD, size=3)
    while True:
        colours = base + rng.uniform(-PALETTE_SPREAD, PALETTE_SPREAD, size=(PALETTE_SIZE, 3))
        distances = np.linalg.norm(colours[:, None] - colours[None], axis=-1)
        if distances[np.triu_indices(PALETTE_SIZE, 1)].min() >= PALETTE_CONTRAST:
            return colours


def _paint_surface(rng: np.random.Generator, image: np.ndarray, mask: np.ndarray, palette: np.ndarray,
                   rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Paint `mask` of `image` with a random surface (SURFACES) in two colours of the image's palette; returns the
    first colour (3,)."""
    size = rows.shape[0]
    surface = SURFACES[int(rng.integers(len(SURFACES)))]
    first, second = palette[rng.choice(PALETTE_SIZE, size=2, replace=False)]
    u, v = rotated_frame(rows, cols, (size / 2, size / 2), rng.uniform(0.0, 2 * math.pi))
    weight = surface_pattern(surface, u, v, rng.uniform(*SURFACE_PERIOD) * max(size / REFERENCE_SIZE, 1.0), rng)
    image[mask] = weight[mask][:, None] * first + (1 - weight[mask][:, None]) * second
    return first


def _patchwork(rng: np.random.Generator, rows: np.ndarray, cols: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """(S, S, 3) float64 background: BACKGROUND_PATCHES large patches (argmax of smooth noise fields), each a
    surface in the palette's colours."""
    size = rows.shape[0]
    count = int(rng.integers(BACKGROUND_PATCHES[0], BACKGROUND_PATCHES[1] + 1))
    patch = np.stack([smooth_noise(rng, size, 2) for _ in range(count)]).argmax(axis=0)
    image = np.zeros((size, size, 3))
    for index in range(count):
        _paint_surface(rng, image, patch == index, palette, rows, cols)
    return image


def _body_outline(rng: np.random.Generator, area: float) -> tuple[np.ndarray, np.ndarray, float]:
    """An irregular body of about `area` pixels: a core disc and BODY_LOBES discs that overlap it. Returns the disc
    centres (K, 2) and radii (K,) in units of the core radius (core first, at the origin) and the core radius."""
    lobes = int(rng.integers(BODY_LOBES[0], BODY_LOBES[1] + 1))
    angles = rng.uniform(0.0, 2 * math.pi, size=lobes)
    distance = rng.uniform(0.5, 1.0, size=lobes)
    centres = np.concatenate([np.zeros((1, 2)), distance[:, None] * np.stack([np.sin(angles), np.cos(angles)], 1)])
    radii = np.concatenate([[1.0], rng.uniform(0.5, 0.9, size=lobes)])
    # The union's area in core radii squared, measured by rasterising it at a core radius of 16 pixels.
    rows, cols = pixel_grid(128)
    unit_area = blob_mask(rows - 64.0, cols - 64.0, centres * 16.0, radii * 16.0).sum() / 16.0**2
    return centres, radii, math.sqrt(area / unit_area)


def _place_part_object(
    rng: np.random.Generator, rows: np.ndarray, cols: np.ndarray, shape: str, free: np.ndarray,
    difficulty: Difficulty,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """(body, part, rim, zone) masks of one parts-style object, each cut to the `free` pixels (those no object covers
    yet: objects are drawn front to back). The part, `shape` covering a `part_area` fraction of the body's area, and
    its zone (the part's reach plus PART_MARGIN around its centre) lie inside the body's core disc; the zone lies inside
    the image and on free pixels, and MIN_VISIBLE of the body on free pixels; the rest of the body may leave the image.
    None when PLACEMENT_TRIES placements all fail."""
    size = rows.shape[0]
    scale = size / REFERENCE_SIZE
    area = rng.uniform(*difficulty.object_area) * size * size
    centres, radii, core = _body_outline(rng, area)
    part_radius = math.sqrt(rng.uniform(*difficulty.part_area) * area / AREA_FACTOR[shape])
    reach = min(REACH_FACTOR[shape] * part_radius + PART_MARGIN * scale, core)  # the zone never leaves the core
    part_radius = min(part_radius, (reach - PART_MARGIN * scale) / REACH_FACTOR[shape])
    angle = rng.uniform(0.0, 2 * math.pi)
    offset = rng.uniform(0.0, core - reach) * np.array([math.sin(angle), math.cos(angle)])
    turn = rng.uniform(0.0, 2 * math.pi)
    for _ in range(PLACEMENT_TRIES):
        middle = tuple(rng.uniform(reach, size - reach, size=2))
        centre = middle - offset
        body = blob_mask(rows, cols, centre + centres * core, radii * core)
        zone = ring_mask(rows, cols, middle, reach / 2, reach)  # the disc of radius `reach`
        if (zone & ~free).any() or (body & free).sum() < MIN_VISIBLE * body.sum():
            continue
        part = shape_mask(shape, *rotated_frame(rows, cols, middle, turn), part_radius)
        inside = blob_mask(rows, cols, centre + centres * core, radii * core - RIM_WIDTH * scale)
        return body & free, part & inside, body & ~inside & free, zone
    return None


def _occluder_mask(rng: np.random.Generator, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """One occluder at a random place: a bar (a pole, a branch) or a lump of 2-4 discs; sizes scale with the image."""
    size = rows.shape[0]
    scale = size / REFERENCE_SIZE
    if rng.integers(2) == 0:
        start = rng.uniform(0.0, size, size=2)
        angle = rng.uniform(0.0, 2 * math.pi)
        end = start + rng.uniform(30.0, 70.0) * scale * np.array([math.sin(angle), math.cos(angle)])
        return line_mask(rows, cols, tuple(start), tuple(end), rng.uniform(4.0, 8.0) * scale)
    count = int(rng.integers(2, 5))
    centres = rng.uniform(0.1 * size, 0.9 * size, size=2) + rng.normal(0.0, 5.0 * scale, size=(count, 2))
    return blob_mask(rows, cols, centres, rng.uniform(4.0, 9.0, size=count) * scale)


def render_parts_scene(rng: np.random.Generator, image_size: int, difficulty: Difficulty
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """render_scene in the parts style (module docstring), with the (S, S) bool mask of the class parts as well.

    A patchwork background, bodies with their class's part drawn front to back (each behind those before it), then
    `clutter` occluders (label background) that leave every object MIN_VISIBLE of what it showed; neither another
    body nor an occluder comes within PART_MARGIN of a part."""
    rows, cols = pixel_grid(image_size)
    palette = _palette(rng)
    image = _patchwork(rng, rows, cols, palette)
    labels = np.zeros((image_size, image_size), dtype=np.uint8)
    parts = np.zeros((image_size, image_size), dtype=bool)
    clear = np.zeros((image_size, image_size), dtype=bool)  # the part zones, kept in view
    areas: dict[int, int] = {}
    num_objects = int(rng.integers(difficulty.objects[0], difficulty.objects[1] + 1))
    for cls in rng.choice(np.arange(1, len(SYNTHETIC_CLASSES)), size=num_objects, replace=False):
        shape, texture = CLASS_LOOKS[cls - 1]
        placed = _place_part_object(rng, rows, cols, shape, labels == 0, difficulty)
        if placed is None:
            continue
        body, part, rim, zone = placed
        image[rim] = RIM_SHADE * _paint_surface(rng, image, body, palette, rows, cols)
        _paint_class_texture(rng, image, part, texture, rows, cols)
        labels[body] = cls
        parts |= part
        clear |= zone
        areas[int(cls)] = int(body.sum())
    for _ in range(int(rng.integers(difficulty.clutter[0], difficulty.clutter[1] + 1))):
        for _ in range(PLACEMENT_TRIES):
            mask = _occluder_mask(rng, rows, cols)
            if _keeps_visible(mask, labels, areas, clear):
                _paint_surface(rng, image, mask, palette, rows, cols)
                labels[mask] = 0
                break
    image += rng.normal(0.0, PIXEL_NOISE, size=image.shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), labels, parts


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


def contact_sheet(source: Path | Reader, ids: list[str], out: Path, columns: int = 6,
                  extra: Callable[[str], np.ndarray] | None = None) -> None:
    """Write a PNG grid: per id the image and its coloured mask side by side (x2, nearest), legend at the bottom.

    `source`: a reader of images and masks (e.g. a VOCDataset), or the root of a synthetic VOC-layout set. An image
    without a mask shows it all ignore; the legend names the classes the shown masks hold. `extra`: id -> a further
    (H, W) label map (e.g. cues, 255 where none) shown coloured to the right of the mask."""
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
        gap_column = np.full((image.shape[0], 2, 3), 255, np.uint8)
        panels = [image, gap_column, palette[labels]]
        if extra is not None:
            panels += [gap_column, palette[extra(image_id)]]
        pair = np.concatenate(panels, 1)
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
