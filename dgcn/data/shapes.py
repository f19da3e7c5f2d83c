"""Vectorised rasterising of shapes, textures and clutter on pixel grids (no per-pixel Python loops).

Coordinates are float64 pixel units; a pixel's centre sits at (row + 0.5, col + 0.5). Masks are (H, W) bool.
"""

from __future__ import annotations

import math

import numpy as np

SHAPES: tuple[str, ...] = ("disc", "square", "triangle", "ellipse", "cross")
TEXTURES: tuple[str, ...] = ("stripes", "checker", "dots", "speckle", "grid")
# Surfaces: smooth two-colour shadings that no class owns, shared by object bodies and background (`parts` style).
SURFACES: tuple[str, ...] = ("bands", "waves", "mottle")

ELLIPSE_ASPECT = 0.55  # minor / major semi-axis: far enough from 1 that an ellipse never passes for a disc
CROSS_ARM_WIDTH = 0.36  # arm half-width / arm half-length

# Shape area = AREA_FACTOR * r**2 and farthest point from the centre = REACH_FACTOR * r, for the shape's radius r.
AREA_FACTOR: dict[str, float] = {
    "disc": math.pi,
    "square": 4.0,
    "triangle": 3.0 * math.sqrt(3.0) / 4.0,
    "ellipse": math.pi * ELLIPSE_ASPECT,
    "cross": 8.0 * CROSS_ARM_WIDTH - 4.0 * CROSS_ARM_WIDTH**2,
}
REACH_FACTOR: dict[str, float] = {
    "disc": 1.0,
    "square": math.sqrt(2.0),
    "triangle": 1.0,
    "ellipse": 1.0,
    "cross": math.hypot(1.0, CROSS_ARM_WIDTH),
}


def pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """(size, size) float64 row and column coordinates of the pixel centres."""
    centres = np.arange(size, dtype=np.float64) + 0.5
    rows, cols = np.meshgrid(centres, centres, indexing="ij")
    return rows, cols


