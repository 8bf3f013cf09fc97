"""The shapes world: 32x32 images of one anti-aliased shape on a grey background, with captions and ground truth.

Every image is drawn from attributes (shape, colour, size, background, position) by a vectorised
signed-distance renderer, so the truth behind every pixel is known. Randomness comes only from the
numpy Generator passed in.
"""

from __future__ import annotations

import numpy as np
import torch

RESOLUTION = 32  # images are RESOLUTION x RESOLUTION
SHAPES = ("circle", "square", "triangle", "cross")
COLOURS = ("red", "orange", "yellow", "green", "blue", "purple")
COLOUR_RGB = np.array(
    [  # [6, 3] in [0, 1], the centre of each named colour
        [0.90, 0.12, 0.12],
        [0.98, 0.55, 0.05],
        [0.95, 0.88, 0.10],
        [0.15, 0.72, 0.20],
        [0.15, 0.30, 0.95],
        [0.60, 0.20, 0.80],
    ],
    dtype=np.float32,
)
SIZES = ("small", "large")
BACKGROUNDS = ("dark", "light")
HORIZONTAL = ("left", "center", "right")
VERTICAL = ("top", "middle", "bottom")

COLOUR_JITTER = 0.04  # uniform +- per channel around the named colour
RADIUS_RANGE = {0: (4.0, 5.5), 1: (8.0, 10.0)}  # size index -> radius range in pixels
BRIGHTNESS_RANGE = {0: (0.05, 0.25), 1: (0.75, 0.95)}  # background index -> grey level range
MARGIN = 1.0  # pixels kept free between the shape's extent and the border
# half-extent of each shape's bounding box, in radii (positions keep the whole box inside the image)
EXTENT = {"circle": 1.0, "square": 0.85, "triangle": 1.15, "cross": 0.95}
ATTRIBUTE_NAMES = ("shape", "colour", "size", "background")


def _uniform(rng: np.random.Generator, lo_hi: dict, index: np.ndarray) -> np.ndarray:
    lo = np.array([lo_hi[i][0] for i in range(len(lo_hi))], dtype=np.float32)[index]
    hi = np.array([lo_hi[i][1] for i in range(len(lo_hi))], dtype=np.float32)[index]
    return lo + (hi - lo) * rng.random(len(index), dtype=np.float32)


