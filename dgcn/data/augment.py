"""Training geometry on native-size images (spec 2.6 and 5): random rescale, a square crop padded where the image is
smaller, cues remapped to the crop's grid, colour jitter. Pure functions of an image and a numpy Generator."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageEnhance

from dgcn.data.loading import MEAN, resize_image

# The pad colour of the CRF's image: the mean, as the normalised image is padded with 0 (= the mean).
MEAN_RGB = tuple(round(255 * value) for value in MEAN)


def nearest_indices(out_size: int, in_size: int) -> np.ndarray:
    """(out_size,) int64: the source sample of each output sample when in_size samples are zoomed to out_size by
    nearest neighbour on pixel centres, floor((i + 0.5) * in_size / out_size), in exact integer arithmetic."""
    if out_size < 1 or in_size < 1:
        raise ValueError(f"sizes must be >= 1, got out_size={out_size}, in_size={in_size}")
    return (2 * np.arange(out_size, dtype=np.int64) + 1) * in_size // (2 * out_size)


def zoom_nearest(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(..., H, W) -> (..., height, width) by nearest_indices on both axes (labels and cues are not interpolated)."""
    rows = nearest_indices(size[0], values.shape[-2])
    cols = nearest_indices(size[1], values.shape[-1])
    return values[..., rows[:, None], cols[None, :]]


def zoom_samples(out_size: int, in_size: int) -> tuple[np.ndarray, np.ndarray]:
    """The published nearest zoom along one axis (scipy.ndimage.zoom, order 0, as scipy < 1.6 computed it): output
    sample k reads input sample floor(k * (in_size - 1) / (out_size - 1) + 1/2), the first and last samples of both
    aligned. Returns (out_size,) int64 indices and (out_size,) bool `inside`: False where that product, in doubles,
    exceeds in_size - 1 by a rounding error, where scipy wrote its cval (0) instead of a sample."""
    if out_size < 1 or in_size < 1:
        raise ValueError(f"sizes must be >= 1, got out_size={out_size}, in_size={in_size}")
    step = (in_size - 1) / (out_size - 1) if out_size > 1 else 1.0  # scipy's zoom factor; 1 for a single sample
    coordinates = np.arange(out_size) * step
    indices = np.minimum(np.floor(coordinates + 0.5).astype(np.int64), in_size - 1)
    return indices, coordinates <= in_size - 1


@dataclass(frozen=True)
class Crop:
    """A size x size window whose top-left corner is (top, left) in an image of (height, width) pixels; the part of
    the window outside the image is padding."""

    top: int
    left: int
    size: int
    height: int
    width: int

    def window(self, values: np.ndarray, fill: int | tuple[int, ...]) -> np.ndarray:
        """(height, width, ...) -> (size, size, ...): the window, `fill` where it leaves the image."""
        out = np.empty((self.size, self.size, *values.shape[2:]), dtype=values.dtype)
        out[...] = fill
        part = values[self.top:self.top + self.size, self.left:self.left + self.size]
        out[:part.shape[0], :part.shape[1]] = part
        return out

    def grid_samples(self, grid: int) -> tuple[np.ndarray, np.ndarray]:
        """Image rows (grid,) and columns (grid,) that the published grid x grid zoom of the window samples
        (zoom_samples: corner-aligned, window pixel 8k for 321 -> 41, where the network's output cell k is centred);
        values >= height (rows) or >= width (columns) fall in the padding."""
        samples, _ = zoom_samples(grid, self.size)
        return samples + self.top, samples + self.left

    def on_grid(self, values: np.ndarray, grid: int, fill: int) -> np.ndarray:
        """(height, width) -> (grid, grid): the values at the grid's samples (grid_samples), `fill` on the padding."""
        rows, cols = self.grid_samples(grid)
        return self.window(values, fill)[(rows - self.top)[:, None], (cols - self.left)[None, :]]

    def valid_grid(self, grid: int) -> np.ndarray:
        """(grid, grid) bool: the grid pixels of the window's zoom that sample the image, not the padding."""
        rows, cols = self.grid_samples(grid)
        return (rows < self.height)[:, None] & (cols < self.width)[None, :]


def random_crop(rng: np.random.Generator, height: int, width: int, size: int) -> Crop:
    """A uniformly placed size x size window of a (height, width) image; where a side is shorter than `size` the
    image sits at the window's top (left) and the rest is padding, as the published code pads bottom and right."""
    top = int(rng.integers(0, max(height - size, 0) + 1))
    left = int(rng.integers(0, max(width - size, 0) + 1))
    return Crop(top, left, size, height, width)


def remap_cues(cues: np.ndarray, crop: Crop, grid: int) -> np.ndarray:
    """Cues over a whole image -> cues over a crop of it, at the network's grid for the crop.

    cues: (C, G, G) multi-hot over the whole (crop.height, crop.width) image, channel 0 = background. Returns
    (C, grid, grid) uint8, the published remap (dataset.py:59-60, 88): zoom (G x G -> image size) -> crop -> zoom (crop
    -> grid), both zooms zoom_samples', done as one composed index map so that multi-hot pixels stay multi-hot. Where
    either zoom reads past its last sample (zoom_samples' `inside` False) the published marker map holds scipy's cval,
    0, the background class: so does ours. Padding carries no cue (ours: the published zoom gives it none either,
    except a past-the-end background).
    """
    if cues.ndim != 3 or cues.shape[1] != cues.shape[2]:
        raise ValueError(f"cues must be (C, G, G), got {cues.shape}")
    rows, cols = crop.grid_samples(grid)
    _, grid_inside = zoom_samples(grid, crop.size)
    cue_rows, image_rows_inside = zoom_samples(crop.height, cues.shape[1])
    cue_cols, image_cols_inside = zoom_samples(crop.width, cues.shape[2])
    rows, cols = np.minimum(rows, crop.height - 1), np.minimum(cols, crop.width - 1)
    remapped = cues[:, cue_rows[rows][:, None], cue_cols[cols][None, :]]
    row_inside, col_inside = grid_inside & image_rows_inside[rows], grid_inside & image_cols_inside[cols]
    past_end = ~(row_inside[:, None] & col_inside[None, :])
    remapped[:, past_end] = 0
    remapped[0, past_end] = 1
    return (remapped * crop.valid_grid(grid)).astype(np.uint8)