def rotated_frame(
    rows: np.ndarray, cols: np.ndarray, centre: tuple[float, float], angle: float
) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates (u, v) in a frame with origin `centre` (row, col) turned by `angle` radians."""
    dy, dx = rows - centre[0], cols - centre[1]
    cos, sin = math.cos(angle), math.sin(angle)
    return cos * dx + sin * dy, -sin * dx + cos * dy


def shape_mask(shape: str, u: np.ndarray, v: np.ndarray, radius: float) -> np.ndarray:
    """Mask of `shape` of radius `radius` pixels centred on the frame origin (see AREA_FACTOR for the size)."""
    if radius <= 0:
        raise ValueError(f"radius must be positive, got {radius}")
    if shape == "disc":
        return u**2 + v**2 <= radius**2
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= radius
    if shape == "triangle":
        # Equilateral, circumradius `radius`: inside all three edges, each at the inradius radius / 2.
        inside = np.ones(u.shape, dtype=bool)
        for k in range(3):
            normal = math.pi / 2 + 2 * math.pi * k / 3
            inside &= u * math.cos(normal) + v * math.sin(normal) <= radius / 2
        return inside
    if shape == "ellipse":
        return (u / radius) ** 2 + (v / (ELLIPSE_ASPECT * radius)) ** 2 <= 1.0
    if shape == "cross":
        half_width = CROSS_ARM_WIDTH * radius
        au, av = np.abs(u), np.abs(v)
        return ((au <= radius) & (av <= half_width)) | ((av <= radius) & (au <= half_width))
    raise ValueError(f"shape must be one of {SHAPES}, got {shape!r}")


def texture_pattern(
    texture: str, u: np.ndarray, v: np.ndarray, period: float, rng: np.random.Generator
) -> np.ndarray:
    """Two-colour texture as a bool map (True = first colour) on frame coordinates, `period` pixels per repeat.

    Draws from `rng` (random phase, speckle cells) so the pattern differs from object to object.
    """
    if period <= 0:
        raise ValueError(f"period must be positive, got {period}")
    if texture not in TEXTURES:
        raise ValueError(f"texture must be one of {TEXTURES}, got {texture!r}")
    phase_u, phase_v = rng.uniform(0.0, period, size=2)
    pu, pv = u + phase_u, v + phase_v
    half = period / 2
    if texture == "stripes":
        return np.floor(pu / half) % 2 == 1
    if texture == "checker":
        return (np.floor(pu / half) + np.floor(pv / half)) % 2 == 1
    if texture == "dots":
        du, dv = pu % period - half, pv % period - half
        return du**2 + dv**2 <= (0.3 * period) ** 2
    if texture == "grid":
        line = max(1.0, 0.25 * period)
        return (pu % period < line) | (pv % period < line)
    # speckle: random on/off cells a quarter period wide, laid in the object's frame so it turns with the object
    cell = max(1.0, period / 4)
    iu, iv = np.floor(pu / cell).astype(np.int64), np.floor(pv / cell).astype(np.int64)
    iu -= iu.min()
    iv -= iv.min()
    bits = rng.random((int(iu.max()) + 1, int(iv.max()) + 1)) < 0.5
    return bits[iu, iv]


def surface_pattern(
    surface: str, u: np.ndarray, v: np.ndarray, period: float, rng: np.random.Generator
) -> np.ndarray:
    """Smooth two-colour surface as a weight map in [0, 1] (of the first colour) on frame coordinates (u, v) of a
    square grid, `period` pixels per repeat: sine bands, bands bent by a sine (waves), or smooth noise (mottle, turned
    nowhere). No edges: a surface shades from one colour to the other."""
    if period <= 0:
        raise ValueError(f"period must be positive, got {period}")
    if surface not in SURFACES:
        raise ValueError(f"surface must be one of {SURFACES}, got {surface!r}")
    phase = rng.uniform(0.0, 2 * math.pi)
    if surface == "bands":
        return 0.5 + 0.5 * np.sin(2 * math.pi * u / period + phase)
    if surface == "waves":
        bent = u + 0.3 * period * np.sin(math.pi * v / period)
        return 0.5 + 0.5 * np.sin(2 * math.pi * bent / period + phase)
    size = u.shape[0]
    return smooth_noise(rng, size, max(1, round(size / period)))


def smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """(size, size) float64 values in [0, 1]: a (cells + 1)^2 random lattice, bilinearly interpolated."""
    if cells < 1:
        raise ValueError(f"cells must be >= 1, got {cells}")
    lattice = rng.random((cells + 1, cells + 1))
    pos = (np.arange(size, dtype=np.float64) + 0.5) * cells / size
    index = np.minimum(pos.astype(np.int64), cells - 1)
    frac = pos - index
    rows = lattice[index] * (1 - frac)[:, None] + lattice[index + 1] * frac[:, None]
    return rows[:, index] * (1 - frac)[None, :] + rows[:, index + 1] * frac[None, :]


def ring_mask(
    rows: np.ndarray, cols: np.ndarray, centre: tuple[float, float], radius: float, width: float
) -> np.ndarray:
    """Annulus of mid-radius `radius` and thickness `width` pixels."""
    distance = np.hypot(rows - centre[0], cols - centre[1])
    return np.abs(distance - radius) <= width / 2


def line_mask(
    rows: np.ndarray, cols: np.ndarray, start: tuple[float, float], end: tuple[float, float], width: float
) -> np.ndarray:
    """Segment from `start` to `end` (row, col) with round caps, `width` pixels thick."""
    dy, dx = end[0] - start[0], end[1] - start[1]
    length2 = max(dy * dy + dx * dx, 1e-12)
    t = np.clip(((rows - start[0]) * dy + (cols - start[1]) * dx) / length2, 0.0, 1.0)
    return np.hypot(rows - (start[0] + t * dy), cols - (start[1] + t * dx)) <= width / 2


def blob_mask(rows: np.ndarray, cols: np.ndarray, centres: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Union of discs: `centres` (K, 2) rows/cols and `radii` (K,) pixels; an irregular lump for K > 1."""
    dy = rows[None] - centres[:, 0, None, None]
    dx = cols[None] - centres[:, 1, None, None]
    return (dy**2 + dx**2 <= radii[:, None, None] ** 2).any(axis=0)