def sample_attributes(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """n random attribute records as a dict of arrays, all drawn from `rng`.

    Discrete: shape, colour, size, background (indices into SHAPES, COLOURS, SIZES, BACKGROUNDS).
    Continuous: radius (px), brightness (background grey), rgb [n, 3] (the shape colour, jittered),
    x, y in [0, 1] (0 = left / top of the positions the shape can take).
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError("sample_attributes needs a numpy Generator, e.g. np.random.default_rng(0)")
    attrs = dict(
        shape=rng.integers(0, len(SHAPES), n),
        colour=rng.integers(0, len(COLOURS), n),
        size=rng.integers(0, len(SIZES), n),
        background=rng.integers(0, len(BACKGROUNDS), n),
    )
    attrs["radius"] = _uniform(rng, RADIUS_RANGE, attrs["size"])
    attrs["brightness"] = _uniform(rng, BRIGHTNESS_RANGE, attrs["background"])
    jitter = rng.uniform(-COLOUR_JITTER, COLOUR_JITTER, (n, 3)).astype(np.float32)
    attrs["rgb"] = np.clip(COLOUR_RGB[attrs["colour"]] + jitter, 0, 1)
    attrs["x"] = rng.random(n, dtype=np.float32)
    attrs["y"] = rng.random(n, dtype=np.float32)
    return attrs


def subset(attrs: dict, index) -> dict:
    """The records at `index` (a slice, mask or index array)."""
    return {k: v[index] for k, v in attrs.items()}


def cells() -> list[tuple[str, int, int]]:
    """Every (size, shape) cell: (name as "small cross", size index, shape index), small before large."""
    return [
        (f"{size_name} {shape_name}", size, shape)
        for size, size_name in enumerate(SIZES)
        for shape, shape_name in enumerate(SHAPES)
    ]


def _centre_range(shape, radius) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi): the pixel range a bounding-box centre can take, per shape index and radius (x or y 0 and 1)."""
    half = radius * np.array([EXTENT[s] for s in SHAPES], dtype=np.float32)[shape]
    return half + MARGIN, RESOLUTION - half - MARGIN


def centres(attrs: dict) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates (cx, cy) of each shape's bounding-box centre, from x, y in [0, 1]."""
    lo, hi = _centre_range(attrs["shape"], attrs["radius"])
    return lo + attrs["x"] * (hi - lo), lo + attrs["y"] * (hi - lo)


def positions(shape, cx, cy, radius) -> tuple[np.ndarray, np.ndarray]:
    """The inverse of centres: x, y in [0, 1] (clipped) that put a shape of this index and radius with its
    bounding-box centre at pixel (cx, cy)."""
    lo, hi = _centre_range(shape, radius)
    span = np.maximum(hi - lo, 1e-6)
    return ((cx - lo) / span).clip(0, 1), ((cy - lo) / span).clip(0, 1)


def shape_sdf(shape: np.ndarray, cx, cy, radius, resolution: int = RESOLUTION) -> np.ndarray:
    """[n, R, R] signed distance in pixels (negative inside) of each shape; half-plane distances for polygons."""
    grid = np.arange(resolution, dtype=np.float32) + 0.5
    dx = grid[None, None, :] - np.asarray(cx, np.float32)[:, None, None]  # [n, 1, R]
    dy = grid[None, :, None] - np.asarray(cy, np.float32)[:, None, None]  # [n, R, 1]
    r = np.asarray(radius, np.float32)[:, None, None]
    ax, ay = np.abs(dx), np.abs(dy)
    sdf = np.empty((len(shape), resolution, resolution), np.float32)
    for k, name in enumerate(SHAPES):
        m = shape == k
        if not m.any():
            continue
        rk, axk, ayk, dxk, dyk = r[m], ax[m], ay[m], dx[m], dy[m]
        if name == "circle":
            d = np.sqrt(dxk**2 + dyk**2) - rk
        elif name == "square":
            d = np.maximum(axk, ayk) - EXTENT["square"] * rk
        elif name == "triangle":  # equilateral, apex up, bounding box centred on (cx, cy)
            w = 2 * EXTENT["triangle"] * rk
            h = w * np.sqrt(3) / 2
            base = dyk - h / 2
            side = (h * axk - (w / 2) * (dyk + h / 2)) / np.sqrt(h**2 + w**2 / 4)
            d = np.maximum(base, side)
        else:  # cross: two bars of half-length 0.95 r and half-thickness 0.35 r
            length, thick = EXTENT["cross"] * rk, 0.35 * rk
            d = np.minimum(np.maximum(axk - length, ayk - thick), np.maximum(axk - thick, ayk - length))
        sdf[m] = d
    return sdf


def coverage(attrs: dict, resolution: int = RESOLUTION) -> np.ndarray:
    """[n, R, R] anti-aliased shape coverage in [0, 1] (linear ramp one pixel wide across the edge)."""
    cx, cy = centres(attrs)
    scale = resolution / RESOLUTION
    sdf = shape_sdf(attrs["shape"], cx * scale, cy * scale, attrs["radius"] * scale, resolution)
    return np.clip(0.5 - sdf, 0.0, 1.0)


def render(attrs: dict, resolution: int = RESOLUTION) -> torch.Tensor:
    """Attributes -> images [n, 3, R, R] float32 in [-1, 1]."""
    cov = coverage(attrs, resolution)[:, None]  # [n, 1, R, R]
    fg = attrs["rgb"][:, :, None, None]  # [n, 3, 1, 1]
    bg = attrs["brightness"][:, None, None, None]  # [n, 1, 1, 1]
    img = bg + (fg - bg) * cov  # [n, 3, R, R] in [0, 1]
    return torch.from_numpy(img * 2 - 1)


def sample(n: int, rng: np.random.Generator) -> tuple[torch.Tensor, dict]:
    """n random images [n, 3, 32, 32] in [-1, 1] with their attributes."""
    attrs = sample_attributes(n, rng)
    return render(attrs), attrs


def position_words(attrs: dict) -> tuple[np.ndarray, np.ndarray]:
    """Indices into HORIZONTAL and VERTICAL (thirds of the reachable positions)."""
    return np.minimum((attrs["x"] * 3).astype(int), 2), np.minimum((attrs["y"] * 3).astype(int), 2)


def position_phrase(h: int, v: int) -> str:
    """'on the left', 'at the top', 'in the top left', 'in the center' ..."""
    if h == 1 and v == 1:
        return "in the center"
    if h == 1:
        return f"at the {VERTICAL[v]}"
    if v == 1:
        return f"on the {HORIZONTAL[h]}"
    return f"in the {VERTICAL[v]} {HORIZONTAL[h]}"


def caption(attrs: dict, position: bool = False) -> list[str]:
    """The full caption of every record: 'a large red circle on a dark background' (+ position if asked)."""
    hs, vs = position_words(attrs)
    out = []
    for i in range(len(attrs["shape"])):
        text = (
            f"a {SIZES[attrs['size'][i]]} {COLOURS[attrs['colour'][i]]} {SHAPES[attrs['shape'][i]]} "
            f"on a {BACKGROUNDS[attrs['background'][i]]} background"
        )
        if position:
            text += " " + position_phrase(hs[i], vs[i])
        out.append(text)
    return out