def scaled_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """(height, width) x scale, rounded, at least one pixel each."""
    return max(1, round(height * scale)), max(1, round(width * scale))


@dataclass(frozen=True)
class ColorJitter:
    """Random brightness, contrast and saturation factors in [1 - x, 1 + x] (at least 0) and a hue shift in
    [-hue, hue] of the colour circle, applied in that order; all 0 (the default) leaves images untouched."""

    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    hue: float = 0.0

    def __post_init__(self) -> None:
        if min(self.brightness, self.contrast, self.saturation, self.hue) < 0 or self.hue > 0.5:
            raise ValueError(f"colour jitter amounts must be >= 0 (hue <= 0.5), got {self}")

    @property
    def active(self) -> bool:
        return any((self.brightness, self.contrast, self.saturation, self.hue))

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(H, W, 3) uint8 RGB -> jittered copy. PIL's integer enhancers: the same bytes in any process."""
        picture = Image.fromarray(image)
        for amount, enhancer in ((self.brightness, ImageEnhance.Brightness), (self.contrast, ImageEnhance.Contrast),
                                 (self.saturation, ImageEnhance.Color)):
            if amount > 0:
                picture = enhancer(picture).enhance(rng.uniform(max(0.0, 1 - amount), 1 + amount))
        if self.hue > 0:
            hue, saturation, value = picture.convert("HSV").split()
            # uint8 arithmetic wraps around the colour circle
            shift = np.uint8(round(rng.uniform(-self.hue, self.hue) * 255) % 256)
            hue = Image.fromarray(np.asarray(hue) + shift)
            picture = Image.merge("HSV", (hue, saturation, value)).convert("RGB")
        return np.array(picture)


@dataclass(frozen=True)
class CropGeometry:
    """How a training sample is cut from its native-size image.

    crop_size: side of the square network input. scale_range: the image is first rescaled by a factor drawn
    uniformly from [low, high] (DeepLab retraining: 0.5-1.5; (1, 1) = native size); with scale_step, drawn instead
    from low, low + step, ..., high with equal chances (deeplab-pytorch: one of 0.5, 0.75, 1, 1.25, 1.5).
    resize_long: or, instead, its long side is resized to an integer drawn from [low, high] (the extended DGCN recipe:
    320-640; None = off). jitter: colour jitter (off by default).
    """

    crop_size: int
    scale_range: tuple[float, float] = (1.0, 1.0)
    resize_long: tuple[int, int] | None = None
    jitter: ColorJitter = ColorJitter()
    scale_step: float | None = None

    def __post_init__(self) -> None:
        low, high = self.scale_range
        if self.crop_size < 1:
            raise ValueError(f"crop_size must be >= 1, got {self.crop_size}")
        if not 0 < low <= high:
            raise ValueError(f"scale_range must be 0 < low <= high, got {self.scale_range}")
        if self.resize_long is not None:
            if not 1 <= self.resize_long[0] <= self.resize_long[1]:
                raise ValueError(f"resize_long must be 1 <= low <= high, got {self.resize_long}")
            if (low, high) != (1.0, 1.0):
                raise ValueError("give either scale_range or resize_long, not both")
        if self.scale_step is not None:
            count = (high - low) / self.scale_step if self.scale_step > 0 else -1.0
            if count < 0 or abs(count - round(count)) > 1e-6:
                raise ValueError(f"scale_step must be > 0 and divide scale_range {self.scale_range}, "
                                 f"got {self.scale_step}")

    @property
    def scale_choices(self) -> np.ndarray | None:
        """The scales drawn from with scale_step (low, low + step, ..., high); None without a step."""
        if self.scale_step is None:
            return None
        low, high = self.scale_range
        return np.linspace(low, high, round((high - low) / self.scale_step) + 1)

    def draw_size(self, rng: np.random.Generator, height: int, width: int) -> tuple[int, int]:
        """The (height, width) the image is resized to before cropping; the native size when neither is set."""
        if self.resize_long is not None:
            long_side = int(rng.integers(self.resize_long[0], self.resize_long[1] + 1))
            return scaled_size(height, width, long_side / max(height, width))
        low, high = self.scale_range
        if low == high == 1.0:
            return height, width
        choices = self.scale_choices
        scale = rng.uniform(low, high) if choices is None else float(choices[rng.integers(len(choices))])
        return scaled_size(height, width, scale)

    def place(self, image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, Crop]:
        """(H, W, 3) uint8 -> the resized, jittered image and a random crop of it (draws in that order)."""
        size = self.draw_size(rng, *image.shape[:2])
        image = resize_image(image, size)
        if self.jitter.active:
            image = self.jitter(image, rng)
        return image, random_crop(rng, *size, self.crop_size)
